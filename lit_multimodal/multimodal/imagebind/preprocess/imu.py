"""IMU input for ImageBind: 6 channels (accelerometer xyz, gyroscope xyz) × 2000 steps.

Neither the official repository nor PandaGPT has an IMU loader. The encoder was trained on Ego4D IMU windows of
2000 steps; the training-time units and normalisation are undocumented, so values are passed through unchanged
(give accelerometer and gyroscope in the units of your source, ideally Ego4D's).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

import numpy as np
import torch

from lit_multimodal.file_kind import npy_problem as _npy_problem

from .errors import InputError, describe_path

__all__ = ["IMU_DEFAULTS", "fit_length", "load_imu", "read_imu"]

PathLike = str | os.PathLike[str]

#: Defaults of :func:`load_imu`, hashed into the settings.
IMU_DEFAULTS: dict[str, int | bool] = {"steps": 2000, "resample": False}

_CHANNELS = 6


def _read_csv(path: PathLike) -> np.ndarray:
    name = describe_path(path)
    rows: list[list[float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            for line_no, row in enumerate(csv.reader(fh), start=1):
                cells = [c.strip() for c in row]
                if not cells or all(c == "" for c in cells):
                    continue
                if len(cells) != _CHANNELS:
                    raise InputError(
                        f"{name}: line {line_no} has {len(cells)} columns, 6 expected "
                        "(accelerometer x, y, z, gyroscope x, y, z)"
                    )
                try:
                    rows.append([float(c) for c in cells])
                except ValueError:
                    if not rows and line_no == 1:
                        continue  # header row
                    bad = next(c for c in cells if not _is_float(c))
                    raise InputError(f"{name}: line {line_no}: non-numeric value {bad!r}, 6 numbers expected") from None
    except FileNotFoundError as exc:
        raise InputError(f"{name}: file not found, an IMU .npy or .csv file expected") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{name}: not a readable CSV file ({exc})") from exc
    if not rows:
        raise InputError(f"{name}: no data rows, N rows of 6 numbers expected")
    return np.asarray(rows, dtype=np.float64).T


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_imu(path: PathLike) -> np.ndarray:
    """Read an IMU recording as a ``(6, N)`` float64 array.

    ``.npy``: shape ``(6, N)`` or ``(N, 6)`` (``(6, 6)`` is read as channels first). ``.csv``: N rows of 6 numbers,
    optionally one header row first.

    Args:
        path: ``.npy`` or ``.csv`` file.

    Returns:
        ``(6, N)`` float64 array.

    Raises:
        InputError: Missing/unreadable file, unknown extension, wrong shape, non-numeric or non-finite values.
    """
    name = describe_path(path)
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".csv":
        data = _read_csv(path)
    elif suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except FileNotFoundError as exc:
            raise InputError(f"{name}: file not found, an IMU .npy or .csv file expected") from exc
        except (OSError, ValueError) as exc:
            raise InputError(f"{name}: not a readable .npy array ({_npy_problem(path, exc)})") from exc
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InputError(f"{name}: IMU array of dtype {arr.dtype}, numbers expected")
        if arr.ndim == 2 and arr.shape[0] == _CHANNELS:
            data = arr
        elif arr.ndim == 2 and arr.shape[1] == _CHANNELS:
            data = arr.T
        else:
            raise InputError(f"{name}: IMU array of shape {tuple(arr.shape)}, expected (6, N) or (N, 6)")
        data = data.astype(np.float64)
    else:
        raise InputError(f"{name}: unknown IMU file type {suffix or '(none)'!r}, .npy or .csv expected")
    if data.shape[1] == 0:
        raise InputError(f"{name}: IMU array of shape {tuple(data.shape)} has no samples, (6, N) with N > 0 expected")
    if not np.isfinite(data).all():
        raise InputError(f"{name}: IMU data contains NaN or infinite values, finite numbers expected")
    return data


def fit_length(data: np.ndarray, steps: int, resample: bool) -> np.ndarray:
    """Bring a ``(6, N)`` recording to ``steps`` samples.

    Args:
        data: ``(6, N)`` array, ``N >= 1``.
        steps: Target length.
        resample: ``False``: keep the first ``steps`` samples, or zero-pad on the right. ``True``: linear
            interpolation of the whole recording onto ``steps`` equally spaced points (first and last samples
            kept; ``N = 1`` repeats the sample).

    Returns:
        ``(6, steps)`` array.
    """
    n = data.shape[1]
    if resample:
        if n == 1:
            return np.repeat(data, steps, axis=1)
        grid = np.linspace(0.0, n - 1, steps)
        return np.stack([np.interp(grid, np.arange(n), row) for row in data])
    if n >= steps:
        return data[:, :steps]
    return np.pad(data, ((0, 0), (0, steps - n)))


def load_imu(paths: Sequence[PathLike], steps: int = 2000, resample: bool = False) -> torch.Tensor:
    """Load IMU recordings as ``(B, 6, steps)``.

    Channel order: accelerometer x, y, z, then gyroscope x, y, z (Ego4D's order). Default ``resample=False`` cuts
    to the first ``steps`` samples or zero-pads on the right: the encoder was trained on fixed 2000-step windows at
    the sensor's native rate, so a recording at that rate keeps its time scale; stretching it to 2000 steps would
    change the apparent frequencies of motion. ``resample=True`` interpolates the whole recording linearly onto
    ``steps`` points instead, for recordings at another rate that cover the intended window (e.g. 10 s at 100 Hz).
    Values are not normalised (the training normalisation is undocumented).

    Args:
        paths: ``.npy`` (``(6, N)`` or ``(N, 6)``) or ``.csv`` (N rows × 6 columns, optional header) files.
        steps: Output length; 2000 for ImageBind.
        resample: Interpolate to ``steps`` instead of cutting/padding.

    Returns:
        ``(B, 6, steps)`` float32 tensor.

    Raises:
        InputError: A file is missing or unreadable or has the wrong shape or non-numeric values.
    """
    return torch.stack(
        [torch.from_numpy(fit_length(read_imu(p), steps, resample)).to(torch.float32) for p in paths], dim=0
    )
