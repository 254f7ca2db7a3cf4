"""Issue 26, the run's path through the code, measured by running it: which modules a
`gpbt run` passes through, in the order it enters them, and how often it climbs back up a
layer or returns to a module it had left.

    python benchmarks/run_path.py                 # the quickstart, shrunk; about 2 minutes
    python benchmarks/run_path.py --steps         # and every step of the path
    python benchmarks/run_path.py --draw          # and each leg drawn: a row per module
    python benchmarks/run_path.py --json out.json

How it measures:
- Layers: every module's floor is read from the imports of `src/gpbt` (function-level imports
  included): a module that imports no other gpbt module is floor 1; any other is one above the
  highest module it imports. "Up" is toward modules that import more.
- Path: the run is executed under a profiler hook (`sys.setprofile`). Each call from one gpbt
  function into another is a step the FIRST time that caller calls that callee (a loop's
  second round walks no new road); the step enters the callee's module. Consecutive steps in
  one module are one stay. Calls made while a module is being imported, comprehensions and
  generator bodies are not steps.
- Two legs, as the run has two processes: the parent (`gpbt.cli.main(["run", ...])`, which
  spawns the training child) and the child's entry point (`gpbt.engines.vector._child`, run
  here in this process on a fresh folder, with the same spec), since a profiler does not cross
  a process boundary.
- Reported per leg and in all: steps, stays, modules, climbs (a stay on a higher floor than the
  one before it) and returns (a stay in a module the path had already left).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "gpbt"
sys.path.insert(0, str(ROOT / "tests"))
from test_architecture import import_graph, module_name  # noqa: E402 - the one reading of imports

# The README's main job, shrunk so that a traced run takes a minute or two (tests/
# test_documented_commands.py's PPO sizes).
CONFIG = ROOT / "examples" / "quickstart.toml"
SMALL = [
    "population=2", "total_steps=2048", "perturbation_interval=1024", "final_eval_episodes=1",
    "agent_options.num_envs=8", "agent_options.rollout_chunk=16",
    "agent_options.max_rollout_len=64", "agent_options.minibatch_unit=32",
    "agent_options.max_epochs=4", "space.train_batch_size.low=128",
    "space.train_batch_size.high=512", "space.num_epochs.high=4",
    "space.minibatch_size.values=[32, 64]",
]  # fmt: skip


def floors() -> dict[str, int]:
    """Each gpbt module's floor from its imports, read as tests/test_architecture.py reads
    them (that test keeps the graph free of cycles, so the recursion ends)."""
    graph = import_graph(SRC)
    done: dict[str, int] = {}

    def floor(m: str, within: frozenset[str] = frozenset()) -> int:
        # an edge back into `within` would be a cycle (an older tree may have one): skipped
        if m not in done:
            below = [floor(d, within | {m}) for d in graph.get(m, ()) if d not in within | {m}]
            done[m] = 1 + max(below, default=0)
        return done[m]

    for m in graph:
        floor(m)
    return done


@dataclass
class Leg:
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (module, function) entered


def trace(name: str, fn: Callable[[], object]) -> Leg:
    """Run `fn` under a profiler hook and record the first-time calls between gpbt functions."""
    leg = Leg(name)
    prefix = str(PACKAGE)
    seen: set[tuple[object, object]] = set()
    by_file: dict[str, str] = {}

    def hook(frame, event, _arg):
        if event != "call":
            return
        code = frame.f_code
        if (
            not code.co_filename.startswith(prefix)
            or code.co_name.startswith("<")
            and (code.co_name != "<lambda>")
        ):
            return
        caller = frame.f_back
        while caller is not None and caller.f_code.co_name in (
            "<genexpr>",
            "<listcomp>",
            "<dictcomp>",
            "<setcomp>",
        ):
            caller = caller.f_back
        if caller is None or not caller.f_code.co_filename.startswith(prefix):
            return
        if _importing(caller, prefix):
            return
        edge = (caller.f_code, code)
        if edge in seen:
            return
        seen.add(edge)
        module = by_file.setdefault(code.co_filename, module_name(Path(code.co_filename)))
        leg.steps.append((module, code.co_qualname))

    sys.setprofile(hook)
    threading.setprofile(hook)
    try:
        fn()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return leg


def _importing(frame, prefix: str) -> bool:
    """True while a gpbt module's body runs (an import): its registrations are not the run's
    path."""
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_code.co_filename.startswith(prefix):
            return True
        frame = frame.f_back
    return False


def measure(leg: Leg, floor: dict[str, int]) -> dict:
    stays: list[str] = []
    entered: list[str] = []  # the function each stay is entered by
    for module, function in leg.steps:
        if not stays or stays[-1] != module:
            stays.append(module)
            entered.append(function)
    climbs = sum(floor[b] > floor[a] for a, b in zip(stays, stays[1:], strict=False))
    returns = sum(m in stays[:i] for i, m in enumerate(stays))
    return {
        "leg": leg.name,
        "steps": len(leg.steps),
        "stays": len(stays),
        "modules": len(set(stays)),
        "climbs": climbs,
        "returns": returns,
        "modules_in_order": stays,
        "path": [f"{m} (floor {floor[m]}): {f}" for m, f in zip(stays, entered, strict=True)],
    }


def draw(row: dict, floor: dict[str, int]) -> str:
    """The leg as a chart: a row per module, highest floor first, a column per stay; a climb
    is a column whose mark stands above the one before it."""
    order = row["modules_in_order"]
    modules = sorted(set(order), key=lambda m: (-floor[m], m))
    width = max(len(m) for m in modules) + 6
    lines = []
    for m in modules:
        marks = "".join("o" if stay == m else "." for stay in order)
        lines.append(f"{m:<{width - 5}}{floor[m]:>3}  {marks}")
    return "\n".join(lines)


def parent_leg(folder: Path) -> Leg:
    from gpbt.cli import main

    argv = ["run", str(CONFIG), *SMALL, "--out", str(folder), "--no-report"]
    return trace("parent: gpbt run", lambda: main(argv))


def child_leg(folder: Path) -> Leg:
    from gpbt.config import load_config
    from gpbt.engines.vector import _child

    spec = load_config(CONFIG, SMALL)
    events: queue.Queue = queue.Queue()
    return trace("child: training", lambda: _child(spec, str(folder), False, time.time(), events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", action="store_true", help="print every stay of the path")
    parser.add_argument("--draw", action="store_true", help="draw each leg, a row per module")
    parser.add_argument("--json", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    floor = floors()
    with tempfile.TemporaryDirectory() as tmp:
        legs = [parent_leg(Path(tmp) / "run"), child_leg(Path(tmp) / "child")]
    rows = [measure(leg, floor) for leg in legs]
    total = {k: sum(r[k] for r in rows) for k in ("steps", "stays", "climbs", "returns")}
    print(f"{'leg':<22}{'steps':>7}{'stays':>7}{'modules':>9}{'climbs':>8}{'returns':>9}")
    for r in rows:
        print(
            f"{r['leg']:<22}{r['steps']:>7}{r['stays']:>7}{r['modules']:>9}"
            f"{r['climbs']:>8}{r['returns']:>9}"
        )
    print(f"{'both':<22}{total['steps']:>7}{total['stays']:>7}{'':>9}"
          f"{total['climbs']:>8}{total['returns']:>9}")  # fmt: skip
    if args.steps:
        for r in rows:
            print(f"\n{r['leg']}:")
            for i, stay in enumerate(r["path"], 1):
                print(f"  {i:3d}. {stay}")
    if args.draw:
        for r in rows:
            print(f"\n{r['leg']} (module, floor, then one column per stay):")
            print(draw(r, floor))
    if args.json:
        args.json.write_text(json.dumps({"legs": rows, "total": total}, indent=1))


if __name__ == "__main__":
    main()
