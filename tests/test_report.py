"""``lit-mm report`` on hand-built sweep folders: CSV rows, mean ± std, paper tables, missing runs, plot."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from lit_multimodal.data.fgvc import FGVC_DATASETS
from lit_multimodal.data.vtab import VTAB_TASKS
from lit_multimodal.sweeps import report, sweep_progress
from lit_multimodal.sweeps.rows import CSV_COLUMNS

LR_KEY = "model.optim.base_lr"
WD_KEY = "model.optim.weight_decay"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FakeSweep:
    """A sweep folder in the runner's layout: manifest.jsonl, run folders with result.json and log.txt."""

    def __init__(self, root: Path, tuning: str = "vpt_deep", tuned_percent: float = 1.0) -> None:
        self.root = root
        self.tuning = tuning
        self.tuned_percent = tuned_percent
        root.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        stage: str,
        task: str,
        seed: int = 42,
        lr: float = 25.0,
        wd: float = 0.001,
        status: str | None = "success",
        val: float | None = None,
        test: float | None = None,
        error: str | None = None,
        log: bool = True,
    ) -> str:
        """Plans one run; ``status=None`` leaves it without result.json (missing)."""
        name = f"lr{lr:g}_wd{wd:g}_seed{seed}"
        run_dir = f"{stage}/{task}/{name}"
        entry = {
            "id": hashlib.sha256(f"{self.root}{run_dir}".encode()).hexdigest()[:12],
            "name": name,
            "stage": stage,
            "task": task,
            "tuning": self.tuning,
            "seed": seed,
            "params": {LR_KEY: lr, WD_KEY: wd},
            "run_dir": run_dir,
        }
        with (self.root / "manifest.jsonl").open("a") as handle:
            handle.write(json.dumps(entry) + "\n")
        folder = self.root / run_dir
        folder.mkdir(parents=True, exist_ok=True)
        if log:
            (folder / "log.txt").write_text("epoch 0 ...\n")
        (folder / "run_config.yaml").write_text(f"seed_everything: {seed}\nmodel:\n  optim:\n    base_lr: {lr}\n")
        if status is None:
            return run_dir
        metrics = {}
        if val is not None:
            metrics["val/top1"] = val
        if test is not None:
            metrics["test/top1"] = test
        result = {
            "status": status,
            "metrics": metrics,
            "params": {
                "total": 86_000_000,
                "trainable": int(self.tuned_percent * 860_000),
                "backbone": 85_800_000,
                "tuned_percent": self.tuned_percent,
                "tuned_percent_of_backbone": self.tuned_percent * 1.01,
            },
            "hparams": {"tuning": self.tuning, "base_lr": lr, "weight_decay": wd, "lr": lr / 2},
            "wall_time_s": 12.5,
            "seed": seed,
            "data": {"class_path": "lit_multimodal.data.VTAB1kDataModule", "init_args": {"task": task}},
        }
        if error:
            result["error"] = error
        (folder / "result.json").write_text(json.dumps(result))
        return run_dir

    def finals(self, task: str, tests: list[float]) -> None:
        for seed, test in zip([42, 44, 82, 100, 800], tests, strict=False):
            self.add("final", task, seed=seed, test=test)

    def select(self, task: str, run_dir: str, lr: float, wd: float, val: float, metric_key: str = "val_top1") -> None:
        path = self.root / "selection.json"
        selection = json.loads(path.read_text()) if path.is_file() else {}
        selection[task] = {
            "base_lr": lr,
            "weight_decay": wd,
            metric_key: val,
            "run_id": "0123456789ab",
            "run_dir": run_dir,
            "config": f"{run_dir}/run_config.yaml",
        }
        path.write_text(json.dumps(selection))


def md_table(summary: str, heading: str) -> dict[str, dict[str, str]]:
    """The Markdown table under ``## heading`` as {row header: {column: cell}}."""
    lines = summary.split(f"## {heading}\n", 1)[1].strip().splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    header, body = rows[0], rows[2:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def dtd_sweep(tmp_path_factory) -> FakeSweep:
    """VPT-Deep on DTD: two search runs (one failed), three final seeds done, one missing, one failed."""
    sweep = FakeSweep(tmp_path_factory.mktemp("dtd") / "vpt_deep")
    best = sweep.add("search", "dtd", lr=25.0, val=0.62)
    sweep.add("search", "dtd", lr=10.0, status="failed", error="RuntimeError: CUDA out of memory\ntraceback ...")
    sweep.finals("dtd", [0.80, 0.82, 0.84])
    sweep.add("final", "dtd", seed=100, status=None, log=False)
    # A crashed run keeps the placeholder metrics logged at fit start; they must not enter the mean.
    sweep.add("final", "dtd", seed=800, status="failed", test=0.0, error="ValueError: loss is nan")
    sweep.select("dtd", best, 25.0, 0.001, 0.62)
    return sweep


@pytest.fixture(scope="module")
def dtd_report(dtd_sweep) -> tuple[dict, str]:
    """The report of ``dtd_sweep`` (written once for the module) and its summary.md."""
    out = report(str(dtd_sweep.root))
    return out, Path(out["summary_md"]).read_text()


def test_csv_has_one_row_per_planned_run(dtd_report):
    out, _ = dtd_report
    rows = read_csv(out["results_csv"])
    assert tuple(rows[0]) == CSV_COLUMNS
    for column in ("sweep", "task", "tuning", "stage", "base_lr", "weight_decay", "seed", "status", "val_top1"):
        assert column in CSV_COLUMNS
    for column in ("test_top1", "tuned_percent", "tuned_percent_of_backbone", "trainable_params", "wall_time_s"):
        assert column in CSV_COLUMNS
    for column in ("run_dir", "log", "error"):
        assert column in CSV_COLUMNS
    assert len(rows) == 7
    assert [r["status"] for r in rows] == ["success", "failed", "success", "success", "success", "missing", "failed"]
    search = rows[0]
    assert search["sweep"] == "vpt_deep" and search["tuning"] == "vpt_deep" and search["task"] == "dtd"
    assert float(search["base_lr"]) == 25.0 and float(search["weight_decay"]) == 0.001
    assert float(search["val_top1"]) == pytest.approx(62.0) and search["test_top1"] == ""
    assert search["run_dir"] == "search/dtd/lr25_wd0.001_seed42"
    assert search["log"] == "search/dtd/lr25_wd0.001_seed42/log.txt"
    assert float(search["tuned_percent"]) == 1.0 and int(search["trainable_params"]) == 860_000
    final = rows[2]
    assert final["stage"] == "final" and final["seed"] == "42" and float(final["test_top1"]) == pytest.approx(80.0)
    assert rows[1]["error"].startswith("RuntimeError: CUDA out of memory")
    missing = rows[5]
    assert missing["seed"] == "100" and missing["log"] == "" and missing["test_top1"] == ""
    assert rows[6]["test_top1"] == ""
    assert {k: out[k] for k in ("total", "done", "failed", "interrupted", "missing")} == {
        "total": 7,
        "done": 4,
        "failed": 2,
        "interrupted": 0,
        "missing": 1,
    }


def test_mean_and_population_std_over_seeds(dtd_report):
    _, summary = dtd_report
    vtab = md_table(summary, "VTAB-1k")
    assert list(vtab) == ["VPT-Deep"]
    # (80 + 82 + 84) / 3 = 82; population std sqrt(8 / 3) = 1.633; the failed seed's placeholder 0 is left out.
    assert vtab["VPT-Deep"]["DTD"] == "82.00 ± 1.63 (3)"
    assert vtab["VPT-Deep"]["CIFAR-100"] == "—"
    assert "population standard deviation" in summary


def test_vtab_columns_and_group_means(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    sweep.finals("dtd", [0.70])
    for task, tests in {
        "patch_camelyon": [0.80],
        "eurosat": [0.90, 0.92],
        "resisc45": [0.70],
        "diabetic_retinopathy": [0.60],
    }.items():
        sweep.finals(task, tests)
    summary = Path(report(str(sweep.root))["summary_md"]).read_text()
    header = summary.split("## VTAB-1k\n\n", 1)[1].splitlines()[0]
    columns = [c.strip() for c in header.strip("|").split("|")]
    groups = ["Natural", "Specialized", "Structured"]
    assert columns == ["Method", *(t.short for t in VTAB_TASKS.values()), *groups, "Group mean", "Mean"]
    assert columns[1:20] == [
        "CIFAR-100",
        "Caltech101",
        "DTD",
        "Flowers102",
        "Pets",
        "SVHN",
        "Sun397",
        "PCam",
        "EuroSAT",
        "Resisc45",
        "Retinopathy",
        "Clevr-count",
        "Clevr-dist",
        "DMLab",
        "KITTI-dist",
        "dSpr-loc",
        "dSpr-ori",
        "sNORB-azi",
        "sNORB-ele",
    ]
    row = md_table(summary, "VTAB-1k")["VPT-Deep"]
    assert row["EuroSAT"] == "91.00 ± 1.00 (2)"
    assert row["Specialized"] == "75.25"  # (80 + 91 + 70 + 60) / 4
    assert row["Natural"] == "—" and row["Structured"] == "—" and row["Mean"] == "—" and row["Group mean"] == "—"
    assert "- VPT-Deep, Natural: no final results for CIFAR-100, Caltech101, Flowers102, Pets, SVHN, Sun397." in summary


def test_vtab_all_groups_and_overall_mean(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    values = {}
    for i, task in enumerate(VTAB_TASKS.values()):
        values[task.name] = (40 + 2 * i, task.group)
        sweep.finals(task.name, [(40 + 2 * i) / 100])
    row = md_table(Path(report(str(sweep.root))["summary_md"]).read_text(), "VTAB-1k")["VPT-Deep"]
    for group in ("Natural", "Specialized", "Structured"):
        members = [v for v, g in values.values() if g == group]
        assert row[group] == f"{sum(members) / len(members):.2f}"
    assert row["Natural"] == "46.00" and row["Specialized"] == "57.00" and row["Structured"] == "69.00"
    assert row["Mean"] == "58.00"  # 40, 42, ..., 76 over 19 tasks
    assert row["Group mean"] == "57.33"  # (46 + 57 + 69) / 3


def test_fgvc_table_and_mean(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    for task, tests in {
        "cub": [0.88, 0.89],
        "nabirds": [0.84],
        "flowers": [0.99],
        "dogs": [0.90],
        "cars": [0.83],
    }.items():
        sweep.finals(task, tests)
    summary = Path(report(str(sweep.root))["summary_md"]).read_text()
    fgvc = md_table(summary, "FGVC")
    assert list(fgvc["VPT-Deep"]) == ["Method", "CUB", "NABirds", "Flowers", "Dogs", "Cars", "Mean"]
    assert set(FGVC_DATASETS) == {"cub", "nabirds", "flowers", "dogs", "cars"}
    assert fgvc["VPT-Deep"]["CUB"] == "88.50 ± 0.50 (2)"
    assert fgvc["VPT-Deep"]["Mean"] == "88.90"  # (88.5 + 84 + 99 + 90 + 83) / 5
    assert "## VTAB-1k" not in summary


def test_fgvc_mean_needs_every_dataset(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    sweep.finals("cub", [0.88])
    sweep.add("final", "cars", status=None)
    summary = Path(report(str(sweep.root))["summary_md"]).read_text()
    row = md_table(summary, "FGVC")["VPT-Deep"]
    assert row["Cars"] == "—" and row["Mean"] == "—"
    assert "- VPT-Deep, Mean: no final results for NABirds, Flowers, Dogs, Cars." in summary


def test_missing_and_failed_runs_are_listed_with_logs(dtd_report):
    _, summary = dtd_report
    section = summary.split("## Missing or failed runs\n", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("| vpt_deep")]
    assert len(lines) == 3
    failed_search, missing, failed_final = lines
    assert "`search/dtd/lr10_wd0.001_seed42`" in failed_search
    assert "`search/dtd/lr10_wd0.001_seed42/log.txt`" in failed_search
    assert "`RuntimeError: CUDA out of memory`" in failed_search and "traceback" not in failed_search
    assert "`final/dtd/lr25_wd0.001_seed100`" in missing and "missing" in missing and "no log.txt" in missing
    assert "`final/dtd/lr25_wd0.001_seed800/log.txt`" in failed_final and "loss is nan" in failed_final
    assert "4 done, 2 failed, 0 interrupted, 1 missing of 7 planned" in summary


def test_chosen_hyperparameters_and_config_copies(dtd_sweep, dtd_report):
    out, summary = dtd_report
    copy = dtd_sweep.root / "chosen" / "vpt_deep" / "dtd.yaml"
    assert out["chosen_configs"] == [str(copy)]
    assert copy.read_text() == (dtd_sweep.root / "search/dtd/lr25_wd0.001_seed42/run_config.yaml").read_text()
    chosen = md_table(summary, "Chosen hyper-parameters")["vpt_deep"]
    assert chosen["Method"] == "VPT-Deep" and chosen["Task"] == "DTD"
    assert chosen["base lr"] == "25" and chosen["weight decay"] == "0.001" and chosen["val top-1 (%)"] == "62.00"
    assert chosen["Config"] == "chosen/vpt_deep/dtd.yaml"
    tuned = md_table(summary, "Tuned parameters")["VPT-Deep"]
    assert tuned["Tuned % of all (min–max)"] == "1" and tuned["Tuned % of backbone"] == "1.01"


def test_png_plot(dtd_report):
    out, _ = dtd_report
    data = Path(out["plot"]).read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert out["plotted"] == "final test top-1"


def test_plot_falls_back_to_search_val(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    sweep.add("search", "dtd", lr=25.0, val=0.62)
    sweep.add("search", "dtd", lr=10.0, val=0.65)
    out = report(str(sweep.root), out=str(tmp_path / "report"))
    assert out["plotted"] == "search val top-1"
    assert Path(out["plot"]).read_bytes().startswith(PNG_SIGNATURE)
    assert Path(out["plot"]).parent == tmp_path / "report"
    assert "No final-stage results yet." in Path(out["summary_md"]).read_text()


def test_two_sweeps_under_one_parent_share_one_table(tmp_path, capsys):
    deep = FakeSweep(tmp_path / "sweeps" / "vpt_deep", "vpt_deep", tuned_percent=0.9)
    linear = FakeSweep(tmp_path / "sweeps" / "linear", "linear", tuned_percent=0.2)
    deep.finals("cub", [0.88, 0.89])
    linear.finals("cub", [0.85])
    # Selection written the way the runner writes it: the metric under its logged name.
    linear.select("cub", "final/cub/lr25_wd0.001_seed42", 25.0, 0.001, 0.86, metric_key="val/top1")
    out = report(str(tmp_path / "sweeps"))
    summary = Path(out["summary_md"]).read_text()
    fgvc = md_table(summary, "FGVC")
    assert list(fgvc) == ["Linear", "VPT-Deep"]
    assert fgvc["Linear"]["CUB"] == "85.00 ± 0.00 (1)" and fgvc["VPT-Deep"]["CUB"] == "88.50 ± 0.50 (2)"
    assert md_table(summary, "Chosen hyper-parameters")["linear"]["val top-1 (%)"] == "86.00"
    rows = read_csv(out["results_csv"])
    assert {r["sweep"] for r in rows} == {"linear", "vpt_deep"}
    assert "linear/final/cub/lr25_wd0.001_seed42" in {r["run_dir"] for r in rows}
    assert (tmp_path / "sweeps" / "chosen" / "linear" / "cub.yaml").is_file()
    assert "VPT-Deep" in capsys.readouterr().out


def test_same_method_in_two_sweeps_with_a_shared_task_gets_a_row_per_sweep(tmp_path):
    FakeSweep(tmp_path / "p10").finals("cub", [0.80])
    FakeSweep(tmp_path / "p50").finals("cub", [0.90])
    fgvc = md_table(Path(report(str(tmp_path))["summary_md"]).read_text(), "FGVC")
    assert list(fgvc) == ["VPT-Deep (p10)", "VPT-Deep (p50)"]


def test_other_tasks_table(tmp_path):
    sweep = FakeSweep(tmp_path / "bci", "full", tuned_percent=100.0)
    sweep.finals("bci", [0.5, 0.7])
    summary = Path(report(str(sweep.root))["summary_md"]).read_text()
    assert md_table(summary, "Other tasks")["Full"]["bci"] == "60.00 ± 10.00 (2)"


def test_only_the_selected_point_is_averaged_and_stale_finals_are_named(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    sweep.add("final", "dtd", seed=1, lr=0.25, test=0.26)  # finals of an earlier selection
    sweep.add("final", "dtd", seed=2, lr=0.25, test=0.27)
    sweep.add("final", "dtd", seed=1, lr=0.5, test=0.34)
    sweep.add("final", "dtd", seed=2, lr=0.5, test=0.36)
    sweep.select("dtd", "search/dtd/lr0.5_wd0.001_seed42", 0.5, 0.001, 0.4)
    selection = json.loads((sweep.root / "selection.json").read_text())
    selection["dtd"]["params"] = {LR_KEY: 0.5, WD_KEY: 0.001}  # the runner's entry holds the whole point
    (sweep.root / "selection.json").write_text(json.dumps(selection))
    out = report(str(sweep.root))
    summary = Path(out["summary_md"]).read_text()
    assert md_table(summary, "VTAB-1k")["VPT-Deep"]["DTD"] == "35.00 ± 1.00 (2)"  # (34 + 36) / 2, lr 0.5 only
    assert "Stale finals" in summary and "VPT-Deep, DTD: 2 runs of lr 0.25, wd 0.001." in summary
    rows = read_csv(out["results_csv"])
    assert [r["selected"] for r in rows] == ["False", "False", "True", "True"]


def test_console_table_shows_tasks_outside_fgvc_and_vtab(tmp_path, capsys):
    sweep = FakeSweep(tmp_path / "digits", "linear")
    sweep.finals("digits", [0.91, 0.93])
    report(str(sweep.root))
    printed = capsys.readouterr().out
    assert "digits" in printed and "92.00" in printed


def test_plot_has_readable_ticks_on_a_narrow_range_and_a_chance_line(tmp_path):
    from lit_multimodal.sweeps.plots import chance_levels
    from lit_multimodal.sweeps.rows import collect_runs
    from lit_multimodal.sweeps.tables import aggregate

    deep = FakeSweep(tmp_path / "sweeps" / "deep", "vpt_deep", tuned_percent=0.9)
    shallow = FakeSweep(tmp_path / "sweeps" / "shallow", "vpt_shallow", tuned_percent=0.5)
    deep.finals("dtd", [0.6])
    shallow.finals("dtd", [0.5])
    agg = aggregate(collect_runs(tmp_path / "sweeps"))
    assert list(chance_levels(agg, ["dtd"]).items()) == [(pytest.approx(100 / 47), ["DTD"])]  # 47 classes

    import matplotlib.figure

    drawn = {}
    original = matplotlib.figure.Figure.savefig

    def keep_axes(fig, *args, **kwargs):
        drawn["ax"] = fig.axes[0]
        return original(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = keep_axes
    try:
        report(str(tmp_path / "sweeps"))
    finally:
        matplotlib.figure.Figure.savefig = original
    ax = drawn["ax"]
    ticks = [label.get_text() for label in ax.get_xticklabels()]
    assert ticks == ["0.5", "0.9"]  # 0.5-0.9 % spans less than a decade: a tick at each point
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(100 / 47)


def test_sweep_progress(dtd_sweep):
    assert sweep_progress(dtd_sweep.root) == {"total": 7, "done": 4, "failed": 2, "interrupted": 0, "missing": 1}


def test_manifest_replanned_and_partial_lines(tmp_path):
    sweep = FakeSweep(tmp_path / "sweep")
    sweep.add("final", "dtd", status=None)
    sweep.add("final", "dtd", test=0.7)  # the same run planned again: one row
    with (sweep.root / "manifest.jsonl").open("a") as handle:
        handle.write('{"id": "abc", "name": ')  # a line being appended right now
    assert sweep_progress(sweep.root) == {"total": 1, "done": 1, "failed": 0, "interrupted": 0, "missing": 0}


def test_no_manifest_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.jsonl"):
        report(str(tmp_path))


def test_parameter_counts_are_written_as_people_read_them():
    from lit_multimodal.sweeps.tables import format_count

    assert [format_count(n) for n in (485, 6245, 855_000, 86_600_000, 1_200_786_990)] == [
        "485",
        "6.2 K",
        "0.855 M",
        "86.6 M",
        "1.2 B",
    ]
