"""PandaGPT weights in and out: training checkpoints → official delta, peft adapter, merged model; delta import.

- The official delta ``pytorch_model.pt`` is ``torch.save`` of a plain dict with the trainable tensors under
  the official names (``llama_model.base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.default.weight``,
  ..., ``llama_proj.weight``, ``llama_proj.bias``); :class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT`
  uses the same attribute names, so its trainable state-dict keys are exactly these.
- The peft adapter folder is what ``PeftModel.from_pretrained(base, folder)`` reads (written by peft's own
  ``save_pretrained``), with the projection next to it in ``llama_proj.safetensors``.
- ``merge`` folds ``W += B A (alpha / r)`` into the base weights (peft ``merge_and_unload``) and writes a plain
  transformers model folder (weights and tokenizer) plus ``llama_proj.safetensors``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lit_multimodal.errors import CheckpointError
from lit_multimodal.training.checkpointing import read_module_checkpoint

if TYPE_CHECKING:
    from jsonargparse import Namespace

log = logging.getLogger(__name__)

__all__ = [
    "DELTA_FILE",
    "DeltaCheckpointError",
    "build_pandagpt",
    "delta_state_dict",
    "export",
    "load_delta",
    "model_init_args",
    "read_trainable_state",
]

DELTA_FILE = "pytorch_model.pt"
PROJ_FILE = "llama_proj.safetensors"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"


class DeltaCheckpointError(CheckpointError):
    """A PandaGPT checkpoint that cannot be read or does not fit the model; the message names the file."""


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and hyper-parameters of a PandaGPT checkpoint.

    Args:
        path: a Lightning ``last.ckpt`` file (trainable tensors under ``state_dict``), an official delta
            ``pytorch_model.pt`` (a plain dict of tensors), a folder holding ``pytorch_model.pt``, or a DeepSpeed
            checkpoint folder (``checkpoint/mp_rank_00_model_states.pt``, module weights under ``module``).

    Returns:
        ``(state, hparams)``: tensors under the module's own names and the saved init arguments (empty for a
        delta).
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / DELTA_FILE).is_file():
            path = path / DELTA_FILE
        elif not any(path.glob("**/mp_rank_00_model_states.pt")):
            raise DeltaCheckpointError(f"{path}: a folder without {DELTA_FILE} or a DeepSpeed mp_rank_00 file")
    state, hparams = read_module_checkpoint(path, error=DeltaCheckpointError)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DeltaCheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state, hparams


def read_trainable_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a training checkpoint or delta (see :func:`read_checkpoint`)."""
    return read_checkpoint(path)[0]


def load_delta(model: torch.nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """Loads a delta (``pytorch_model.pt``, a ``last.ckpt`` or a DeepSpeed folder) into a PandaGPT module.

    Strict on the delta keys: every trainable tensor (LoRA matrices, ``llama_proj``) must be present and nothing
    else may be; shapes must match. The frozen LLM weights come from the model's ``llm_path``.

    Args:
        model: the :class:`~lit_multimodal.multimodal.pandagpt.module.PandaGPT` to load into.
        path: the checkpoint.

    Returns:
        The loaded tensors.

    Raises:
        DeltaCheckpointError: naming the file and the missing / unexpected / mis-shaped keys.
    """
    state, _ = read_checkpoint(path)
    expected = model.trainable_state_keys()
    own = dict(model.named_parameters())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    common = sorted(expected & set(state))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in common if state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        raise DeltaCheckpointError(
            f"{path} does not fit this PandaGPT ({len(expected)} trainable tensors): missing {len(missing)} "
            f"{missing[:4]}, unexpected {len(unexpected)} {unexpected[:4]}, wrong shape {shapes[:4]}"
        )
    model.load_state_dict(state, strict=False)
    return state


def delta_state_dict(model: torch.nn.Module) -> OrderedDict[str, torch.Tensor]:
    """The official delta: every trainable parameter under its official name, detached, on the CPU."""
    return OrderedDict(
        (name, param.detach().cpu().clone().contiguous())
        for name, param in model.named_parameters()
        if param.requires_grad
    )


def read_model_config(config: str | Sequence[str] | Namespace | None) -> Namespace | None:
    """A fit config as ``lit-mm fit`` parses it (:func:`lit_multimodal.fit_config.read_fit_config`).

    The PandaGPT commands (chat, demo, serve, export, evaluate) read their ``--config`` here, so that they build
    exactly the model ``fit`` trained.
    """
    from lit_multimodal.fit_config import read_fit_config  # the one uphill import, see architecture.md

    return read_fit_config(config)


def model_init_args(config: str | Sequence[str] | Namespace | None) -> dict[str, Any]:
    """``model.init_args`` of a fit config as ``lit-mm fit`` parses it (defaults filled), as plain dicts.

    Args:
        config: see :func:`lit_multimodal.fit_config.read_fit_config`; None gives ``{}``.
    """
    fit = read_model_config(config)
    model = fit.get("model") if fit is not None else None
    init_args = model.get("init_args") if model is not None else None
    return init_args.as_dict() if init_args is not None else {}


def build_pandagpt(
    config: str | Sequence[str] | Namespace | None = None,
    hparams: dict[str, Any] | None = None,
    llm_path: str | None = None,
    dtype: str | None = None,
):
    """A PandaGPT module without embedder, from a fit config's ``model.init_args`` and/or saved hyper-parameters.

    Args:
        config: the ``lit-mm fit`` config whose model is PandaGPT: a YAML path, the fit arguments
            (``["--config", "a.yaml", "--config", "b.yaml", "--model.init_args.lora_r", "8"]``) or a parsed fit
            namespace, read as ``lit-mm fit`` reads it (:func:`~lit_multimodal.fit_config.read_fit_config`); its
            model settings win over ``hparams``.
        hparams: hyper-parameters saved in a Lightning checkpoint.
        llm_path: overrides the base LLM folder.
        dtype: overrides the LLM dtype (``float32``, ``bfloat16``, ``float16``, ``auto``).
    """
    import inspect

    from lit_multimodal.fit_config import resolve_model_references  # the one uphill import, see architecture.md
    from lit_multimodal.multimodal.pandagpt.module import PandaGPT

    accepted = set(inspect.signature(PandaGPT.__init__).parameters) - {"self"}
    args = {k: v for k, v in {**(hparams or {}), **model_init_args(config)}.items() if k in accepted}
    args.pop("embedder", None)
    if llm_path:
        args["llm_path"] = llm_path
    if dtype:
        args["dtype"] = dtype
    if not args.get("llm_path"):
        raise DeltaCheckpointError("no base LLM: give --config with model.init_args.llm_path or --llm_path")
    resolve_model_references(args)  # quickstart:tiny-llama in the config or in an older checkpoint's hparams
    args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in args.items()}
    model = PandaGPT(**args)
    model.eval()
    return model


def _save_projection(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    proj = model.llama_proj
    # linear: "weight"/"bias" as before; mlp2x_gelu: "0.weight", "0.bias", "2.weight", "2.bias"
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in proj.state_dict().items()}
    first = proj if isinstance(proj, torch.nn.Linear) else proj[0]
    metadata = {
        "in_features": str(first.in_features),
        "out_features": str(tensors[max(k for k in tensors if k.endswith("weight"))].shape[0]),
        "projector": "linear" if isinstance(proj, torch.nn.Linear) else "mlp2x_gelu",
        "soft_tokens": str(getattr(model, "soft_tokens", 1)),
    }
    save_file(tensors, str(path), metadata=metadata)


def export(
    ckpt_path: str,
    out: str,
    fit_config: str | list[str] | None = None,
    llm_path: str | None = None,
    merge: bool = False,
    dtype: str | None = None,
) -> dict[str, Any]:
    """Exports a PandaGPT training checkpoint: official delta, peft adapter and, with ``merge``, a merged model.

    Writes into ``out``: ``pytorch_model.pt`` (the official delta layout, loadable by the official
    ``model.load_state_dict(torch.load(...), strict=False)``), ``adapter/`` (peft ``adapter_config.json`` and
    ``adapter_model.safetensors``), ``llama_proj.safetensors`` (``weight``, ``bias``) and with ``merge``
    ``merged/`` (a transformers model folder with the LoRA folded into the base weights, and the tokenizer).

    Args:
        ckpt_path: Lightning ``last.ckpt`` (trainable tensors only), a DeepSpeed checkpoint folder, or a delta
            (``--ckpt``, the former name, still works).
        out: output folder (created).
        fit_config: the ``lit-mm fit`` config used for training (base LLM and LoRA settings): a YAML path or the
            fit arguments; on the command line ``--config a.yaml [--config b.yaml] [--model.init_args.x y]``, read
            exactly as ``lit-mm fit`` reads them. Default: the hyper-parameters stored in the checkpoint.
        llm_path: base LLM folder; overrides the config's.
        merge: also write the merged full model into ``out/merged``.
        dtype: dtype to load the base LLM in (default: the config's).

    Returns:
        The written paths and tensor counts.
    """
    from transformers import AutoTokenizer

    state, hparams = read_checkpoint(ckpt_path)
    model = build_pandagpt(fit_config, hparams, llm_path, dtype)
    load_delta(model, ckpt_path)
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    delta = delta_state_dict(model)
    torch.save(delta, folder / DELTA_FILE)
    model.llama_model.save_pretrained(str(folder / ADAPTER_DIR))
    _save_projection(model, folder / PROJ_FILE)
    summary: dict[str, Any] = {
        "delta": str(folder / DELTA_FILE),
        "delta_tensors": len(delta),
        "adapter": str(folder / ADAPTER_DIR),
        "projection": str(folder / PROJ_FILE),
    }
    if merge:
        merged_dir = folder / MERGED_DIR
        merged = model.llama_model.merge_and_unload()
        merged.config.use_cache = True
        merged.save_pretrained(str(merged_dir), safe_serialization=True)
        AutoTokenizer.from_pretrained(model.llm_path, local_files_only=True).save_pretrained(str(merged_dir))
        _save_projection(model, merged_dir / PROJ_FILE)
        summary["merged"] = str(merged_dir)
    log.info("exported %s to %s", ckpt_path, folder)
    return summary
