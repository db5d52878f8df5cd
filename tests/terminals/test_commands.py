"""The command terminal end to end: the example models run for real on real media.

Also the harness the other ``test_commands_*`` modules share: a gateway serving descriptors
from a temporary models directory, a test SaaS signing the tokens, and requests as the SaaS
sends them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jwt
from twisted.trial.unittest import TestCase

from runnergw.terminals.commands import CommandTerminal
from tests.helpers.gateway import RunningGateway, start_gateway
from tests.helpers.media import media_info, png_pixel, png_size, sine_wav, solid_png, striped_png
from tests.helpers.saas import TestSaas, input_form, multipart_body
from tests.terminals.support import AuditTap, BytesProducer, fetch, tls_agent

__all__ = ["FAILED", "SERVER_ID", "TIMED_OUT", "Answer", "Pipelines", "decode_data_uri",
           "descriptor", "example", "start_pipelines"]

EXAMPLES = Path(__file__).resolve().parents[2] / "models-enabled"
SERVER_ID = "base64:test-node"
TIMED_OUT = "Command execution timed out"
"""The detail of a 408."""
FAILED = "Command execution failed: "
"""The start of a failed command's detail, before its stderr."""


def example(name: str) -> dict[str, Any]:
    """One of the example descriptors shipped in ``models-enabled``."""
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return loaded


def descriptor(endpoint: str, command: str, *, fields: list[dict[str, Any]] | None = None,
               outputs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A small descriptor for a test model."""
    return {
        "title": endpoint,
        "fields": fields or [],
        "output": outputs if outputs is not None else [
            {"id": "result", "type": "text", "format": "txt"}],
        "actions": {"submit": {"method": "POST",
                               "endpoint": f"https://node.example.org/{endpoint}/"}},
        "command": command,
        **extra,
    }


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """MIME type and bytes of a ``data:<mime>;base64,<…>`` URI."""
    head, _, data = uri.partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        raise AssertionError(f"not a base64 data URI: {uri[:60]!r}")
    return head[5:-7], base64.b64decode(data, validate=True)


@attrs.frozen
class Answer:
    """A pipeline reply as the SaaS receives it."""

    status: int
    headers: Any
    body: bytes
    length: int | None = None
    """The announced Content-Length; None for a streamed (chunked) reply."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


@attrs.define
class Pipelines:
    """A running gateway with pipeline routes, and the SaaS that calls it."""

    testcase: TestCase
    gateway: RunningGateway
    saas: TestSaas
    models_path: Path
    jobs_path: Path
    audit: AuditTap
    agent: Any

    def body(self, form: Mapping[str, Any] | None = None,
             files: Mapping[str, tuple[str, str, bytes]] | None = None, *,
             command: str | None = None) -> tuple[bytes, str]:
        """A multipart body as the SaaS sends it: ``input_form``, the files, ``command``."""
        fields = {"input_form": input_form(form or {})}
        if command is not None:
            fields["command"] = command
        return multipart_body(fields, files or {})

    def headers(self, content_type: str, **token: Any) -> dict[str, str]:
        """The SaaS tokens (``role``, ``user_age``… as for ``TestSaas.headers``) and type."""
        return {**self.saas.headers(**token), "Content-Type": content_type}

    async def post(self, endpoint: str, form: Mapping[str, Any] | None = None,
                   files: Mapping[str, tuple[str, str, bytes]] | None = None, *,
                   command: str | None = None, headers: Mapping[str, str] | None = None,
                   body: bytes | None = None, chunked: bool = False, **token: Any) -> Answer:
        """POST to ``/<endpoint>/``; ``headers`` replace the SaaS's own, ``body`` the form's."""
        made, content_type = self.body(form, files, command=command)
        sent = dict(headers) if headers is not None else self.headers(content_type, **token)
        response, data = await fetch(
            self.agent, "POST", f"{self.gateway.url}/{endpoint}/", sent,
            BytesProducer(made if body is None else body, chunked=chunked))
        length = response.length if isinstance(response.length, int) else None
        return Answer(response.code, response.headers, data, length)

    def raw_request(self, endpoint: str, form: Mapping[str, Any] | None = None,
                    files: Mapping[str, tuple[str, str, bytes]] | None = None) -> bytes:
        """The bytes of a whole POST with a declared length, for a raw connection."""
        body, content_type = self.body(form, files)
        head = "".join(f"{name}: {value}\r\n"
                       for name, value in self.headers(content_type).items())
        return (f"POST /{endpoint}/ HTTP/1.1\r\nHost: node\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def terminal(self, endpoint: str) -> CommandTerminal:
        """The command terminal serving ``endpoint``."""
        for route in self.gateway.service.factory.handler.router.routes:
            if route.name == endpoint:
                assert isinstance(route.terminal, CommandTerminal)
                return route.terminal
        raise AssertionError(f"no route {endpoint}")

    def job_directories(self) -> list[str]:
        """What the jobs directory holds."""
        return sorted(os.listdir(self.jobs_path))

    async def records(self, count: int) -> list[dict[str, Any]]:
        """The audit lines, once ``count`` have been written."""
        await self.audit.written(count)
        return self.gateway.audit_records()

    async def settled(self, count: int) -> dict[str, Any]:
        """Wait for the ``count``-th audit line, check no job directory is left, return it."""
        records = await self.records(count)
        self.testcase.assertEqual(self.job_directories(), [])
        return records[count - 1]


def start_pipelines(testcase: TestCase, descriptors: Mapping[str, Mapping[str, Any]], *,
                    models: Mapping[str, Mapping[str, Any]] | None = None,
                    jobs_path: Path | None = None, server: dict[str, Any] | None = None,
                    **settings: Any) -> Pipelines:
    """Write the descriptors as ``<name>.json`` and start a gateway serving them.

    ``models`` are per-endpoint settings, ``server`` the server section, the other keyword
    arguments keys of the pipelines section.
    """
    base = Path(testcase.mktemp())
    models_path = base / "models"
    models_path.mkdir(parents=True)
    for name, content in descriptors.items():
        (models_path / f"{name}.json").write_text(json.dumps(content))
    # Relative, as ``mktemp`` gives it: jobs run elsewhere, so a relative jobsPath must work.
    jobs = jobs_path if jobs_path is not None else base / "jobs"
    saas = TestSaas(base / "keys")
    section: dict[str, Any] = {
        "modelsPath": str(models_path),
        "jobsPath": str(jobs),
        "saasPublicKeyPath": str(saas.public_path),
        "nodePrivateKeyPath": str(saas.node_private_path),
        "serverId": SERVER_ID,
        "timeout": "20s",
    }
    if models:
        section["models"] = {name: dict(value) for name, value in models.items()}
    section.update(settings)
    gateway = start_gateway(testcase, [], pipelines=section, server=server)
    return Pipelines(testcase, gateway, saas, models_path, jobs, AuditTap(testcase, gateway),
                     tls_agent(testcase, gateway))


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

