"""The ``lit-mm`` command: LightningCLI for fit/validate/test/predict, plain functions for the rest.

``lit-mm fit --config configs/vpt_deep_cub.yaml`` builds the model and data chosen by ``class_path`` in the
YAML, trains, tests the last-epoch weights and writes ``result.json`` into the run directory
(``trainer.default_root_dir``). ``lit-mm prepare fgvc ...`` and the other function commands are plain
functions whose signatures and docstrings jsonargparse turns into the command line.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from jsonargparse import auto_cli
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

import lit_multimodal.data  # noqa: F401 - registers the DataModules for class_path lookup
import lit_multimodal.vision  # noqa: F401 - registers the LightningModules for class_path lookup
from lit_multimodal.data.base import DataError
from lit_multimodal.multimodal.imagebind.checkpoint import ImageBindCheckpointError
from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.conversation import ConversationError
from lit_multimodal.sweeps.plan import SweepError
from lit_multimodal.training.results import (
    RESULT_FILE,
    WallClock,
    config_hash,
    package_versions,
    write_json_atomic,
)
from lit_multimodal.vision.checkpoints import CheckpointError
from lit_multimodal.vision.precision import auto_precision

DEFAULT_RUN_DIR = "runs/default"
EPILOG = (
    "Example: lit-mm fit --config configs/quickstart/vpt_deep.yaml. "
    "Other commands: lit-mm prepare fgvc --help (split files from an original FGVC archive), "
    "lit-mm sweep --help (search and seeded finals, local or SLURM), lit-mm report --help (tables and plot), "
    "lit-mm embed --help (ImageBind embedding cache), "
    "lit-mm zeroshot --help (files vs text labels in ImageBind's shared space), "
    "lit-mm export / chat / demo --help (PandaGPT deltas, terminal chat, web demo), "
    "lit-mm bind / bind-export / bind-eval / evaluate / emergence --help (binding a modality, measuring transfer)."
)

USER_ERRORS = (
    DataError,
    CheckpointError,
    SweepError,
    FileNotFoundError,
    InputError,
    ImageBindCheckpointError,
    ConversationError,
)


class LitMMCLI(LightningCLI):
    """LightningCLI with the run-directory conventions of lit-mm.

    - ``model.num_classes`` is filled from ``data.num_classes`` when left empty (and must agree otherwise).
    - The logger defaults to TensorBoard writing straight into ``trainer.default_root_dir``.
    - ``last.ckpt`` is kept under ``<run dir>/checkpoints`` (trainable tensors only).
    - ``fit`` tests the final weights when the data has a test split and writes ``result.json``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("model_class", LightningModule)
        kwargs.setdefault("datamodule_class", LightningDataModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        parser_kwargs = kwargs.setdefault("parser_kwargs", {})
        parser_kwargs.setdefault("epilog", EPILOG)
        self.clock = WallClock()
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Adds the forced last-checkpoint callback and the ``test_after_fit`` switch."""
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # Lightning writes last.ckpt only when a top-k checkpoint was saved in the same step, so the newest
        # epoch is kept as the one top-k file (no monitor) and last.ckpt links to it: a killed run resumes
        # from its latest epoch and each save writes the file once.
        parser.set_defaults({"checkpoint.save_last": "link", "checkpoint.save_top_k": 1})
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the last-epoch weights when the data has a test split (the VPT protocol).",
        )

    def before_instantiate_classes(self) -> None:
        """Fills ``model.num_classes`` from the data and sets the default run directory."""
        config = self.config.get(str(self.subcommand), self.config)
        model_args = config.model.get("init_args") if config.get("model") else None
        data_classes = _data_num_classes(config.get("data"))
        if model_args is not None and "num_classes" in model_args and data_classes is not None:
            if model_args.num_classes is None:
                model_args.num_classes = data_classes
            elif model_args.num_classes != data_classes:
                raise DataError(
                    f"model.num_classes is {model_args.num_classes} but data.num_classes is {data_classes}; "
                    "leave model.num_classes empty to take the data's"
                )
        if config.trainer.get("default_root_dir") is None:
            config.trainer.default_root_dir = DEFAULT_RUN_DIR
        # trainer.precision left empty: bf16-mixed where the hardware runs bf16 natively, else 32-true.
        self.precision_auto = config.trainer.get("precision") is None
        if self.precision_auto:
            config.trainer.precision = auto_precision(config.trainer.get("accelerator"))
            rank_zero_info(f"trainer.precision not set: using {config.trainer.precision} on this hardware")

    def instantiate_trainer(self, **kwargs: Any):
        """Uses a TensorBoard logger writing into the run directory unless another logger is configured."""
        config = self.config_init.get(str(self.subcommand), self.config_init)
        trainer_config = config["trainer"]
        if trainer_config.get("logger") in (None, True):
            trainer_config["logger"] = TensorBoardLogger(
                save_dir=trainer_config["default_root_dir"], name="", version="", default_hp_metric=False
            )
        return super().instantiate_trainer(**kwargs)

    # -- fit: test the final weights, then write result.json --------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand != "fit":
            return super()._run_subcommand(subcommand)
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            self._write_result("failed", error=f"{type(err).__name__}: {err}", trace=traceback.format_exc())
            raise

    def after_fit(self) -> None:
        """Tests the last-epoch weights (when asked and possible) and writes ``result.json``."""
        if self.trainer.interrupted:
            self._write_result("interrupted")
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        config = self.config.get(str(self.subcommand), self.config)
        has_test = getattr(self.datamodule, "has_split", lambda role: False)("test")
        if config.get("test_after_fit", True) and has_test:
            for results in self.trainer.test(self.model, datamodule=self.datamodule, verbose=True):
                metrics.update({k: float(v) for k, v in results.items()})
        self._write_result("success", metrics=metrics)

    def after_validate(self) -> None:
        """Writes ``validate_result.json`` (metrics and the checkpoint evaluated) into the run directory."""
        self._write_eval_result("validate")

    def after_test(self) -> None:
        """Writes ``test_result.json`` (metrics and the checkpoint evaluated) into the run directory."""
        self._write_eval_result("test")

    @rank_zero_only
    def _write_eval_result(self, subcommand: str) -> None:
        config = self.config.get(subcommand, self.config)
        payload = {
            "status": "success",
            "ckpt_path": config.get("ckpt_path"),
            "metrics": {k: float(v) for k, v in self.trainer.callback_metrics.items()},
            "wall_time_s": self.clock.seconds(),
        }
        path = Path(self.trainer.default_root_dir) / f"{subcommand}_result.json"
        write_json_atomic(path, payload)
        rank_zero_info(f"wrote {path}")

    @rank_zero_only
    def _write_result(self, status: str, **extra: Any) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return
        run_dir = Path(trainer.default_root_dir)
        config = self.config.get(str(self.subcommand), self.config)
        payload: dict[str, Any] = {
            "status": status,
            "run_dir": str(run_dir),
            "config_hash": config_hash(config.as_dict()),
            "wall_time_s": self.clock.seconds(),
            "epochs_completed": trainer.current_epoch,
            "global_step": trainer.global_step,
            "precision": str(trainer.precision),
            "precision_auto": getattr(self, "precision_auto", False),
            "seed": config.get("seed_everything"),
            "versions": package_versions(),
            "data": _as_plain(config.get("data")),
            **extra,
        }
        model = self.model
        counts = getattr(model, "param_counts", None)
        if counts is not None:
            payload["params"] = {
                "total": counts.total,
                "trainable": counts.trainable,
                "backbone": counts.backbone,
                "tuned_percent": counts.tuned_percent,
                "tuned_percent_of_backbone": counts.tuned_percent_of_backbone,
            }
        if hasattr(model, "curated_hparams") and status == "success":
            payload["hparams"] = model.curated_hparams()
        write_json_atomic(run_dir / RESULT_FILE, payload)
        rank_zero_info(f"wrote {run_dir / RESULT_FILE} ({status})")


def _as_plain(value: Any) -> Any:
    """A jsonargparse Namespace (e.g. the data config: class, root, interpolation, ...) as plain dicts."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _data_num_classes(data_config: Any) -> int | None:
    """The class count of the configured data module, or None when it has none.

    Taken from ``data.init_args.num_classes`` when given; otherwise the data module is constructed (cheap:
    DataModules read nothing in ``__init__``) and asked, so that e.g. ``--data.task dtd`` of VTAB-1k decides
    the model's head size.
    """
    if not data_config or not data_config.get("class_path"):
        return None
    init_args = data_config.get("init_args")
    given = init_args.get("num_classes") if init_args is not None else None
    if given is not None:
        return int(given)
    module, _, name = str(data_config.class_path).rpartition(".")
    data_class = getattr(importlib.import_module(module), name)
    kwargs = init_args.as_dict() if init_args is not None else {}
    return getattr(data_class(**kwargs), "num_classes", None)


def _user_error(err: BaseException) -> BaseException | None:
    """The framework's own bad-input error behind ``err``, or None.

    jsonargparse wraps errors raised while it instantiates classes; the cause chain still holds ours.
    """
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, USER_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


FUNCTION_COMMANDS = ("prepare", "sweep", "report", "embed", "zeroshot", "export", "chat", "demo")
# Binding and evaluation (docs/emergence.md); ``bind`` itself is ``fit`` of a BindModule config.
BIND_COMMANDS = ("bind-export", "bind-eval", "evaluate", "emergence")
FIT_CONFIG_COMMANDS = ("export", "chat", "demo", "evaluate")


def _run_function_command(args: list[str]) -> None:
    """Runs ``lit-mm prepare|sweep|report|embed|zeroshot|export|chat|demo ...``: plain functions via ``auto_cli``."""
    from lit_multimodal.data.prepare_fgvc import prepare_fgvc
    from lit_multimodal.multimodal.imagebind.bind.commands import BIND_FUNCTIONS
    from lit_multimodal.multimodal.imagebind.commands import embed, zeroshot
    from lit_multimodal.multimodal.pandagpt.chat import chat
    from lit_multimodal.multimodal.pandagpt.demo import demo
    from lit_multimodal.multimodal.pandagpt.export import export
    from lit_multimodal.sweeps.report import report
    from lit_multimodal.sweeps.runner import sweep

    commands = {
        **BIND_FUNCTIONS,
        "prepare": {"fgvc": prepare_fgvc},
        "sweep": sweep,
        "report": report,
        "embed": embed,
        "zeroshot": zeroshot,
        "export": export,
        "chat": chat,
        "demo": demo,
    }
    if args and args[0] in FIT_CONFIG_COMMANDS:
        # jsonargparse keeps --config for its own config files; these commands take a fit config as --config.
        args = [args[0], *(re.sub(r"^--config(?==|$)", "--fit_config", arg) for arg in args[1:])]
    summary = auto_cli(commands, args=args, as_positional=False)
    if summary is not None:
        print(json.dumps(summary, indent=2, default=str))


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-mm``.

    Bad input that the framework detects (a missing data file, a checkpoint that does not fit) ends with a
    one-line ``error:`` message and exit status 1; set ``LIT_MM_DEBUG=1`` for the traceback. Config errors
    are jsonargparse's own messages (exit status 2).
    """
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] in FUNCTION_COMMANDS + BIND_COMMANDS:
            _run_function_command(args)
        elif args and args[0] == "bind":
            LitMMCLI(args=["fit", *args[1:]])
        else:
            LitMMCLI(args=argv)
    except Exception as err:
        cause = _user_error(err)
        if cause is None or os.environ.get("LIT_MM_DEBUG"):
            raise
        print(f"error: {cause}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
