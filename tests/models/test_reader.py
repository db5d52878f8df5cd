"""Reading one model descriptor file: the reference samples, the document's structure, its
roles and limits, and problems located and reported as settings problems are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.models.loading import load_models
from runnergw.models.reader import load_descriptor
from runnergw.models.types import FieldSpec, ModelDescriptor, OutputSpec, RoleLimit
from tests.helpers.descriptors import MB, DescriptorFiles, echo_descriptor, said, sample

__all__ = ["ProblemTests", "ReferenceTests", "RoleTests", "StructureTests"]


class ProblemTests(DescriptorFiles, SynchronousTestCase):
    """A descriptor problem is a settings problem: file, line, column, JSON path, message."""

    def test_problem_reads_like_a_settings_problem(self) -> None:
        """The operator reads ``file:line:column: json.path: message``."""
        path = self.write(
            '{\n'
            '  "command": "tool <n>",\n'
            '  "actions": {"submit": {"endpoint": "/e/"}},\n'
            '  "fields": [{"id": "n", "type": "number", "min": "low"}],\n'
            '  "output": []\n'
            '}\n')
        error = self.assertRaises(ConfigError, load_descriptor, path)
        self.assertEqual((error.origin.source, error.path, error.message),
                         (path, "fields[0].min", "must be a number"))
        self.assertEqual(str(error), f"{path}:4:51: fields[0].min: must be a number")

    def test_listed_with_settings_problems(self) -> None:
        """Among other problems, a descriptor's is one line like any settings problem."""
        path = self.write("{")
        error = self.assertRaises(ConfigError, load_descriptor, path)
        self.assertEqual(str(ConfigErrors([error])).splitlines(), [
            "1 configuration problem:",
            f"  {path}:1:2: invalid JSON: Expecting property name enclosed in double quotes",
        ])

    def test_a_problem_of_the_whole_file_has_no_path(self) -> None:
        """A file that cannot be read is named alone, without a line or a JSON path."""
        path = str(self.directory() / "absent.json")
        error = self.assertRaises(ConfigError, load_descriptor, path)
        self.assertEqual((error.path, error.origin.line), ("", None))
        self.assertEqual(str(error), f"{path}: cannot be read: No such file or directory")


class ReferenceTests(DescriptorFiles, SynchronousTestCase):
    """The WebSaaS sample descriptors."""

    def test_audio_audio(self) -> None:
        """The audio sample: endpoint, fields, output, main input, roles and their limits."""
        path = str(sample("audio-audio.json.example"))
        model = load_descriptor(path)
        self.assertEqual(model.path, path)
        self.assertEqual(model.endpoint, "process-audio")
        self.assertEqual(model.title, "Audio-to-Audio")
        self.assertEqual([f.id for f in model.fields],
                         ["media", "khz0", "khz250", "khz1000", "khz4000", "khz16000"])
        self.assertEqual(model.field("media"), FieldSpec(
            id="media", type="fileUpload", required=True, max_size=10 * MB,
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
        """The audio-video sample: three uploads with their sizes and media types."""
        model = load_descriptor(str(sample("audio-video.json.example")))
        self.assertEqual(model.endpoint, "process-audiovideo")
        self.assertEqual([f.id for f in model.upload_fields],
                         ["audiomedia", "imagemedia", "texfilemedia"])
        self.assertEqual(model.field("texfilemedia").max_size, 10485)
        self.assertEqual(model.field("texfilemedia").accepted_types, ("text/plain",))
        self.assertEqual(model.field("imagemedia").max_size, MB)
        self.assertEqual(model.field("font_color").default, "#FFFFFF")
        self.assertEqual(model.field("bg_alpha").kind, "number")
        self.assertEqual(model.main_input_id, "audiomedia")

    def test_image_image(self) -> None:
        """The image sample: select options and resolution limits."""
        model = load_descriptor(str(sample("image-image.json.example")))
        self.assertEqual(model.endpoint, "process-image")
        self.assertEqual(model.field("connectedComponents").options, (0, 4, 8))
        self.assertEqual(model.field("connectedComponents").default, 4)
        self.assertEqual(len(model.field("alpha").options), 15)
        self.assertEqual([o.id for o in model.outputs], ["processedImage", "processedImageMask"])
        self.assertEqual(model.role_limits["basic"], (RoleLimit("resolution", 800.0),))

    def test_fast_video_comment_is_invalid_json(self) -> None:
        """The sample with a comment is refused at the comment's line and column."""
        path = str(sample("fast-video.json.example"))
        error = self.assertRaises(ConfigError, load_descriptor, path)
        self.assertEqual((error.origin.line, error.origin.column), (46, 9))
        self.assertIn("invalid JSON", said(error))
        self.assertIn("comments are not allowed", said(error))
        self.assertTrue(str(error).startswith(f"{path}:46:9: "))


class StructureTests(DescriptorFiles, SynchronousTestCase):
    """The top-level keys, the endpoint, the command and the JSON itself."""

    def load(self, content: dict[str, Any] | str) -> ModelDescriptor:
        return load_descriptor(self.write(content))

    def refused(self, content: dict[str, Any] | str) -> ConfigError:
        return self.assertRaises(ConfigError, self.load, content)

    def test_minimal(self) -> None:
        """A small descriptor gives its endpoint and command; roles and limits stay open."""
        model = self.load(echo_descriptor())
        self.assertEqual(model.endpoint, "process-echo")
        self.assertEqual(model.command, "tool -i <media> --gain=<gain> <out>")
        self.assertIsNone(model.main_input_id)
        self.assertIsNone(model.allowed_roles)
        self.assertEqual(dict(model.role_limits), {})

    def test_unknown_keys_ignored(self) -> None:
        """Keys only the SaaS uses are ignored, at every level."""
        document = echo_descriptor(**{"$schema": "x", "formId": "f", "description": "d",
                                "type": "object"})
        document["actions"]["stopaction"] = {"command": "curl x", "resultvariable": "s"}
        document["fields"][0].update(label="L", helperText="H", storage={"path": "/"})
        document["output"][0]["storage"] = {"path": "/uploads/", "type": "filesystem"}
        self.assertEqual(self.load(document).endpoint, "process-echo")

    def test_missing_required_keys(self) -> None:
        """A missing command, fields or output is named as required."""
        for key in ("command", "fields", "output"):
            error = self.refused(echo_descriptor(**{key: None}))
            self.assertEqual(said(error), f"{key}: required")
            self.assertIsNone(error.origin.line)

    def test_missing_endpoint(self) -> None:
        """A missing actions.submit.endpoint is required, located at the object that lacks it."""
        for actions, line in ((None, None), ({}, 4), ({"submit": {"method": "POST"}}, 5)):
            error = self.refused(echo_descriptor(actions=actions))
            self.assertEqual(said(error), "actions.submit.endpoint: required")
            self.assertEqual(error.origin.line, line)

    def test_wrong_types(self) -> None:
        """A top-level value of the wrong JSON type is named at its path."""
        for changes, message in (
            ({"command": ["tool"]}, "command: must be a non-empty string"),
            ({"command": ""}, "command: must be a non-empty string"),
            ({"fields": {}}, "fields: must be a list"),
            ({"output": "x"}, "output: must be a list"),
            ({"actions": []}, "actions: must be an object"),
            ({"title": 3}, "title: must be a string"),
        ):
            self.assertEqual(said(self.refused(echo_descriptor(**changes))), message)

    def test_endpoints(self) -> None:
        """The route name is the endpoint URL's last path segment."""
        for url, name in (("https://h:1/process-audio/", "process-audio"),
                          ("https://h/a/b/run.v2", "run.v2"), ("/x_y/", "x_y"),
                          ("process-audio", "process-audio"),
                          ("https://h/process?x=1#f", "process")):
            document = echo_descriptor(actions={"submit": {"endpoint": url}})
            self.assertEqual(self.load(document).endpoint, name)

    def test_bad_endpoints(self) -> None:
        """An endpoint without a usable last segment is refused at its line."""
        for url in ("https://h:20400", "https://h/", "https://h/a%20b/", "https://h/..",
                    "https://h/caf\u00e9/", "http://[::1/x"):
            error = self.refused(echo_descriptor(actions={"submit": {"endpoint": url}}))
            self.assertTrue(said(error).startswith("actions.submit.endpoint: "), said(error))
            self.assertEqual(error.origin.line, 6)

    def test_command_cannot_be_split(self) -> None:
        """A command with an open quote is refused at the command's value."""
        error = self.refused(echo_descriptor(command="tool '<media> <out>"))
        self.assertIn("cannot be split", said(error))
        self.assertEqual((error.origin.line, error.origin.column), (3, 14))

    def test_program_must_be_fixed(self) -> None:
        """The program (first word) cannot be a placeholder."""
        error = self.refused(echo_descriptor(command="<media> <out>"))
        self.assertIn("program", said(error))

    def test_unknown_placeholder(self) -> None:
        """A placeholder that names no field or output is refused."""
        error = self.refused(echo_descriptor(command="tool <media> <lyricsfile> <out>"))
        self.assertEqual(said(error), "command: <lyricsfile> matches no field or output id")
        self.assertEqual(error.origin.line, 3)

    def test_bare_flags_need_no_field(self) -> None:
        """A flag without a placeholder needs no field."""
        model = self.load(echo_descriptor(command="tool <media> <out> --debug"))
        self.assertEqual(model.placeholders, ("media", "out"))

    def test_invalid_json(self) -> None:
        """Broken JSON is refused at the line and column where it breaks."""
        error = self.refused('{\n  "command": "tool",\n  "fields": [1 2]\n}')
        self.assertEqual((error.origin.line, error.origin.column), (3, 16))
        self.assertEqual(said(error), "invalid JSON: Expecting ',' delimiter")

    def test_line_comment(self) -> None:
        """A // comment is refused with a hint that JSON has no comments."""
        error = self.refused('{\n  // note\n  "command": "x"\n}')
        self.assertEqual((error.origin.line, error.origin.column), (2, 3))
        self.assertIn("comments are not allowed", said(error))

    def test_duplicate_key(self) -> None:
        """A key written twice is refused at its second value."""
        error = self.refused('{\n  "command": "a",\n  "command": "b"\n}')
        self.assertEqual(said(error), 'invalid JSON: duplicate key "command"')
        self.assertEqual((error.origin.line, error.origin.column), (3, 14))

    def test_not_an_object(self) -> None:
        """A document that is not an object is refused."""
        self.assertEqual(said(self.refused("[]")), "must be a JSON object")

    def test_byte_order_mark(self) -> None:
        """A UTF-8 byte order mark is allowed."""
        marked = "\ufeff" + json.dumps(echo_descriptor())
        self.assertEqual(self.load(marked).endpoint, "process-echo")

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 is refused as such."""
        path = Path(self.write("{}"))
        path.write_bytes(b'{"title": "\xff"}')
        error = self.assertRaises(ConfigError, load_descriptor, str(path))
        self.assertEqual(said(error), "is not UTF-8 text")

    def test_missing_file(self) -> None:
        """A file that cannot be read is one problem naming it."""
        path = str(self.directory() / "absent.json")
        error = self.assertRaises(ConfigError, load_descriptor, path)
        self.assertEqual(error.origin.source, path)
        self.assertIn("cannot be read", said(error))

    def test_output_formats(self) -> None:
        """Output formats are 1 to 10 letters or digits: no path, no dot."""
        for text in ("mp3", "PNG", "m4a", "abcdefghij"):
            document = echo_descriptor(output=[{"id": "out", "type": "audio", "format": text}])
            self.assertEqual(self.load(document).outputs[0].format, text)
        for text in ("", "mp3/x", "../x", "abcdefghijk", "tar.gz", 3):
            document = echo_descriptor(output=[{"id": "out", "type": "audio", "format": text}])
            self.assertIn("output[0].format: ", said(self.refused(document)))

    def test_output_without_type(self) -> None:
        """An output may leave out its type."""
        model = self.load(echo_descriptor(output=[{"id": "out", "format": "mp3"}]))
        self.assertEqual(model.outputs, (OutputSpec(id="out", type="", format="mp3"),))

    def test_output_id_clashes_with_field(self) -> None:
        """An output cannot take a field's id."""
        document = echo_descriptor(output=[{"id": "gain", "type": "audio", "format": "mp3"}],
                             command="tool <media> <gain>")
        error = self.refused(document)
        self.assertEqual(said(error), 'output[0].id: "gain" is already the id of fields[1]')

    def test_repeated_field_id(self) -> None:
        """Two fields cannot share an id; the problem names the first."""
        document = echo_descriptor()
        document["fields"].append({"id": "gain", "type": "text"})
        error = self.refused(document)
        self.assertEqual(said(error), 'fields[2].id: "gain" is already the id of fields[1]')

    def test_repeated_output_id(self) -> None:
        """Two outputs cannot share an id."""
        out = {"id": "out", "type": "audio", "format": "mp3"}
        error = self.refused(echo_descriptor(output=[out, out]))
        self.assertEqual(said(error), 'output[1].id: "out" is already the id of output[0]')

    def test_ids_are_words(self) -> None:
        """Ids are letters, digits, _ and -: never a path or empty."""
        for bad in ("a b", "../x", "", "a/b", 3):
            document = echo_descriptor()
            document["fields"].append({"id": bad, "type": "text"})
            self.assertIn("fields[2].id: ", said(self.refused(document)))
        document = echo_descriptor()
        document["fields"].append({"id": "my-field_2", "type": "text"})
        self.assertEqual(self.load(document).fields[-1].id, "my-field_2")

    def test_main_input_must_be_an_upload(self) -> None:
        """main_input_id must name an upload field."""
        for main in ("gain", "out", "nothing"):
            error = self.refused(echo_descriptor(main_input_id=main))
            self.assertEqual(said(error), f'main_input_id: "{main}" is not a fileUpload field')


class RoleTests(DescriptorFiles, SynchronousTestCase):
    """``allowed_roles``, ``role_limits`` and ``main_input_id``."""

    limits = {"pro": [{"type": "media", "value": "300", "attribute": "duration"}],
              "basic": [{"value": 800, "attribute": "resolution"}]}

    def load(self, **changes: Any) -> ModelDescriptor:
        return load_descriptor(self.write(echo_descriptor(**changes)))

    def refused(self, **changes: Any) -> ConfigError:
        return self.assertRaises(ConfigError, self.load, **changes)

    def test_allowed_roles(self) -> None:
        """allowed_roles is absent (any role) or a list of role names."""
        self.assertIsNone(self.load().allowed_roles)
        self.assertEqual(self.load(allowed_roles=[]).allowed_roles, ())
        self.assertEqual(self.load(allowed_roles=["pro"]).allowed_roles, ("pro",))
        for value in ("pro", [1], {}):
            error = self.refused(allowed_roles=value)
            self.assertEqual(said(error), "allowed_roles: must be a list of role names")

    def test_limits(self) -> None:
        """Role limits read their values, also written as strings."""
        model = self.load(role_limits=self.limits, main_input_id="media")
        self.assertEqual(dict(model.role_limits), {
            "pro": (RoleLimit("duration", 300.0),),
            "basic": (RoleLimit("resolution", 800.0),),
        })

    def test_empty_limits(self) -> None:
        """A role with no limits needs neither main_input_id nor ffprobe."""
        directory = self.directory()
        self.write(echo_descriptor(role_limits={"pro": []}), directory=directory)
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual(problems, [])
        self.assertEqual(dict(models[0].role_limits), {"pro": ()})

    def test_limits_need_main_input(self) -> None:
        """Role limits without main_input_id are refused: nothing to measure."""
        error = self.refused(role_limits=self.limits)
        self.assertEqual(said(error),
                         "role_limits: role limits need main_input_id, the upload they measure")

    def test_unknown_attribute(self) -> None:
        """Only duration and resolution can be limited."""
        limits = {"pro": [{"type": "media", "value": 3, "attribute": "width"}]}
        error = self.refused(role_limits=limits, main_input_id="media")
        self.assertEqual(said(error), 'role_limits.pro[0].attribute: "width" is not a known '
                                        "attribute (duration or resolution)")

    def test_unknown_type(self) -> None:
        """Only media limits are supported."""
        limits = {"pro": [{"type": "count", "value": 3, "attribute": "duration"}]}
        error = self.refused(role_limits=limits, main_input_id="media")
        self.assertIn("role_limits.pro[0].type: ", said(error))

    def test_bad_values(self) -> None:
        """A limit's value must be a positive number, and is required."""
        for value in ("0", -1, "abc"):
            limits = {"pro": [{"value": value, "attribute": "duration"}]}
            error = self.refused(role_limits=limits, main_input_id="media")
            self.assertIn("role_limits.pro[0].value: ", said(error))
        error = self.refused(role_limits={"pro": [{"attribute": "duration"}]},
                             main_input_id="media")
        self.assertEqual(said(error), "role_limits.pro[0].value: required")

    def test_bad_shapes(self) -> None:
        """role_limits must map role names to lists of objects."""
        for limits, where in (([], "role_limits"), ({"pro": {}}, "role_limits.pro"),
                              ({"pro": ["x"]}, "role_limits.pro[0]")):
            error = self.refused(role_limits=limits, main_input_id="media")
            self.assertTrue(said(error).startswith(f"{where}: "), said(error))
