"""Run filters on an exchange without any server: for the tests of a filter, built in or not.

The real chain runs (the same runner, body collection and response observation as in the
gateway) between a client that records what it is sent and a terminal that answers a canned
response, as a runner would::

    from runnergw.testing import Answer, filter_from_settings, make_exchange, run_filters

    quota = filter_from_settings("mycompany.filters.Quota", {"perDay": 10})
    run = successResultOf(run_filters([quota], make_exchange("POST", "/api/chat", body=b"{}"),
                                      Answer(200, chunks=[b'{"done": false}\\n'])))
    assert run.status == 200 and run.terminal.called

``filter_from_settings`` reads the options exactly as the settings loader does, so a test sees
the same located errors an operator would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from zope.interface import implementer

from runnergw.audit_log import AuditLog
from runnergw.chain.exchange import Exchange, Identity
from runnergw.chain.interfaces import ITerminal
from runnergw.chain.route import Route, Router, error_body_detail, error_body_ollama
from runnergw.chain.runner import ChainRunner
from runnergw.config.errors import ConfigErrors, Origin
from runnergw.config.filters import FilterSpec
from runnergw.config.reader import ErrorSink
from runnergw.config.settings import Settings
from runnergw.config.yamlfile import MarkedList, MarkedMap
from runnergw.filters.registry import FilterContext, build_filter
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream, StreamPolicy

__all__ = ["Answer", "CannedTerminal", "FilterRun", "RecordingClient", "filter_from_settings",
           "make_exchange", "run_filters"]

_TEST_ORIGIN = Origin("<test>")


def make_exchange(
    method: str = "GET",
    path: str = "/",
    *,
    query: str = "",
    headers: Iterable[tuple[str, str]] = (("Host", "gateway.test"),),
    body: bytes | None = None,
    chunked: bool = False,
    subject: str | None = None,
    role: str | None = None,
    request_id: str = "test-request",
    leaves_after: int | None = None,
) -> Exchange:
    """An exchange whose head just arrived. ``body`` is what the client will send when asked
    (kept in ``notes["test_body"]``); with ``leaves_after``, the client disconnects once it
    sent that many bytes of it. ``subject`` or ``role`` give it an identity as if a token
    filter had run."""
    length = None if chunked else (len(body) if body is not None else 0)
    exchange = Exchange(
        request_id=request_id, method=method, path=path, query=query, version="HTTP/1.1",
        headers=Headers(headers), client_address="192.0.2.10", secure=True, started=0.0,
        content_length=length,
    )
    if subject is not None or role is not None:
        exchange.identity = Identity(subject=subject, role=role, token_kind="v4.public")
    exchange.notes["test_body"] = body or b""
    if leaves_after is not None:
        exchange.notes["test_leaves_after"] = leaves_after
    return exchange


@implementer(IClientStream)
class RecordingClient:
    """The client: sends its body when asked, records the answer.

    ``body_asked`` says whether anything asked for the body; with ``leaves_after``, the
    client sends that many bytes of its body and disconnects. It keeps the server's rules:
    a body asked for after the client left fails, a second head and bytes after the end (or
    after the client left) are dropped.
    """

    def __init__(self, body: bytes = b"", leaves_after: int | None = None) -> None:
        self._body = body
        self._leaves_after = leaves_after
        self.body_asked = False
        self.status: int | None = None
        self.headers = Headers()
        self.length: int | None = None
        self.body = b""
        self.writes: list[bytes] = []
        self.finished = False
        self.aborted: str | None = None
        self.head_sent = False
        self.gone = False
        self.record: Any = None
        self.policy = StreamPolicy()
        self.producer: Any = None
        self._gone_callbacks: list[Callable[[], object]] = []

    def start_body(self, consumer: Any) -> None:
        self.body_asked = True
        if self.gone:
            consumer.body_failed(ConnectionError("client disconnected before its body was read"))
            return
        if self._leaves_after is not None:
            if self._leaves_after:
                consumer.body_data(self._body[:self._leaves_after])
            self.gone = True
            consumer.body_failed(ConnectionError("client disconnected during the body"))
            self.leave()
            return
        if self._body:
            consumer.body_data(self._body)
        consumer.body_done()

    def pause_body(self) -> None:
        pass

    def resume_body(self) -> None:
        pass

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        if self.head_sent or self.gone:
            return
        self.head_sent = True
        self.status, self.headers, self.length = status, headers, length

    def write(self, data: bytes) -> None:
        if self.finished or self.gone:
            return
        self.writes.append(data)
        self.body += data

    def finish(self) -> None:
        if not self.gone:
            self.finished = True

    def abort(self, reason: str) -> None:
        if self.gone:
            return
        self.aborted = reason
        self.leave()

    def register_producer(self, producer: Any) -> None:
        self.producer = producer

    def unregister_producer(self) -> None:
        self.producer = None

    def when_gone(self, callback: Callable[[], object]) -> None:
        if self.gone:
            callback()
        else:
            self._gone_callbacks.append(callback)

    def json(self) -> Any:
        """The body it got, as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first response header ``name`` it got."""
        return self.headers.get(name)

    def leave(self) -> None:
        """The client disconnects."""
        self.gone = True
        callbacks, self._gone_callbacks = self._gone_callbacks, []
        for callback in callbacks:
            callback()


@attrs.frozen
class Answer:
    """What the canned runner answers: a head, then each chunk as one write."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = (("Content-Type", "application/json"),)
    chunks: Sequence[bytes] = (b"{}",)
    length: int | None | str = "auto"
    """``auto``: the chunks' total (``None`` when ``streamed``)."""
    streamed: bool = False
    """Sent without a length, as Ollama streams NDJSON."""

    @classmethod
    def ndjson(cls, *objects: Any, status: int = 200) -> Answer:
        """A streamed NDJSON answer, one object per write."""
        return cls(status, (("Content-Type", "application/x-ndjson"),),
                   [json.dumps(o).encode() + b"\n" for o in objects], streamed=True)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        """A whole JSON answer with its length."""
        return cls(status, (("Content-Type", "application/json; charset=utf-8"),),
                   [json.dumps(value).encode()])


@implementer(ITerminal, IPushProducer)
class CannedTerminal:
    """Stands for the runner: reads the whole body it is sent, then answers ``answer``.

    ``received`` is the body the runner got, ``received_length`` the ``Content-Length`` it
    was sent (None: chunked), ``stopped`` whether the chain told it to stop producing.
    Once its head is sent it is the answer's producer, as a runner's connection is:
    ``paused`` says whether the chain holds it now (a hook is pending, the client is slow).
    It writes every chunk at once all the same, as bytes already on their way would arrive.
    """

    stores_body = False

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.called = False
        self.received: bytes | None = None
        self.received_length: int | None = None
        self.upstream_headers = Headers()
        self.stopped = False
        self.paused = False

    async def handle(self, exchange: Exchange, client: Any) -> None:
        self.called = True
        self.received_length = exchange.content_length
        self.upstream_headers = exchange.upstream_headers
        parts: list[bytes] = []
        finished: Deferred[None] = Deferred()

        class _Consumer:
            def body_data(self, data: bytes) -> None:
                parts.append(data)

            def body_done(self) -> None:
                finished.callback(None)

            def body_failed(self, reason: Exception) -> None:
                finished.errback(reason)

        if exchange.has_body:
            client.start_body(_Consumer())
            try:
                await finished
            except ConnectionError:
                # The client left mid-body: as a runner's terminal does, answer nobody
                # (the server would record the client as gone).
                self.received = b"".join(parts)
                if exchange.outcome == "ok":
                    exchange.outcome = "client_gone"
                    exchange.reason = "client disconnected during the body"
                return
        self.received = b"".join(parts)
        client.when_gone(self._stop)
        answer = self.answer
        length = answer.length
        if length == "auto":
            length = None if answer.streamed else sum(map(len, answer.chunks))
        client.send_head(answer.status, Headers(answer.headers), length)
        client.register_producer(self)
        for chunk in answer.chunks:
            if self.stopped:
                return
            client.write(chunk)
        if not self.stopped:
            client.finish()

    def _stop(self) -> None:
        self.stopped = True

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.stopped = True

    def stop(self) -> Deferred[None]:
        return succeed(None)


@attrs.define
class FilterRun:
    """What happened: the exchange as the filters left it, the client, the runner."""

    exchange: Exchange
    client: RecordingClient
    terminal: CannedTerminal

    @property
    def status(self) -> int | None:
        """The status the client got."""
        return self.client.status

    @property
    def body(self) -> bytes:
        """The body the client got."""
        return self.client.body

    def json(self) -> Any:
        """The body the client got, as JSON."""
        return json.loads(self.client.body)

    def lines(self) -> list[Any]:
        """The NDJSON lines the client got."""
        return [json.loads(line) for line in self.client.body.splitlines() if line.strip()]


def run_filters(filters: Sequence[Any], exchange: Exchange | None = None,
                answer: Answer | None = None, *, error_shape: str = "ollama",
                max_body_size: int = 1 << 30,
                client: RecordingClient | None = None) -> Deferred[FilterRun]:
    """Run ``exchange`` through ``filters`` (in chain order) to a canned runner.

    ``client`` is the client to use, kept by a test that acts on it midway (leaves, stops
    reading); by default one sending the exchange's ``body``. Fires with the ``FilterRun``
    once the exchange is over and every ``done`` hook ran.
    """
    exchange = exchange or make_exchange()
    terminal = CannedTerminal(answer or Answer())
    body = exchange.notes.pop("test_body", b"")
    leaves_after = exchange.notes.pop("test_leaves_after", None)
    if client is None:
        client = RecordingClient(body, leaves_after)
    route = Route("test", (), tuple(filters), terminal, max_body_size=max_body_size,
                  error_body=error_body_detail if error_shape == "detail" else error_body_ollama)
    runner = ChainRunner(Router([route], Route("", (), (), None)))
    return runner.serve(exchange, client).addCallback(
        lambda _: FilterRun(exchange, client, terminal))


def _marked(value: Any) -> Any:
    if isinstance(value, Mapping):
        marked = MarkedMap((key, _marked(item)) for key, item in value.items())
        marked.origin = _TEST_ORIGIN
        marked.key_origins = {key: _TEST_ORIGIN for key in value}
        return marked
    if isinstance(value, (list, tuple)):
        items = MarkedList(_marked(item) for item in value)
        items.origin = _TEST_ORIGIN
        items.item_origins = [_TEST_ORIGIN] * len(value)
        return items
    return value


def filter_from_settings(name: str, options: Mapping[str, Any] | None = None,
                         **context: Any) -> Any:
    """Build filter ``name`` (built in, or a dotted path) from ``options`` as the settings
    loader would, with a context of test parts (``clock``, ``audit_log``, ``route``… may be
    given).

    Raises:
        ConfigErrors: what an operator would be told, located at ``filters[0]``.
    """
    defaults: dict[str, Any] = {"settings": Settings(files=("<test>",)), "clock": Clock(),
                                "audit_log": AuditLog("")}
    defaults.update(context)
    spec = FilterSpec(name, _marked(options) if options is not None else None, "filters[0]",
                      _TEST_ORIGIN)
    sink = ErrorSink()
    try:
        built = build_filter(spec, FilterContext(**defaults), sink)
    except ValueError as e:
        sink.add(spec.origin, spec.path, str(e))
    if sink.errors:
        raise ConfigErrors(sink.errors)
    return built
