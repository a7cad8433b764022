"""Live progress of one campaign: a progress bar of the items done (adaptive overlap and
auto-accept make the label count per item vary, the target is in items) and the
`kubectl get lcamp` columns, with the share a model labeled and the labelers blocked.

On a terminal the lines are redrawn in place; in a log (CI, a pipe) a line is printed only
when something changed, so the output stays readable.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TextIO

from labelops.report.status_report import progress_bar, render_table

COLUMNS = ["NAME", "TYPE", "PHASE", "PROGRESS", "MACHINE", "BLOCKED", "READY", "AGE"]


def _age(created: str, now: dt.datetime) -> str:
    seconds = int((now - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds // 60}m{seconds % 60}s" if seconds >= 60 else f"{seconds}s"


def kubectl_row(obj: dict[str, Any], now: dt.datetime) -> list[str]:
    status = obj.get("status") or {}
    ready = next((c["status"] for c in status.get("conditions") or [] if c["type"] == "Ready"), "")
    return [
        obj["metadata"]["name"],
        obj["spec"]["task"]["type"],
        status.get("phase") or "",
        (status.get("progress") or {}).get("summary", ""),
        (status.get("model") or {}).get("machineShare", "-"),
        str((status.get("quality") or {}).get("labelersBlocked", 0)),
        ready,
        _age(obj["metadata"]["creationTimestamp"], now),
    ]


def bar_line(obj: dict[str, Any]) -> str:
    status = obj.get("status") or {}
    progress = status.get("progress") or {}
    counters = status.get("counters") or {}
    target = int(obj["spec"]["target"]["items"])
    done = progress.get("itemsCompleted") or 0
    fraction = min(done / target, 1.0) if target else 0.0
    rate = progress.get("labelsPerHour") or 0
    return (
        f"{progress_bar(fraction, 40)} {fraction * 100:5.1f}%  items {done}/{target} done  "
        f"labels: {counters.get('humanLabeled', 0)} human, "
        f"{counters.get('machineLabeled', 0)} machine  {rate:,.0f} labels/h"
    )


class Display:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.drawn = 0
        self.last = ""

    def show(self, obj: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.UTC)
        table = render_table([kubectl_row(obj, now)], COLUMNS)
        text = f"{bar_line(obj)}\n{table}"
        if self.tty:
            if self.drawn:
                self.out.write(f"\033[{self.drawn}F\033[J")
            self.out.write(text + "\n")
            self.drawn = text.count("\n") + 1
        else:
            changed = bar_line(obj) + str(kubectl_row(obj, now)[2:5])
            if changed != self.last:
                self.out.write(text + "\n")
                self.last = changed
        self.out.flush()

    def done(self) -> None:
        self.drawn = 0
        self.out.flush()
