"""Where the heavy work runs: this machine's process pool, or a Dask cluster, chosen once.

`Workers(scheduler, jobs)` is the one edge. No scheduler: a process pool of `jobs` processes
(forkserver, workers that leave with their parent), as birdgrab always ran. `local`: a
`distributed.LocalCluster` of `jobs` single-threaded worker processes. `tcp://host:port` (or
`tls://`): a running Dask scheduler, however its workers were started (dask worker, dask-jobqueue,
the Kubernetes operator). Each is a `concurrent.futures.Executor`, so the code that submits work is
written once against `submit` and `wait`. Dask is imported here only, and only when asked for.

Tasks are pure functions of small, picklable arguments (storage URLs, options, batches of names)
that write their output to storage and return small rows: nothing large travels through a scheduler.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from birdgrab.errors import UsageError

SCHEDULER_VARIABLE = "BIRDGRAB_SCHEDULER"
LOCAL_CLUSTER = "local"
CONNECT_TIMEOUT_S = 10
_ADDRESS = re.compile(r"^(tcp|tls)://[^\s/]+:\d+/?$")


def _exit_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: leave when the birdgrab process that started the pool is gone.

    A SIGKILLed parent cannot stop its pool, and a worker waiting for work never sees the queue
    close (it holds both ends itself): without this, every killed run would leave workers behind.
    """

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def check_scheduler(scheduler: str | None) -> str | None:
    """`scheduler` as given (None, "local" or a Dask address), or a `UsageError` (exit 2)."""
    if scheduler is None or not scheduler.strip():
        return None
    scheduler = scheduler.strip()
    if scheduler != LOCAL_CLUSTER and not _ADDRESS.match(scheduler):
        raise UsageError(
            f"--scheduler {scheduler!r}: give a Dask scheduler address like tcp://host:8786, or 'local'"
        )
    return scheduler


class Workers:
    """Runs tasks on the chosen engine; a `concurrent.futures` executor that survives dead workers.

    >>> with Workers("local", jobs=2) as workers:          # doctest: +SKIP
    ...     future = workers.submit(pow, 2, 10)
    ...     future.result()
    1024

    A process pool broken by a killed worker is replaced on the next `submit` (the futures it held
    fail with an error `lost` recognises); Dask restarts its workers itself.
    """

    def __init__(self, scheduler: str | None = None, jobs: int = 1, *, preload: Sequence[str] = ()):
        self.scheduler = check_scheduler(scheduler)
        self.jobs = max(1, jobs)
        self._preload = list(preload)
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._executor: Executor | None = None
        if self.scheduler is not None:
            self._connect()  # now, before anything is written: a scheduler that does not answer is exit 2

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def describe(self) -> str:
        if self.scheduler is None:
            return f"a pool of {self.jobs} processes"
        if self.scheduler == LOCAL_CLUSTER:
            return f"a local Dask cluster of {self.jobs} workers"
        return f"the Dask scheduler at {self.scheduler}"

    @property
    def slots(self) -> int:
        """How many tasks run at once (a cluster's worker threads, as it is now)."""
        if self._client is None:
            return self.jobs
        try:
            threads = self._client.nthreads()
        except Exception:  # asked only to size batches: a guess is enough
            return self.jobs
        return max(1, sum(threads.values()))

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        return self._engine().submit(fn, *args)

    def _engine(self) -> Executor:
        if self._executor is not None:
            return self._executor
        if self._pool is not None and getattr(self._pool, "_broken", False):
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._pool is None:
            # forkserver: forking a process that runs threads (httpx, a sandbox in tests) can deadlock.
            context = multiprocessing.get_context("forkserver")
            if self._preload:
                context.set_forkserver_preload(self._preload)  # workers start with numpy & co.
            self._pool = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=context,
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._pool

    def _connect(self) -> None:
        try:
            import distributed
        except ImportError:
            raise UsageError("--scheduler needs the cluster extra: pip install 'birdgrab[cluster]'") from None
        _quiet_dask()
        try:
            if self.scheduler == LOCAL_CLUSTER:
                self._cluster = distributed.LocalCluster(
                    n_workers=self.jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                )
                self._client = distributed.Client(self._cluster, set_as_default=False)
            else:
                self._client = distributed.Client(
                    self.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False
                )
        except (OSError, TimeoutError) as exc:
            self.close()
            raise UsageError(
                f"the Dask scheduler at {self.scheduler} does not answer ({_first_line(exc)}); "
                "is it running, and is the address right?"
            ) from None
        self._executor = self._client.get_executor()

    def lost(self, exc: BaseException) -> bool:
        """Whether a task failed because the worker running it died (SIGKILL, out of memory)."""
        if isinstance(exc, BrokenProcessPool):
            return True
        return type(exc).__name__ == "KilledWorker"

    def conclusive(self, exc: BaseException) -> bool:
        """Whether a lost task took its worker down every time Dask tried it (its own retries are
        spent), rather than dying beside another task's crash as a process pool's tasks do."""
        return type(exc).__name__ == "KilledWorker"

    def gone(self, exc: BaseException) -> bool:
        """Whether a task failed because the cluster itself went away (scheduler lost, client closed)."""
        if self._client is None:
            return False
        if type(exc).__name__ in ("CancelledError", "FutureCancelledError", "CommClosedError"):
            return True
        return self._client.status not in ("running", "connecting")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for closing in (self._client, self._cluster):
            if closing is not None:
                try:
                    closing.close()
                except Exception as exc:  # a scheduler already gone: nothing left to close
                    logging.getLogger(__name__).debug("closing the Dask client: %s", exc)
        self._client = self._cluster = self._executor = None


def _quiet_dask() -> None:
    """Dask's own warnings (a worker restarted, a lost connection) are for its logs, not the
    terminal: birdgrab reports what they mean (a failed item, a stopped run) in its own lines."""
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("distributed", "tornado")]
    for name in ("distributed", "tornado", *names):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
