"""What the HTTP server hands over and is told: every client stream the chain and terminals
may be given verifies against ``IClientStream``, and a request no route took yet gets the
server's own policy and record."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from runnergw.chain.client import FilteredClient
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.http.interfaces import (
    IClientStream,
    IRequestHandler,
    MessageRecord,
    StreamPolicy,
    StreamRecord,
    error_body_json,
)
from runnergw.http.stream import ClientStream
from runnergw.testing import RecordingClient, make_exchange
from tests.http.support import ServerTestCase

__all__ = ["ClientStreamInterfaceTests", "RecordTests", "RequestHandlerTests",
           "StreamPolicyTests"]


class ClientStreamInterfaceTests(ServerTestCase):
    """``IClientStream``, as the chain, terminals and tests implement it."""

    def test_server_stream(self) -> None:
        """The stream the server gives for each request provides the interface."""
        self.request(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        [call] = self.gateway.calls
        self.assertIsInstance(call.client, ClientStream)
        self.assertTrue(verifyObject(IClientStream, call.client))

    def test_server_stream_starts_with_the_server_policy(self) -> None:
        """Until the chain sets its route's policy, a stream has the server's default: no
        body limit, ``{"error"}`` errors."""
        self.request(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        [call] = self.gateway.calls
        self.assertEqual(call.client.policy, StreamPolicy())

    def test_filtered_client(self) -> None:
        """The chain's view of the client, which terminals are given, provides it too."""
        client = FilteredClient(Route("test", (), (), None), make_exchange(), RecordingClient())
        self.assertTrue(verifyObject(IClientStream, client))

    def test_recording_client(self) -> None:
        """The recording client of the filter authors' harness (the one the chain's own
        tests use too) is a client a terminal could be given."""
        self.assertTrue(verifyObject(IClientStream, RecordingClient()))


class RequestHandlerTests(SynchronousTestCase):
    """``IRequestHandler``: what the server hands each request to."""

    def test_chain_runner(self) -> None:
        """The chain runner the gateway's server is built with declares and provides the
        interface the server expects."""
        runner = ChainRunner(Router([], Route("", (), (), None)))
        self.assertTrue(verifyObject(IRequestHandler, runner))


class StreamPolicyTests(SynchronousTestCase):
    """What a request gets before (or without) a route."""

    def test_defaults(self) -> None:
        """No body limit and Ollama's ``{"error"}`` shape."""
        policy = StreamPolicy()
        self.assertIsNone(policy.max_body_size)
        self.assertIs(policy.error_body, error_body_json)

    def test_error_body_shape(self) -> None:
        """``{"error": message}``, one key, any message escaped as JSON."""
        for message in ("request body larger than 10 bytes", 'a "quoted"\nline', "délai"):
            with self.subTest(message=message):
                body = error_body_json(413, message)
                self.assertIsInstance(body, bytes)
                self.assertEqual(json.loads(body), {"error": message})


class RecordTests(SynchronousTestCase):
    """What the server records of an exchange."""

    def test_stream_record_defaults(self) -> None:
        """A request no handler took over is recorded as nothing sent yet, outcome ok."""
        record = StreamRecord("req-1")
        self.assertEqual((record.request_id, record.status, record.bytes_in, record.bytes_out,
                          record.first_byte_at, record.finished_at, record.outcome,
                          record.reason), ("req-1", 0, 0, 0, None, None, "ok", None))

    def test_exchange_is_a_record(self) -> None:
        """The chain's exchange has every field the server keeps up to date, so the audit
        sees bytes, status and times once it replaced the stream's record."""
        exchange = make_exchange()
        for name in MessageRecord.__annotations__:
            with self.subTest(field=name):
                self.assertTrue(hasattr(exchange, name))
                self.assertTrue(hasattr(StreamRecord("r"), name))
