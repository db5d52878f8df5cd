"""An example filter with options: models a gateway must not serve, refused and hidden.

Used in settings by its dotted path::

    runners:
      - name: ollama
        host: 127.0.0.1:11434
        filters:
          - token
          - role
          - tests.examples.blocked_models.BlockedModels:
              models: [llama3.1:405b]
              message: this model is too large for this box
          - audit

It reads the ``model`` of inference requests (so it asks for the body, bounded), and filters
the model list the runner answers (so it observes that answer, whole). It reads both as Ollama
does, or a client could slip past it: the path decoded (``/api/ch%61t`` is ``/api/chat``), and
the body's keys matched without regard to case, the last of duplicates winning (Go's
``encoding/json``: ``{"MODEL": …}`` names the model too).
"""

from __future__ import annotations

import json

import attrs

from runnergw.chain.exchange import Exchange, Reject

__all__ = ["BlockedModels", "BlockedModelsOptions"]

_NAMES_A_MODEL = frozenset({"/api/generate", "/api/chat", "/api/embed", "/api/embeddings",
                            "/api/show"})


class _Pairs(list):  # type: ignore[type-arg]
    """A JSON object as its key-value pairs, in order (duplicates kept)."""


def _model_named(body: bytes) -> object:
    """The model a request body names, as Ollama's Go decoder reads it.

    Raises:
        ValueError: the body is not a JSON object.
    """
    document = json.loads(body, object_pairs_hook=_Pairs)
    if not isinstance(document, _Pairs):
        raise ValueError("not a JSON object")
    model = None
    for key, value in document:
        if key.casefold() == "model":
            model = value
    return model


def _not_empty(instance: object, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    if not value:
        raise ValueError("models: name at least one model")


@attrs.frozen
class BlockedModelsOptions:
    """The filter's settings: ``models`` (required), ``message``, ``maxBodySize``."""

    models: tuple[str, ...] = attrs.field(validator=_not_empty)
    message: str = "this model is not served here"
    max_body_size: int = attrs.field(default=1 << 20, metadata={"setting": "size"})
    """The most of a request body read to find its model (larger: 413)."""


class BlockedModels:
    """Refuses requests naming a blocked model (403) and drops them from ``/api/tags``."""

    name = "blockedModels"
    Options = BlockedModelsOptions

    def __init__(self, options: BlockedModelsOptions) -> None:
        self.options = options
        self._blocked = frozenset(options.models)

    def request_headers(self, exchange: Exchange) -> None:
        """Ask for the body of requests that name a model, and for the model list."""
        if exchange.method == "POST" and exchange.api_path in _NAMES_A_MODEL:
            exchange.collect_body(self.options.max_body_size)
        elif exchange.method == "GET" and exchange.api_path == "/api/tags":
            exchange.observe_response(self)

    def request_body(self, exchange: Exchange) -> None:
        """Refuse a blocked model."""
        if exchange.request_body is None:
            return
        try:
            model = _model_named(exchange.request_body)
        except (ValueError, RecursionError):
            raise Reject(400, "the request body is not a JSON object") from None
        if model in self._blocked:
            raise Reject(403, f"{self.options.message}: {model}",
                         reason=f"blocked model {model}")

    def response_body(self, exchange: Exchange, body: bytes) -> bytes | None:
        """Drop blocked models from the runner's list."""
        if exchange.status != 200:
            return None
        listing = json.loads(body)
        listing["models"] = [m for m in listing.get("models", [])
                             if m.get("name") not in self._blocked]
        return json.dumps(listing).encode()
