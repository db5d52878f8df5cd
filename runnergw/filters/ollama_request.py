"""An Ollama request as the role filters read it: which endpoint, the body parsed once."""

from __future__ import annotations

import attrs

from runnergw.chain.exchange import Exchange, Reject
from runnergw.ollama.endpoints import Endpoint, endpoint_for
from runnergw.ollama.gojson import GoJsonError, JsonObject, decode_object, encode

__all__ = ["OllamaRequest", "ollama_endpoint", "ollama_request", "store_request"]

_ENDPOINT = "ollama.endpoint"
_REQUEST = "ollama.request"


@attrs.define
class OllamaRequest:
    """The body of a request naming a model, parsed as Ollama's Go handlers parse it.

    Filters change ``body`` and call ``store_request``; ``model`` is the model Ollama is
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


def store_request(exchange: Exchange, request: OllamaRequest, body: JsonObject | None) -> None:
    """Make ``body`` (a changed copy, or None for no change) the body sent to Ollama."""
    if body is None:
        return
    request.body = body
    exchange.request_body = encode(body)
