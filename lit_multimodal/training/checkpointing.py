"""Checkpoints that hold the trainable tensors only: the frozen weights always come from their own files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.utilities import rank_zero_warn

from lit_multimodal.training.rng_state import RNGStateCallback
from lit_multimodal.training.safe_load import CheckpointFileError, safe_torch_load

__all__ = [
    "CheckpointFileError",
    "read_module_checkpoint",
    "TrainableOnlyCheckpoints",
    "checkpoint_differences",
    "load_resume_checkpoint",
    "resolve_ckpt_path",
]


class TrainableOnlyCheckpoints(LightningModule):
    """A LightningModule whose checkpoints keep only parameters with ``requires_grad``.

    A ViT-B/16 VPT-Deep checkpoint is then a few MB instead of 340 MB, a PandaGPT-7B one about 150 MB
    instead of 27 GB. Loading insists that every trainable tensor is present and nothing unknown is, so a
    checkpoint of another tuning method or LoRA shape is refused with the offending keys; the frozen tensors
    are those the module was built with. Subclasses describe themselves for that message in
    :meth:`checkpoint_description`.

    Every checkpoint also holds the random generators' state (:class:`RNGStateCallback`), so that a resumed
    run continues exactly as the uninterrupted one would have.
    """

    def configure_callbacks(self) -> list[Callback]:
        """The generator-state callback (exact resume)."""
        return [RNGStateCallback()]

    def trainable_state_keys(self) -> set[str]:
        """State-dict keys of the trainable parameters."""
        return {name for name, param in self.named_parameters() if param.requires_grad}

    def checkpoint_description(self) -> str:
        """What this module is, for the message of a checkpoint that does not fit (e.g. its tuning method)."""
        return type(self).__name__

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drops the frozen tensors from the checkpoint."""
        keep = self.trainable_state_keys()
        if "state_dict" in checkpoint:
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
        checkpoint["trainable_only"] = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Insists that every trainable tensor is in the checkpoint and nothing unknown is."""
        state = checkpoint.get("state_dict")
        if state is None:  # DeepSpeed keeps module weights in its own files
            return
        missing = sorted(self.trainable_state_keys() - set(state))
        unexpected = sorted(set(state) - set(self.state_dict()))
        if missing or unexpected:
            raise CheckpointFileError(
                f"checkpoint does not match this model ({self.checkpoint_description()}): missing trainable "
                f"tensors {missing[:8]}, unexpected tensors {unexpected[:8]}"
            )


def checkpoint_differences(wanted: Mapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """``key: checkpoint X, requested Y`` for each setting known on both sides that differs."""
    return [
        f"{key}: checkpoint {saved[key]!r}, requested {wanted[key]!r}"
        for key in wanted
        if key in saved and wanted[key] is not None and saved[key] is not None and wanted[key] != saved[key]
    ]


def _newest_readable(folder: Path, skip: Path | None = None) -> Path | None:
    """The newest ``*.ckpt`` in ``folder`` that loads (a file cut short by a kill is passed over).

    A DeepSpeed checkpoint is a folder; it is taken as it is.
    """
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob("*.ckpt") if p.exists() and (skip is None or p != skip)]
    for path in sorted(candidates, key=lambda p: p.stat().st_mtime, reverse=True):
        if path.is_dir():
            return path
        try:
            safe_torch_load(path)
        except CheckpointFileError:
            rank_zero_warn(f"{path} cannot be read (cut short by a kill?); trying an older checkpoint")
            continue
        return path
    return None


def resolve_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path) -> str | None:
    """The checkpoint a ``fit --ckpt_path`` should resume from, robust to a dangling ``last.ckpt``.

    Lightning deletes the previous epoch file before it relinks ``last.ckpt`` to the new one; a kill in
    between leaves ``last.ckpt`` pointing at nothing although a complete epoch checkpoint exists. ``last``
    and a path to such a dangling link both resolve to the newest readable checkpoint of the folder.

    Args:
        ckpt_path: the ``--ckpt_path`` value (a file, ``last``, ``best``, ... or None).
        checkpoint_dir: the run's checkpoint folder (where ``last`` is looked for).

    Returns:
        The path to resume from, ``ckpt_path`` unchanged when there is nothing to resolve, or None for
        ``last`` when the run has no checkpoint yet (a fresh start).

    Raises:
        CheckpointFileError: a dangling link with no other checkpoint beside it.
        FileNotFoundError: ``ckpt_path`` names a file that does not exist.
    """
    if ckpt_path is None or ckpt_path in ("best", "hpc", "registry") or ckpt_path.startswith("registry:"):
        return ckpt_path
    if ckpt_path == "last":
        last = checkpoint_dir / "last.ckpt"
        if last.exists():
            return str(last)
        found = _newest_readable(checkpoint_dir)
        if found is None:
            return None if checkpoint_dir.is_dir() or last.is_symlink() else ckpt_path
        if last.is_symlink():
            rank_zero_warn(f"{last} points to {os.readlink(last)}, which does not exist; resuming from {found}")
        return str(found)
    path = Path(ckpt_path)
    if path.exists():
        return ckpt_path
    if path.is_symlink():
        found = _newest_readable(path.parent)
        if found is None:
            raise CheckpointFileError(
                f"{path} points to {os.readlink(path)}, which does not exist, and {path.parent} holds no other "
                "checkpoint"
            )
        rank_zero_warn(f"{path} points to {os.readlink(path)}, which does not exist; resuming from {found}")
        return str(found)
    raise FileNotFoundError(f"--ckpt_path {path}: no such file")


def load_resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint given as ``--ckpt_path`` safely (one-line errors for pickled or truncated files)."""
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointFileError(f"{path}: not a Lightning checkpoint (a {type(checkpoint).__name__}, not a dict)")
    missing = [key for key in ("pytorch-lightning_version", "state_dict") if key not in checkpoint]
    if missing:
        raise CheckpointFileError(
            f"{path}: not a Lightning checkpoint (no {' or '.join(repr(k) for k in missing)}); --ckpt_path takes a "
            "run's checkpoints/*.ckpt (backbone weights go to --model.init_args.backbone.checkpoint)"
        )
    return checkpoint


# Lightning's DDP/DeepSpeed wrappers prefix the module's own names in a DeepSpeed checkpoint.
_WRAPPER_PREFIXES = ("_forward_module.", "module.")


def _own_name(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def read_module_checkpoint(
    path: str | Path, error: type[Exception] = CheckpointFileError
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors and saved init arguments of a training checkpoint, from one device or from DeepSpeed.

    Args:
        path: a Lightning ``*.ckpt`` file (tensors under ``state_dict``), a DeepSpeed checkpoint folder (Lightning
            writes ``last.ckpt/checkpoint/mp_rank_00_model_states.pt``; the tensors are under ``module``) or a plain
            dict of tensors (no init arguments).
        error: the exception raised for an unreadable file (the caller's own bad-input error).

    Returns:
        ``(state, hparams)`` under the module's own parameter names; ``hparams`` is empty for a plain dict.

    Raises:
        FileNotFoundError: nothing at ``path``.
        error: a folder without a DeepSpeed model-states file, a file that cannot be loaded safely, or one that
            is not a dict.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        shards = sorted(path.glob("**/mp_rank_00_model_states.pt"))
        if not shards:
            raise error(f"{path}: a folder without a DeepSpeed mp_rank_00_model_states.pt")
        loaded = safe_torch_load(shards[0], error=error)
        if not isinstance(loaded, dict) or not isinstance(loaded.get("module"), dict):
            raise error(f"{shards[0]}: no 'module' weights in this DeepSpeed checkpoint")
        return {_own_name(k): v for k, v in loaded["module"].items()}, dict(loaded.get("hyper_parameters") or {})
    loaded = safe_torch_load(path, error=error)
    if not isinstance(loaded, dict):
        raise error(f"{path}: expected a dict of tensors or a Lightning checkpoint, found a {type(loaded).__name__}")
    if isinstance(loaded.get("state_dict"), dict):
        return {_own_name(k): v for k, v in loaded["state_dict"].items()}, dict(loaded.get("hyper_parameters") or {})
    return {_own_name(k): v for k, v in loaded.items()}, {}
