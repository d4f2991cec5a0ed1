"""Planning a sweep: the grid expanded into runs with stable ids, directories and frozen configs.

A sweep has two stages, as the official VPT protocol: ``search`` trains every grid point on the search
split (VTAB-1k ``train800``, evaluated on ``val200``); the point with the best last-epoch validation top-1
is chosen per task, and ``final`` trains it once per seed on the final split (``train800val200``) and tests.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lit_multimodal.errors import UserError
from lit_multimodal.files import write_text_atomic

log = logging.getLogger(__name__)

OFFICIAL_LRS = [50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05]
OFFICIAL_WDS = [0.01, 0.001, 0.0001, 0.0]
FINAL_SEEDS = [42, 44, 82, 100, 800]
# Defaults of a sweep file's ``lr_key`` / ``wd_key``: where the image classifier (VPT recipe) keeps them. A sweep
# over another module names its own keys (PandaGPT: ``model.init_args.lr``, ``model.init_args.weight_decay``).
DEFAULT_LR_KEY = "model.init_args.optim.base_lr"
DEFAULT_WD_KEY = "model.init_args.optim.weight_decay"
LR_KEY, WD_KEY = DEFAULT_LR_KEY, DEFAULT_WD_KEY  # the names these had before sweep files named their keys
MANIFEST = "manifest.jsonl"
SELECTION = "selection.json"
RUN_CONFIG = "run_config.yaml"

_SHORT_NAMES = {"base_lr": "lr", "weight_decay": "wd", "num_prompts": "p"}


class SweepError(UserError):
    """A sweep that cannot run as written; raised before anything is launched."""


@dataclass(frozen=True)
class RunSpec:
    """One ``lit-mm fit`` process of a sweep.

    Attributes:
        id: short hash of everything that defines the run (base configs, task, grid point, seed, stage).
        name: readable name, e.g. ``lr25_wd0.001_seed42``.
        stage: ``search`` or ``final``.
        task: the task (VTAB-1k task, FGVC dataset, ``bci``, ...).
        tuning: the tuning method of the base config (for tables).
        seed: the run's ``seed_everything``.
        params: the grid point, dotted config key → value.
        run_dir: the run directory relative to the sweep directory.
        args: the full ``lit-mm fit`` argument list (config files and overrides) without the run directory.
        lr_key: the sweep's learning-rate key (reports read the run's learning rate from ``params`` under it).
        wd_key: the sweep's weight-decay key.
    """

    id: str
    name: str
    stage: str
    task: str
    tuning: str
    seed: int
    params: dict[str, Any]
    run_dir: str
    args: list[str] = field(default_factory=list)
    lr_key: str = DEFAULT_LR_KEY
    wd_key: str = DEFAULT_WD_KEY

    def to_json(self) -> str:
        """One manifest line."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> RunSpec:
        """Reads one manifest line."""
        return cls(**json.loads(line))


def format_value(value: Any) -> str:
    """Short, file-name-safe rendering of a grid value (``25.0`` → ``25``, ``0.0001`` → ``0.0001``)."""
    if isinstance(value, float):
        text = f"{value:g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.0e}"
        return text
    return str(value).replace("/", "-")


def short_name(key: str) -> str:
    """``model.init_args.optim.base_lr`` → ``lr``; other keys keep their last component."""
    last = key.rsplit(".", 1)[-1]
    return _SHORT_NAMES.get(last, last)


def run_name(params: dict[str, Any], seed: int) -> str:
    """``lr25_wd0.001_seed42``."""
    parts = [f"{short_name(k)}{format_value(v)}" for k, v in params.items()]
    return "_".join([*parts, f"seed{seed}"])


def run_id(base_configs: list[str], task: str, stage: str, params: dict[str, Any], seed: int) -> str:
    """A hash of the base configs' contents and the run's own settings: it changes when either changes."""
    digest = hashlib.sha256()
    for path in base_configs:
        digest.update(Path(path).read_bytes())
    digest.update(json.dumps([task, stage, params, seed], sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, in the order the values are listed."""
    if not grid:
        raise SweepError("the grid is empty: give at least one key with at least one value")
    empty = [key for key, values in grid.items() if not values]
    if empty:
        raise SweepError(f"grid keys without values: {empty}")
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def default_grid(lr_key: str = DEFAULT_LR_KEY, wd_key: str = DEFAULT_WD_KEY) -> dict[str, list[Any]]:
    """The official grid (10 learning rates × 4 weight decays) over the sweep's learning-rate and decay keys."""
    return {lr_key: list(OFFICIAL_LRS), wd_key: list(OFFICIAL_WDS)}


def check_grid_values(config: Any, point: dict[str, Any], lr_key: str, wd_key: str) -> None:
    """Values a parser accepts by type but no run can use: a learning rate <= 0 or a negative weight decay.

    Args:
        config: the parsed run config (a jsonargparse Namespace) of the grid point.
        point: the grid point, for the message.
        lr_key: the sweep's learning-rate key.
        wd_key: the sweep's weight-decay key.

    Raises:
        SweepError: naming the key, the point and the value.
    """
    for key in (lr_key, wd_key):
        value = config.get(key) if key in config else None
        if isinstance(value, (int, float)) and (value < 0 or (key == lr_key and value == 0)):
            what = "positive" if key == lr_key else "zero or positive"
            raise SweepError(f"{key} must be {what}; the grid point {point} gives {value}")


def override_args(values: dict[str, Any]) -> list[str]:
    """``{"a.b": 1}`` → ``["--a.b=1"]`` (JSON for lists and dicts, so jsonargparse reads them back)."""
    args = []
    for key, value in values.items():
        text = json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)
        args.append(f"--{key}={text}")
    return args


def manifest_entries(path: Path) -> list[dict[str, Any]]:
    """The planned runs of one manifest in order; a re-planned run (same id or run_dir) keeps its last entry.

    Lines that are not JSON objects (e.g. one being appended right now) are skipped with a warning.
    """
    if not path.is_file():
        return []
    entries: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s:%d: not JSON, skipped", path, number)
            continue
        if not isinstance(entry, dict) or not entry.get("run_dir"):
            log.warning("%s:%d: no run_dir, skipped", path, number)
            continue
        key = str(entry.get("id") or entry["run_dir"])
        entries.pop(key, None)
        entries[key] = entry
    return list(entries.values())


def read_manifest(sweep_dir: Path) -> list[RunSpec]:
    """Every run planned so far in ``<sweep_dir>/manifest.jsonl``."""
    return [RunSpec(**entry) for entry in manifest_entries(sweep_dir / MANIFEST)]


def append_manifest(sweep_dir: Path, runs: list[RunSpec]) -> None:
    """Adds runs that the manifest does not hold yet.

    The manifest is rewritten atomically (:func:`~lit_multimodal.files.write_text_atomic`), so a kill mid-write
    never leaves half a line; a half line left by an older writer is dropped rather than glued to the next entry.
    """
    known = {spec.id for spec in read_manifest(sweep_dir)}
    new = [spec for spec in runs if spec.id not in known]
    if not new:
        return
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / MANIFEST
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                continue
            kept.append(line + "\n")
    write_text_atomic(path, "".join(kept) + "".join(spec.to_json() + "\n" for spec in new))


VARIANT_FIELDS = ("base_config", "grid", "extra_args")


def value_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The first grid point, then one point per further value of each key (the other keys at their first).

    Config values are checked one at a time: every value of every key is parsed once, in ``1 + Σ(n_k - 1)``
    points instead of the ``Π n_k`` of the full product.
    """
    points = grid_points(grid)
    first = points[0]
    return [first] + [{**first, key: value} for key, values in grid.items() for value in values[1:]]


def expand_variants(
    name: str,
    base_config: list[str],
    grid: dict[str, list[Any]] | None,
    extra_args: list[str] | None,
    out_dir: str | None,
    variants: dict[str, dict[str, Any]],
    only: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """One sweep per variant (e.g. per tuning method), each searched, selected and finalised on its own.

    A variant layers over the sweep: its ``base_config`` files come after the sweep's, its ``grid`` keys
    replace or add to the sweep's grid (a key set to null drops it), its ``extra_args`` come after the
    sweep's. Variant ``v`` of sweep ``s`` is named ``s/v`` and writes to ``<out_dir>/<v>``, so one
    ``lit-mm report --sweep_dir <out_dir>`` compares the variants, a row each.

    Args:
        name: the sweep's name.
        base_config: the sweep's config files (before each variant's).
        grid: the sweep's grid (None: each variant's own, or the official grid).
        extra_args: the sweep's extra ``lit-mm fit`` arguments.
        out_dir: the sweep folder (default ``runs/sweeps/<name>``).
        variants: variant name → ``{base_config: [...], grid: {...}, extra_args: [...]}`` (each optional).
        only: run these variants alone (default all).

    Returns:
        Per variant, in the sweep file's order: ``name``, ``base_config``, ``grid``, ``extra_args``, ``out_dir``.
    """
    if not variants:
        raise SweepError("variants is empty: give at least one variant or leave the key out")
    unknown = [v for v in only or [] if v not in variants]
    if unknown:
        raise SweepError(f"only_variants names unknown variants {unknown}; the sweep has {list(variants)}")
    parent = Path(out_dir or f"runs/sweeps/{name}")
    plans = {}
    for variant, layer in variants.items():
        if only and variant not in only:
            continue
        if not variant or "/" in variant or variant.startswith("."):
            raise SweepError(f"variant name {variant!r} is not a folder name")
        layer = dict(layer or {})
        wrong = sorted(set(layer) - set(VARIANT_FIELDS))
        if wrong:
            raise SweepError(f"variant {variant!r}: unknown keys {wrong}; a variant takes {list(VARIANT_FIELDS)}")
        merged = {**(grid or {}), **(layer.get("grid") or {})}
        merged = {key: values for key, values in merged.items() if values is not None}
        plans[variant] = {
            "name": f"{name}/{variant}",
            "base_config": [*base_config, *(layer.get("base_config") or [])],
            "grid": merged or None,
            "extra_args": [*(extra_args or []), *(layer.get("extra_args") or [])],
            "out_dir": str(parent / variant),
        }
    return plans
