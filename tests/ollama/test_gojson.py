"""Bodies read as Go's ``encoding/json`` reads them into Ollama's request structs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.ollama.gojson import (
    REMOVE,
    GoJsonError,
    GoType,
    JsonObject,
    decode_object,
    fold_key,
)

__all__ = ["DecodeObjectTests", "FoldKeyTests", "GetExactTests",
           "GetObjectTests", "GetSliceTests", "GetTests", "ToPythonTests", "WithFieldsTests"]


def _object(text: str) -> JsonObject:
    return decode_object(text.encode())


def _nested(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def _deep_object(depth: int) -> JsonObject:
    """``{"a":{"a":…1…}}``, ``depth`` objects deep, built without recursion."""
    value: object = 1
    for _ in range(depth):
        value = JsonObject([("a", value)])
    assert isinstance(value, JsonObject)
    return value


class DecodeObjectTests(SynchronousTestCase):
    """``decode_object``: what is read, and what is refused rather than read otherwise."""

    def assertRefused(self, body: bytes, message: str) -> None:
        error = self.assertRaises(GoJsonError, decode_object, body)
        self.assertIn(message, str(error))

    def test_pairs_in_order_duplicates_kept(self) -> None:
        """Every key stays, in order, a repeated one as often as it comes."""
        self.assertEqual(_object('{"b":1,"a":2,"b":3}').pairs, (("b", 1), ("a", 2), ("b", 3)))

    def test_nested_objects(self) -> None:
        """Objects inside objects and arrays are JsonObjects too."""
        body = _object('{"o":{"k":1},"l":[{"k":2}]}')
        self.assertEqual(body.pairs[0][1], JsonObject([("k", 1)]))
        self.assertEqual(body.pairs[1][1], [JsonObject([("k", 2)])])

    def test_empty_body(self) -> None:
        """No body is what Ollama calls a missing body."""
        self.assertRefused(b"", "missing request body")

    def test_whitespace_only_body(self) -> None:
        """A body of JSON whitespace is missing too (Go's decoder reads end of input)."""
        self.assertRefused(b" \r\n\t", "missing request body")

    def test_invalid_utf8(self) -> None:
        """Bytes that are not UTF-8 are refused (Go would read U+FFFD in their place)."""
        self.assertRefused(b'{"model":"\xff"}', "not valid UTF-8")

    def test_encoded_surrogate(self) -> None:
        """A surrogate encoded as UTF-8 bytes is not UTF-8 either."""
        self.assertRefused(b'{"model":"\xed\xa0\x80"}', "not valid UTF-8")

    def test_byte_order_mark(self) -> None:
        """A UTF-8 byte order mark is not JSON (Go refuses it too)."""
        self.assertRefused(b'\xef\xbb\xbf{"model":"x"}', "invalid JSON")

    def test_not_json(self) -> None:
        """Broken JSON is refused with where it broke."""
        self.assertRefused(b'{"model":"x",}', "invalid JSON")

    def test_message_never_quotes_the_body(self) -> None:
        """The refusal says what is wrong and nothing of what was sent."""
        error = self.assertRaises(GoJsonError, decode_object, b'{"prompt":"secret" oops}')
        self.assertNotIn("secret", str(error))

    def test_trailing_data(self) -> None:
        """Data after the object is refused (gin's decoder would read the first value only)."""
        self.assertRefused(b'{"model":"a"}{"model":"b"}', "data after the JSON value")

    def test_trailing_whitespace(self) -> None:
        """Whitespace after the object is no data."""
        self.assertEqual(decode_object(b'{"a":1} \r\n').pairs, (("a", 1),))

    def test_nan_and_infinity(self) -> None:
        """NaN and Infinity are not JSON, and Go refuses them."""
        for literal in ("NaN", "Infinity", "-Infinity"):
            with self.subTest(literal=literal):
                self.assertRefused(f'{{"a":{literal}}}'.encode(), "NaN and Infinity")

    def test_float_beyond_float64(self) -> None:
        """A number too large for a float64 is refused (Python would read infinity)."""
        for number in ("1e400", "-1e400", "1.5E+309"):
            with self.subTest(number=number):
                self.assertRefused(f'{{"a":{number}}}'.encode(), "number is too large")

    def test_integer_beyond_float64(self) -> None:
        """An integer of more digits than a float64 holds is refused as Go refuses it."""
        self.assertRefused(b'{"a":-' + b"9" * 309 + b"}", "number is too large")

    def test_integer_with_very_many_digits(self) -> None:
        """An integer past Python's digit limit is refused the same way."""
        self.assertRefused(b'{"a":' + b"9" * 5000 + b"}", "number is too large")

    def test_large_integer_within_float64(self) -> None:
        """A large integer that fits a float64 is read exactly."""
        self.assertEqual(decode_object(b'{"a":1180591620717411303424}').pairs,
                         (("a", 2 ** 70),))

    def test_top_level_not_an_object(self) -> None:
        """A body that is not one object is refused."""
        for body in (b"[]", b'"model"', b"1", b"null", b"true"):
            with self.subTest(body=body):
                self.assertRefused(body, "must be a JSON object")

    def test_lone_surrogate_in_a_value(self) -> None:
        """A lone surrogate escape is refused (Go reads U+FFFD, Python the surrogate)."""
        self.assertRefused(b'{"model":"a\\ud800"}', "lone UTF-16 surrogate")

    def test_lone_surrogate_in_a_key(self) -> None:
        """In a key too."""
        self.assertRefused(b'{"mod\\uDFFFel":"a"}', "lone UTF-16 surrogate")

    def test_lone_surrogate_deep_in_an_array(self) -> None:
        """And in a string nested in arrays."""
        self.assertRefused(b'{"a":[[1,"\\udc00"]]}', "lone UTF-16 surrogate")

    def test_reversed_surrogate_pair(self) -> None:
        """A low surrogate before a high one is two lone surrogates."""
        self.assertRefused(b'{"a":"\\ude00\\ud83d"}', "lone UTF-16 surrogate")

    def test_surrogate_pair(self) -> None:
        """A high and low surrogate escape together are one character."""
        self.assertEqual(decode_object(b'{"a":"\\ud83d\\ude00"}').pairs, (("a", "\U0001f600"),))

    def test_escaped_backslash_before_u(self) -> None:
        """An escaped backslash followed by ``ud800`` is text, no escape."""
        self.assertEqual(decode_object(b'{"a":"\\\\ud800"}').pairs, (("a", "\\ud800"),))

    def test_deep_nesting(self) -> None:
        """Nesting deeper than Python reads is refused, not a crash."""
        self.assertRefused(_nested(5000), "nests too deeply")

    def test_nesting_beyond_go_limit(self) -> None:
        """Nesting past Go's 10000 levels is refused before it is parsed."""
        self.assertRefused(_nested(10_001), "nests too deeply")

    def test_brackets_in_strings_are_no_nesting(self) -> None:
        """Many brackets inside a string are text, not nesting."""
        body = b'{"a":"' + b"[" * 10_001 + b'"}'
        self.assertEqual(decode_object(body).pairs, (("a", "[" * 10_001),))

    def test_moderate_nesting(self) -> None:
        """Ordinary nesting is read."""
        self.assertEqual(len(decode_object(_nested(100)).pairs), 1)

    def test_error_is_a_value_error(self) -> None:
        """Callers catching ValueError catch these refusals too."""
        self.assertTrue(issubclass(GoJsonError, ValueError))


class FoldKeyTests(SynchronousTestCase):
    """``fold_key``: keys as Go compares them with ASCII field names."""

    def test_ascii_case(self) -> None:
        """ASCII letters fold to lowercase."""
        self.assertEqual(fold_key("Keep_ALIVE"), "keep_alive")

    def test_long_s(self) -> None:
        """U+017F LATIN SMALL LETTER LONG S folds to ``s``."""
        self.assertEqual(fold_key("\u017ftream"), "stream")

    def test_kelvin_sign(self) -> None:
        """U+212A KELVIN SIGN folds to ``k``."""
        self.assertEqual(fold_key("\u212aeep_alive"), "keep_alive")

    def test_other_non_ascii(self) -> None:
        """Any other non-ASCII character matches no ASCII name (Go's dotless and dotted I
        fold to nothing ASCII)."""
        for key in ("\u0131mages", "\u0130mages", "mod\u00e9l", "\uff4dodel"):
            with self.subTest(key=key):
                self.assertIsNone(fold_key(key))


class GetTests(SynchronousTestCase):
    """``get``: the value Go decodes into a struct field, for scalars and pointers."""

    def test_key_case_ignored(self) -> None:
        """``MODEL`` sets the field ``model``."""
        self.assertEqual(_object('{"MODEL":"a"}').get("model"), "a")

    def test_last_spelling_wins(self) -> None:
        """Of several keys matching one field, the last one wins."""
        self.assertEqual(_object('{"model":"a","Model":"b","mODEL":"c"}').get("model"), "c")

    def test_kelvin_sign_key(self) -> None:
        """A key with the Kelvin sign sets ``keep_alive``, as in Go."""
        body = _object('{"keep_alive":"5m","\\u212aeep_alive":"-1"}')
        self.assertEqual(body.get("keep_alive"), "-1")

    def test_long_s_key(self) -> None:
        """A key with the long s sets ``stream``, as in Go."""
        self.assertEqual(_object('{"\\u017ftream":false}').get("stream"), False)

    def test_other_non_ascii_key(self) -> None:
        """A key with another non-ASCII letter sets nothing."""
        self.assertIsNone(_object('{"\\u0131mages":["x"]}').get("images"))

    def test_missing(self) -> None:
        """No matching key: the default."""
        self.assertEqual(_object('{"prompt":"x"}').get("model", "none"), "none")

    def test_any_null_last(self) -> None:
        """A pointer or interface field ends up nil on a last ``null``: the default."""
        body = _object('{"max_tokens":5,"max_tokens":null}')
        self.assertEqual(body.get("max_tokens", "unset"), "unset")

    def test_scalar_null_leaves_value(self) -> None:
        """A ``null`` leaves a Go string as it was: the model stays the earlier one."""
        body = _object('{"model":"blocked","model":null}')
        self.assertEqual(body.get("model", go_type=GoType.SCALAR), "blocked")

    def test_scalar_only_null(self) -> None:
        """A string field given only ``null`` stays unset."""
        self.assertIsNone(_object('{"model":null}').get("model", go_type=GoType.SCALAR))


class GetObjectTests(SynchronousTestCase):
    """``get`` of maps and structs: repeated objects add up as Go decodes them."""

    def test_objects_add_up(self) -> None:
        """Two ``options`` objects give one map with the pairs of both, in order."""
        body = _object('{"options":{"num_predict":9},"OPTIONS":{"temperature":1}}')
        self.assertEqual(body.get("options", go_type=GoType.OBJECT),
                         JsonObject([("num_predict", 9), ("temperature", 1)]))

    def test_null_clears_a_map(self) -> None:
        """A ``null`` sets a map to nil: what came before it is gone."""
        body = _object('{"options":{"num_predict":9},"options":null,"options":{"seed":1}}')
        self.assertEqual(body.get("options", go_type=GoType.OBJECT),
                         JsonObject([("seed", 1)]))

    def test_null_last_clears_a_map(self) -> None:
        """A last ``null`` leaves no map: the default."""
        body = _object('{"options":{"num_predict":9},"options":null}')
        self.assertIsNone(body.get("options", go_type=GoType.OBJECT))

    def test_null_leaves_a_struct(self) -> None:
        """A ``null`` leaves a (non-pointer) struct as it was."""
        body = _object('{"function":{"name":"f"},"function":null}')
        self.assertEqual(body.get("function", go_type=GoType.STRUCT), JsonObject([("name", "f")]))

    def test_not_an_object(self) -> None:
        """Something else than an object for a map is a body Ollama refuses."""
        error = self.assertRaises(GoJsonError, _object('{"options":[1]}').get, "options",
                                  go_type=GoType.OBJECT)
        self.assertEqual(str(error), "options must be an object")


class GetSliceTests(SynchronousTestCase):
    """``get`` of slices: Go decodes each array into the elements it already holds."""

    def test_shorter_array_keeps_earlier_fields(self) -> None:
        """A later message without ``content`` keeps the earlier message's content."""
        body = _object('{"messages":[{"role":"user","content":"long"}],'
                       '"messages":[{"role":"user"}]}')
        [message] = body.get("messages", go_type=GoType.SLICE)
        self.assertEqual(message.get("content", go_type=GoType.SCALAR), "long")

    def test_elements_past_a_shorter_array_come_back(self) -> None:
        """Elements a shorter array cut off are reused by a longer one after it."""
        body = _object('{"m":[{"a":1},{"b":2}],"m":[{"c":3}],"m":[{},{}]}')
        self.assertEqual(body.get("m", go_type=GoType.SLICE),
                         [JsonObject([("a", 1), ("c", 3)]), JsonObject([("b", 2)])])

    def test_empty_array_starts_afresh(self) -> None:
        """``[]`` gives a new empty slice: nothing earlier is reused."""
        body = _object('{"m":[{"a":1}],"m":[],"m":[{}]}')
        self.assertEqual(body.get("m", go_type=GoType.SLICE), [JsonObject([])])

    def test_null_clears(self) -> None:
        """``null`` sets the slice to nil."""
        self.assertIsNone(_object('{"m":[1],"m":null}').get("m", go_type=GoType.SLICE))

    def test_other_elements_replaced(self) -> None:
        """Elements that are not objects are replaced whole."""
        body = _object('{"images":["a","b"],"images":["c"]}')
        self.assertEqual(body.get("images", go_type=GoType.SLICE), ["c"])

    def test_not_an_array(self) -> None:
        """Something else than an array for a slice is a body Ollama refuses."""
        self.assertRaises(GoJsonError, _object('{"messages":"x"}').get, "messages",
                          go_type=GoType.SLICE)


class GetExactTests(SynchronousTestCase):
    """``get_exact``: keys of a Go map (Ollama's ``options``)."""

    def test_case_matters(self) -> None:
        """A key in another case is another key."""
        self.assertIsNone(_object('{"NUM_PREDICT":5}').get_exact("num_predict"))

    def test_last_duplicate_wins(self) -> None:
        """Of duplicate keys, the last one wins."""
        self.assertEqual(_object('{"num_predict":5,"num_predict":7}').get_exact("num_predict"),
                         7)

    def test_null_value(self) -> None:
        """A key given ``null`` holds None, as a Go map holds nil."""
        self.assertIsNone(_object('{"num_predict":5,"num_predict":null}')
                          .get_exact("num_predict", "unset"))

    def test_missing(self) -> None:
        """No such key: the default."""
        self.assertEqual(_object("{}").get_exact("num_predict", "unset"), "unset")


class WithFieldsTests(SynchronousTestCase):
    """``with_fields`` and ``with_exact``: rewritten fields, written once."""

    def test_every_spelling_replaced(self) -> None:
        """All keys folding to the field go, and the value comes once, last."""
        body = _object('{"keep_alive":"1h","prompt":"p","\\u212aeep_alive":"-1"}')
        self.assertEqual(body.with_fields({"keep_alive": "5m"}).pairs,
                         (("prompt", "p"), ("keep_alive", "5m")))

    def test_remove(self) -> None:
        """``REMOVE`` takes the field away and puts nothing in its place."""
        body = _object('{"model":"a","NAME":"b"}')
        self.assertEqual(body.with_fields({"name": REMOVE}).pairs, (("model", "a"),))

    def test_other_pairs_kept(self) -> None:
        """Other pairs stay in order, duplicates included."""
        body = _object('{"a":1,"model":"x","a":2}')
        self.assertEqual(body.with_fields({"model": "y"}).pairs,
                         (("a", 1), ("a", 2), ("model", "y")))

    def test_original_unchanged(self) -> None:
        """The object rewritten is left as it was."""
        body = _object('{"model":"x"}')
        body.with_fields({"model": "y"})
        self.assertEqual(body.pairs, (("model", "x"),))

    def test_exact_keys(self) -> None:
        """``with_exact`` replaces only the exact key, as a Go map has it."""
        options = _object('{"num_predict":1,"NUM_PREDICT":2}')
        self.assertEqual(options.with_exact({"num_predict": 3}).pairs,
                         (("NUM_PREDICT", 2), ("num_predict", 3)))

    def test_exact_remove(self) -> None:
        """``REMOVE`` works with exact keys too."""
        options = _object('{"num_predict":1,"seed":2,"num_predict":4}')
        self.assertEqual(options.with_exact({"num_predict": REMOVE}).pairs, (("seed", 2),))


class ToPythonTests(SynchronousTestCase):
    """``to_python``: plain values for tests and reading."""

    def test_last_duplicate_wins(self) -> None:
        """Duplicate keys keep the last value, nested objects become dicts."""
        body = _object('{"a":1,"o":{"k":[{"x":1}]},"a":2}')
        self.assertEqual(body.to_python(), {"a": 2, "o": {"k": [{"x": 1}]}})

    def test_deep_object(self) -> None:
        """An object nested deeper than Python recursion goes converts all the same."""
        value = _deep_object(5000).to_python()
        depth = 0
        while isinstance(value, dict):
            value, depth = value["a"], depth + 1
        self.assertEqual((depth, value), (5000, 1))
