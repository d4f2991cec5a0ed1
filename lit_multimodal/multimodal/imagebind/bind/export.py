"""``lit-mm bind-export``: a complete ImageBind state dict with a bound encoder merged into the base weights.

The result has exactly the keys of the released ``imagebind_huge.pth`` layout for the architecture, so
``build_imagebind(config, path)`` loads it strictly and ``lit-mm embed`` / ``zeroshot`` / PandaGPT use it as they
use the released weights. A JSON file next to it records the architecture overrides and what was bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lit_multimodal.files import write_json_atomic
from lit_multimodal.training.checkpointing import read_module_checkpoint

from ..checkpoint import ImageBindCheckpointError, check_state_dict
from ..model import ImageBindModel
from .module import BindModule, base_imagebind

__all__ = ["bind_export", "read_bind_checkpoint"]


def read_bind_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trainable tensors and hyper-parameters of a ``lit-mm bind`` checkpoint (``*.ckpt`` or DeepSpeed folder).

    Raises:
        ImageBindCheckpointError: the file is missing or is not a bind checkpoint.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ImageBindCheckpointError(f"{path}: bind checkpoint not found")
    state, hparams = read_module_checkpoint(path, error=ImageBindCheckpointError)
    if not hparams:
        raise ImageBindCheckpointError(
            f"{path}: not a Lightning checkpoint of lit-mm bind (no state_dict/hyper_parameters)"
        )
    if "modality" not in hparams or "tuning" not in hparams:
        raise ImageBindCheckpointError(f"{path}: hyper-parameters are not those of BindModule: {sorted(hparams)[:10]}")
    return state, hparams


def bind_export(ckpt: str, out: str, checkpoint: str | None = None) -> dict[str, Any]:
    """Writes the full ImageBind state dict: the base weights with the bound encoder's tensors replaced.

    Args:
        ckpt: ``last.ckpt`` of ``lit-mm bind`` (trainable tensors only).
        out: output file, ``.pth`` (``torch.save``, like ``imagebind_huge.pth``) or ``.safetensors``.
        checkpoint: base weights; default: the ``checkpoint`` the binding started from (stored in the ckpt).

    Returns:
        The written paths, the bound modality and how many tensors changed.
    """
    state, hparams = read_bind_checkpoint(ckpt)
    accepted = {k: v for k, v in hparams.items() if k in BindModule.__init__.__code__.co_varnames}
    accepted = {k: tuple(v) if isinstance(v, list) else v for k, v in accepted.items()}
    if checkpoint is not None:
        accepted["checkpoint"] = checkpoint
    module = BindModule(**accepted)
    expected = module.trainable_state_keys()
    missing = sorted(expected - set(state))
    if missing:
        raise ImageBindCheckpointError(f"{ckpt}: trainable tensors missing: {missing[:8]}")
    module.load_state_dict(state, strict=False)
    bound = module.merged_state_dict()

    base = base_imagebind(accepted.get("preset", "huge"), accepted.get("checkpoint"), accepted.get("config"))
    full = {k: v.detach().clone() for k, v in base.state_dict().items()}
    unknown = sorted(set(bound) - set(full))
    if unknown:
        raise ImageBindCheckpointError(f"{ckpt}: bound tensors not in the ImageBind layout: {unknown[:8]}")
    changed = sum(not torch.equal(full[k], bound[k]) if full[k].shape == bound[k].shape else 1 for k in bound)
    full.update(bound)
    with torch.device("meta"):
        reference = ImageBindModel(base.config)
    check_state_dict(reference, full, out)

    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in full.items()}, str(path))
    else:
        torch.save(full, path)
    info = {
        "bound_modality": module.modality,
        "tuning": accepted.get("tuning"),
        "preset": accepted.get("preset", "huge"),
        "config": accepted.get("config") or {},
        "base_checkpoint": accepted.get("checkpoint"),
        "temperature": module.temperature,
        "source_ckpt": str(ckpt),
    }
    sidecar = path.with_name(path.name + ".json")
    write_json_atomic(sidecar, info, sort_keys=False)
    return {"out": str(path), "info": str(sidecar), "tensors": len(full), "changed_tensors": changed, **info}
