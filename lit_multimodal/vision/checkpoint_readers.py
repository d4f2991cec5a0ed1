"""Readers that turn a backbone weights file into a timm-named state dict.

Each reader takes the file's already-loaded content (see :func:`read_raw`) and returns a
:class:`ReadCheckpoint`; :func:`lit_multimodal.vision.checkpoints.apply_state_dict` then checks every
tensor against the model. Formats:

- ``timm``: a timm/torch state dict (``.safetensors``, ``.pth``), possibly nested and DDP-prefixed.
- ``jax``: the ``.npz`` of google-research/vision_transformer (``imagenet21k_ViT-B_16.npz``, L/16, H/14).
- ``mae``: MAE pre-training (``mae_pretrain_vit_base.pth``): ``{"model": encoder state dict}``.
- ``mocov3``: a MoCo-v3 linear-probe checkpoint (``linear-vit-b-300ep.pth.tar``):
  ``{"state_dict": {"module.<timm key>": ...}, "epoch", "arch", ...}``.

Nothing is unpickled beyond tensors and plain containers: ``torch.load(weights_only=True)``,
safetensors and ``numpy.load(allow_pickle=False)`` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_multimodal.errors import CheckpointError
from lit_multimodal.file_kind import describe_content
from lit_multimodal.training.safe_load import safe_torch_load

StateDict = dict[str, torch.Tensor]


@dataclass
class ReadCheckpoint:
    """A file's tensors under timm names.

    Attributes:
        state: timm-named tensors (keys the reader could not map keep their file name, so the strict
            load reports them as unexpected).
        ignored: file keys the reader deliberately dropped (classifier heads, training metadata).
        sources: for tensors converted from other names, where they come from (or which file keys are
            absent); error messages quote it.
    """

    state: StateDict
    ignored: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def torch_load(path: Path) -> object:
    """``torch.load`` restricted to tensors and plain containers."""
    return safe_torch_load(path, error=CheckpointError)


def _npz_load(path: Path) -> dict[str, np.ndarray]:
    kind = describe_content(path)
    if kind != "a zip archive":  # numpy would call any of these "pickled data"
        raise CheckpointError(f"{path}: the file is {kind}, not an .npz archive of arrays")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as err:  # noqa: BLE001 - object arrays, a broken zip, a bare .npy: one message
        raise CheckpointError(
            f"{path}: cannot be read as a .npz of plain arrays without pickle ({type(err).__name__}: {err})"
        ) from None


def read_raw(path: Path) -> object:
    """The file's content, loaded once and shared by format detection and the reader.

    Returns:
        ``dict[str, numpy.ndarray]`` for ``.npz``, ``dict[str, Tensor]`` for ``.safetensors``, otherwise
        whatever ``torch.load(weights_only=True)`` returns.

    Raises:
        CheckpointError: for a file that holds pickled objects or is not readable.
    """
    if path.suffix == ".npz":
        return _npz_load(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot be read as safetensors ({type(err).__name__}: {err})") from None
    return torch_load(path)


# -- format detection ------------------------------------------------------------------------------


def _is_npz(raw: object) -> bool:
    return isinstance(raw, dict) and bool(raw) and all(isinstance(v, np.ndarray) for v in raw.values())


def _mae_model(raw: object) -> dict | None:
    if isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "patch_embed.proj.weight" in raw["model"]:
        return raw["model"]
    return None


def _moco_state(raw: object) -> dict | None:
    state = raw.get("state_dict") if isinstance(raw, dict) else None
    if isinstance(state, dict) and any(isinstance(k, str) and k.startswith("module.") for k in state):
        return state
    return None


def detect_format(path: Path, raw: object | None = None) -> str:
    """The reader for a file, from its suffix and, for torch files, its top-level structure.

    ``.npz`` is ``jax``; ``.safetensors`` is ``timm``; a torch file is ``mae`` when it holds a ``model``
    dict with ``patch_embed.proj.weight`` and neither ``fc_norm`` nor a classifier head (MAE pre-training),
    ``mocov3`` when it holds a ``state_dict`` with ``module.`` keys, otherwise ``timm``.

    Args:
        path: the file.
        raw: its content from :func:`read_raw`, if already loaded.
    """
    if path.suffix == ".npz":
        return "jax"
    if path.suffix == ".safetensors":
        return "timm"
    return _format_of(read_raw(path) if raw is None else raw)


def _format_of(raw: object) -> str:
    if _is_npz(raw):
        return "jax"
    model = _mae_model(raw)
    if model is not None and not any(str(k).startswith(("fc_norm.", "head.")) for k in model):
        return "mae"
    if _moco_state(raw) is not None:
        return "mocov3"
    return "timm"


def _describe(raw: object) -> str:
    if _is_npz(raw):
        return f"a .npz of arrays with keys {sorted(raw)[:6]}"
    if isinstance(raw, dict):
        return f"top-level keys {list(raw)[:8]}"
    return f"a {type(raw).__name__}"


def _mismatch(path: Path, fmt: str, expected: str, raw: object) -> CheckpointError:
    looks = _format_of(raw)
    hint = f", which looks like checkpoint_format {looks!r}" if looks != fmt else ""
    return CheckpointError(f"{path}: checkpoint_format {fmt!r} expects {expected}; found {_describe(raw)}{hint}")


def _top_level(raw: object) -> dict:
    assert isinstance(raw, dict)  # checked by the caller's structure test
    return raw


def _tensor_dict(path: Path, fmt: str, what: str, state: dict) -> StateDict:
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: checkpoint_format {fmt!r}: {what} holds non-tensor entries {bad[:8]}")
    return dict(state)


# -- readers -----------------------------------------------------------------------------------------


def _unwrap(obj: object, path: Path) -> StateDict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    found = list(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: no state dict of tensors found (top level: {found})")


def read_timm(path: Path, raw: object) -> ReadCheckpoint:
    """A timm/torch state dict from ``.safetensors`` or ``.pth``/``.pt``/``.bin``.

    The tensors may be nested under ``state_dict``/``model``; a ``module.`` prefix from DDP is stripped.
    """
    if _is_npz(raw):
        raise _mismatch(path, "timm", "a timm/torch state dict", raw)
    state = _unwrap(raw, path)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return ReadCheckpoint(state)


def read_mae(path: Path, raw: object) -> ReadCheckpoint:
    """MAE pre-training: the encoder state dict under ``model``.

    The released ``mae_pretrain_vit_*.pth`` hold the encoder only (``cls_token``, ``pos_embed``,
    ``patch_embed.*``, ``blocks.*``, ``norm.*``); a pre-training decoder (``decoder_*``, ``mask_token``),
    if present, is ignored. There is no ``fc_norm``: under mean pooling the model keeps its
    identity-initialised one, as the official code does.
    """
    model = _mae_model(raw)
    if model is None:
        raise _mismatch(path, "mae", "a torch file with a 'model' dict holding patch_embed.proj.weight", raw)
    ignored = [k for k in _top_level(raw) if k != "model"]
    state = {}
    for key, value in _tensor_dict(path, "mae", "'model'", model).items():
        if key.startswith("decoder_") or key == "mask_token":
            ignored.append(key)
        else:
            state[key] = value
    return ReadCheckpoint(state, ignored=ignored)


def read_mocov3(path: Path, raw: object) -> ReadCheckpoint:
    """MoCo-v3 linear-probe checkpoint: ``module.``-prefixed tensors under ``state_dict``.

    As the official loader: ``module.`` keys are kept with the prefix stripped, every other key (in
    ``state_dict`` and at the top level: ``epoch``, ``arch``, ``optimizer`` ...) is dropped and reported.
    The linear-probe ``head.*`` is ignored by the strict load. Any file name works.
    """
    state_dict = _moco_state(raw)
    if state_dict is None:
        raise _mismatch(path, "mocov3", "a torch file with a 'state_dict' of 'module.' keys", raw)
    ignored = [k for k in _top_level(raw) if k != "state_dict"]
    kept = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            kept[key[len("module.") :]] = value
        else:
            ignored.append(f"state_dict/{key}")
    return ReadCheckpoint(_tensor_dict(path, "mocov3", "'state_dict'", kept), ignored=ignored)


# JAX ViT (google-research/vision_transformer) -> timm. Written out instead of timm's ``_load_weights``,
# which copies into the model in place without reporting missing, unused or mis-shaped keys; here every
# tensor goes through the strict, reported load and errors can name the npz key.
def _qkv_weight(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([w.reshape(w.shape[0], -1).T for w in (q, k, v)])


def _qkv_bias(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.concatenate([b.reshape(-1) for b in (q, k, v)])


_Convert = tuple[tuple[str, ...], tuple[int, ...], Callable[..., np.ndarray]]


def _jax_plan(blocks: list[int]) -> dict[str, _Convert]:
    """Per timm key: the npz keys it is made of, their expected ndim, and the conversion."""

    def same(a: np.ndarray) -> np.ndarray:
        return a

    plan: dict[str, _Convert] = {
        "patch_embed.proj.weight": (("embedding/kernel",), (4,), lambda a: a.transpose(3, 2, 0, 1)),  # HWIO->OIHW
        "patch_embed.proj.bias": (("embedding/bias",), (1,), same),
        "cls_token": (("cls",), (3,), same),
        "pos_embed": (("Transformer/posembed_input/pos_embedding",), (3,), same),
        "norm.weight": (("Transformer/encoder_norm/scale",), (1,), same),
        "norm.bias": (("Transformer/encoder_norm/bias",), (1,), same),
    }
    for i in blocks:
        src, dst = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        mha = f"{src}MultiHeadDotProductAttention_1/"
        qkv = [f"{mha}{n}" for n in ("query", "key", "value")]
        plan |= {
            f"{dst}norm1.weight": ((f"{src}LayerNorm_0/scale",), (1,), same),
            f"{dst}norm1.bias": ((f"{src}LayerNorm_0/bias",), (1,), same),
            f"{dst}attn.qkv.weight": (tuple(f"{n}/kernel" for n in qkv), (3, 3, 3), _qkv_weight),
            f"{dst}attn.qkv.bias": (tuple(f"{n}/bias" for n in qkv), (2, 2, 2), _qkv_bias),
            f"{dst}attn.proj.weight": ((f"{mha}out/kernel",), (3,), lambda a: a.reshape(-1, a.shape[-1]).T),
            f"{dst}attn.proj.bias": ((f"{mha}out/bias",), (1,), same),
            f"{dst}norm2.weight": ((f"{src}LayerNorm_2/scale",), (1,), same),
            f"{dst}norm2.bias": ((f"{src}LayerNorm_2/bias",), (1,), same),
            f"{dst}mlp.fc1.weight": ((f"{src}MlpBlock_3/Dense_0/kernel",), (2,), lambda a: a.T),
            f"{dst}mlp.fc1.bias": ((f"{src}MlpBlock_3/Dense_0/bias",), (1,), same),
            f"{dst}mlp.fc2.weight": ((f"{src}MlpBlock_3/Dense_1/kernel",), (2,), lambda a: a.T),
            f"{dst}mlp.fc2.bias": ((f"{src}MlpBlock_3/Dense_1/bias",), (1,), same),
        }
    return plan


_BLOCK = re.compile(r"Transformer/encoderblock_(\d+)/")


def read_jax(path: Path, raw: object) -> ReadCheckpoint:
    """A ViT ``.npz`` of google-research/vision_transformer (``imagenet21k_ViT-B_16.npz`` and other sizes).

    Kernels are transposed to torch layout (``embedding/kernel`` HWIO -> OIHW, dense kernels transposed),
    ``query/key/value`` are fused into timm's ``attn.qkv``. ``pre_logits/*`` (the in21k representation
    layer) and ``head/*`` are ignored, as in the official code. Any other npz key that is not mapped is
    passed on under its own name, so the strict load reports it as unexpected.
    """
    if not _is_npz(raw):
        raise _mismatch(path, "jax", "a .npz of google-research/vision_transformer", raw)
    arrays: dict[str, np.ndarray] = dict(_top_level(raw))
    blocks = sorted({int(m.group(1)) for key in arrays if (m := _BLOCK.match(key))})
    result = ReadCheckpoint({})
    used: set[str] = set()
    for target, (keys, ndims, convert) in _jax_plan(blocks).items():
        absent = [k for k in keys if k not in arrays]
        if absent:
            result.sources[target] = f"npz key {', '.join(absent)} absent"
            used.update(k for k in keys if k in arrays)  # named by the missing target, not as unexpected
            continue
        shapes = ", ".join(f"{k} {tuple(arrays[k].shape)}" for k in keys)
        if any(arrays[k].ndim != n for k, n in zip(keys, ndims, strict=True)):
            raise CheckpointError(f"{path}: npz {shapes}: expected {ndims[0]}-d arrays for {target}")
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(convert(*(arrays[k] for k in keys))))
        except ValueError as err:
            raise CheckpointError(f"{path}: npz {shapes} cannot form {target} ({err})") from None
        result.state[target] = tensor
        result.sources[target] = f"from npz {shapes}"
        used.update(keys)
    for key, array in arrays.items():
        if key in used:
            continue
        if key.startswith(("pre_logits/", "head/")):
            result.ignored.append(key)
        else:
            result.state[key] = torch.from_numpy(np.ascontiguousarray(array))
    return result


Reader = Callable[[Path, Any], ReadCheckpoint]
READERS: dict[str, Reader] = {"timm": read_timm, "jax": read_jax, "mae": read_mae, "mocov3": read_mocov3}

# The pooling of the official code per format; another choice is allowed and noted in the load report.
OFFICIAL_POOLING = {"jax": "cls", "mae": "mean", "mocov3": "cls"}
