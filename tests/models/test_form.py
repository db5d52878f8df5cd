"""Checking ``input_form`` values and uploads against a model descriptor."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.form import MAX_TEXT_LENGTH, FormError, check_form, check_value
from runnergw.models.reader import load_descriptor
from runnergw.models.template import fill_command
from runnergw.models.types import FieldSpec, ModelDescriptor, OutputSpec
from tests.helpers.reference import reference_file

__all__ = [
    "BooleanTests",
    "FormTests",
    "NumberTests",
    "SampleTests",
    "SelectTests",
    "TextTests",
]


def _model(*fields: FieldSpec) -> ModelDescriptor:
    """A descriptor with these fields, an upload ``media`` and an output ``out``."""
    return ModelDescriptor(
        path="models-enabled/test.json",
        endpoint="process-test",
        command="tool <media> <out>",
        fields=(FieldSpec(id="media", type="fileUpload", required=True), *fields),
        outputs=(OutputSpec(id="out", type="audio", format="mp3"),),
    )


class FormTests(SynchronousTestCase):
    """Which fields come out, defaults, required fields and uploads."""

    def check(self, form: dict[str, Any], *fields: FieldSpec) -> dict[str, object]:
        return check_form(_model(*fields), form, {"media"})

    def refused(self, form: dict[str, Any], *fields: FieldSpec,
                uploads: tuple[str, ...] = ("media",)) -> FormError:
        return self.assertRaises(FormError, check_form, _model(*fields), form, uploads)

    def test_declared_fields_only(self) -> None:
        field = FieldSpec(id="title", type="text")
        form = {"title": "x", "extra": "y", "media": "/etc/passwd", "out": "/tmp/x"}
        self.assertEqual(self.check(form, field), {"title": "x"})

    def test_default_when_absent_null_or_empty(self) -> None:
        field = FieldSpec(id="gain", type="number", required=True, default=0)
        for form in ({}, {"gain": None}, {"gain": ""}):
            self.assertEqual(self.check(form, field), {"gain": 0})

    def test_default_of_an_optional_field(self) -> None:
        field = FieldSpec(id="title", type="text", default="Song Title")
        self.assertEqual(self.check({}, field), {"title": "Song Title"})

    def test_optional_without_default_left_out(self) -> None:
        field = FieldSpec(id="title", type="text")
        for form in ({}, {"title": None}, {"title": ""}):
            self.assertEqual(self.check(form, field), {})

    def test_required_missing(self) -> None:
        field = FieldSpec(id="title", type="text", required=True)
        for form in ({}, {"title": None}, {"title": ""}):
            error = self.refused(form, field)
            self.assertEqual(error.field, "title")
            self.assertEqual(error.message, "title is required")
            self.assertEqual(str(error), error.message)

    def test_required_upload_missing(self) -> None:
        error = self.refused({}, uploads=())
        self.assertEqual(error.field, "media")
        self.assertIn("upload", error.message)

    def test_optional_upload_missing(self) -> None:
        model = ModelDescriptor(
            path="m.json", endpoint="e", command="tool <media>",
            fields=(FieldSpec(id="media", type="fileUpload", required=False),),
        )
        self.assertEqual(check_form(model, {}, ()), {})

    def test_uploads_never_come_out(self) -> None:
        self.assertEqual(self.check({"media": "x"}), {})

    def test_default_is_checked(self) -> None:
        field = FieldSpec(id="name", type="text", default="-rf")
        self.assertEqual(self.refused({}, field).field, "name")

    def test_first_problem_in_field_order(self) -> None:
        error = self.refused(
            {"b": "x"},
            FieldSpec(id="a", type="text", required=True),
            FieldSpec(id="b", type="number"),
        )
        self.assertEqual(error.field, "a")


class NumberTests(SynchronousTestCase):
    """``number`` and ``inputSlider`` fields."""

    field = FieldSpec(id="gain", type="number", minimum=-20, maximum=20)

    def refused(self, value: object, field: FieldSpec | None = None) -> FormError:
        return self.assertRaises(FormError, check_value, field or self.field, value)

    def test_numbers_keep_their_type(self) -> None:
        for value in (3, -2, 1.5, 1.0, 0):
            result = check_value(self.field, value)
            self.assertEqual(result, value)
            self.assertIs(type(result), type(value))

    def test_numeric_strings_converted(self) -> None:
        for text, expected in (("5", 5), (" -3 ", -3), ("+4", 4), ("0.5", 0.5), (".5", 0.5),
                               ("1e1", 10.0), ("2.", 2.0)):
            result = check_value(self.field, text)
            self.assertEqual(result, expected)
            self.assertIs(type(result), type(expected))

    def test_bounds_inclusive(self) -> None:
        self.assertEqual(check_value(self.field, -20), -20)
        self.assertEqual(check_value(self.field, 20), 20)
        self.assertEqual(self.refused(20.5).message, "gain must be at most 20")
        self.assertEqual(self.refused("-21").message, "gain must be at least -20")

    def test_fractional_bound_shown(self) -> None:
        field = FieldSpec(id="alpha", type="inputSlider", minimum=0, maximum=0.5)
        self.assertEqual(self.refused(0.6, field).message, "alpha must be at most 0.5")

    def test_unbounded(self) -> None:
        field = FieldSpec(id="n", type="number")
        self.assertEqual(check_value(field, 10**30), 10**30)

    def test_not_numbers(self) -> None:
        for value in (True, False, "abc", "1_000", "0x10", "١", "", [1], {"a": 1}, None):
            error = self.refused(value)
            self.assertEqual(error.field, "gain")
            self.assertEqual(error.message, "gain must be a number")

    def test_not_finite(self) -> None:
        for value in ("nan", "inf", "-Infinity"):
            self.assertEqual(self.refused(value).message, "gain must be a number")
        for value in (float("nan"), float("inf"), "1e999"):
            self.assertEqual(self.refused(value).message, "gain must be a finite number")

    def test_slider(self) -> None:
        field = FieldSpec(id="bg_alpha", type="inputSlider", minimum=0, maximum=1)
        self.assertEqual(check_value(field, "0.5"), 0.5)
        self.refused(2, field)

    def test_long_value_not_echoed(self) -> None:
        value = "9" * (MAX_TEXT_LENGTH + 1)
        error = self.refused(value)
        self.assertNotIn("9999", error.message)


class SelectTests(SynchronousTestCase):
    """``select`` fields: the value must be one of the options."""

    numbers = FieldSpec(id="cc", type="select", options=(0, 4, 8))
    words = FieldSpec(id="alpha", type="select", options=("off", "on", "set"))

    def test_compared_as_text(self) -> None:
        self.assertEqual(check_value(self.numbers, "4"), 4)
        self.assertIs(type(check_value(self.numbers, "4")), int)
        self.assertEqual(check_value(self.numbers, 8), 8)
        self.assertEqual(check_value(self.words, "on"), "on")

    def test_not_an_option(self) -> None:
        for value in ("5", 4.0, "ON", True, [4], None):
            error = self.assertRaises(FormError, check_value, self.numbers, value)
            self.assertEqual(error.field, "cc")
        error = self.assertRaises(FormError, check_value, self.numbers, 5)
        self.assertEqual(error.message, "cc must be one of: 0, 4, 8")

    def test_long_option_list_not_shown(self) -> None:
        field = FieldSpec(id="pick", type="select", options=tuple(f"opt{n:04}" for n in range(100)))
        error = self.assertRaises(FormError, check_value, field, "x")
        self.assertEqual(error.message, "pick is not one of the allowed options")

    def test_option_with_leading_dash_refused(self) -> None:
        field = FieldSpec(id="pick", type="select", options=("-1", "1"))
        error = self.assertRaises(FormError, check_value, field, "-1")
        self.assertEqual(error.message, "pick must not start with '-'")


class TextTests(SynchronousTestCase):
    """Text, colour and other fields: strings."""

    field = FieldSpec(id="font_color", type="colorPicker")

    def refused(self, value: object) -> FormError:
        return self.assertRaises(FormError, check_value, self.field, value)

    def test_strings(self) -> None:
        self.assertEqual(check_value(self.field, "#FFFFFF"), "#FFFFFF")
        self.assertEqual(check_value(FieldSpec(id="t", type="text"), "a b; c"), "a b; c")
        self.assertEqual(check_value(FieldSpec(id="t", type="somethingNew"), "x"), "x")

    def test_numbers_become_text(self) -> None:
        self.assertEqual(check_value(self.field, 12), "12")
        self.assertEqual(check_value(self.field, 1.0), "1.0")

    def test_other_types_refused(self) -> None:
        for value in (True, None, ["#FFF"], {"a": "b"}):
            self.assertEqual(self.refused(value).message, "font_color must be a string")

    def test_length(self) -> None:
        self.assertEqual(len(check_value(self.field, "a" * MAX_TEXT_LENGTH)), MAX_TEXT_LENGTH)
        error = self.refused("a" * (MAX_TEXT_LENGTH + 1))
        self.assertEqual(error.message, f"font_color must be at most {MAX_TEXT_LENGTH} characters")

    def test_leading_dash(self) -> None:
        for value in ("-rf", "--output=/etc/passwd", -5):
            error = self.refused(value)
            self.assertEqual(error.field, "font_color")
            self.assertEqual(error.message, "font_color must not start with '-'")

    def test_inner_dash_allowed(self) -> None:
        self.assertEqual(check_value(self.field, "a-b --c"), "a-b --c")

    def test_nul(self) -> None:
        error = self.refused("a\0b")
        self.assertEqual(error.message, "font_color must not contain a NUL character")

    def test_value_not_echoed(self) -> None:
        secret = "-" + "s3cr3t" * 10
        self.assertNotIn("s3cr3t", self.refused(secret).message)


class BooleanTests(SynchronousTestCase):
    """``checkbox``, ``switch`` and ``boolean`` fields."""

    def test_accepted(self) -> None:
        for field_type in ("checkbox", "switch", "boolean"):
            field = FieldSpec(id="debug", type=field_type)
            for value, expected in ((True, True), (False, False), ("true", True),
                                    ("false", False), ("True", True), ("FALSE", False)):
                self.assertIs(check_value(field, value), expected)

    def test_refused(self) -> None:
        field = FieldSpec(id="debug", type="switch")
        for value in (1, 0, "yes", "on", "", None, [True]):
            error = self.assertRaises(FormError, check_value, field, value)
            self.assertEqual(error.message, "debug must be true or false")

    def test_false_default(self) -> None:
        model = _model(FieldSpec(id="debug", type="checkbox", default=False))
        self.assertEqual(check_form(model, {}, {"media"}), {"debug": False})


class SampleTests(SynchronousTestCase):
    """The reference descriptors, from form to argv."""

    def load(self, name: str) -> ModelDescriptor:
        return load_descriptor(str(reference_file("websaas", "models-enabled", name)))

    def test_audio_video_defaults(self) -> None:
        model = self.load("audio-video.json.example")
        uploads = {"audiomedia": "/jobs/j1/audiomedia-1.mp3",
                   "imagemedia": "/jobs/j1/imagemedia-2.jpg",
                   "texfilemedia": "/jobs/j1/texfilemedia-3.txt"}
        values = check_form(model, {"debug": True, "bg_alpha": ""}, uploads)
        self.assertEqual(values, {"font_color": "#FFFFFF", "bg_alpha": 0.5})
        argv = fill_command(model.command, {**values, **uploads,
                                            "processedVideo": "/jobs/j1/3f2a.mp4"})
        self.assertIn("--font_color=#FFFFFF", argv)
        self.assertNotIn("--debug", argv)

    def test_audio_audio_range(self) -> None:
        model = self.load("audio-audio.json.example")
        error = self.assertRaises(FormError, check_form, model, {"khz250": 25}, {"media"})
        self.assertEqual(error.field, "khz250")
        values = check_form(model, {"khz250": "-3"}, {"media"})
        self.assertEqual(values, {"khz0": 0, "khz250": -3, "khz1000": 0, "khz4000": 0,
                                  "khz16000": 0})

    def test_image_image_select(self) -> None:
        model = self.load("image-image.json.example")
        values = check_form(model, {"connectedComponents": "8", "alpha": "on"}, {"media"})
        self.assertEqual(values, {"negate": 15, "areaThreshold": 70,
                                  "connectedComponents": 8, "alpha": "on"})
        error = self.assertRaises(FormError, check_form, model, {"alpha": "-on"}, {"media"})
        self.assertEqual(error.field, "alpha")
