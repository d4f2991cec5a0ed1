"""TensorBoard logging for run directories: the HParams tab shows what a sweep compares, trials read well.

TensorBoard's HParams dashboard shows five hyper-parameters by default: those marked ``differs`` first, then
in alphabetical order, so a run's ``tuning`` and ``tuned_percent`` (the columns a parameter-efficient-tuning
comparison is about) were hidden behind ``arch``, ``base_lr``, ``global_batch``, ... and every trial was
named after its folder. Lightning's logger writes the HParams summaries through a fixed path; this subclass
writes the same summaries with the key hyper-parameters marked and a readable trial (group) name.
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

__all__ = ["KEY_HPARAMS", "RunTensorBoardLogger", "trial_name"]

# Shown by default in the HParams tab (TensorBoard displays five: these, in alphabetical order).
KEY_HPARAMS = ("tuning", "tuned_percent", "task", "base_lr", "weight_decay")


def trial_name(params: dict[str, Any]) -> str:
    """``vpt_deep · dtd · lr 25 · wd 0.001 · seed 42`` from the run's flat hparams (the parts it has)."""
    parts = [str(params[key]) for key in ("tuning", "task") if key in params]
    for key, label in (("base_lr", "lr"), ("weight_decay", "wd"), ("seed", "seed")):
        if key in params:
            value = params[key]
            parts.append(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}")
    return " · ".join(parts)


def _rewrite(summary: Any, edit) -> Any:
    """Applies ``edit`` to the HParams plugin data inside a TensorBoard ``Summary`` proto."""
    value = summary.value[0]
    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
    edit(data)
    value.metadata.plugin_data.content = data.SerializeToString()
    return summary


class RunTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoard logger, with :data:`KEY_HPARAMS` shown by default and readable trial names."""

    @rank_zero_only
    def log_hyperparams(
        self, params: dict[str, Any] | Any, metrics: dict[str, Any] | None = None, step: int | None = None
    ) -> None:
        """Records hyper-parameters (``hparams.yaml``) and, with ``metrics``, the HParams summaries."""
        if not isinstance(metrics, dict) or not metrics:
            super().log_hyperparams(params, metrics, step)
            return
        super().log_hyperparams(params, None, step)  # hparams.yaml; no summaries without metrics
        from torch.utils.tensorboard.summary import hparams

        flat = self._sanitize_params(_flatten_dict(_convert_params(params)))
        self.log_metrics(metrics, step)
        exp, ssi, sei = hparams(flat, metrics)

        def mark(data: HParamsPluginData) -> None:
            for info in data.experiment.hparam_infos:
                if info.name in KEY_HPARAMS:
                    info.differs = True

        def name(data: HParamsPluginData) -> None:
            data.session_start_info.group_name = trial_name(flat)

        writer = self.experiment._get_file_writer()
        writer.add_summary(_rewrite(exp, mark), step)
        writer.add_summary(_rewrite(ssi, name), step)
        writer.add_summary(sei, step)
