"""Run an exchange through its route's filter chain and terminal."""

from __future__ import annotations

import inspect
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

from runnergw.http.headers import Headers, forwardable_request_headers
from runnergw.logs import level_gate
from runnergw.chain.exchange import Exchange, Reject, Reply
from runnergw.chain.interfaces import IClientStream
from runnergw.chain.route import Route, Router

__all__ = ["ChainRunner"]


class ChainRunner:
    """Hands each exchange to its route's chain, then to the route's terminal.

    Fails closed: a filter that raises anything but ``Reject`` ends the exchange with a 500
    carrying the request id, and the failure is logged.
    """

    log = Logger(observer=level_gate)

    def __init__(self, router: Router) -> None:
        self.router = router

    def handle(self, exchange: Exchange, client: IClientStream) -> Deferred[None]:
        """Serve one exchange; the Deferred fires when it is over (never fails)."""
        return ensureDeferred(self._serve(exchange, client))

    async def _serve(self, exchange: Exchange, client: IClientStream) -> None:
        route = self.router.fallback
        try:
            route, exchange.upstream_path = self.router.match(exchange.path, exchange.query)
            exchange.route = route
            await self._run(route, exchange, client)
        except Reject as rejection:
            self._refuse(route, exchange, client, rejection)
        except Exception:
            self.log.failure(
                "Request {request_id} failed inside the gateway",
                request_id=exchange.request_id,
            )
            exchange.outcome = "error"
            exchange.reason = "internal error"
            if client.head_sent:
                client.abort("internal error")
            else:
                # No hooks this time: a failing response hook must not fail the error reply.
                self._reply(route, exchange, client, Reply(
                    500, route.error_body(500, f"internal error (request {exchange.request_id})")
                ), hooks=False)
        finally:
            self._done(route, exchange)

    async def _run(self, route: Route, exchange: Exchange, client: IClientStream) -> None:
        exchange.upstream_headers = forwardable_request_headers(exchange.headers)
        for step in route.filters:
            result: Any = step.request(exchange)
            if inspect.isawaitable(result):
                await result
            if exchange.response is not None:
                self._reply(route, exchange, client, exchange.response)
                return
        if route.terminal is None:
            raise Reject(404, "no runner serves this path")
        # Checked from Content-Length before any body byte is read (chunked bodies are
        # counted as they arrive); after the token check, so strangers do not learn the limit.
        if exchange.content_length is not None and exchange.content_length > route.max_body_size:
            raise Reject(413, f"request body larger than {route.max_body_size} bytes")

        def send_head(status: int, headers: Headers, length: int | None) -> None:
            self._send_head(route, exchange, client, status, headers, length)

        await route.terminal.handle(exchange, client, send_head)

    def _send_head(
        self,
        route: Route,
        exchange: Exchange,
        client: IClientStream,
        status: int,
        headers: Headers,
        length: int | None,
        hooks: bool = True,
    ) -> None:
        if client.gone:
            return
        exchange.status = status
        exchange.response_headers = headers
        if hooks:
            for step in reversed(route.filters):
                step.response_headers(exchange)
        client.send_head(status, exchange.response_headers, length)

    def _refuse(
        self, route: Route, exchange: Exchange, client: IClientStream, rejection: Reject
    ) -> None:
        if exchange.outcome == "ok":
            exchange.outcome = "denied" if rejection.status in (401, 403) else "refused"
        exchange.reason = exchange.reason or rejection.reason
        if client.head_sent:
            client.abort(rejection.reason)
            return
        body = route.error_body(rejection.status, rejection.message)
        self._reply(route, exchange, client, Reply(rejection.status, body,
                                                  headers=rejection.headers))

    def _reply(
        self,
        route: Route,
        exchange: Exchange,
        client: IClientStream,
        reply: Reply,
        hooks: bool = True,
    ) -> None:
        headers = Headers(reply.headers)
        headers.set("Content-Type", reply.content_type)
        self._send_head(route, exchange, client, reply.status, headers, len(reply.body), hooks)
        if exchange.method != "HEAD":
            client.write(reply.body)
        client.finish()

    def _done(self, route: Route, exchange: Exchange) -> None:
        for step in reversed(route.filters):
            try:
                step.done(exchange)
            except Exception:
                self.log.failure(
                    "Filter {filter} failed at the end of request {request_id}",
                    filter=step.name,
                    request_id=exchange.request_id,
                )
