"""The supervisor's metrics listener: ``/metrics`` gathers every worker's metrics (each
sample labelled with its ``worker``), ``/readyz`` is ready when every worker is, ``/healthz``
answers for the supervisor. Each worker serves its own pages on a unix socket in the
supervisor's private directory; they are read at each request."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from runnergw.logs import level_gate
from runnergw.metrics.pages import HealthPage

__all__ = ["MAX_PAGE", "PAGE_TIMEOUT", "WorkerPages", "merged_families", "supervisor_families",
           "workers_root"]

PAGE_TIMEOUT = 5.0
"""Seconds a worker has to answer the supervisor's request for one of its pages."""

_TEXT = b"text/plain; charset=utf-8"

Answer = tuple[int, bytes] | None
"""A worker page's status and body; None when the worker did not answer."""


MAX_PAGE = 16 * 1024 * 1024
"""Largest worker page read; a longer one counts as no answer."""


class _PageReader(Protocol):
    """Asks for one page over HTTP/1.0 and reads the answer until the worker closes."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.answer: Deferred[Answer] = Deferred()
        self._received: list[bytes] = []
        self._size = 0

    def connectionMade(self) -> None:
        self.transport.write(b"GET " + self.page + b" HTTP/1.0\r\nHost: worker\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_PAGE:
            self._received = []
            self.transport.abortConnection()
            return
        self._received.append(data)

    def give_up(self) -> None:
        """No answer (the worker cannot be reached, or is too slow)."""
        if self.answer.called:
            return
        self._received = []
        if self.transport is not None:
            self.transport.abortConnection()
        elif not self.answer.called:
            self.answer.callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        if self.answer.called:
            return
        head, _, body = b"".join(self._received).partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1:2]
        if not status or not status[0].isdigit():
            self.answer.callback(None)
        else:
            self.answer.callback((int(status[0]), body))


class WorkerPages:
    """Reads one page of every worker's metrics listener (its unix socket)."""

    def __init__(self, reactor: Any, paths: Callable[[], Iterable[str]]) -> None:
        """``paths()``: each worker's socket, in worker order."""
        self.reactor = reactor
        self.paths = paths

    def get(self, page: bytes) -> Deferred[list[Answer]]:
        """Each worker's answer to ``page`` (``b"/metrics"``), in worker order."""
        return gatherResults([self._get(path, page) for path in self.paths()])

    def _get(self, path: str, page: bytes) -> Deferred[Answer]:
        reader = _PageReader(page)
        factory = Factory.forProtocol(lambda: reader)
        factory.noisy = False
        connected = UNIXClientEndpoint(self.reactor, path, timeout=PAGE_TIMEOUT).connect(factory)
        connected.addErrback(lambda _: reader.give_up())
        timer = self.reactor.callLater(PAGE_TIMEOUT, reader.give_up)
        return reader.answer.addBoth(lambda result: (timer.active() and timer.cancel(),
                                                     result)[1])


def merged_families(expositions: Mapping[int, str]) -> list[Metric]:
    """The metric families of every worker's exposition (Prometheus text), each sample
    with a ``worker`` label."""
    families: dict[str, Metric] = {}
    for index, text in sorted(expositions.items()):
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            continue  # not an exposition: that worker is left out
        for family in parsed:
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
            merged.samples.extend(
                Sample(s.name, {**s.labels, "worker": str(index)}, s.value, s.timestamp,
                       s.exemplar) for s in family.samples)
    return list(families.values())


def supervisor_families(workers: Iterable[tuple[int, bool, int, Mapping[str, int]]]
                        ) -> list[Metric]:
    """The supervisor's own metrics from each worker's ``(index, serving, restarts,
    reloads)``, ``reloads`` counting the reloads it answered by outcome (ok, refused)."""
    up = GaugeMetricFamily("runnergw_worker_up", "1 while the worker process serves",
                           labels=["worker"])
    restarts = CounterMetricFamily("runnergw_worker_restarts",
                                   "Worker processes started again after they died",
                                   labels=["worker"])
    reloads = CounterMetricFamily("runnergw_worker_reloads",
                                  "Reloads each worker answered, by result (ok, refused)",
                                  labels=["worker", "result"])
    for index, serving, count, answered in workers:
        up.add_metric([str(index)], 1 if serving else 0)
        restarts.add_metric([str(index)], count)
        for result, times in sorted(answered.items()):
            reloads.add_metric([str(index), result], times)
    return [up, restarts, reloads]


class _Families:
    """What an encoder reads as a registry."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _Deferring(Resource):
    """A page answered once the workers' pages are read (nothing written to a client that
    has gone)."""

    isLeaf = True
    log = Logger(observer=level_gate)

    def __init__(self, pages: WorkerPages, page: bytes,
                 answer: Callable[[Request, list[Answer]], bytes]) -> None:
        super().__init__()
        self.pages = pages
        self.page = page
        self.answer = answer

    def render_GET(self, request: Request) -> Any:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(answers: list[Answer]) -> None:
            if gone:
                return
            request.setHeader(b"cache-control", b"no-store")
            body = self.answer(request, answers)
            request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            self.log.failure("Cannot answer {page}", failure, event="workers_page_failed",
                             page=self.page.decode())
            if not gone:
                request.setResponseCode(500)
                request.finish()

        self.pages.get(self.page).addCallback(answer).addErrback(failed)
        return NOT_DONE_YET


class MergedMetricsPage(_Deferring):
    """Every worker's metrics and the supervisor's own, encoded as the scraper asks."""

    def __init__(self, pages: WorkerPages, own: Callable[[], list[Metric]]) -> None:
        super().__init__(pages, b"/metrics", self._answer)
        self.own = own

    def _answer(self, request: Request, answers: list[Answer]) -> bytes:
        texts = {index: answer[1].decode("utf-8") for index, answer in enumerate(answers)
                 if answer is not None and answer[0] == 200}
        families = [*self.own(), *merged_families(texts)]
        encode, content_type = choose_encoder(request.getHeader("accept") or "")
        request.setHeader(b"content-type", content_type.encode())
        return encode(_Families(families))  # type: ignore[arg-type]


class WorkersReadyPage(_Deferring):
    """200 ``ready`` when the supervisor names no reason and every worker answers ready;
    else 503 and the reasons, a line each (a worker's prefixed with ``worker N:``)."""

    def __init__(self, pages: WorkerPages, reasons: Callable[[], list[str]]) -> None:
        super().__init__(pages, b"/readyz", self._answer)
        self.reasons = reasons

    def _answer(self, request: Request, answers: list[Answer]) -> bytes:
        request.setHeader(b"content-type", _TEXT)
        reasons = self.reasons()
        for index, answer in enumerate(answers):
            if any(reason.startswith(f"worker {index}:") for reason in reasons):
                continue  # the supervisor knows it is down: its page says no more
            if answer is None:
                reasons.append(f"worker {index}: not answering")
            elif answer[0] != 200:
                lines = answer[1].decode("utf-8", "replace").splitlines()[1:]
                reasons.extend(f"worker {index}: {line}" for line in lines)
        if not reasons:
            return b"ready\n"
        request.setResponseCode(503)
        return ("not ready\n" + "".join(f"{reason}\n" for reason in dict.fromkeys(reasons))
                ).encode()


class _Root(Resource):
    """Answers nothing itself (404): only its children are pages."""

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)


def workers_root(pages: WorkerPages, own: Callable[[], list[Metric]],
                 reasons: Callable[[], list[str]]) -> Resource:
    """The supervisor's metrics listener's resource tree."""
    root = _Root()
    root.putChild(b"metrics", MergedMetricsPage(pages, own))
    root.putChild(b"healthz", HealthPage())
    root.putChild(b"readyz", WorkersReadyPage(pages, reasons))
    return root
