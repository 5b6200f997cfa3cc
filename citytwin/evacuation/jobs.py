"""Background jobs for long simulations (venue runs, what-ifs): id, status, progress, result.

A :class:`JobRunner` runs callables on a few daemon worker threads (a server stops without
waiting for a long simulation). Each callable gets a ``progress(fraction, message)`` function
and returns a JSON-ready dict; the runner keeps the latest fraction and message, the result or
the error, and forgets the oldest finished jobs beyond ``keep``. A cancelled job's next
``progress`` call raises :class:`JobCancelled`. The simulations themselves may fan out to worker
processes (:func:`citytwin.evacuation.pedsim.run_many`), so threads are enough: they mostly
wait.

It knows no web framework; the API router holds one runner per app and closes it on shutdown.

Example
-------
>>> runner = JobRunner(max_workers=1)
>>> job = runner.submit("demo", lambda progress: (progress(0.5, "half"), {"ok": True})[1])
>>> runner.wait(job.id, timeout_s=5)["result"]
{'ok': True}
>>> runner.close()
"""

from __future__ import annotations

import queue as queue_mod
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Job", "JobRunner", "JobNotFound", "JobCancelled", "STATUSES"]

#: Lifecycle of a job.
STATUSES = ("queued", "running", "done", "failed", "cancelled")
_FINAL = ("done", "failed", "cancelled")

Progress = Callable[[float, str], None]


class JobNotFound(LookupError):
    """No job with this id (never submitted, or forgotten)."""


class JobCancelled(Exception):
    """Raised by ``progress`` inside a job that was cancelled."""


@dataclass
class Job:
    """One background job; ``progress`` is a fraction in [0, 1]."""

    id: str
    kind: str
    status: str = "queued"
    progress: float = 0.0
    message: str = "queued"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    started_at: str | None = None
    finished_at: str | None = None
    elapsed_s: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def snapshot(self, *, with_result: bool = True) -> dict[str, Any]:
        """A JSON-ready copy (the result only once done, and only if asked)."""
        d = {
            "id": self.id, "kind": self.kind, "status": self.status,
            "progress": round(self.progress, 4), "message": self.message,
            "created_at": self.created_at, "started_at": self.started_at,
            "finished_at": self.finished_at, "elapsed_s": self.elapsed_s,
            "error": self.error, "meta": self.meta,
        }
        if with_result:
            d["result"] = self.result
        return d


class JobRunner:
    """Runs jobs on ``max_workers`` threads; keeps at most ``keep`` finished jobs.

    ``error_mapper(exc)`` turns an exception into the job's ``error`` dict (default:
    ``{"field": exc.field, "message": ...}`` when the exception has a ``field``, else
    ``{"message": str(exc), "type": ...}``).
    """

    def __init__(self, *, max_workers: int = 1, keep: int = 50,
                 error_mapper: Callable[[BaseException], dict[str, Any]] | None = None) -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be ≥ 1")
        self._queue: queue_mod.Queue = queue_mod.Queue()
        self._max_workers = max_workers
        self._threads: list[threading.Thread] = []  # started on the first submit
        self._cancel: set[str] = set()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._keep = keep
        self._map_error = error_mapper or _default_error
        self._closed = False

    # ------------------------------------------------------------------ public
    def submit(self, kind: str, fn: Callable[[Progress], dict[str, Any]], *,
               meta: dict[str, Any] | None = None) -> Job:
        """Queue ``fn(progress)``; returns the job (status ``queued``)."""
        if self._closed:
            raise RuntimeError("the job runner is closed")
        job = Job(id=uuid.uuid4().hex, kind=kind, meta=dict(meta or {}))
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._loop, name=f"citytwin-job-{i}", daemon=True)
                    for i in range(self._max_workers)
                ]
                for t in self._threads:
                    t.start()
        self._queue.put((job, fn))
        return job

    def get(self, job_id: str, *, with_result: bool = True) -> dict[str, Any]:
        """A snapshot of the job; raises :class:`JobNotFound`."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            return job.snapshot(with_result=with_result)

    def list(self) -> list[dict[str, Any]]:
        """Snapshots of the known jobs (without results), oldest first."""
        with self._lock:
            return [j.snapshot(with_result=False) for j in self._jobs.values()]

    def wait(self, job_id: str, *, timeout_s: float | None = None) -> dict[str, Any]:
        """Block until the job is done or failed (or the timeout passes); its snapshot."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._done:
            while True:
                job = self._jobs.get(job_id)
                if job is None:
                    raise JobNotFound(job_id)
                if job.status in _FINAL:
                    return job.snapshot()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job.snapshot()
                self._done.wait(left)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued job now, a running one at its next progress report."""
        with self._done:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.status == "queued":
                job.status, job.message = "cancelled", "cancelled before it started"
                self._finish(job, None)
            elif job.status == "running":
                self._cancel.add(job_id)
                job.message = "cancelling…"
            return job.snapshot(with_result=False)

    def close(self, *, timeout_s: float = 0.0) -> None:
        """Stop accepting jobs and cancel the queued and running ones; wait up to
        ``timeout_s`` for the workers (daemon threads: they never block the exit)."""
        self._closed = True
        with self._lock:
            ids = [k for k, j in self._jobs.items() if j.status not in _FINAL]
        for k in ids:
            self.cancel(k)
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ internals
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._run(*item)

    def _run(self, job: Job, fn: Callable[[Progress], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        with self._lock:
            if job.status != "queued":  # cancelled while queued
                return
            job.status, job.message = "running", "started"
            job.started_at = datetime.now(UTC).isoformat()

        def progress(fraction: float, message: str) -> None:
            with self._lock:
                if job.id in self._cancel:
                    raise JobCancelled(job.id)
                f = min(max(float(fraction), 0.0), 1.0)
                job.progress = max(job.progress, f)  # never goes backwards
                job.message = str(message)

        try:
            result = fn(progress)
        except JobCancelled:
            with self._done:
                job.status, job.message = "cancelled", "cancelled"
                self._finish(job, t0)
            return
        except Exception as exc:  # the job's failure is its result; the thread lives on
            err = self._map_error(exc)
            with self._done:
                job.status, job.error, job.message = "failed", err, err.get("message", "failed")
                self._finish(job, t0)
            return
        with self._done:
            job.status, job.result, job.progress, job.message = "done", result, 1.0, "done"
            self._finish(job, t0)

    def _finish(self, job: Job, t0: float | None) -> None:
        job.finished_at = datetime.now(UTC).isoformat()
        job.elapsed_s = None if t0 is None else round(time.perf_counter() - t0, 3)
        self._cancel.discard(job.id)
        self._done.notify_all()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.status in _FINAL]
        for k in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[k]


def _default_error(exc: BaseException) -> dict[str, Any]:
    field_ = getattr(exc, "field", None)
    message = getattr(exc, "message", None) or str(exc)
    if field_ is not None:
        return {"field": field_, "message": message, "type": type(exc).__name__}
    return {"message": message or type(exc).__name__, "type": type(exc).__name__,
            "trace": traceback.format_exception_only(type(exc), exc)[-1].strip()}
