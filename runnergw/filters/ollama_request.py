"""An Ollama request as the role filters read it: which endpoint, the body parsed once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from runnergw.chain.exchange import Exchange, Reject
from runnergw.ollama.endpoints import Endpoint, endpoint_for
from runnergw.ollama.gojson import GoJsonError, GoType, JsonObject, decode_object
from runnergw.ollama.gojson_writing import append_fields, encode

__all__ = ["OllamaRequest", "ollama_endpoint", "ollama_request", "store_fields"]

_ENDPOINT = "ollama.endpoint"
_REQUEST = "ollama.request"


@attrs.define
class OllamaRequest:
    """The body of a request naming a model, parsed as Ollama's Go handlers parse it.

    Filters set fields with ``store_fields``; ``model`` is the model Ollama is
    asked for once aliases are resolved.
    """

    endpoint: Endpoint
    body: JsonObject
    model: str | None = None


def ollama_endpoint(exchange: Exchange) -> Endpoint | None:
    """The Ollama endpoint the request calls (found once per exchange), None when it names
    none Ollama serves."""
    if _ENDPOINT not in exchange.metadata:
        exchange.metadata[_ENDPOINT] = endpoint_for(exchange.api_path)
    return exchange.metadata[_ENDPOINT]


def ollama_request(exchange: Exchange) -> OllamaRequest | None:
    """The parsed body (from ``request_body`` hooks; parsed at the first call), None when the
    body was not collected or the endpoint names no model.

    Raises:
        Reject: 400 when Ollama would refuse the body or read it otherwise than the gateway.
    """
    request = exchange.metadata.get(_REQUEST)
    if request is not None:
        return request
    endpoint = ollama_endpoint(exchange)
    if endpoint is None or exchange.request_body is None or not endpoint.names_model:
        return None
    try:
        body = decode_object(exchange.request_body)
    except GoJsonError as e:
        raise Reject(400, f"invalid request body: {e}", reason="body not readable") from None
    request = OllamaRequest(endpoint, body)
    exchange.metadata[_REQUEST] = request
    return request


def store_fields(exchange: Exchange, request: OllamaRequest, fields: Mapping[str, Any]) -> None:
    """Set top-level ``fields`` in the body sent to Ollama (a dict value sets members of an
    object field: ``options``, ``stream_options``), and in the parsed body later filters read.

    When the body has none of these fields in any spelling, they are appended to the
    client's bytes (no copy of megabytes of images is re-encoded); otherwise the body is
    written again with each field once, so that no parser, Go's or another, can read a
    repeated key otherwise than the gateway did.
    """
    if not fields:
        return
    assert exchange.request_body is not None
    body = request.body
    if not any(body.has(name) for name in fields):
        request.body = body.appended(fields)
        exchange.request_body = append_fields(exchange.request_body, fields)
        return
    merged: dict[str, Any] = {}
    for name, value in fields.items():
        if type(value) is dict:
            current = body.get(name, go_type=GoType.OBJECT) or JsonObject(())
            # ``options`` is a Go map (exact keys); other objects are structs.
            value = current.with_exact(value) if name == "options" else \
                current.with_fields(value)
        merged[name] = value
    request.body = body.with_fields(merged)
    exchange.request_body = encode(request.body)
