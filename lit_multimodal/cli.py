"""The ``lit-mm`` command: LightningCLI for fit/validate/test/predict, plain functions for the rest.

``lit-mm fit --config configs/vpt_deep_cub.yaml`` builds the model and data chosen by ``class_path`` in the
YAML, trains, tests the last-epoch weights and writes ``result.json`` into the run directory
(``trainer.default_root_dir``). ``lit-mm prepare fgvc ...`` and the other function commands are plain
functions whose signatures and docstrings jsonargparse turns into the command line.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
import traceback
from argparse import ArgumentError
from pathlib import Path
from typing import Any

from jsonargparse import Namespace, auto_cli
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

import lit_multimodal.data  # noqa: F401 - registers the DataModules for class_path lookup
import lit_multimodal.vision  # noqa: F401 - registers the LightningModules for class_path lookup
from lit_multimodal.config_errors import explain
from lit_multimodal.data.base import DataError
from lit_multimodal.entry import overview_parser, wants_overview
from lit_multimodal.help_format import PlainHelpFormatter, plain_lightning_parser_class
from lit_multimodal.multimodal.imagebind.checkpoint import ImageBindCheckpointError
from lit_multimodal.multimodal.imagebind.preprocess.errors import InputError
from lit_multimodal.multimodal.pandagpt.conversation import ConversationError
from lit_multimodal.predictions import add_prediction_arguments, run_predict
from lit_multimodal.quickstart import resolve_references
from lit_multimodal.runtime import configure_threads, filter_known_warnings
from lit_multimodal.sweeps.plan import SweepError
from lit_multimodal.training.checkpointing import (
    CheckpointFileError,
    checkpoint_differences,
    load_resume_checkpoint,
    resolve_ckpt_path,
)
from lit_multimodal.training.loggers import RunDirConfigCallback, place_loggers_in_run_dir, with_logger_save_dir
from lit_multimodal.training.metrics import EpochLines, summary_line
from lit_multimodal.training.results import (
    RESULT_FILE,
    WallClock,
    config_hash,
    package_versions,
    write_json_atomic,
)
from lit_multimodal.training.summary import quiet_model_summary
from lit_multimodal.training.tensorboard import RunTensorBoardLogger
from lit_multimodal.vision.checkpoints import CheckpointError
from lit_multimodal.vision.precision import auto_precision

DEFAULT_RUN_DIR = "runs/default"
PLAIN_PARSER = plain_lightning_parser_class()
EPILOG = (
    "Example: lit-mm fit --config configs/quickstart/vpt_deep.yaml. "
    "Other commands: lit-mm prepare fgvc --help (split files from an original FGVC archive), "
    "lit-mm sweep --help (search and seeded finals, local or SLURM), lit-mm report --help (tables and plot), "
    "lit-mm embed --help (ImageBind embedding cache), "
    "lit-mm zeroshot --help (files vs text labels in ImageBind's shared space), "
    "lit-mm export / chat / demo / serve --help (PandaGPT deltas, terminal and batch chat, web demo, OpenAI API), "
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
    CheckpointFileError,
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
        kwargs.setdefault("save_config_callback", RunDirConfigCallback)
        kwargs.setdefault("parser_class", PLAIN_PARSER)  # help without reST markup, prog lit-mm
        parser_kwargs = kwargs.setdefault("parser_kwargs", {})
        parser_kwargs.setdefault("epilog", EPILOG)
        # Errors come back as exceptions (main prints one paragraph); no silent prefix matching of options.
        for scope in (parser_kwargs, *(parser_kwargs.setdefault(sub, {}) for sub in LIGHTNING_COMMANDS)):
            scope.setdefault("exit_on_error", False)
            scope.setdefault("allow_abbrev", False)
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

    def _parse_ckpt_path(self) -> None:
        """Resolves and checks ``--ckpt_path`` instead of letting the checkpoint's settings replace the config.

        Lightning would parse the checkpoint's hyper-parameters over the requested model, so a checkpoint of
        another tuning method, prompt count or backbone was silently trained on (and recorded as the run's
        config). Here the requested model stays as given and a checkpoint that does not match it is an error
        naming what differs; ``last`` and a dangling ``last.ckpt`` resolve to the newest readable checkpoint;
        pickled or truncated files are one-line errors.
        """
        self.resolved_ckpt_path = None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path:
            return
        root = Path(config.trainer.get("default_root_dir") or DEFAULT_RUN_DIR)
        checkpoint_dir = Path(config.get("checkpoint", {}).get("dirpath") or root / "checkpoints")
        resolved = resolve_ckpt_path(str(ckpt_path), checkpoint_dir)
        self.resolved_ckpt_path = resolved
        if resolved is None or not Path(resolved).is_file():
            return
        checkpoint = load_resume_checkpoint(resolved)
        model = config.get("model")
        identity = getattr(_import_class(model.get("class_path")), "checkpoint_identity", None) if model else None
        saved = checkpoint.get("hyper_parameters") or {}
        if identity is None or not saved:
            return
        init_args = model.get("init_args")
        wanted = identity(init_args.as_dict() if init_args is not None else {})
        differences = checkpoint_differences(wanted, identity(saved))
        if differences:
            raise CheckpointFileError(
                f"{resolved} does not match the requested model: {'; '.join(differences)} "
                "(change the model settings or give another --ckpt_path)"
            )

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        """Passes the resolved checkpoint (see :meth:`_parse_ckpt_path`); the saved config keeps the given one."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "ckpt_path" in kwargs and getattr(self, "resolved_ckpt_path", None) != kwargs["ckpt_path"]:
            kwargs["ckpt_path"] = self.resolved_ckpt_path
        return kwargs

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "predict":
            add_prediction_arguments(parser)
        return parser

    def predict(self, model: LightningModule, datamodule: Any = None, ckpt_path: str | None = None, **_: Any) -> None:
        """Writes ``predictions.csv``/``.jsonl`` for the test split or ``--files`` (see lit_multimodal.predictions)."""
        config = self.config.get("predict", self.config)
        run_predict(
            self.trainer, model, datamodule, ckpt_path, config.get("files"), config.get("top_k"), config.get("output")
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parses as Lightning does; ``--trainer.logger CSVLogger`` alone writes into the run directory."""
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        args = with_logger_save_dir(sys.argv[1:] if args is None else list(args))
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as err:
            err.valid_keys = _parser_keys(parser, args)  # for main's "did you mean"
            raise

    def before_instantiate_classes(self) -> None:
        """Fills ``model.num_classes`` from the data and sets the default run directory."""
        # validate/test/predict write their own <subcommand>_config.yaml: config.yaml stays the fit config.
        subcommand = str(self.subcommand)
        self.save_config_kwargs["config_filename"] = (
            "config.yaml" if subcommand == "fit" else f"{subcommand}_config.yaml"
        )
        config = self.config.get(str(self.subcommand), self.config)
        resolve_references(config)  # quickstart: values -> the paths of the artefacts, built once
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
        # Whatever the logger, checkpoints and logger files live in the run directory.
        place_loggers_in_run_dir(config.trainer.get("logger"), config.trainer.default_root_dir)
        if config.get("checkpoint") is not None and config.checkpoint.get("dirpath") is None:
            config.checkpoint.dirpath = str(Path(config.trainer.default_root_dir) / "checkpoints")
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
            trainer_config["logger"] = RunTensorBoardLogger(
                save_dir=trainer_config["default_root_dir"], name="", version="", default_hp_metric=False
            )
        # One plain line per epoch when stdout is not a terminal (sweep logs); a no-op in a terminal.
        callbacks = trainer_config.get("callbacks") or []
        trainer_config["callbacks"] = [*(callbacks if isinstance(callbacks, list) else [callbacks]), EpochLines()]
        trainer = super().instantiate_trainer(**kwargs)
        quiet_model_summary(trainer)  # no FLOPs column of zeros
        return trainer

    # -- fit: test the final weights, then write result.json --------------------------------------
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand != "fit":
            return super()._run_subcommand(subcommand)
        try:
            super()._run_subcommand(subcommand)
        except BaseException as err:
            self._write_result("failed", error=f"{type(err).__name__}: {_message(err)}", trace=traceback.format_exc())
            raise

    def after_fit(self) -> None:
        """Tests the last-epoch weights (when asked and possible) and writes ``result.json``."""
        if self.trainer.interrupted:
            self._write_result("interrupted")
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        config = self.config.get(str(self.subcommand), self.config)
        has_split = getattr(self.datamodule, "has_split", lambda role: False)
        if not any(k.startswith("val/") for k in metrics) and has_split("val"):
            # Resumed from a checkpoint of the last epoch (killed before result.json): fit trained nothing
            # and logged nothing, so the restored final weights are validated here.
            for results in self.trainer.validate(self.model, datamodule=self.datamodule, verbose=False):
                metrics.update({k: float(v) for k, v in results.items() if k.startswith("val/")})
        has_test = has_split("test")
        if config.get("test_after_fit", True) and has_test:
            for results in self.trainer.test(self.model, datamodule=self.datamodule, verbose=True):
                metrics.update({k: float(v) for k, v in results.items()})
        if not metrics:
            self._write_result("failed", error="fit ended without any metric (nothing trained, validated or tested)")
            return
        details = getattr(self.model, "test_details", None)
        self._write_result("success", metrics=metrics, **({"test_details": details} if details else {}))
        counts = getattr(self.model, "param_counts", None)
        if self.trainer.is_global_zero:  # the last line of a run, on stdout: where sweep logs and users look
            print(summary_line(metrics, counts.tuned_percent if counts is not None else None), flush=True)

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
        if subcommand == "test" and getattr(self.model, "test_details", None):
            payload["test_details"] = self.model.test_details
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


def _parser_keys(parser: Any, args: list[str]) -> list[str]:
    """The option keys of the subcommand named in ``args`` (or of ``parser`` itself)."""
    action = getattr(parser, "_subcommands_action", None)
    sub = next((arg for arg in args if not arg.startswith("-")), None)
    if action is not None and sub in action._name_parser_map:
        parser = action._name_parser_map[sub]
    return [a.dest for a in parser._actions if a.dest not in ("help", "config", "print_config")]


def _as_plain(value: Any) -> Any:
    """A jsonargparse Namespace (e.g. the data config: class, root, interpolation, ...) as plain dicts."""
    return value.as_dict() if hasattr(value, "as_dict") else value


def _import_class(class_path: Any) -> Any:
    """The class named by a ``class_path``; None when it cannot be imported (the parser reports that)."""
    module, _, name = str(class_path or "").rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None) if module else None
    except ImportError:
        return None


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


def _message(err: BaseException) -> str:
    """The message of a user error; for one re-raised from a DataLoader worker, without the worker's traceback.

    PyTorch re-raises a worker's exception as the same type with the message ``Caught <type> in DataLoader worker
    process N.`` followed by the worker's traceback; the original message is in the traceback's last entry.
    """
    text = str(err)
    lines = text.splitlines()
    if not (text.startswith("Caught ") and len(lines) > 2 and lines[1].startswith("Original Traceback")):
        return text
    for index in range(2, len(lines)):
        if lines[index] and not lines[index].startswith(" "):  # "package.module.Type: message"
            original = "\n".join(lines[index:])
            return original.split(": ", 1)[1] if ": " in lines[index] else original
    return text


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
FUNCTION_COMMANDS = ("prepare", "sweep", "report", "embed", "zeroshot", "export", "chat", "demo", "serve", "merge")
# Binding and evaluation (docs/emergence.md); ``bind`` itself is ``fit`` of a BindModule config.
BIND_COMMANDS = ("bind-export", "bind-eval", "evaluate", "emergence")
FIT_CONFIG_COMMANDS = ("export", "chat", "demo", "serve", "evaluate")


def _run_function_command(args: list[str]) -> None:
    """Runs ``lit-mm prepare|sweep|report|embed|zeroshot|export|chat|demo ...``: plain functions via ``auto_cli``."""
    from lit_multimodal.data.prepare_fgvc import prepare_fgvc
    from lit_multimodal.multimodal.imagebind.bind.commands import BIND_FUNCTIONS
    from lit_multimodal.multimodal.imagebind.commands import embed, zeroshot
    from lit_multimodal.multimodal.pandagpt.chat import chat
    from lit_multimodal.multimodal.pandagpt.demo import demo
    from lit_multimodal.multimodal.pandagpt.export import export
    from lit_multimodal.multimodal.pandagpt.serve import serve
    from lit_multimodal.sweeps.report import report
    from lit_multimodal.sweeps.runner import sweep
    from lit_multimodal.vision.methods.merge import merge

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
        "serve": serve,
        "merge": merge,
    }
    if args and args[0] in FIT_CONFIG_COMMANDS:
        # jsonargparse keeps --config for its own config files; these commands take a fit config as --config.
        args = [args[0], *(re.sub(r"^--config(?==|$)", "--fit_config", arg) for arg in args[1:])]
    command = commands.get(args[0]) if args else None
    if callable(command):
        args = checkpoint_option_alias(args, inspect.signature(command).parameters)
    # Errors come back as exceptions (main prints one paragraph); no silent prefix matching of options.
    try:
        summary = auto_cli(
            commands,
            args=args,
            as_positional=False,
            exit_on_error=False,
            allow_abbrev=False,
            formatter_class=PlainHelpFormatter,
            prog="lit-mm",
        )
    except ArgumentError as err:
        command = commands.get(args[0]) if args else None
        if isinstance(command, dict) and len(args) > 1:
            command = command.get(args[1])
        if callable(command):  # for main's "did you mean"
            err.valid_keys = [name for name in inspect.signature(command).parameters if name != "self"]
        raise
    if summary is not None:
        print(json.dumps(summary, indent=2, default=str))


def checkpoint_option_alias(args: list[str], parameters: Any) -> list[str]:
    """``--ckpt_path`` (Lightning's name, used by fit/validate/test/predict) for every command taking a checkpoint.

    A command whose parameter is ``ckpt_path`` still accepts the former ``--ckpt`` with a deprecation
    message; one whose parameter is still ``ckpt`` accepts ``--ckpt_path`` as well.
    """
    if "ckpt_path" in parameters:
        old, new = "--ckpt", "--ckpt_path"
        if any(re.match(r"^--ckpt(=|$)", arg) for arg in args):
            print("warning: --ckpt is deprecated; use --ckpt_path", file=sys.stderr)
    elif "ckpt" in parameters:
        old, new = "--ckpt_path", "--ckpt"
    else:
        return args
    return [re.sub(rf"^{old}(?==|$)", new, arg) for arg in args]


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-mm``.

    Bad input that the framework detects (a missing data file, a checkpoint that does not fit) ends with a
    one-line ``error:`` message and exit status 1; set ``LIT_MM_DEBUG=1`` for the traceback. Config errors
    are one line too (file, key, nearest valid key; see :mod:`lit_multimodal.config_errors`), exit status 2.
    Known harmless library warnings are filtered and torch's thread count is set first
    (:mod:`lit_multimodal.runtime`).
    """
    args = sys.argv[1:] if argv is None else argv
    if wants_overview(args):
        overview_parser().print_help()
        raise SystemExit(0 if args else 2)
    filter_known_warnings()
    configure_threads()
    try:
        if args and args[0] in FUNCTION_COMMANDS + BIND_COMMANDS:
            _run_function_command(args)
        elif args and args[0] == "bind":
            LitMMCLI(args=["fit", *args[1:]])
        else:
            LitMMCLI(args=argv)
    except ArgumentError as err:
        if os.environ.get("LIT_MM_DEBUG"):
            raise
        message = explain(err.message, args, getattr(err, "valid_keys", ()))
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:
        cause = _user_error(err)
        if cause is None or os.environ.get("LIT_MM_DEBUG"):
            raise
        print(f"error: {_message(cause)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
