"""The ``lit-mm fit`` config, read one way: :class:`LitMMCLI` and :func:`parse_fit_config`.

:class:`LitMMCLI` is LightningCLI with the run-directory conventions of lit-mm (``lit-mm fit/validate/test/predict``
run it). :func:`parse_fit_config` gives the fit namespace that ``lit-mm fit`` would run for the same arguments
(repeated ``--config`` files merged left to right, dotted overrides such as ``--model.init_args.lora_r 8`` or
``--model.lora_r 8``, nested ``class_path``/``init_args``, defaults filled, ``model.num_classes`` from the data)
without instantiating or training anything. Both go through :func:`parse_command_line` and
:func:`complete_fit_config`, so they cannot disagree; the sweep runner, ``export``, ``chat``, ``demo``, ``serve``
and ``evaluate`` read fit configs through :func:`read_fit_config` / :func:`parse_fit_config`.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import traceback
import warnings
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

import lit_multimodal.data  # noqa: F401 - registers the DataModules for class_path lookup
import lit_multimodal.vision  # noqa: F401 - registers the LightningModules for class_path lookup
from lit_multimodal.command_table import fit_epilog
from lit_multimodal.errors import DataError, error_message
from lit_multimodal.help_format import plain_lightning_parser_class
from lit_multimodal.predictions import add_prediction_arguments, run_predict
from lit_multimodal.quickstart import resolve_references
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
from lit_multimodal.vision.precision import auto_precision

__all__ = [
    "DEFAULT_RUN_DIR",
    "LitMMCLI",
    "complete_fit_config",
    "dump_fit_config",
    "parse_command_line",
    "parse_fit_config",
    "read_fit_config",
]

DEFAULT_RUN_DIR = "runs/default"
PLAIN_PARSER = plain_lightning_parser_class()


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
        parser_kwargs.setdefault("epilog", fit_epilog())
        # Errors come back as exceptions (main prints one paragraph); no silent prefix matching of options.
        for scope in (parser_kwargs, *(parser_kwargs.setdefault(sub, {}) for sub in self.subcommands())):
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
        """Parses with :func:`parse_command_line` (as :func:`parse_fit_config` does)."""
        if isinstance(args, (dict, Namespace)):
            return super().parse_arguments(parser, args)
        self.config = parse_command_line(parser, sys.argv[1:] if args is None else list(args))

    def before_instantiate_classes(self) -> None:
        """Completes the config (:func:`complete_fit_config`) and chooses the precision when it is left empty."""
        # validate/test/predict write their own <subcommand>_config.yaml: config.yaml stays the fit config.
        subcommand = str(self.subcommand)
        self.save_config_kwargs["config_filename"] = (
            "config.yaml" if subcommand == "fit" else f"{subcommand}_config.yaml"
        )
        config = complete_fit_config(self.config.get(str(self.subcommand), self.config))
        resolve_references(config)  # quickstart: values -> the paths of the artefacts, built once, before any build
        # trainer.precision left empty: bf16-mixed where the hardware runs bf16 natively, else 32-true. Decided
        # where the run runs, not in complete_fit_config: a sweep freezes its run configs on the submitting machine.
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
            self._write_result(
                "failed", error=f"{type(err).__name__}: {error_message(err)}", trace=traceback.format_exc()
            )
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


def parse_command_line(parser: Any, args: list[str]) -> Namespace:
    """Parses ``lit-mm fit|validate|test|predict`` arguments as Lightning does, with lit-mm's one addition.

    ``--trainer.logger CSVLogger`` alone gets a ``save_dir`` placeholder (the run directory, see
    :func:`complete_fit_config`). A parse error carries ``valid_keys`` (the options of the subcommand) for the
    command line's "did you mean".
    """
    args = with_logger_save_dir(list(args))
    try:
        return parser.parse_args(args)
    except ArgumentError as err:
        err.valid_keys = _parser_keys(parser, args)
        raise


def complete_fit_config(config: Namespace) -> Namespace:
    """Fills what lit-mm derives from a parsed config, in place (and returns it); the same for every machine.

    - ``model.num_classes`` from the data when left empty (a different explicit value is a :class:`DataError`);
    - ``trainer.default_root_dir`` defaults to ``runs/default``;
    - loggers without ``save_dir`` write into the run directory, and ``last.ckpt`` goes to ``<run dir>/checkpoints``.

    ``trainer.precision`` is left as given: an empty one is decided where the run runs (:class:`LitMMCLI`).
    """
    model_args = config.model.get("init_args") if config.get("model") else None
    if model_args is not None and "num_classes" in model_args:
        data_classes = _data_num_classes(config.get("data"))
        if data_classes is not None and model_args.num_classes is None:
            model_args.num_classes = data_classes
        elif data_classes is not None and model_args.num_classes != data_classes:
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
    return config


class _FitParserOnly(LitMMCLI):
    """The ``lit-mm fit`` parser of :class:`LitMMCLI`, built and kept: nothing is parsed, instantiated or run."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """Only ``fit`` (building the other three subcommand parsers would triple the cost)."""
        return {"fit": LightningCLI.subcommands()["fit"]}

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self.config = Namespace(subcommand=None)

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass


@functools.cache
def _fit_parser_cli(require_data: bool = True) -> _FitParserOnly:
    """Built once per process: about a second (every model family is imported); each parse is a fraction of it.

    Without ``require_data`` the ``data`` section may be left out (LightningCLI's parser when no DataModule class
    is forced); everything else is the same parser.
    """
    kwargs = {} if require_data else {"datamodule_class": None}
    with warnings.catch_warnings():  # "args given while sys.argv holds the calling command's own arguments"
        warnings.simplefilter("ignore", UserWarning)
        return _FitParserOnly(args=[], **kwargs)


def parse_fit_config(args: Sequence[str], require_data: bool = True) -> Namespace:
    """The fit namespace ``lit-mm fit <args>`` would run, without instantiating or training anything.

    Args:
        args: the arguments a user gives ``lit-mm fit``: ``--config a.yaml --config b.yaml`` (merged left to
            right), dotted overrides (``--model.init_args.lora_r 8`` or ``--model.lora_r 8``,
            ``--trainer.max_epochs=3``), ``--seed_everything 1``.
        require_data: as ``lit-mm fit``, a config without a ``data`` section is an error; False accepts one
            (the commands that only build the model from it: ``chat``, ``export``, ``demo``, ...).

    Returns:
        The ``fit`` namespace: defaults filled, ``model.num_classes`` from the data, the run directory, logger
        and checkpoint folders set as ``lit-mm fit`` sets them (:func:`complete_fit_config`).

    Raises:
        ArgumentError: a config that does not validate (``lit-mm`` prints it as one paragraph naming the file
            and key).
        DataError: ``model.num_classes`` and the data's class count disagree.
    """
    cli = _fit_parser_cli(require_data)
    return complete_fit_config(parse_command_line(cli.parser, ["fit", *args])["fit"])


def dump_fit_config(config: Namespace) -> str:
    """The YAML of a fit namespace from :func:`parse_fit_config` (what ``lit-mm fit --config`` reads back)."""
    config = config.clone()
    config.pop("config", None)
    return _fit_parser_cli()._parser("fit").dump(config)


def read_fit_config(source: str | os.PathLike[str] | Sequence[str] | Namespace | None) -> Namespace | None:
    """A fit config given in any of the forms the commands accept, parsed by :func:`parse_fit_config`.

    The ``data`` section may be left out (the model-reading commands need only the model); when given, it is
    validated as ``lit-mm fit`` validates it.

    Args:
        source: a ``lit-mm fit`` YAML path; a list of fit arguments (``["--config", "a.yaml", "--config",
            "b.yaml", "--model.init_args.lora_r", "8"]``, what the command line collects); an already parsed
            fit namespace (returned as is); or None (no config: returns None).
    """
    if source is None or isinstance(source, Namespace):
        return source
    if isinstance(source, (str, os.PathLike)):
        return parse_fit_config(["--config", os.fspath(source)], require_data=False)
    return parse_fit_config([str(arg) for arg in source], require_data=False)


def resolve_model_references(args: dict[str, Any]) -> dict[str, Any]:
    """Resolves ``quickstart:`` values in a model's init arguments (from a config or a checkpoint), in place.

    For code that builds a model from saved hyper-parameters rather than through :class:`LitMMCLI`
    (``build_pandagpt``: chat, demo, serve, export, evaluate).
    """
    resolve_references(args, "model")
    return args
