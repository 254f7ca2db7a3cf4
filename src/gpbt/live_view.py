"""What a person watching a run sees: the live view of `gpbt run` (a progress bar with ETA and
a table of members), driven only by the events an engine passes to `on_event`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


class LiveView:
    """Progress bar with ETA and a table of members, fed by an engine's `on_event`; a plain
    line per generation when the output is not a terminal (a log file, CI)."""

    def __init__(self, cfg: Mapping[str, Any], enabled: bool = True):
        self.cfg, self.enabled = cfg, enabled
        self.live = None
        self.last: dict | None = None
        self.notes: list[str] = []
        self._async: dict[int, dict] = {}
        # an asynchronous run in a log file: one line each time every live member has passed
        # another perturbation interval (members that failed for good no longer hold it back)
        self._exploits = 0
        self._failed: set[int] = set()
        self._intervals_shown = 0

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console

        if not Console().is_terminal:
            # A log file or CI: one plain line per generation instead of a redrawn screen.
            self.plain = True
        return self

    def _start(self) -> None:
        """Draw the live screen at the run's first event, not when the view is opened: a run
        refused before it starts (a folder that holds one, a bad config the engine finds)
        prints its one line on a clean terminal, with no empty progress bar above it."""
        if not self.enabled or self.plain or self.live is not None:
            return
        from rich.live import Live
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
            TimeRemainingColumn(),
        )
        self.task = self.progress.add_task(
            f"{self.cfg['method']} on {self.cfg.get('env')}", total=self.cfg["total_steps"]
        )
        self.live = Live(self._render(), refresh_per_second=4, transient=False)
        self.live.__enter__()

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    plain = False

    def note(self, text: str) -> None:
        self._start()
        self.notes.append(text)
        if self.plain:
            print(text, flush=True)
        if self.live is not None:
            self.live.update(self._render())

    def update(self, event: dict) -> None:
        self._start()
        if "member" in event:  # an asynchronous engine's event about one member
            self._member_report(event)
            return
        if event["type"] == "generation":
            self.last = event
        elif event["type"] == "resumed":
            self.notes.append(f"resumed at generation {event['generation']}")
        elif event["type"] == "restart":
            self.note(f"restarting from the last checkpoint ({event['reason']})")
            return
        if self.plain and event["type"] == "generation":
            best = self._best(event["members"])
            print(
                f"generation {event['generation']}/{event['generations']}  "
                f"t={event['time']:,}  best member {best['member']} score "
                f"{best['score']:.2f}  exploits {event['exploits']}  "
                f"train {event['train_s']:.1f}s",
                flush=True,
            )
        if self.live is not None:
            if self.last:
                self.progress.update(self.task, completed=self.last["time"])
            self.live.update(self._render())

    def _member_report(self, event: dict) -> None:
        """An asynchronous engine's event (local: report/exploit/...; Ray: one per report):
        the table shows each member's latest report, the bar the slowest member."""
        if event["type"] != "report":
            if event["type"] == "exploit":
                self._exploits += 1
                self._async.setdefault(event["member"], {})["event"] = (
                    f"copied {event.get('donor')}"
                )
            elif event["type"] == "failed":
                self._failed.add(event["member"])
                if self.plain:
                    self._plain_progress()
            return
        row = self._async.setdefault(event["member"], {})
        row.update(
            member=event["member"], time=event.get("time") or 0, score=event.get("score"),
            config=event.get("config") or {}, event=row.get("event", ""),
        )  # fmt: skip
        members = self.member_rows()
        if self.plain:
            self._plain_progress()  # a log file gets a line per interval, not per report
            return
        if self.live is not None:
            done = min(m["time"] for m in members)
            self.progress.update(self.task, completed=done)
            self.live.update(self._render(members))

    def _best(self, members: list[dict]) -> dict:
        sign = -1.0 if self.cfg.get("mode") == "min" else 1.0
        return max(members, key=lambda m: _rank(m["score"], sign))

    def _plain_progress(self) -> None:
        live = [r for r in self.member_rows() if r["member"] not in self._failed]
        if not live or len(live) + len(self._failed) < self.cfg.get("population", 0):
            return  # a member that has not reported yet holds the population at time 0
        interval = self.cfg.get("perturbation_interval") or 0
        done = min(r["time"] for r in live)
        intervals = int(done // interval) if interval else 0
        if intervals <= self._intervals_shown:
            return
        self._intervals_shown = intervals
        best = self._best(live)
        failed = f"  failed {sorted(self._failed)}" if self._failed else ""
        print(
            f"t={done:,.0f}/{self.cfg.get('total_steps', 0):,.0f} (every member)  best member "
            f"{best['member']} score {_text(best['score'])}  exploits {self._exploits}{failed}",
            flush=True,
        )

    def member_rows(self) -> list[dict]:
        """The asynchronous table's rows: each member's latest report and its last event."""
        return [self._async[m] for m in sorted(self._async) if "score" in self._async[m]]

    def _render(self, members: list[dict] | None = None):
        from rich.console import Group
        from rich.table import Table

        table = Table(expand=False)
        for col in ("member", "score", "hyperparameters", "last event"):
            table.add_column(col)
        if members is not None:
            for m in members:
                hps = ", ".join(f"{k}={_short(v)}" for k, v in m["config"].items())
                table.add_row(str(m["member"]), _text(m["score"]), hps, m["event"])
            table.caption = f"asynchronous: each member at its own time ({len(members)} shown)"
        elif self.last:
            for m in self.last["members"]:
                hps = ", ".join(f"{k}={_short(v)}" for k, v in m["config"].items())
                table.add_row(str(m["member"]), f"{m['score']:.2f}", hps, m["event"])
            sps = (
                self.cfg["population"]
                * (self.last["time"] / max(self.last["generation"], 1))
                / max(self.last["train_s"], 1e-9)
            )
            caption = (
                f"generation {self.last['generation']}/{self.last['generations']}  "
                f"{sps:,.0f} env-steps/s  exploits this interval: "
                f"{self.last['exploits']}"
            )
            table.caption = caption
        parts = [self.progress, table] + [f"[yellow]{n}" for n in self.notes[-3:]]
        return Group(*parts)


def _rank(score: Any, sign: float) -> float:
    """Higher is better: `sign` * the score, and a missing or NaN score last in either mode."""
    if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score):
        return sign * float(score)
    return -math.inf


def _text(score: Any) -> str:
    return f"{score:.4g}" if isinstance(score, int | float) else str(score)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
