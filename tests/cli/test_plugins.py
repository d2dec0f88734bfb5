"""Execution plugins: an idle MultiProc loop, scheduler resources per step, lost batch jobs."""

import os
import resource
import time

import pytest

from rumba_bids.cli import plugins
from rumba_bids.cli.plugins import (
    _fix_lost_job,
    ensure_logname,
    make_plugin,
    multiproc_plugin,
    scheduler_args,
)

#: Seconds the test step sleeps (the stand-in for a fit of a few seconds).
STEP_S = 3.0


def _sleep(seconds, stamp):
    import time
    from pathlib import Path

    time.sleep(seconds)
    Path(stamp).write_text(repr(time.time()))
    return seconds


def _workflow(tmp_path, name):
    from nipype import Function, Node, Workflow

    workflow = Workflow(name=name, base_dir=str(tmp_path))
    node = Node(
        Function(input_names=["seconds", "stamp"], output_names=["out"], function=_sleep),
        name="slow_step",
    )
    node.inputs.seconds = STEP_S
    node.inputs.stamp = str(tmp_path / f"{name}.done")
    workflow.add_nodes([node])
    return workflow


def _cpu_self():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _run(workflow, plugin):
    """Main-process CPU seconds and passes while the step runs; delay of its 'end' callback."""
    marks = {}

    def callback(node, status):
        marks[status] = (time.time(), _cpu_self(), _passes(plugin))

    plugin._status_callback = callback
    workflow.run(plugin=plugin)
    (start, cpu0, passes0), (end, cpu1, passes1) = marks["start"], marks["end"]
    return cpu1 - cpu0, end - start, passes1 - passes0, end


def _passes(plugin):
    return getattr(plugin, "passes", None) or getattr(plugin, "stock_passes", 0)


def test_multiproc_loop_sleeps_while_a_step_runs(tmp_path):
    """< 5 % of a core in the main process during a 3 s step; the step's end seen within 1 s."""
    workflow = _workflow(tmp_path, "idle")
    plugin = make_plugin("MultiProc", {"n_procs": 2, "memory_gb": 1.0}, workflow)
    cpu, wall, passes, seen = _run(workflow, plugin)
    finished = float((tmp_path / "idle.done").read_text())
    assert wall >= STEP_S
    assert cpu / wall < 0.05, f"main process used {cpu:.3f} s of CPU in {wall:.1f} s"
    assert passes <= 2  # one pass when the step ended, none while it ran
    assert 0 <= seen - finished < 1.0  # per-step lines stay prompt


def test_negative_control_nipype_loop_polls(tmp_path):
    """Nipype's own loop at the app's former 0.05 s makes a pass (and a gc.collect) per poll."""
    from nipype.pipeline.plugins.multiproc import MultiProcPlugin

    class Counting(MultiProcPlugin):
        stock_passes = 0

        def _send_procs_to_workers(self, updatehash=False, graph=None):
            Counting.stock_passes += 1
            super()._send_procs_to_workers(updatehash=updatehash, graph=graph)

    workflow = _workflow(tmp_path, "busy")
    workflow.config["execution"] = {"poll_sleep_duration": 0.05}
    plugin = Counting(plugin_args={"n_procs": 2, "memory_gb": 1.0})
    _, wall, _, _ = _run(workflow, plugin)
    assert Counting.stock_passes >= 6  # ~10-20 per second (fewer under load); ours: <= 2


def test_batch_plugins_keep_nipypes_poll_interval(tmp_path):
    workflow = _workflow(tmp_path, "batch")
    assert make_plugin("Linear", {}, workflow) == "Linear"
    assert workflow.config["execution"]["poll_sleep_duration"] >= 2.0  # Nipype's default
    make_plugin("MultiProc", {"n_procs": 1}, workflow)
    assert workflow.config["execution"]["poll_sleep_duration"] < 2.0


#: (plugin, n_procs, mem_gb, global plugin_args, expected per-node plugin_args)
RESOURCE_CASES = [
    ("SLURM", 2, 1.0, {}, {"sbatch_args": "--cpus-per-task=2 --mem=1280M"}),
    (
        "SLURM",
        4,
        0.2,
        {"sbatch_args": "--time=1"},
        {"sbatch_args": "--cpus-per-task=4 --mem=461M"},
    ),
    ("SLURM", 2, 3.0, {"sbatch_args": "-c 8 --mem=8G"}, {}),  # the user's choice stands
    ("SLURM", 2, 3.0, {"sbatch_args": "--cpus-per-task=8"}, {"sbatch_args": "--mem=3328M"}),
    ("PBS", 4, 2.0, {}, {"qsub_args": "-l nodes=1:ppn=4,mem=2304mb"}),
    ("PBS", 4, 2.0, {"qsub_args": "-l mem=8gb"}, {"qsub_args": "-l nodes=1:ppn=4"}),
    ("SGE", 4, 2.0, {}, {}),  # parallel environments are site-specific: named or nothing
    (
        "SGE",
        4,
        2.0,
        {"parallel_environment": "smp", "memory_resource": "h_vmem"},
        {"qsub_args": "-pe smp 4 -l h_vmem=576M"},
    ),
    ("LSF", 2, 1.0, {}, {"bsub_args": '-n 2 -R "span[hosts=1] rusage[mem=1280MB]"'}),
    ("OAR", 3, 1.0, {}, {"oarsub_args": "-l /nodes=1/core=3"}),
    ("Condor", 3, 1.0, {}, {}),
]


@pytest.mark.parametrize(("plugin", "n_procs", "mem_gb", "given", "expected"), RESOURCE_CASES)
def test_scheduler_args(plugin, n_procs, mem_gb, given, expected):
    assert scheduler_args(plugin, n_procs, mem_gb, given) == expected


def test_every_node_asks_for_its_resources(tmp_path):
    workflow = _workflow(tmp_path, "res")
    node = workflow.get_node("slow_step")
    node.n_procs, node._mem_gb = 3, 2.0
    node.plugin_args = {"sbatch_args": "--time=5"}
    plugins.request_step_resources(workflow, "SLURM", {})
    assert node.plugin_args == {"sbatch_args": "--time=5 --cpus-per-task=3 --mem=2304M"}


def test_lost_job_gets_a_crash_report_instead_of_a_type_error():
    """nipy/nipype#3372: a str traceback made report_crash raise TypeError."""
    from nipype.pipeline.plugins.tools import report_crash  # noqa: F401  (the consumer)

    traceback = "Traceback (most recent call last):\nOSError: Job id (12) finished ...\n"
    lost = {"result": None, "traceback": traceback, "hostname": "unknown"}

    def report(taskid, node_dir):
        return ["JobState=TIMEOUT", "Reason=TimeLimit"], f"SLURM job {taskid} TIMEOUT"

    fixed = _fix_lost_job(lost, 12, "/nowhere", report)
    assert isinstance(fixed["traceback"], list)
    assert fixed["traceback"][-1] == "SchedulerError: SLURM job 12 TIMEOUT\n"
    assert "JobState=TIMEOUT\n" in fixed["traceback"]
    fixed["traceback"] += ["more\n"]  # what report_crash does: no TypeError any more
    done = {"result": object(), "traceback": None}
    assert _fix_lost_job(done, 12, None, report) is done  # a finished job is left alone
    with pytest.raises(TypeError):  # the negative control: Nipype's own value
        lost["traceback"] += ["When creating this crashfile ...\n"]


def test_logname_is_set_where_unset(monkeypatch):
    monkeypatch.delenv("LOGNAME", raising=False)
    ensure_logname()
    assert os.environ["LOGNAME"]
    monkeypatch.setenv("LOGNAME", "someone")
    ensure_logname()
    assert os.environ["LOGNAME"] == "someone"


def test_multiproc_workers_die_with_the_main_process():
    plugin = multiproc_plugin({"n_procs": 1})
    assert plugin.pool._initializer.__name__ == "_worker_initializer"
    plugin.pool.shutdown()


#: A MultiProc pool with a step running, then the interrupted main process's clean-up.
_STOPPED_POOL = """
import multiprocessing, threading, time
from rumba_bids.cli.plugins import multiproc_plugin
from rumba_bids.cli.resources import stop_workers
plugin = multiproc_plugin({"n_procs": 1})
plugin.pool.submit(time.sleep, 60)
while not multiprocessing.active_children():
    time.sleep(0.01)
time.sleep(0.2)
stopped = stop_workers()
managers = [t for t in threading.enumerate() if type(t).__name__ == "_ExecutorManagerThread"]
print(stopped, len(managers))
"""


def test_stop_workers_ends_the_pool_before_the_interpreter_exits():
    """After a stop, the pool's manager thread has ended: none is left to race with the
    exit hook (a "Bad file descriptor" traceback or a hang, seen in CI after Ctrl-C)."""
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-c", _STOPPED_POOL], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1", "0"], completed.stderr
    assert completed.stderr == ""
