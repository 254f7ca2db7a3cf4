"""Measure the local engine: parallel efficiency, report-to-next-step latency, exploit cost.

    python benchmarks/bench_local.py [--quick] [--skip-sb3] [--rounds 3] [--out results.json]

Parallel efficiency = population throughput with 2 workers / (2 x one member alone), for
(a) a CPU-bound trainable whose step takes about 1 s and (b) Stable-Baselines3 PPO on MuJoCo
InvertedPendulum-v5 (one 2048-sample PPO iteration per step). "Alone" is the bare trainable in
one process (setup, step, save, no engine), measured before and after the engine runs, so
every engine overhead counts against the engine. Throughput is measured from the first to the
last report (worker start-up is reported separately). Population 2 on 2 workers, torch
limited to 1 thread per process.

Each workload runs through the engine twice. On Linux with `sched_autogroup` (desktops, shared
machines) the kernel gives each *session* a fair share of a busy machine, so two workers
started by one run share what one process alone would get: `wall_same_session` measures that
as is; `wall_own_sessions` has each worker call setsid() from its trainable's setup, which
compares like with like on a machine other sessions keep busy. On an idle machine the two
agree. Contention-free figures come with them (see `efficiency`).

A virtual machine's cores speed up and slow down with its host's load by 10% or more within a
minute, which is larger than the effect measured. So the measurements run in `--rounds`
interleaved rounds (alone, engine, engine in own sessions, alone again), each round's
efficiency is taken against its own alone runs, and the median and range over rounds are
reported. Each round also measures the `machine_ceiling`: two bare processes running the same
step side by side, no engine, against one alone (what two cores give two copies of this work
at all). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gpbt.engines.trainable import Trainable


def own_session(config: dict) -> dict:
    """Benchmark only: put this worker in a session (so an autogroup) of its own."""
    config = dict(config)
    if config.pop("own_session", False):
        try:
            os.setsid()
        except OSError:  # already a session leader (a second trainable in this worker)
            pass
    return config


class Busy(Trainable):
    """A step is a fixed amount of pure-Python arithmetic (about 1 s on an idle core)."""

    def setup(self, config):
        own_session(config)
        self.t, self.w = 0, 0.0
        self.work = int(config["work"])

    def step(self):
        x = 0
        for i in range(self.work):
            x += i * i % 7
        self.t += 1
        self.w += self.config["lr"]
        return {"timesteps_total": self.t, "episode_reward_mean": self.w, "x": x}

    def save(self, d):
        with open(os.path.join(d, "s.json"), "w") as f:
            json.dump([self.t, self.w], f)

    def restore(self, d):
        with open(os.path.join(d, "s.json")) as f:
            self.t, self.w = json.load(f)

    def reset_config(self, config):
        return True


try:
    from gpbt.integrations.sb3 import PPOTrainable
except ImportError:  # --skip-sb3 still works without the extra
    PPOTrainable = None
else:

    class SessionPPO(PPOTrainable):
        def setup(self, config):
            super().setup(own_session(config))

        def reset_config(self, config):
            return super().reset_config(own_session(config))


def calibrate(seconds: float = 1.0) -> int:
    """Loop iterations for `seconds` of work; the fastest of a few tries, since other
    processes on a shared machine only ever slow a try down."""
    n, best = 500_000, float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        x = 0
        for i in range(n):
            x += i * i % 7
        best = min(best, time.perf_counter() - t0)
    return int(n * seconds / best)


def alone(cls, config: dict, steps: int) -> dict:
    """One member, no engine: setup, then step + save, as a worker would do them."""
    t = cls()
    t.member, t.seed, t.config = 0, 0, dict(config)
    t.setup(dict(config))
    with tempfile.TemporaryDirectory() as d:
        t.step()  # warm-up (first-step costs: env reset, torch kernels)
        t0, c0 = time.perf_counter(), time.process_time()
        for k in range(steps):
            t.step()
            ck = Path(d, str(k))
            ck.mkdir()
            t.save(str(ck))
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    t.cleanup()
    return {"steps": steps, "seconds": wall, "steps_per_s": steps / wall, "cpu_s": cpu / steps}


def engine_run(trainable, space: dict, options: dict, steps: int, folder: Path) -> dict:
    """Population 2 on 2 workers; throughput and the engine's timing statistics."""
    from gpbt.core.methods import make_scheduler
    from gpbt.core.space import Space
    from gpbt.engines.local import LocalEngine

    reports: list[float] = []

    def progress(e):
        if e["kind"] == "report":
            reports.append(time.perf_counter())

    sched = make_scheduler(
        "gpbt-pl", Space(space), perturbation_interval=max(1, steps // 8), seed=0, max_time=steps
    )
    eng = LocalEngine(
        trainable,
        sched,
        folder,
        population=2,
        workers=2,
        total_steps=steps,
        trainable_options=options,
        threads_per_worker=1,
        progress=progress,
    )
    t0 = time.perf_counter()
    summary = eng.run()
    wall = time.perf_counter() - t0
    # The first report of each member ends the warm-up; steady throughput from there on.
    steady = (len(reports) - 2) / (reports[-1] - reports[1])
    s = summary["stats"]
    return {
        "reports": len(reports),
        "wall_s": wall,
        "startup_s": reports[0] - t0,
        "steady_steps_per_s": steady,
        "exploits": summary["exploits"],
        "report_to_next_step_s": s.get("report_to_step_s"),
        "decision_and_commit_s": s.get("decide_s"),
        "step_s": s.get("step_s"),
        "step_cpu_s": s.get("step_cpu_s"),
        "main_cpu_s_per_step": summary["main_cpu_seconds"] / len(reports),
        "checkpoint_save_s": s.get("save_s"),
        "checkpoint_bytes": s.get("save_bytes"),
        "exploit_restore_s": s.get("exploit_restore_s"),
        "exploit_bytes": s.get("exploit_bytes"),
    }


def efficiency(before: dict, after: dict, same: dict, own: dict) -> dict:
    """`wall_*`: the definition, against the mean of the two alone runs. Contention-free:
    `engine_overhead_bound`, step time over step + checkpoint save + report-to-next-step time
    (what the engine itself costs a worker), and `cpu_ratio`, CPU seconds per step alone over
    CPU seconds per step (+ save) in a worker plus the main process's CPU per step; their
    product estimates the efficiency on an otherwise idle machine."""
    rate = (before["steps_per_s"] + after["steps_per_s"]) / 2
    step = same["step_s"]["mean"]
    overhead = same["checkpoint_save_s"]["mean"] + same["report_to_next_step_s"]["mean"]
    alone_cpu = (before["cpu_s"] + after["cpu_s"]) / 2
    engine_cpu = same["step_cpu_s"]["mean"] + same["main_cpu_s_per_step"]
    bound = step / (step + overhead)
    return {
        "wall_same_session": same["steady_steps_per_s"] / (2 * rate),
        "wall_own_sessions": own["steady_steps_per_s"] / (2 * rate),
        "engine_overhead_bound": bound,
        "cpu_ratio": alone_cpu / engine_cpu,
        "estimated_idle_machine": bound * min(1.0, alone_cpu / engine_cpu),
    }


def _bare_steps(cls, config: dict, steps: int, out) -> None:
    if "torch" in sys.modules:  # one thread per process, as the engine's workers
        sys.modules["torch"].set_num_threads(1)
    out.put(alone(cls, config, steps)["steps_per_s"])


def machine_ceiling(cls, config: dict, steps: int) -> float:
    """Two bare processes stepping side by side (no engine) over one alone: the most two
    workers could reach on this machine for this work."""
    ctx = mp.get_context("spawn")
    rates = []
    for k in (1, 2):
        out = ctx.Queue()
        procs = [ctx.Process(target=_bare_steps, args=(cls, config, steps, out)) for _ in range(k)]
        for p in procs:
            p.start()
        rates.append([out.get() for _ in procs])
        for p in procs:
            p.join()
    return sum(rates[1]) / (2 * rates[0][0])


def summarise(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": values,
    }


def measure(
    cls, config: dict, space: dict, options: dict, n: int, steps: int, root: Path, rounds: int
):
    """`rounds` interleaved rounds; each round's efficiency against its own alone runs."""
    root = root / cls.__name__
    per_round = []
    for r in range(rounds):
        before = alone(cls, config, steps=max(2, n // 2))
        same = engine_run(cls, space, options, steps, root / f"same{r}")
        own = engine_run(cls, space, {**options, "own_session": True}, steps, root / f"own{r}")
        after = alone(cls, config, steps=max(2, n // 2))
        ceiling = machine_ceiling(cls, config, steps=max(2, n // 2))
        per_round.append(
            {
                "alone_before": before,
                "alone_after": after,
                "engine_same_session": same,
                "engine_own_sessions": own,
                "machine_ceiling": ceiling,
                "parallel_efficiency": efficiency(before, after, same, own),
            }
        )
    keys = per_round[0]["parallel_efficiency"].keys()
    return {
        "parallel_efficiency": {
            k: summarise([r["parallel_efficiency"][k] for r in per_round]) for k in keys
        },
        "machine_ceiling": summarise([r["machine_ceiling"] for r in per_round]),
        "per_round": per_round,
    }


def bench_busy(quick: bool, root: Path, rounds: int) -> dict:
    work = calibrate(1.0)
    n = 6 if quick else 16
    space = {"lr": {"type": "float", "low": 0.0, "high": 1.0}}
    result = measure(Busy, {"work": work, "lr": 0.5}, space, {"work": work}, n, n, root, rounds)
    return {"step_work": work, **result}


def bench_sb3(quick: bool, root: Path, rounds: int) -> dict:
    import torch

    torch.set_num_threads(1)
    # Every member trains with the same values (one-value choices), so all steps cost the same
    # and exploits still happen (pairs are decided by score): a fair efficiency measurement
    # that also times real checkpoint restores.
    hp = {
        "learning_rate": 3e-4,
        "clip_range": 0.2,
        "gae_lambda": 0.95,
        "gamma": 0.99,
        "n_epochs": 10,
        "batch_size": 64,
        "train_batch_size": 2048,
    }
    space = {k: {"type": "choice", "values": [v]} for k, v in hp.items()}
    env = {"env": "InvertedPendulum-v5"}
    n = 3 if quick else 10
    return measure(SessionPPO, {**env, **hp}, space, env, n, n * 2048, root, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke test)")
    parser.add_argument("--skip-sb3", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats (default 3)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "load_average_before": os.getloadavg(),
        }
    }
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        result["busy_1s_step"] = bench_busy(args.quick, root, args.rounds)
        if not args.skip_sb3:
            result["sb3_ppo_inverted_pendulum"] = bench_sb3(args.quick, root, args.rounds)
    result["machine"]["load_average_after"] = os.getloadavg()
    try:
        import stable_baselines3
        import torch

        result["machine"]["torch"] = torch.__version__
        result["machine"]["stable_baselines3"] = stable_baselines3.__version__
    except ImportError:
        pass
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
