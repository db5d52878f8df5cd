"""What a request asks of Ollama, and rewrites of it that Ollama reads as meant."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.endpoints import Endpoint, endpoint_for
from runnergw.ollama.gojson import GoJsonError, GoType, JsonObject, decode_object
from runnergw.ollama.gojson_writing import encode
from runnergw.ollama.rewrites import (
    answer_streams,
    estimate_prompt_tokens,
    generation_cap,
    keep_alive_fields,
    model_fields,
    requested_model,
    usage_not_asked,
)

__all__ = ["AnswerStreamsTests", "CapNativeTests", "CapOpenAITests", "EstimatePromptTokensTests",
           "KeepAliveFieldsTests", "ModelFieldsTests", "RequestedModelTests"]


def _endpoint(path: str) -> Endpoint:
    endpoint = endpoint_for(path)
    assert endpoint is not None, path
    return endpoint


CHAT = _endpoint("/api/chat")
GENERATE = _endpoint("/api/generate")
EMBED = _endpoint("/api/embed")
EMBEDDINGS = _endpoint("/api/embeddings")
SHOW = _endpoint("/api/show")
PULL = _endpoint("/api/pull")
TAGS = _endpoint("/api/tags")
OPENAI_CHAT = _endpoint("/v1/chat/completions")
OPENAI_COMPLETIONS = _endpoint("/v1/completions")
OPENAI_EMBEDDINGS = _endpoint("/v1/embeddings")


def _body(text: str) -> JsonObject:
    return decode_object(text.encode())


def cap_generated_tokens(body: JsonObject, endpoint: Endpoint, cap: int) -> JsonObject | None:
    """``body`` with ``generation_cap``'s fields set as the gateway sets them (members of
    ``options`` merged into the client's), or None when the body asks for no more."""
    _, fields = generation_cap(body, endpoint, cap)
    if not fields:
        return None
    if "options" in fields:
        merged = body.get("options", go_type=GoType.OBJECT) or JsonObject(())
        fields = {**fields, "options": merged.with_exact(fields["options"])}
    return body.with_fields(fields)


def _seen(body: JsonObject | None) -> dict[str, Any]:
    """What a plain JSON reader (last duplicate winning) sees of a rewritten body."""
    assert body is not None
    return json.loads(encode(body))


class RequestedModelTests(SynchronousTestCase):
    """``requested_model``: the model Ollama will run or show."""

    def test_model(self) -> None:
        """The ``model`` of an inference request."""
        self.assertEqual(requested_model(_body('{"model":"llama3"}'), CHAT), "llama3")

    def test_model_key_case(self) -> None:
        """``MODEL`` names the model, the last spelling winning."""
        body = _body('{"model":"allowed","MODEL":"blocked"}')
        self.assertEqual(requested_model(body, CHAT), "blocked")

    def test_null_after_model(self) -> None:
        """A later ``null`` leaves the model Ollama runs as it was."""
        body = _body('{"model":"blocked","model":null}')
        self.assertEqual(requested_model(body, GENERATE), "blocked")

    def test_no_model(self) -> None:
        """No model, or an empty one: None."""
        for text in ('{"prompt":"x"}', '{"model":""}', '{"model":null}'):
            with self.subTest(body=text):
                self.assertIsNone(requested_model(_body(text), CHAT))

    def test_not_a_string(self) -> None:
        """A model that is not a string is refused."""
        for text in ('{"model":5}', '{"model":["a"]}', '{"model":true}'):
            with self.subTest(body=text):
                self.assertRaises(GoJsonError, requested_model, _body(text), CHAT)

    def test_name_ignored_for_inference(self) -> None:
        """Inference endpoints read no ``name``."""
        self.assertIsNone(requested_model(_body('{"name":"llama3"}'), CHAT))

    def test_legacy_name(self) -> None:
        """Show and the management endpoints take ``name`` when ``model`` is empty."""
        for endpoint in (SHOW, PULL):
            with self.subTest(endpoint=endpoint.kind):
                body = _body('{"model":"","Name":"llama3"}')
                self.assertEqual(requested_model(body, endpoint), "llama3")

    def test_model_and_same_name(self) -> None:
        """``model`` and ``name`` naming one model are fine."""
        body = _body('{"model":"llama3","name":"library/LLAMA3:latest"}')
        self.assertEqual(requested_model(body, SHOW), "llama3")

    def test_model_and_other_name(self) -> None:
        """``model`` and ``name`` naming two models are refused."""
        body = _body('{"model":"llama3","name":"mistral"}')
        error = self.assertRaises(GoJsonError, requested_model, body, SHOW)
        self.assertEqual(str(error), "both model and name are set")

    def test_model_and_invalid_name(self) -> None:
        """A name that is no model name at all differs from any model."""
        body = _body('{"model":"llama3","name":"!"}')
        self.assertRaises(GoJsonError, requested_model, body, PULL)

    def test_endpoint_naming_no_model(self) -> None:
        """Endpoints whose body names no model give None."""
        self.assertIsNone(requested_model(_body('{"model":"x"}'), TAGS))


class ModelFieldsTests(SynchronousTestCase):
    """``model_fields``: one model, under one key."""

    def test_replaces_every_spelling(self) -> None:
        """Every spelling of ``model`` and the older ``name`` goes; ``model`` is set once."""
        body = _body('{"MODEL":"a","prompt":"p","model":"b","name":"c"}')
        self.assertEqual(body.with_fields(model_fields(body, SHOW, "alias:7b")).pairs,
                         (("prompt", "p"), ("model", "alias:7b")))

    def test_name_left_where_unread(self) -> None:
        """Inference endpoints read no ``name``: only ``model`` is set."""
        self.assertEqual(model_fields(_body('{"model":"a"}'), CHAT, "b"), {"model": "b"})


class KeepAliveFieldsTests(SynchronousTestCase):
    """``keep_alive_fields``: how long Ollama keeps the model loaded."""

    def test_native_endpoints(self) -> None:
        """Generate, chat, embed and embeddings get the value, every spelling replaced."""
        for endpoint in (GENERATE, CHAT, EMBED, EMBEDDINGS):
            with self.subTest(endpoint=endpoint.kind):
                body = _body('{"keep_alive":-1,"\\u212aeep_alive":"24h"}')
                self.assertEqual(body.with_fields(keep_alive_fields(endpoint, "5m")).pairs,
                                 (("keep_alive", "5m"),))

    def test_other_endpoints_unchanged(self) -> None:
        """Endpoints that read no ``keep_alive`` get nothing set."""
        for endpoint in (OPENAI_CHAT, SHOW):
            with self.subTest(endpoint=endpoint.kind):
                self.assertEqual(keep_alive_fields(endpoint, "5m"), {})


class CapNativeTests(SynchronousTestCase):
    """``cap_generated_tokens`` on generate and chat: ``options.num_predict``."""

    def assertCapped(self, text: str, num_predict: int, endpoint: Endpoint = CHAT) -> None:
        capped = cap_generated_tokens(_body(text), endpoint, 100)
        self.assertEqual(_seen(capped)["options"]["num_predict"], num_predict)

    def test_missing_options(self) -> None:
        """A body without options gets options with the cap."""
        self.assertCapped('{"model":"m"}', 100)

    def test_missing_count(self) -> None:
        """Options without ``num_predict`` get the cap, other options kept."""
        capped = cap_generated_tokens(_body('{"options":{"seed":1}}'), GENERATE, 100)
        self.assertEqual(_seen(capped)["options"], {"seed": 1, "num_predict": 100})

    def test_above_cap(self) -> None:
        """A count above the cap is lowered to it."""
        self.assertCapped('{"options":{"num_predict":5000}}', 100)

    def test_unlimited(self) -> None:
        """-1 (forever), -2 (fill the context) and 0 (no limit to Ollama's runners) become
        the cap."""
        for count in (-1, -2, 0):
            with self.subTest(count=count):
                self.assertCapped(f'{{"options":{{"num_predict":{count}}}}}', 100)

    def test_within_cap_unchanged(self) -> None:
        """A count within the cap leaves the body as it is: None."""
        for count in ("1", "100", "50.0"):
            with self.subTest(count=count):
                body = _body(f'{{"options":{{"num_predict":{count}}}}}')
                self.assertIsNone(cap_generated_tokens(body, CHAT, 100))

    def test_last_count_wins(self) -> None:
        """Of duplicate counts in options, Ollama reads the last one."""
        self.assertCapped('{"options":{"num_predict":5,"num_predict":5000}}', 100)

    def test_null_count(self) -> None:
        """A ``null`` count is no count (Ollama skips it): the cap."""
        self.assertCapped('{"options":{"num_predict":50,"num_predict":null}}', 100)

    def test_key_case_in_options(self) -> None:
        """Options keys are exact: ``NUM_PREDICT`` is not the count."""
        self.assertCapped('{"options":{"NUM_PREDICT":5}}', 100)

    def test_options_spread_over_keys(self) -> None:
        """Options given twice add up as in Go: the count in the first one is read."""
        body = _body('{"options":{"num_predict":5000},"OPTIONS":{"seed":1}}')
        self.assertEqual(_seen(cap_generated_tokens(body, CHAT, 100))["options"],
                         {"num_predict": 100, "seed": 1})

    def test_options_within_cap_spread_over_keys(self) -> None:
        """A count within the cap given in the first of two options is left as it is."""
        body = _body('{"options":{"num_predict":5},"options":{"seed":1}}')
        self.assertIsNone(cap_generated_tokens(body, CHAT, 100))

    def test_options_cleared(self) -> None:
        """Options set to ``null`` after a count hold no count: the cap."""
        self.assertCapped('{"options":{"num_predict":5},"options":null}', 100)

    def test_options_written_once(self) -> None:
        """The rewritten body holds one ``options`` key and one ``num_predict``."""
        body = _body('{"Options":{"num_predict":-1},"options":{"num_predict":-1}}')
        capped = cap_generated_tokens(body, CHAT, 100)
        assert capped is not None
        self.assertEqual([key for key, _ in capped], ["options"])
        self.assertEqual(capped.get("options").pairs, (("num_predict", 100),))

    def test_not_an_integer(self) -> None:
        """A count with a fraction, a string or a bool is refused."""
        for count in ("1.5", '"10"', "true", "[1]"):
            with self.subTest(count=count):
                body = _body(f'{{"options":{{"num_predict":{count}}}}}')
                error = self.assertRaises(GoJsonError, cap_generated_tokens, body, CHAT, 100)
                self.assertEqual(str(error), "options.num_predict must be an integer")

    def test_options_not_an_object(self) -> None:
        """Options that are not an object are refused."""
        self.assertRaises(GoJsonError, cap_generated_tokens, _body('{"options":[1]}'), CHAT, 100)

    def test_non_generating_endpoints(self) -> None:
        """Embeddings and the like generate nothing: None."""
        for endpoint in (EMBED, EMBEDDINGS, OPENAI_EMBEDDINGS, SHOW):
            with self.subTest(endpoint=endpoint.kind):
                self.assertIsNone(cap_generated_tokens(_body("{}"), endpoint, 100))

    def test_cap_must_be_positive(self) -> None:
        """A cap of 0 or less, or not an integer, is a filter's mistake."""
        for cap in (0, -1, True, 1.5):
            with self.subTest(cap=cap):
                self.assertRaises(ValueError, cap_generated_tokens, _body("{}"), CHAT, cap)


class CapOpenAITests(SynchronousTestCase):
    """``cap_generated_tokens`` on the OpenAI endpoints: ``max_tokens``."""

    def capped(self, text: str, endpoint: Endpoint = OPENAI_CHAT) -> dict[str, Any]:
        return _seen(cap_generated_tokens(_body(text), endpoint, 100))

    def test_missing(self) -> None:
        """No limit asked: ``max_tokens`` set to the cap."""
        self.assertEqual(self.capped('{"model":"m"}')["max_tokens"], 100)

    def test_above_cap(self) -> None:
        """A limit above the cap is lowered, every spelling replaced."""
        capped = cap_generated_tokens(_body('{"max_tokens":50,"MAX_TOKENS":5000}'),
                                      OPENAI_CHAT, 100)
        assert capped is not None
        self.assertEqual(capped.pairs, (("max_tokens", 100),))

    def test_zero_and_negative(self) -> None:
        """0 and negative limits are no limit to Ollama: the cap."""
        for count in (0, -1):
            with self.subTest(count=count):
                self.assertEqual(self.capped(f'{{"max_tokens":{count}}}')["max_tokens"], 100)

    def test_null_after_limit(self) -> None:
        """A later ``null`` clears the limit (a Go pointer): the cap."""
        self.assertEqual(self.capped('{"max_tokens":5,"max_tokens":null}')["max_tokens"], 100)

    def test_within_cap_unchanged(self) -> None:
        """A limit within the cap: None."""
        self.assertIsNone(cap_generated_tokens(_body('{"max_tokens":10}'), OPENAI_CHAT, 100))

    def test_completion_tokens_only(self) -> None:
        """Only ``max_completion_tokens``, which Ollama does not read: ``max_tokens`` set to
        it, so the client gets what it asked."""
        capped = self.capped('{"max_completion_tokens":10}')
        self.assertEqual((capped["max_tokens"], capped["max_completion_tokens"]), (10, 10))

    def test_completion_tokens_above_cap(self) -> None:
        """``max_completion_tokens`` above the cap is lowered, and ``max_tokens`` set."""
        capped = self.capped('{"max_completion_tokens":5000}')
        self.assertEqual((capped["max_tokens"], capped["max_completion_tokens"]), (100, 100))

    def test_both_given(self) -> None:
        """Both given: each is lowered on its own."""
        capped = self.capped('{"max_tokens":20,"max_completion_tokens":5000}')
        self.assertEqual((capped["max_tokens"], capped["max_completion_tokens"]), (20, 100))

    def test_completions(self) -> None:
        """Completions: ``max_tokens`` only."""
        capped = self.capped('{"max_tokens":5000,"max_completion_tokens":5000}',
                             OPENAI_COMPLETIONS)
        self.assertEqual((capped["max_tokens"], capped["max_completion_tokens"]), (100, 5000))

    def test_not_an_integer(self) -> None:
        """Ollama reads these into Go ints: fractions, whole floats, strings, bools refused."""
        for count in ("1.5", "10.0", "1e2", '"10"', "false"):
            with self.subTest(count=count):
                body = _body(f'{{"max_tokens":{count}}}')
                error = self.assertRaises(GoJsonError, cap_generated_tokens, body,
                                          OPENAI_CHAT, 100)
                self.assertEqual(str(error), "max_tokens must be an integer")

    def test_completion_tokens_not_an_integer(self) -> None:
        """``max_completion_tokens`` is checked alike."""
        self.assertRaises(GoJsonError, cap_generated_tokens,
                          _body('{"max_completion_tokens":"x"}'), OPENAI_CHAT, 100)


class EstimatePromptTokensTests(SynchronousTestCase):
    """``estimate_prompt_tokens``: the documented rule."""

    def test_generate(self) -> None:
        """Prompt, system and suffix bytes over 4, rounded up."""
        body = _body('{"prompt":"12345678","system":"1234","suffix":"1"}')
        self.assertEqual(estimate_prompt_tokens(body, GENERATE), 4)

    def test_utf8_bytes(self) -> None:
        """Bytes are counted, not characters."""
        self.assertEqual(estimate_prompt_tokens(_body('{"prompt":"\u00e9\u00e9\u00e9\u00e9"}'),
                                                GENERATE), 2)

    def test_generate_images_and_context(self) -> None:
        """768 per image, one per context token."""
        body = _body('{"prompt":"","images":["a","b"],"context":[1,2,3]}')
        self.assertEqual(estimate_prompt_tokens(body, GENERATE), 2 * 768 + 3)

    def test_generates_at_least_one(self) -> None:
        """A generating endpoint is estimated at one token at least."""
        self.assertEqual(estimate_prompt_tokens(_body("{}"), GENERATE), 1)

    def test_chat(self) -> None:
        """Contents, 4 per message, 768 per image."""
        body = _body('{"messages":[{"role":"system","content":"12345678"},'
                     '{"role":"user","content":"1234","images":["x"]}]}')
        self.assertEqual(estimate_prompt_tokens(body, CHAT), 3 + 2 * 4 + 768)

    def test_chat_tools(self) -> None:
        """Tool definitions count as their JSON."""
        tools = '[{"type":"function","function":{"name":"f"}}]'
        body = _body(f'{{"messages":[],"tools":{tools}}}')
        self.assertEqual(estimate_prompt_tokens(body, CHAT), -(-len(tools) // 4))

    def test_chat_messages_read_as_ollama(self) -> None:
        """Messages are read as Ollama reads them: a content kept by Go counts."""
        body = _body('{"messages":[{"role":"user","content":"' + "x" * 400 + '"}],'
                     '"messages":[{"role":"user"}]}')
        self.assertEqual(estimate_prompt_tokens(body, CHAT), 100 + 4)

    def test_openai_chat(self) -> None:
        """String contents, text parts and image parts."""
        body = _body('{"messages":[{"role":"user","content":"12345678"},'
                     '{"role":"user","content":[{"type":"text","text":"1234"},'
                     '{"type":"image_url","image_url":{"url":"data:,"}}]}]}')
        self.assertEqual(estimate_prompt_tokens(body, OPENAI_CHAT), 3 + 2 * 4 + 768)

    def test_openai_completions(self) -> None:
        """A prompt string, or a list of strings."""
        for prompt in ('"12345678"', '["1234","5678"]'):
            with self.subTest(prompt=prompt):
                body = _body(f'{{"prompt":{prompt}}}')
                self.assertEqual(estimate_prompt_tokens(body, OPENAI_COMPLETIONS), 2)

    def test_embeddings(self) -> None:
        """``input`` of embed and OpenAI embeddings, ``prompt`` of the older embeddings."""
        self.assertEqual(estimate_prompt_tokens(_body('{"input":["1234","12345"]}'), EMBED), 3)
        self.assertEqual(estimate_prompt_tokens(_body('{"input":"12345"}'),
                                                OPENAI_EMBEDDINGS), 2)
        self.assertEqual(estimate_prompt_tokens(_body('{"prompt":"12345"}'), EMBEDDINGS), 2)

    def test_nothing_to_read(self) -> None:
        """An endpoint that reads no prompt: 0."""
        self.assertEqual(estimate_prompt_tokens(_body('{"model":"m"}'), SHOW), 0)

    def test_malformed_fields_ignored(self) -> None:
        """Fields Ollama would refuse count as nothing: the estimate never fails."""
        body = _body('{"messages":"x","prompt":5,"tools":7}')
        self.assertEqual(estimate_prompt_tokens(body, CHAT), 1)
        self.assertEqual(estimate_prompt_tokens(body, GENERATE), 1)


class AnswerStreamsTests(SynchronousTestCase):
    """Whether the answer streams, and whether a stream's client asked for usage."""

    def test_native_streams_unless_false(self) -> None:
        """Ollama's API streams unless ``stream`` is false (a null is "not given")."""
        self.assertTrue(answer_streams(_body('{"model":"m"}'), CHAT))
        self.assertTrue(answer_streams(_body('{"stream":false,"stream":null}'), CHAT))
        self.assertFalse(answer_streams(_body('{"STREAM":false}'), GENERATE))

    def test_openai_streams_only_when_true(self) -> None:
        """The OpenAI API streams only when asked; a null after true leaves it true."""
        self.assertFalse(answer_streams(_body('{"model":"m"}'), OPENAI_CHAT))
        self.assertTrue(answer_streams(_body('{"stream":true,"stream":null}'), OPENAI_CHAT))

    def test_usage_not_asked(self) -> None:
        """A stream without ``include_usage`` did not ask; one with it did; a whole answer
        has its usage anyway."""
        self.assertTrue(usage_not_asked(_body('{"stream":true}')))
        self.assertFalse(usage_not_asked(
            _body('{"stream":true,"stream_options":{"include_usage":true}}')))
        self.assertFalse(usage_not_asked(_body('{"stream":false}')))
