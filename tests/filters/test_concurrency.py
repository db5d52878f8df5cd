"""The ``concurrency`` filter: requests a subject may have under way at once, by role."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Identity, Reject
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.config.errors import ConfigErrors
from runnergw.config.roles import RoleSettings
from runnergw.config.settings import Settings
from runnergw.filters.concurrency import ConcurrencyFilter
from runnergw.filters.role import RoleFilter
from runnergw.http.headers import Headers
from runnergw.limits.days import QuotaDays
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from runnergw.testing import (
    Answer,
    CannedTerminal,
    RecordingClient,
    filter_from_settings,
    make_exchange,
)

__all__ = ["ConcurrencyBuildTests", "ConcurrencyEndingTests", "ConcurrencyLimitTests",
           "ConcurrencyWaitTests"]

_ROLES = {
    "user": RoleSettings("user", concurrency=1),
    "patient": RoleSettings("patient", concurrency=1, concurrency_wait=2.0),
    "pair": RoleSettings("pair", concurrency=2),
    "admin": RoleSettings("admin", requests_per_minute=600),
}

_STREAM = Answer.ndjson({"response": "Hel", "done": False}, {"response": "lo", "done": False},
                        {"response": "", "done": True})


class _HeldTerminal(CannedTerminal):
    """A runner streaming an answer: the head and first line at once, the rest when the test
    calls ``end`` (or ``fail``, as a runner that resets the connection). A client that leaves
    stops it, as the runner's request is closed."""

    def __init__(self, answer: Answer = _STREAM) -> None:
        super().__init__(answer)
        self.held: Deferred[Exception | None] = Deferred()

    async def handle(self, exchange: Exchange, client: Any) -> None:
        self.called = True
        client.when_gone(self._client_left)
        client.send_head(self.answer.status, Headers(self.answer.headers), None)
        client.register_producer(self)
        first, *rest = self.answer.chunks
        client.write(first)
        failure = await self.held
        if self.stopped:
            return
        if failure is not None:
            exchange.outcome = "upstream_error"
            raise failure
        for chunk in rest:
            client.write(chunk)
        client.finish()

    def _client_left(self) -> None:
        self.stopped = True
        if not self.held.called:
            self.held.callback(None)

    def end(self) -> None:
        """The runner sends the rest of its answer."""
        self.held.callback(None)

    def fail(self) -> None:
        """The runner resets the connection mid-stream."""
        self.held.callback(Reject(502, "runner reset the connection", reason="upstream reset"))


class _Refuser:
    """A filter placed after ``concurrency`` that refuses every request."""

    name = "refuser"

    def request_headers(self, exchange: Exchange) -> None:
        raise Reject(403, "refused later in the chain")


class _Request:
    """One request under way: its exchange, client, runner, and whether it is over."""

    def __init__(self, exchange: Exchange, client: RecordingClient, terminal: CannedTerminal,
                 over: Deferred[None]) -> None:
        self.exchange = exchange
        self.client = client
        self.terminal = terminal
        self.over = over

    @property
    def status(self) -> int | None:
        return self.client.status


class _Concurrency(SynchronousTestCase):
    """A role filter then the concurrency filter, on one limit state and a test clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)
        self.concurrency = ConcurrencyFilter(self.state)
        self.requests: list[_Request] = []
        """Every request of the test, kept: an exchange under way that nothing refers to
        would be collected, its coroutine closed and its place given back."""

    def start(self, role: str = "user", subject: str = "alice", *,
              method: str = "POST", path: str = "/api/generate",
              terminal: CannedTerminal | None = None,
              after: Sequence[Any] = ()) -> _Request:
        """Send a request; it may still be under way when this returns."""
        exchange = make_exchange(method, path)
        exchange.notes.pop("test_body", None)
        exchange.identity = Identity(subject=subject, role=role, claims={"role": role},
                                     token_kind="v4.public")
        terminal = terminal if terminal is not None else _HeldTerminal()
        filters = (RoleFilter(None, _ROLES, "user"), self.concurrency, *after)
        route = Route("test", (), filters, terminal)
        client = RecordingClient()
        over = ChainRunner(Router([route], Route("", (), (), None))).serve(exchange, client)
        request = _Request(exchange, client, terminal, over)
        self.requests.append(request)
        return request

    def quick(self, role: str = "user", subject: str = "alice", **options: Any) -> _Request:
        """Send a request whose runner answers at once; it is over when this returns."""
        options.setdefault("terminal", CannedTerminal(Answer()))
        request = self.start(role, subject, **options)
        self.successResultOf(request.over)
        return request

    def streaming(self, role: str = "user", subject: str = "alice") -> _Request:
        """A generation under way: its head and first line sent, the rest held."""
        request = self.start(role, subject)
        self.assertEqual(request.status, 200)
        self.assertNoResult(request.over)
        return request

    def end(self, request: _Request) -> None:
        assert isinstance(request.terminal, _HeldTerminal)
        request.terminal.end()
        self.successResultOf(request.over)


class ConcurrencyLimitTests(_Concurrency):
    """Requests over the role's ``concurrency``, and the ones that are never counted."""

    def test_second_request_refused_at_once(self) -> None:
        """With ``concurrency: 1``, a generation while another streams gets 429 at once; its
        runner is not called."""
        self.streaming()
        second = self.quick()
        self.assertEqual(second.status, 429)
        self.assertEqual(second.client.json(), {
            "error": '1 request of this caller is already under way (the limit of role '
                     '"user")'})
        self.assertFalse(second.terminal.called)

    def test_retry_after_one(self) -> None:
        """The refusal says ``Retry-After: 1``."""
        self.streaming()
        self.assertEqual(self.quick().client.header("Retry-After"), "1")

    def test_plural_limit(self) -> None:
        """The refusal names the limit of the role."""
        self.streaming("pair")
        self.streaming("pair")
        self.assertEqual(self.quick("pair").client.json(), {
            "error": '2 requests of this caller are already under way (the limit of role '
                     '"pair")'})

    def test_audit_outcome(self) -> None:
        """The audit records the refusal as ``refused``, ``concurrency limit``."""
        self.streaming()
        second = self.quick()
        self.assertEqual((second.exchange.outcome, second.exchange.reason),
                         ("refused", "concurrency limit"))

    def test_stream_holds_its_place_to_the_end(self) -> None:
        """The place is held until the stream's last line, then free."""
        first = self.streaming()
        self.end(first)
        self.assertEqual(first.client.body.count(b"\n"), 3)
        self.assertEqual(self.quick().status, 200)

    def test_within_the_limit(self) -> None:
        """``concurrency: 2`` lets two generations stream at once, not three."""
        self.streaming("pair")
        self.streaming("pair")
        self.assertEqual(self.quick("pair").status, 429)

    def test_catalogue_never_counted(self) -> None:
        """Listing models while a generation streams is answered."""
        self.streaming()
        tags = self.quick(method="GET", path="/api/tags")
        self.assertEqual(tags.status, 200)
        self.assertTrue(tags.terminal.called)

    def test_version_never_counted(self) -> None:
        """Asking for the version while a generation streams is answered."""
        self.streaming()
        self.assertEqual(self.quick(method="GET", path="/api/version").status, 200)

    def test_catalogue_holds_no_place(self) -> None:
        """A slow catalogue answer does not hold back a generation."""
        tags = self.start(method="GET", path="/api/tags")
        self.assertNoResult(tags.over)
        self.assertEqual(self.quick().status, 200)

    def test_subjects_apart(self) -> None:
        """One subject's stream does not hold back another subject."""
        self.streaming(subject="alice")
        self.assertEqual(self.quick(subject="bob").status, 200)
        self.assertEqual(self.quick(subject="alice").status, 429)

    def test_role_without_concurrency(self) -> None:
        """A role without ``concurrency`` may have any number of requests under way."""
        for _ in range(5):
            self.streaming("admin")
        self.assertEqual(self.quick("admin").status, 200)


class ConcurrencyWaitTests(_Concurrency):
    """``concurrencyWait``: a request over the limit waits for a place before its 429."""

    def test_waits_then_proceeds(self) -> None:
        """The waiting request reaches the runner as soon as the stream before it ends."""
        first = self.streaming("patient")
        second = self.start("patient", terminal=CannedTerminal(Answer()))
        self.clock.advance(1.5)
        self.assertNoResult(second.over)
        self.assertFalse(second.terminal.called)
        self.end(first)
        self.successResultOf(second.over)
        self.assertEqual(second.status, 200)
        self.assertTrue(second.terminal.called)

    def test_refused_after_the_wait(self) -> None:
        """After ``concurrencyWait`` without a place, the request gets 429 ``Retry-After:
        1``, its runner not called."""
        self.streaming("patient")
        second = self.start("patient", terminal=CannedTerminal(Answer()))
        self.clock.advance(1.9)
        self.assertNoResult(second.over)
        self.clock.advance(0.1)
        self.successResultOf(second.over)
        self.assertEqual((second.status, second.client.header("Retry-After")), (429, "1"))
        self.assertFalse(second.terminal.called)

    def test_place_free_after_a_timed_out_wait(self) -> None:
        """A request that waited in vain takes nothing: once the stream ends, the next one
        passes at once."""
        first = self.streaming("patient")
        second = self.start("patient", terminal=CannedTerminal(Answer()))
        self.clock.advance(2)
        self.successResultOf(second.over)
        self.end(first)
        self.assertEqual(self.quick("patient").status, 200)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_arrival_order(self) -> None:
        """Waiting requests get the places in the order they came."""
        first = self.streaming("patient")
        second = self.start("patient")
        third = self.start("patient")
        self.end(first)
        self.assertEqual(second.status, 200)
        self.assertIsNone(third.status)
        self.end(second)
        self.assertEqual(third.status, 200)
        self.end(third)

    def test_client_left_while_waiting(self) -> None:
        """A request whose client left while it waited does not keep the place from the
        requests behind it."""
        first = self.streaming("patient")
        gone = self.start("patient", terminal=CannedTerminal(Answer()))
        gone.client.leave()
        behind = self.start("patient", terminal=CannedTerminal(Answer()))
        self.end(first)
        self.successResultOf(gone.over)
        self.successResultOf(behind.over)
        self.assertEqual(behind.status, 200)
        self.assertEqual(self.quick("patient").status, 200)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_many_clients_left_while_waiting(self) -> None:
        """However many waiting requests lost their client, the place passes through them
        to the live request behind, and is free once it is done."""
        first = self.streaming("patient")
        gone = [self.start("patient", terminal=CannedTerminal(Answer())) for _ in range(200)]
        for request in gone:
            request.client.leave()
        behind = self.start("patient", terminal=CannedTerminal(Answer()))
        self.end(first)
        for request in gone:
            self.successResultOf(request.over)
        self.successResultOf(behind.over)
        self.assertEqual(behind.status, 200)
        self.assertEqual(self.quick("patient").status, 200)

    def test_many_refused_after_their_wait(self) -> None:
        """Waiting requests a later filter refuses as soon as they get the place do not
        keep it: the subject is not locked out."""
        first = self.streaming("patient")
        refused = [self.start("patient", terminal=CannedTerminal(Answer()),
                              after=(_Refuser(),)) for _ in range(200)]
        self.end(first)
        self.assertEqual({request.status for request in refused}, {403})
        self.assertEqual(self.quick("patient").status, 200)


class ConcurrencyEndingTests(_Concurrency):
    """The place is given back however the exchange ends."""

    def test_refused_later_in_the_chain(self) -> None:
        """A request a later filter refuses gives its place back."""
        refused = self.quick(after=(_Refuser(),))
        self.assertEqual(refused.status, 403)
        self.assertEqual(self.quick().status, 200)

    def test_upstream_error_mid_stream(self) -> None:
        """A stream the runner breaks off gives its place back."""
        first = self.streaming()
        assert isinstance(first.terminal, _HeldTerminal)
        first.terminal.fail()
        self.successResultOf(first.over)
        self.assertEqual(first.exchange.outcome, "upstream_error")
        self.assertIsNotNone(first.client.aborted)
        self.assertEqual(self.quick().status, 200)

    def test_runner_refused(self) -> None:
        """A request the runner answers with an error gives its place back."""
        failed = self.quick(terminal=CannedTerminal(Answer.json({"error": "oom"}, 500)))
        self.assertEqual(failed.status, 500)
        self.assertEqual(self.quick().status, 200)

    def test_client_gone_mid_stream(self) -> None:
        """A client that leaves mid-stream gives its place back."""
        first = self.streaming()
        first.client.leave()
        self.successResultOf(first.over)
        self.assertTrue(first.terminal.stopped)
        self.assertEqual(self.quick().status, 200)

    def test_client_gone_hands_the_place_to_a_waiter(self) -> None:
        """A client leaving mid-stream lets a waiting request proceed at once."""
        first = self.streaming("patient")
        second = self.start("patient", terminal=CannedTerminal(Answer()))
        first.client.leave()
        self.successResultOf(second.over)
        self.assertEqual(second.status, 200)


class ConcurrencyBuildTests(SynchronousTestCase):
    """Building the filter from the settings."""

    def test_needs_a_roles_section(self) -> None:
        """Without a ``roles`` section the operator is told the filter needs one."""
        with self.assertRaises(ConfigErrors) as raised:
            filter_from_settings("concurrency")
        self.assertEqual([(e.path, e.message) for e in raised.exception.errors],
                         [("filters[0]", "the concurrency filter needs a roles section")])

    def test_uses_the_gateway_state(self) -> None:
        """With the roles' limit parts, the filter counts in the gateway's state."""
        clock = Clock()
        state = LocalLimitState(clock)
        parts = LimitParts(state, QuotaDays(Settings(files=("<test>",)).policy.zone, clock),
                           None)
        built = filter_from_settings("concurrency", limits=parts)
        self.assertIsInstance(built, ConcurrencyFilter)
        self.assertIs(built.state, state)
