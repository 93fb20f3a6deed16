"""The workers of ``formnet serve``: processes that each load the models once, behind a
bounded queue.

A request takes a slot (:meth:`WorkerPool.slot`) before its upload is read; when every slot
is taken (``workers`` restoring, ``queue`` waiting) it is refused at once with
:class:`ServerBusyError` (HTTP 503) rather than queued without bound. Each worker is a spawned
process (:func:`formnet_cli.server.work.start_worker`): a model's in-place preparation and
torch's threads are its own, and a worker that dies (out of memory) takes down only the
requests it held; the pool is then started again. Workers report tile progress on a queue
that a thread of the server's process reads into :attr:`WorkerPool.progress`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from formnet_cli.errors import FormnetError, InvalidOptionError
from formnet_cli.server import work


class ServerBusyError(FormnetError):
    """Every worker is restoring and the queue is full: try again shortly (HTTP 503)."""


class WorkerLostError(FormnetError):
    """A worker process died while restoring (killed, out of memory); it was replaced."""


@dataclass
class JobProgress:
    """Where one request is: waiting for a worker, or restoring (``done`` of ``total`` tiles;
    ``total`` 0 until the first tile is counted)."""

    state: Literal["queued", "running"] = "queued"
    done: int = 0
    total: int = 0


class WorkerPool:
    """``workers`` processes and up to ``queue`` requests waiting for one."""

    def __init__(self, *, workers: int = 1, queue: int = 8, device: str = "auto",
                 max_megapixels: float | None = None) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"workers must be >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers = workers
        self.capacity = workers + queue
        self.progress: dict[str, JobProgress] = {}
        self._lock = threading.Lock()
        self._admitted = 0
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded server
        self._updates = self._context.Queue()
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        self._initargs = (self._updates, device, threads, max_megapixels)
        self._executor = self._new_executor()
        self._reader = threading.Thread(target=self._read_updates, name="formnet-progress",
                                        daemon=True)
        self._reader.start()

    @property
    def in_progress(self) -> int:
        """Requests holding a slot: uploading, waiting or restoring."""
        return self._admitted

    async def start(self) -> None:
        """Start every worker (each loads the default models once) and wait until they answer."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._executor, work.ping)
                               for _ in range(self.workers)))

    @contextmanager
    def slot(self, token: str | None = None) -> Iterator[None]:
        """Hold one of the pool's places for a request, progress under ``token`` if given;
        raises :class:`ServerBusyError` when none is free."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise ServerBusyError(f"busy: the server holds as many images as it takes "
                                      f"({self.capacity}); try again shortly")
            if token is not None and token in self.progress:
                raise InvalidOptionError(f"progress token {token!r} is in use by another request")
            self._admitted += 1
            if token is not None:
                self.progress[token] = JobProgress()
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1
                if token is not None:
                    self.progress.pop(token, None)

    async def run(self, job: work.RestoreJob) -> work.RestoredFile:
        """Restore ``job`` in a worker (call it holding a :meth:`slot`)."""
        executor = self._executor
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, work.restore_file, job)
        except BrokenProcessPool:
            self._replace(executor)
            raise WorkerLostError("a worker process stopped while restoring (out of memory?); "
                                  "it was restarted: try again, or send a smaller image") from None

    def close(self) -> None:
        """Stop the workers at once (a restore under way is dropped: a worker holds nothing to
        clean up, its upload being in memory), then the progress reader."""
        processes = list(self._executor._processes.values())  # no public way before Python 3.14
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join()
        self._updates.put(None)
        self._reader.join()
        self._updates.close()

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._context,
                                   initializer=work.start_worker, initargs=self._initargs)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:  # not already replaced by another request
                self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    def _read_updates(self) -> None:
        """Copy the workers' ``(token, done, total)`` reports into :attr:`progress`."""
        while (update := self._updates.get()) is not None:
            token, done, total = update
            with self._lock:
                entry = self.progress.get(token)
                if entry is not None:
                    entry.state, entry.done, entry.total = "running", done, total
