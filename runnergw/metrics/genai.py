"""The model metrics of OpenTelemetry's GenAI semantic conventions, in Prometheus form, for
the inference requests a runner answered: tokens per model and type, request duration, time
to the first token and time per output token.

The model label is the model of a request the runner answered with a 2xx status (a model it
serves), as a filter or the terminal read it from the body's top-level ``model`` (never a
member nested deeper), in its normal form (lowercase, ``:latest`` and ``library/`` as Ollama
fills them in); never a name a refused request carried. Each runner has at most
:data:`MODELS_PER_RUNNER` model label values: the models beyond are counted as ``other``, so
a runner that answers whatever it is asked cannot multiply the series. Token counts are
those the ``usage`` filter settled; without it (a gateway without roles) there are none.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from runnergw.chain.exchange import Exchange
from runnergw.filters.ollama_request import ollama_endpoint
from runnergw.ollama.model_names import normalize_model_name

__all__ = ["DURATION_BUCKETS", "MODELS_PER_RUNNER", "OTHER_MODEL", "SYSTEM",
           "TIME_PER_OUTPUT_TOKEN_BUCKETS", "TIME_TO_FIRST_TOKEN_BUCKETS", "TOKEN_USAGE_BUCKETS",
           "GenAIMetrics"]

MODELS_PER_RUNNER = 100
"""Distinct model label values per runner; the models beyond are ``other``."""
OTHER_MODEL = "other"
"""The model label of a model beyond a runner's first :data:`MODELS_PER_RUNNER` (a model
name in normal form always has a tag: no model is named so)."""

SYSTEM = "ollama"
"""``gen_ai_system``: every runner speaks Ollama's API."""

TOKEN_USAGE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                       16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)
TIME_TO_FIRST_TOKEN_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                               0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
TIME_PER_OUTPUT_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75,
                                 1.0, 2.5)
"""The bucket boundaries the conventions advise for each instrument."""

_OPERATIONS = {
    "chat": "chat", "openai_chat": "chat",
    "generate": "text_completion", "openai_completions": "text_completion",
    "embed": "embeddings", "embeddings": "embeddings", "openai_embeddings": "embeddings",
}
"""Ollama's inference endpoints by ``gen_ai_operation_name``."""

_LABELS = ("gen_ai_operation_name", "gen_ai_system", "gen_ai_request_model",
           "gen_ai_response_model")
_STREAM_TYPES = ("application/x-ndjson", "text/event-stream")


def _streamed(exchange: Exchange) -> bool:
    content_type = exchange.response_headers.get("content-type") or ""
    return content_type.split(";", 1)[0].strip().lower() in _STREAM_TYPES


class _ModelLabels:
    """The model label values of each runner: the first ``limit`` models it served, each
    in normal form, then ``other``; empty when the model is unknown."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}

    def label(self, runner: str, model: str | None) -> str:
        if not model:
            return ""
        try:
            name = normalize_model_name(model)
        except ValueError:
            return OTHER_MODEL
        seen = self._seen.setdefault(runner, set())
        if name not in seen:
            if len(seen) >= self.limit:
                return OTHER_MODEL
            seen.add(name)
        return name


class GenAIMetrics:
    """``gen_ai_client_token_usage``, ``gen_ai_server_request_duration_seconds``,
    ``gen_ai_server_time_to_first_token_seconds`` and
    ``gen_ai_server_time_per_output_token_seconds``."""

    def __init__(self, registry: CollectorRegistry,
                 models_per_runner: int = MODELS_PER_RUNNER) -> None:
        self._models = _ModelLabels(models_per_runner)
        self.token_usage = Histogram(
            "gen_ai_client_token_usage", "Tokens used per request, by token type (input: "
            "the prompt, output: generated)", _LABELS + ("gen_ai_token_type",),
            buckets=TOKEN_USAGE_BUCKETS, registry=registry)
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Inference requests a runner answered: "
            "from the request head read to the last byte sent", _LABELS,
            buckets=DURATION_BUCKETS, registry=registry)
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Streamed answers: from the request "
            "head read to the first chunk sent", _LABELS,
            buckets=TIME_TO_FIRST_TOKEN_BUCKETS, registry=registry)
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds", "Streamed answers: the time "
            "after the first chunk, per generated token after the first", _LABELS,
            buckets=TIME_PER_OUTPUT_TOKEN_BUCKETS, registry=registry)
        self._children: dict[tuple[Any, ...], Any] = {}

    def observe(self, exchange: Exchange) -> None:
        """Record ``exchange`` when it is an inference request a runner answered (a
        pipeline's paths are none of Ollama's inference endpoints)."""
        if not 200 <= exchange.status < 300 or exchange.finished_at is None:
            return
        if exchange.upstream is None:
            return  # answered by the gateway, not by a runner
        endpoint = ollama_endpoint(exchange)
        operation = _OPERATIONS.get(endpoint.kind) if endpoint is not None else None
        if operation is None:
            return
        model = self._models.label(exchange.upstream, exchange.model)
        labels = (operation, SYSTEM, model, model)
        duration = exchange.finished_at - exchange.started
        self._child(self.request_duration, labels).observe(max(duration, 0.0))
        notes = exchange.notes
        prompt, generated = notes.get("prompt_tokens"), notes.get("completion_tokens")
        if isinstance(prompt, int):
            self._child(self.token_usage, labels + ("input",)).observe(prompt)
        if endpoint is not None and endpoint.generates and isinstance(generated, int):
            self._child(self.token_usage, labels + ("output",)).observe(generated)
        first = exchange.first_byte_at
        if first is None or not _streamed(exchange):
            return
        self._child(self.time_to_first_token, labels).observe(max(first - exchange.started,
                                                                  0.0))
        if isinstance(generated, int) and generated > 1:
            per_token = (exchange.finished_at - first) / (generated - 1)
            self._child(self.time_per_output_token, labels).observe(max(per_token, 0.0))

    def _child(self, histogram: Histogram, labels: tuple[str, ...]) -> Any:
        key = (id(histogram), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = histogram.labels(*labels)
        return child
