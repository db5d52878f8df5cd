"""Filling command templates: the WebSaaS node's token rules and the reference samples."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.template import TemplateError, command_placeholders, fill_command
from tests.helpers.reference import reference_file

__all__ = ["BareFlagTests", "BooleanTests", "PlaceholderTests", "SampleTests", "ValueTests"]


def _sample_command(name: str) -> str:
    """The ``command`` of a reference descriptor (skips when the file is absent)."""
    path = reference_file("websaas", "models-enabled", name)
    return json.loads(path.read_text(encoding="utf-8"))["command"]


class PlaceholderTests(SynchronousTestCase):
    """``command_placeholders`` lists the ``<name>`` placeholders."""

    def test_order_of_appearance(self) -> None:
        self.assertEqual(
            command_placeholders("tool <b> -x <a> --y=<c>"), ["b", "a", "c"]
        )

    def test_each_name_once(self) -> None:
        self.assertEqual(command_placeholders("tool <a> <b> <a>x<a>"), ["a", "b"])

    def test_quoted(self) -> None:
        self.assertEqual(command_placeholders("tool --c='<color>' \"<x> <y>\""),
                         ["color", "x", "y"])

    def test_only_word_characters(self) -> None:
        self.assertEqual(
            command_placeholders("tool <a-b> <> < a> cc=>mean <ok_1>"), ["ok_1"]
        )

    def test_none(self) -> None:
        self.assertEqual(command_placeholders("tool -y --flag"), [])

    def test_unbalanced_quote(self) -> None:
        self.assertRaises(ValueError, command_placeholders, "tool '<a>")


class BooleanTests(SynchronousTestCase):
    """A token that is exactly ``<flag>`` with a boolean input."""

    def test_true_becomes_flag(self) -> None:
        self.assertEqual(
            fill_command("tool <show_watermark> x", {"show_watermark": True}),
            ["tool", "--show-watermark", "x"],
        )

    def test_false_drops_only_the_token(self) -> None:
        self.assertEqual(
            fill_command("tool -v <fast> x", {"fast": False}), ["tool", "-v", "x"]
        )

    def test_boolean_inside_a_longer_token_is_text(self) -> None:
        self.assertEqual(
            fill_command("tool --fast=<fast> <a>x", {"fast": True, "a": False}),
            ["tool", "--fast=True", "Falsex"],
        )


class ValueTests(SynchronousTestCase):
    """Tokens holding placeholders with values, missing values and empty values."""

    def test_substituted(self) -> None:
        self.assertEqual(
            fill_command("tool -i <media> --size=<size>", {"media": "/jobs/j1/a.wav",
                                                           "size": 3}),
            ["tool", "-i", "/jobs/j1/a.wav", "--size=3"],
        )

    def test_numbers_keep_their_text(self) -> None:
        self.assertEqual(
            fill_command("tool <a> <b> c=<c> <d>", {"a": 1.0, "b": 0.5, "c": -2, "d": 0}),
            ["tool", "1.0", "0.5", "c=-2", "0"],
        )

    def test_each_placeholder_gets_its_own_value(self) -> None:
        self.assertEqual(
            fill_command("tool x=<a>,y=<b>,z=<a>", {"a": 1, "b": 2}), ["tool", "x=1,y=2,z=1"]
        )

    def test_value_stays_one_token(self) -> None:
        self.assertEqual(
            fill_command("tool --title <title>", {"title": "My song; rm -rf / $(x) 'q'"}),
            ["tool", "--title", "My song; rm -rf / $(x) 'q'"],
        )

    def test_placeholder_syntax_in_a_value_is_not_filled_again(self) -> None:
        self.assertEqual(
            fill_command("tool <a> <b>", {"a": "<b>", "b": "x"}), ["tool", "<b>", "x"]
        )

    def test_missing_drops_the_flag_before(self) -> None:
        for inputs in ({}, {"lyrics": None}, {"lyrics": ""}):
            self.assertEqual(
                fill_command("tool --lyrics_file <lyrics> out", inputs), ["tool", "out"]
            )

    def test_missing_drops_a_single_dash_flag_before(self) -> None:
        self.assertEqual(fill_command("tool -i <media> out", {}), ["tool", "out"])

    def test_missing_after_a_non_flag_keeps_it(self) -> None:
        self.assertEqual(fill_command("tool input <extra> out", {}), ["tool", "input", "out"])

    def test_missing_first_argument(self) -> None:
        self.assertEqual(fill_command("tool <a>", {}), ["tool"])

    def test_missing_in_a_row(self) -> None:
        self.assertEqual(
            fill_command("tool -a <a> -b <b> -c <c>", {"c": 1}), ["tool", "-c", "1"]
        )

    def test_only_the_previous_token_goes(self) -> None:
        self.assertEqual(fill_command("tool -x -y <a>", {}), ["tool", "-x"])

    def test_previous_refers_to_the_output_so_far(self) -> None:
        self.assertEqual(
            fill_command("tool -v <off> <gone>", {"off": False}), ["tool"]
        )

    def test_flag_and_value_in_one_token(self) -> None:
        self.assertEqual(
            fill_command("tool -v --size=<size> out", {}), ["tool", "out"]
        )

    def test_all_missing_in_a_multi_placeholder_token(self) -> None:
        self.assertEqual(
            fill_command("tool -af eq=<a>:<b> out", {"a": "", "b": None}), ["tool", "out"]
        )

    def test_some_missing_is_refused(self) -> None:
        error = self.assertRaises(
            TemplateError, fill_command, "tool -af eq=<a>:<b>:<c> out", {"a": 1, "c": ""}
        )
        self.assertEqual(error.field, "b")
        self.assertIn("b", error.message)
        self.assertEqual(str(error), error.message)

    def test_some_empty_is_refused(self) -> None:
        error = self.assertRaises(
            TemplateError, fill_command, "tool eq=<a>:<b>", {"a": "", "b": 2}
        )
        self.assertEqual(error.field, "a")

    def test_some_absent_none_or_empty_are_all_refused(self) -> None:
        """A band left out, sent as null or sent empty is refused the same way, naming it."""
        for inputs in ({"a": 1}, {"a": 1, "b": None}, {"a": 1, "b": ""}):
            error = self.assertRaises(
                TemplateError, fill_command, "tool -af eq=<a>x<b> out", inputs
            )
            self.assertEqual(error.field, "b")
            self.assertIn("b is required", error.message)

    def test_first_missing_field_is_named(self) -> None:
        """With several fields of one argument missing, the first in the argument is named."""
        error = self.assertRaises(
            TemplateError, fill_command, "tool x=<c>,<b>,<a>", {"a": 1, "b": "", "c": None}
        )
        self.assertEqual(error.field, "c")

    def test_zero_and_false_are_values_not_missing(self) -> None:
        """0 and False fill a shared argument like any other value."""
        self.assertEqual(
            fill_command("tool eq=<a>:<b>:<c>", {"a": 0, "b": 0.0, "c": False}),
            ["tool", "eq=0:0.0:False"],
        )

    def test_a_field_repeated_in_one_argument_counts_once(self) -> None:
        """``<a>x<a>`` holds one field: empty, the argument (and its flag) go; given, it is
        written twice."""
        self.assertEqual(fill_command("tool -s <a>x<a> out", {"a": ""}), ["tool", "out"])
        self.assertEqual(fill_command("tool -s <a>x<a> out", {"a": 4}),
                         ["tool", "-s", "4x4", "out"])

    def test_single_placeholder_in_a_longer_token_is_dropped_not_refused(self) -> None:
        """One field inside a longer argument (``--size=<size>``), absent or empty, drops the
        argument and its flag: only a partly filled argument is refused."""
        for inputs in ({}, {"size": None}, {"size": ""}):
            self.assertEqual(
                fill_command("tool -v --size=<size> -x <size>px out", inputs), ["tool", "out"]
            )

    def test_quoting_is_removed_and_kept_inside(self) -> None:
        self.assertEqual(
            fill_command(
                "tool -af \"eq='<a> <b>'\" 'two words' --c='<c>'", {"a": 1, "b": 2, "c": "#FFF"}
            ),
            ["tool", "-af", "eq='1 2'", "two words", "--c=#FFF"],
        )

    def test_unbalanced_quote(self) -> None:
        self.assertRaises(ValueError, fill_command, "tool \"<a>", {"a": 1})


class BareFlagTests(SynchronousTestCase):
    """``--some-flag`` tokens without a placeholder."""

    def test_dropped_without_input(self) -> None:
        self.assertEqual(fill_command("tool --debug x", {}), ["tool", "x"])

    def test_kept_with_a_true_input(self) -> None:
        self.assertEqual(fill_command("tool --debug", {"debug": True}), ["tool", "--debug"])

    def test_kept_with_any_value_but_false(self) -> None:
        for value in ("yes", "", 0, "false"):
            self.assertEqual(fill_command("tool --debug", {"debug": value}), ["tool", "--debug"])

    def test_dropped_when_false_or_none(self) -> None:
        for value in (False, None):
            self.assertEqual(fill_command("tool --debug", {"debug": value}), ["tool"])

    def test_flag_before_a_placeholder_of_another_name(self) -> None:
        self.assertEqual(
            fill_command("tool --lyrics_file <lyricsfile>", {"lyricsfile": "/jobs/j1/l.txt"}),
            ["tool", "/jobs/j1/l.txt"],
        )

    def test_hyphens_name_underscores(self) -> None:
        self.assertEqual(
            fill_command("tool --show-watermark --show_title", {"show_watermark": True,
                                                                 "show_title": True}),
            ["tool", "--show-watermark", "--show_title"],
        )

    def test_single_dash_and_plain_tokens_always_kept(self) -> None:
        self.assertEqual(fill_command("tool -y +write ( x )", {}),
                         ["tool", "-y", "+write", "(", "x", ")"])


class SampleTests(SynchronousTestCase):
    """The argv of each reference descriptor, with realistic inputs."""

    def test_audio_audio_each_band_its_value(self) -> None:
        command = _sample_command("audio-audio.json.example")
        inputs = {
            "media": "/jobs/j1/media-1.wav",
            "khz0": 3,
            "khz250": -2,
            "khz1000": 0,
            "khz4000": 1.5,
            "khz16000": -6,
            "processedMedia": "/jobs/j1/3f2a.mp3",
        }
        self.assertEqual(fill_command(command, inputs), [
            "ffmpeg", "-y", "-i", "/jobs/j1/media-1.wav", "-af",
            "firequalizer=gain_entry='entry(0,3);entry(250,-2);entry(1000,0);"
            "entry(4000,1.5);entry(16000,-6)'",
            "/jobs/j1/3f2a.mp3",
        ])

    def test_audio_audio_partial_bands_refused(self) -> None:
        command = _sample_command("audio-audio.json.example")
        inputs = {"media": "/jobs/j1/media-1.wav", "khz0": 3, "khz1000": 0,
                  "processedMedia": "/jobs/j1/3f2a.mp3"}
        error = self.assertRaises(TemplateError, fill_command, command, inputs)
        self.assertEqual(error.field, "khz250")

    def test_image_image(self) -> None:
        command = _sample_command("image-image.json.example")
        inputs = {
            "media": "/jobs/j1/media-1.png",
            "negate": 15,
            "areaThreshold": 70,
            "connectedComponents": 4,
            "alpha": "off",
            "processedImage": "/jobs/j1/3f2a.png",
            "processedImageMask": "/jobs/j1/9c1b.png",
        }
        self.assertEqual(fill_command(command, inputs), [
            "convert", "/jobs/j1/media-1.png",
            "(", "-clone", "0", "-negate", "-threshold", "15%", "-type", "bilevel",
            "+write", "/jobs/j1/9c1b.png",
            "-define", "connected-components:area-threshold=70",
            "-define", "connected-components=>mean-color=true",
            "-connected-components", "4",
            "+write", "/jobs/j1/9c1b.png", ")",
            "-alpha", "off", "-compose", "copy_opacity", "-composite", "/jobs/j1/3f2a.png",
        ])

    def test_audio_video(self) -> None:
        command = _sample_command("audio-video.json.example")
        inputs = {
            "audiomedia": "/jobs/j1/audiomedia-1.mp3",
            "imagemedia": "/jobs/j1/imagemedia-2.jpg",
            "texfilemedia": "/jobs/j1/texfilemedia-3.txt",
            "font_color": "#FFFFFF",
            "bg_alpha": 0.5,
            "processedVideo": "/jobs/j1/3f2a.mp4",
        }
        self.assertEqual(fill_command(command, inputs), [
            "python", "spectrum_video.py", "/jobs/j1/audiomedia-1.mp3",
            "--background_image=/jobs/j1/imagemedia-2.jpg",
            "--lyrics_file=/jobs/j1/texfilemedia-3.txt",
            "--font_color=#FFFFFF",
            "--background_alpha=0.5",
            "/jobs/j1/3f2a.mp4",
        ])

    def test_audio_video_debug_kept_when_given(self) -> None:
        command = _sample_command("audio-video.json.example")
        inputs = {"audiomedia": "/a.mp3", "imagemedia": "/i.jpg", "texfilemedia": "/t.txt",
                  "font_color": "#000000", "bg_alpha": 1, "processedVideo": "/v.mp4",
                  "debug": True}
        self.assertEqual(fill_command(command, inputs)[-2:], ["/v.mp4", "--debug"])


class WholeTokenOptionTests(SynchronousTestCase):
    """A value that becomes a whole argument cannot pass for an option."""

    def test_leading_dash_in_a_whole_token_refused(self) -> None:
        """A negative number or a dash-led value as a whole argument is refused; inside a
        longer token it is fine (``volume=-5dB``)."""
        with self.assertRaises(TemplateError) as caught:
            fill_command("tool --gain <gain> <out>", {"gain": -5, "out": "/j/o"})
        self.assertEqual(caught.exception.field, "gain")
        self.assertIn("must not start with '-'", caught.exception.message)
        self.assertRaises(TemplateError, fill_command, "tool <name>", {"name": "--help"})
        self.assertEqual(fill_command("tool -af volume=<gain>dB", {"gain": -5}),
                         ["tool", "-af", "volume=-5dB"])
