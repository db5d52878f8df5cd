"""Typed reading of a descriptor's values: what each getter accepts, and every refusal
recorded as a settings problem at the value's line, column and JSON path."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError, Origin
from runnergw.models.located_json import LocatedArray, LocatingDecoder, Node
from runnergw.models.values import ValueReader

__all__ = ["LocationTests", "ValueTests"]

_TEXT = (
    '{\n'
    '  "name": "echo", "empty": "", "id": "a b",\n'
    '  "yes": "TRUE", "maybe": "sometimes", "flag": false,\n'
    '  "n": " 2.5 ", "huge": 1e999, "word": "abc", "truth": true,\n'
    '  "list": [1]\n'
    '}'
)


def _reader() -> tuple[ValueReader, Node]:
    """A reader of ``_TEXT`` in ``m.json``, and the document's root."""
    reader = ValueReader("m.json", _TEXT)
    return reader, Node(LocatingDecoder().decode(_TEXT), None, "")


def _said(reader: ValueReader) -> list[str]:
    """Every problem recorded, as the operator reads it."""
    return [str(problem) for problem in reader.problems]


class ValueTests(SynchronousTestCase):
    """Each getter returns the value, or records why not."""

    def test_strings(self) -> None:
        """A required string must be there and not empty; an optional one may be absent."""
        reader, root = _reader()
        self.assertEqual(reader.string(root, "name", required=True), "echo")
        self.assertIsNone(reader.string(root, "absent"))
        self.assertIsNone(reader.string(root, "empty", required=True))
        self.assertIsNone(reader.string(root, "missing", required=True))
        self.assertIsNone(reader.string(root, "flag"))
        self.assertEqual(_said(reader), [
            "m.json:2:28: empty: must be a non-empty string",
            "m.json: missing: required",
            "m.json:3:48: flag: must be a string",
        ])

    def test_identifiers(self) -> None:
        """An id is letters, digits, ``_`` and ``-`` only."""
        reader, root = _reader()
        self.assertEqual(reader.identifier(root, "name"), "echo")
        self.assertIsNone(reader.identifier(root, "id"))
        self.assertEqual(_said(reader),
                         ["m.json:2:38: id: must use only letters, digits, '_' and '-'"])

    def test_booleans(self) -> None:
        """A boolean may be written as the string ``"true"`` in any case; else the default."""
        reader, root = _reader()
        self.assertIs(reader.boolean(root, "yes", False), True)
        self.assertIs(reader.boolean(root, "flag", True), False)
        self.assertIs(reader.boolean(root, "absent", True), True)
        self.assertIs(reader.boolean(root, "maybe", False), False)
        self.assertEqual(_said(reader), ["m.json:3:27: maybe: must be true or false"])

    def test_numbers(self) -> None:
        """A number may be written as a numeric string; it must be finite."""
        reader, root = _reader()
        self.assertEqual(reader.number(root, "n"), 2.5)
        self.assertIsNone(reader.number(root, "absent"))
        for key in ("huge", "word", "truth"):
            self.assertIsNone(reader.number(root, key))
        self.assertEqual(_said(reader), [
            "m.json:4:25: huge: must be a finite number",
            "m.json:4:40: word: must be a number",
            "m.json:4:56: truth: must be a number",
        ])

    def test_typed_members(self) -> None:
        """A member of the wrong JSON type is refused with what it must be."""
        reader, root = _reader()
        self.assertIsNotNone(reader.typed(root, "list", LocatedArray, "a list"))
        self.assertIsNone(reader.typed(root, "name", LocatedArray, "a list"))
        self.assertEqual(_said(reader), ["m.json:2:11: name: must be a list"])


class LocationTests(SynchronousTestCase):
    """Where a problem is placed."""

    def test_problems_are_config_errors(self) -> None:
        """A problem carries the file, line, column and JSON path apart, as settings do."""
        reader, root = _reader()
        reader.string(root, "flag")
        [problem] = reader.problems
        self.assertIsInstance(problem, ConfigError)
        self.assertEqual((problem.origin, problem.path, problem.message),
                         (Origin("m.json", 3, 48), "flag", "must be a string"))

    def test_origin_of_offsets(self) -> None:
        """Offsets become 1-based lines and columns; no offset names the file alone."""
        reader = ValueReader("m.json", "ab\ncd")
        self.assertEqual(reader.origin(0), Origin("m.json", 1, 1))
        self.assertEqual(reader.origin(4), Origin("m.json", 2, 2))
        self.assertEqual(reader.origin(None), Origin("m.json"))

    def test_missing_member_is_placed_at_its_object(self) -> None:
        """A required key that is absent is named by its path, at the object lacking it."""
        reader, root = _reader()
        listed = root.member("list")
        assert listed is not None
        reader.report_missing(listed, "x")
        self.assertEqual(_said(reader), ["m.json:5:11: list.x: required"])
