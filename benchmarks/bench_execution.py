"""Execution strategies of the vector engine side by side (issue 13): lockstep and per-member,
on one device and on every core, for homogeneous and heterogeneous PPO populations.

    python benchmarks/bench_execution.py --out be.json --md be.md     # the full run
    python benchmarks/bench_execution.py --quick                      # a smoke run (minutes)

Every cell is a real `VectorRun` (store, scheduler, checkpoints included) with method "random"
(no exploit, so every member keeps the config drawn at the start and its throughput alone is
well defined), for each
  env        Breakout-MinAtar, CartPole-v1
  population 8, 16
  kind       homogeneous (structural hyperparameters at the agent's defaults; lr, clip,
             gae_lambda and gamma drawn as in bench_vector.py), quickstart (the space of
             examples/quickstart.toml), paper-ppo (the space of the paper-ppo suite)
  variant    lockstep on 1 device (the engine before issue 13), lockstep on every device,
             per-member on 1 device, per-member on every device; the one `auto` picks is marked.
Beside them: GPBT-PL exploiting every interval under `auto` (management share, compilations
under exploits with mixed structures), IMPALA in lockstep on 1 device and on every device, and
the machine's ceiling (the same single-member workload in 1 process and in one process per
core, no engine: what the machine gives when every core is busy).

Measured per cell, over the generations after the first (which compiles): env-steps/s (nominal:
population x interval per generation; the engine carries each member's overshoot, so this is
exact to within one batch per member), cores busy (process CPU time, children included, over
wall time), compilations (`compile_count`: traces, one per program shape; and the per-device
copies XLA compiles from each trace), management share, and lockstep efficiency =
(sum over members of env steps / that member's throughput alone with its own config on one
device) / wall time: 1 means the population trains as fast as its members one after another
alone; with D devices the ideal is about D (the column "per device" divides by the devices
used).

Rounds are interleaved against drift: every round runs every cell once (the members alone
first), and a figure is the median over rounds. The process gets one XLA CPU device per core
before JAX starts, so the 1-device variants run on device 0 of that client. Absolute numbers
depend on the machine and its load: quote them with the machine named, and only from a quiet
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOMOGENEOUS = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "clip": {"type": "float", "low": 0.1, "high": 0.4},
    "gae_lambda": {"type": "float", "low": 0.9, "high": 1.0},
    "gamma": {"type": "float", "low": 0.95, "high": 0.999},
}
IMPALA_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True},
    "ent_coef": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
}
VARIANTS = (("lockstep", 1), ("lockstep", 0), ("per-member", 1), ("per-member", 0))


def kind_space(kind: str) -> dict:
    if kind == "homogeneous":
        return HOMOGENEOUS
    if kind == "quickstart":
        return tomllib.loads((ROOT / "examples" / "quickstart.toml").read_text())["space"]
    if kind == "paper-ppo":
        suite = ROOT / "src" / "gpbt" / "bench" / "suites" / "paper-ppo.toml"
        return tomllib.loads(suite.read_text())["config"]["space"]
    raise ValueError(f"unknown population kind {kind!r}")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def engine_config(env, agent, method, population, space, interval, generations, strategy, dev):
    from gpbt.config import validate_config

    return validate_config(
        {
            "env": env,
            "agent": agent,
            "method": method,
            "population": population,
            "total_steps": interval * generations,
            "perturbation_interval": interval,
            "seed": 0,
            "space": space,
            "final_eval_episodes": 1,
            "execution": strategy,
            "devices": dev,
        }
    )


def run_cell(cfg: dict) -> dict:
    """One VectorRun; throughput and cores busy over the generations after the first."""
    from gpbt.engines.vector import VectorRun

    marks = []  # (wall, cpu, event) at each generation

    def on_event(event):
        if event["type"] == "generation":
            marks.append((time.perf_counter(), cpu_seconds(), event))

    folder = tempfile.mkdtemp(prefix="gpbt-bench-exec-")
    try:
        run = VectorRun(cfg, folder, emit=on_event)
        start = time.perf_counter()
        summary = run.run()
        wall_total = time.perf_counter() - start
        device_compiles = run.agent.device_compiles
        configs = list(run.configs)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    (w0, c0, _), (w1, c1, _) = marks[0], marks[-1]
    timed = [e for _, _, e in marks[1:]]
    train = sum(e["train_s"] for e in timed)
    manage = sum(e["manage_s"] for e in timed)
    steps = cfg["population"] * cfg["perturbation_interval"] * len(timed)
    return {
        "env_steps_per_s": steps / (w1 - w0),
        "train_only_env_steps_per_s": steps / train,
        "timed_wall_s": w1 - w0,
        "cores_busy": (c1 - c0) / (w1 - w0),
        # CPU time per env step: the work a strategy costs, readable even on a loaded machine
        # (where wall-clock throughput and cores busy mostly measure the other jobs).
        "cpu_us_per_env_step": 1e6 * (c1 - c0) / steps,
        "management_share": manage / (train + manage),
        "compilations": summary["compilations_during_run"],
        "device_compiles": device_compiles,
        "execution": summary["execution"],
        "exploits": summary["exploits"],
        "wall_s_incl_compile": wall_total,
        "generations_timed": len(timed),
        "configs": configs,
    }


_AGENTS: dict = {}


def alone_throughputs(env: str, configs: list[dict], steps: int) -> list[float]:
    """Each member's env-steps/s trained alone with its own config, on one device: the
    single-member program (lockstep over a population of 1), which is exactly what
    per-member runs for each member."""
    import jax

    from gpbt.rl.agents import make_agent

    agent = _AGENTS.get(env)
    if agent is None:
        agent = _AGENTS[env] = make_agent("ppo", env, {})
        state = agent.init(jax.random.key(0), 1)
        jax.block_until_ready(agent.train(state, [{}], agent.max_update_steps))  # compile
    out = []
    for i, config in enumerate(configs):
        state = agent.init(jax.random.key(i), 1)
        t = time.perf_counter()
        state, m = agent.train(state, [config], steps)
        jax.block_until_ready(state)
        out.append(int(m["env_steps"][0]) / (time.perf_counter() - t))
    return out


def ceiling(env: str, steps: int, processes: int) -> dict:
    """The same single-member workload in 1 process, then in `processes` side by side."""

    def run(n):
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--ceiling-worker", env, str(steps)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for p in procs:  # each has compiled and warmed up
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        rates = [float(p.stdout.readline()) for p in procs]
        for p in procs:
            p.wait()
        return sum(rates)

    one = run(1)
    many = run(processes)
    return {"one_process": one, "all_processes": many, "ratio": many / one}


def ceiling_worker(env: str, steps: int) -> None:
    from gpbt.rl.execution import configure_host_devices

    configure_host_devices(1)
    import jax

    from gpbt.engines.vector import _enable_compilation_cache
    from gpbt.rl.agents import make_agent

    _enable_compilation_cache()
    agent = make_agent("ppo", env, {})
    state = agent.init(jax.random.key(0), 1)
    state, _ = agent.train(state, [{}], agent.max_update_steps)
    jax.block_until_ready(state)
    print("ready", flush=True)
    sys.stdin.readline()
    t = time.perf_counter()
    state, m = agent.train(state, [{}], steps)
    jax.block_until_ready(state)
    print(int(m["env_steps"][0]) / (time.perf_counter() - t), flush=True)


def quickstart_cli(overrides: list[str]) -> float:
    folder = tempfile.mkdtemp(prefix="gpbt-bench-qs-")
    try:
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "gpbt.cli", "run", str(ROOT / "examples" / "quickstart.toml"),
             *overrides, "--out", folder + "/run", "--no-report"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return time.perf_counter() - t
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def median_rows(rows: list[dict]) -> list[dict]:
    keys = (
        "env_steps_per_s",
        "cores_busy",
        "cpu_us_per_env_step",
        "management_share",
        "efficiency",
        "timed_wall_s",
    )
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["cell"], []).append(r)
    out = []
    for rs in groups.values():
        m = {k: statistics.median(r[k] for r in rs) for k in keys if all(k in r for r in rs)}
        m.update({k: rs[0][k] for k in rs[0] if k not in keys and k != "round"})
        m["per_round_env_steps_per_s"] = [r["env_steps_per_s"] for r in rs]
        m["compilations"] = max(r["compilations"] for r in rs)
        m["device_compiles"] = max(r["device_compiles"] for r in rs)
        out.append(m)
    for m in out:  # speed against the engine before issue 13, in the same group
        base = [
            b
            for b in out
            if b["group"] == m["group"] and b["variant"] == "lockstep/1" and b["kind"] == m["kind"]
        ]
        if base:
            m["vs_lockstep_1"] = m["env_steps_per_s"] / base[0]["env_steps_per_s"]
    return out


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}; date {result['date']}; commit {result['commit']}; "
        f"load average at start {result['load_start']}, at end {result['load_end']}; "
        f"{result['rounds']} interleaved rounds, medians; interval {result['interval']}, "
        f"{result['generations']} generations (the first, compiling, not timed).",
        "",
        "| env | population | kind | variant | auto | env-steps/s | x lockstep/1 | cores busy "
        "| CPU us / env step | efficiency | per device | compilations (traces / device copies) "
        "| management |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["summary"]:
        eff = r.get("efficiency")
        per = eff / r["execution"]["devices"] if eff is not None else None
        lines.append(
            f"| {r['env']} | {r['population']} | {r['kind']} | {r['variant']} "
            f"({r['execution']['strategy']} on {r['execution']['devices']}) "
            f"| {'yes' if r.get('auto') else ''} | {r['env_steps_per_s']:,.0f} "
            f"| {r.get('vs_lockstep_1', float('nan')):.2f} | {r['cores_busy']:.2f} "
            f"| {r['cpu_us_per_env_step']:.1f} "
            f"| {'' if eff is None else f'{eff:.2f}'} | {'' if per is None else f'{per:.2f}'} "
            f"| {r['compilations']} / {r['device_compiles']} "
            f"| {100 * r['management_share']:.2f}% |"
        )
    if result.get("ceiling"):
        c = result["ceiling"]
        lines += [
            "",
            f"Machine ceiling ({c['env']}, one member alone, no engine): 1 process "
            f"{statistics.median(x['one_process'] for x in c['rounds']):,.0f} env-steps/s, "
            f"{c['processes']} processes side by side "
            f"{statistics.median(x['all_processes'] for x in c['rounds']):,.0f} "
            f"(ratio {statistics.median(x['ratio'] for x in c['rounds']):.2f} per round: "
            f"{', '.join(format(x['ratio'], '.2f') for x in c['rounds'])}).",
        ]
    for label, secs in result.get("quickstart_cli", {}).items():
        lines.append(f"`gpbt run examples/quickstart.toml {label}`: {secs:.0f} s wall")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", action="append", help="default: Breakout-MinAtar and CartPole-v1")
    p.add_argument("--population", type=int, action="append", help="default: 8 and 16")
    p.add_argument("--kind", action="append", help="homogeneous, quickstart, paper-ppo")
    p.add_argument("--interval", type=int, default=20_000)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--devices", type=int, default=0, help="CPU devices (0: one per core)")
    p.add_argument("--no-ceiling", action="store_true")
    p.add_argument("--no-extras", action="store_true", help="skip the gpbt-pl and IMPALA rows")
    p.add_argument(
        "--quickstart-cli",
        action="store_true",
        help="also time `gpbt run examples/quickstart.toml` before and after (~6 min)",
    )
    p.add_argument("--quick", action="store_true", help="CartPole, population 5, tiny sizes")
    p.add_argument("--out", help="JSON results")
    p.add_argument("--md", help="Markdown table")
    p.add_argument("--ceiling-worker", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ceiling_worker:
        ceiling_worker(args.ceiling_worker[0], int(args.ceiling_worker[1]))
        return
    if args.quick:
        args.env = args.env or ["CartPole-v1"]
        args.population = args.population or [5]  # uneven over 2 devices: padding on purpose
        args.kind = args.kind or ["homogeneous", "quickstart"]
        args.interval, args.generations, args.rounds = 4096, 3, 1

    from gpbt.rl.execution import configure_host_devices

    devices = configure_host_devices(args.devices)  # before anything starts JAX
    from gpbt.engines.vector import _enable_compilation_cache

    _enable_compilation_cache()
    envs = args.env or ["Breakout-MinAtar", "CartPole-v1"]
    populations = args.population or [8, 16]
    kinds = args.kind or ["homogeneous", "quickstart", "paper-ppo"]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "machine": f"{platform.node()} {platform.processor() or platform.machine()} "
        f"{os.cpu_count()} cores, {devices} XLA CPU devices",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "commit": commit,
        "load_start": os.getloadavg()[0],
        "interval": args.interval,
        "generations": args.generations,
        "rounds": args.rounds,
        "raw": [],
    }
    ceiling_rounds = []
    for rnd in range(args.rounds):
        if not args.no_ceiling and devices > 1:
            c = ceiling(envs[0], 5 * args.interval, devices)
            ceiling_rounds.append(c)
            print(json.dumps({"round": rnd, "ceiling": c}), flush=True)
        for env in envs:
            for population in populations:
                for kind in kinds:
                    space = kind_space(kind)
                    alone = None
                    for strategy, dev in VARIANTS:
                        cfg = engine_config(
                            env, "ppo", "random", population, space,
                            args.interval, args.generations, strategy, dev,
                        )  # fmt: skip
                        row = run_cell(cfg)
                        if alone is None:  # the members alone, once per round and cell group
                            alone = alone_throughputs(env, row["configs"], args.interval)
                        timed = row["generations_timed"] * args.interval
                        row["efficiency"] = sum(timed / a for a in alone) / row["timed_wall_s"]
                        row["alone_env_steps_per_s"] = alone
                        record(result, row, rnd, env, population, kind, strategy, dev, space)
        if not args.no_extras:
            env, population = envs[0], populations[0]
            for kind, agent, method, space, strategy, dev in (
                ("quickstart, gpbt-pl exploiting", "ppo", "gpbt-pl", kind_space("quickstart"),
                 "auto", 0),
                ("impala", "impala", "random", IMPALA_SPACE, "lockstep", 1),
                ("impala", "impala", "random", IMPALA_SPACE, "lockstep", 0),
            ):  # fmt: skip
                cfg = engine_config(
                    env, agent, method, population, space,
                    args.interval, args.generations, strategy, dev,
                )  # fmt: skip
                row = run_cell(cfg)
                record(result, row, rnd, env, population, kind, strategy, dev, space)
    if ceiling_rounds:
        result["ceiling"] = {"env": envs[0], "processes": devices, "rounds": ceiling_rounds}
    if args.quickstart_cli:
        result["quickstart_cli"] = {
            "execution=lockstep devices=1": quickstart_cli(["execution=lockstep", "devices=1"]),
            "(auto)": quickstart_cli([]),
        }
    result["load_end"] = os.getloadavg()[0]
    result["summary"] = median_rows(result["raw"])
    text = markdown(result)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.md:
        Path(args.md).write_text(text)


def record(result, row, rnd, env, population, kind, strategy, dev, space) -> None:
    from gpbt.rl.ppo import PPO

    # What `auto` picks for this space (the vector engine's rule): per-member over every
    # device when a structural hyperparameter is tuned, else lockstep over every device.
    tuned = set(space) & set(PPO.structural_hyperparameters) and kind != "impala"
    auto = ("per-member" if tuned else "lockstep", 0)
    row.pop("configs", None)
    row.update(
        round=rnd, env=env, population=population, kind=kind, group=f"{env}/{population}",
        variant=f"{strategy}/{dev or 'all'}", cell=f"{env}|{population}|{kind}|{strategy}|{dev}",
        auto=strategy == "auto" or (strategy, dev) == auto,
    )  # fmt: skip
    result["raw"].append(row)
    print(json.dumps({k: v for k, v in row.items() if k != "alone_env_steps_per_s"}), flush=True)


if __name__ == "__main__":
    main()
