"""Sweeps: grid search on a validation split, seeded final runs, local or SLURM launchers, reports."""

from lit_multimodal.sweeps.report import report
from lit_multimodal.sweeps.rows import sweep_progress

__all__ = ["report", "sweep_progress"]
