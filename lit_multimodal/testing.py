"""Helpers for tests that run distributed strategies on CPU-only machines."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

__all__ = ["CPUDeepSpeedStrategy", "FirstStepGradients"]


class FirstStepGradients(Callback):
    """Saves the gradients of the first optimiser step on rank 0, after DDP has averaged them. For tests only.

    Lets a test compare what different strategies or device counts compute for the same batch.

    Args:
        path: the file written with ``torch.save``: parameter name -> gradient.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        """Writes the gradients once, before the first step changes the weights."""
        if trainer.global_step == 0 and trainer.is_global_zero:
            grads = {n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None}
            torch.save(grads, self.path)


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy made to run on CPU processes. For CPU tests only.

    Stock :class:`~lightning.pytorch.strategies.DeepSpeedStrategy` refuses any accelerator but CUDA. This
    subclass lets the ZeRO-2/ZeRO-3 code paths (partitioned parameters, sharded checkpoint directories,
    ``exclude_frozen_parameters``) be exercised in CI without a GPU: every rank is a CPU process and the
    process group uses gloo. It is far slower than real training and not meant for experiments. GPU runs
    use the stock strategies instead, e.g. ``--trainer.strategy deepspeed_stage_2`` or
    ``deepspeed_stage_3``.

    Every argument of :class:`~lightning.pytorch.strategies.DeepSpeedStrategy` is accepted unchanged, so
    the CLI form is ``--trainer.strategy lit_multimodal.testing.CPUDeepSpeedStrategy
    --trainer.strategy.stage 3`` (or ``class_path``/``init_args`` in a YAML config), together with
    ``--trainer.accelerator cpu``. The first run on a machine JIT-compiles DeepSpeed's CPU communication
    op with ninja and a C++ compiler (half a minute or more); the build is cached afterwards. On a machine
    that has a GPU, set ``DS_ACCELERATOR=cpu`` before DeepSpeed is imported.
    """

    def setup_environment(self) -> None:
        """Gives every CPU rank an indexed device and skips DeepSpeed's CUDA-only accelerator check.

        Raises:
            RuntimeError: when DeepSpeed has picked a non-CPU accelerator for this process.
        """
        from deepspeed.accelerator import get_accelerator

        if get_accelerator().device_name() != "cpu":
            raise RuntimeError(
                f"CPUDeepSpeedStrategy needs DeepSpeed's CPU accelerator, but DeepSpeed picked "
                f"{get_accelerator().device_name()!r}; set DS_ACCELERATOR=cpu before DeepSpeed is imported"
            )
        # DeepSpeed compares device indices with ranks, and a bare torch.device("cpu") has index None.
        if self.parallel_devices is not None:
            self.parallel_devices = [torch.device("cpu", index) for index in range(len(self.parallel_devices))]
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        """Initialises DeepSpeed's process group without the CUDA device-index validation."""
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()
