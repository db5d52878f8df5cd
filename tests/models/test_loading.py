"""Loading a models directory: which files are models, one endpoint per file, and every
problem of every file reported at once, as settings problems are."""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.models.loading import load_models
from tests.helpers.descriptors import DescriptorFiles, echo_descriptor, said, sample

__all__ = ["LoadModelsTests", "ReferenceModelsTests"]


class LoadModelsTests(DescriptorFiles, SynchronousTestCase):
    """Loading a directory: order, skipped files, and every problem at once."""

    def test_sorted_and_filtered(self) -> None:
        """Only ``*.json`` files are models, in name order; examples, hidden files and directories
        are not."""
        directory = self.directory()
        for name, endpoint in (("b.json", "b"), ("a.json", "a"), ("c.json.example", "c"),
                               (".hidden.json", "h"), ("d.yaml", "d")):
            document = echo_descriptor(actions={"submit": {"endpoint": f"/{endpoint}/"}})
            self.write(document, name, directory)
        (directory / "sub.json").mkdir()
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.endpoint for m in models], ["a", "b"])
        self.assertEqual([Path(m.path).name for m in models], ["a.json", "b.json"])
        self.assertEqual(problems, [])

    def test_duplicate_endpoint_names_the_first(self) -> None:
        """A second file for the same endpoint is left out, and its problem names the first."""
        directory = self.directory()
        first = self.write(echo_descriptor(), "a.json", directory)
        second = self.write(echo_descriptor(), "b.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.path for m in models], [first])
        self.assertEqual(len(problems), 1)
        self.assertEqual(problems[0].origin.source, second)
        self.assertEqual(said(problems[0]),
                         f'actions.submit.endpoint: "process-echo" is already the endpoint of '
                         f"{first}")
        self.assertEqual((problems[0].origin.line, problems[0].origin.column), (7, 19))

    def test_duplicate_of_a_broken_file(self) -> None:
        """A broken file still claims its endpoint: the next file with it is not served instead."""
        directory = self.directory()
        self.write(echo_descriptor(command="tool <nothing>"), "a.json", directory)
        self.write(echo_descriptor(), "b.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual(models, [])
        self.assertEqual([Path(p.origin.source).name for p in problems], ["a.json", "b.json"])

    def test_every_problem_reported(self) -> None:
        """One load lists every problem of every file, each at its line; good files are served."""
        directory = self.directory()
        document = echo_descriptor(command="tool <media> <missing> <out>", main_input_id="gain",
                             role_limits={"pro": [{"attribute": "width", "value": 1}]},
                             output=[{"id": "gain", "format": "mp3"}])
        self.write(document, "a.json", directory)
        self.write("{", "b.json", directory)
        other = echo_descriptor(actions={"submit": {"endpoint": "/other/"}})
        self.write(other, "c.json", directory)
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual([m.endpoint for m in models], ["other"])
        messages = [(Path(p.origin.source).name, said(p)) for p in problems]
        self.assertEqual(messages, [
            ("a.json", 'output[0].id: "gain" is already the id of fields[1]'),
            ("a.json", 'role_limits.pro[0].attribute: "width" is not a known attribute '
                       "(duration or resolution)"),
            ("a.json", "command: <missing> matches no field or output id"),
            ("a.json", "command: <out> matches no field or output id"),
            ("a.json", 'main_input_id: "gain" is not a fileUpload field'),
            ("b.json", "invalid JSON: Expecting property name enclosed in double quotes"),
        ])
        self.assertTrue(all(p.origin.line is not None for p in problems))

    def test_ffprobe_needed_for_limits(self) -> None:
        """Without ffprobe a model with role limits is refused, located at role_limits."""
        directory = self.directory()
        document = echo_descriptor(main_input_id="media",
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
        """A models directory that cannot be listed is one problem naming it."""
        path = str(self.directory() / "absent")
        models, problems = load_models(path, ffprobe_available=True)
        self.assertEqual(models, [])
        self.assertEqual(problems[0].origin.source, path)
        self.assertIn("cannot list", said(problems[0]))

    def test_empty_directory(self) -> None:
        """An empty models directory serves no model and is no problem."""
        self.assertEqual(load_models(str(self.directory()), ffprobe_available=True), ([], []))


class ReferenceModelsTests(DescriptorFiles, SynchronousTestCase):
    """The WebSaaS reference samples as a models directory."""

    def test_load_models_copies(self) -> None:
        """The reference samples load as the SaaS wrote them; the one with a comment is refused."""
        directory = self.directory()
        for name in ("audio-audio", "audio-video", "fast-video", "image-image"):
            shutil.copy(sample(f"{name}.json.example"), directory / f"{name}.json")
        models, problems = load_models(str(directory), ffprobe_available=True)
        self.assertEqual([m.endpoint for m in models],
                         ["process-audio", "process-audiovideo", "process-image"])
        self.assertEqual([(Path(p.origin.source).name, p.origin.line) for p in problems],
                         [("fast-video.json", 46)])

    def test_load_models_without_ffprobe(self) -> None:
        """The reference audio model sets role limits: without ffprobe it is refused at its line."""
        directory = self.directory()
        shutil.copy(sample("audio-audio.json.example"), directory / "audio-audio.json")
        models, problems = load_models(str(directory), ffprobe_available=False)
        self.assertEqual(models, [])
        self.assertEqual(len(problems), 1)
        self.assertIn("role limits need ffprobe, which is not installed", said(problems[0]))
        self.assertEqual(problems[0].origin.line, 99)
