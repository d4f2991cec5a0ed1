"""Sweeps: the plan, selection, refusing bad input, and real local and SLURM sweeps that resume after a kill."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from lit_multimodal.sweeps.launchers import SlurmOptions, read_status
from lit_multimodal.sweeps.plan import (
    LR_KEY,
    MANIFEST,
    WD_KEY,
    SweepError,
    expand_variants,
    format_value,
    grid_points,
    read_manifest,
    run_name,
    value_points,
)
from lit_multimodal.sweeps.runner import SweepIncompleteError, sweep
from lit_multimodal.training.results import write_json_atomic
from tests.conftest import vtab_config
from tests.test_vtab import write_vtab_task

TINY_GRID = {LR_KEY: [1.0, 0.5], WD_KEY: [0.0]}


@pytest.fixture
def vtab_fixture(tmp_path) -> tuple[Path, Path]:
    root = tmp_path / "vtab-1k"
    write_vtab_task(root, "dtd", per_class=2)
    broken = write_vtab_task(root, "kitti", per_class=2)
    (broken / "val200.txt").write_text("images/val200/000000.jpg 9\n")  # kitti has 4 classes: every search fails
    return root, vtab_config(tmp_path, root)


# -- the plan ---------------------------------------------------------------------------------------------


def test_run_names_and_grid():
    assert format_value(25.0) == "25" and format_value(0.0001) == "0.0001" and format_value(1e-5) == "1e-05"
    assert run_name({LR_KEY: 25.0, WD_KEY: 0.001}, 42) == "lr25_wd0.001_seed42"
    assert grid_points({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(SweepError, match="empty"):
        grid_points({})
    with pytest.raises(SweepError, match=r"\['b'\]"):
        grid_points({"a": [1], "b": []})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {}}, "grid is empty"),
        ({"tasks": ["dtd", "imagenet"]}, r"unknown tasks \['imagenet'\]"),
        ({"extra_args": ["--model.init_args.tuning=prefix"]}, "does not validate"),
        ({"base_config": ["missing.yaml"]}, "do not exist"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_runs(tmp_path, vtab_fixture, change, message):
    _, base = vtab_fixture
    kwargs = {"name": "bad", "base_config": [str(base)], "tasks": ["dtd"], "grid": TINY_GRID}
    kwargs.update(change)
    out = tmp_path / "sweep"
    with pytest.raises(SweepError, match=message):
        sweep(**kwargs, out_dir=str(out))
    assert not out.exists()


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, vtab_fixture, capsys):
    _, base = vtab_fixture
    out = tmp_path / "sweep"
    summary = sweep("dry", [str(base)], ["dtd", "kitti"], grid=TINY_GRID, out_dir=str(out), dry_run=True)
    printed = capsys.readouterr().out
    assert summary["search_runs"] == 4
    assert "search: 4 runs" in printed and "= 10 runs" in printed  # 2 tasks x 5 official seeds
    assert "lr1_wd0_seed42" in printed
    assert not out.exists()


def _fake_result(run_dir: Path, status: str, val: float | None) -> None:
    metrics = {} if val is None else {"val/top1": val}
    write_json_atomic(run_dir / "result.json", {"status": status, "metrics": metrics})


def test_selection_takes_last_epoch_val_and_breaks_ties_towards_the_smaller_lr(tmp_path, vtab_fixture):
    from lit_multimodal.sweeps.runner import Sweep

    _, base = vtab_fixture
    grid = {LR_KEY: [5.0, 1.0, 0.5], WD_KEY: [0.01, 0.0]}
    plan = Sweep(
        name="s",
        base_config=[str(base)],
        tasks=["dtd"],
        task_arg="data.init_args.task",
        grid=grid,
        search_seed=42,
        final_seeds=[1],
        search_args={},
        final_args={},
        metric="val/top1",
        extra_args=[],
        out_dir=tmp_path,
    )
    runs = plan.search_runs({"dtd": "vpt_deep"})
    scores = {(5.0, 0.01): 0.7, (5.0, 0.0): 0.9, (1.0, 0.01): 0.9, (1.0, 0.0): 0.8, (0.5, 0.01): None}
    for spec in runs:
        key = (spec.params[LR_KEY], spec.params[WD_KEY])
        if key in scores:
            value = scores[key]
            _fake_result(tmp_path / spec.run_dir, "success" if value is not None else "failed", value)
    selection, problems = plan.select(runs)
    assert selection["dtd"]["params"] == {LR_KEY: 1.0, WD_KEY: 0.01}  # 0.9 twice: the smaller lr wins
    assert selection["dtd"]["val/top1"] == 0.9
    assert len(problems["dtd"]) == 2 and any("(failed)" in p for p in problems["dtd"])  # (0.5, 0.01) and (0.5, 0)
    assert any("(missing)" in p for p in problems["dtd"])


# -- real sweeps ------------------------------------------------------------------------------------------


def _statuses(out: Path) -> dict[str, str]:
    return {spec.run_dir: read_status(out / spec.run_dir) for spec in read_manifest(out)}


def _declared_metrics(run_dir: Path) -> set[str]:
    events = EventAccumulator(str(run_dir)).Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    return {m.name.tag for m in HParamsPluginData.FromString(content).experiment.metric_infos}


def test_local_sweep_searches_selects_runs_finals_and_resumes(tmp_path, vtab_fixture):
    _, base = vtab_fixture
    out = tmp_path / "sweep"
    kwargs = {
        "name": "tiny",
        "base_config": [str(base)],
        "tasks": ["dtd", "kitti"],
        "grid": TINY_GRID,
        "final_seeds": [1, 2],
        "out_dir": str(out),
    }
    # kitti's search runs all fail: the sweep finishes dtd, writes the report and then exits with an error.
    with pytest.raises(SweepIncompleteError, match=r"no search run of \['kitti'\]") as raised:
        sweep(**kwargs)
    summary = raised.value.summary

    statuses = _statuses(out)
    assert len(statuses) == 6  # 2 tasks x 2 lrs, then finals for dtd only
    assert [s for d, s in statuses.items() if d.startswith("search/dtd")] == ["success"] * 2
    kitti = [d for d in statuses if d.startswith("search/kitti")]
    assert [statuses[d] for d in kitti] == ["failed"] * 2  # crashed runs are recorded and the others went on
    failed = json.loads((out / kitti[0] / "result.json").read_text())
    assert failed["log"].endswith("log.txt") and "outside" in (out / kitti[0] / "log.txt").read_text()
    assert [s for d, s in statuses.items() if d.startswith("final/dtd")] == ["success"] * 2
    assert summary["final"] == {"total": 2, "done": 2, "failed": 0}

    selection = json.loads((out / "selection.json").read_text())
    assert set(selection) == {"dtd"}
    chosen = selection["dtd"]["params"]
    first_final = out / f"final/dtd/{run_name(chosen, 1)}"
    frozen = yaml.safe_load((first_final / "run_config.yaml").read_text())
    assert frozen["data"]["init_args"]["task"] == "dtd" and frozen["data"]["init_args"]["stage"] == "final"
    assert frozen["model"]["init_args"]["optim"]["base_lr"] == chosen[LR_KEY] and frozen["seed_everything"] == 1
    result = json.loads((first_final / "result.json").read_text())
    assert "test/top1" in result["metrics"] and result["seed"] == 1
    assert (out / "results.csv").is_file() and (out / "summary.md").is_file()
    assert "kitti" in (out / "summary.md").read_text()  # the report names the failed runs
    # TensorBoard: a search run (no test split) declares only val/top1, a final run (no val split) only test/top1,
    # so the HParams tab never shows a placeholder 0 as an accuracy.
    search_run = out / next(d for d in statuses if d.startswith("search/dtd"))
    assert _declared_metrics(search_run) == {"val/top1"}
    assert _declared_metrics(first_final) == {"test/top1"}

    # Kill one final run half-way (no result) and let another be recorded as interrupted; then start again.
    done_search = [out / d for d, s in statuses.items() if d.startswith("search/dtd")]
    stamps = {d: (d / "result.json").stat().st_mtime_ns for d in done_search}
    (first_final / "result.json").unlink()
    second_final = out / f"final/dtd/{run_name(chosen, 2)}"
    _fake_result(second_final, "interrupted", None)
    manifest_lines = (out / MANIFEST).read_text().count("\n")

    with pytest.raises(SweepIncompleteError) as raised:
        sweep(**kwargs)
    again = raised.value.summary
    assert again["final"] == {"total": 2, "done": 2, "failed": 0}
    assert {d: (d / "result.json").stat().st_mtime_ns for d in done_search} == stamps  # nothing recomputed
    assert (out / MANIFEST).read_text().count("\n") == manifest_lines  # the same plan, not a new one
    assert read_status(first_final) == "success" and read_status(second_final) == "success"


@pytest.mark.slurm
def test_slurm_sweep_runs_as_job_arrays(tmp_path, vtab_fixture, slurm_cluster):
    root, base = vtab_fixture
    write_vtab_task(root, "eurosat", per_class=2)
    out = tmp_path / "sweep"
    summary = sweep(
        name="tiny_slurm",
        base_config=[str(base)],
        tasks=["dtd", "eurosat"],
        grid=TINY_GRID,
        final_seeds=[1, 2],
        out_dir=str(out),
        launcher="slurm",
        slurm=SlurmOptions(partition="debug", time_min=10, cpus_per_task=1, gpus_per_task=0, poll_s=1.0),
    )
    assert summary["search"] == {"total": 4, "done": 4, "failed": 0}  # 2 tasks x 2 lrs
    assert summary["final"] == {"total": 4, "done": 4, "failed": 0}  # 2 tasks x 2 seeds
    job_ids = {json.loads((out / d / "slurm_job.json").read_text())["job_id"] for d in _statuses(out)}
    assert len(job_ids) == 8 and all("_" in job_id for job_id in job_ids)  # array tasks <array>_<index>
    assert len({job_id.split("_")[0] for job_id in job_ids}) == 2  # one array per stage
    summary_md = (out / "summary.md").read_text()
    assert "DTD" in summary_md and "EuroSAT" in summary_md


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)


@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_slurm_time_out_requeues_and_resumes_from_the_last_checkpoint(tmp_path, slurm_cluster):
    root = tmp_path / "vtab-1k"
    write_vtab_task(root, "dtd", per_class=100)  # 300 images: an epoch takes seconds, so the signal lands mid-fit
    out = tmp_path / "sweep"
    summary: dict = {}
    kwargs = {
        "name": "requeue",
        "base_config": [str(vtab_config(tmp_path, root, max_epochs=6))],
        "tasks": ["dtd"],
        "grid": {LR_KEY: [1.0], WD_KEY: [0.0]},
        "stages": ["search"],
        "out_dir": str(out),
        "launcher": "slurm",
        "slurm": SlurmOptions(partition="debug", time_min=10, cpus_per_task=1, gpus_per_task=0, poll_s=1.0),
    }
    thread = threading.Thread(target=lambda: summary.update(sweep(**kwargs)))
    thread.start()
    run_dir = out / "search" / "dtd" / "lr1_wd0_seed42"
    _wait_for(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), 300, "the first epoch's checkpoint")
    assert read_status(run_dir) != "success"
    job_id = json.loads((run_dir / "slurm_job.json").read_text())["job_id"]
    # What SLURM sends near the time limit (submitit's own test hook, Job._interrupt(timeout=True), does the same).
    subprocess.run(["scancel", "--signal", "USR2", job_id], check=True)

    def requeued_and_pending() -> bool:
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        return "PENDING" in state

    _wait_for(requeued_and_pending, 60, f"job {job_id} to be requeued")
    # SLURM holds a requeued batch job for about two minutes (BeginTime); release it now.
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
    thread.join(timeout=600)
    assert not thread.is_alive()

    assert summary["search"] == {"total": 1, "done": 1, "failed": 0}
    log = (run_dir / "log.txt").read_text()
    assert log.count("$ ") == 2  # the fit ran twice: before the signal and after the requeue
    second_attempt = log.split("$ ")[2]
    assert "Restoring states from the checkpoint path" in second_attempt
    assert "last.ckpt" in second_attempt
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["epoch"] == 5  # all six epochs, counted across both attempts


# -- faults: a flaky squeue, a duplicate submission, a half-written manifest, requeued runs ---------------


def test_a_failing_squeue_is_retried_with_back_off_and_never_an_empty_queue(monkeypatch):
    from lit_multimodal.sweeps import launchers

    answers = iter([launchers.SlurmQueryError("squeue exited with status 1: timeout")] * 2 + [{"7_0"}])

    def flaky() -> set[str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(launchers, "query_queue", flaky)
    monkeypatch.setattr(launchers.shutil, "which", lambda name: f"/usr/bin/{name}")
    waits: list[float] = []
    assert launchers.queued_job_ids(attempts=5, first_wait_s=2.0, sleep=waits.append) == {"7_0"}
    assert waits == [2.0, 4.0]

    def down() -> set[str]:
        raise launchers.SlurmQueryError("squeue exited with status 1: slurm_load_jobs error")

    monkeypatch.setattr(launchers, "query_queue", down)
    waits.clear()
    with pytest.raises(launchers.SlurmQueryError, match="3 attempts"):
        launchers.queued_job_ids(attempts=3, first_wait_s=1.0, sleep=waits.append)
    assert waits == [1.0, 2.0]


def test_a_squeue_stall_while_waiting_does_not_fail_queued_runs(tmp_path, monkeypatch):
    from lit_multimodal.sweeps import launchers

    run_dir = tmp_path / "search" / "dtd" / "lr1_wd0_seed42"
    write_json_atomic(run_dir / "slurm_job.json", {"job_id": "7_0"})
    # The job is queued, then squeue stalls twice, then it has finished with a result.
    calls = {"n": 0}

    def query() -> set[str]:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise launchers.SlurmQueryError("squeue exited with status 1: Socket timed out")
        if calls["n"] == 4:
            _fake_result(run_dir, "success", 0.5)
            return set()
        return {"7_0"}

    monkeypatch.setattr(launchers, "query_queue", query)
    monkeypatch.setattr(launchers.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launchers.time, "sleep", lambda s: None)
    spec = type("Spec", (), {"run_dir": "search/dtd/lr1_wd0_seed42"})()
    seen = []
    launchers.SlurmLauncher(SlurmOptions(poll_s=0.0)).launch(tmp_path, [spec], seen.append)
    assert read_status(run_dir) == "success"  # not "left the queue without a result"
    assert seen == [set()]


def test_a_duplicate_job_for_one_run_waits_for_the_first_and_does_not_train_again(tmp_path, monkeypatch):
    from lit_multimodal.sweeps import launchers

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    started = threading.Event()
    fits = []

    def fake_fit(command, **kwargs):
        fits.append(threading.current_thread().name)
        started.set()
        time.sleep(0.5)
        _fake_result(run_dir, "success", 0.9)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(launchers.subprocess, "run", fake_fit)
    first = threading.Thread(target=launchers.FitRun(), args=(str(run_dir),), name="first")
    first.start()
    assert started.wait(10)
    codes = []
    second = threading.Thread(target=lambda: codes.append(launchers.FitRun()(str(run_dir))), name="second")
    second.start()  # the restarted submitter's duplicate: the run is not done yet, so it must wait
    first.join(10)
    second.join(10)
    assert fits == ["first"] and codes == [0]
    assert json.loads((run_dir / "result.json").read_text())["metrics"] == {"val/top1": 0.9}
    assert "waiting for it to finish" in (run_dir / "log.txt").read_text()


def test_a_half_written_manifest_line_hides_no_run(tmp_path):
    from lit_multimodal.sweeps.plan import RunSpec, append_manifest

    def spec(name: str) -> RunSpec:
        return RunSpec(
            id=name,
            name=name,
            stage="search",
            task="dtd",
            tuning="vpt_deep",
            seed=1,
            params={},
            run_dir=f"search/dtd/{name}",
        )

    append_manifest(tmp_path, [spec("a")])
    with (tmp_path / MANIFEST).open("a") as handle:
        handle.write('{"id": "b", "name": "b", "sta')  # an older writer killed mid-line
    append_manifest(tmp_path, [spec("c"), spec("d")])
    assert [s.name for s in read_manifest(tmp_path)] == ["a", "c", "d"]
    assert all(line.startswith("{") and line.endswith("}") for line in (tmp_path / MANIFEST).read_text().splitlines())


def test_progress_counts_runs_still_queued_as_running_not_failed(tmp_path, capsys):
    from lit_multimodal.sweeps.plan import RunSpec
    from lit_multimodal.sweeps.runner import _Progress

    runs = [
        RunSpec(id=n, name=n, stage="search", task="dtd", tuning="vpt_deep", seed=1, params={}, run_dir=n)
        for n in ("done", "requeued", "failed", "queued")
    ]
    _fake_result(tmp_path / "done", "success", 0.5)
    _fake_result(tmp_path / "requeued", "interrupted", None)  # hit its time limit, back in the queue
    _fake_result(tmp_path / "failed", "failed", None)
    _Progress(tmp_path, "search", runs)({tmp_path / "requeued", tmp_path / "queued"})
    assert "[search] 1 done, 1 failed, 2 running or queued of 4" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({LR_KEY: [1.0, -0.5], WD_KEY: [0.0]}, r"base_lr must be positive.*-0.5"),
        ({LR_KEY: [1.0], "model.init_args.tuning": ["vpt_deep", "prefix"]}, "does not validate.*prefix"),
    ],
)
def test_dry_run_validates_every_grid_point(tmp_path, vtab_fixture, grid, message):
    _, base = vtab_fixture
    with pytest.raises(SweepError, match=message):
        sweep("dry", [str(base)], ["dtd"], grid=grid, out_dir=str(tmp_path / "sweep"), dry_run=True)


def test_value_points_parse_each_value_of_each_key_once():
    grid = {"a": [1, 2, 3], "b": [4, 5], "c": [6]}
    assert value_points(grid) == [
        {"a": 1, "b": 4, "c": 6},
        {"a": 2, "b": 4, "c": 6},
        {"a": 3, "b": 4, "c": 6},
        {"a": 1, "b": 5, "c": 6},
    ]
    seen = {(key, point[key]) for point in value_points(grid) for key in grid}
    assert seen == {(key, value) for key, values in grid.items() for value in values}


def test_variants_layer_configs_grid_and_args_over_the_sweep():
    plans = expand_variants(
        "cmp",
        ["base.yaml"],
        {LR_KEY: [1.0, 0.5], WD_KEY: [0.0]},
        ["--trainer.max_epochs=1"],
        None,
        {
            "plain": {},
            "lora": {"base_config": ["lora.yaml"], "grid": {LR_KEY: [0.01], "r": [4, 8]}, "extra_args": ["--x=1"]},
            "fixed": {"grid": {LR_KEY: None, WD_KEY: None, "dim": [2]}},
        },
    )
    assert list(plans) == ["plain", "lora", "fixed"]
    assert plans["plain"] == {
        "name": "cmp/plain",
        "base_config": ["base.yaml"],
        "grid": {LR_KEY: [1.0, 0.5], WD_KEY: [0.0]},
        "extra_args": ["--trainer.max_epochs=1"],
        "out_dir": str(Path("runs/sweeps/cmp/plain")),
    }
    assert plans["lora"]["base_config"] == ["base.yaml", "lora.yaml"]
    assert plans["lora"]["grid"] == {LR_KEY: [0.01], WD_KEY: [0.0], "r": [4, 8]}
    assert plans["lora"]["extra_args"] == ["--trainer.max_epochs=1", "--x=1"]
    assert plans["fixed"]["grid"] == {"dim": [2]}  # null drops a key of the sweep's grid
    only = expand_variants("cmp", [], None, None, "out", {"a": {}, "b": {}}, only=["b"])
    assert list(only) == ["b"] and only["b"]["out_dir"] == str(Path("out/b")) and only["b"]["grid"] is None
    with pytest.raises(SweepError, match=r"variant 'a': unknown keys \['grids'\]"):
        expand_variants("cmp", [], None, None, None, {"a": {"grids": {}}})
    with pytest.raises(SweepError, match=r"unknown variants \['c'\]"):
        expand_variants("cmp", [], None, None, None, {"a": {}, "b": {}}, only=["c"])
    with pytest.raises(SweepError, match="not a folder name"):
        expand_variants("cmp", [], None, None, None, {"a/b": {}})


def test_variant_sweeps_plan_each_variant_on_its_own_and_validate_all_before_running(tmp_path, vtab_fixture, capsys):
    _, base = vtab_fixture
    layer = tmp_path / "bias.yaml"
    layer.write_text(yaml.safe_dump({"model": {"init_args": {"tuning": "bias"}}}))
    out = tmp_path / "sweep"
    variants = {"vpt": {}, "bias": {"base_config": [str(layer)], "grid": {LR_KEY: [0.1]}}}
    summary = sweep("cmp", [str(base)], ["dtd"], grid=TINY_GRID, out_dir=str(out), variants=variants, dry_run=True)
    printed = capsys.readouterr().out
    assert summary["search_runs"] == 3 and {k: v["search_runs"] for k, v in summary["variants"].items()} == {
        "vpt": 2,
        "bias": 1,
    }
    assert "dtd [vpt_deep]" in printed and "dtd [bias]" in printed
    assert str(out / "bias" / "search" / "dtd" / "lr0.1_wd0_seed42") in printed
    assert str(out / "vpt" / "search" / "dtd" / "lr0.5_wd0_seed42") in printed
    assert not out.exists()
    bad = {"vpt": {}, "broken": {"grid": {LR_KEY: [-1.0]}}}  # the second variant is wrong: the first must not run
    with pytest.raises(SweepError, match="base_lr must be positive"):
        sweep("cmp", [str(base)], ["dtd"], grid=TINY_GRID, out_dir=str(out), variants=bad)
    assert not out.exists()


def test_a_success_without_metrics_is_not_done(tmp_path):
    from lit_multimodal.sweeps.launchers import is_done

    _fake_result(tmp_path / "empty", "success", None)  # a resumed run that trained and validated nothing
    _fake_result(tmp_path / "full", "success", 0.5)
    assert not is_done(tmp_path / "empty") and is_done(tmp_path / "full")


# -- a sweep over another module names its learning-rate key ------------------------------------------------

PANDAGPT_LR, PANDAGPT_WD = "model.init_args.lr", "model.init_args.weight_decay"
PANDAGPT_SWEEP = {
    "base_config": ["configs/quickstart/pandagpt.yaml"],
    "tasks": ["digits"],
    "task_arg": None,
    "search_args": {},
    "final_args": {},
    "metric": "val/gen_acc",
}


def test_the_sweep_file_names_its_learning_rate_key_and_the_checks_follow_it(tmp_path):
    from lit_multimodal.sweeps.plan import default_grid

    grid = {PANDAGPT_LR: [0.02, -0.01], PANDAGPT_WD: [0.0]}
    # PandaGPT accepts any float at parse time, so only the check of the named key can refuse -0.01.
    with pytest.raises(SweepError, match=r"model.init_args.lr must be positive.*gives -0.01"):
        sweep("pg", **PANDAGPT_SWEEP, grid=grid, lr_key=PANDAGPT_LR, wd_key=PANDAGPT_WD,
              out_dir=str(tmp_path / "s"), dry_run=True)  # fmt: skip
    assert default_grid(PANDAGPT_LR, PANDAGPT_WD) == {
        PANDAGPT_LR: [50.0, 25.0, 10.0, 5.0, 2.5, 1.0, 0.5, 0.25, 0.1, 0.05],
        PANDAGPT_WD: [0.01, 0.001, 0.0001, 0.0],
    }
    assert default_grid() == {LR_KEY: default_grid(PANDAGPT_LR)[PANDAGPT_LR], WD_KEY: [0.01, 0.001, 0.0001, 0.0]}


def test_selection_records_the_learning_rate_of_the_named_key(tmp_path):
    from lit_multimodal.sweeps.runner import Sweep

    plan = Sweep(name="pg", **PANDAGPT_SWEEP, grid={PANDAGPT_LR: [0.02, 0.01], PANDAGPT_WD: [0.001]}, search_seed=0,
                 final_seeds=[1], extra_args=[], out_dir=tmp_path, lr_key=PANDAGPT_LR, wd_key=PANDAGPT_WD)  # fmt: skip
    runs = plan.search_runs({"digits": "pandagpt"})
    assert [spec.name for spec in runs] == ["lr0.02_wd0.001_seed0", "lr0.01_wd0.001_seed0"]
    for spec, gen_acc in zip(runs, (0.4, 0.7), strict=True):
        write_json_atomic(
            tmp_path / spec.run_dir / "result.json", {"status": "success", "metrics": {"val/gen_acc": gen_acc}}
        )
    selection, problems = plan.select(runs)
    assert not problems
    assert selection["digits"]["base_lr"] == 0.01 and selection["digits"]["weight_decay"] == 0.001
    assert selection["digits"]["params"] == {PANDAGPT_LR: 0.01, PANDAGPT_WD: 0.001}
    # the report's per-run rows read the learning rate under the sweep's key too
    from lit_multimodal.sweeps.plan import append_manifest
    from lit_multimodal.sweeps.rows import collect_runs

    append_manifest(tmp_path, runs)
    rows = {row.name: row for row in collect_runs(tmp_path)}
    assert rows["lr0.02_wd0.001_seed0"].base_lr == 0.02 and rows["lr0.01_wd0.001_seed0"].weight_decay == 0.001
