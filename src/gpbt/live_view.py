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

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console

        if not Console().is_terminal:
            # A log file or CI: one plain line per generation instead of a redrawn screen.
            self.plain = True
            return self
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
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.__exit__(*exc)

    plain = False

    def note(self, text: str) -> None:
        self.notes.append(text)
        if self.plain:
            print(text, flush=True)
        if self.live is not None:
            self.live.update(self._render())

    def update(self, event: dict) -> None:
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
            best = max(event["members"], key=lambda m: _finite(m["score"]))
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
                self._async.setdefault(event["member"], {})["event"] = (
                    f"copied {event.get('donor')}"
                )
            return
        row = self._async.setdefault(event["member"], {})
        row.update(
            member=event["member"], time=event.get("time") or 0, score=event.get("score"),
            config=event.get("config") or {}, event=row.get("event", ""),
        )  # fmt: skip
        members = self.member_rows()
        if self.plain:
            return  # a log file gets the summary at the end, not a line per report
        if self.live is not None:
            done = min(m["time"] for m in members)
            self.progress.update(self.task, completed=done)
            self.live.update(self._render(members))

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
                score = m["score"]
                text = f"{score:.4g}" if isinstance(score, int | float) else str(score)
                table.add_row(str(m["member"]), text, hps, m["event"])
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


def _finite(x: float) -> float:
    return x if isinstance(x, float) and math.isfinite(x) else -math.inf


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
