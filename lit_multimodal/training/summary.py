"""The model summary without a FLOPs column of zeros.

Lightning counts FLOPs only when the module has an ``example_input_array``; without one every row and
the total read 0, which looks like a fault. :func:`quiet_model_summary` swaps the trainer's default
summary callback (plain or rich) for :class:`QuietModelSummary`, which leaves the FLOPs out when none
were counted and is otherwise Lightning's plain table.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelSummary, RichModelSummary


class QuietModelSummary(ModelSummary):
    """Lightning's model summary; the FLOPs column and total are dropped when the count is zero."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        """Logs the table; without counted FLOPs, without the FLOPs column (the total line is filtered)."""
        if not total_flops:
            summary_data = [column for column in summary_data if column[0] != "FLOPs"]
        ModelSummary.summarize(
            summary_data, total_parameters, trainable_parameters, model_size, total_training_modes, total_flops
        )


def quiet_model_summary(trainer: Any) -> None:
    """Replaces Lightning's default summary callback (plain or rich) by :class:`QuietModelSummary`."""
    for i, callback in enumerate(trainer.callbacks):
        if type(callback) in (ModelSummary, RichModelSummary):
            trainer.callbacks[i] = QuietModelSummary(max_depth=callback._max_depth)
