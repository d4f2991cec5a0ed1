"""Running the planned ``lit-mm fit`` processes: locally (sequential or one per device) or as SLURM arrays.

Every run is its own process with its own run directory; a run is done when its ``result.json`` says
``success``. Both launchers only ever receive runs that are not done, so starting a sweep again after a kill
recomputes nothing that completed. An interrupted run resumes from its ``checkpoints/last.ckpt``
(``--ckpt_path last``; a fresh run has none and starts from scratch).
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lit_multimodal.sweeps.plan import RUN_CONFIG, RunSpec, SweepError
from lit_multimodal.training.results import RESULT_FILE, read_result, read_status, result_status, write_json_atomic

LOG_FILE = "log.txt"
SLURM_JOB_FILE = "slurm_job.json"
LOCK_FILE = ".run.lock"

# Called after a run ends with the run directories still running or queued in this launch.
Progress = Callable[[set[Path]], None]


class SlurmQueryError(SweepError):
    """``squeue`` kept failing: the state of the queue is unknown (never taken for an empty queue)."""


@contextmanager
def claim_run_dir(run_dir: Path) -> Iterator[None]:
    """Holds the run directory's lock (``.run.lock``, ``flock``) while the body runs.

    A second process for the same run (e.g. a duplicate SLURM job after the submitter died between
    ``sbatch`` and recording the job id) waits here until the first one is finished, then sees its result.
    ``flock`` is released by the kernel when a holder dies, so a killed run never leaves a stale lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOCK_FILE).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with (run_dir / LOG_FILE).open("a") as log:
                log.write(f"# another process holds {run_dir / LOCK_FILE}; waiting for it to finish\n")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_done(run_dir: Path) -> bool:
    """A run is done when its ``result.json`` says success and holds metrics.

    A ``success`` without metrics (left by a version that did not validate a run resumed at its last epoch)
    is redone: it resumes from its last checkpoint and is validated there.
    """
    result = read_result(run_dir)
    return result_status(result) == "success" and bool(result.get("metrics"))


def fit_command(run_dir: Path) -> list[str]:
    """The ``lit-mm fit`` command of a rendered run (resuming from ``last.ckpt`` when there is one)."""
    return [
        sys.executable,
        "-m",
        "lit_multimodal",
        "fit",
        "--config",
        str(run_dir / RUN_CONFIG),
        f"--trainer.default_root_dir={run_dir}",
        "--ckpt_path=last",
    ]


def run_fit_process(run_dir: Path, device: int | None = None) -> int:
    """Runs one ``lit-mm fit`` in a child process, logging to ``<run_dir>/log.txt``.

    A process that dies without writing a failed ``result.json`` (a config error, a kill) gets one, with the
    exit status and the log path, so the report can point at it. Inside a SLURM allocation the child sees no
    ``SLURM_*`` variables: the launcher owns requeueing and Lightning must not register its own handler.
    The run directory is claimed first (:func:`claim_run_dir`): a second process for the same run waits for
    the first and does not train again when it succeeded.

    Returns:
        The child's exit status.
    """
    run_dir = Path(run_dir)
    with claim_run_dir(run_dir):
        if is_done(run_dir):  # another process finished it while this one waited for the lock
            return 0
        return _run_fit_locked(run_dir, device)


def _run_fit_locked(run_dir: Path, device: int | None) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(device)
    log_path = run_dir / LOG_FILE
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(fit_command(run_dir))}\n")
        log.flush()
        code = subprocess.run(fit_command(run_dir), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        try:
            payload = json.loads((run_dir / RESULT_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            payload = {"error": f"lit-mm fit exited with status {code} before writing a result"}
        payload.update(status="failed", returncode=code, log=str(log_path))
        write_json_atomic(run_dir / RESULT_FILE, payload)
    return code


@dataclass
class LocalLauncher:
    """Runs on this machine: one run at a time, or ``max_parallel`` at once, each pinned to one device.

    Args:
        max_parallel: how many runs at once.
        devices: GPU indices handed out one per concurrent run (``CUDA_VISIBLE_DEVICES``); default
            ``0..max_parallel-1`` when ``max_parallel > 1`` and nothing pinned otherwise.
    """

    max_parallel: int = 1
    devices: list[int] | None = None

    def launch(self, sweep_dir: Path, runs: Sequence[RunSpec], progress: Progress) -> None:
        """Runs ``runs`` to completion; a failing run is recorded and the others go on."""
        remaining = {sweep_dir / spec.run_dir for spec in runs}
        if self.max_parallel <= 1:
            device = self.devices[0] if self.devices else None
            for spec in runs:
                run_fit_process(sweep_dir / spec.run_dir, device)
                remaining.discard(sweep_dir / spec.run_dir)
                progress(set(remaining))
            return
        free: queue.Queue[int] = queue.Queue()
        for device in self.devices or range(self.max_parallel):
            free.put(device)
        lock = threading.Lock()

        def work(spec: RunSpec) -> None:
            device = free.get()
            try:
                run_fit_process(sweep_dir / spec.run_dir, device)
            finally:
                free.put(device)
                with lock:
                    remaining.discard(sweep_dir / spec.run_dir)
                    progress(set(remaining))

        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            list(pool.map(work, runs))


@dataclass
class SlurmOptions:
    """Resources of each array task.

    Args:
        partition: SLURM partition (None: the cluster's default).
        time_min: wall-time limit per run in minutes; a run that hits it is requeued and resumes.
        cpus_per_task: CPU cores per run (data loading).
        gpus_per_task: GPUs per run.
        mem_gb: memory per run (None: the partition's default).
        max_parallel: most array tasks running at once (``--array=...%N``).
        max_requeues: how many times a run that hit its time limit is requeued.
        sbatch: extra ``#SBATCH`` options, e.g. ``{account: my_lab, qos: high, constraint: a100}``.
        setup: shell lines run before each task, e.g. ``["module load cuda/12.4"]``.
        poll_s: seconds between progress checks while waiting.
        squeue_attempts: how often a failing ``squeue`` is tried (waiting 2, 4, 8, ... s in between) before
            the sweep stops with an error; a failed query is never taken for an empty queue.
    """

    partition: str | None = None
    time_min: int = 240
    cpus_per_task: int = 8
    gpus_per_task: int = 1
    mem_gb: float | None = None
    max_parallel: int = 32
    max_requeues: int = 3
    sbatch: dict[str, str] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    poll_s: float = 10.0
    squeue_attempts: int = 7


class FitRun:
    """The picklable callable a SLURM array task runs: one ``lit-mm fit`` process.

    submitit owns requeueing: on a time-out or preemption it calls :meth:`checkpoint`, which resubmits the
    same run; the new job resumes from ``last.ckpt``. (Lightning's own SLURM auto-requeue stays off because
    the fit process sees no ``SLURM_*`` variables.)
    """

    def __call__(self, run_dir: str) -> int:
        """Runs the fit; a failed run is recorded in its ``result.json``, not raised."""
        if is_done(Path(run_dir)):
            return 0
        return run_fit_process(Path(run_dir))

    def checkpoint(self, run_dir: str):
        """Resubmits the same run (it resumes from its last checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(FitRun(), run_dir)


def query_queue() -> set[str]:
    """One ``squeue`` call: ids (``<array>_<task>``) of this user's queued and running jobs.

    Raises:
        SlurmQueryError: ``squeue`` is missing or failed.
    """
    if shutil.which("squeue") is None:
        raise SlurmQueryError("squeue is not available: the slurm launcher needs the SLURM client tools")
    try:
        result = subprocess.run(
            ["squeue", "-h", "-r", "-u", os.environ.get("USER", str(os.getuid())), "-o", "%i"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        raise SlurmQueryError("squeue did not answer within 120 s") from None
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no message"
        raise SlurmQueryError(f"squeue exited with status {result.returncode}: {message}")
    return {line.strip() for line in result.stdout.splitlines() if line.strip()}


def queued_job_ids(
    attempts: int = 7, first_wait_s: float = 2.0, sleep: Callable[[float], None] | None = None
) -> set[str]:
    """The queued and running job ids, retrying a failing ``squeue`` with exponential back-off.

    A slurmctld that stalls for a while (a restart, a busy controller) must not look like an empty queue:
    that would mark every queued run as failed.

    Raises:
        SlurmQueryError: every attempt failed (or the SLURM tools are missing).
    """
    sleep = sleep or time.sleep
    wait = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            return query_queue()
        except SlurmQueryError as err:
            if attempt == attempts or shutil.which("squeue") is None:
                raise SlurmQueryError(f"{err} ({attempt} attempts); the queue state is unknown, stopping") from None
            print(f"{err}; retrying in {wait:g} s (attempt {attempt} of {attempts})", flush=True)
            sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


@dataclass
class SlurmLauncher:
    """Submits the runs as one SLURM job array through submitit and waits for them.

    Runs still queued or running from an earlier submission (recorded in ``slurm_job.json``) are not
    submitted again, so restarting the sweep command while the cluster works is safe. A run submitted
    twice anyway (the submitter died between ``sbatch`` and writing ``slurm_job.json``) trains once: the
    second job waits for the first's lock on the run directory and then finds its result. Submitting needs
    no GPU: a login node is fine.
    """

    options: SlurmOptions = field(default_factory=SlurmOptions)

    def _executor(self, sweep_dir: Path):
        import submitit

        executor = submitit.AutoExecutor(
            folder=sweep_dir / ".submitit" / "%j", cluster="slurm", slurm_max_num_timeout=self.options.max_requeues
        )
        params = {
            "timeout_min": self.options.time_min,
            "cpus_per_task": self.options.cpus_per_task,
            "tasks_per_node": 1,
            "slurm_array_parallelism": self.options.max_parallel,
            "slurm_additional_parameters": dict(self.options.sbatch),
            "slurm_setup": list(self.options.setup),
            "name": f"lit-mm-{sweep_dir.name}",
        }
        if self.options.gpus_per_task:
            params["gpus_per_node"] = self.options.gpus_per_task
        if self.options.partition:
            params["slurm_partition"] = self.options.partition
        if self.options.mem_gb:
            params["mem_gb"] = self.options.mem_gb
        executor.update_parameters(**params)
        return executor

    def launch(self, sweep_dir: Path, runs: Sequence[RunSpec], progress: Progress) -> None:
        """Submits what is not queued already, then waits until every run has left the queue."""
        queued = queued_job_ids(self.options.squeue_attempts)
        waiting: dict[str, Path] = {}
        to_submit = []
        for spec in runs:
            run_dir = sweep_dir / spec.run_dir
            job_file = run_dir / SLURM_JOB_FILE
            job_id = json.loads(job_file.read_text())["job_id"] if job_file.is_file() else None
            if job_id is not None and job_id in queued:
                waiting[job_id] = run_dir
            else:
                to_submit.append(run_dir)
        if to_submit:
            jobs = self._executor(sweep_dir).map_array(FitRun(), [str(d) for d in to_submit])
            for job, run_dir in zip(jobs, to_submit, strict=True):
                write_json_atomic(run_dir / SLURM_JOB_FILE, {"job_id": str(job.job_id)})
                waiting[str(job.job_id)] = run_dir
            print(f"submitted {len(jobs)} runs as SLURM array {jobs[0].job_id.split('_')[0]}", flush=True)
        while waiting:
            time.sleep(self.options.poll_s)
            queued = queued_job_ids(self.options.squeue_attempts)
            finished = [job_id for job_id in waiting if job_id not in queued]
            for job_id in finished:
                run_dir = waiting.pop(job_id)
                if read_status(run_dir) == "missing":
                    write_json_atomic(
                        run_dir / RESULT_FILE,
                        {
                            "status": "failed",
                            "error": f"SLURM job {job_id} left the queue without a result",
                            "log": str(run_dir / LOG_FILE),
                        },
                    )
            if finished:
                progress(set(waiting.values()))
