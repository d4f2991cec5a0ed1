"""The HParams tab of a run: tuning and tuned % among the five columns TensorBoard shows, readable trials."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.backend_context import _sort_and_reduce_to_hparams_limit
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from lit_multimodal.training.tensorboard import RunTensorBoardLogger

PARAMS = {
    "tuning": "vpt_deep",
    "num_prompts": 10,
    "arch": "vit_b16",
    "task": "dtd",
    "seed": 42,
    "base_lr": 25.0,
    "lr": 0.125,
    "weight_decay": 0.001,
    "global_batch": 64,
    "trainable_params": 1000,
    "total_params": 86_000_000,
    "tuned_percent": 0.0012,
    "tuned_percent_of_backbone": 0.0013,
}


def test_key_hparams_are_shown_by_default_and_trials_have_readable_names(tmp_path):
    logger = RunTensorBoardLogger(save_dir=str(tmp_path), name="", version="", default_hp_metric=False)
    logger.log_hyperparams(PARAMS, {"val/top1": 0.0})
    logger.finalize("success")
    content = EventAccumulator(str(tmp_path)).Reload().PluginTagToContent("hparams")
    experiment = HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert len(experiment.hparam_infos) == len(PARAMS)
    # What TensorBoard's backend sends and its frontend ticks by default: the first five after sorting.
    _sort_and_reduce_to_hparams_limit(experiment)
    shown = [info.name for info in experiment.hparam_infos][:5]
    assert {"tuning", "tuned_percent"} <= set(shown)
    start = HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.group_name == "vpt_deep · dtd · lr 25 · wd 0.001 · seed 42"
    assert start.hparams["tuned_percent"].number_value == 0.0012
    assert (tmp_path / "hparams.yaml").is_file()
