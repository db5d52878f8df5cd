"""The usage ledger: prompt and generated tokens per day, subject, role and model, summed in
memory as requests end and written to SQLite in batches, by a thread of its own.

The reactor thread never touches SQLite: the connection is made, used and closed in the
ledger's single worker thread. Recording is a dictionary update; a flush hands the whole
aggregate to the thread and writes it in one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from runnergw.logs import level_gate
from runnergw.usage.entry import UsageEntry, UsageKey, UsageSums, is_day
from runnergw.usage.schema import LedgerError
from runnergw.usage.store import close_ledger_file, open_ledger_file, read_day_totals, write_batch

__all__ = ["LedgerError", "UsageEntry", "UsageLedger"]

_T = TypeVar("_T")


class _Reactor(Protocol):
    """What the ledger needs of the reactor: timers, and results handed back from its thread
    (``IReactorTime`` and ``IReactorFromThreads``)."""

    def callLater(self, delay: float, f: Callable[..., Any], *args: Any,
                  **kwargs: Any) -> IDelayedCall: ...

    def callFromThread(self, f: Callable[..., Any], *args: Any,
                       **kwargs: Any) -> None: ...


class UsageLedger:
    """Sums usage in memory and writes it to the SQLite file ``path`` in batches.

    ``record`` only updates the in-memory aggregate; a flush follows ``flush_interval``
    seconds later (one timer at a time), or at once when the aggregate holds ``max_pending``
    keys. A failed write (disk full, file locked) is logged, put back and tried again at the
    next interval. While writes fail, memory stays bounded: once ``2 * max_pending`` keys wait,
    usage under a new key is dropped and counted in an error event.

    ``reactor`` provides ``callLater`` and ``callFromThread``. The gateway must ``close()`` the
    ledger when it stops: that writes what is pending and ends the ledger's thread.
    ``connection_factory`` is the ``sqlite3.Connection`` class (tests watch the statements).
    """

    log = Logger(observer=level_gate)

    def __init__(self, path: str, reactor: _Reactor, *, flush_interval: float = 1.0,
                 max_pending: int = 10000,
                 connection_factory: type[sqlite3.Connection] = sqlite3.Connection) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._reactor = reactor
        self._factory = connection_factory
        self._pool = ThreadPool(1, 1, name="usage-ledger")
        self._connection: sqlite3.Connection | None = None
        """Touched only in the pool's thread (the ``_in_thread_*`` methods)."""
        self._state = "new"
        """new, opening, open, closing, closed."""
        self._pending: dict[UsageKey, UsageSums] = {}
        self._writing: dict[UsageKey, UsageSums] | None = None
        """The batch being written (one at a time)."""
        self._written: list[Deferred[bool]] = []
        self._timer: IDelayedCall | None = None
        self._failing = False
        self._dropped = 0
        self._opening: Deferred[None] | None = None
        self._closers: list[Deferred[None]] = []
        self._close_done = False

    def open(self) -> Deferred[None]:
        """Start the thread and open the file (created if missing, its directory must exist).

        Fails with ``LedgerError`` for a file that cannot be opened, is not a ledger, or was
        written by a newer runnergw; the thread is then stopped.
        """
        if self._state != "new":
            return fail(LedgerError(self.path, "the ledger was opened or closed already"))
        self._state = "opening"
        self._opening = Deferred()
        self._pool.start()
        opening = self._in_thread(self._in_thread_open)
        opening.addCallbacks(self._opened, self._not_opened)
        opening.addBoth(self._settle_opening)
        return opening

    def record(self, entry: UsageEntry) -> None:
        """Add ``entry`` to the aggregate; it is written by the next flush.

        Usage recorded before ``open()`` completes waits for it. After ``close()`` completed
        nothing can be written: the entry is dropped and an error event logged (a request
        ending late must not fail because of the ledger).
        """
        self._add((entry.day, entry.subject, entry.role, entry.model), entry.requests,
                  entry.prompt_tokens, entry.completion_tokens, entry.truncated)

    def record_request(self, day: str, subject: str, role: str, model: str,
                       prompt_tokens: int, completion_tokens: int, truncated: int = 0) -> None:
        """``record`` of one request's usage, without making a ``UsageEntry`` (the usage
        filter, once per request); the same checks.

        Raises:
            ValueError: ``day`` is not an ISO date, or a count is not a whole number of at
                least 0.
        """
        if (type(prompt_tokens) is not int or type(completion_tokens) is not int
                or type(truncated) is not int or prompt_tokens < 0 or completion_tokens < 0
                or truncated < 0 or not is_day(day)):
            UsageEntry(day, subject, role, model, prompt_tokens, completion_tokens,
                       truncated=truncated)  # raises, saying what is wrong
        self._add((day, subject, role, model), 1, prompt_tokens, completion_tokens,
                  truncated)

    def _add(self, key: UsageKey, requests: int, prompt_tokens: int, completion_tokens: int,
             truncated: int) -> None:
        if self._state == "closed":
            self.log.error("Usage ended after the ledger {path} closed is not recorded",
                           path=self.path)
            return
        sums = self._pending.get(key)
        if sums is None:
            if len(self._pending) + len(self._writing or ()) >= 2 * self.max_pending:
                self._drop()
                return
            sums = self._pending[key] = UsageSums()
        sums.requests += requests
        sums.prompt_tokens += prompt_tokens
        sums.completion_tokens += completion_tokens
        sums.truncated += truncated
        if self._state == "open":
            self._flush_soon()

    def totals_for_day(self, day: str) -> Deferred[dict[str, int]]:
        """Prompt plus generated tokens per subject on ``day``: what the file holds and what
        is still in memory."""
        if self._state not in ("open", "closing"):
            return fail(LedgerError(self.path, "the ledger is not open"))
        totals = self._in_thread(self._in_thread_totals, day)
        totals.addCallback(self._with_unwritten, day)
        return totals

    def flush(self) -> Deferred[None]:
        """Write everything recorded so far; fails with ``LedgerError`` if the write fails
        (the usage stays in memory for the next try)."""
        return Deferred.fromCoroutine(self._flush())

    def close(self) -> Deferred[None]:
        """Write what is pending, close the file and stop the thread; safe to call again.

        Fails with ``LedgerError`` when the last write fails: what it held is lost (and
        logged). The file and the thread are closed all the same, and closing again does
        nothing.
        """
        if self._close_done:
            return succeed(None)
        first = not self._closers
        waiter: Deferred[None] = Deferred()
        self._closers.append(waiter)
        if first:
            Deferred.fromCoroutine(self._close()).addBoth(self._settle_close)
        return waiter

    # The reactor side

    def _in_thread(self, f: Callable[..., _T], *args: Any) -> Deferred[_T]:
        return deferToThreadPool(self._reactor, self._pool, f, *args)

    def _opened(self, result: None) -> None:
        self._state = "open"
        if self._pending:
            self._flush_soon()

    def _not_opened(self, failure: Failure) -> Failure:
        self._state = "closed"
        self._pool.stop()
        return failure

    def _settle_opening(self, result: None | Failure) -> None | Failure:
        opening, self._opening = self._opening, None
        assert opening is not None
        opening.callback(None)
        return result

    def _flush_soon(self) -> None:
        """Start a write now if the aggregate is full, else make sure one is timed."""
        if self._writing is not None:
            return  # what the write leaves pending is seen to when it ends
        if len(self._pending) >= self.max_pending and not self._failing:
            self._start_write()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self.flush_interval, self._time_to_flush)

    def _time_to_flush(self) -> None:
        self._timer = None
        if self._state == "open" and self._writing is None and self._pending:
            self._start_write()

    def _start_write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, {}
        self._writing = batch
        self._in_thread(self._in_thread_write, batch).addBoth(self._ended_write, batch)

    def _ended_write(self, result: None | Failure, batch: dict[UsageKey, UsageSums]) -> None:
        self._writing = None
        succeeded = not isinstance(result, Failure)
        if succeeded:
            self._failing = False
            if self._dropped:
                self.log.error("{dropped} usage records were not kept while the ledger {path} "
                               "could not be written", dropped=self._dropped, path=self.path)
                self._dropped = 0
        else:
            for key, sums in batch.items():
                self._pending.setdefault(key, UsageSums()).add(sums)
            self._failing = True
            self.log.failure("Cannot write {rows} usage rows to the ledger {path}; kept in "
                             "memory for the next try", result, rows=len(batch), path=self.path)
        waiters, self._written = self._written, []
        for waiter in waiters:
            waiter.callback(succeeded)
        if self._state == "open" and self._pending:
            self._flush_soon()

    def _when_written(self) -> Deferred[bool]:
        """Fires when the write under way (if any) ends: True if it succeeded."""
        if self._writing is None:
            return succeed(True)
        waiter: Deferred[bool] = Deferred()
        self._written.append(waiter)
        return waiter

    def _drop(self) -> None:
        self._dropped += 1
        if self._dropped == 1:
            self.log.error("The ledger {path} holds {keys} unwritten keys: usage under new "
                           "keys is not kept until a write succeeds", path=self.path,
                           keys=len(self._pending) + len(self._writing or ()))

    def _with_unwritten(self, totals: dict[str, int], day: str) -> dict[str, int]:
        # Results come back in the order the thread ran them: any write still under way was
        # handed to the thread after this read (a write before it has ended, and if it
        # failed its batch is back in the aggregate), so neither it nor the aggregate is in
        # ``totals``.
        for batch in (self._writing or {}, self._pending):
            for (entry_day, subject, _, _), sums in batch.items():
                if entry_day == day:
                    used = sums.prompt_tokens + sums.completion_tokens
                    totals[subject] = totals.get(subject, 0) + used
        return totals

    async def _flush(self) -> None:
        if self._state not in ("open", "closing"):
            raise LedgerError(self.path, "the ledger is not open")
        await self._when_written()
        if self._writing is None and self._pending:
            self._start_write()
        if not await self._when_written():
            raise LedgerError(self.path, "cannot write the usage (the error is logged)")

    async def _close(self) -> None:
        if self._opening is not None:
            await self._opening
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closing"
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            while self._writing is not None or self._pending:
                if self._writing is None:
                    self._start_write()
                if not await self._when_written():
                    lost = len(self._pending)
                    self._pending.clear()
                    raise LedgerError(self.path, f"{lost} usage rows could not be written "
                                                 "and are lost (the error is logged)")
        finally:
            self._state = "closed"
            try:
                await self._in_thread(self._in_thread_close)
            finally:
                self._pool.stop()

    def _settle_close(self, result: None | Failure) -> None:
        self._close_done = True
        waiters, self._closers = self._closers, []
        for waiter in waiters:
            if result is None:
                waiter.callback(None)
            else:
                waiter.errback(result)

    # The ledger's thread: the only place the connection is used

    def _in_thread_open(self) -> None:
        self._connection = open_ledger_file(self.path, self._factory)

    def _in_thread_write(self, batch: dict[UsageKey, UsageSums]) -> None:
        connection = self._connection
        assert connection is not None
        write_batch(connection, batch)

    def _in_thread_totals(self, day: str) -> dict[str, int]:
        connection = self._connection
        assert connection is not None
        return read_day_totals(connection, day)

    def _in_thread_close(self) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        close_ledger_file(connection)
