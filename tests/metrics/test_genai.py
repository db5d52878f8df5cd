"""The OpenTelemetry GenAI model metrics, from inference requests a runner answered."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Reject
from runnergw.metrics.genai import (
    DURATION_BUCKETS,
    TIME_PER_OUTPUT_TOKEN_BUCKETS,
    TIME_TO_FIRST_TOKEN_BUCKETS,
    TOKEN_USAGE_BUCKETS,
    GenAIMetrics,
)
from runnergw.testing import make_exchange

__all__ = ["GenAIBucketTests", "GenAIMetricsTests", "ModelLabelTests"]

_MODEL = {"gen_ai_system": "ollama", "gen_ai_request_model": "llama3.2:1b",
          "gen_ai_response_model": "llama3.2:1b"}


def _answered(api_path: str = "/api/chat", *, status: int = 200, streamed: bool = True,
              prompt: int | None = 5, generated: int | None = 3) -> Exchange:
    """An inference request the runner answered, as the usage filter left it: started at 0,
    first chunk at 0.5 s, last byte at 1.5 s."""
    exchange = make_exchange("POST", f"/ollama{api_path}")
    exchange.api_path = api_path
    exchange.upstream = "ollama"
    exchange.status = status
    exchange.model = "llama3.2:1b"
    exchange.first_byte_at, exchange.finished_at = 0.5, 1.5
    content_type = "application/x-ndjson" if streamed else "application/json; charset=utf-8"
    exchange.response_headers.add("Content-Type", content_type)
    if prompt is not None:
        exchange.notes["prompt_tokens"] = prompt
    if generated is not None:
        exchange.notes["completion_tokens"] = generated
    return exchange


class GenAIMetricsTests(SynchronousTestCase):
    """Tokens by model and type, duration, time to first token, time per output token."""

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = GenAIMetrics(self.registry)

    def sample(self, name: str, **labels: str) -> Any:
        return self.registry.get_sample_value(name, labels)

    def test_streamed_chat(self) -> None:
        """A streamed chat: input and output tokens, its duration, its first token at the
        first chunk, and the time per token after the first."""
        self.metrics.observe(_answered())
        chat = {"gen_ai_operation_name": "chat", **_MODEL}
        self.assertEqual(self.sample("gen_ai_client_token_usage_sum", gen_ai_token_type="input",
                                     **chat), 5.0)
        self.assertEqual(self.sample("gen_ai_client_token_usage_sum",
                                     gen_ai_token_type="output", **chat), 3.0)
        self.assertEqual(self.sample("gen_ai_server_request_duration_seconds_sum", **chat), 1.5)
        self.assertEqual(self.sample("gen_ai_server_time_to_first_token_seconds_sum", **chat),
                         0.5)
        self.assertEqual(self.sample("gen_ai_server_time_per_output_token_seconds_sum", **chat),
                         0.5)

    def test_operations(self) -> None:
        """Ollama's and OpenAI's endpoints are named as the conventions name operations."""
        for path, operation in (("/api/generate", "text_completion"),
                                ("/v1/completions", "text_completion"),
                                ("/v1/chat/completions", "chat"), ("/api/embed", "embeddings"),
                                ("/v1/embeddings", "embeddings")):
            with self.subTest(path=path):
                self.setUp()
                self.metrics.observe(_answered(path, streamed=False))
                self.assertEqual(self.sample("gen_ai_server_request_duration_seconds_count",
                                             gen_ai_operation_name=operation, **_MODEL), 1.0)

    def test_embeddings_have_no_output_tokens(self) -> None:
        """Embeddings count their input only."""
        self.metrics.observe(_answered("/api/embed", streamed=False, generated=0))
        embed = {"gen_ai_operation_name": "embeddings", **_MODEL}
        self.assertEqual(self.sample("gen_ai_client_token_usage_count",
                                     gen_ai_token_type="input", **embed), 1.0)
        self.assertIsNone(self.sample("gen_ai_client_token_usage_count",
                                      gen_ai_token_type="output", **embed))

    def test_whole_answer_has_no_first_token_time(self) -> None:
        """A whole (not streamed) answer comes at once: no time to first token, nor per
        token."""
        self.metrics.observe(_answered(streamed=False))
        chat = {"gen_ai_operation_name": "chat", **_MODEL}
        self.assertEqual(self.sample("gen_ai_server_request_duration_seconds_count", **chat),
                         1.0)
        self.assertIsNone(self.sample("gen_ai_server_time_to_first_token_seconds_count",
                                      **chat))

    def test_without_usage_filter_no_tokens(self) -> None:
        """Without the usage filter (no roles) there are no counts: no token metric, the
        timings still."""
        self.metrics.observe(_answered(prompt=None, generated=None))
        chat = {"gen_ai_operation_name": "chat", **_MODEL}
        self.assertIsNone(self.sample("gen_ai_client_token_usage_count",
                                      gen_ai_token_type="input", **chat))
        self.assertEqual(self.sample("gen_ai_server_time_to_first_token_seconds_count",
                                     **chat), 1.0)

    def test_refused_model_never_a_label(self) -> None:
        """A refused request's model, a string the client chose, is recorded nowhere."""
        exchange = _answered(status=403)
        exchange.model = "made-up/model:by-a-client"
        exchange.record_refusal(Reject(403, "no", reason="model not allowed"))
        self.metrics.observe(exchange)
        values = {value for family in self.registry.collect() for sample in family.samples
                  for value in sample.labels.values()}
        self.assertEqual(values, set())

    def test_gateway_answers_and_other_paths_left_out(self) -> None:
        """Answers no runner made, and requests that are not inference, add nothing."""
        own = _answered()
        own.upstream = None
        tags = _answered("/api/tags")
        for exchange in (own, tags):
            self.metrics.observe(exchange)
        self.assertEqual([sample for family in self.registry.collect()
                          for sample in family.samples], [])


class ModelLabelTests(SynchronousTestCase):
    """Model label values: normal forms, and a bounded number of them per runner."""

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = GenAIMetrics(self.registry, models_per_runner=2)

    def served(self, model: str, runner: str = "ollama") -> None:
        exchange = _answered(streamed=False)
        exchange.model, exchange.upstream = model, runner
        self.metrics.observe(exchange)

    def counts(self) -> dict[tuple[str, str], float]:
        """(request model, response model) labels → requests counted."""
        return {(sample.labels["gen_ai_request_model"], sample.labels["gen_ai_response_model"]):
                sample.value for family in self.registry.collect() for sample in family.samples
                if sample.name == "gen_ai_server_request_duration_seconds_count"}

    def test_normal_form(self) -> None:
        """Names of one model in another case, without their tag or with ``library/`` are
        one label value."""
        for model in ("Llama3.2", "library/llama3.2:latest", "llama3.2"):
            self.served(model)
        self.assertEqual(self.counts(), {("llama3.2:latest", "llama3.2:latest"): 3.0})

    def test_capped_per_runner(self) -> None:
        """Beyond a runner's first models, others are counted as ``other``; the first keep
        their label, and another runner has its own."""
        for model in ("a:1", "b:1", "c:1", "d:1", "a:1"):
            self.served(model)
        self.served("e:1", runner="gpu")
        self.assertEqual(self.counts(), {("a:1", "a:1"): 2.0, ("b:1", "b:1"): 1.0,
                                         ("other", "other"): 2.0, ("e:1", "e:1"): 1.0})


class GenAIBucketTests(SynchronousTestCase):
    """The bucket boundaries the semantic conventions advise."""

    def test_boundaries(self) -> None:
        """Token usage in powers of 4, durations doubling from 10 ms, and the conventions'
        lists for the time to first token and per output token."""
        self.assertEqual(TOKEN_USAGE_BUCKETS, tuple(4 ** n for n in range(14)))
        self.assertEqual(DURATION_BUCKETS, tuple(round(0.01 * 2 ** n, 2) for n in range(14)))
        self.assertEqual(TIME_TO_FIRST_TOKEN_BUCKETS[:3], (0.001, 0.005, 0.01))
        self.assertEqual(TIME_TO_FIRST_TOKEN_BUCKETS[-1], 10.0)
        self.assertEqual(TIME_PER_OUTPUT_TOKEN_BUCKETS[:2], (0.01, 0.025))
        self.assertEqual(TIME_PER_OUTPUT_TOKEN_BUCKETS[-1], 2.5)
