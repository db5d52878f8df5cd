"""The JSON parser with positions: every member and element knows where its value starts and
its path in the document; a member named twice is refused."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.located_json import (
    DuplicateKey,
    LocatedArray,
    LocatedObject,
    LocatingDecoder,
    Node,
    join_path,
)

__all__ = ["DecoderTests", "NodeTests"]

_TEXT = '{"a": 1, "list": [true, {"b": "x"}], "none": null}'


def _root(text: str = _TEXT) -> Node:
    """The document's root node, as the descriptor reader starts from it."""
    return Node(LocatingDecoder().decode(text), None, "")


class DecoderTests(SynchronousTestCase):
    """Decoding keeps the standard library's values and adds where each starts."""

    def test_same_values_as_the_standard_library(self) -> None:
        """A document decodes to what ``json.loads`` gives, objects and arrays included."""
        value = LocatingDecoder().decode(_TEXT)
        self.assertEqual(value, json.loads(_TEXT))
        self.assertIsInstance(value, LocatedObject)
        self.assertIsInstance(value["list"], LocatedArray)

    def test_offsets_of_members_and_elements(self) -> None:
        """Each offset points at the first character of the value."""
        value = LocatingDecoder().decode(_TEXT)
        self.assertEqual(_TEXT[value.offsets["a"]], "1")
        self.assertEqual([_TEXT[o] for o in value["list"].offsets], ["t", "{"])
        self.assertEqual(_TEXT[value["list"][1].offsets["b"]:][:3], '"x"')

    def test_duplicate_member_is_refused_at_its_second_value(self) -> None:
        """A key written twice is an error, not a silent overwrite."""
        text = '{"k": 1,\n "k": 2}'
        error = self.assertRaises(DuplicateKey, LocatingDecoder().decode, text)
        self.assertEqual((error.key, text[error.offset]), ("k", "2"))

    def test_invalid_json_is_the_standard_error(self) -> None:
        """Broken JSON raises ``json.JSONDecodeError`` with its line and column."""
        error = self.assertRaises(json.JSONDecodeError, LocatingDecoder().decode, '{\n  "a" 1}')
        self.assertEqual((error.lineno, error.colno), (2, 7))


class NodeTests(SynchronousTestCase):
    """Walking a document by nodes that carry their path."""

    def test_member_paths(self) -> None:
        """A member's path joins its parent's with its key; the root's path is empty."""
        self.assertEqual(join_path("", "fields"), "fields")
        self.assertEqual(join_path("fields[2]", "min"), "fields[2].min")
        member = _root().member("a")
        assert member is not None
        self.assertEqual((member.value, member.where, _TEXT[member.offset or 0]), (1, "a", "1"))

    def test_element_paths(self) -> None:
        """Elements are indexed; a member of an element continues the path."""
        listed = _root().member("list")
        assert listed is not None
        elements = listed.elements()
        self.assertEqual([e.where for e in elements], ["list[0]", "list[1]"])
        inner = elements[1].member("b")
        assert inner is not None
        self.assertEqual((inner.where, inner.value), ("list[1].b", "x"))

    def test_null_is_absent(self) -> None:
        """A null member, a missing one, or a member of a non-object is None."""
        root = _root()
        self.assertIsNone(root.member("none"))
        self.assertIsNone(root.member("missing"))
        a = root.member("a")
        assert a is not None
        self.assertIsNone(a.member("x"))
