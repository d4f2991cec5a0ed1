"""A shuffling training DataLoader that resumes mid-epoch where it stopped.

Lightning saves and restores the state of training loaders that implement ``state_dict`` /
``load_state_dict``; a plain ``DataLoader`` has none, so resuming from a checkpoint written inside an epoch
(``checkpoint.every_n_train_steps``, which long PandaGPT epochs need) started the epoch's data over with a new
order. This loader draws each epoch's order from a seed it keeps, and a restored loader replays the same
order from the first batch the interrupted run had not trained on.

Hand-written because the library that does this (torchdata's ``StatefulDataLoader``) is not a dependency.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

__all__ = ["EpochSeededSampler", "ResumableDataLoader"]


class EpochSeededSampler(Sampler[int]):
    """A random permutation per epoch from a seed drawn from the global torch generator at the epoch's start.

    ``skip`` leading indices are left out of the next epoch only (a resumed epoch).
    """

    def __init__(self, data: Sized) -> None:
        self.data = data
        self.seed: int | None = None
        self.resume_seed: int | None = None
        self.skip = 0

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[int]:
        if self.resume_seed is not None:
            self.seed, self.resume_seed = self.resume_seed, None
        else:
            self.seed = int(torch.empty((), dtype=torch.int64).random_().item())
        order = torch.randperm(len(self.data), generator=torch.Generator().manual_seed(self.seed)).tolist()
        skip, self.skip = self.skip, 0
        yield from order[skip:]


class ResumableDataLoader(DataLoader):
    """A shuffling ``DataLoader`` whose position inside an epoch is saved in checkpoints and restored.

    The loader has a length, so Lightning's training loop fetches no batch ahead: the batches handed out are
    the batches trained on when a checkpoint is written. The worker seeds come from the loader's own
    generator, so a resumed iteration does not move the global generator that the restored run relies on.

    Args:
        dataset: the training dataset.
        **kwargs: ``DataLoader`` arguments except ``shuffle``, ``sampler`` and ``generator``.
    """

    def __init__(self, dataset: Any, **kwargs: Any) -> None:
        kwargs.pop("shuffle", None)
        kwargs.pop("generator", None)
        # Lightning rebuilds loaders with a DistributedSampler under DDP/DeepSpeed: that order is the
        # sampler's own, and mid-epoch resume falls back to Lightning's (the epoch's data restarts).
        self.resumable = kwargs.get("sampler") is None and kwargs.get("batch_sampler") is None
        if self.resumable:
            kwargs["sampler"] = EpochSeededSampler(dataset)
        super().__init__(dataset, generator=torch.Generator(), **kwargs)
        self._handed_out = 0
        self._exhausted = False
        self._skip_batches = 0

    def __iter__(self) -> Iterator[Any]:
        if not self.resumable:
            self.generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            yield from super().__iter__()
            return
        sampler: EpochSeededSampler = self.sampler  # type: ignore[assignment]
        skip, self._skip_batches = self._skip_batches, 0
        sampler.skip = skip * (self.batch_size or 1)
        self._handed_out, self._exhausted = skip, False
        if sampler.resume_seed is None:
            # A new epoch: the worker seed is drawn from the global generator like a plain DataLoader's.
            self.generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch
        self._exhausted = True

    def state_dict(self) -> dict[str, Any]:
        """The epoch's seed, the batches trained on so far, and the worker-seed generator."""
        if not self.resumable or self._exhausted or self._handed_out >= len(self):
            return {"seed": None}  # between epochs: the next one draws its order from the restored generators
        sampler: EpochSeededSampler = self.sampler  # type: ignore[assignment]
        return {"seed": sampler.seed, "batches": self._handed_out, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Makes the next iteration continue the saved epoch after its trained batches."""
        if state.get("seed") is None or not self.resumable:
            return
        sampler: EpochSeededSampler = self.sampler  # type: ignore[assignment]
        sampler.resume_seed = int(state["seed"])
        self._skip_batches = int(state.get("batches", 0))
        if state.get("generator") is not None:
            self.generator.set_state(state["generator"])
