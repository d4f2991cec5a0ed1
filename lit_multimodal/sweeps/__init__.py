"""Sweeps: grid search on a validation split, seeded final runs, local or SLURM launchers, reports."""

from lit_multimodal.sweeps.report import report, sweep_progress

__all__ = ["report", "sweep_progress"]
