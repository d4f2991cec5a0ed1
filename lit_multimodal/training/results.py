"""``result.json``: the machine-readable outcome of one run, written atomically at the very end."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

RESULT_FILE = "result.json"
_VERSIONED = ("lit-multimodal", "torch", "lightning", "timm", "torchmetrics", "jsonargparse")


def config_hash(config: dict[str, Any]) -> str:
    """Short sha256 of a config, insensitive to key order and to where the run is written."""
    cleaned = json.loads(json.dumps(config, default=str))
    if isinstance(cleaned.get("trainer"), dict):
        cleaned["trainer"].pop("default_root_dir", None)
    cleaned.pop("ckpt_path", None)
    cleaned.pop("config", None)
    blob = json.dumps(cleaned, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a result."""
    found = {}
    for name in _VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    found["python"] = platform.python_version()
    return found


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` to ``path`` through a temporary file and ``os.replace``: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


class WallClock:
    """Wall time since construction."""

    def __init__(self) -> None:
        self.start = time.time()

    def seconds(self) -> float:
        """Elapsed seconds."""
        return round(time.time() - self.start, 3)
