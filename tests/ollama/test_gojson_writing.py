"""Bodies written back for Ollama: whole, or with fields appended to the client's bytes."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.gojson import JsonObject, decode_object
from runnergw.ollama.gojson_writing import append_fields, encode

__all__ = ["AppendFieldsTests", "EncodeTests"]


def _deep_object(depth: int) -> JsonObject:
    """``{"a":{"a":…1…}}``, ``depth`` objects deep, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = JsonObject([("a", value)])
    assert isinstance(value, JsonObject)
    return value


class EncodeTests(SynchronousTestCase):
    """``encode``: compact UTF-8 JSON that reads back the same."""

    def test_compact_utf8(self) -> None:
        """No spaces, non-ASCII written as UTF-8."""
        self.assertEqual(encode({"a": [1, "\u00e9"], "b": None}),
                         '{"a":[1,"\u00e9"],"b":null}'.encode())

    def test_duplicates_kept(self) -> None:
        """A JsonObject is written pair by pair, duplicates included."""
        self.assertEqual(encode(JsonObject([("a", 1), ("a", 2)])), b'{"a":1,"a":2}')

    def test_round_trip(self) -> None:
        """A decoded body written and read again is the same."""
        body = decode_object(b'{"model":"m","options":{"temperature":0.7,"stop":["\\n"]},'
                             b'"messages":[{"role":"user","content":"\\u0000 \\"q\\""}],'
                             b'"x":[],"y":{},"z":[true,false,null,-0.5,12]}')
        self.assertEqual(decode_object(encode(body)), body)

    def test_floats_round_trip(self) -> None:
        """Floats are written so that they read back equal."""
        values = [0.1, 1e-7, 1e300, 5e-324, 123456789.123456789, -2.5]
        self.assertEqual(json.loads(encode(values)), values)

    def test_non_finite_refused(self) -> None:
        """NaN and infinities cannot be written."""
        for value in (float("nan"), float("inf"), float("-inf")):
            with self.subTest(value=value):
                self.assertRaises(ValueError, encode, {"a": value})

    def test_bools_are_not_numbers(self) -> None:
        """``True`` is written ``true``, not ``1``."""
        self.assertEqual(encode([True, False, 1, 0]), b"[true,false,1,0]")

    def test_tuples_are_arrays(self) -> None:
        """Tuples are written as arrays."""
        self.assertEqual(encode({"a": (1, 2)}), b'{"a":[1,2]}')

    def test_control_characters_escaped(self) -> None:
        """Control characters in strings are escaped."""
        self.assertEqual(encode("a\nb\x01"), b'"a\\nb\\u0001"')

    def test_lone_surrogate_refused(self) -> None:
        """A lone surrogate cannot be written as UTF-8."""
        self.assertRaises(ValueError, encode, "\ud800")

    def test_other_types_refused(self) -> None:
        """Keys that are not strings, and values of other types, are refused."""
        self.assertRaises(TypeError, encode, {1: "a"})
        self.assertRaises(TypeError, encode, {"a": object()})

    def test_deep_value(self) -> None:
        """A value nested deeper than Python recursion goes is written all the same."""
        self.assertEqual(encode(_deep_object(5000)), b'{"a":' * 5000 + b"1" + b"}" * 5000)


class AppendFieldsTests(SynchronousTestCase):
    """``append_fields``: the client's bytes kept, fields written after its last member."""

    def test_appended_after_the_last_member(self) -> None:
        """Spacing and members stay as they came; the fields follow, compact."""
        self.assertEqual(append_fields(b'{ "model" : "a" }\n', {"keep_alive": "5m",
                                                                 "options": {"n": 1}}),
                         b'{ "model" : "a","keep_alive":"5m","options":{"n":1}}')

    def test_empty_object(self) -> None:
        """An empty object gets no stray comma."""
        self.assertEqual(append_fields(b"{ }", {"a": True}), b'{"a":true}')

    def test_read_back_as_set(self) -> None:
        """Go reads the appended fields (the last of a repeated key) as ``appended`` does."""
        body = b'{"model":"a","stream":true}'
        fields = {"model": "b", "stream": False}
        written = append_fields(body, fields)
        self.assertEqual(decode_object(written).to_python(),
                         decode_object(body).appended(fields).to_python())

    def test_nothing_to_append(self) -> None:
        """No fields: the very same bytes."""
        body = b'{"a":1}'
        self.assertIs(append_fields(body, {}), body)

    def test_not_an_object(self) -> None:
        """Bytes that do not end an object are refused."""
        self.assertRaises(ValueError, append_fields, b"[1]", {"a": 1})
