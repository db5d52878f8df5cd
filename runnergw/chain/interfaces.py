"""The interfaces a filter and a terminal provide."""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IFilter", "ITerminal"]


class IFilter(Interface):
    """A step of a route's chain: a class with ``name`` and the hooks it needs, no others.

    The chain finds a filter's hooks once, when the route is built, and refuses a class with a
    public method that is no hook (a typo such as ``requst`` would otherwise never be called):
    ``runnergw.chain.hooks.check_filter``. Request hooks run in chain order; response hooks and
    ``done`` in reverse. Every hook may return an awaitable.

    ``request_headers(exchange)``
        The request head is in; no body byte has been read (token and role checks). Call
        ``exchange.collect_body(max_size)`` to have the whole body before the terminal, and
        ``exchange.observe_response(self)`` to see the answer as it is relayed (ask here: the
        runner is then asked for an answer without content coding; an encoded answer cannot
        be observed and is a 502).
    ``request_body(exchange)``
        The whole body is in, before the terminal acts on it: ``exchange.request_body``
        (collected because a filter asked; a hook may replace it, and the terminal sends the
        new one with its length) or, on command routes, ``exchange.uploads`` and
        ``exchange.form`` (stored by the terminal).
    ``response_headers(exchange)``
        The response head is about to be sent: ``exchange.status`` and
        ``exchange.response_headers`` may be changed; raising ``Reject`` answers with that
        error instead.
    ``response_line(exchange, line)``
        One NDJSON line or SSE event of an observed streamed answer, without its end. Return
        None to relay it, bytes to relay instead (empty: drop it); raise ``EndStream`` to end
        the answer with a last well-formed line (the runner's request is closed).
    ``response_chunk(exchange, chunk)``
        One chunk of an observed answer that is neither NDJSON, SSE nor JSON; as above.
    ``response_body(exchange, body)``
        The whole body of an observed JSON answer (bounded); as above. The head waits for it
        and carries the new length.

    An observing hook may also raise ``Reject``: while nothing of the answer reached the client
    (a whole JSON answer), the client gets that refusal instead; after, the connection is
    dropped (the status cannot change any more) and the runner's request closed.
    ``done(exchange)``
        The exchange is over: answered, refused, failed or abandoned. Always runs.

    A request hook refuses by raising ``Reject`` or answers by setting ``exchange.response``:
    the remaining request hooks and the terminal are then skipped, and the answer still goes
    through the response hooks. Any other exception ends the exchange with a 500 (the chain
    fails closed).

    A filter class may declare ``Options``, an attrs class: its fields are the filter's
    settings (``perMinute`` in YAML for a field ``per_minute``), checked at load. It is built
    by its class method ``from_settings(options, context)`` when it has one, else by
    ``cls(options)`` (``cls()`` without ``Options``). ``after_any``, a tuple of filter names,
    says that one of them must come earlier in the chain; ``done_before``, that those of them
    present must come earlier so that their ``done`` runs after this filter's (the audit
    filter records what ``usage`` settles at the end).
    """

    name = Attribute("Short name used in settings and logs.")


class ITerminal(Interface):
    """Where a route's exchange ends: it produces the response."""

    def handle(exchange, client):  # type: ignore[no-untyped-def]
        """Serve the exchange; return an awaitable that completes when the response is over.

        ``client`` is the chain's view of the client: its head runs the response hooks and
        its body passes the observing filters. A terminal that has the whole body before acting
        on it (the command terminal stores the uploads) awaits ``client.body_complete()``.
        """

    stores_body = Attribute(
        "True for a terminal that stores the body itself and then calls "
        "``client.body_complete()`` (the request_body hooks run then, once); else the chain "
        "runs them after collecting a body a filter asked for.")

    def stop():  # type: ignore[no-untyped-def]
        """End what is under way now, cleanly, and free resources; returns a Deferred that
        fires once they are freed. The gateway's drain calls it when its grace is over, and
        a reload retires the terminal of a replaced route with it unless the terminal has a
        ``retire()`` (below); calling it again is harmless.

        An exchange under way ends as the chain's client ends it (``FilteredClient.end_now``):
        a client that has had nothing of the answer gets a 503 with ``Retry-After``; a
        streamed NDJSON or SSE answer gets a last well-formed error line or event and its
        proper end; any other answer already started has its connection dropped. The work
        behind it stops (the runner's request is closed, a job's process group killed).
        The caller sends the terminal no new exchange afterwards (its router is retired, or
        the gateway accepts nothing any more).

        A terminal that shares parts with the routes a reload builds (the job launcher, the
        runner hosts kept across reloads) also defines ``retire()``: called once the
        exchanges that began on its replaced route are over, it frees what is its own alone
        and leaves the shared parts running."""
