"""Loading backbone weights from local files, with a report of what was loaded.

Every format (timm/torch, JAX ``.npz``, MAE, MoCo-v3) is read into a timm-named state dict by a reader in
:data:`READERS` (see :mod:`lit_multimodal.vision.checkpoint_readers`), then applied by
:func:`apply_state_dict`, which resamples the position embedding for another image size and turns a
missing, unexpected or mis-shaped tensor that matters into an error that names it. Files are read with
``torch.load(weights_only=True)``, safetensors or ``numpy.load(allow_pickle=False)``: no pickled object
from a user file is ever executed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from lit_multimodal.references import require_resolved
from lit_multimodal.vision.backbones import BackboneConfig
from lit_multimodal.vision.checkpoint_readers import (
    OFFICIAL_POOLING,
    READERS,
    CheckpointError,
    ReadCheckpoint,
    StateDict,
    detect_format,
    read_raw,
    torch_load,
)

__all__ = [
    "READERS",
    "CheckpointError",
    "LoadReport",
    "ReadCheckpoint",
    "apply_state_dict",
    "detect_format",
    "load_backbone_checkpoint",
    "resolve_checkpoint_path",
    "torch_load",
]

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """What loading a checkpoint did.

    Attributes:
        path: the file read.
        format: the reader used.
        loaded: number of tensors copied into the model.
        ignored: checkpoint keys deliberately not used (classifier heads, an MAE ``norm``, training metadata).
        kept_init: model keys absent from the file that keep their initialisation (an MAE ``fc_norm``).
        resampled: tensors resampled to the model's shape (the position embedding).
        notes: departures from the official use of the format (e.g. another pooling).
    """

    path: str
    format: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log."""
        parts = [f"loaded {self.loaded} tensors from {self.path} (format {self.format})"]
        if self.resampled:
            parts.append(f"resampled {self.resampled}")
        if self.ignored:
            shown = ", ".join(self.ignored[:6])
            parts.append(f"ignored {len(self.ignored)} keys ({shown}{' ...' * (len(self.ignored) > 6)})")
        if self.kept_init:
            parts.append(f"kept initialisation of {self.kept_init}")
        parts.extend(self.notes)
        return "; ".join(parts)


def resolve_checkpoint_path(config: BackboneConfig) -> Path:
    """The file behind ``config.checkpoint`` (a ``quickstart:`` reference must have been resolved before)."""
    assert config.checkpoint is not None
    require_resolved(config.checkpoint, "model.backbone.checkpoint")
    path = Path(config.checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"model.backbone.checkpoint: file {path} does not exist")
    return path


# Keys a backbone checkpoint may lack or carry without it mattering for a headless ViT.
_HEAD_PREFIXES = ("head.", "pre_logits.", "fc_norm.")


def apply_state_dict(
    vit: VisionTransformer,
    state: StateDict,
    path: str,
    fmt: str,
    ignored: Sequence[str] = (),
    sources: Mapping[str, str] | None = None,
) -> LoadReport:
    """Copies ``state`` into ``vit`` with strict checks on every tensor that matters.

    Ignored: classifier keys (``head.*``, ``pre_logits.*``); ``norm.*`` when the model pools by mean
    (it has no final norm, as the official MAE path). Kept at init: ``fc_norm.*`` when the file has none
    (official MAE behaviour: a frozen, identity-initialised LayerNorm).

    Args:
        vit: the model to fill.
        state: timm-named tensors.
        path: the file, for messages.
        fmt: the reader used, for the report.
        ignored: file keys the reader already dropped, reported first.
        sources: per timm key, where the reader took it from; quoted in error messages.

    Raises:
        CheckpointError: naming missing keys, unexpected keys, or a tensor with both shapes.
    """
    sources = sources or {}
    report = LoadReport(path=path, format=fmt, ignored=list(ignored))
    model_state = vit.state_dict()
    state = dict(state)
    mean_pooled = isinstance(vit.norm, torch.nn.Identity)
    for key in list(state):
        if key.startswith(("head.", "pre_logits.")) or (mean_pooled and key.startswith("norm.")):
            report.ignored.append(key)
            del state[key]
        elif key.startswith("fc_norm.") and key not in model_state:
            report.ignored.append(key)
            del state[key]
    missing = [k for k in model_state if k not in state]
    report.kept_init = [k for k in missing if k.startswith(_HEAD_PREFIXES)]
    missing = [f"{k} ({sources[k]})" if k in sources else k for k in missing if not k.startswith(_HEAD_PREFIXES)]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit backbone {type(vit).__name__} (depth {len(vit.blocks)}, width {vit.embed_dim}): "
            f"missing {len(missing)} keys {missing[:8]}{' ...' * (len(missing) > 8)}; "
            f"unexpected {len(unexpected)} keys {unexpected[:8]}{' ...' * (len(unexpected) > 8)}"
        )
    for key, tensor in state.items():
        want = model_state[key].shape
        if key == "pos_embed" and tensor.shape != want and tensor.ndim == 3 and tensor.shape[-1] == want[-1]:
            grid = vit.patch_embed.grid_size
            old_tokens = tensor.shape[1] - vit.num_prefix_tokens
            if old_tokens <= 0 or math.isqrt(old_tokens) ** 2 != old_tokens:
                raise CheckpointError(f"{path}: pos_embed {tuple(tensor.shape)} has no square token grid")
            state[key] = resample_abs_pos_embed(tensor, new_size=list(grid), num_prefix_tokens=vit.num_prefix_tokens)
            report.resampled.append(f"pos_embed {tuple(tensor.shape)} -> {tuple(want)}")
        elif tensor.shape != want:
            origin = f" ({sources[key]})" if key in sources else ""
            raise CheckpointError(
                f"{path}: tensor {key}{origin} has shape {tuple(tensor.shape)} in the file but {tuple(want)} "
                "in the model"
            )
    vit.load_state_dict(state, strict=False)
    report.loaded = len(state)
    return report


def load_backbone_checkpoint(vit: VisionTransformer, config: BackboneConfig) -> LoadReport:
    """Loads ``config.checkpoint`` into ``vit`` and logs what happened.

    The file is read once; with ``checkpoint_format: auto`` its format is detected from that content
    (:func:`detect_format`), otherwise the named reader checks that the file has its structure.

    Returns:
        The report (format, tensors loaded, ignored keys, kept-init keys, resampled tensors, notes).

    Raises:
        CheckpointError: for a missing or unsafe file, a format that does not match the file, or tensors
            that do not fit.
    """
    path = resolve_checkpoint_path(config)
    fmt = config.checkpoint_format
    if fmt != "auto" and fmt not in READERS:
        raise CheckpointError(f"model.backbone.checkpoint_format {fmt!r} is not one of {['auto', *READERS]}")
    raw = read_raw(path)
    if fmt == "auto":
        fmt = detect_format(path, raw)
    read: ReadCheckpoint = READERS[fmt](path, raw)
    del raw
    report = apply_state_dict(vit, read.state, str(path), fmt, ignored=read.ignored, sources=read.sources)
    official = OFFICIAL_POOLING.get(fmt)
    if official is not None and official != config.pooling:
        final_norm = "the file's final norm is used" if config.pooling == "cls" else "the file's final norm is unused"
        report.notes.append(
            f"note: the official code pools {fmt} backbones by {official}; this model pools by "
            f"{config.pooling} ({final_norm})"
        )
        log.warning(report.notes[-1])
    log.info(report.summary())
    return report
