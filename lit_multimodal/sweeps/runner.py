"""``lit-mm sweep``: learning-rate × weight-decay search, per-task selection, seeded finals, one command.

The sweep file (``experiments/*.yaml``) holds the keyword arguments of :func:`sweep`. Every grid point is a
separate ``lit-mm fit`` process with its own frozen ``run_config.yaml`` and run directory under
``<out_dir>/<stage>/<task>/<name>``; ``manifest.jsonl`` lists every planned run and ``selection.json`` the
chosen point per task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentError, Namespace

from lit_multimodal.files import write_text_atomic
from lit_multimodal.sweeps.launchers import LocalLauncher, SlurmLauncher, SlurmOptions, is_done
from lit_multimodal.sweeps.plan import (
    DEFAULT_LR_KEY,
    DEFAULT_WD_KEY,
    FINAL_SEEDS,
    RUN_CONFIG,
    SELECTION,
    RunSpec,
    SweepError,
    append_manifest,
    check_grid_values,
    default_grid,
    expand_variants,
    grid_points,
    override_args,
    run_id,
    run_name,
    value_points,
)
from lit_multimodal.training.results import read_result, read_status, result_status, write_json_atomic

Stage = Literal["search", "final"]


class ConfigRenderer:
    """Validates and freezes ``lit-mm fit`` configs in-process, as ``lit-mm fit`` parses them.

    Both go through :func:`lit_multimodal.fit_config.parse_fit_config` (its parser is built once per process).
    """

    def parse(self, args: list[str]) -> Namespace:
        """Parses ``lit-mm fit`` arguments; a config that does not validate raises :class:`SweepError`."""
        from lit_multimodal.fit_config import parse_fit_config

        try:
            return parse_fit_config(list(args))
        except ArgumentError as err:
            raise SweepError(f"the run config does not validate ({' '.join(args)}):\n{err}") from None

    def render(self, args: list[str]) -> str:
        """The complete, resolved YAML config of ``lit-mm fit <args>``."""
        from lit_multimodal.fit_config import dump_fit_config

        return dump_fit_config(self.parse(args))


class SweepIncompleteError(SweepError):
    """The sweep ran, but a task has no selectable search run; ``summary`` holds what was done."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


@dataclass
class Sweep:
    """The planned sweep (see :func:`sweep` for the meaning of each field)."""

    name: str
    base_config: list[str]
    tasks: list[str]
    task_arg: str | None
    grid: dict[str, list[Any]]
    search_seed: int
    final_seeds: list[int]
    search_args: dict[str, Any]
    final_args: dict[str, Any]
    metric: str
    extra_args: list[str]
    out_dir: Path
    lr_key: str = DEFAULT_LR_KEY
    wd_key: str = DEFAULT_WD_KEY
    renderer: ConfigRenderer = field(default_factory=ConfigRenderer)

    def configs_for(self, task: str) -> list[str]:
        """The base config files of a task (``{task}`` in a path is replaced by the task name)."""
        paths = [path.replace("{task}", task) for path in self.base_config]
        missing = [path for path in paths if not Path(path).is_file()]
        if missing:
            raise SweepError(f"task {task!r}: base config files do not exist: {missing}")
        return paths

    def task_overrides(self, task: str) -> dict[str, Any]:
        """The override that selects the task (none when the base config is per task)."""
        return {self.task_arg: task} if self.task_arg else {}

    def args_for(self, task: str, stage_args: dict[str, Any], params: dict[str, Any], seed: int) -> list[str]:
        """The ``lit-mm fit`` arguments of one run (without the run directory)."""
        args = []
        for path in self.configs_for(task):
            args += ["--config", path]
        overrides = {**self.task_overrides(task), **stage_args, **params, "seed_everything": seed}
        return args + override_args(overrides) + [arg.replace("{task}", task) for arg in self.extra_args]

    def validate(self) -> dict[str, str]:
        """Parses every task's search and final configs before anything runs; returns the tuning per task."""
        if not self.tasks:
            raise SweepError("no tasks given")
        points = value_points(self.grid)
        if not self.final_seeds:
            raise SweepError("final_seeds is empty")
        _check_known_tasks(self.tasks, self.task_arg)
        tunings = {}
        # Every task with the first point, and each further value of each key with the first task: grid
        # values depend neither on the task nor on each other, so this checks each value once without
        # parsing tasks x points configs.
        checks = [(task, points[0]) for task in self.tasks] + [(self.tasks[0], point) for point in points[1:]]
        for task, point in checks:
            for stage_args in (self.search_args, self.final_args):
                config = self.renderer.parse(self.args_for(task, stage_args, point, self.search_seed))
                check_grid_values(config, point, self.lr_key, self.wd_key)
            if point is points[0]:
                tuning = config.model.init_args.get("tuning", "?") if config.get("model") else "?"
                tunings[task] = tuning if isinstance(tuning, str) else _method_name(tuning)
        return tunings

    def _spec(self, stage: Stage, task: str, tuning: str, params: dict[str, Any], seed: int) -> RunSpec:
        stage_args = self.search_args if stage == "search" else self.final_args
        args = self.args_for(task, stage_args, params, seed)
        name = run_name(params, seed)
        return RunSpec(
            id=run_id(self.configs_for(task), task, stage, params, seed),
            name=name,
            stage=stage,
            task=task,
            tuning=tuning,
            seed=seed,
            params=params,
            run_dir=f"{stage}/{task}/{name}",
            args=args,
            lr_key=self.lr_key,
            wd_key=self.wd_key,
        )

    def search_runs(self, tunings: dict[str, str]) -> list[RunSpec]:
        """Every grid point of every task on the search split, with the search seed."""
        return [
            self._spec("search", task, tunings[task], point, self.search_seed)
            for task in self.tasks
            for point in grid_points(self.grid)
        ]

    def final_runs(self, tunings: dict[str, str], selection: dict[str, dict[str, Any]]) -> list[RunSpec]:
        """The chosen point of every selected task, once per final seed."""
        return [
            self._spec("final", task, tunings[task], selection[task]["params"], seed)
            for task in self.tasks
            if task in selection
            for seed in self.final_seeds
        ]

    def render(self, spec: RunSpec) -> Path:
        """Writes the run's frozen config (once; an existing one is kept so that a resumed run is unchanged)."""
        run_dir = (self.out_dir / spec.run_dir).resolve()
        config_path = run_dir / RUN_CONFIG
        if not config_path.is_file():
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(config_path, self.renderer.render([*spec.args, f"--trainer.default_root_dir={run_dir}"]))
        return run_dir

    def select(self, runs: list[RunSpec]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
        """The best search point per task: highest last-epoch ``metric``; ties go to the smaller grid values.

        Grid values are compared in the grid's key order, so with the default grid a tie goes to the smaller
        learning rate, then the smaller weight decay (the official rule).

        Returns:
            ``(selection, problems)``: per task the chosen params, metric, run id, run dir and config; and per
            task the runs that failed or miss the metric.
        """
        selection: dict[str, dict[str, Any]] = {}
        problems: dict[str, list[str]] = {}
        for task in self.tasks:
            scored = []
            for spec in (r for r in runs if r.task == task and r.stage == "search"):
                run_dir = self.out_dir / spec.run_dir
                value = _metric(run_dir, self.metric)
                if value is None:
                    status = read_status(run_dir)
                    status = f"success without {self.metric}" if status == "success" else status
                    problems.setdefault(task, []).append(f"{spec.run_dir} ({status})")
                    continue
                key = tuple(spec.params[k] for k in self.grid)
                scored.append((-value, key, spec))
            if not scored:
                continue
            scored.sort(key=lambda item: (item[0], item[1]))
            best_value, _, best = scored[0]
            selection[task] = {
                "params": best.params,
                "base_lr": best.params.get(self.lr_key),
                "weight_decay": best.params.get(self.wd_key),
                self.metric: -best_value,
                "run_id": best.id,
                "run_dir": best.run_dir,
                "config": f"{best.run_dir}/{RUN_CONFIG}",
            }
        return selection, problems


def _metric(run_dir: Path, metric: str) -> float | None:
    result = read_result(run_dir)
    if result_status(result) != "success":
        return None
    return result.get("metrics", {}).get(metric)


def _check_known_tasks(tasks: list[str], task_arg: str | None) -> None:
    """VTAB-1k task names are checked against the task table when the sweep sets ``data.task``."""
    if not task_arg or not task_arg.endswith("task"):
        return
    from lit_multimodal.data.vtab import VTAB_TASKS

    unknown = [t for t in tasks if t not in VTAB_TASKS]
    if unknown:
        raise SweepError(f"unknown tasks {unknown}; known VTAB-1k tasks: {sorted(VTAB_TASKS)}")


class _Progress:
    """Prints done / failed / running counts of the runs being waited on.

    A run the launcher still has running or queued counts as running whatever its ``result.json`` says: a
    SLURM run requeued after a time-out, or a run redone after an earlier failure, has not failed (yet).
    """

    def __init__(self, out_dir: Path, stage: str, runs: list[RunSpec]) -> None:
        self.out_dir, self.stage, self.runs = out_dir, stage, runs

    def counts(self, active: set[Path]) -> tuple[int, int, int]:
        """``(done, failed, running or queued)``; ``active`` holds the run directories still in the launcher."""
        active = {Path(p).resolve() for p in active}
        done = failed = 0
        for spec in self.runs:
            run_dir = self.out_dir / spec.run_dir
            status = read_status(run_dir)
            if status == "success":
                done += 1
            elif status in ("failed", "interrupted") and run_dir.resolve() not in active:
                failed += 1
        return done, failed, len(self.runs) - done - failed

    def __call__(self, active: set[Path]) -> None:
        done, failed, running = self.counts(active)
        print(
            f"[{self.stage}] {done} done, {failed} failed, {running} running or queued of {len(self.runs)}",
            flush=True,
        )


def _print_plan(sweep: Sweep, runs: list[RunSpec], tunings: dict[str, str]) -> None:
    points = len(grid_points(sweep.grid))
    print(f"sweep {sweep.name!r} → {sweep.out_dir}")
    print(f"  tasks ({len(sweep.tasks)}): {', '.join(f'{t} [{tunings[t]}]' for t in sweep.tasks)}")
    print(f"  grid: {points} points ({' × '.join(f'{k}: {v}' for k, v in sweep.grid.items())})")
    pending = [r for r in runs if not is_done(sweep.out_dir / r.run_dir)]
    print(f"  search: {len(runs)} runs ({len(runs) - len(pending)} already done), seed {sweep.search_seed}")
    finals = len(sweep.tasks) * len(sweep.final_seeds)
    print(f"  final: the chosen point per task × seeds {sweep.final_seeds} = {finals} runs")
    for spec in runs[:3]:
        print(f"  e.g. {sweep.out_dir / spec.run_dir}: lit-mm fit {' '.join(spec.args)}")
    if len(runs) > 3:
        print(f"  ... and {len(runs) - 3} more")


def sweep(
    name: str,
    base_config: list[str],
    tasks: list[str],
    task_arg: str | None = "data.init_args.task",
    grid: dict[str, list[Any]] | None = None,
    search_seed: int = 42,
    final_seeds: list[int] | None = None,
    search_args: dict[str, Any] | None = None,
    final_args: dict[str, Any] | None = None,
    metric: str = "val/top1",
    extra_args: list[str] | None = None,
    out_dir: str | None = None,
    lr_key: str = DEFAULT_LR_KEY,
    wd_key: str = DEFAULT_WD_KEY,
    stages: list[Stage] | None = None,
    launcher: Literal["local", "slurm"] = "local",
    max_parallel: int = 1,
    devices: list[int] | None = None,
    slurm: SlurmOptions | None = None,
    variants: dict[str, dict[str, Any]] | None = None,
    only_variants: list[str] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Runs a VPT-protocol sweep: search on the validation split, choose per task, seeded final runs.

    Re-running the same command skips every run whose ``result.json`` says success and redoes failed or
    half-written ones (resuming from their last checkpoint), so a sweep can be killed and restarted at any
    moment. A task left without a selectable search run (every run failed) ends the sweep with an error
    after the other tasks' finals and the report.

    Args:
        name: sweep name (also the default output folder ``runs/sweeps/<name>``).
        base_config: ``lit-mm fit`` config files of every run, merged in order; ``{task}`` in a path is
            replaced by the task name (e.g. ``configs/vpt_deep_{task}.yaml`` for FGVC).
        tasks: the tasks: VTAB-1k task names, FGVC dataset names, ``bci``, ...
        task_arg: the config key set to the task name (``data.init_args.task`` for VTAB-1k); null when the
            base config is per task.
        grid: dotted config key → values; default the official grid: base lr {50, 25, 10, 5, 2.5, 1, 0.5,
            0.25, 0.1, 0.05} × weight decay {0.01, 0.001, 0.0001, 0} (base lr is scaled by batch/256 at run
            time, as the official).
        search_seed: seed of the search runs.
        final_seeds: seeds of the final runs (default the official 42, 44, 82, 100, 800).
        search_args: config overrides of the search stage (default ``data.init_args.stage: search``, i.e.
            train800 / val200, and no test).
        final_args: config overrides of the final stage (default ``data.init_args.stage: final``, i.e.
            train800val200, tested on test).
        metric: selection metric, the last-epoch value in each run's ``result.json``.
        extra_args: extra ``lit-mm fit`` arguments for every run, e.g. ``["--trainer.max_epochs=1"]``;
            ``{task}`` is replaced by the task name (``--data.root=/data/{task}``).
        out_dir: sweep folder (default ``runs/sweeps/<name>``).
        lr_key: the config key of the learning rate: the default grid's first key, checked to be positive,
            recorded as ``base_lr`` in ``selection.json``. The default is the image classifier's
            (``model.init_args.optim.base_lr``); PandaGPT's is ``model.init_args.lr``.
        wd_key: the config key of the weight decay (default grid's second key, checked to be >= 0); the image
            classifier's ``model.init_args.optim.weight_decay`` by default, PandaGPT's ``model.init_args.weight_decay``.
        stages: which stages to run (default both, search then final).
        launcher: ``local`` runs on this machine; ``slurm`` submits job arrays through submitit.
        max_parallel: local launcher: runs at once, each pinned to one device.
        devices: local launcher: the GPU indices to pin runs to (default ``0..max_parallel-1``).
        slurm: SLURM resources (partition, time, CPUs/GPUs per task, array parallelism, extra sbatch options).
        variants: variant name → ``{base_config, grid, extra_args}`` layered over the sweep's (e.g. one per
            tuning method); each variant is its own sweep under ``<out_dir>/<variant>``: searched, selected
            and finalised on its own, and one report over ``out_dir`` compares them. Every variant's
            configs validate before the first run starts.
        only_variants: run only these variants (default all).
        dry_run: print the plan and validate every config (every task and every grid value); run nothing.

    Returns:
        Counts per stage and the selection (with variants: these per variant, and the combined report).
    """
    plan_args = {
        "tasks": tasks,
        "task_arg": task_arg,
        "search_seed": search_seed,
        "final_seeds": final_seeds,
        "search_args": search_args,
        "final_args": final_args,
        "metric": metric,
        "lr_key": lr_key,
        "wd_key": wd_key,
    }
    run_args = {
        "stages": stages,
        "launcher": launcher,
        "max_parallel": max_parallel,
        "devices": devices,
        "slurm": slurm,
        "dry_run": dry_run,
    }
    if variants is not None:
        expanded = expand_variants(name, base_config, grid, extra_args, out_dir, variants, only_variants)
        renderer = ConfigRenderer()  # one parser for every variant
        plans = {v: _make_plan(**plan_args, **kwargs, renderer=renderer) for v, kwargs in expanded.items()}
        return _run_variants(plans, Path(out_dir or f"runs/sweeps/{name}"), **run_args)
    sweep_plan = _make_plan(name, base_config, grid=grid, extra_args=extra_args, out_dir=out_dir, **plan_args)
    return _execute(sweep_plan, sweep_plan.validate(), **run_args)


def _make_plan(
    name: str,
    base_config: list[str],
    tasks: list[str],
    task_arg: str | None,
    grid: dict[str, list[Any]] | None,
    search_seed: int,
    final_seeds: list[int] | None,
    search_args: dict[str, Any] | None,
    final_args: dict[str, Any] | None,
    metric: str,
    extra_args: list[str] | None,
    out_dir: str | None,
    lr_key: str = DEFAULT_LR_KEY,
    wd_key: str = DEFAULT_WD_KEY,
    renderer: ConfigRenderer | None = None,
) -> Sweep:
    """The :class:`Sweep` of :func:`sweep`'s arguments, with their defaults filled in."""
    return Sweep(
        name=name,
        base_config=list(base_config),
        tasks=list(tasks),
        task_arg=task_arg,
        grid=dict(grid) if grid is not None else default_grid(lr_key, wd_key),
        search_seed=search_seed,
        final_seeds=list(final_seeds) if final_seeds is not None else list(FINAL_SEEDS),
        search_args=dict(search_args)
        if search_args is not None
        else {"data.init_args.stage": "search", "test_after_fit": False},
        final_args=dict(final_args) if final_args is not None else {"data.init_args.stage": "final"},
        metric=metric,
        extra_args=list(extra_args or []),
        out_dir=Path(out_dir or f"runs/sweeps/{name}"),
        lr_key=lr_key,
        wd_key=wd_key,
        renderer=renderer or ConfigRenderer(),
    )


def _run_variants(plans: dict[str, Sweep], parent: Path, dry_run: bool, **run_args: Any) -> dict[str, Any]:
    """Validates every variant's sweep, then runs them one after the other and reports over ``parent``."""
    tunings = {variant: plan.validate() for variant, plan in plans.items()}
    summaries: dict[str, Any] = {}
    incomplete = []
    for number, (variant, plan) in enumerate(plans.items(), 1):
        print(f"== variant {number}/{len(plans)}: {variant}", flush=True)
        try:
            summaries[variant] = _execute(plan, tunings[variant], dry_run=dry_run, **run_args)
        except SweepIncompleteError as err:
            summaries[variant], incomplete = err.summary, [*incomplete, variant]
    if dry_run:
        total = sum(summary["search_runs"] for summary in summaries.values())
        return {"dry_run": True, "search_runs": total, "variants": summaries}
    from lit_multimodal.sweeps.report import report

    summary = {"out_dir": str(parent), "variants": summaries, "report": report(str(parent))}
    if incomplete:
        raise SweepIncompleteError(
            f"variants {incomplete} left tasks without a selectable search run; see {parent / 'summary.md'}",
            summary,
        )
    return summary


def _execute(
    sweep_plan: Sweep,
    tunings: dict[str, str],
    stages: list[Stage] | None,
    launcher: Literal["local", "slurm"],
    max_parallel: int,
    devices: list[int] | None,
    slurm: SlurmOptions | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Runs one validated sweep: search, selection, finals and its report (see :func:`sweep`)."""
    stages = list(stages or ["search", "final"])
    search = sweep_plan.search_runs(tunings)
    if dry_run:
        _print_plan(sweep_plan, search, tunings)
        return {"dry_run": True, "search_runs": len(search)}
    chosen_launcher = (
        SlurmLauncher(slurm or SlurmOptions())
        if launcher == "slurm"
        else LocalLauncher(max_parallel=max_parallel, devices=devices)
    )
    summary: dict[str, Any] = {"out_dir": str(sweep_plan.out_dir)}
    if "search" in stages:
        summary["search"] = _run_stage(sweep_plan, chosen_launcher, "search", search)
    selection, problems = sweep_plan.select(search)
    write_json_atomic(sweep_plan.out_dir / SELECTION, selection)
    summary["selection"] = selection
    metric = sweep_plan.metric
    if problems:
        summary["search_problems"] = problems
        for task, runs in problems.items():
            print(f"[search] {task}: {len(runs)} runs without {metric}: {runs[:3]}{' ...' * (len(runs) > 3)}")
    unselected = [task for task in sweep_plan.tasks if task not in selection]
    if "final" in stages:
        if unselected:
            print(f"[final] no finished search run to choose from for {unselected}; their finals are skipped")
        summary["final"] = _run_stage(sweep_plan, chosen_launcher, "final", sweep_plan.final_runs(tunings, selection))
    from lit_multimodal.sweeps.report import report

    summary["report"] = report(str(sweep_plan.out_dir))
    if unselected:
        raise SweepIncompleteError(
            f"no search run of {unselected} finished with {metric}, so nothing could be selected for "
            f"{'them' if len(unselected) > 1 else 'it'}; see {sweep_plan.out_dir / 'summary.md'} for the failed runs "
            "and run the sweep again to redo them",
            summary,
        )
    return summary


def _run_stage(sweep_plan: Sweep, launcher, stage: str, runs: list[RunSpec]) -> dict[str, int]:
    append_manifest(sweep_plan.out_dir, runs)
    pending = [spec for spec in runs if not is_done(sweep_plan.out_dir / spec.run_dir)]
    print(f"[{stage}] {len(runs) - len(pending)} of {len(runs)} runs already done; {len(pending)} to run", flush=True)
    for spec in pending:
        sweep_plan.render(spec)
    progress = _Progress(sweep_plan.out_dir, stage, runs)
    if pending:
        launcher.launch(sweep_plan.out_dir.resolve(), pending, progress)
    statuses = [read_status(sweep_plan.out_dir / spec.run_dir) for spec in runs]
    return {"total": len(runs), "done": statuses.count("success"), "failed": len(runs) - statuses.count("success")}


def _method_name(tuning: Any) -> str:
    """The registry name of a ``{class_path, init_args}`` tuning method (as tables and reports use it)."""
    from lit_multimodal.vision.methods import build_method

    spec = tuning.as_dict() if hasattr(tuning, "as_dict") else dict(tuning)
    return build_method(spec).name
