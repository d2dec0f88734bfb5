"""What this process may really use: CPUs and memory, container limits included.

A container (Docker, Podman, Apptainer with limits, a SLURM job with cgroup
confinement) usually shows the host's CPU count and RAM through ``os.cpu_count()``
and ``/proc/meminfo``; its real budget is the CPU *affinity* mask, the cgroup
CPU *quota* (cgroup v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``)
and the cgroup *memory limit* (v2 ``memory.max``; v1 ``memory.limit_in_bytes``).
Limits nest, so the files of the process's own cgroup and of every ancestor are
read and the smallest limit wins.  Paths are parameters, so tests use fake trees.

The default threads per fit follow fMRIPrep's rule: the CPUs are divided among
the runs that can execute at once (:func:`threads_per_run`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: Where cgroup file systems are mounted, and the process's membership file.
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _memberships(proc_cgroup: Path) -> list[tuple[list[str], str]]:
    """``[(controllers, path)]`` from ``/proc/self/cgroup`` (v2: controllers ``[]``)."""
    try:
        text = proc_cgroup.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            controllers = [c for c in parts[1].split(",") if c]
            out.append((controllers, parts[2].strip() or "/"))
    return out


def _with_ancestors(base: Path, path: str) -> list[Path]:
    """``base/a/b``, ``base/a``, ``base`` for the cgroup ``path`` ``/a/b``."""
    parts = [p for p in path.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _cgroup_dirs(controller: str, *, root: Path, proc_cgroup: Path) -> list[Path]:
    """Directories whose files may limit ``controller`` ('cpu' or 'memory') for this process.

    cgroup v2 (``0::/path``, mounted at ``root`` or, on hybrid hosts, at
    ``root/unified``) and v1 (``N:cpu,cpuacct:/path``, mounted at
    ``root/cpu,cpuacct`` or ``root/cpu``).  Without a membership file the
    mount points themselves are the candidates (a container's own cgroup is
    often mounted there).
    """
    memberships = _memberships(proc_cgroup) or [([], "/"), ([controller], "/")]
    dirs: list[Path] = []
    for controllers, path in memberships:
        if not controllers:  # v2
            bases = [root, root / "unified"]
        elif controller in controllers:  # v1
            bases = [root / ",".join(controllers), root / controller]
        else:
            continue
        for base in bases:
            dirs.extend(_with_ancestors(base, path))
    return list(dict.fromkeys(dirs))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP):
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none.

    cgroup v2 ``cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``;
    v1 holds ``cpu.cfs_quota_us`` (``-1``: none) and ``cpu.cfs_period_us``.
    """
    quotas = []
    for directory in _cgroup_dirs("cpu", root=root, proc_cgroup=proc_cgroup):
        text = _read(directory / "cpu.max")
        if text is not None:
            fields = text.split()
            if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                if int(fields[1]) > 0:
                    quotas.append(int(fields[0]) / int(fields[1]))
            continue
        quota = _read(directory / "cpu.cfs_quota_us")
        period = _read(directory / "cpu.cfs_period_us")
        if quota and period and quota.lstrip("-").isdigit() and period.isdigit():
            if int(quota) > 0 and int(period) > 0:
                quotas.append(int(quota) / int(period))
    return min(quotas) if quotas else None


def cgroup_memory_bytes(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP):
    """The cgroup memory limit in bytes, or None when there is none.

    cgroup v2 ``memory.max`` (``"max"``: none) and v1 ``memory.limit_in_bytes``
    (a huge number when unlimited; the caller takes the minimum with the RAM).
    """
    limits = []
    for directory in _cgroup_dirs("memory", root=root, proc_cgroup=proc_cgroup):
        for name in ("memory.max", "memory.limit_in_bytes"):
            text = _read(directory / name)
            if text is not None and text.isdigit():
                limits.append(int(text))
    return min(limits) if limits else None


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where there is none)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def available_cpus(
    *, affinity: int | None = None, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> int:
    """CPUs this process may use: the affinity mask, capped by the cgroup quota (rounded up).

    >>> available_cpus(affinity=8, root=Path("/nonexistent"), proc_cgroup=Path("/nonexistent"))
    8
    """
    cpus = affinity_cpus() if affinity is None else int(affinity)
    quota = cgroup_cpu_quota(root=root, proc_cgroup=proc_cgroup)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return max(1, cpus)


def physical_memory_bytes() -> int | None:
    """The machine's RAM in bytes, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory_bytes(
    *, physical: int | None = None, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
) -> int | None:
    """Memory this process may use (bytes): the RAM, capped by the cgroup limit."""
    total = physical_memory_bytes() if physical is None else int(physical)
    limit = cgroup_memory_bytes(root=root, proc_cgroup=proc_cgroup)
    if limit is not None:
        total = limit if total is None else min(total, limit)
    return total


def threads_per_run(nprocs: int, n_runs: int) -> int:
    """Default threads of one fit: ``nprocs`` divided among the runs that can run at once.

    All runs of a participant-level graph are independent, so up to
    ``min(n_runs, nprocs)`` fits run at once and each gets an equal share
    (fMRIPrep's rule; a single run gets every CPU).

    >>> threads_per_run(8, 1), threads_per_run(8, 3), threads_per_run(2, 5)
    (8, 2, 1)
    """
    at_once = max(1, min(int(n_runs), int(nprocs)))
    return max(1, int(nprocs) // at_once)
