"""Loading backbone weights from local files, with a report of what was loaded.

Every format is read into a timm-named state dict by a reader in :data:`READERS`, then applied by
:func:`apply_state_dict`, which resamples the position embedding for another image size and turns a
missing, unexpected or mis-shaped tensor that matters into an error that names it. Files are read with
``torch.load(weights_only=True)`` or safetensors: no pickled object from a user file is ever executed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from lit_multimodal.vision.backbones import BackboneConfig

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
QUICKSTART_SCHEME = "quickstart:"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the tensors at fault."""


@dataclass
class LoadReport:
    """What loading a checkpoint did.

    Attributes:
        path: the file read.
        format: the reader used.
        loaded: number of tensors copied into the model.
        ignored: checkpoint keys deliberately not used (classifier heads, an MAE ``norm``).
        kept_init: model keys absent from the file that keep their initialisation (an MAE ``fc_norm``).
        resampled: tensors resampled to the model's shape (the position embedding).
    """

    path: str
    format: str
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)
    kept_init: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log."""
        parts = [f"loaded {self.loaded} tensors from {self.path} ({self.format})"]
        if self.resampled:
            parts.append(f"resampled {self.resampled}")
        if self.ignored:
            parts.append(
                f"ignored {len(self.ignored)} keys ({', '.join(self.ignored[:4])}{' ...' * (len(self.ignored) > 4)})"
            )
        if self.kept_init:
            parts.append(f"kept initialisation of {self.kept_init}")
        return "; ".join(parts)


def torch_load(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure becomes one clear message
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only torch checkpoint ({type(err).__name__}: {err})"
        ) from None


def _unwrap(obj: object, path: Path) -> StateDict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    found = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: no state dict of tensors found (top level: {found})")


def read_timm(path: Path) -> StateDict:
    """A timm/torch state dict from ``.safetensors`` or ``.pth``/``.pt``/``.bin``.

    The tensors may be nested under ``state_dict``/``model``; a ``module.`` prefix from DDP is stripped.
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = _unwrap(torch_load(path), path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


READERS: dict[str, Callable[[Path], StateDict]] = {"timm": read_timm}


def detect_format(path: Path) -> str:
    """The reader for a file; every supported file is a timm/torch state dict for now."""
    return "timm"


def resolve_checkpoint_path(config: BackboneConfig) -> Path:
    """The file behind ``config.checkpoint``; ``quickstart:...`` is built on first use."""
    assert config.checkpoint is not None
    if config.checkpoint.startswith(QUICKSTART_SCHEME):
        from lit_multimodal.vision.quickstart_backbone import ensure_quickstart_backbone

        return ensure_quickstart_backbone(config)
    path = Path(config.checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"model.backbone.checkpoint: file {path} does not exist")
    return path


# Keys a backbone checkpoint may lack or carry without it mattering for a headless ViT.
_HEAD_PREFIXES = ("head.", "pre_logits.", "fc_norm.")


def apply_state_dict(vit: VisionTransformer, state: StateDict, path: str, fmt: str) -> LoadReport:
    """Copies ``state`` into ``vit`` with strict checks on every tensor that matters.

    Ignored: classifier keys (``head.*``, ``pre_logits.*``); ``norm.*`` when the model pools by mean
    (it has no final norm, as the official MAE path). Kept at init: ``fc_norm.*`` when the file has none
    (official MAE behaviour: a frozen, identity-initialised LayerNorm).

    Raises:
        CheckpointError: naming missing keys, unexpected keys, or a tensor with both shapes.
    """
    report = LoadReport(path=path, format=fmt)
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
    missing = [k for k in missing if not k.startswith(_HEAD_PREFIXES)]
    unexpected = [k for k in state if k not in model_state]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit backbone {type(vit).__name__} (depth {len(vit.blocks)}, width {vit.embed_dim}): "
            f"missing {len(missing)} keys {missing[:8]}{' ...' * (len(missing) > 8)}; "
            f"unexpected {len(unexpected)} keys {unexpected[:8]}{' ...' * (len(unexpected) > 8)}"
        )
    for key, tensor in state.items():
        want = model_state[key].shape
        if key == "pos_embed" and tensor.shape != want and tensor.shape[-1] == want[-1]:
            grid = vit.patch_embed.grid_size
            old_tokens = tensor.shape[1] - vit.num_prefix_tokens
            if math.isqrt(old_tokens) ** 2 != old_tokens:
                raise CheckpointError(f"{path}: pos_embed {tuple(tensor.shape)} has no square token grid")
            state[key] = resample_abs_pos_embed(tensor, new_size=list(grid), num_prefix_tokens=vit.num_prefix_tokens)
            report.resampled.append(f"pos_embed {tuple(tensor.shape)} -> {tuple(want)}")
        elif tensor.shape != want:
            raise CheckpointError(
                f"{path}: tensor {key} has shape {tuple(tensor.shape)} in the file but {tuple(want)} in the model"
            )
    vit.load_state_dict(state, strict=False)
    report.loaded = len(state)
    return report


def load_backbone_checkpoint(vit: VisionTransformer, config: BackboneConfig) -> LoadReport:
    """Loads ``config.checkpoint`` into ``vit`` and logs what happened.

    Raises:
        CheckpointError: for a missing file, an unknown format, or tensors that do not fit.
    """
    path = resolve_checkpoint_path(config)
    fmt = detect_format(path) if config.checkpoint_format == "auto" else config.checkpoint_format
    if fmt not in READERS:
        raise CheckpointError(f"model.backbone.checkpoint_format {fmt!r} is not one of {sorted(READERS)}")
    state = READERS[fmt](path)
    report = apply_state_dict(vit, state, str(path), fmt)
    log.info(report.summary())
    return report
