"""``result.json``: the machine-readable outcome of one run, written atomically at the very end."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lit_multimodal.files import write_json_atomic

__all__ = [
    "RESULT_FILE",
    "RUN_STATUSES",
    "WallClock",
    "config_hash",
    "package_versions",
    "read_result",
    "read_status",
    "result_status",
    "write_json_atomic",  # re-exported: its home is lit_multimodal.files
]

RESULT_FILE = "result.json"
RUN_STATUSES = ("success", "failed", "interrupted", "missing")
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


class WallClock:
    """Wall time since construction."""

    def __init__(self) -> None:
        self.start = time.time()

    def seconds(self) -> float:
        """Elapsed seconds."""
        return round(time.time() - self.start, 3)


def read_result(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``result.json``; None when absent, a ``failed`` stand-in when it cannot be read."""
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return {"status": "failed", "error": f"unreadable {RESULT_FILE}: {err}"}
    if not isinstance(result, dict):
        return {"status": "failed", "error": f"unreadable {RESULT_FILE}: not a JSON object"}
    return result


def result_status(result: dict[str, Any] | None) -> str:
    """One of :data:`RUN_STATUSES` (``missing`` when there is no result; an unknown status counts as failed)."""
    if result is None:
        return "missing"
    status = str(result.get("status", "failed"))
    return status if status in RUN_STATUSES else "failed"


def read_status(run_dir: Path) -> str:
    """The status of the run in ``run_dir``: ``success``, ``failed``, ``interrupted`` or ``missing``."""
    return result_status(read_result(run_dir))
