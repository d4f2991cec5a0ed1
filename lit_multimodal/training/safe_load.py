"""The one ``torch.load`` of the project: tensors and plain containers only, one-line errors.

Every ``.pth``, ``.ckpt`` and delta file goes through :func:`safe_torch_load`. PyTorch's weights-only
unpickler refuses anything else (nothing is executed), but its message is a paragraph about the
``weights_only`` default; here a refused file says what it is in one line, and a truncated or foreign file
says that, naming the file.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from lit_multimodal.errors import UserError

__all__ = ["CheckpointFileError", "pickled_objects_message", "safe_torch_load"]


class CheckpointFileError(UserError):
    """A checkpoint file that cannot be loaded safely: pickled objects, truncated, or not a torch file."""


def pickled_objects_message(path: str | Path) -> str:
    """The message of a file that holds pickled objects beyond tensors and plain containers."""
    return f"{path} contains pickled objects that are not plain tensors; refusing to load it"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def safe_torch_load(
    path: str | Path,
    error: type[Exception] = CheckpointFileError,
    mmap: bool = False,
    map_location: Any = "cpu",
) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors of type ``error``.

    Args:
        path: the file.
        error: the exception type raised (the caller's own bad-input error, so that the CLI prints it).
        mmap: memory-map the file (zip format only; a legacy-format file is read without).
        map_location: where tensors go.

    Raises:
        error: the file holds pickled objects other than tensors and plain containers, is truncated, or is
            not a file written by ``torch.save``.
    """
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4": about to be refused anyway
            warnings.simplefilter("ignore", UserWarning)
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
            except RuntimeError as err:
                if not mmap or "mmap" not in str(err):
                    raise
                return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise error(pickled_objects_message(path)) from None
        raise error(f"{path}: not a readable torch checkpoint ({_first_line(err)})") from None
    except EOFError:
        raise error(f"{path}: the file is empty or truncated") from None
    except (RuntimeError, ValueError, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise error(
            f"{path}: truncated or not a file written by torch.save ({type(err).__name__}: {_first_line(err)})"
        ) from None
