"""Checkpoints that hold the trainable tensors only: the frozen weights always come from their own files."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule

__all__ = ["TrainableOnlyCheckpoints"]


class TrainableOnlyCheckpoints(LightningModule):
    """A LightningModule whose checkpoints keep only parameters with ``requires_grad``.

    A ViT-B/16 VPT-Deep checkpoint is then a few MB instead of 340 MB, a PandaGPT-7B one about 150 MB
    instead of 27 GB. Loading insists that every trainable tensor is present and nothing unknown is, so a
    checkpoint of another tuning method or LoRA shape is refused with the offending keys; the frozen tensors
    are those the module was built with. Subclasses describe themselves for that message in
    :meth:`checkpoint_description`.
    """

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
            raise KeyError(
                f"checkpoint does not match this model ({self.checkpoint_description()}): missing trainable "
                f"tensors {missing[:8]}, unexpected tensors {unexpected[:8]}"
            )
