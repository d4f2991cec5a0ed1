"""Any Lightning logger in a run: hyperparameters through the generic API, files in the run directory.

Loggers differ in what ``log_hyperparams`` accepts: TensorBoard takes the metrics its HParams tab should
declare, CSV, W&B and MLflow take the parameters alone. :func:`log_hparams` passes the metrics only to
loggers whose method has a ``metrics`` parameter, so every logger works without naming any of them.
:func:`place_loggers_in_run_dir` (config level) makes file-based loggers write into the run directory, and
:class:`RunDirConfigCallback` keeps ``config.yaml`` there whatever the logger's own folder is.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import SaveConfigCallback

# Stands for "the run directory" until the config is parsed and trainer.default_root_dir is known.
RUN_DIR_PLACEHOLDER = "<run dir>"
# Loggers whose log_dir is save_dir/name/version; with name and version empty they write into save_dir itself.
_VERSIONED_DIR_LOGGERS = ("TensorBoardLogger", "CSVLogger")


def log_hparams(loggers: Iterable[Any], params: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
    """Logs ``params`` to every logger; ``metrics`` (HParams declarations) only where the logger takes them.

    Args:
        loggers: the trainer's loggers (``LightningModule.loggers``).
        params: flat hyperparameters.
        metrics: metric names with placeholder values for TensorBoard's HParams tab.
    """
    for logger in loggers:
        accepts_metrics = "metrics" in inspect.signature(logger.log_hyperparams).parameters
        if metrics is not None and accepts_metrics:
            logger.log_hyperparams(params, metrics)
        else:
            logger.log_hyperparams(params)


def with_logger_save_dir(args: list[str]) -> list[str]:
    """Adds ``--trainer.logger.init_args.save_dir`` after ``--trainer.logger NAME`` when NAME requires one.

    The TensorBoard and CSV loggers have no default ``save_dir``, so ``--trainer.logger CSVLogger`` alone
    would fail to parse; the placeholder becomes the run directory in :func:`place_loggers_in_run_dir`.
    A ``save_dir`` given on the command line wins (it comes later).
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        name = None
        if arg == "--trainer.logger" and i + 1 < len(args):
            name = args[i + 1]
            out.append(name)
            i += 1
        elif arg.startswith("--trainer.logger="):
            name = arg.split("=", 1)[1]
        if name is not None and _requires_save_dir(name):
            out.append(f"--trainer.logger.init_args.save_dir={RUN_DIR_PLACEHOLDER}")
        i += 1
    return out


def _requires_save_dir(name: str) -> bool:
    """Whether the logger class ``name`` (short or dotted) has a ``save_dir`` without default."""
    import importlib

    from lightning.pytorch import loggers

    module_name, _, class_name = name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name) if module_name else loggers, class_name, None)
    except ImportError:
        return False
    if not isinstance(cls, type):
        return False
    param = inspect.signature(cls).parameters.get("save_dir")
    return param is not None and param.default is inspect.Parameter.empty


def place_loggers_in_run_dir(logger_config: Any, run_dir: str) -> None:
    """Points configured loggers with no ``save_dir`` at the run directory (in place, on the parsed config).

    ``--trainer.logger CSVLogger`` leaves ``save_dir`` empty; it becomes the run directory, and for the
    TensorBoard and CSV loggers the ``lightning_logs/version_N`` sub-folders are dropped so that
    ``metrics.csv`` or the event files sit beside ``config.yaml`` and ``result.json``.
    """
    entries = logger_config if isinstance(logger_config, list) else [logger_config]
    for entry in entries:
        init_args = _get(entry, "init_args")
        class_path = str(_get(entry, "class_path") or "")
        if init_args is None or "save_dir" not in init_args or init_args["save_dir"] not in (None, RUN_DIR_PLACEHOLDER):
            continue
        init_args["save_dir"] = run_dir
        if class_path.rpartition(".")[2] in _VERSIONED_DIR_LOGGERS:
            if _get(init_args, "name") == "lightning_logs":
                init_args["name"] = ""
            if _get(init_args, "version") is None:
                init_args["version"] = ""


def _get(entry: Any, key: str) -> Any:
    if entry is None or isinstance(entry, (bool, str)):
        return None
    try:
        return entry[key] if key in entry else None
    except TypeError:
        return getattr(entry, key, None)


class RunDirConfigCallback(SaveConfigCallback):
    """Saves the resolved config into ``trainer.default_root_dir`` (the run directory).

    Lightning's callback writes into ``trainer.log_dir``, which is the logger's folder (``./mlruns`` for
    MLflow, ``save_dir/name/version_N`` for CSV), so the run directory would lose its ``config.yaml``.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Writes the config once, on rank zero, then calls :meth:`save_config` as Lightning does."""
        if self.already_saved:
            return
        if trainer.is_global_zero and self.save_to_log_dir:
            run_dir = Path(trainer.default_root_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
            self.parser.save(
                self.config,
                str(run_dir / self.config_filename),
                skip_none=False,
                overwrite=self.overwrite,
                multifile=self.multifile,
            )
        if trainer.is_global_zero:
            self.save_config(trainer, pl_module, stage)
        self.already_saved = trainer.strategy.broadcast(True)
