"""How many cores this process may use: the default number of HTTP server processes.

os.cpu_count() is the node's count, which inside a container can be far more than the pod
gets; the CPU affinity mask (cpusets) and the cgroup v2 CPU quota (a CPU limit) are what
bound it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cpu_max)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(cpu_max: Path = CGROUP_CPU_MAX) -> float | None:
    """The CPU limit in cores ("200000 100000" -> 2.0), None when unlimited or unknown."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None
