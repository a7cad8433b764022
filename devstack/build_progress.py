"""What a long build is doing, said on the terminal: step i of n, the time it has taken so
far, and how long that step usually takes.

A cold cache means several Go builds of many minutes each (kube-apiserver alone takes
minutes on two cores); a silent terminal looks like a hang. The durations of past builds are
kept in `<cache>/build-times.json` (the last few per tool), and "usually" is their median.
The first build of a tool on a machine has no record and says so.

    times = BuildTimes.in_cache(cache_dir)
    with BuildStep(times, "kube-apiserver", "v1.37.2", index=1, total=7, log=log_path):
        ...  # the build
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

HISTORY_FILE = "build-times.json"
# Recent builds say more about this machine than old ones.
KEEP = 5
# How often a running step reports when the terminal cannot be rewritten in place (a log,
# a CI job, pytest's output); on a terminal the line updates every second.
LINE_INTERVAL_SECONDS = 30.0
TTY_INTERVAL_SECONDS = 1.0


def describe(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 2 min': what a person reads at a glance."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class BuildTimes:
    """Durations of past builds, per tool, in one JSON file shared by every clone."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def in_cache(cls, cache_dir: Path) -> BuildTimes:
        return cls(cache_dir / HISTORY_FILE)

    def _read(self) -> dict[str, list[dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: no estimate, never a failed build
        return data if isinstance(data, dict) else {}

    def usual(self, tool: str) -> float | None:
        """The median of the recorded durations of `tool`, None before its first build."""
        seconds = [
            float(entry["seconds"])
            for entry in self._read().get(tool, [])
            if isinstance(entry, dict) and isinstance(entry.get("seconds"), int | float)
        ]
        return statistics.median(seconds) if seconds else None

    def total_usual(self, tools: list[str]) -> tuple[float, int]:
        """The usual time of the tools that have a record, and how many have none."""
        known = [u for u in map(self.usual, tools) if u is not None]
        return sum(known), len(tools) - len(known)

    def record(self, tool: str, version: str, seconds: float) -> None:
        """Append one build (atomically: a reader never sees half a file)."""
        data = self._read()
        entries = [e for e in data.get(tool, []) if isinstance(e, dict)]
        entries.append({"version": version, "seconds": round(seconds, 1), "at": int(time.time())})
        data[tool] = entries[-KEEP:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(prefix=".build-times.", dir=self.path.parent)
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(scratch, self.path)


def plan_message(prefix: str, tools: list[str], times: BuildTimes) -> str:
    """The line before the first step: how many builds, how long they usually take."""
    usual, unknown = times.total_usual(tools)
    count = f"{len(tools)} Go build{'s' if len(tools) != 1 else ''} to do ({', '.join(tools)})"
    if unknown == len(tools):
        return f"{prefix}: {count}; no earlier build recorded on this machine"
    estimate = f"usually {describe(usual)} in all"
    if unknown:
        estimate += f", plus {unknown} never built here before"
    return f"{prefix}: {count}; {estimate}"


def step_message(
    prefix: str,
    tool: str,
    version: str,
    index: int,
    total: int,
    elapsed: float,
    usual: float | None,
    done: bool = False,
) -> str:
    step = f"{prefix}: step {index} of {total}"
    if done:
        what = f"built {tool} {version} in {describe(elapsed)}"
    else:
        what = f"building {tool} {version}: {describe(elapsed)} so far"
    if usual is None:
        return f"{step}: {what} (first build here, no usual time yet)"
    return f"{step}: {what} (usually {describe(usual)})"


class BuildStep:
    """One step of a build: says it starts, keeps saying how long it has run, records its
    duration when it succeeds."""

    def __init__(
        self,
        times: BuildTimes,
        tool: str,
        version: str,
        *,
        index: int = 1,
        total: int = 1,
        prefix: str = "build",
        log: Path | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.times = times
        self.tool = tool
        self.version = version
        self.index = index
        self.total = total
        self.prefix = prefix
        self.log = log
        self.out = out if out is not None else sys.stderr
        self.usual = times.usual(tool)
        self.started = 0.0
        self.elapsed = 0.0
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._tty = hasattr(self.out, "isatty") and self.out.isatty()

    def _message(self, done: bool = False) -> str:
        elapsed = self.elapsed if done else time.monotonic() - self.started
        return step_message(
            self.prefix,
            self.tool,
            self.version,
            self.index,
            self.total,
            elapsed,
            self.usual,
            done,
        )

    def _write(self, text: str, in_place: bool = False) -> None:
        if in_place:
            self.out.write("\r\x1b[2K" + text)
        else:
            self.out.write(("\r\x1b[2K" if self._tty else "") + text + "\n")
        self.out.flush()

    def _tick(self) -> None:
        interval = TTY_INTERVAL_SECONDS if self._tty else LINE_INTERVAL_SECONDS
        while not self._stop.wait(interval):
            self._write(self._message(), in_place=self._tty)

    def __enter__(self) -> BuildStep:
        self.started = time.monotonic()
        where = f"; log: {self.log}" if self.log is not None else ""
        self._write(self._message() + where)
        self._ticker = threading.Thread(
            target=self._tick, name=f"build-progress-{self.tool}", daemon=True
        )
        self._ticker.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.elapsed = time.monotonic() - self.started
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if kind is None:
            self.times.record(self.tool, self.version, self.elapsed)
            self._write(self._message(done=True))
        else:
            self._write(
                f"{self.prefix}: step {self.index} of {self.total}: building {self.tool} "
                f"{self.version} failed after {describe(self.elapsed)}"
            )
