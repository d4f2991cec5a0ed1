"""Smoke test against a real SLURM cluster: a plain ``sbatch`` array and a submitit array.

Skipped unless a controller answers; ``experiments/slurm/cluster_up.sh`` brings up a local one (docs/slurm.md).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import submitit

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
PARTITION = "debug"
TIMEOUT_S = 60


def square_with_task_id(i: int) -> tuple[int, int, str]:
    """Runs inside a SLURM array task; module-level so that submitit can pickle it by reference."""
    return i, i * i, os.environ.get("SLURM_ARRAY_TASK_ID", "")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _cluster_state() -> str:
    """squeue and sinfo output, for assertion messages."""
    return "\n".join(_run(*cmd).stdout for cmd in (["squeue"], ["sinfo", "-R"], ["sinfo"]))


def test_sbatch_array_runs_every_task(slurm_cluster, tmp_path):
    outputs = [tmp_path / f"task_{i}.out" for i in range(4)]
    submitted = _run(
        "sbatch",
        "--parsable",
        "--array=0-3",
        "--time=5",
        f"--chdir={tmp_path}",
        f"--output={tmp_path}/task_%a.out",
        "--wrap",
        "echo $SLURM_ARRAY_TASK_ID",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    deadline = time.monotonic() + TIMEOUT_S
    while not all(path.exists() and path.read_text().strip() for path in outputs):
        if time.monotonic() > deadline:
            state = _cluster_state()
            _run("scancel", job_id)
            pytest.fail(f"array {job_id} not done after {TIMEOUT_S} s\n{state}")
        time.sleep(0.2)
    assert [path.read_text() for path in outputs] == ["0\n", "1\n", "2\n", "3\n"]


def test_submitit_array_returns_results(slurm_cluster, tmp_path, monkeypatch):
    # sbatch exports the environment, so the job can import tests.test_slurm_cluster wherever pytest ran from.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(slurm_partition=PARTITION, timeout_min=5, cpus_per_task=1, slurm_array_parallelism=2)
    jobs = executor.map_array(square_with_task_id, [0, 1])
    deadline = time.monotonic() + TIMEOUT_S
    while not all(job.done() for job in jobs):
        if time.monotonic() > deadline:
            state = _cluster_state()
            for job in jobs:
                job.cancel(check=False)
            pytest.fail(f"submitit array {jobs[0].job_id} not done after {TIMEOUT_S} s\n{state}")
        time.sleep(0.5)
    assert [job.result() for job in jobs] == [(0, 0, "0"), (1, 1, "1")]
