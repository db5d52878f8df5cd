"""Run an exchange through its route's filter chain and terminal."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from runnergw.chain.admission import settle_admission, wait_for_client
from runnergw.chain.body import BodyCollector, BodyTooLarge
from runnergw.chain.client import FilteredClient
from runnergw.chain.exchange import Exchange, Reject, Reply, exchange_for
from runnergw.chain.hookcalls import call_each
from runnergw.chain.inflight import InFlight
from runnergw.chain.route import Route, Router
from runnergw.chain.under_way import UnderWay
from runnergw.http.headers import Headers, forwardable_request_headers
from runnergw.http.interfaces import IClientStream, IRequestHandler
from runnergw.logs import level_gate

__all__ = ["ChainRunner"]


@implementer(IRequestHandler)
class ChainRunner:
    """Hands each exchange to its route's chain, then to the route's terminal.

    Fails closed: a filter that raises anything but ``Reject`` ends the exchange with a 500
    carrying the request id, and the failure is logged.
    """

    log = Logger(observer=level_gate)

    def __init__(self, router: Router) -> None:
        self.router = router
        """Routes for new exchanges; replacing it (a reload) leaves those under way on the
        router they began with."""
        self.inflight = InFlight()
        """Every exchange under way, whichever router it began with (a drain waits for it)."""
        self.observers: list[Callable[[Exchange], object]] = []
        """Called with each exchange once it is over, after its ``done`` hooks (the
        metrics); one that raises is logged and the others still run."""
        self.under_way = UnderWay()
        """Their clients, wherever they are in the chain: a drain's end ends those its
        terminals' ``stop()`` did not (waiting in a filter, or on a retired router)."""

    def handle(self, stream: IClientStream) -> Deferred[None]:
        """Serve one request the server has read the head of; the Deferred fires when the
        exchange is over (never fails)."""
        return self.serve(exchange_for(stream), stream)

    def serve(self, exchange: Exchange, client: IClientStream) -> Deferred[None]:
        """Serve ``exchange`` on ``client`` (``handle`` without a server: tests, tools)."""
        return ensureDeferred(self._serve(exchange, client))

    async def _serve(self, exchange: Exchange, client: IClientStream) -> None:
        router = self.router
        self.inflight.enter()
        router.inflight.enter()
        try:
            await self._serve_on(router, exchange, client)
        finally:
            router.inflight.leave()
            self.inflight.leave()

    async def _serve_on(self, router: Router, exchange: Exchange,
                        client: IClientStream) -> None:
        route = router.fallback
        client.policy = route.policy
        filtered = FilteredClient(route, exchange, client)
        self.under_way.add(filtered)
        try:
            route, exchange.upstream_path = router.match(exchange.path, exchange.query)
            exchange.route = filtered.route = route
            # Escapes were checked by the router (no encoded slash, NUL or bad UTF-8).
            exchange.api_path = unquote(exchange.upstream_path)
            client.policy = route.policy
            await self._run(route, exchange, filtered)
        except Reject as rejection:
            if exchange.route is None:
                # Refused before a route was matched (a malformed path): answered in the
                # shape of the route the path plainly names, if any.
                route = filtered.route = router.shape_for(exchange.path)
            self._refuse(route, exchange, filtered, rejection)
        except Exception:
            self.log.failure(
                "Request {request_id} failed inside the gateway",
                request_id=exchange.request_id,
            )
            exchange.outcome = "error"
            exchange.reason = "internal error"
            if filtered.head_sent:
                filtered.fail(500, f"internal error (request {exchange.request_id})",
                              reason="internal error")
            else:
                # No hooks this time: a failing response hook must not fail the error reply.
                filtered.reply(Reply(
                    500, route.error_body_for(exchange.api_path)(
                        500, f"internal error (request {exchange.request_id})")
                ), hooks=False)
        finally:
            self.under_way.discard(filtered)
            if filtered.busy:
                await filtered.settled()
            pending = self._done(route, exchange)
            if pending is not None:
                await pending
            for observe in self.observers:
                try:
                    observe(exchange)
                except Exception:
                    self.log.failure("Observing the end of request {request_id} failed",
                                     request_id=exchange.request_id)

    async def _run(self, route: Route, exchange: Exchange, client: FilteredClient) -> None:
        exchange.upstream_headers = forwardable_request_headers(exchange.headers)
        try:
            if not await self._admitted(route, exchange, client):
                return
        except Reject:
            # Checks given before the refusal and not made yet come first: theirs is the
            # refusal when one refuses (as when each filter asked in turn).
            if not await settle_admission(exchange, client):
                return
            raise
        if exchange.response_observers:
            # Observers read the answer as it comes: the runner must not compress it.
            exchange.upstream_headers.remove("accept-encoding")
        await route.terminal.handle(exchange, client)  # type: ignore[union-attr]

    async def _admitted(self, route: Route, exchange: Exchange,
                        client: FilteredClient) -> bool:
        """The request hooks, the body they asked for and their checks: True when the
        terminal is to act, False when the exchange ends here (answered, or the client
        left)."""
        pending = call_each(route.hooks.request_headers, "request_headers", exchange,
                            until_answered=True)
        if pending is not None and not await wait_for_client(pending, exchange, client):
            return False
        answered = exchange.response is not None
        if not await settle_admission(exchange, client, before_body=not answered):
            return False
        if answered:
            client.reply(exchange.response)  # type: ignore[arg-type]
            return False
        if exchange.request_body is not None and exchange.body_limit is None:
            # A body given before it was read would go upstream under the client's length.
            raise TypeError("exchange.request_body was set before the body was read: ask "
                            "for it with collect_body and replace it in request_body")
        if route.terminal is None:
            raise Reject(404, "no runner serves this path")
        if not await self._read_body(route, exchange, client):
            return False
        return await settle_admission(exchange, client)

    async def _read_body(self, route: Route, exchange: Exchange,
                         client: FilteredClient) -> bool:
        """The body for the filters that asked, and their ``request_body`` hooks; False
        when the exchange stops there (the client left, or a hook answered)."""
        # Checked from Content-Length before any body byte is read (chunked bodies are
        # counted as they arrive); after the token check, so strangers do not learn the limit.
        if exchange.content_length is not None and exchange.content_length > route.max_body_size:
            raise Reject(413, f"request body larger than {route.max_body_size} bytes")
        if exchange.body_limit is None:
            return True
        if not await self._collect(exchange, client, min(exchange.body_limit,
                                                         route.max_body_size)):
            return False
        # A terminal that stores the body itself (the command terminal's uploads) runs
        # the request_body hooks once it has, and only then: they run once per request.
        return getattr(route.terminal, "stores_body", False) or await client.body_complete()

    async def _collect(self, exchange: Exchange, client: FilteredClient, limit: int) -> bool:
        """Read the whole body for the filters; False when the client left meanwhile."""
        if exchange.content_length is not None and exchange.content_length > limit:
            raise Reject(413, f"request body larger than {limit} bytes")
        collector = BodyCollector(limit)
        if exchange.has_body:
            client.start_body(collector)
        else:
            collector.body_done()
        try:
            result = collector.result
            # A body that came with its head is whole at once: read without a wait.
            body = result.result if result.called and not isinstance(
                result.result, Failure) else await result
        except BodyTooLarge:
            raise Reject(413, f"request body larger than {limit} bytes") from None
        except ConnectionError:
            if exchange.outcome == "ok":
                exchange.outcome = "client_gone"
                exchange.reason = "client disconnected during the request body"
            return False
        exchange.request_body = body
        return True

    def _refuse(
        self, route: Route, exchange: Exchange, client: FilteredClient, rejection: Reject
    ) -> None:
        exchange.record_refusal(rejection)
        if client.head_sent:
            client.fail(rejection.status, rejection.message, Headers(rejection.headers),
                        reason=rejection.reason)
            return
        body = route.error_body_for(exchange.api_path)(rejection.status, rejection.message)
        client.reply(Reply(rejection.status, body, headers=rejection.headers))

    def _done(self, route: Route, exchange: Exchange) -> Deferred[None] | None:
        """Run every ``done`` hook; a Deferred only when one of them answers later."""
        for index, step in enumerate(route.hooks.done):
            try:
                result = step.done(exchange)
            except Exception:
                self._done_failed(step, exchange)
                continue
            if result is not None and inspect.isawaitable(result):
                return ensureDeferred(self._done_later(result, route.hooks.done[index + 1:],
                                                       step, exchange))
        return None

    async def _done_later(self, pending: Any, rest: tuple[Any, ...], step: Any,
                          exchange: Exchange) -> None:
        try:
            await pending
        except Exception:
            self._done_failed(step, exchange)
        for step in rest:
            try:
                result = step.done(exchange)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._done_failed(step, exchange)

    def _done_failed(self, step: Any, exchange: Exchange) -> None:
        self.log.failure("Filter {filter} failed at the end of request {request_id}",
                         filter=getattr(step, "name", type(step).__name__),
                         request_id=exchange.request_id)
