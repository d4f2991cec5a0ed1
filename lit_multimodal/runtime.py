"""Process-wide settings made once when ``lit-mm`` starts: quiet output and a sane torch thread count.

Known harmless messages are filtered (set ``LIT_MM_DEBUG=1`` to see everything):

- Lightning's "The `srun` command is available on your system but is not used" hint (sweeps launch
  their own SLURM jobs; an interactive run on a login node is deliberate);
- Lightning's "💡 Tip: ... litlogger / litmodels" advertisements;
- "Found N module(s) in eval mode at the start of training": frozen backbone parts stay in eval mode by
  design (dropout and norm statistics of a frozen ViT must not change);
- the model summary's "Total Flops" line when it is 0 (Lightning counts no FLOPs without a sample input;
  :mod:`lit_multimodal.training.summary` drops the column of zeros);
- "Precision bf16-mixed is not supported by the model summary" (only the size estimate is affected) and
  Lightning's own ``LeafSpec`` deprecation under recent torch;
- ``FutureWarning`` raised inside ``transformers`` (deprecations of its own internals, printed in the
  middle of streamed chat answers).

Threads: torch starts one thread per core, whatever else runs. On a shared or loaded machine that
oversubscribes the CPUs (a 2-core machine with a load of 5 ran the VPT quickstart 12x slower). When
``OMP_NUM_THREADS`` is set it is obeyed as is; otherwise :func:`choose_threads` takes the CPUs this
process may use minus the current 1-minute load average (at least 1, at most torch's default), and the
choice is printed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

_HARMLESS_WARNINGS = (
    r"The `srun` command is available on your system but is not used",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r"Precision [\w-]+ is not supported by the model summary",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)
_TIP = re.compile(r"^\s*💡 Tip:")
_ZERO_FLOPS = re.compile(r"\n[ \t]*0[ \t]+Total Flops[ \t]*(?=\n|$)")
_LIGHTNING_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
    "lightning.pytorch.callbacks.model_summary",
    "lightning.pytorch.utilities.model_summary.model_summary",
)


class _KnownNoise(logging.Filter):
    """Drops Lightning's tips and removes a zero "Total Flops" line from the model summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _TIP.match(message):
            return False
        if "Total Flops" in message and _ZERO_FLOPS.search(message):
            record.msg, record.args = _ZERO_FLOPS.sub("", message), ()
        return True


_FILTER = _KnownNoise()


def filter_known_warnings() -> None:
    """Installs the warning and log filters listed in the module docstring (idempotent)."""
    if os.environ.get("LIT_MM_DEBUG"):
        return
    for pattern in _HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def choose_threads(cpus: int, load: float, default: int) -> int:
    """Threads that fit beside the current load: ``cpus - load`` rounded down, within ``1 .. default``."""
    return max(1, min(default, cpus - int(load)))


def configure_threads() -> int | None:
    """Sets torch's intra-op thread count for a loaded machine unless ``OMP_NUM_THREADS`` decides it.

    Returns:
        The thread count set, or None when ``OMP_NUM_THREADS`` is set (torch already follows it).
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    default = torch.get_num_threads()
    threads = choose_threads(cpus, load, default)
    if threads != default:
        torch.set_num_threads(threads)
        print(
            f"torch threads: {threads} of {cpus} CPUs (1-min load {load:.1f}); set OMP_NUM_THREADS to choose",
            file=sys.stderr,
            flush=True,
        )
    return threads
