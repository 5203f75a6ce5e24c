"""Run one function over many episodes, in this process or on a Ray cluster (no rclpy).

The offline tools that work per episode (``tracevla-annotate``, ``traceforge``) hand
this module a list of ``(key, item)`` pairs and a module-level function
``fn(item) -> dict``; every episode becomes one task:

* ``workers=1`` and no ``address``: the tasks run here, one after the other, and Ray
  is not even imported (the behaviour of the tools before they had ``--workers``);
* ``workers=N > 1``: a local Ray cluster with N CPUs is started for the run and shut
  down at its end, and N tasks run at a time;
* ``address="HOST:PORT"``: the tasks go to that existing cluster (started with ``ray
  start --head``; every node needs this checkout's environment installed and sees the
  data and output paths, e.g. a shared filesystem). N caps the tasks in flight; 0 = as
  many as the cluster has CPUs.

When this process is already connected to Ray (``ray.init`` done by the caller, e.g.
a test or a notebook), that connection is used and left open.

Contract with ``fn``: it is **idempotent** -- it writes its outputs under temporary
names and renames them into place last, so a task that is killed part-way (or run
twice, as Ray retries a task whose worker died) leaves nothing that looks finished;
the callers skip finished episodes before calling :func:`run_tasks` (resume).

Failures are never dropped: an exception in ``fn`` (or a dead worker) becomes a
:class:`Failure` with the episode key, one line and the traceback; the other episodes
go on. Ctrl-C or SIGTERM submits nothing more, shuts a cluster this call started down
(its running tasks die with it; on an existing cluster they finish their episode) and
returns the report with ``interrupted`` set (finished episodes stay).

    report = run_tasks(annotate_one, [(str(p), str(p)) for p in todo], workers=4)
    report.failed   # {key: Failure(error, traceback)}
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from tqdm import tqdm

from tracevla_ros.cli import UsageError
from tracevla_ros.stopping import STOP_SIGNALS, StopRequest, install_stop_signals

__all__ = ["Failure", "RunReport", "run_tasks", "resolve_workers", "add_parallel_args",
           "WORKERS_HELP", "ADDRESS_HELP"]

_log = logging.getLogger(__name__)

WORKERS_HELP = ("episodes processed in parallel; 1 = one after the other in this process, "
                "N > 1 = on a local Ray cluster of N CPUs started for this run (default: 1; "
                "with --address: as many as the cluster has CPUs)")
ADDRESS_HELP = ("run the episodes on this existing Ray cluster (HOST:PORT of `ray start "
                "--head`, or 'auto'); every node needs this environment and the data paths")

# A worker that dies (OOM kill, crash) gets its task retried this often; the tasks are
# idempotent, so a retry is safe. Exceptions raised by ``fn`` are not retried.
WORKER_RETRIES = 1
# The local cluster's shared-memory object store: the tasks pass paths and small dicts.
OBJECT_STORE_BYTES = 128 * 1024 * 1024


@dataclass(frozen=True)
class Failure:
    error: str  # "ExceptionType: message", one line
    traceback: str = ""  # where it was raised (empty for a lost worker)


@dataclass
class RunReport:
    """What happened to every episode handed to :func:`run_tasks`."""

    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> fn's result
    failed: dict[str, Failure] = field(default_factory=dict)
    not_run: list[str] = field(default_factory=list)  # not finished when a stop came
    interrupted: bool = False
    backend: str = "serial"  # serial | ray-local | ray-cluster
    workers: int = 1  # tasks in flight at most
    address: str = ""  # the Ray cluster's address ('' = serial)
    seconds: float = 0.0  # the whole run, a cluster's start and shutdown included
    startup_seconds: float = 0.0  # of which starting or joining the Ray cluster

    def episodes_per_minute(self) -> float:
        n = len(self.done) + len(self.failed)
        return 60.0 * n / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": sorted(self.done), "failed": {k: {"error": f.error, "traceback": f.traceback}
                                                  for k, f in sorted(self.failed.items())},
            "not_run": sorted(self.not_run), "interrupted": self.interrupted,
            "backend": self.backend, "workers": self.workers, "address": self.address,
            "seconds": round(self.seconds, 3), "startup_seconds": round(self.startup_seconds, 3),
            "episodes_per_minute": round(self.episodes_per_minute(), 2),
        }


def add_parallel_args(ap: Any) -> None:
    """``--workers`` and ``--address`` of the commands that run episodes as tasks."""
    ap.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    ap.add_argument("--address", default=None, help=ADDRESS_HELP)


def resolve_workers(workers: int | None, address: str | None) -> int:
    """``--workers`` checked, with its default: 1 without ``--address``, 0 (= the cluster's
    CPUs) with it. UsageError for < 1 (0 only with ``--address``)."""
    if workers is None:
        return 0 if address else 1
    if workers < 1 and not (address and workers == 0):
        raise UsageError(f"--workers {workers}: must be >= 1 (0 = every CPU, only with "
                         "--address)")
    return workers


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}".rstrip(": ")


def _call(fn: Callable[[Any], dict[str, Any]], item: Any) -> tuple[bool, Any, str]:
    """Run one episode; its exception comes back as a value (never lost in a worker log)."""
    try:
        return True, fn(item), ""
    except Exception as exc:  # noqa: BLE001 - reported per episode by the caller
        return False, _one_line(exc), traceback.format_exc()


class _StopRaises:
    """While the run is in progress, the first SIGINT/SIGTERM/SIGHUP raises
    :class:`~tracevla_ros.stopping.Stopped` (a ``KeyboardInterrupt``) and sets ``stop``
    (``tracevla_ros.stopping``); the previous handlers come back afterwards."""

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop
        self._old: dict[int, Any] | None = None

    def __enter__(self) -> "_StopRaises":
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
            install_stop_signals(self.stop, interrupt=True)
        return self

    def rearm(self) -> None:
        """Take the signals back (``ray.init`` installs its own SIGTERM handler, which exits
        at once)."""
        if self._old is not None and not self.stop:
            install_stop_signals(self.stop, interrupt=True)

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            for sig, handler in self._old.items():
                signal.signal(sig, handler)


def run_tasks(fn: Callable[[Any], dict[str, Any]], items: Sequence[tuple[str, Any]], *,
              workers: int = 1, address: str | None = None, progress: bool = True,
              desc: str = "episodes", stop: StopRequest | None = None) -> RunReport:
    """Run ``fn(item)`` for every ``(key, item)``; see the module doc for the modes.

    ``fn`` must be a module-level function (Ray sends it to the workers by reference)
    returning a small JSON-able dict; ``item`` is sent to the workers too (keep it to
    paths and options). Keys must be unique. A stop signal during the run sets ``stop``
    (its ``reason`` names the signal) and ends the run with ``interrupted``.
    """
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"episode keys occur twice: {dup[:5]}")
    if workers < 0 or (workers == 0 and not address):
        raise ValueError(f"workers must be >= 1 (or 0 with an address), got {workers}")
    rep = RunReport()
    t0 = time.perf_counter()
    bar = tqdm(total=len(items), desc=desc, unit="ep", disable=not progress)
    try:
        with _StopRaises(stop if stop is not None else StopRequest()) as interrupt:
            if workers == 1 and not address:
                _run_serial(fn, items, rep, bar)
            else:
                _run_ray(fn, items, rep, bar, workers, address, interrupt)
    finally:
        bar.close()
        rep.seconds = time.perf_counter() - t0
    for key, f in sorted(rep.failed.items()):
        _log.error("episode %s FAILED: %s", key, f.error)
    return rep


def _record(rep: RunReport, bar: tqdm, key: str, ok: bool, value: Any, tb: str) -> None:
    if ok:
        rep.done[key] = value
    else:
        rep.failed[key] = Failure(str(value), tb)
    bar.update(1)
    bar.set_postfix(failed=len(rep.failed))


def _run_serial(fn: Callable[[Any], dict[str, Any]], items: Sequence[tuple[str, Any]],
                rep: RunReport, bar: tqdm) -> None:
    it = iter(items)
    try:
        for key, item in it:
            _record(rep, bar, key, *_call(fn, item))
    except KeyboardInterrupt:
        rep.interrupted = True
        rep.not_run = [k for k, _ in items if k not in rep.done and k not in rep.failed]


def _run_ray(fn: Callable[[Any], dict[str, Any]], items: Sequence[tuple[str, Any]],
             rep: RunReport, bar: tqdm, workers: int, address: str | None,
             interrupt: _StopRaises) -> None:
    import ray  # only here: the serial path needs no Ray

    started = False
    t0 = time.perf_counter()
    if ray.is_initialized():
        rep.backend = "ray-cluster"
    else:
        kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                  configure_logging=False)
        if address:
            ray.init(address=address, **kw)
            rep.backend = "ray-cluster"
        else:
            ray.init(num_cpus=workers, object_store_memory=OBJECT_STORE_BYTES, **kw)
            rep.backend = "ray-local"
        started = True
        interrupt.rearm()
    rep.startup_seconds = time.perf_counter() - t0
    try:
        rep.address = str(ray.get_runtime_context().gcs_address)
        limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        rep.workers = limit
        remote = ray.remote(num_cpus=1, max_retries=WORKER_RETRIES)(_call)
        fn_ref = ray.put(fn)
        pending: dict[Any, str] = {}
        queue: Iterator[tuple[str, Any]] = iter(items)
        try:
            while True:
                while len(pending) < limit:
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    pending[remote.remote(fn_ref, nxt[1])] = nxt[0]
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    try:
                        ok, value, tb = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a dead worker, cancelled task ...
                        ok, value, tb = False, _one_line(exc), ""
                    _record(rep, bar, key, ok, value, tb)
        except KeyboardInterrupt:
            # No ray.cancel here: cancelling a task whose reply is arriving races inside Ray's
            # core worker and aborts the driver ("Check failed: it != submissible_tasks_.end()",
            # ray-project/ray#54738), losing the report. A local cluster's workers die with
            # ray.shutdown below; on an existing cluster a running episode finishes (seconds;
            # written atomically, skipped by the rerun) and nothing new is submitted.
            rep.interrupted = True
            rep.not_run = [k for k, _ in items if k not in rep.done and k not in rep.failed]
    finally:
        if started:
            ray.shutdown()
