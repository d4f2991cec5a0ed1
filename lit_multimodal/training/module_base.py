"""``LitMMModule``: the shell every lit-mm LightningModule shares around its own model and steps.

It owns what is the same for image classification, PandaGPT and binding: trainable-only checkpoints (from
:class:`~lit_multimodal.training.checkpointing.TrainableOnlyCheckpoints`), the parameter counts and tuned
percents (ZeRO-3 aware), the run record that ``lit-mm fit`` writes into ``result.json`` (``param_counts`` and
:meth:`LitMMModule.curated_hparams`), the one TensorBoard hparams declaration per fit, ``train/lr`` logging and
DeepSpeed's ``exclude_frozen_parameters`` switch. A subclass says what it counts and what it records:

- :meth:`~LitMMModule.counted_parameters`, :meth:`~LitMMModule.is_added_parameter`,
  :meth:`~LitMMModule.is_backbone_parameter`: which parameters, and which of them are backbone or added;
- :meth:`~LitMMModule.run_hparams`: its own flat hparams (the shared ones are added here);
- :attr:`~LitMMModule.hparam_metrics`, :attr:`~LitMMModule.lr_log_interval`, :attr:`~LitMMModule.backbone_label`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lit_multimodal.training.checkpointing import TrainableOnlyCheckpoints
from lit_multimodal.training.loggers import log_hparams
from lit_multimodal.training.param_counts import ParamCounts, count_named_parameters

__all__ = ["LitMMModule"]


class LitMMModule(TrainableOnlyCheckpoints):
    """A LightningModule with trainable-only checkpoints, parameter accounting and the run's hparams record.

    :meth:`on_fit_start` turns on DeepSpeed's ``exclude_frozen_parameters``, counts the parameters (after any
    sharding) into :attr:`param_counts`, prints both tuned percents and declares the TensorBoard hparams.
    A subclass that overrides it calls ``super().on_fit_start()``.
    """

    #: Metrics declared to TensorBoard's HParams tab once per fit; the same names are logged as scalars.
    hparam_metrics: ClassVar[tuple[str, ...]] = ()
    #: When ``train/lr`` is logged: once per epoch (epoch-stepped schedules), per optimizer step, or never.
    lr_log_interval: ClassVar[Literal["epoch", "step"] | None] = None
    #: What the backbone is called in the parameter line (``backbone``, ``LLM``, ``encoder``).
    backbone_label: ClassVar[str] = "backbone"

    def __init__(self) -> None:
        super().__init__()
        self.param_counts: ParamCounts | None = None

    # -- parameter accounting ----------------------------------------------------------------------
    def counted_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        """The ``(name, parameter)`` pairs the counts cover (default: every parameter of the module)."""
        return self.named_parameters()

    def is_added_parameter(self, name: str) -> bool:
        """Whether the tuning method added the parameter ``name`` (a name of :meth:`counted_parameters`)."""
        return False

    def is_backbone_parameter(self, name: str) -> bool:
        """Whether a parameter not added by the tuning method belongs to the pre-trained backbone."""
        return True

    def count_parameters(self) -> ParamCounts:
        """Total, trainable, backbone and added parameters; correct under ZeRO-3 partitioning."""
        return count_named_parameters(self.counted_parameters(), self.is_backbone_parameter, self.is_added_parameter)

    def param_summary(self) -> str:
        """The parameter line printed when a fit starts."""
        counts = self.param_counts or self.count_parameters()
        label = self.backbone_label
        return (
            f"parameters: total {counts.total:,}, trainable {counts.trainable:,}, {label} {counts.backbone:,}; "
            f"tuned percent {counts.tuned_percent:.4f} % of all, {counts.tuned_percent_of_backbone:.4f} % of {label}"
        )

    # -- the run record ----------------------------------------------------------------------------
    def global_batch_size(self) -> int:
        """Per-device batch × devices × gradient accumulation (0 when no data module tells the batch size)."""
        per_device = getattr(getattr(self.trainer, "datamodule", None), "batch_size", None) or 0
        return int(per_device) * self.trainer.world_size * self.trainer.accumulate_grad_batches

    def run_hparams(self) -> dict[str, Any]:
        """This model's own flat hparams (method, sizes, learning rate, ...); :meth:`curated_hparams` adds the rest."""
        return {}

    def curated_hparams(self) -> dict[str, Any]:
        """The flat hparams shown in TensorBoard's HParams tab and written into ``result.json``.

        :meth:`run_hparams`, then the task, seed, global batch and the parameter counts.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        counts = self.param_counts or self.count_parameters()
        return {
            **self.run_hparams(),
            "task": getattr(datamodule, "dataset_name", "unknown"),
            "seed": int(os.environ.get("PL_GLOBAL_SEED", -1)),  # set by seed_everything
            "global_batch": self.global_batch_size() if datamodule is not None else 0,
            "trainable_params": counts.trainable,
            "total_params": counts.total,
            "tuned_percent": round(counts.tuned_percent, 6),
            "tuned_percent_of_backbone": round(counts.tuned_percent_of_backbone, 6),
        }

    def declared_metrics(self) -> dict[str, float]:
        """The :attr:`hparam_metrics` of the splits this run has, with placeholder values.

        Declaring a metric writes a 0 placeholder that TensorBoard shows until a real value replaces it, so the
        metrics of a split the data module does not have (``has_split``; a search run has no test split) are left
        out.
        """
        has_split = getattr(getattr(self.trainer, "datamodule", None), "has_split", lambda role: True)
        return {name: 0.0 for name in self.hparam_metrics if has_split(name.split("/")[0])}

    # -- fit start -----------------------------------------------------------------------------------
    def exclude_frozen_parameters_under_deepspeed(self) -> None:
        """Turns on DeepSpeed's ``exclude_frozen_parameters``.

        DeepSpeed writes module weights itself and never sees the state dict that :meth:`on_save_checkpoint`
        filters, so without it a DeepSpeed checkpoint would hold the frozen backbone as well.
        """
        from lightning.pytorch.strategies import DeepSpeedStrategy

        strategy = self.trainer.strategy
        if isinstance(strategy, DeepSpeedStrategy) and not strategy.exclude_frozen_parameters:
            strategy.exclude_frozen_parameters = True
            rank_zero_info("DeepSpeed: exclude_frozen_parameters on; checkpoints keep trainable tensors only")

    def on_fit_start(self) -> None:
        """DeepSpeed's frozen-parameter switch, the parameter counts and line, and the TensorBoard hparams."""
        self.exclude_frozen_parameters_under_deepspeed()
        self.param_counts = self.count_parameters()
        rank_zero_info(self.param_summary())
        if self.logger is not None:
            log_hparams(self.loggers, self.curated_hparams(), self.declared_metrics())

    # -- learning-rate logging -----------------------------------------------------------------------
    def _log_lr(self, on_step: bool) -> None:
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=on_step, on_epoch=not on_step)

    def on_train_epoch_start(self) -> None:
        """Logs the epoch's learning rate when :attr:`lr_log_interval` is ``epoch``."""
        if self.lr_log_interval == "epoch":
            self._log_lr(on_step=False)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Logs the step's learning rate when :attr:`lr_log_interval` is ``step``."""
        if self.lr_log_interval == "step":
            self._log_lr(on_step=True)
