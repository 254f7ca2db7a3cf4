"""The `gpbt` command line: run / resume / report / export / retrain / bench / replay / demo /
envs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gpbt.errors import FolderError


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        # a log file or a pipe: one line stays one line (rich would wrap it at 80 columns,
        # splitting a value from its name), so grep and tail read it whole
        console.soft_wrap = True
    return console


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.table import Table

    from gpbt.demo import run_demo

    console = _console()
    console.print(
        f"[bold]gpbt demo[/]: every method on the toy problems, population "
        f"{args.population}, {args.seeds} seeds (same start per seed for every method)"
    )
    start = time.perf_counter()
    rows = run_demo(seeds=args.seeds, population=args.population)
    table = Table(title="best member's final score (mean ± s.e. over seeds)")
    for col in ("toy", "method", "best score", "wins vs random", "final diversity", "exploits/run"):
        table.add_column(col, justify="left" if col in ("toy", "method") else "right")
    for r in rows:
        table.add_row(
            r.toy,
            r.method,
            f"{r.mean:.4f} ± {r.stderr:.4f}",
            "-" if r.method == "random" else f"{100 * r.win_rate_vs_random:.0f}%",
            f"{r.mean_final_diversity:.3f}",
            f"{r.exploits:.1f}",
        )
    console.print(table)
    console.print(f"done in {time.perf_counter() - start:.1f}s")
    return 0


def _default_folder(cfg: dict) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = cfg.get("name") or f"{cfg.get('env') or cfg['engine']}-{cfg['method']}"
    return Path("runs") / f"{name.replace('/', '_')}-{stamp}"


def _run_engine(spec, folder: Path, resume: bool):
    """config -> spec -> engine -> summary: every engine through the same protocol
    (gpbt.engines.protocol), the live view fed by its events."""
    from gpbt.engines import run_engine
    from gpbt.live_view import LiveView

    with LiveView(spec) as view:
        return run_engine(spec, folder, resume=resume, on_event=view.update)


def cmd_run(args: argparse.Namespace) -> int:
    from gpbt.config import load_config

    # --tensorboard / --wandb PROJECT are shorthands for [logging] overrides
    flags = ["logging.tensorboard=true"] if args.tensorboard else []
    flags += [f"logging.wandb.project={args.wandb}"] if args.wandb else []
    cfg = load_config(args.config, [*args.overrides, *flags])
    folder = Path(args.out) if args.out else _default_folder(cfg)
    # run_engine refuses a folder that already holds a run, before the live view draws
    summary = _run_engine(cfg, folder, resume=False)
    _finish(folder, summary, cfg.space, args)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from gpbt.analysis.retrain import record_comparison, retrain_source
    from gpbt.config import resume_config
    from gpbt.store import load

    exp = load(args.folder)
    if exp.config is None:
        raise FolderError(
            f"{args.folder} holds no run to resume (no stored config); start one with "
            f"`gpbt run CONFIG --out {args.folder}`"
        )
    spec = resume_config(exp.config, args.overrides)
    summary = _run_engine(spec, Path(args.folder), resume=True)
    # a retrain continued ends as `gpbt retrain` does: its comparison recorded before the
    # report (which shows it), and no range-edge notes
    retrained = record_comparison(args.folder) if retrain_source(exp.config) else None
    _finish(Path(args.folder), summary, None if retrained else spec.space, args)
    if retrained:
        _print_retrain(retrained)
    return 0


def _finish(folder: Path, summary, space, args: argparse.Namespace) -> None:
    """Print the run's outcome and its range-edge notes (`space`: the searched space, None for
    none), then write the report unless --no-report."""
    console = _console()
    console.print(f"[bold green]finished[/]: {folder}")
    console.print(
        f"  best member: {summary.best_member} ({summary.score_basis}: "
        f"{_score(summary.best_score)}), population mean {_score(summary.population_mean)}"
    )
    console.print(f"  best config: {summary.best_config}")
    console.print(f"  exploits: {summary.exploits}   wall: {summary.wall_seconds or 0:.1f} s")
    # training is done and recorded: nothing after this line may turn it into a failure
    from gpbt.analysis.report import describe_failure, warn_on_stderr

    try:
        from gpbt.analysis.ranges import summary_edge_hits

        for hit in summary_edge_hits(space, summary) if space is not None else []:
            console.print(f"  [yellow]range edge[/]: {hit.sentence()}")
    except Exception as err:  # noqa: BLE001 - the notes are optional
        warn_on_stderr(f"range-edge notes not written ({describe_failure(err)})")
    if not getattr(args, "no_report", False):
        from gpbt.analysis.report import write_report

        try:
            out = write_report(folder)
        except Exception as err:  # noqa: BLE001 - the run is kept; `gpbt report` retries
            warn_on_stderr(
                f"report not written ({describe_failure(err)}); the run is complete, "
                f"`gpbt report {folder}` writes it"
            )
        else:
            console.print(f"report: {out}")


def cmd_report(args: argparse.Namespace) -> int:
    from gpbt.bench.results import is_results_folder
    from gpbt.bench.store import is_bench_folder

    if is_bench_folder(args.folder) or is_results_folder(args.folder):
        # a bench folder (gpbt bench): the comparison report over all its cells
        from gpbt.bench.report import write_bench_report

        out = write_bench_report(args.folder, out=args.out)
        _console().print(f"bench report written: {out / 'report.html'} (+ report.md, PNGs)")
        return 0
    from gpbt.analysis.report import write_report

    out = write_report(args.folder, metric=args.metric, animate=not args.no_animation)
    _console().print(f"report written: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from gpbt.analysis.export import export

    manifest = export(args.folder, args.out)
    out = Path(args.out) if args.out else Path(args.folder) / "export"
    console = _console()
    console.print(
        f"exported member {manifest['member']} (score {_score(manifest['score'])}, "
        f"{manifest['score_basis']}) of {args.folder} to {out}"
    )
    console.print(f"  schedule: {out / manifest['schedule']}")
    if manifest.get("weights"):
        console.print(f"  weights: {out / manifest['weights']}  ({manifest['load']})")
    elif manifest.get("checkpoint_path"):
        console.print(f"  checkpoint (kept by Ray): {manifest['checkpoint_path']}")
    if manifest.get("note"):
        console.print(f"  [yellow]note[/]: {manifest['note']}")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from gpbt.analysis.retrain import retrain

    summary = retrain(
        args.folder, seed=args.seed, seeds=args.seeds, logging=args.logging, out=args.out
    )
    result = summary["retrain"]
    folder = Path(result["folder"])
    # no range-edge notes: a retrain follows the recorded schedule, whose edges the run named
    _finish(folder, summary, None, args)
    _print_retrain(result)
    return 0


def _print_retrain(result: dict) -> None:
    """The retrain's one line: its fresh members' score beside the population's best."""
    if result["seeds"] == 1:
        score = _score(result["retrained"])
    else:
        interval = result["interval"]
        spread = (
            f"95% interval [{_score(interval[0])}, {_score(interval[1])}]"
            if interval
            else "no interval (fewer than two finite scores)"
        )
        score = f"mean {_score(result['retrained'])}, {spread} over {result['seeds']} members"
    _console().print(
        f"[bold]retrained[/] {result['seeds']} fresh member{'s' * (result['seeds'] > 1)} on "
        f"member {result['source_best_member']}'s lineage schedule "
        f"({result['config_changes']} config changes, seed {result['seed']}): "
        f"{score} vs the population's best {_score(result['population_best'])} "
        f"({result['score_basis']})"
    )


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def cmd_replay(args: argparse.Namespace) -> int:
    from gpbt.analysis.replay import replay

    ok, message = replay(args.folder, verbose=args.verbose)
    _console().print(message)
    return 0 if ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from gpbt.bench.runner import run_suite
    from gpbt.bench.store import load_bench

    if args.estimate:
        from gpbt.bench.estimate import print_estimate

        print_estimate(
            args.suite,
            seeds=args.seeds,
            generations=args.estimate_generations,
            tasks=args.tasks,
            methods=args.methods,
        )
        return 0

    out = run_suite(
        args.suite,
        out=args.out,
        seeds=args.seeds,
        results=args.results,
        tasks=args.tasks,
        methods=args.methods,
    )
    cells = load_bench(out).cells
    # a bench with failed cells is not a finished bench: say so in the exit status
    return 1 if (cells["status"] == "failed").any() else 0


def cmd_envs(args: argparse.Namespace) -> int:
    from gpbt.rl.envs import describe_env, known_envs

    infos = [describe_env(name) for name in known_envs()]
    rows = [("name", "observation", "action space", "episode length")]
    rows += [(i.name, str(i.obs_shape), i.action, f"{i.max_episode_steps} steps") for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    for row in rows:  # plain columns: one line per environment, for a terminal or a pipe
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    print('\nor your own: env = "module:function" (docs/custom-agents.md)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpbt",
        description="Population-based hyperparameter "
        "tuning for RL: GPBT-PL, PBT, PB2, random search",
    )
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train a population from a TOML config")
    run.add_argument("config", help="TOML file, e.g. examples/quickstart.toml")
    run.add_argument("overrides", nargs="*", help="key=value or table.key=value overrides")
    run.add_argument("--out", help="experiment folder (default: runs/<name>-<time>)")
    run.add_argument("--no-report", action="store_true", help="skip the report at the end")
    run.add_argument("--tensorboard", action="store_true", help="live curves in <out>/tensorboard")
    run.add_argument("--wandb", metavar="PROJECT", help="live curves in this W&B project")
    run.set_defaults(func=cmd_run)

    res = sub.add_parser("resume", help="continue a killed or interrupted run")
    res.add_argument("folder")
    res.add_argument(
        "overrides",
        nargs="*",
        help="key=value for what may change on resume: the local engine's workers, "
        "step_timeout, max_failures, threads_per_worker",
    )
    res.add_argument("--no-report", action="store_true")
    res.set_defaults(func=cmd_resume)

    rep = sub.add_parser("report", help="plots and a summary for an experiment folder")
    rep.add_argument("folder")
    rep.add_argument("--metric", default="score", help="report column to plot (default score)")
    rep.add_argument("--out", help="bench and results folders: where to write (FOLDER/report)")
    rep.add_argument(
        "--no-animation", action="store_true", help="skip the best member's episode GIF"
    )
    rep.set_defaults(func=cmd_report)

    exp = sub.add_parser(
        "export", help="the best member's final weights and its hyperparameter schedule"
    )
    exp.add_argument("folder")
    exp.add_argument("--out", help="where to write (default: FOLDER/export)")
    exp.set_defaults(func=cmd_export)

    ret = sub.add_parser(
        "retrain", help="train fresh members on the best lineage's schedule, no exploits"
    )
    ret.add_argument("folder")
    ret.add_argument("--seed", type=int, help="seed of the new members (default: the run's)")
    ret.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="train N fresh members (each its own initial weights) and print their mean "
        "score with a 95%% interval",
    )
    ret.add_argument(
        "--logging",
        action="store_true",
        help="send curves to the run's [logging] TensorBoard / W&B too (default: not)",
    )
    ret.add_argument(
        "--out", help="experiment folder (default: FOLDER/retrain-seed<S>, -x<N> with --seeds)"
    )
    ret.add_argument("--no-report", action="store_true")
    ret.set_defaults(func=cmd_retrain)

    rpl = sub.add_parser("replay", help="re-derive every decision from the log and compare")
    rpl.add_argument("folder")
    rpl.add_argument("--verbose", action="store_true")
    rpl.set_defaults(func=cmd_replay)

    ben = sub.add_parser("bench", help="run a benchmark suite (a shipped NAME or a TOML path)")
    ben.add_argument("suite")
    ben.add_argument("--out", help="bench folder (default: runs/bench-<suite>)")
    ben.add_argument("--seeds", type=int, help="override the suite's number of seeds")
    ben.add_argument(
        "--results",
        help="results folder (e.g. benchmarks/results/SUITE): each finished cell is written "
        "there as JSON, and cells already there are not run again",
    )
    ben.add_argument(
        "--estimate",
        action="store_true",
        help="run nothing: time a few generations of one cell per task, extrapolate the hours",
    )
    ben.add_argument("--estimate-generations", type=int, default=3, metavar="N")
    ben.add_argument(
        "--tasks",
        nargs="+",
        metavar="PATTERN",
        help="only the tasks whose names match (shell patterns, e.g. 'Freeway-*' "
        "'*@population=8'); the others stay pending for a later run, here or elsewhere",
    )
    ben.add_argument(
        "--methods",
        nargs="+",
        metavar="PATTERN",
        help="only the method rows whose names match (shell patterns, e.g. default pbt "
        "'pbt-*'); the others stay pending for a later run, here or elsewhere",
    )
    ben.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="every method on the toy problems (seconds, no engine)")
    demo.add_argument("--seeds", type=int, default=30)
    demo.add_argument("--population", type=int, default=8)
    demo.set_defaults(func=cmd_demo)

    envs = sub.add_parser(
        "envs", help="list the built-in environments: observation, actions, episode length"
    )
    envs.set_defaults(func=cmd_envs)
    return p


def main(argv: list[str] | None = None) -> int:
    from gpbt.errors import GpbtError
    from gpbt.store.faults import storage_fault

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (GpbtError, FileNotFoundError) as err:
        print(f"gpbt: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        # a full disk or a read-only folder met outside the store (a report's PNGs, an
        # export's files): one line too, worded as the store words it
        where = getattr(args, "out", None) or getattr(args, "folder", None) or "."
        fault = storage_fault(err, where, f"gpbt {args.command}")
        if fault is None:
            raise
        print(f"gpbt: error: {fault}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = {
            "run": "gpbt resume FOLDER continues it",
            "resume": "gpbt resume FOLDER continues it",
            "bench": "the same gpbt bench command continues it",
        }.get(args.command, "run the command again")
        print(f"gpbt: interrupted; everything recorded so far is kept ({again})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
