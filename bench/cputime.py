"""CPU time of processes on this machine, from /proc (Linux), for the benchmarks.

On a shared machine, requests per second move with everybody else's load; the CPU time a
component spent per unit of work hardly does, so the benchmarks report both.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # gone meanwhile


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process (None once it is gone)."""
    fields = _stat(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / _TICKS


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """utime + stime of root and every descendant alive now, by pid.

    Compare two calls pid by pid: a process that exited in between has taken its time
    with it (unless its parent waited for it, which then counts it as its own)."""
    children = _children()
    found: dict[int, float] = {}
    pending = [root]
    while pending:
        pid = pending.pop()
        seconds = process_cpu_seconds(pid)
        if seconds is None:
            continue
        found[pid] = seconds
        pending.extend(children.get(pid, []))
    return found


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes of `after` spent since `before` (new ones: all of theirs)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and I/O wait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS


def postmaster_pid(data_directory: str) -> int | None:
    """The PostgreSQL server's pid from its data directory, if it runs on this machine."""
    try:
        return int(Path(data_directory, "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def python_speed_probe(rounds: int = 3) -> float:
    """CPU seconds of a fixed pure-Python loop (the best of `rounds`).

    A shared virtual machine's cores are not always equally fast (other guests on the same
    host): figures taken when this probe was slow are slow too, for reasons outside what
    is measured. Reported next to the figures, it tells runs on a fast core from runs on a
    slow one."""
    best = float("inf")
    for _ in range(rounds):
        started = resource.getrusage(resource.RUSAGE_SELF)
        total = 0
        for n in range(1_000_000):
            total += n
        ended = resource.getrusage(resource.RUSAGE_SELF)
        best = min(best, ended.ru_utime - started.ru_utime + ended.ru_stime - started.ru_stime)
    return round(best, 4)
