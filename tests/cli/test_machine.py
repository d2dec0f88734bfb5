"""CPU and memory budgets from the affinity mask and cgroup files (fake trees), thread sharing."""

import pytest

from rumba_bids.cli.machine import (
    available_cpus,
    available_memory_bytes,
    cgroup_cpu_quota,
    cgroup_memory_bytes,
    threads_per_run,
)

GB = 10**9
UNLIMITED_V1 = "9223372036854771712"

#: (name, /proc/self/cgroup, {file under the cgroup root: content}, affinity, expected CPUs,
#:  RAM, expected memory bytes)
CASES = [
    ("no cgroup files", "0::/\n", {}, 8, 8, 16 * GB, 16 * GB),
    (
        "v2 no limit",
        "0::/\n",
        {"cpu.max": "max 100000", "memory.max": "max"},
        8,
        8,
        16 * GB,
        16 * GB,
    ),
    (
        "v2 container",
        "0::/\n",
        {"cpu.max": "200000 100000", "memory.max": str(4 * GB)},
        8,
        2,
        16 * GB,
        4 * GB,
    ),
    ("v2 fractional quota rounds up", "0::/\n", {"cpu.max": "150000 100000"}, 8, 2, GB, GB),
    ("quota below one CPU", "0::/\n", {"cpu.max": "20000 100000"}, 8, 1, GB, GB),
    ("affinity below quota", "0::/\n", {"cpu.max": "800000 100000"}, 3, 3, GB, GB),
    (
        "v2 nested: the parent's limit wins",
        "0::/job/step\n",
        {
            "job/cpu.max": "300000 100000",
            "job/step/cpu.max": "max 100000",
            "job/memory.max": str(6 * GB),
            "job/step/memory.max": str(8 * GB),
        },
        16,
        3,
        32 * GB,
        6 * GB,
    ),
    (
        "v2 on a hybrid host (unified mount)",
        "1:cpu:/\n0::/app\n",
        {"unified/app/cpu.max": "100000 100000", "unified/app/memory.max": str(2 * GB)},
        4,
        1,
        8 * GB,
        2 * GB,
    ),
    (
        "v1 cfs quota and memory limit",
        "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
        {
            "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000",
            "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
            "memory/docker/abc/memory.limit_in_bytes": str(3 * GB),
            "memory/memory.limit_in_bytes": UNLIMITED_V1,
        },
        8,
        3,
        16 * GB,
        3 * GB,
    ),
    (
        "v1 unlimited (quota -1, huge limit)",
        "4:memory:/x\n3:cpu:/x\n",
        {
            "cpu/x/cpu.cfs_quota_us": "-1",
            "cpu/x/cpu.cfs_period_us": "100000",
            "memory/x/memory.limit_in_bytes": UNLIMITED_V1,
        },
        2,
        2,
        24 * GB,
        24 * GB,
    ),
    (
        "v1 container with its own cgroup mounted at the root",
        "4:memory:/kubepods/pod1\n3:cpu:/kubepods/pod1\n",
        {
            "cpu/cpu.cfs_quota_us": "100000",
            "cpu/cpu.cfs_period_us": "100000",
            "memory/memory.limit_in_bytes": str(GB // 2),
        },
        8,
        1,
        16 * GB,
        GB // 2,
    ),
    (
        "unreadable garbage is ignored",
        "0::/\n",
        {"cpu.max": "lots", "memory.max": "?"},
        4,
        4,
        GB,
        GB,
    ),
]


@pytest.mark.parametrize(
    ("proc", "files", "affinity", "cpus", "ram", "memory"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_budget_from_cgroup_files(tmp_path, proc, files, affinity, cpus, ram, memory):
    root = tmp_path / "cgroup"
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content + "\n")
    membership = tmp_path / "self_cgroup"
    membership.write_text(proc)
    paths = {"root": root, "proc_cgroup": membership}
    assert available_cpus(affinity=affinity, **paths) == cpus
    assert available_memory_bytes(physical=ram, **paths) == memory


def test_missing_membership_file_reads_the_mount_points(tmp_path):
    (tmp_path / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.limit_in_bytes").write_text("1000\n")
    paths = {"root": tmp_path, "proc_cgroup": tmp_path / "absent"}
    assert cgroup_cpu_quota(**paths) == 3.0
    assert cgroup_memory_bytes(**paths) == 1000


def test_this_machine_is_read():
    """Negative control on the real files: never more than the affinity mask."""
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    assert available_memory_bytes() > 0


#: (nprocs, runs that can run at once, threads per fit)
THREAD_CASES = [
    (1, 1, 1),
    (2, 1, 2),  # a single-run participant gets every CPU
    (8, 1, 8),
    (8, 2, 4),
    (8, 3, 2),  # rounded down: never more threads than CPUs
    (8, 8, 1),
    (8, 20, 1),
    (2, 5, 1),
    (16, 3, 5),
    (4, 0, 4),  # nothing to run: no division by zero
]


@pytest.mark.parametrize(("nprocs", "runs", "expected"), THREAD_CASES)
def test_threads_per_run(nprocs, runs, expected):
    assert threads_per_run(nprocs, runs) == expected
    assert threads_per_run(nprocs, runs) * max(1, min(runs, nprocs)) <= nprocs
