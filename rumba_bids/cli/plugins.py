"""The Nipype execution plugins as the app runs them.

- **MultiProc** (default): worker processes die with the main process, and the
  main process sleeps while the steps run.  Nipype's loop wakes every
  ``poll_sleep_duration`` and, while a CPU is free, calls ``gc.collect()``
  each time; here the scheduling pass runs only when a step finished (or
  failed), and the loop otherwise waits on an event the pool sets when a step
  ends (at most :data:`IDLE_WAKEUP_S` between passes).
- **Batch plugins** (SLURM, SGE, PBS, LSF, OAR, Condor): each step becomes one
  job.  Every job asks the scheduler for the CPUs and memory its step
  declares (``n_procs``, ``mem_gb``; :func:`scheduler_args`), the job name no
  longer needs ``LOGNAME``, the queue is polled at Nipype's default interval,
  and a job the scheduler killed (time limit, memory, ``scancel``) ends in a
  crash file that says what the scheduler reported (nipy/nipype#3372 made
  that a ``TypeError``).
- **Graph plugins** (SLURMGraph, SGEGraph, PBSGraph, CondorDAGMan, SomaFlow)
  submit the whole graph and return before anything is computed, so the app
  could neither report failures nor write its reports: they are refused
  (:func:`check_plugin`).
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import re
import subprocess
import threading
from pathlib import Path

from .errors import UsageError

workflow_logger = logging.getLogger("nipype.workflow")
#: Longest wait (s) of the MultiProc loop between two passes when no step ends.
IDLE_WAKEUP_S = 1.0
#: Nipype's own ``poll_sleep_duration`` (s), kept for the batch plugins.
BATCH_POLL_S = 2.0
#: Memory (GB) of the Python process of a batch job on top of its step's estimate.
JOB_BASELINE_GB = 0.25


def plugin_base(name: str):
    """Nipype's plugin class for ``name`` (``'SLURM'`` -> ``SLURMPlugin``), or None."""
    from nipype.pipeline import plugins

    return getattr(plugins, f"{name}Plugin", None)


def is_batch_plugin(name: str) -> bool:
    """Whether ``name`` submits every step as a job of a batch scheduler."""
    from nipype.pipeline.plugins.base import SGELikeBatchManagerBase

    cls = plugin_base(name)
    return isinstance(cls, type) and issubclass(cls, SGELikeBatchManagerBase)


def check_plugin(name: str, path: Path) -> None:
    """Refuse (exit 64) a plugin the app cannot run: unknown, or a graph plugin."""
    from nipype.pipeline.plugins.base import GraphPluginBase

    cls = plugin_base(name)
    if not isinstance(cls, type):
        raise UsageError(f"--use-plugin names an unknown Nipype plugin {name!r}", path=path)
    if issubclass(cls, GraphPluginBase):
        batch = name.removesuffix("Graph") if name.endswith("Graph") else None
        instead = f"use plugin: {batch} (the app waits for its jobs) or " if batch else "use "
        raise UsageError(
            f"plugin {name} submits the whole graph and returns before anything runs, so "
            f"failures and reports would be lost; {instead}one job per participant "
            "(README: Running on a cluster)",
            path=path,
        )


# --- per-step resources for batch schedulers -------------------------------------------


def _mb(mem_gb: float) -> int:
    return max(1, math.ceil((float(mem_gb) + JOB_BASELINE_GB) * 1024))


def _slurm(n_procs, mem_gb, options, given):
    args = []
    if not re.search(r"(^|\s)(-c|--cpus-per-task)([=\s]|$)", given):
        args.append(f"--cpus-per-task={n_procs}")
    if "--mem" not in given:
        args.append(f"--mem={_mb(mem_gb)}M")
    return "sbatch_args", args


def _pbs(n_procs, mem_gb, options, given):
    resources = []
    if not re.search(r"ppn=|ncpus=|nodes=|select=", given):
        resources.append(f"nodes=1:ppn={n_procs}")
    if "mem=" not in given:
        resources.append(f"mem={_mb(mem_gb)}mb")
    return "qsub_args", [f"-l {','.join(resources)}"] if resources else []


def _sge(n_procs, mem_gb, options, given):
    # SGE's parallel environment and memory resource are site-specific: named in plugin_args
    args = []
    pe, resource = options.get("parallel_environment"), options.get("memory_resource")
    if pe and "-pe " not in given:
        args.append(f"-pe {pe} {n_procs}")
    if resource and f"{resource}=" not in given:  # SGE counts memory per slot
        args.append(f"-l {resource}={math.ceil(_mb(mem_gb) / (n_procs if pe else 1))}M")
    return "qsub_args", args


def _lsf(n_procs, mem_gb, options, given):
    args = []
    if not re.search(r"(^|\s)-n\s", given):
        args.append(f"-n {n_procs}")
    if "rusage" not in given:
        args.append(f'-R "span[hosts=1] rusage[mem={_mb(mem_gb)}MB]"')
    return "bsub_args", args


def _oar(n_procs, mem_gb, options, given):
    if re.search(r"(^|\s)-l\s", given):
        return "oarsub_args", []
    return "oarsub_args", [f"-l /nodes=1/core={n_procs}"]  # OAR has no memory request


#: Plugin -> formatter ``(n_procs, mem_gb, plugin_args, global args) -> (key, [args])``.
_FORMATS = {"SLURM": _slurm, "PBS": _pbs, "SGE": _sge, "LSF": _lsf, "OAR": _oar}
_GLOBAL_KEYS = {"SLURM": "sbatch_args", "LSF": "bsub_args", "OAR": "oarsub_args"}


def scheduler_args(plugin: str, n_procs: int, mem_gb: float, plugin_args=None) -> dict:
    """Per-node ``plugin_args`` asking ``plugin``'s scheduler for a step's CPUs and memory.

    Resources the user already requests for every job (``sbatch_args``,
    ``qsub_args``, ...) are not requested again.  Memory is the step's
    estimate plus :data:`JOB_BASELINE_GB` for the job's Python process.

    >>> scheduler_args("SLURM", 2, 1.0)
    {'sbatch_args': '--cpus-per-task=2 --mem=1280M'}
    >>> scheduler_args("SLURM", 1, 0.2, {"sbatch_args": "--time=1:00:00 --mem=8G"})
    {'sbatch_args': '--cpus-per-task=1'}
    >>> scheduler_args("PBS", 4, 2.0)
    {'qsub_args': '-l nodes=1:ppn=4,mem=2304mb'}
    """
    plugin_args = dict(plugin_args or {})
    formatter = _FORMATS.get(plugin)
    if formatter is None:  # Condor, IPython...: no per-step resources
        return {}
    given = str(plugin_args.get(_GLOBAL_KEYS.get(plugin, "qsub_args")) or "")
    key, args = formatter(int(n_procs), float(mem_gb), plugin_args, given)
    return {key: " ".join(args)} if args else {}


def request_step_resources(workflow, plugin: str, plugin_args) -> int:
    """Add :func:`scheduler_args` to every node of ``workflow``; return how many got some."""
    count = 0
    for node in workflow._get_all_nodes():
        extra = scheduler_args(plugin, node.n_procs, node.mem_gb, plugin_args)
        for key, value in extra.items():
            own = node.plugin_args.get(key)
            node.plugin_args = {**node.plugin_args, key: f"{own} {value}" if own else value}
        count += bool(extra)
    return count


def ensure_logname() -> None:
    """Set ``LOGNAME`` where it is unset (containers, cron, batch jobs).

    Nipype's SLURM plugin names each job after ``os.environ['LOGNAME']``.
    """
    if os.environ.get("LOGNAME"):
        return
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid{os.getuid()}"
    os.environ["LOGNAME"] = name


# --- what the scheduler says about a job that died -------------------------------------


def _run(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def slurm_job_report(taskid: int, batch_dir: str | None) -> tuple[list[str], str]:
    """(details, one-line summary) of SLURM job ``taskid`` that left no result file.

    From ``scontrol show job`` (kept by slurmctld for ``MinJobAge`` after the
    end; ``sacct`` needs accounting) and the last lines of the job's
    ``slurm-<id>.out`` in the workflow's batch directory.
    """
    fields = dict(re.findall(r"(\w+)=(\S*)", _run(["scontrol", "-o", "show", "job", str(taskid)])))
    details = [
        f"{key}={fields[key]}"
        for key in ("JobState", "Reason", "ExitCode", "RunTime", "TimeLimit", "NodeList")
        if key in fields
    ]
    output = []
    if batch_dir is not None:
        out_file = Path(batch_dir) / f"slurm-{taskid}.out"
        try:
            output = out_file.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            output = []
    said = [line.strip() for line in output if "slurmstepd" in line or "***" in line]
    state = fields.get("JobState", "ended")
    summary = f"SLURM job {taskid} {state}"
    if fields.get("Reason") not in (None, "None"):
        summary += f" ({fields['Reason']})"
    if said:  # e.g. "slurmstepd-n1: error: *** JOB 13 ON n1 CANCELLED ... DUE TO TIME LIMIT ***"
        summary += ": " + re.sub(r"^slurmstepd\S*: (error: )?", "", said[-1])
    lines = ["The scheduler reports:", *details]
    if output:
        lines += [f"Last lines of slurm-{taskid}.out:", *output]
    return lines, summary + "; the step wrote no result"


def _fix_lost_job(result, taskid, batch_dir, report):
    """Nipype's traceback (a str) of a job without result -> a list of lines with ``report``."""
    if not result or result.get("result") is not None:
        return result
    traceback = result.get("traceback")
    if not isinstance(traceback, str):
        return result
    details, summary = report(taskid, batch_dir)
    text = "\n".join([traceback.rstrip(), "", *details, "", f"SchedulerError: {summary}"])
    return {**result, "traceback": [line + "\n" for line in text.splitlines()]}


def batch_plugin(name: str, plugin_args: dict):
    """An instance of Nipype's batch plugin ``name`` with the fixes above."""
    base = plugin_base(name)
    report = slurm_job_report if name == "SLURM" else _no_report

    class BatchPlugin(base):
        def __init__(self, plugin_args=None):
            super().__init__(plugin_args=plugin_args)
            self._jobs = {}  # taskid -> (node's full name, batch directory)

        def _submit_batchtask(self, scriptfile, node):
            taskid = super()._submit_batchtask(scriptfile, node)
            self._jobs[taskid] = (node.fullname, os.path.dirname(scriptfile))
            return taskid

        def _get_result(self, taskid):
            name, batch_dir = self._jobs.get(taskid, (None, None))
            result = _fix_lost_job(super()._get_result(taskid), taskid, batch_dir, report)
            if result and name:  # the step ran in its job: say so here, as MultiProc's workers do
                if result.get("traceback"):
                    workflow_logger.error('[Node] Error on "%s"', name)
                else:
                    runtime = getattr(result["result"], "runtime", None)
                    duration = getattr(runtime, "duration", None) or 0.0
                    workflow_logger.info('[Node] Finished "%s", elapsed time %ss.', name, duration)
            return result

    BatchPlugin.__name__ = base.__name__  # the name Nipype logs
    ensure_logname()
    return BatchPlugin(plugin_args=dict(plugin_args))


def _no_report(taskid, batch_dir):
    return [], f"job {taskid} ended"


# --- MultiProc ---------------------------------------------------------------------------


def _worker_initializer(cwd: str, parent_pid: int) -> None:
    from nipype.pipeline.plugins.multiproc import process_initializer

    from .resources import die_with_parent

    process_initializer(cwd)
    die_with_parent(parent_pid)


def multiproc_plugin(plugin_args: dict):
    """Nipype's MultiProc plugin with workers that die with the main process, and an idle loop.

    Returns an instance to pass as ``workflow.run(plugin=...)``.  Its
    attribute ``passes`` counts the scheduling passes (a test checks the loop
    stays idle while a step runs).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from nipype.pipeline.plugins import multiproc

    from .resources import track_pool

    class MultiProcPlugin(multiproc.MultiProcPlugin):  # the name Nipype reports
        def __init__(self, plugin_args=None):
            super().__init__(plugin_args=plugin_args)
            unused = self.pool  # no worker has started yet: they start on the first job
            context = multiprocessing.get_context(self.plugin_args.get("mp_context"))
            self.pool = track_pool(
                ProcessPoolExecutor(
                    max_workers=self.processors,
                    initializer=_worker_initializer,
                    initargs=(self._cwd, os.getpid()),
                    mp_context=context,
                )
            )
            unused.shutdown(wait=False)
            self._changed = True  # a pass is needed: the graph's state changed
            self._ended = threading.Event()  # set by the pool when a step ends
            self.passes = 0

        def _async_callback(self, args):
            try:
                super()._async_callback(args)
            finally:
                self._ended.set()

        def _task_finished_cb(self, jobid, cached=False):
            self._changed = True
            super()._task_finished_cb(jobid, cached=cached)

        def _clean_queue(self, jobid, graph, result=None):
            self._changed = True
            return super()._clean_queue(jobid, graph, result=result)

        def _submit_mapnode(self, jobid):
            self._changed = True
            return super()._submit_mapnode(jobid)

        def _send_procs_to_workers(self, updatehash=False, graph=None):
            if self._changed:
                self._changed = False
                self.passes += 1
                super()._send_procs_to_workers(updatehash=updatehash, graph=graph)
            if not self._changed and self.pending_tasks:
                # the loop collects results next: wait until one is there
                self._ended.wait(IDLE_WAKEUP_S)
                self._ended.clear()

    return MultiProcPlugin(plugin_args=dict(plugin_args))


def make_plugin(name: str, plugin_args: dict, workflow):
    """The plugin (instance or name) ``workflow.run`` gets; sets its poll interval.

    MultiProc polls every 0.05 s but sleeps between steps (see
    :func:`multiproc_plugin`); batch plugins poll their queue every
    :data:`BATCH_POLL_S` (Nipype's default) and ask for each step's resources.
    """
    execution = workflow.config.setdefault("execution", {})
    if name == "MultiProc":
        execution["poll_sleep_duration"] = 0.05
        return multiproc_plugin(plugin_args)
    execution["poll_sleep_duration"] = BATCH_POLL_S
    if is_batch_plugin(name):
        request_step_resources(workflow, name, plugin_args)
        return batch_plugin(name, plugin_args)
    return name
