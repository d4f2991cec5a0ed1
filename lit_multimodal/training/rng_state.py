"""Exact resume: the random number generators' state travels with every checkpoint.

``seed_everything`` resets the global generators when a run restarts, so without this a run resumed from
epoch k draws the data order, augmentation and dropout of epoch 0 again and ends with other metrics than
the same run uninterrupted. The shuffling sampler and the DataLoader's worker seeds draw from the global
torch generator, so restoring the generators restores the data order too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback

__all__ = ["RNGStateCallback", "collect_rng_state", "restore_rng_state"]


def collect_rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's and (when in use) CUDA's global generators.

    NumPy's state is kept as a tensor and plain numbers, so checkpoints stay loadable with
    ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Sets the global generators to a state from :func:`collect_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RNGStateCallback(Callback):
    """Saves the generators' state in each checkpoint and restores it when a run resumes from one.

    The state is taken when the checkpoint is written (after the epoch's validation and scheduler step) and
    restored as soon as the checkpoint is loaded: Lightning creates the first epoch's training iterator (which
    draws the shuffling seed) before ``on_train_start``, and its sanity check runs with isolated generators,
    so the resumed epoch starts from exactly the state the uninterrupted run had.
    """

    def state_dict(self) -> dict[str, Any]:
        """The generators' state now (called while a checkpoint is written)."""
        return {"rng": collect_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the checkpoint's generator state (a checkpoint from before this callback has none)."""
        if state_dict.get("rng") is not None:
            restore_rng_state(state_dict["rng"])
