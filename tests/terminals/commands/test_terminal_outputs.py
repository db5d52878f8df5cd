"""What a job hands back: missing outputs, large outputs, and the WebSaaS reference models."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import jwt
from twisted.trial.unittest import TestCase

from runnergw.models.template import fill_command
from runnergw.terminals.commands import terminal
from tests.helpers.clients import raw_connect
from tests.helpers.command_gateway import (
    decode_data_uri,
    descriptor,
    start_pipelines,
)
from tests.helpers.media import media_info, png_size, sine_wav, striped_png
from tests.helpers.reference import reference_file

_BIG = 20 * 1024 * 1024
_SEED = 20240601


def _capture_argv(testcase: TestCase) -> list[list[str]]:
    """Record the argv of every job the terminals start."""
    seen: list[list[str]] = []
    original = terminal.start_job

    def start_job(launcher: Any, clock: Any, argv: list[str],
                  *rest: Any, **options: Any) -> Any:
        seen.append(list(argv))
        return original(launcher, clock, argv, *rest, **options)

    testcase.patch(terminal, "start_job", start_job)
    return seen


def _big_descriptor(size: int = _BIG) -> dict[str, Any]:
    return descriptor(
        "big",
        f"python3 -c 'import random, sys; open(sys.argv[1], \"wb\").write("
        f"random.Random({_SEED}).randbytes({size}))' <blob>",
        outputs=[{"id": "blob", "type": "file", "format": "bin"}])


class OutputTests(TestCase):
    """Outputs are read from the job directory once the command succeeded."""

    timeout = 60

    async def test_missing_and_empty_outputs_are_null(self) -> None:
        pipelines = start_pipelines(self, {"partial": descriptor(
            "partial",
            "python3 -c 'import sys; open(sys.argv[1], \"w\").write(\"here\"); "
            "open(sys.argv[2], \"w\")' <present> <empty> <absent>",
            outputs=[{"id": "present", "type": "text", "format": "txt"},
                     {"id": "empty", "type": "text", "format": "txt"},
                     {"id": "absent", "type": "image", "format": "png"}])})
        answer = await pipelines.post("partial")
        self.assertEqual(answer.status, 200, answer.body)
        # Small outputs: the reply goes out whole, its length announced.
        self.assertEqual(answer.length, len(answer.body))
        outputs = answer.json["outputs"]
        self.assertEqual(outputs, {"present": "data:text/plain;base64,aGVyZQ==",
                                   "empty": None, "absent": None})
        claims = jwt.decode(answer.json["token"], pipelines.saas.node_public_key(),
                            algorithms=["RS256"])
        self.assertEqual(claims["outputs"], {
            "present": "sha256:" + hashlib.sha256(b"here").hexdigest(),
            "empty": None, "absent": None})
        record = await pipelines.settled(1)
        self.assertEqual(record["missing_outputs"], ["empty", "absent"])
        self.assertEqual(record["outcome"], "ok")

    async def test_only_regular_files_are_outputs(self) -> None:
        """A symbolic link (to a file the gateway may read) or a FIFO is not an output."""
        secret = Path(self.mktemp()).absolute()
        secret.write_bytes(b"node private key")
        pipelines = start_pipelines(self, {"odd": descriptor(
            "odd",
            "python3 -c 'import os, sys; os.symlink(sys.argv[3], sys.argv[1]); "
            f"os.mkfifo(sys.argv[2])' <linked> <fifo> {secret}",
            outputs=[{"id": "linked", "type": "text", "format": "txt"},
                     {"id": "fifo", "type": "text", "format": "txt"}])})
        answer = await pipelines.post("odd")
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.json["outputs"], {"linked": None, "fifo": None})
        record = await pipelines.settled(1)
        self.assertEqual(record["missing_outputs"], ["linked", "fifo"])

    async def test_large_output_is_returned_intact(self) -> None:
        """20 MiB made by the job come back byte for byte, streamed as they are read."""
        pipelines = start_pipelines(self, {"big": _big_descriptor()})
        answer = await pipelines.post("big")
        self.assertEqual(answer.status, 200, answer.body[:200])
        self.assertIsNone(answer.length)
        mime, data = decode_data_uri(answer.json["outputs"]["blob"])
        self.assertEqual(mime, "application/octet-stream")
        self.assertEqual(len(data), _BIG)
        expected = hashlib.sha256(random.Random(_SEED).randbytes(_BIG)).hexdigest()
        self.assertEqual(hashlib.sha256(data).hexdigest(), expected)
        claims = jwt.decode(answer.json["token"], pipelines.saas.node_public_key(),
                            algorithms=["RS256"])
        self.assertEqual(claims["outputs"], {"blob": "sha256:" + expected})
        record = await pipelines.settled(1)
        self.assertGreater(record["bytes_out"], _BIG * 4 // 3)

    async def test_streamed_reply_marks_missing_outputs(self) -> None:
        """Outputs too large to answer at once are streamed; a missing one is still null,
        hashed as None and audited."""
        size = 300 * 1024
        pipelines = start_pipelines(self, {"half": descriptor(
            "half",
            f"python3 -c 'import sys; open(sys.argv[1], \"wb\").write(bytes({size}))' "
            "<blob> <absent>",
            outputs=[{"id": "blob", "type": "file", "format": "bin"},
                     {"id": "absent", "type": "text", "format": "txt"}])})
        answer = await pipelines.post("half")
        self.assertEqual(answer.status, 200, answer.body[:200])
        self.assertIsNone(answer.length)
        self.assertEqual(decode_data_uri(answer.json["outputs"]["blob"])[1], bytes(size))
        self.assertIsNone(answer.json["outputs"]["absent"])
        claims = jwt.decode(answer.json["token"], pipelines.saas.node_public_key(),
                            algorithms=["RS256"])
        self.assertEqual(claims["outputs"], {
            "blob": "sha256:" + hashlib.sha256(bytes(size)).hexdigest(), "absent": None})
        record = await pipelines.settled(1)
        self.assertEqual(record["missing_outputs"], ["absent"])

    async def test_client_leaving_during_the_reply(self) -> None:
        """The reply stops, the directory goes, the audit says the client left."""
        pipelines = start_pipelines(self, {"big": _big_descriptor()})
        client = await raw_connect(self, pipelines.gateway)
        client.send(pipelines.raw_request("big"))
        await client.wait_for(b'data:application/octet-stream;base64,')
        await client.close()
        record = await pipelines.settled(1)
        self.assertEqual((record["status"], record["outcome"]), (200, "client_gone"))
        self.assertLess(record["bytes_out"], _BIG)

    async def test_client_that_stops_reading_is_dropped(self) -> None:
        """A client that takes no bytes for the write timeout is dropped and the job ends.

        The output (64 MiB) is larger than what the socket buffers on both sides can hold.
        """
        pipelines = start_pipelines(self, {"big": _big_descriptor(64 * 1024 * 1024)},
                                    server={"writeTimeoutSeconds": "1s"})
        client = await raw_connect(self, pipelines.gateway)
        client.send(pipelines.raw_request("big"))
        await client.wait_for(b"data:application/octet-stream;base64,")
        client.transport.pauseProducing()
        record = await pipelines.settled(1)
        self.assertEqual((record["status"], record["outcome"]), (200, "timeout"))
        self.assertEqual(record["reason"], "client stopped reading the response")
        client.transport.resumeProducing()
        await client.lost

    async def test_flags_and_booleans_follow_the_old_rules(self) -> None:
        """The argv a job receives: booleans as flags, empty values drop their option."""
        pipelines = start_pipelines(self, {"args": descriptor(
            "args",
            "python3 -c 'import json, sys; json.dump(sys.argv[1:], open(sys.argv[1], \"w\"))' "
            "<result> --level <level> --name <name> <fast> <slow> --verbose --quiet",
            fields=[{"id": "level", "type": "number", "min": 0, "max": 9},
                    {"id": "fast", "type": "checkbox"}, {"id": "slow", "type": "checkbox"},
                    {"id": "name", "type": "text"}, {"id": "verbose", "type": "checkbox"}])})
        argv = _capture_argv(self)
        form = {"level": 3, "fast": True, "slow": "false", "name": "", "verbose": "true"}
        answer = await pipelines.post("args", form)
        self.assertEqual(answer.status, 200, answer.body)
        _, written = decode_data_uri(answer.json["outputs"]["result"])
        [sent] = argv
        self.assertEqual(sent[4:], ["--level", "3", "--fast", "--verbose"])
        self.assertEqual(json.loads(written), sent[3:])
        await pipelines.settled(1)


class ReferenceModelTests(TestCase):
    """The WebSaaS node's sample descriptors run unchanged on runnergw."""

    timeout = 60

    def setUp(self) -> None:
        self.media = Path(self.mktemp())
        self.models = Path(self.mktemp())
        self.models.mkdir(parents=True)
        for name in ("audio-audio", "image-image"):
            shutil.copy(reference_file("websaas", "models-enabled", f"{name}.json.example"),
                        self.models / f"{name}.json")
        self.descriptors = {path.stem: json.loads(path.read_text())
                            for path in self.models.glob("*.json")}
        self.pipelines = start_pipelines(self, self.descriptors)
        self.argv = _capture_argv(self)

    async def test_image_image_runs_with_imagemagick(self) -> None:
        png = striped_png(self.media, 64, 48)
        form = {"negate": 15, "areaThreshold": 70, "connectedComponents": 4, "alpha": "off"}
        answer = await self.pipelines.post(
            "process-image", form, {"media": ("in.png", "image/png", png)},
            command=self.descriptors["image-image"]["command"], role="registered")
        self.assertEqual(answer.status, 200, answer.body)
        outputs = answer.json["outputs"]
        self.assertEqual(set(outputs), {"processedImage", "processedImageMask"})
        for key, uri in outputs.items():
            mime, data = decode_data_uri(uri)
            self.assertEqual(mime, "image/png")
            path = self.media / f"{key}.png"
            path.write_bytes(data)
            self.assertEqual(png_size(path), (64, 48))
        [argv] = self.argv
        media, mask, image = argv[1], argv[11], argv[-1]
        self.assertRegex(media, r"/media-[0-9a-f]{16}\.png$")
        for output in (mask, image):
            self.assertRegex(output, r"/[0-9a-f]{32}\.png$")
        self.assertEqual(argv, [
            "convert", media, "(", "-clone", "0", "-negate", "-threshold", "15%", "-type",
            "bilevel", "+write", mask, "-define", "connected-components:area-threshold=70",
            "-define", "connected-components=>mean-color=true", "-connected-components", "4",
            "+write", mask, ")", "-alpha", "off", "-compose", "copy_opacity", "-composite",
            image])
        inputs = {**form, "media": media, "processedImageMask": mask, "processedImage": image}
        self.assertEqual(argv, fill_command(self.descriptors["image-image"]["command"], inputs))
        record = await self.pipelines.settled(1)
        self.assertNotIn("command_mismatch", record)

    async def test_audio_audio_fills_every_band(self) -> None:
        """Each ``<khzN>`` of the equalizer token gets its own value (the old node's one
        deliberate difference), and ffmpeg runs it."""
        wav = sine_wav(self.media, 2)
        form = {"khz0": 1, "khz250": -2, "khz1000": 3, "khz4000": "4", "khz16000": -5.5}
        answer = await self.pipelines.post(
            "process-audio", form, {"media": ("tone.wav", "audio/x-wav", wav)}, role="pro")
        self.assertEqual(answer.status, 200, answer.body)
        mime, mp3 = decode_data_uri(answer.json["outputs"]["processedMedia"])
        self.assertEqual(mime, "audio/mpeg")
        path = self.media / "eq.mp3"
        path.write_bytes(mp3)
        self.assertEqual(media_info(path)["streams"][0]["codec_name"], "mp3")
        [argv] = self.argv
        self.assertEqual(argv[:3], ["ffmpeg", "-y", "-i"])
        self.assertRegex(argv[3], r"/media-[0-9a-f]{16}\.wav$")
        self.assertEqual(argv[4:6], [
            "-af", "firequalizer=gain_entry='entry(0,1);entry(250,-2);entry(1000,3);"
                   "entry(4000,4);entry(16000,-5.5)'"])
        self.assertRegex(argv[6], r"/[0-9a-f]{32}\.mp3$")
        self.assertEqual(len(argv), 7)
        await self.pipelines.settled(1)

    async def test_audio_audio_defaults(self) -> None:
        """Every band defaults to 0 when the form leaves it out."""
        wav = sine_wav(self.media, 2)
        answer = await self.pipelines.post(
            "process-audio", {}, {"media": ("tone.wav", "audio/wav", wav)}, role="registered")
        self.assertEqual(answer.status, 200, answer.body)
        [argv] = self.argv
        self.assertEqual(re.findall(r"entry\(\d+,([^)]*)\)", argv[5]), ["0"] * 5)
        await self.pipelines.settled(1)
