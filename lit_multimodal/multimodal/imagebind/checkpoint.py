"""Loading ImageBind weights: the released ``imagebind_huge.pth`` layout, safetensors, PandaGPT state dicts.

Only tensors and plain containers are unpickled (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from lit_multimodal.errors import UserError
from lit_multimodal.training.safe_load import safe_torch_load

from .config import ImageBindConfig
from .model import ImageBindModel

__all__ = ["DTYPES", "PANDAGPT_PREFIX", "ImageBindCheckpointError", "build_imagebind", "load_imagebind_state"]

log = logging.getLogger(__name__)

PANDAGPT_PREFIX = "visual_encoder."
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_SHOWN = 10


class ImageBindCheckpointError(UserError):
    """A checkpoint that cannot be loaded into the ImageBind model; the message names the file and keys."""


def _torch_load(path: Path) -> object:
    # Memory-mapped where the format allows (a legacy pre-zip file is read without).
    return safe_torch_load(path, error=ImageBindCheckpointError, mmap=True)


def load_imagebind_state(path: str | Path) -> dict[str, Tensor]:
    """Reads an ImageBind state dict.

    Accepts the official layout (``torch.save`` of a plain state dict, e.g. ``imagebind_huge.pth``), the
    same tensors in a ``.safetensors`` file, and a PandaGPT-style full state dict whose ImageBind keys
    carry the prefix ``visual_encoder.``: those keys are kept without the prefix and every other key (the
    language model, projections) is dropped, which is logged.

    Args:
        path: ``.pth``/``.pt``/``.bin`` (torch) or ``.safetensors`` file.

    Returns:
        Key → tensor on the CPU (memory-mapped for torch files).

    Raises:
        ImageBindCheckpointError: If the file is missing, unreadable, or not a flat mapping of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageBindCheckpointError(f"{path}: ImageBind checkpoint not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = _torch_load(path)
    except ImageBindCheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure becomes one message naming the file
        raise ImageBindCheckpointError(
            f"{path}: cannot be read as a weights-only state dict ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ImageBindCheckpointError(f"{path}: expected a mapping of names to tensors, got {type(raw).__name__}")
    not_tensors = [k for k, v in raw.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise ImageBindCheckpointError(
            f"{path}: {len(not_tensors)} entries are not tensors (e.g. {not_tensors[:_SHOWN]}); "
            "expected a flat state dict such as imagebind_huge.pth"
        )
    prefixed = [k for k in raw if k.startswith(PANDAGPT_PREFIX)]
    if prefixed:
        dropped = len(raw) - len(prefixed)
        log.info(
            "%s: PandaGPT-style state dict; using its %d '%s' keys without the prefix, ignoring %d other keys",
            path,
            len(prefixed),
            PANDAGPT_PREFIX,
            dropped,
        )
        return {k[len(PANDAGPT_PREFIX) :]: raw[k] for k in prefixed}
    return dict(raw)


def _listing(title: str, items: list[str]) -> str:
    more = f" ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"{title} ({len(items)}): " + ", ".join(items[:_SHOWN]) + more


def check_state_dict(model: ImageBindModel, state: dict[str, Tensor], source: str | Path) -> None:
    """Checks that ``state`` has exactly the keys and shapes of ``model.state_dict()``.

    Args:
        model: Model (may live on the meta device).
        state: Tensors to load.
        source: File name quoted in the error.

    Raises:
        ImageBindCheckpointError: Listing missing keys, unexpected keys and shape mismatches (first 10 of
            each, with counts).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = [
            _listing(title, items)
            for title, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", shapes),
            )
            if items
        ]
        raise ImageBindCheckpointError(
            f"{source}: does not match the ImageBind architecture of the config; " + "; ".join(parts)
        )


def build_imagebind(
    config: ImageBindConfig | None = None,
    checkpoint: str | Path | None = None,
    dtype: str = "fp32",
    device: str | torch.device = "cpu",
) -> ImageBindModel:
    """Builds a frozen ImageBind encoder, optionally with weights from a checkpoint.

    With a checkpoint the model is built on the meta device and the file's tensors are assigned to it, so
    no random weights are allocated; the load is strict.

    Args:
        config: Architecture; ``ImageBindConfig.huge()`` when omitted.
        checkpoint: State-dict file (see :func:`load_imagebind_state`), or None for random weights.
        dtype: ``"fp32"``, ``"bf16"`` or ``"fp16"``; floating tensors only are converted.
        device: Device of the result.

    Returns:
        The model in eval mode with ``requires_grad=False`` everywhere.

    Raises:
        ImageBindCheckpointError: If the checkpoint cannot be read or does not match the config.
        ValueError: For an unknown ``dtype``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    config = config or ImageBindConfig.huge()
    if checkpoint is None:
        model = ImageBindModel(config)
    else:
        state = load_imagebind_state(checkpoint)
        with torch.device("meta"):
            model = ImageBindModel(config)
        check_state_dict(model, state, checkpoint)
        model.load_state_dict(state, strict=True, assign=True)
        left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
        if left:
            raise ImageBindCheckpointError(f"{checkpoint}: tensors not materialised by the checkpoint: {left[:_SHOWN]}")
    model.to(device=device, dtype=DTYPES[dtype])
    model.requires_grad_(False)
    return model.eval()
