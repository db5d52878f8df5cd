"""An Ollama request as the role filters share it: its endpoint, its body parsed once."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Reject
from runnergw.filters.ollama_request import (
    OllamaRequest,
    ollama_endpoint,
    ollama_request,
    store_fields,
)
from runnergw.ollama.endpoints import endpoint_for
from runnergw.ollama.gojson import REMOVE, GoType, JsonObject
from runnergw.testing import make_exchange

__all__ = ["OllamaEndpointTests", "OllamaRequestTests", "StoreFieldsTests"]


def _exchange(path: str, body: bytes | None = None) -> Exchange:
    """An exchange as the request_body hooks see it: routed, its body collected."""
    exchange = make_exchange("POST", path, body=body)
    exchange.api_path = exchange.upstream_path = path
    exchange.request_body = body
    return exchange


class OllamaEndpointTests(SynchronousTestCase):
    """The endpoint a request calls."""

    def test_found(self) -> None:
        """The endpoint Ollama routes the decoded path to."""
        self.assertEqual(ollama_endpoint(_exchange("/api/chat")), endpoint_for("/api/chat"))
        endpoint = ollama_endpoint(_exchange("/v1/models/llama3.2"))
        assert endpoint is not None
        self.assertEqual(endpoint.kind, "openai_model")

    def test_none_for_unknown_paths(self) -> None:
        """A path Ollama does not serve has no endpoint."""
        self.assertIsNone(ollama_endpoint(_exchange("/api/chat/")))
        self.assertIsNone(ollama_endpoint(_exchange("/v1/responses")))

    def test_cached_per_exchange(self) -> None:
        """Found once per exchange: a path rewritten later (an alias put in the path) does not
        change what the request was found to call."""
        exchange = _exchange("/api/chat")
        endpoint = ollama_endpoint(exchange)
        exchange.api_path = "/api/tags"
        self.assertIs(ollama_endpoint(exchange), endpoint)
        unknown = _exchange("/nowhere")
        self.assertIsNone(ollama_endpoint(unknown))
        unknown.api_path = "/api/chat"
        self.assertIsNone(ollama_endpoint(unknown))
        self.assertIsNot(ollama_endpoint(_exchange("/api/tags")), endpoint)


class OllamaRequestTests(SynchronousTestCase):
    """The body of a request naming a model, parsed as Ollama parses it."""

    def test_parsed(self) -> None:
        """The body is read as Ollama's Go decoder reads it, duplicates kept."""
        request = ollama_request(_exchange("/api/chat", b'{"model":"a","MODEL":"b"}'))
        assert request is not None
        self.assertEqual(request, OllamaRequest(endpoint_for("/api/chat"),
                                                JsonObject((("model", "a"), ("MODEL", "b")))))
        self.assertEqual(request.body.get("model"), "b")
        self.assertIsNone(request.model)

    def test_parsed_once(self) -> None:
        """Every filter gets the same parsed request, even once the body was replaced: the
        filters share its changes through ``store_fields``."""
        exchange = _exchange("/api/chat", b'{"model":"a"}')
        request = ollama_request(exchange)
        exchange.request_body = b"not json"
        self.assertIs(ollama_request(exchange), request)

    def test_none_without_a_collected_body(self) -> None:
        """Before the body is collected (or when no filter asked for it): None."""
        self.assertIsNone(ollama_request(_exchange("/api/chat", None)))

    def test_none_where_no_model_is_named(self) -> None:
        """Endpoints whose body names no model (and unknown paths) have no request to read,
        whatever their body."""
        for path in ("/api/copy", f"/api/blobs/sha256:{'ab' * 32}", "/api/tags",
                     "/v1/models/a", "/nowhere"):
            with self.subTest(path=path):
                self.assertIsNone(ollama_request(_exchange(path, b"\xff not json")))

    def test_unreadable_refused(self) -> None:
        """A body Ollama would refuse, or read otherwise, is a 400 whose message says why
        without quoting the body."""
        for body, message in (
            (b'{"model":"a","prompt":"secret \xff"}', "the request body is not valid UTF-8"),
            (b'{"model":"a","prompt":"secret"} {}',
             "the request body has data after the JSON value"),
            (b'["secret"]', "the request body must be a JSON object"),
            (b'{"model":"a","secret":NaN}', "NaN and Infinity are not JSON"),
            (b"  ", "missing request body"),
        ):
            with self.subTest(body=body):
                exchange = _exchange("/api/generate", body)
                with self.assertRaises(Reject) as raised:
                    ollama_request(exchange)
                rejection = raised.exception
                self.assertEqual((rejection.status, rejection.message, rejection.reason),
                                 (400, f"invalid request body: {message}",
                                  "body not readable"))
                # Never kept as if it had been read: asked again, it is refused again.
                self.assertRaises(Reject, ollama_request, exchange)

    def test_syntax_error_not_quoted(self) -> None:
        """A JSON syntax error gives its place, not the text around it."""
        with self.assertRaises(Reject) as raised:
            ollama_request(_exchange("/api/chat", b'{"model":"a","prompt":"secret" x}'))
        self.assertEqual(raised.exception.message,
                         "invalid request body: invalid JSON: Expecting ',' delimiter at "
                         "line 1 column 32")


class StoreFieldsTests(SynchronousTestCase):
    """Fields set in the body sent to Ollama and in the parsed body later filters read."""

    def stored(self, sent: bytes, fields: dict[str, Any]) -> tuple[bytes, Any]:
        exchange = _exchange("/api/chat", sent)
        request = ollama_request(exchange)
        assert request is not None
        store_fields(exchange, request, fields)
        assert exchange.request_body is not None
        self.assertIs(ollama_request(exchange), request)
        return exchange.request_body, request.body

    def test_absent_fields_appended(self) -> None:
        """Fields the body does not have are appended to the client's bytes, which are
        kept as they came (spacing included)."""
        sent, body = self.stored(b'{ "model" : "a", "messages": [] }\n',
                                 {"keep_alive": "5m", "options": {"num_predict": 9}})
        self.assertEqual(sent, b'{ "model" : "a", "messages": []'
                               b',"keep_alive":"5m","options":{"num_predict":9}}')
        self.assertEqual(json.loads(sent), {"model": "a", "messages": [], "keep_alive": "5m",
                                          "options": {"num_predict": 9}})
        self.assertEqual(body.get("options", go_type=GoType.OBJECT).get_exact("num_predict"), 9)

    def test_empty_object(self) -> None:
        """An empty object gets the fields without a stray comma."""
        sent, _ = self.stored(b"{}", {"model": "b"})
        self.assertEqual(sent, b'{"model":"b"}')

    def test_present_field_written_once(self) -> None:
        """A field the body has, in any spelling, is written once: the body is encoded
        again, so that no parser can read a repeated key otherwise."""
        sent, body = self.stored(b'{"MODEL":"a","Keep_Alive":"1m"}', {"keep_alive": "5m"})
        self.assertEqual(sent, b'{"MODEL":"a","keep_alive":"5m"}')
        self.assertEqual(body.get("keep_alive"), "5m")

    def test_object_members_merged(self) -> None:
        """Members set in an object the client gave keep the client's other members."""
        sent, _ = self.stored(b'{"model":"a","options":{"temperature":0,"num_predict":99}}',
                              {"options": {"num_predict": 9}})
        self.assertEqual(json.loads(sent), {"model": "a", "options": {"temperature": 0,
                                                                      "num_predict": 9}})

    def test_removed_field(self) -> None:
        """``REMOVE`` drops a field (the older ``name`` once ``model`` is set)."""
        sent, _ = self.stored(b'{"name":"a"}', {"model": "b", "name": REMOVE})
        self.assertEqual(sent, b'{"model":"b"}')

    def test_nothing_leaves_the_body(self) -> None:
        """No fields: the body stays exactly as the client sent it."""
        original = b'{ "model" : "a", "model": "a" }'
        sent, _ = self.stored(original, {})
        self.assertEqual(sent, original)
