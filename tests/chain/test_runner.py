"""The chain runner: filter order, refusals, early answers, async filters, failing closed."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject, Reply
from runnergw.chain.interfaces import IFilter, ITerminal
from runnergw.chain.route import Route, Router, error_body_detail
from runnergw.chain.runner import ChainRunner
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream
from runnergw.testing import RecordingClient, make_exchange

__all__ = ["ChainOrderTests", "EarlyAnswerTests", "FailClosedTests", "InFlightTests",
           "MalformedPathShapeTests", "RefusalTests", "RoutingTests"]


@implementer(IFilter)
class _Recorder:
    """Appends ``name.hook`` to a shared journal; can be told to misbehave in ``request``."""

    def __init__(self, name: str, journal: list[str],
                 on_request: Callable[[Exchange], Any] | None = None) -> None:
        self.name = name
        self.journal = journal
        self.on_request = on_request

    def request_headers(self, exchange: Exchange) -> Any:
        self.journal.append(f"{self.name}.request")
        if self.on_request is not None:
            return self.on_request(exchange)
        return None

    def response_headers(self, exchange: Exchange) -> None:
        self.journal.append(f"{self.name}.response_headers")
        exchange.response_headers.add("X-Seen-By", self.name)

    def done(self, exchange: Exchange) -> None:
        self.journal.append(f"{self.name}.done")


@implementer(ITerminal)
class _Terminal:
    """Answers ``200 ok`` at once unless given another behaviour."""

    def __init__(self, journal: list[str],
                 behaviour: Callable[[Exchange, IClientStream, Any], Any] | None = None) -> None:
        self.journal = journal
        self.behaviour = behaviour
        self.exchanges: list[Exchange] = []

    def handle(self, exchange: Exchange, client: IClientStream) -> Deferred[None]:
        self.journal.append("terminal")
        self.exchanges.append(exchange)
        if self.behaviour is not None:
            return self.behaviour(exchange, client, client.send_head)
        client.send_head(200, Headers([("Content-Type", "text/plain")]), 2)
        client.write(b"ok")
        client.finish()
        return succeed(None)

    def stop(self) -> Deferred[None]:
        return succeed(None)


def _exchange(path: str = "/api/chat", method: str = "POST",
              headers: list[tuple[str, str]] | None = None,
              content_length: int | None = 0) -> Exchange:
    return Exchange(
        request_id="req-1", method=method, path=path, query="", version="HTTP/1.1",
        headers=Headers(headers or [("Host", "gw"), ("Authorization", "Bearer secret"),
                                    ("Content-Type", "application/json")]),
        client_address="192.0.2.1", secure=True, started=0.0, content_length=content_length,
    )


class _GatewayTestCase(SynchronousTestCase):
    """A journal, three recording filters and a terminal on an ``/api`` route."""

    def setUp(self) -> None:
        """Build the chain a, b, c → terminal."""
        self.journal: list[str] = []
        self.terminal = _Terminal(self.journal)

    def gateway(self, *behaviours: Callable[[Exchange], Any] | None,
                max_body_size: int = 1 << 30, error_body: Any = None,
                fallback_filters: tuple[Any, ...] = ()) -> ChainRunner:
        """Filters a, b, c with the given ``request`` behaviours (None: do nothing)."""
        names = "abc"
        filters = tuple(_Recorder(names[n], self.journal,
                                  behaviours[n] if n < len(behaviours) else None)
                        for n in range(3))
        options: dict[str, Any] = {"max_body_size": max_body_size}
        if error_body is not None:
            options["error_body"] = error_body
        route = Route("api", ("api",), filters, self.terminal, **options)
        fallback = Route("", (), tuple(_Recorder(f"fallback{n}", self.journal)
                                       for n in range(len(fallback_filters))), None)
        return ChainRunner(Router([route], fallback))

    def serve(
        self, gateway: ChainRunner, exchange: Exchange | None = None,
        client: RecordingClient | None = None,
    ) -> tuple[Exchange, RecordingClient, Deferred[None]]:
        """Hand an exchange to the gateway."""
        exchange = exchange or _exchange()
        client = client or RecordingClient()
        done = gateway.serve(exchange, client)
        return exchange, client, done


class ChainOrderTests(_GatewayTestCase):
    """Request hooks in order, response hooks and ``done`` in reverse."""

    def test_order(self) -> None:
        """Request hooks run a, b, c; then the terminal; response hooks c, b, a; done c, b, a."""
        exchange, client, done = self.serve(self.gateway())
        self.assertEqual(self.journal, [
            "a.request", "b.request", "c.request", "terminal",
            "c.response_headers", "b.response_headers", "a.response_headers",
            "c.done", "b.done", "a.done",
        ])
        self.assertEqual(client.status, 200)
        self.assertEqual([v for k, v in list(client.headers) if k == "X-Seen-By"], ["c", "b", "a"])
        self.assertTrue(client.finished)
        self.assertIsNone(self.successResultOf(done))

    def test_upstream_request_prepared(self) -> None:
        """Filters see the stripped upstream path and headers without credentials."""
        seen: dict[str, Any] = {}

        def look(exchange: Exchange) -> None:
            seen["path"] = exchange.upstream_path
            seen["headers"] = list(exchange.upstream_headers)
            seen["route"] = exchange.route.name if exchange.route else None

        self.serve(self.gateway(look), _exchange("/api/chat"))
        self.assertEqual(seen, {"path": "/chat", "route": "api",
                                "headers": [("Content-Type", "application/json")]})

    def test_async_filter_awaited(self) -> None:
        """A filter returning a Deferred holds the chain until it fires."""
        pending: Deferred[None] = Deferred()
        exchange, client, done = self.serve(self.gateway(None, lambda e: pending))
        self.assertEqual(self.journal, ["a.request", "b.request"])
        self.assertNoResult(done)
        pending.callback(None)
        self.assertEqual(self.journal[2:4], ["c.request", "terminal"])
        self.assertEqual(client.status, 200)
        self.successResultOf(done)

    def test_client_leaving_cancels_a_wait(self) -> None:
        """A client that leaves while a filter makes its request wait (for a concurrency
        slot) cancels the wait: the rest of the chain and the terminal never run, ``done``
        does, and the audit says the client left."""
        cancelled: list[bool] = []
        pending: Deferred[None] = Deferred(lambda d: cancelled.append(True))
        exchange, client, done = self.serve(self.gateway(None, lambda e: pending))
        client.leave()
        self.assertEqual(cancelled, [True])
        self.successResultOf(done)
        self.assertNotIn("terminal", self.journal)
        self.assertNotIn("c.request", self.journal)
        self.assertIn("a.done", self.journal)
        self.assertEqual((exchange.outcome, exchange.reason),
                         ("client_gone", "client disconnected while the request waited"))

    def test_coroutine_filter_awaited(self) -> None:
        """A filter whose ``request`` is a coroutine is awaited too."""
        pending: Deferred[None] = Deferred()

        async def slow(exchange: Exchange) -> None:
            await pending
            exchange.notes["checked"] = True

        exchange, client, done = self.serve(self.gateway(slow))
        self.assertEqual(self.journal, ["a.request"])
        pending.callback(None)
        self.assertTrue(exchange.notes["checked"])
        self.assertEqual(client.status, 200)

    def test_async_refusal(self) -> None:
        """A Deferred that fails with Reject refuses the request like a raised one."""
        pending: Deferred[None] = Deferred()
        exchange, client, done = self.serve(self.gateway(lambda e: pending))
        pending.errback(Reject(403, "quota exhausted"))
        self.assertEqual(client.status, 403)
        self.assertNotIn("terminal", self.journal)
        self.assertEqual(self.journal[-3:], ["c.done", "b.done", "a.done"])


class RefusalTests(_GatewayTestCase):
    """A filter raising ``Reject``."""

    def test_reject_skips_rest(self) -> None:
        """Later request hooks and the terminal are skipped; every ``done`` still runs."""

        def refuse(exchange: Exchange) -> None:
            raise Reject(401, "missing bearer token",
                         headers=(("WWW-Authenticate", "Bearer"),), reason="token missing")

        exchange, client, done = self.serve(self.gateway(None, refuse))
        self.assertNotIn("c.request", self.journal)
        self.assertNotIn("terminal", self.journal)
        self.assertEqual(self.journal[-3:], ["c.done", "b.done", "a.done"])
        self.assertEqual(client.status, 401)
        self.assertIn(("WWW-Authenticate", "Bearer"), list(client.headers))
        self.assertIn(("Content-Type", "application/json; charset=utf-8"), list(client.headers))
        self.assertEqual(client.json(), {"error": "missing bearer token"})
        self.assertEqual(client.length, len(client.body))
        self.assertEqual((exchange.outcome, exchange.reason, exchange.status),
                         ("denied", "token missing", 401))
        self.successResultOf(done)

    def test_reject_other_status(self) -> None:
        """A refusal other than 401/403 is recorded as refused."""

        def refuse(exchange: Exchange) -> None:
            raise Reject(429, "slow down")

        exchange, client, _ = self.serve(self.gateway(refuse))
        self.assertEqual((client.status, exchange.outcome), (429, "refused"))

    def test_route_error_shape(self) -> None:
        """Refusals use the route's error body shape."""

        def refuse(exchange: Exchange) -> None:
            raise Reject(403, "forbidden")

        _, client, _ = self.serve(self.gateway(refuse, error_body=error_body_detail))
        self.assertEqual(client.json(), {"detail": "forbidden"})

    def test_body_too_large_after_filters(self) -> None:
        """A declared body over the route limit is 413 after the filters, before the terminal."""
        exchange, client, _ = self.serve(self.gateway(max_body_size=10),
                                         _exchange(content_length=11))
        self.assertEqual(client.status, 413)
        self.assertEqual(self.journal[:3], ["a.request", "b.request", "c.request"])
        self.assertNotIn("terminal", self.journal)
        self.assertEqual(self.journal[-3:], ["c.done", "b.done", "a.done"])

    def test_head_request_error_has_no_body(self) -> None:
        """A refused HEAD request gets the length but no body."""

        def refuse(exchange: Exchange) -> None:
            raise Reject(401, "missing bearer token")

        _, client, _ = self.serve(self.gateway(refuse), _exchange(method="HEAD"))
        self.assertEqual(client.status, 401)
        self.assertEqual(client.body, b"")
        self.assertTrue(client.finished)

    def test_reject_after_head_aborts(self) -> None:
        """A terminal refusing after the response started drops the connection."""

        def late(exchange: Exchange, client: IClientStream, send_head: Any) -> Deferred[None]:
            send_head(200, Headers(), None)
            raise Reject(502, "runner went away")

        self.terminal.behaviour = late
        exchange, client, done = self.serve(self.gateway())
        self.assertEqual(client.aborted, "runner went away")
        self.assertEqual(client.status, 200)
        self.successResultOf(done)


class EarlyAnswerTests(_GatewayTestCase):
    """A filter answering by itself."""

    def test_response_set(self) -> None:
        """``exchange.response`` answers at once, skipping later hooks and the terminal."""

        def answer(exchange: Exchange) -> None:
            exchange.response = Reply(200, b'{"models": []}', headers=(("X-Cache", "hit"),))

        exchange, client, done = self.serve(self.gateway(answer))
        self.assertEqual(self.journal, [
            "a.request", "c.response_headers", "b.response_headers", "a.response_headers",
            "c.done", "b.done", "a.done",
        ])
        self.assertEqual(client.status, 200)
        self.assertEqual(client.body, b'{"models": []}')
        self.assertIn(("X-Cache", "hit"), list(client.headers))
        self.assertTrue(client.finished)
        self.successResultOf(done)


class FailClosedTests(_GatewayTestCase):
    """Unexpected exceptions never let a request through."""

    def test_filter_exception(self) -> None:
        """A filter raising anything else gives a logged 500 naming the request id."""

        def broken(exchange: Exchange) -> None:
            raise ZeroDivisionError("bug")

        exchange, client, done = self.serve(self.gateway(None, broken))
        self.assertEqual(client.status, 500)
        self.assertEqual(client.json(), {"error": "internal error (request req-1)"})
        self.assertNotIn("terminal", self.journal)
        self.assertEqual(self.journal[-3:], ["c.done", "b.done", "a.done"])
        self.assertEqual((exchange.outcome, exchange.reason), ("error", "internal error"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.successResultOf(done)

    def test_async_filter_exception(self) -> None:
        """A filter whose Deferred fails unexpectedly is a 500 too."""
        pending: Deferred[None] = Deferred()
        _, client, done = self.serve(self.gateway(lambda e: pending))
        pending.errback(KeyError("bug"))
        self.assertEqual(client.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.successResultOf(done)

    def test_terminal_exception_after_head(self) -> None:
        """A terminal failing mid-response drops the connection (the status is already out)."""

        def broken(exchange: Exchange, client: IClientStream, send_head: Any) -> None:
            send_head(200, Headers(), None)
            raise ValueError("bug")

        self.terminal.behaviour = broken
        _, client, done = self.serve(self.gateway())
        self.assertEqual(client.aborted, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.successResultOf(done)

    def test_done_exception(self) -> None:
        """A ``done`` hook that raises is logged and the other ``done`` hooks still run."""
        gateway = self.gateway()
        middle = gateway.router.routes[0].filters[1]

        def broken_done(exchange: Exchange) -> None:
            raise RuntimeError("audit disk full")

        middle.done = broken_done  # type: ignore[method-assign]
        _, client, done = self.serve(gateway)
        self.assertEqual(client.status, 200)
        self.assertEqual(self.journal[-2:], ["c.done", "a.done"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.successResultOf(done)

    def test_response_hook_exception(self) -> None:
        """A response hook that raises still ends in a logged 500, never a silent drop."""
        gateway = self.gateway()
        first = gateway.router.routes[0].filters[0]

        def broken_hook(exchange: Exchange) -> None:
            raise RuntimeError("bug")

        first.response_headers = broken_hook  # type: ignore[method-assign]
        _, client, done = self.serve(gateway)
        logged = self.flushLoggedErrors(RuntimeError)
        escaped: list[object] = []
        done.addErrback(escaped.append)
        self.assertEqual(escaped, [])
        self.assertEqual(client.status, 500)
        self.assertEqual(len(logged), 1)


class RoutingTests(_GatewayTestCase):
    """Requests no route serves."""

    def test_unknown_prefix(self) -> None:
        """An unknown prefix is 404 through the fallback route, whose ``done`` hooks run."""
        gateway = self.gateway(fallback_filters=(None,))
        exchange, client, _ = self.serve(gateway, _exchange("/other"))
        self.assertEqual(client.status, 404)
        self.assertEqual(client.json(), {"error": "no runner serves this path"})
        self.assertEqual(self.journal[-1], "fallback0.done")
        self.assertNotIn("a.request", self.journal)

    def test_bad_path(self) -> None:
        """A dot segment is 400 and nothing of the route runs."""
        exchange, client, _ = self.serve(self.gateway(), _exchange("/api/../admin"))
        self.assertEqual(client.status, 400)
        self.assertNotIn("a.request", self.journal)

    def test_route_without_terminal(self) -> None:
        """A matched route without terminal answers 404 after its filters."""
        self.terminal = None  # type: ignore[assignment]
        gateway = self.gateway()
        _, client, _ = self.serve(gateway)
        self.assertEqual(client.status, 404)
        self.assertIn("c.request", self.journal)

    def test_client_gone_before_head(self) -> None:
        """Nothing is sent to a client that already left."""
        client = RecordingClient()
        client.gone = True
        _, client, done = self.serve(self.gateway(), client=client)
        self.assertIsNone(client.status)
        self.successResultOf(done)


class MalformedPathShapeTests(SynchronousTestCase):
    """A malformed path under a pipeline prefix is refused in FastAPI's shape."""

    def test_refused_in_the_named_routes_shape(self) -> None:
        """``/text-stats/%zz`` on a node serving both kinds answers 400 ``{"detail": …}``."""
        pipeline = Route("text-stats", ("text-stats",), (), _Terminal([]),
                         error_body=error_body_detail)
        runner = ChainRunner(Router([pipeline, Route("ollama", ("ollama",), (), _Terminal([]))],
                                    Route("", (), (), None)))
        client = RecordingClient()
        exchange = make_exchange("POST", "/text-stats/%zz")
        self.successResultOf(runner.serve(exchange, client))
        self.assertEqual((client.status, json.loads(client.body)),
                         (400, {"detail": "malformed percent-escape in the path"}))


class InFlightTests(_GatewayTestCase):
    """Exchanges under way are counted on the runner and on the router they began with, so a
    reload can retire an old router and a drain can wait for the last exchange."""

    def _held(self) -> tuple[ChainRunner, Deferred[None]]:
        """A gateway whose terminal answers only when the returned Deferred fires."""
        release: Deferred[None] = Deferred()

        def hold(exchange: Exchange, client: Any, send_head: Any) -> Deferred[None]:
            def answer(_: object) -> None:
                send_head(200, Headers([("Content-Type", "text/plain")]), 2)
                client.write(b"ok")
                client.finish()
            return release.addCallback(answer)

        self.terminal = _Terminal(self.journal, hold)
        return self.gateway(), release

    def test_counted_until_over(self) -> None:
        """An exchange is under way from its start to its end, on the runner and its router."""
        gateway, release = self._held()
        router = gateway.router
        self.serve(gateway)
        self.assertEqual((gateway.inflight.count, router.inflight.count), (1, 1))
        idle = router.inflight.when_idle()
        self.assertNoResult(idle)
        release.callback(None)
        self.successResultOf(idle)
        self.assertEqual((gateway.inflight.count, router.inflight.count), (0, 0))

    def test_stays_on_the_router_it_began_with(self) -> None:
        """After the router is replaced, an exchange under way is still counted on the old
        one, and new exchanges on the new one."""
        gateway, release = self._held()
        old = gateway.router
        self.serve(gateway)
        gateway.router = Router([], Route("", (), (), None))
        _, client, _ = self.serve(gateway, _exchange("/api/chat"))
        self.assertEqual(client.status, 404)
        self.assertEqual((old.inflight.count, gateway.router.inflight.count,
                          gateway.inflight.count), (1, 0, 1))
        release.callback(None)
        self.assertEqual((old.inflight.count, gateway.inflight.count), (0, 0))

    def test_refused_exchange_leaves(self) -> None:
        """A refused exchange is not left counted (a drain would otherwise wait for ever)."""
        def refuse(exchange: Exchange) -> None:
            raise Reject(403, "no")
        gateway = self.gateway(refuse)
        _, client, done = self.serve(gateway)
        self.successResultOf(done)
        self.assertEqual((client.status, gateway.inflight.count), (403, 0))
