"""Reading model descriptors: the reference samples, every check, and located errors."""

from __future__ import annotations

import json
import operator
import shutil
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.loading import load_models
from runnergw.models.reader import load_descriptor
from runnergw.models.types import FieldSpec, ModelDescriptor, OutputSpec, RoleLimit
from runnergw.models.values import DescriptorError
from tests.helpers.reference import reference_file

__all__ = [
    "DescriptorErrorTests",
    "FieldTests",
    "LoadModelsTests",
    "ReferenceTests",
    "RoleTests",
    "StructureTests",
]

_MB = 1024 * 1024


def _sample(name: str) -> Path:
    """A reference descriptor (skips when absent)."""
    return reference_file("websaas", "models-enabled", name)


def _document(**changes: Any) -> dict[str, Any]:
    """A small valid descriptor, with changes; a None value drops the key."""
    document: dict[str, Any] = {
        "title": "Echo",
        "command": "tool -i <media> --gain=<gain> <out>",
        "actions": {"submit": {"method": "POST", "endpoint": "https://h:20400/process-echo/"}},
        "fields": [
            {"id": "media", "type": "fileUpload", "required": True, "maxSize": 1},
            {"id": "gain", "type": "number", "min": -1, "max": 1, "default": 0},
        ],
        "output": [{"id": "out", "type": "audio", "format": "mp3"}],
    }
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return document


class _FilesMixin:
    """Write descriptor files in a fresh directory."""

    mktemp: Any

    def directory(self) -> Path:
        path = Path(self.mktemp())
        path.mkdir(parents=True)
        return path

    def write(self, content: dict[str, Any] | str, name: str = "model.json",
              directory: Path | None = None) -> str:
        directory = directory or self.directory()
        text = content if isinstance(content, str) else json.dumps(content, indent=2)
        path = directory / name
        path.write_text(text, encoding="utf-8")
        return str(path)


class DescriptorErrorTests(SynchronousTestCase):
    """How a problem is shown."""

    def test_line_and_column(self) -> None:
        error = DescriptorError("models-enabled/x.json", "bad", line=12, column=5)
        self.assertEqual(str(error), "models-enabled/x.json:12:5: bad")
        self.assertEqual((error.path, error.line, error.column, error.message),
                         ("models-enabled/x.json", 12, 5, "bad"))

    def test_line_only(self) -> None:
        self.assertEqual(str(DescriptorError("x.json", "bad", line=3)), "x.json:3: bad")

    def test_unknown_location(self) -> None:
        self.assertEqual(str(DescriptorError("x.json", "bad")), "x.json: bad")


class ReferenceTests(_FilesMixin, SynchronousTestCase):
    """The WebSaaS sample descriptors."""

    def test_audio_audio(self) -> None:
        path = str(_sample("audio-audio.json.example"))
        model = load_descriptor(path)
        self.assertEqual(model.path, path)
        self.assertEqual(model.endpoint, "process-audio")
        self.assertEqual(model.title, "Audio-to-Audio")
        self.assertEqual([f.id for f in model.fields],
                         ["media", "khz0", "khz250", "khz1000", "khz4000", "khz16000"])
        self.assertEqual(model.field("media"), FieldSpec(
            id="media", type="fileUpload", required=True, max_size=10 * _MB,
            accepted_types=("audio/*",),
        ))
        self.assertEqual(model.field("khz0"), FieldSpec(
            id="khz0", type="number", required=True, default=0, minimum=-20.0, maximum=20.0,
        ))
        self.assertIsNone(model.field("nope"))
        self.assertEqual(model.outputs, (OutputSpec(id="processedMedia", type="audio",
                                                    format="mp3"),))
        self.assertEqual(model.main_input_id, "media")
        self.assertEqual(model.allowed_roles, ("registered", "basic", "premium", "pro"))
        self.assertEqual(dict(model.role_limits), {
            "pro": (RoleLimit("duration", 300.0),),
            "basic": (RoleLimit("duration", 120.0),),
            "premium": (RoleLimit("duration", 210.0),),
            "registered": (RoleLimit("duration", 30.0),),
        })
        self.assertEqual(model.placeholders, ("media", "khz0", "khz250", "khz1000", "khz4000",
                                              "khz16000", "processedMedia"))
        self.assertEqual([f.id for f in model.upload_fields], ["media"])

    def test_audio_video(self) -> None:
        model = load_descriptor(str(_sample("audio-video.json.example")))
        self.assertEqual(model.endpoint, "process-audiovideo")
        self.assertEqual([f.id for f in model.upload_fields],
                         ["audiomedia", "imagemedia", "texfilemedia"])
        self.assertEqual(model.field("texfilemedia").max_size, 10485)
        self.assertEqual(model.field("texfilemedia").accepted_types, ("text/plain",))
        self.assertEqual(model.field("imagemedia").max_size, _MB)
        self.assertEqual(model.field("font_color").default, "#FFFFFF")
        self.assertEqual(model.field("bg_alpha").kind, "number")
        self.assertEqual(model.main_input_id, "audiomedia")

    def test_image_image(self) -> None:
        model = load_descriptor(str(_sample("image-image.json.example")))
        self.assertEqual(model.endpoint, "process-image")
        self.assertEqual(model.field("connectedComponents").options, (0, 4, 8))
        self.assertEqual(model.field("connectedComponents").default, 4)
        self.assertEqual(len(model.field("alpha").options), 15)
        self.assertEqual([o.id for o in model.outputs], ["processedImage", "processedImageMask"])
        self.assertEqual(model.role_limits["basic"], (RoleLimit("resolution", 800.0),))

    def test_fast_video_comment_is_invalid_json(self) -> None:
        path = str(_sample("fast-video.json.example"))
        error = self.assertRaises(DescriptorError, load_descriptor, path)
        self.assertEqual((error.line, error.column), (46, 9))
        self.assertIn("invalid JSON", error.message)
        self.assertIn("comments are not allowed", error.message)
        self.assertTrue(str(error).startswith(f"{path}:46:9: "))

    def test_load_models_copies(self) -> None:
        directory = self.directory()
        for name in ("audio-audio", "audio-video", "fast-video", "image-image"):
            shutil.copy(_sample(f"{name}.json.example"), directory / f"{name}.json")
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.endpoint for m in models],
                         ["process-audio", "process-audiovideo", "process-image"])
        self.assertEqual([(Path(p.path).name, p.line) for p in problems],
                         [("fast-video.json", 46)])

    def test_load_models_without_ffprobe(self) -> None:
        directory = self.directory()
        shutil.copy(_sample("audio-audio.json.example"), directory / "audio-audio.json")
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual(models, [])
        self.assertEqual(len(problems), 1)
        self.assertIn("role limits need ffprobe, which is not installed", problems[0].message)
        self.assertEqual(problems[0].line, 99)


class StructureTests(_FilesMixin, SynchronousTestCase):
    """The top-level keys, the endpoint, the command and the JSON itself."""

    def load(self, content: dict[str, Any] | str) -> ModelDescriptor:
        return load_descriptor(self.write(content))

    def refused(self, content: dict[str, Any] | str) -> DescriptorError:
        return self.assertRaises(DescriptorError, self.load, content)

    def test_minimal(self) -> None:
        model = self.load(_document())
        self.assertEqual(model.endpoint, "process-echo")
        self.assertEqual(model.command, "tool -i <media> --gain=<gain> <out>")
        self.assertIsNone(model.main_input_id)
        self.assertIsNone(model.allowed_roles)
        self.assertEqual(dict(model.role_limits), {})

    def test_unknown_keys_ignored(self) -> None:
        document = _document(**{"$schema": "x", "formId": "f", "description": "d",
                                "type": "object"})
        document["actions"]["stopaction"] = {"command": "curl x", "resultvariable": "s"}
        document["fields"][0].update(label="L", helperText="H", storage={"path": "/"})
        document["output"][0]["storage"] = {"path": "/uploads/", "type": "filesystem"}
        self.assertEqual(self.load(document).endpoint, "process-echo")

    def test_missing_required_keys(self) -> None:
        for key in ("command", "fields", "output"):
            error = self.refused(_document(**{key: None}))
            self.assertEqual(error.message, f"missing required key {key}")
            self.assertIsNone(error.line)

    def test_missing_endpoint(self) -> None:
        for actions, line in ((None, None), ({}, 4), ({"submit": {"method": "POST"}}, 5)):
            error = self.refused(_document(actions=actions))
            self.assertEqual(error.message, "missing required key actions.submit.endpoint")
            self.assertEqual(error.line, line)

    def test_wrong_types(self) -> None:
        for changes, message in (
            ({"command": ["tool"]}, "command: must be a non-empty string"),
            ({"command": ""}, "command: must be a non-empty string"),
            ({"fields": {}}, "fields: must be a list"),
            ({"output": "x"}, "output: must be a list"),
            ({"actions": []}, "actions: must be an object"),
            ({"title": 3}, "title: must be a string"),
        ):
            self.assertEqual(self.refused(_document(**changes)).message, message)

    def test_endpoints(self) -> None:
        for url, name in (("https://h:1/process-audio/", "process-audio"),
                          ("https://h/a/b/run.v2", "run.v2"), ("/x_y/", "x_y"),
                          ("process-audio", "process-audio"),
                          ("https://h/process?x=1#f", "process")):
            document = _document(actions={"submit": {"endpoint": url}})
            self.assertEqual(self.load(document).endpoint, name)

    def test_bad_endpoints(self) -> None:
        for url in ("https://h:20400", "https://h/", "https://h/a%20b/", "https://h/..",
                    "https://h/caf\u00e9/", "http://[::1/x"):
            error = self.refused(_document(actions={"submit": {"endpoint": url}}))
            self.assertTrue(error.message.startswith("actions.submit.endpoint: "), error.message)
            self.assertEqual(error.line, 6)

    def test_command_cannot_be_split(self) -> None:
        error = self.refused(_document(command="tool '<media> <out>"))
        self.assertIn("cannot be split", error.message)
        self.assertEqual((error.line, error.column), (3, 14))

    def test_program_must_be_fixed(self) -> None:
        error = self.refused(_document(command="<media> <out>"))
        self.assertIn("program", error.message)

    def test_unknown_placeholder(self) -> None:
        error = self.refused(_document(command="tool <media> <lyricsfile> <out>"))
        self.assertEqual(error.message, "command: <lyricsfile> matches no field or output id")
        self.assertEqual(error.line, 3)

    def test_bare_flags_need_no_field(self) -> None:
        model = self.load(_document(command="tool <media> <out> --debug"))
        self.assertEqual(model.placeholders, ("media", "out"))

    def test_invalid_json(self) -> None:
        error = self.refused('{\n  "command": "tool",\n  "fields": [1 2]\n}')
        self.assertEqual((error.line, error.column), (3, 16))
        self.assertEqual(error.message, "invalid JSON: Expecting ',' delimiter")

    def test_line_comment(self) -> None:
        error = self.refused('{\n  // note\n  "command": "x"\n}')
        self.assertEqual((error.line, error.column), (2, 3))
        self.assertIn("comments are not allowed", error.message)

    def test_duplicate_key(self) -> None:
        error = self.refused('{\n  "command": "a",\n  "command": "b"\n}')
        self.assertEqual(error.message, 'invalid JSON: duplicate key "command"')
        self.assertEqual((error.line, error.column), (3, 14))

    def test_not_an_object(self) -> None:
        self.assertEqual(self.refused("[]").message, "must be a JSON object")

    def test_byte_order_mark(self) -> None:
        self.assertEqual(self.load("\ufeff" + json.dumps(_document())).endpoint, "process-echo")

    def test_not_utf8(self) -> None:
        path = Path(self.write("{}"))
        path.write_bytes(b'{"title": "\xff"}')
        error = self.assertRaises(DescriptorError, load_descriptor, str(path))
        self.assertEqual(error.message, "is not UTF-8 text")

    def test_missing_file(self) -> None:
        path = str(self.directory() / "absent.json")
        error = self.assertRaises(DescriptorError, load_descriptor, path)
        self.assertEqual(error.path, path)
        self.assertIn("cannot be read", error.message)

    def test_output_formats(self) -> None:
        for text in ("mp3", "PNG", "m4a", "abcdefghij"):
            document = _document(output=[{"id": "out", "type": "audio", "format": text}])
            self.assertEqual(self.load(document).outputs[0].format, text)
        for text in ("", "mp3/x", "../x", "abcdefghijk", "tar.gz", 3):
            document = _document(output=[{"id": "out", "type": "audio", "format": text}])
            self.assertIn("output[0].format: ", self.refused(document).message)

    def test_output_without_type(self) -> None:
        model = self.load(_document(output=[{"id": "out", "format": "mp3"}]))
        self.assertEqual(model.outputs, (OutputSpec(id="out", type="", format="mp3"),))

    def test_output_id_clashes_with_field(self) -> None:
        document = _document(output=[{"id": "gain", "type": "audio", "format": "mp3"}],
                             command="tool <media> <gain>")
        error = self.refused(document)
        self.assertEqual(error.message, 'output[0].id: "gain" is already the id of fields[1]')

    def test_repeated_field_id(self) -> None:
        document = _document()
        document["fields"].append({"id": "gain", "type": "text"})
        error = self.refused(document)
        self.assertEqual(error.message, 'fields[2].id: "gain" is already the id of fields[1]')

    def test_repeated_output_id(self) -> None:
        out = {"id": "out", "type": "audio", "format": "mp3"}
        error = self.refused(_document(output=[out, out]))
        self.assertEqual(error.message, 'output[1].id: "out" is already the id of output[0]')

    def test_ids_are_words(self) -> None:
        for bad in ("a b", "../x", "", "a/b", 3):
            document = _document()
            document["fields"].append({"id": bad, "type": "text"})
            self.assertIn("fields[2].id: ", self.refused(document).message)
        document = _document()
        document["fields"].append({"id": "my-field_2", "type": "text"})
        self.assertEqual(self.load(document).fields[-1].id, "my-field_2")

    def test_main_input_must_be_an_upload(self) -> None:
        for main in ("gain", "out", "nothing"):
            error = self.refused(_document(main_input_id=main))
            self.assertEqual(error.message, f'main_input_id: "{main}" is not a fileUpload field')

    def test_descriptor_helpers(self) -> None:
        model = ModelDescriptor(
            path="m.json", endpoint="e", command="tool <a> x<b><a>",
            fields=[FieldSpec(id="a", type="fileUpload"), FieldSpec(id="b", type="select")],
            role_limits={"pro": [RoleLimit("duration", 1.0)]},
        )
        self.assertEqual(model.placeholders, ("a", "b"))
        self.assertEqual(model.upload_fields, (FieldSpec(id="a", type="fileUpload"),))
        self.assertEqual(model.role_limits["pro"], (RoleLimit("duration", 1.0),))
        self.assertRaises(TypeError, operator.setitem, model.role_limits, "x", ())


class FieldTests(_FilesMixin, SynchronousTestCase):
    """Entries of ``fields[]``: types written as strings, sizes, options and defaults."""

    def field(self, **entry: Any) -> FieldSpec:
        document = _document(command="tool <media> <out>")
        document["fields"].append({"id": "x", **entry})
        return load_descriptor(self.write(document)).fields[-1]

    def refused(self, **entry: Any) -> DescriptorError:
        return self.assertRaises(DescriptorError, self.field, **entry)

    def test_booleans_as_strings(self) -> None:
        for value, expected in (("false", False), ("true", True), ("False", False), (True, True),
                                (False, False)):
            self.assertIs(self.field(type="text", required=value).required, expected)
        self.assertIs(self.field(type="text").required, False)

    def test_bad_boolean(self) -> None:
        error = self.refused(type="text", required="maybe")
        self.assertEqual(error.message, "fields[2].required: must be true or false")

    def test_numbers_as_strings(self) -> None:
        field = self.field(type="number", min="-5", max=" 10.5 ", default="3")
        self.assertEqual((field.minimum, field.maximum, field.default), (-5.0, 10.5, "3"))

    def test_bad_numbers(self) -> None:
        for value in ("abc", True, [1], "nan", 1e999):
            self.assertEqual(self.refused(type="number", min=value).message.split(": ")[0],
                             "fields[2].min")

    def test_min_above_max(self) -> None:
        error = self.refused(type="number", min=5, max=1)
        self.assertEqual(error.message, "fields[2].max: must not be below min")

    def test_max_size(self) -> None:
        self.assertEqual(self.field(type="fileUpload", maxSize=0.01).max_size, 10485)
        self.assertEqual(self.field(type="fileUpload", maxSize="2").max_size, 2 * _MB)
        self.assertIsNone(self.field(type="fileUpload").max_size)
        for value in (0, -1, 1e-9):
            error = self.refused(type="fileUpload", maxSize=value)
            self.assertEqual(error.message, "fields[2].maxSize: must be a positive size in MB")

    def test_accepted_types(self) -> None:
        field = self.field(type="fileUpload", acceptedFileTypes=["audio/*", "video/*"])
        self.assertEqual(field.accepted_types, ("audio/*", "video/*"))
        self.assertEqual(self.field(type="fileUpload", acceptedFileTypes="image/png")
                         .accepted_types, ("image/png",))
        error = self.refused(type="fileUpload", acceptedFileTypes=[1])
        self.assertIn("acceptedFileTypes", error.message)

    def test_options(self) -> None:
        field = self.field(type="select", options=[{"label": "A", "value": "a"}, 4, "b"],
                           default="4")
        self.assertEqual(field.options, ("a", 4, "b"))
        self.assertEqual(field.kind, "select")

    def test_bad_options(self) -> None:
        error = self.refused(type="select", options=[{"label": "A"}])
        self.assertEqual(error.message, "fields[2].options[0]: an option needs a value")
        error = self.refused(type="select", options=[{"value": [1]}])
        self.assertIn("fields[2].options[0].value: ", error.message)
        error = self.refused(type="select")
        self.assertEqual(error.message, "fields[2]: a select field needs options")
        error = self.refused(type="select", options=["-rf", "ok"])
        self.assertIn("fields[2].options[0]: not a valid value: ", error.message)

    def test_bad_defaults(self) -> None:
        for entry in ({"type": "number", "max": 5, "default": 6},
                      {"type": "number", "default": "abc"},
                      {"type": "select", "options": [1, 2], "default": 3},
                      {"type": "switch", "default": "yes"},
                      {"type": "text", "default": "--all"}):
            error = self.refused(**entry)
            self.assertIn("fields[2].default: not a valid value: x ", error.message)

    def test_upload_default_ignored(self) -> None:
        self.assertEqual(self.field(type="fileUpload", default=3).default, 3)

    def test_missing_type(self) -> None:
        self.assertEqual(self.refused().message, "missing required key fields[2].type")

    def test_not_an_object(self) -> None:
        document = _document()
        document["fields"].append("x")
        error = self.assertRaises(DescriptorError, load_descriptor, self.write(document))
        self.assertEqual(error.message, "fields[2]: must be an object")

    def test_kinds(self) -> None:
        for field_type, kind in (("fileUpload", "upload"), ("number", "number"),
                                 ("inputSlider", "number"), ("checkbox", "boolean"),
                                 ("switch", "boolean"), ("boolean", "boolean"),
                                 ("select", "select"), ("text", "text"),
                                 ("colorPicker", "text"), ("other", "text")):
            self.assertEqual(FieldSpec(id="x", type=field_type).kind, kind)

    def test_error_located_at_the_value(self) -> None:
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
        error = self.assertRaises(DescriptorError, load_descriptor, self.write(text))
        self.assertEqual((error.line, error.column), (7, 13))
        self.assertEqual(error.message, "fields[1].min: must be a number")


class RoleTests(_FilesMixin, SynchronousTestCase):
    """``allowed_roles``, ``role_limits`` and ``main_input_id``."""

    limits = {"pro": [{"type": "media", "value": "300", "attribute": "duration"}],
              "basic": [{"value": 800, "attribute": "resolution"}]}

    def load(self, **changes: Any) -> ModelDescriptor:
        return load_descriptor(self.write(_document(**changes)))

    def refused(self, **changes: Any) -> DescriptorError:
        return self.assertRaises(DescriptorError, self.load, **changes)

    def test_allowed_roles(self) -> None:
        self.assertIsNone(self.load().allowed_roles)
        self.assertEqual(self.load(allowed_roles=[]).allowed_roles, ())
        self.assertEqual(self.load(allowed_roles=["pro"]).allowed_roles, ("pro",))
        for value in ("pro", [1], {}):
            error = self.refused(allowed_roles=value)
            self.assertEqual(error.message, "allowed_roles: must be a list of role names")

    def test_limits(self) -> None:
        model = self.load(role_limits=self.limits, main_input_id="media")
        self.assertEqual(dict(model.role_limits), {
            "pro": (RoleLimit("duration", 300.0),),
            "basic": (RoleLimit("resolution", 800.0),),
        })

    def test_empty_limits(self) -> None:
        directory = self.directory()
        self.write(_document(role_limits={"pro": []}), directory=directory)
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual(problems, [])
        self.assertEqual(dict(models[0].role_limits), {"pro": ()})

    def test_limits_need_main_input(self) -> None:
        error = self.refused(role_limits=self.limits)
        self.assertEqual(error.message,
                         "role_limits: role limits need main_input_id, the upload they measure")

    def test_unknown_attribute(self) -> None:
        limits = {"pro": [{"type": "media", "value": 3, "attribute": "width"}]}
        error = self.refused(role_limits=limits, main_input_id="media")
        self.assertEqual(error.message, 'role_limits.pro[0].attribute: "width" is not a known '
                                        "attribute (duration or resolution)")

    def test_unknown_type(self) -> None:
        limits = {"pro": [{"type": "count", "value": 3, "attribute": "duration"}]}
        error = self.refused(role_limits=limits, main_input_id="media")
        self.assertIn("role_limits.pro[0].type: ", error.message)

    def test_bad_values(self) -> None:
        for value in ("0", -1, "abc"):
            limits = {"pro": [{"value": value, "attribute": "duration"}]}
            error = self.refused(role_limits=limits, main_input_id="media")
            self.assertIn("role_limits.pro[0].value: ", error.message)
        error = self.refused(role_limits={"pro": [{"attribute": "duration"}]},
                             main_input_id="media")
        self.assertEqual(error.message, "missing required key role_limits.pro[0].value")

    def test_bad_shapes(self) -> None:
        for limits, where in (([], "role_limits"), ({"pro": {}}, "role_limits.pro"),
                              ({"pro": ["x"]}, "role_limits.pro[0]")):
            error = self.refused(role_limits=limits, main_input_id="media")
            self.assertTrue(error.message.startswith(f"{where}: "), error.message)


class LoadModelsTests(_FilesMixin, SynchronousTestCase):
    """Loading a directory: order, skipped files, and every problem at once."""

    def test_sorted_and_filtered(self) -> None:
        directory = self.directory()
        for name, endpoint in (("b.json", "b"), ("a.json", "a"), ("c.json.example", "c"),
                               (".hidden.json", "h"), ("d.yaml", "d")):
            document = _document(actions={"submit": {"endpoint": f"/{endpoint}/"}})
            self.write(document, name, directory)
        (directory / "sub.json").mkdir()
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.endpoint for m in models], ["a", "b"])
        self.assertEqual([Path(m.path).name for m in models], ["a.json", "b.json"])
        self.assertEqual(problems, [])

    def test_duplicate_endpoint_names_the_first(self) -> None:
        directory = self.directory()
        first = self.write(_document(), "a.json", directory)
        second = self.write(_document(), "b.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.path for m in models], [first])
        self.assertEqual(len(problems), 1)
        self.assertEqual(problems[0].path, second)
        self.assertEqual(problems[0].message,
                         f'actions.submit.endpoint: "process-echo" is already the endpoint of '
                         f"{first}")
        self.assertEqual((problems[0].line, problems[0].column), (7, 19))

    def test_duplicate_of_a_broken_file(self) -> None:
        directory = self.directory()
        self.write(_document(command="tool <nothing>"), "a.json", directory)
        self.write(_document(), "b.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual(models, [])
        self.assertEqual([Path(p.path).name for p in problems], ["a.json", "b.json"])

    def test_every_problem_reported(self) -> None:
        directory = self.directory()
        document = _document(command="tool <media> <missing> <out>", main_input_id="gain",
                             role_limits={"pro": [{"attribute": "width", "value": 1}]},
                             output=[{"id": "gain", "format": "mp3"}])
        self.write(document, "a.json", directory)
        self.write("{", "b.json", directory)
        self.write(_document(actions={"submit": {"endpoint": "/other/"}}), "c.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual([m.endpoint for m in models], ["other"])
        messages = [(Path(p.path).name, p.message) for p in problems]
        self.assertEqual(messages, [
            ("a.json", 'output[0].id: "gain" is already the id of fields[1]'),
            ("a.json", 'role_limits.pro[0].attribute: "width" is not a known attribute '
                       "(duration or resolution)"),
            ("a.json", "command: <missing> matches no field or output id"),
            ("a.json", "command: <out> matches no field or output id"),
            ("a.json", 'main_input_id: "gain" is not a fileUpload field'),
            ("b.json", "invalid JSON: Expecting property name enclosed in double quotes"),
        ])
        self.assertTrue(all(p.line is not None for p in problems))

    def test_ffprobe_needed_for_limits(self) -> None:
        directory = self.directory()
        document = _document(main_input_id="media",
                             role_limits={"pro": [{"attribute": "duration", "value": 1}]})
        self.write(document, "a.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual(models, [])
        self.assertEqual([str(p) for p in problems], [
            f"{directory / 'a.json'}:33:18: role_limits: role limits need ffprobe, "
            "which is not installed",
        ])
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual((len(models), problems), (1, []))

    def test_missing_directory(self) -> None:
        path = str(self.directory() / "absent")
        models, problems = load_models(path, ffprobe_available=True)
        self.assertEqual(models, [])
        self.assertEqual(problems[0].path, path)
        self.assertIn("cannot list", problems[0].message)

    def test_empty_directory(self) -> None:
        self.assertEqual(load_models(str(self.directory()), ffprobe_available=True), ([], []))
