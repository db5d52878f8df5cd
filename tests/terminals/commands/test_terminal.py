"""The command terminal end to end: the example models run for real on real media."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from twisted.trial.unittest import TestCase

from tests.helpers.command_gateway import (
    SERVER_ID,
    Answer,
    decode_data_uri,
    example,
    start_pipelines,
)
from tests.helpers.media import media_info, png_pixel, png_size, sine_wav, solid_png, striped_png

__all__ = ["ExampleModelTests", "StartupCleanupTests"]


class ExampleModelTests(TestCase):
    """The three shipped models, as the SaaS calls them."""

    timeout = 60

    def setUp(self) -> None:
        self.media = Path(self.mktemp())
        self.pipelines = start_pipelines(self, {
            name: example(name) for name in ("text-stats", "audio-gain", "image-thumbnail")})

    def check_token(self, answer: Answer, endpoint: str,
                    outputs: Mapping[str, bytes | None]) -> dict[str, Any]:
        """The reply token: RS256 by the node key, its claims bind the outputs."""
        token = answer.json["token"]
        self.assertEqual(jwt.get_unverified_header(token)["alg"], "RS256")
        claims = jwt.decode(token, self.pipelines.saas.node_public_key(), algorithms=["RS256"],
                            issuer=SERVER_ID)
        self.assertEqual(claims["exp"], claims["iat"] + 300)
        self.assertEqual(claims["sub"], "user-1")
        self.assertEqual(claims["endpoint"], endpoint)
        self.assertRegex(claims["jti"], r"^[0-9a-f]{32}$")
        self.assertEqual(claims["outputs"], {
            key: None if data is None else "sha256:" + hashlib.sha256(data).hexdigest()
            for key, data in outputs.items()})
        return claims

    async def test_text_stats(self) -> None:
        """Two outputs: the text in upper case and the word counts."""
        text = b"the cat and the dog and the bird\n"
        answer = await self.pipelines.post(
            "text-stats", {"top": 2}, {"document": ("notes.txt", "text/plain", text)})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.header("Content-Type"), "application/json")
        outputs = answer.json["outputs"]
        self.assertEqual(set(outputs), {"upperText", "wordCounts"})
        upper_type, upper = decode_data_uri(outputs["upperText"])
        counts_type, counts = decode_data_uri(outputs["wordCounts"])
        self.assertEqual(upper_type, "text/plain")
        self.assertEqual(upper, text.upper())
        self.assertEqual(counts_type, "application/json")
        self.assertEqual(json.loads(counts), {"words": 8, "top": [["the", 3], ["and", 2]]})
        first = self.check_token(answer, "text-stats", {"upperText": upper, "wordCounts": counts})
        record = await self.pipelines.settled(1)
        self.assertEqual((record["status"], record["outcome"], record["upstream"]),
                         (200, "ok", "text-stats"))
        self.assertEqual(record["exit_code"], 0)
        again = await self.pipelines.post(
            "text-stats", {"top": 2}, {"document": ("notes.txt", "text/plain", text)})
        self.assertNotEqual(self.check_token(again, "text-stats", {
            "upperText": upper, "wordCounts": counts})["jti"], first["jti"])

    async def test_audio_gain(self) -> None:
        """A 2 s WAV in, an MP3 out that ffprobe reads as about 2 s of MP3."""
        wav = sine_wav(self.media, 2)
        answer = await self.pipelines.post(
            "audio-gain", {"gain": -6}, {"media": ("tone.wav", "audio/wav", wav)},
            role="registered")
        self.assertEqual(answer.status, 200, answer.body)
        [(key, uri)] = answer.json["outputs"].items()
        self.assertEqual(key, "processedMedia")
        mime, mp3 = decode_data_uri(uri)
        self.assertEqual(mime, "audio/mpeg")
        self.assertTrue(mp3.startswith(b"ID3") or (mp3[0] == 0xFF and mp3[1] & 0xE0 == 0xE0),
                        mp3[:4])
        path = self.media / "out.mp3"
        path.write_bytes(mp3)
        info = media_info(path)
        self.assertEqual(info["streams"][0]["codec_name"], "mp3")
        self.assertLess(abs(float(info["format"]["duration"]) - 2.0), 0.3)
        self.check_token(answer, "audio-gain", {"processedMedia": mp3})
        await self.pipelines.settled(1)

    async def test_image_thumbnail(self) -> None:
        """A PNG in, a thumbnail bounded by the size and a gray copy out."""
        png = striped_png(self.media, 300, 200)
        answer = await self.pipelines.post(
            "image-thumbnail", {"size": "64"}, {"image": ("in.png", "image/png", png)})
        self.assertEqual(answer.status, 200, answer.body)
        outputs = answer.json["outputs"]
        self.assertEqual(set(outputs), {"thumbnail", "grayscale"})
        decoded = {key: decode_data_uri(uri) for key, uri in outputs.items()}
        self.assertEqual({mime for mime, _ in decoded.values()}, {"image/png"})
        paths = {}
        for key, (_, data) in decoded.items():
            self.assertTrue(data.startswith(b"\x89PNG\r\n\x1a\n"))
            paths[key] = self.media / f"{key}.png"
            paths[key].write_bytes(data)
        self.assertEqual(png_size(paths["thumbnail"]), (64, 43))
        self.assertEqual(png_size(paths["grayscale"]), (300, 200))
        for x in (0, 150, 299):
            red, green, blue = png_pixel(paths["grayscale"], x, 100)
            self.assertEqual(red, green)
            self.assertEqual(green, blue)
        self.assertNotEqual(png_pixel(paths["grayscale"], 0, 0),
                            png_pixel(paths["grayscale"], 0, 199))
        red, green, blue = png_pixel(paths["thumbnail"], 0, 0)
        self.assertGreater(red, 200)
        self.assertLess(blue, 60)
        self.check_token(answer, "image-thumbnail",
                         {key: data for key, (_, data) in decoded.items()})
        await self.pipelines.settled(1)

    async def test_default_values_fill_the_command(self) -> None:
        """A form without the optional values runs with the descriptor's defaults."""
        png = solid_png(self.media, 400, 100)
        answer = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("in.png", "image/png", png)})
        self.assertEqual(answer.status, 200, answer.body)
        _, thumbnail = decode_data_uri(answer.json["outputs"]["thumbnail"])
        path = self.media / "thumb.png"
        path.write_bytes(thumbnail)
        self.assertEqual(png_size(path), (128, 32))
        await self.pipelines.settled(1)


class StartupCleanupTests(TestCase):
    """Job directories left by an earlier run go when the service starts; a jobs directory
    serves one gateway at a time."""

    def test_leftover_job_directories_are_removed(self) -> None:
        jobs = Path(self.mktemp())
        jobs.mkdir(mode=0o700)  # the service refuses a jobs directory others can read
        (jobs / "job-crashed" / "sub").mkdir(parents=True)
        (jobs / "job-crashed" / "sub" / "input.wav").write_bytes(b"x" * 100)
        (jobs / "job-other").mkdir()
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")}, jobs_path=jobs)
        self.assertEqual(pipelines.job_directories(), [])

    async def test_a_second_gateway_on_the_same_jobs_directory_is_refused(self) -> None:
        """It would take the first one's live job directories for leftovers."""
        jobs = Path(self.mktemp()).absolute()
        jobs.mkdir(mode=0o700)
        first = start_pipelines(self, {"text-stats": example("text-stats")}, jobs_path=jobs)
        live = jobs / "job-live"
        live.mkdir()
        with self.assertRaises(SystemExit) as raised:
            start_pipelines(self, {"text-stats": example("text-stats")}, jobs_path=jobs)
        message = str(raised.exception)
        self.assertIn("pipelines.jobsPath", message)
        self.assertIn(f"{jobs} is in use by another runnergw", message)
        self.assertTrue(live.exists())
        # Once the first one has stopped, the directory can be taken again.
        await first.gateway.service.stopService()
        start_pipelines(self, {"text-stats": example("text-stats")}, jobs_path=jobs)
        self.assertFalse(live.exists())

