"""Reading ``fields[]`` entries: values written as strings, sizes, media types, options, and
defaults checked as form values are."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError
from runnergw.models.reader import load_descriptor
from runnergw.models.types import FieldSpec
from tests.helpers.descriptors import MB, DescriptorFiles, echo_descriptor, said

__all__ = ["FieldTests"]


class FieldTests(DescriptorFiles, SynchronousTestCase):
    """Entries of ``fields[]``: types written as strings, sizes, options and defaults."""

    def field(self, **entry: Any) -> FieldSpec:
        document = echo_descriptor(command="tool <media> <out>")
        document["fields"].append({"id": "x", **entry})
        return load_descriptor(self.write(document)).fields[-1]

    def refused(self, **entry: Any) -> ConfigError:
        return self.assertRaises(ConfigError, self.field, **entry)

    def test_booleans_as_strings(self) -> None:
        """required may be written "true" or "false", as the SaaS files do."""
        for value, expected in (("false", False), ("true", True), ("False", False), (True, True),
                                (False, False)):
            self.assertIs(self.field(type="text", required=value).required, expected)
        self.assertIs(self.field(type="text").required, False)

    def test_bad_boolean(self) -> None:
        """Any other required value is refused at fields[n].required."""
        error = self.refused(type="text", required="maybe")
        self.assertEqual(said(error), "fields[2].required: must be true or false")

    def test_numbers_as_strings(self) -> None:
        """Bounds written as numeric strings are numbers."""
        field = self.field(type="number", min="-5", max=" 10.5 ", default="3")
        self.assertEqual((field.minimum, field.maximum, field.default), (-5.0, 10.5, "3"))

    def test_bad_numbers(self) -> None:
        """A bound that is no finite number is refused at its path."""
        for value in ("abc", True, [1], "nan", 1e999):
            self.assertEqual(self.refused(type="number", min=value).path,
                             "fields[2].min")

    def test_min_above_max(self) -> None:
        """A max below min is refused at max."""
        error = self.refused(type="number", min=5, max=1)
        self.assertEqual(said(error), "fields[2].max: must not be below min")

    def test_max_size(self) -> None:
        """maxSize is in MB of 1024 * 1024 bytes, may be fractional, and must leave a byte."""
        self.assertEqual(self.field(type="fileUpload", maxSize=0.01).max_size, 10485)
        self.assertEqual(self.field(type="fileUpload", maxSize="2").max_size, 2 * MB)
        self.assertIsNone(self.field(type="fileUpload").max_size)
        for value in (0, -1, 1e-9):
            error = self.refused(type="fileUpload", maxSize=value)
            self.assertEqual(said(error), "fields[2].maxSize: must be a positive size in MB")

    def test_accepted_types(self) -> None:
        """acceptedFileTypes is a list of media types, or one."""
        field = self.field(type="fileUpload", acceptedFileTypes=["audio/*", "video/*"])
        self.assertEqual(field.accepted_types, ("audio/*", "video/*"))
        self.assertEqual(self.field(type="fileUpload", acceptedFileTypes="image/png")
                         .accepted_types, ("image/png",))
        error = self.refused(type="fileUpload", acceptedFileTypes=[1])
        self.assertIn("acceptedFileTypes", said(error))

    def test_options(self) -> None:
        """A select's options are their values, written as objects or bare."""
        field = self.field(type="select", options=[{"label": "A", "value": "a"}, 4, "b"],
                           default="4")
        self.assertEqual(field.options, ("a", 4, "b"))
        self.assertEqual(field.kind, "select")

    def test_bad_options(self) -> None:
        """An option without a usable value, or that the form would refuse, is named."""
        error = self.refused(type="select", options=[{"label": "A"}])
        self.assertEqual(said(error), "fields[2].options[0]: an option needs a value")
        error = self.refused(type="select", options=[{"value": [1]}])
        self.assertIn("fields[2].options[0].value: ", said(error))
        error = self.refused(type="select")
        self.assertEqual(said(error), "fields[2]: a select field needs options")
        error = self.refused(type="select", options=["-rf", "ok"])
        self.assertIn("fields[2].options[0]: not a valid value: ", said(error))

    def test_bad_defaults(self) -> None:
        """A default the form checks would refuse is refused when the model loads."""
        for entry in ({"type": "number", "max": 5, "default": 6},
                      {"type": "number", "default": "abc"},
                      {"type": "select", "options": [1, 2], "default": 3},
                      {"type": "switch", "default": "yes"},
                      {"type": "text", "default": "--all"}):
            error = self.refused(**entry)
            self.assertIn("fields[2].default: not a valid value: x ", said(error))

    def test_upload_default_ignored(self) -> None:
        """An upload's default is kept as written and not checked."""
        self.assertEqual(self.field(type="fileUpload", default=3).default, 3)

    def test_missing_type(self) -> None:
        """A field without a type is refused at fields[n].type."""
        self.assertEqual(said(self.refused()), "fields[2].type: required")

    def test_not_an_object(self) -> None:
        """A field that is not an object is refused at its index."""
        document = echo_descriptor()
        document["fields"].append("x")
        error = self.assertRaises(ConfigError, load_descriptor, self.write(document))
        self.assertEqual(said(error), "fields[2]: must be an object")

    def test_error_located_at_the_value(self) -> None:
        """The problem points at the line and column of the bad value itself."""
        text = (
            '{\n'
            '  "command": "tool <media>",\n'
            '  "actions": {"submit": {"endpoint": "/e/"}},\n'
            '  "fields": [\n'
            '    {"id": "media", "type": "fileUpload"},\n'
            '    {"id": "n", "type": "number",\n'
            '     "min": "low"}\n'
            '  ],\n'
            '  "output": []\n'
            '}\n'
        )
        error = self.assertRaises(ConfigError, load_descriptor, self.write(text))
        self.assertEqual((error.origin.line, error.origin.column), (7, 13))
        self.assertEqual(said(error), "fields[1].min: must be a number")
