"""Running the preselection processor with coffea: the dask cluster (local, an existing
scheduler, or Slurm through dask-jobqueue) or in-process, the accumulated result, and progress
lines in the job's log as chunks finish (workers report them through the dask scheduler's event
log, so the lines come from the driver whatever runs the chunks)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from coffea import processor
from coffea.nanoevents import NanoAODSchema

from analysis.core.config import preselect_in_process
from analysis.core.errors import AnalysisError
from analysis.core.progress import INTERVAL, Progress

log = logging.getLogger(__name__)

#: dask event-log topic on which workers report finished chunks (their numbers of events).
PROGRESS_TOPIC = "preselect-chunk-done"
#: Seconds between two progress lines of the preselection.
PROGRESS_INTERVAL = INTERVAL
#: Seconds the driver waits for the last chunks' reports once coffea has returned.
REPORT_WAIT = 5.0

#: The driver's progress when the chunks run in this process (``dask.mode: none``).
_in_process_progress: Progress | None = None


def chunk_done(events: int) -> None:
    """Report a finished chunk of ``events`` events to the driver's progress lines: from a dask
    worker through the scheduler's event log, in-process directly."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # not inside a dask worker
        if _in_process_progress is not None:
            _in_process_progress.update(events)
        return
    worker.log_event(PROGRESS_TOPIC, events)


@contextlib.contextmanager
def dask_executor(
    workers: int, dask: Mapping[str, Any], progress: Progress
) -> Iterator[processor.executor.ExecutorBase]:
    """The coffea executor for ``preselect.dask.mode``, with its cluster torn down afterwards.

    ``local`` starts a distributed LocalCluster with one single-threaded process per worker (the
    rule's threads); ``scheduler`` connects to ``dask.address``; ``slurm`` starts a dask-jobqueue
    SLURMCluster of ``dask.jobs`` worker jobs, each configured the dask-jobqueue way (the
    ``jobqueue.slurm`` section of the dask config: ~/.config/dask/jobqueue.yaml or
    ``DASK_JOBQUEUE__SLURM__*`` variables); ``none`` runs chunks in this process. Finished
    chunks count into ``progress``.
    """
    global _in_process_progress
    if dask["mode"] == "none":
        _in_process_progress = progress
        try:
            yield processor.IterativeExecutor(status=False)
        finally:
            _in_process_progress = None
        return
    from distributed import Client

    with contextlib.ExitStack() as stack:
        cluster = _cluster(workers, dask)
        if not isinstance(cluster, str):
            stack.callback(_close, cluster)
        client = stack.enter_context(Client(cluster))
        client.subscribe_topic(PROGRESS_TOPIC, lambda event: progress.update(event[1]))
        yield processor.DaskExecutor(client=client, status=False, retries=0)
        # the reports travel on after coffea has its result: wait (briefly) for the last ones
        deadline = time.monotonic() + REPORT_WAIT
        while progress.done < progress.total and time.monotonic() < deadline:
            time.sleep(0.05)


def _close(cluster: Any) -> None:
    """Shut the cluster down. On a busy machine a worker process can outlast distributed's
    shutdown timeout after every chunk is done; that must not fail a finished job (or hide the
    error of a failed one), and the workers end with this process anyway."""
    try:
        cluster.close()
    except TimeoutError:
        log.warning("the dask cluster did not shut down in time; its workers end with this job")


def _cluster(workers: int, dask: Mapping[str, Any]) -> Any:
    """A dask cluster object, or the address of a running scheduler."""
    mode = dask["mode"]
    if mode == "local":
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True,
            dashboard_address=None, memory_limit=0,
        )  # fmt: skip
    if mode == "scheduler":
        if not dask.get("address"):
            raise AnalysisError(
                "preselect.dask.mode is 'scheduler' but preselect.dask.address is not set; "
                "give the scheduler address (tcp://host:8786)"
            )
        return dask["address"]
    if mode == "slurm":
        return _slurm_cluster(dask.get("jobs", 1))
    raise AnalysisError(
        f"preselect.dask.mode: unknown mode {mode!r}; use local, scheduler, slurm or none"
    )


def _slurm_cluster(jobs: int) -> Any:
    """A dask-jobqueue SLURMCluster scaled to ``jobs`` worker jobs (one core each by default)."""
    import dask.config
    from dask_jobqueue import SLURMCluster

    defaults = {"cores": 1, "memory": "4GB", "processes": 1}
    overrides = {
        k: v for k, v in defaults.items() if dask.config.get(f"jobqueue.slurm.{k}") is None
    }
    cluster = SLURMCluster(**overrides)
    cluster.scale(jobs=jobs)
    return cluster


def run_processor(
    proc: processor.ProcessorABC,
    fileset: dict[str, Any],
    treename: str,
    events: int,
    chunksize: int,
    workers: int,
    dask: Mapping[str, Any],
) -> dict[str, Any]:
    """Run ``proc`` over ``fileset`` (``events`` events in all) in chunks of ``chunksize`` events;
    return its accumulator. With ``dask.mode: local``, an input of one chunk runs in this process.

    ``proc`` calls :func:`chunk_done` at the end of every chunk, for the progress lines.
    """
    progress = Progress(events, "preselection", "events", interval=PROGRESS_INTERVAL)
    if preselect_in_process(events, chunksize, dask["mode"]):
        log.info("%d events are one chunk: processed in this process", events)
        dask = {**dask, "mode": "none"}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="coffea")
        with dask_executor(workers, dask, progress) as executor:
            runner = processor.Runner(
                executor=executor, schema=NanoAODSchema, chunksize=chunksize, savemetrics=False
            )
            return _unwrap_worker_errors(runner, fileset, proc, treename)


def _unwrap_worker_errors(
    runner: processor.Runner,
    fileset: dict[str, Any],
    proc: processor.ProcessorABC,
    treename: str,
) -> dict[str, Any]:
    """Run coffea, turning an AnalysisError raised in a worker back into one clear line.

    coffea wraps worker exceptions in a generic ``Exception`` whose message embeds the repr of
    the original; the chain does not always survive the trip from a dask worker.
    """
    try:
        return runner(fileset, processor_instance=proc, treename=treename)
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, AnalysisError):
                raise AnalysisError(str(cause)) from None
            cause = cause.__cause__
        match = re.search(r"AnalysisError\((['\"])(.*)\1\)", str(err))
        if match:
            raise AnalysisError(match.group(2)) from None
        raise


def with_empty_defaults(
    result: Mapping[str, Any] | None, variations: Sequence[str], steps: Sequence[str]
) -> dict[str, Any]:
    """Accumulated output for inputs without any event (coffea returns nothing then);
    ``steps`` are the cutflow steps."""
    result = dict(result or {})
    result.setdefault("chunks", [])
    result.setdefault("sumw", {"events": 0.0, "genWeight": 0.0})
    cutflow = dict(result.get("cutflow") or {})
    for variation in variations:
        cutflow.setdefault(variation, {cut: {"events": 0.0, "weighted": 0.0} for cut in steps})
    result["cutflow"] = cutflow
    return result
