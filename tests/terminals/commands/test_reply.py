"""The reply of a finished job: each output as a data URI with its hash, missing outputs as
null, only regular files read, and large replies streamed at the pace the client takes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from twisted.internet.task import Cooperator, TaskStopped
from twisted.trial.unittest import SynchronousTestCase

from runnergw.terminals.commands import reply
from runnergw.terminals.commands.reply import OutputReply, Outputs, mime_type_for
from runnergw.testing import RecordingClient

__all__ = ["MimeTypeTests", "OutputReplyTests", "OutputsTests"]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MimeTypeTests(SynchronousTestCase):
    """An output's data URI names its type from the descriptor's format."""

    def test_known_and_unknown_formats(self) -> None:
        """Known formats get their type; anything else is plain bytes."""
        self.assertEqual(mime_type_for("mp3"), "audio/mpeg")
        self.assertEqual(mime_type_for("png"), "image/png")
        self.assertEqual(mime_type_for("weird1"), "application/octet-stream")


class _OutputFiles(SynchronousTestCase):
    """A job directory to put outputs in."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir(parents=True)

    def output(self, name: str, data: bytes | None) -> str:
        """The path of an output, written with ``data`` unless None (the job made none)."""
        path = self.directory / name
        if data is not None:
            path.write_bytes(data)
        return str(path)


class OutputsTests(_OutputFiles):
    """What goes into ``{"outputs": …}``, and the hashes the token signs."""

    def test_outputs_become_data_uris_with_their_hashes(self) -> None:
        """Each output is base64 in a data URI of its type, hashed for the token."""
        text, image = b"hello\n", os.urandom(200_000)
        outputs = Outputs({"text": (self.output("a.txt", text), "txt"),
                           "image": (self.output("b.png", image), "png")})
        self.assertEqual(outputs.size, len(text) + len(image))
        body = json.loads(outputs.read_all() + b"}")
        self.assertEqual(body["outputs"], {
            "text": "data:text/plain;base64," + base64.b64encode(text).decode(),
            "image": "data:image/png;base64," + base64.b64encode(image).decode()})
        self.assertEqual(outputs.hashes, {"text": _sha256(text), "image": _sha256(image)})
        self.assertEqual(outputs.missing, [])

    def test_missing_and_empty_outputs_are_null(self) -> None:
        """An output the job did not write, or left empty, is null with no hash."""
        outputs = Outputs({"none": (self.output("n.txt", None), "txt"),
                           "empty": (self.output("e.txt", b""), "txt")})
        self.assertEqual(json.loads(outputs.read_all() + b"}"),
                         {"outputs": {"none": None, "empty": None}})
        self.assertEqual(outputs.hashes, {"none": None, "empty": None})
        self.assertEqual(outputs.missing, ["none", "empty"])

    def test_only_regular_files_are_outputs(self) -> None:
        """A symbolic link (to a file the gateway may read) or a FIFO is not an output."""
        secret = self.output("secret", b"not the job's")
        os.symlink(secret, self.directory / "link.txt")
        os.mkfifo(self.directory / "fifo.txt")
        outputs = Outputs({"link": (str(self.directory / "link.txt"), "txt"),
                           "fifo": (str(self.directory / "fifo.txt"), "txt")})
        self.assertEqual(outputs.size, 0)
        self.assertEqual(json.loads(outputs.read_all() + b"}"),
                         {"outputs": {"link": None, "fifo": None}})

    def test_output_is_read_up_to_its_size_when_opened(self) -> None:
        """A helper still appending to an output cannot make the reply endless."""
        path = self.output("grow.txt", b"first")
        outputs = Outputs({"grow": (path, "txt")})
        with open(path, "ab") as stream:
            stream.write(b" and more")
        body = json.loads(outputs.read_all() + b"}")
        self.assertEqual(body["outputs"]["grow"],
                         "data:text/plain;base64," + base64.b64encode(b"first").decode())

    def test_a_node_failure_is_raised_not_signed_as_missing(self) -> None:
        """An output the node cannot open (no descriptors left) is an error, and the outputs
        already opened are closed."""
        opened: list[int] = []
        real_open = reply._open_output

        def open_then_fail(path: str) -> object:
            if opened:
                raise OSError(24, "Too many open files")
            entry = real_open(path)
            assert entry is not None
            opened.append(entry[0].fileno())
            return entry

        self.patch(reply, "_open_output", open_then_fail)
        with self.assertRaises(OSError):
            Outputs({"a": (self.output("a.txt", b"a"), "txt"),
                     "b": (self.output("b.txt", b"b"), "txt")})
        self.assertRaises(OSError, os.fstat, opened[0])


class OutputReplyTests(_OutputFiles):
    """A large reply is written a piece per turn, as the client takes it."""

    def setUp(self) -> None:
        super().setUp()
        self.turns: list[Callable[[], object]] = []
        # One piece per turn of the (test) event loop, so each turn can be watched.
        self.cooperator = Cooperator(scheduler=self.turns.append,
                                     terminationPredicateFactory=lambda: lambda: True)
        self.data = os.urandom(500_000)
        self.client = RecordingClient()
        self.reply = OutputReply(
            self.client, Outputs({"video": (self.output("v.mp4", self.data), "mp4")}),
            self.cooperator)

    def run_turns(self, turns: int) -> None:
        """Run up to ``turns`` turns of the event loop, each one piece of the reply."""
        for _ in range(turns):
            if not self.turns:
                return
            self.turns.pop(0)()

    def test_streamed_whole_with_the_hash(self) -> None:
        """Piece by piece the reply is the whole output; done fires with its hash known."""
        self.run_turns(1000)
        self.successResultOf(self.reply.done)
        body = json.loads(self.client.body + b"}")
        self.assertEqual(base64.b64decode(body["outputs"]["video"].split(",", 1)[1]), self.data)
        self.assertEqual(self.reply.hashes, {"video": _sha256(self.data)})

    def test_paused_while_the_client_does_not_read(self) -> None:
        """Paused, nothing more is written; resumed, the reply goes on to its end."""
        self.run_turns(3)
        self.reply.pauseProducing()
        written = len(self.client.body)
        self.run_turns(50)
        self.assertEqual(len(self.client.body), written)
        self.assertNoResult(self.reply.done)
        self.reply.resumeProducing()
        self.run_turns(1000)
        self.successResultOf(self.reply.done)

    def test_stopped_when_the_client_leaves(self) -> None:
        """Stopped, the reply ends for good and says so; stopping again is harmless."""
        self.run_turns(3)
        self.reply.stopProducing()
        self.reply.stopProducing()
        self.failureResultOf(self.reply.done, TaskStopped)
        written = len(self.client.body)
        self.run_turns(50)
        self.assertEqual(len(self.client.body), written)
