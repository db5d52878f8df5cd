"""Token counts in Ollama's answers, and stream endings that clients read as normal ends."""

from __future__ import annotations

import json

import ollama
import pydantic
from openai._streaming import SSEDecoder
from openai.types import Completion
from openai.types.chat import ChatCompletionChunk
from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.answers import (
    carries_text,
    embed_usage,
    is_usage_only_event,
    native_final_line,
    native_usage,
    openai_final_events,
    openai_usage,
    sse_data,
)

__all__ = ["NativeFinalLineTests", "NativeUsageTests", "OpenAIFinalEventsTests",
           "OpenAIUsageTests", "StreamReadingTests"]

_CREATED_AT = "2024-05-01T12:00:00.123456789Z"


def _events(stream: bytes) -> list[str]:
    """The data of each event, as the OpenAI client reads a stream (the framework adds the
    blank line after the last event)."""
    return [event.data for event in SSEDecoder().iter_bytes(iter([stream + b"\n\n"]))]


class NativeUsageTests(SynchronousTestCase):
    """``native_usage``: counts from a native stream's final object."""

    def test_final_object(self) -> None:
        """The final object gives (prompt, generated) tokens."""
        line = {"done": True, "prompt_eval_count": 12, "eval_count": 34}
        self.assertEqual(native_usage(line), (12, 34))

    def test_missing_counters(self) -> None:
        """A counter Ollama left out (a cached prompt) is 0."""
        self.assertEqual(native_usage({"done": True, "eval_count": 3}), (0, 3))

    def test_not_final(self) -> None:
        """A line before the end gives None."""
        for line in ({"done": False, "eval_count": 3}, {"response": "x"}, {"done": "true"}):
            with self.subTest(line=line):
                self.assertIsNone(native_usage(line))

    def test_malformed_counters(self) -> None:
        """Counters that are no counts are 0."""
        line = {"done": True, "prompt_eval_count": "12", "eval_count": True}
        self.assertEqual(native_usage(line), (0, 0))


class OpenAIUsageTests(SynchronousTestCase):
    """``openai_usage`` and ``is_usage_only_event``."""

    def test_usage(self) -> None:
        """``usage`` gives (prompt, completion) tokens."""
        answer = {"usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
        self.assertEqual(openai_usage(answer), (5, 7))

    def test_embeddings_usage(self) -> None:
        """Embeddings report no completion tokens: 0."""
        self.assertEqual(openai_usage({"usage": {"prompt_tokens": 5, "total_tokens": 5}}),
                         (5, 0))

    def test_no_usage(self) -> None:
        """A chunk without usage, or with a null one, gives None."""
        for chunk in ({"choices": []}, {"usage": None}):
            with self.subTest(chunk=chunk):
                self.assertIsNone(openai_usage(chunk))

    def test_usage_only_event(self) -> None:
        """The chunk ``include_usage`` adds has usage and no choices."""
        self.assertTrue(is_usage_only_event({"choices": [], "usage": {"prompt_tokens": 1}}))

    def test_chunk_with_choices(self) -> None:
        """A chunk with choices, or without usage, is not that chunk."""
        for chunk in ({"choices": [{"index": 0}], "usage": {"prompt_tokens": 1}},
                      {"choices": []}, {"choices": [], "usage": None}):
            with self.subTest(chunk=chunk):
                self.assertFalse(is_usage_only_event(chunk))


class NativeFinalLineTests(SynchronousTestCase):
    """``native_final_line``: a last NDJSON line Ollama's own client reads."""

    def test_generate(self) -> None:
        """Generate: an empty response, done for length, with the counts."""
        line = native_final_line("generate", "llama3", _CREATED_AT, 10, 20)
        self.assertEqual(json.loads(line), {
            "model": "llama3", "created_at": _CREATED_AT, "response": "", "done": True,
            "done_reason": "length", "prompt_eval_count": 10, "eval_count": 20})

    def test_chat(self) -> None:
        """Chat: an empty assistant message instead of the response."""
        line = json.loads(native_final_line("chat", "llama3", _CREATED_AT, 1, 2))
        self.assertEqual(line["message"], {"role": "assistant", "content": ""})
        self.assertNotIn("response", line)

    def test_one_compact_line(self) -> None:
        """One line, no newline, non-ASCII model names as UTF-8."""
        line = native_final_line("chat", "mod\u00e8le", _CREATED_AT, 1, 2)
        self.assertNotIn(b"\n", line)
        self.assertNotIn(b" ", line)
        self.assertIn("mod\u00e8le".encode(), line)

    def test_ollama_client_reads_generate(self) -> None:
        """The ``ollama`` package reads the generate line as a finished response."""
        answer = ollama.GenerateResponse.model_validate_json(
            native_final_line("generate", "llama3", _CREATED_AT, 10, 20))
        self.assertEqual((answer.done, answer.done_reason, answer.prompt_eval_count,
                          answer.eval_count), (True, "length", 10, 20))

    def test_ollama_client_reads_chat(self) -> None:
        """The ``ollama`` package reads the chat line as a finished response."""
        answer = ollama.ChatResponse.model_validate_json(
            native_final_line("chat", "llama3", _CREATED_AT, 10, 20))
        self.assertEqual((answer.done, answer.message.role, answer.message.content),
                         (True, "assistant", ""))

    def test_other_kinds(self) -> None:
        """Endpoints without a native stream are a caller's mistake."""
        self.assertRaises(ValueError, native_final_line, "embed", "m", _CREATED_AT, 0, 0)


class OpenAIFinalEventsTests(SynchronousTestCase):
    """``openai_final_events``: a last chunk and ``[DONE]`` the OpenAI client reads."""

    def test_without_final_terminator(self) -> None:
        """Two events, the last without its blank line."""
        stream = openai_final_events("openai_chat", "m", 1, "id")
        self.assertTrue(stream.startswith(b"data: {"))
        self.assertTrue(stream.endswith(b"}\n\ndata: [DONE]"))

    def test_chat_chunk(self) -> None:
        """Chat: an empty delta finishing with ``length``."""
        data = _events(openai_final_events("openai_chat", "llama3", 1714564800, "chatcmpl-9"))
        self.assertEqual(data[1], "[DONE]")
        chunk = ChatCompletionChunk.model_validate(json.loads(data[0]))
        self.assertEqual((chunk.id, chunk.object, chunk.created, chunk.model),
                         ("chatcmpl-9", "chat.completion.chunk", 1714564800, "llama3"))
        self.assertEqual([(c.index, c.finish_reason, c.delta.content) for c in chunk.choices],
                         [(0, "length", None)])

    def test_completions_chunk(self) -> None:
        """Completions: an empty text finishing with ``length``."""
        data = _events(openai_final_events("openai_completions", "llama3", 1714564800,
                                           "cmpl-9"))
        self.assertEqual(data[1], "[DONE]")
        chunk = Completion.model_validate(json.loads(data[0]))
        self.assertEqual([(c.index, c.finish_reason, c.text) for c in chunk.choices],
                         [(0, "length", "")])

    def test_validation_is_real(self) -> None:
        """The OpenAI types do refuse a chunk without its choices (so the checks above
        check something)."""
        data = json.loads(_events(openai_final_events("openai_chat", "m", 1, "id"))[0])
        del data["choices"]
        self.assertRaises(pydantic.ValidationError, ChatCompletionChunk.model_validate, data)

    def test_other_kinds(self) -> None:
        """Endpoints without an OpenAI-style stream are a caller's mistake."""
        self.assertRaises(ValueError, openai_final_events, "chat", "m", 1, "id")


class StreamReadingTests(SynchronousTestCase):
    """What the usage filter reads of a streamed or whole answer."""

    def test_sse_data(self) -> None:
        """An event's ``data:`` lines are joined; an event without one has no data."""
        self.assertEqual(sse_data(b'data: {"a":1}'), b'{"a":1}')
        self.assertEqual(sse_data(b"event: x\ndata:one\ndata: two"), b"one\ntwo")
        self.assertIsNone(sse_data(b": keep-alive"))

    def test_carries_text(self) -> None:
        """A chunk with content, a tool call or completion text is a token; a role-only or
        finishing chunk is not."""
        self.assertTrue(carries_text({"choices": [{"delta": {"content": "Hi"}}]}))
        self.assertTrue(carries_text({"choices": [{"delta": {"tool_calls": [{}]}}]}))
        self.assertTrue(carries_text({"choices": [{"text": "Hi"}]}))
        self.assertFalse(carries_text({"choices": [{"delta": {"role": "assistant"}}]}))
        self.assertFalse(carries_text({"choices": "odd"}))

    def test_embed_usage(self) -> None:
        """``/api/embed`` counts its prompt only; a missing or odd count is no count."""
        self.assertEqual(embed_usage({"prompt_eval_count": 7}), (7, 0))
        self.assertIsNone(embed_usage({"prompt_eval_count": True}))
        self.assertIsNone(embed_usage({}))
