"""Who may run a model: the SaaS tokens, ``allowed_roles`` and the plans' media limits."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial.unittest import TestCase

from runnergw.jobs import probe
from tests.helpers.clients import fetch, parse_response, raw_connect
from tests.helpers.command_gateway import FAILED, SERVER_ID, Pipelines, example, start_pipelines
from tests.helpers.media import many_track_audio, sine_wav, solid_png

_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


_WAVE_GARBAGE = b"RIFF\x00\x00\x00\x00WAVE" + b"not audio at all"
"""Passes the upload's check of a WAV's first bytes; ffprobe and ffmpeg cannot read it."""


def _jwt(claims: dict[str, object], key: rsa.RSAPrivateKey = _OTHER_KEY) -> str:
    return jwt.encode(claims, key, algorithm="RS256")


class TokenTests(TestCase):
    """Both SaaS tokens are checked before anything else: 401 ``{"detail"}`` otherwise."""

    timeout = 20

    def setUp(self) -> None:
        self.pipelines = start_pipelines(self, {"text-stats": example("text-stats")},
                                         maxUserTokenAge="10m")
        self.body, self.content_type = self.pipelines.body(
            {"top": 1}, {"document": ("a.txt", "text/plain", b"some words")})

    async def refused(self, headers: dict[str, str], count: int) -> None:
        """401 in FastAPI's shape; the detail (its wording is the verifier's) shows no token."""
        answer = await self.pipelines.post("text-stats", headers={
            **headers, "Content-Type": self.content_type}, body=self.body)
        self.assertEqual(answer.status, 401, answer.body)
        self.assertEqual(set(answer.json), {"detail"})
        self.assertIsInstance(answer.json["detail"], str)
        self.assertTrue(answer.json["detail"])
        for value in headers.values():
            for part in value.removeprefix("Bearer ").split("."):
                if len(part) > 16:
                    self.assertNotIn(part, answer.json["detail"])
        self.assertEqual(answer.header("WWW-Authenticate"), "Bearer")
        record = await self.pipelines.settled(count)
        self.assertEqual(record["outcome"], "denied")

    async def test_server_token(self) -> None:
        """Missing, malformed, foreign-signed and expired server tokens."""
        good = self.pipelines.saas.headers()
        user = {"X-User-Token": good["X-User-Token"]}
        now = time.time()
        foreign = _jwt({"iss": "saas", "exp": int(now + 600)})
        expired = _jwt({"iss": "saas", "exp": int(now - 600)}, self.pipelines.saas.private_key)
        await self.refused(user, 1)
        await self.refused({**user, "Authorization": "Basic abc"}, 2)
        await self.refused({**user, "Authorization": "Bearer not.a.jwt"}, 3)
        await self.refused({**user, "Authorization": f"Bearer {foreign}"}, 4)
        await self.refused({**user, "Authorization": f"Bearer {expired}"}, 5)

    async def test_user_token_cannot_stand_for_the_server_token(self) -> None:
        """A user's own token in both headers is refused: the node is for the SaaS only."""
        good = self.pipelines.saas.headers()
        user = good["X-User-Token"]
        await self.refused({"Authorization": f"Bearer {user}", "X-User-Token": user}, 1)

    async def test_user_token(self) -> None:
        """Missing, foreign-signed and too old user tokens."""
        good = self.pipelines.saas.headers()
        server = {"Authorization": good["Authorization"]}
        now = time.time()
        foreign = _jwt({"sub": "u", "role": "pro", "iat": int(now), "exp": int(now + 600)})
        await self.refused(server, 1)
        await self.refused({**server, "X-User-Token": foreign}, 2)
        old = self.pipelines.saas.headers(user_age=11 * 60)
        await self.refused(old, 3)
        answer = await self.pipelines.post(
            "text-stats", {"top": 1}, {"document": ("a.txt", "text/plain", b"words")},
            user_age=9 * 60)
        self.assertEqual(answer.status, 200, answer.body)

    async def test_default_user_token_age_is_an_hour(self) -> None:
        """Without ``maxUserTokenAge`` the old node's 3600 s apply."""
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        files = {"document": ("a.txt", "text/plain", b"words")}
        answer = await pipelines.post("text-stats", {}, files, user_age=3700)
        self.assertEqual((answer.status, set(answer.json)), (401, {"detail"}))
        answer = await pipelines.post("text-stats", {}, files, user_age=3000)
        self.assertEqual(answer.status, 200, answer.body)


class AllowedRoleTests(TestCase):
    """A role outside ``allowed_roles`` is refused with 403 before the upload is read."""

    timeout = 20

    async def test_role_not_allowed_is_refused_before_the_body(self) -> None:
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        body, content_type = pipelines.body({}, {"document": ("a.txt", "text/plain", b"x" * 1000)})
        headers = pipelines.headers(content_type, role="guest")
        client = await raw_connect(self, pipelines.gateway)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        client.send(f"POST /text-stats/ HTTP/1.1\r\nHost: node\r\n{head}"
                    f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
        data = await client.wait_for(b"}")
        self.assertNotIn(b"100 Continue", data)
        response = parse_response(data)
        self.assertEqual(response.status, 403)
        self.assertEqual(response.body, b'{"detail": "Your plan does not include this model"}')
        record = await pipelines.settled(1)
        self.assertEqual((record["outcome"], record["role"], record["bytes_in"]),
                         ("denied", "guest", 0))

    async def test_every_allowed_role_passes(self) -> None:
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        for role in ("registered", "basic", "premium", "pro"):
            answer = await pipelines.post(
                "text-stats", {}, {"document": ("a.txt", "text/plain", b"hi")}, role=role)
            self.assertEqual(answer.status, 200, (role, answer.body))


class RouteTests(TestCase):
    """A model answers ``POST /<endpoint>/`` only."""

    timeout = 20

    async def test_other_methods_and_paths(self) -> None:
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        headers = pipelines.saas.headers()
        response, body = await fetch(pipelines.agent, "GET",
                                     pipelines.gateway.url + "/text-stats/", headers)
        self.assertEqual(response.code, 405)
        self.assertEqual(response.headers.getRawHeaders("Allow"), ["POST"])
        self.assertEqual(set(json.loads(body)), {"detail"})
        answer = await pipelines.post("text-stats/more", {}, {})
        self.assertEqual(answer.status, 404)
        self.assertEqual(set(answer.json), {"detail"})
        await pipelines.settled(2)


class RoleLimitTests(TestCase):
    """The plan limits of ``role_limits`` measured with ffprobe on the main input."""

    timeout = 60

    def setUp(self) -> None:
        self.media = Path(self.mktemp())
        self.pipelines: Pipelines = start_pipelines(self, {
            "audio-gain": example("audio-gain"), "image-thumbnail": example("image-thumbnail")})

    def check_restricted(self, body: dict[str, object], description: str) -> None:
        self.assertEqual(set(body), {"outputs", "token"})
        self.assertEqual(body["outputs"], {"allowed": False, "restricted_at": {
            "title": "Exceeds the plan limit", "description": description}})
        assert isinstance(body["token"], str)
        claims = jwt.decode(body["token"], self.pipelines.saas.node_public_key(),
                            algorithms=["RS256"], issuer=SERVER_ID)
        self.assertEqual(claims["outputs"], {})
        self.assertEqual(claims["exp"], claims["iat"] + 300)

    async def test_duration_over_the_plan_limit(self) -> None:
        """registered: 30 s; a 31 s WAV is refused, a 10 s one passes, basic takes 31 s."""
        long_wav = sine_wav(self.media, 31)
        answer = await self.pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("long.wav", "audio/wav", long_wav)},
            role="registered")
        self.assertEqual(answer.status, 403, answer.body)
        self.check_restricted(answer.json,
                              "Input exceeds the duration limit 30s, upgrade your plan")
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "denied")
        self.assertNotIn("exit_code", record)
        short = await self.pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("short.wav", "audio/wav",
                                                  sine_wav(self.media, 10))}, role="registered")
        self.assertEqual(short.status, 200, short.body)
        basic = await self.pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("long.wav", "audio/wav", long_wav)},
            role="basic")
        self.assertEqual(basic.status, 200, basic.body)
        await self.pipelines.settled(3)

    async def test_resolution_over_the_plan_limit(self) -> None:
        """registered: 1024 px wide; an 1100 px PNG is refused, basic (2048 px) passes."""
        wide = solid_png(self.media, 1100, 20)
        answer = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("wide.png", "image/png", wide)}, role="registered")
        self.assertEqual(answer.status, 403, answer.body)
        self.check_restricted(answer.json,
                              "Input exceeds the resolution limit 1024px, upgrade your plan")
        await self.pipelines.settled(1)
        edge = solid_png(self.media, 1024, 20)
        fits = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("ok.png", "image/png", edge)}, role="registered")
        self.assertEqual(fits.status, 200, fits.body)
        basic = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("wide.png", "image/png", wide)}, role="basic")
        self.assertEqual(basic.status, 200, basic.body)
        await self.pipelines.settled(3)

    async def test_a_role_without_limits_is_not_measured(self) -> None:
        """pro has no limit on audio-gain: a file ffprobe cannot read still reaches ffmpeg."""
        answer = await self.pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("x.wav", "audio/wav", _WAVE_GARBAGE)},
            role="pro")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertTrue(answer.json["detail"].startswith(FAILED), answer.json)
        await self.pipelines.settled(1)

    async def test_media_with_hundreds_of_tracks_is_measured(self) -> None:
        """ffprobe's answer on a 400-track file is long: it is read whole, not cut."""
        media = many_track_audio(self.media, 400, 0.5)
        descriptor = example("audio-gain")
        descriptor["fields"][0]["acceptedFileTypes"] = ["audio/x-matroska"]
        pipelines = start_pipelines(self, {"audio-gain": descriptor})
        answer = await pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("tracks.mka", "audio/x-matroska", media)},
            role="registered")
        self.assertEqual(answer.status, 200, answer.body)
        await pipelines.settled(1)

    async def test_unmeasurable_media_under_a_limit(self) -> None:
        """A limit that cannot be measured on the file (an audio file has no width) refuses
        it instead of letting it through."""
        descriptor = example("image-thumbnail")
        descriptor["fields"][0]["acceptedFileTypes"] = ["application/octet-stream"]
        pipelines = start_pipelines(self, {"image-thumbnail": descriptor})
        answer = await pipelines.post(
            "image-thumbnail", {},
            {"image": ("x.bin", "application/octet-stream", sine_wav(self.media, 1))},
            role="registered")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertEqual(answer.json,
                         {"detail": "The uploaded file's resolution could not be measured"})
        record = await pipelines.settled(1)
        self.assertNotIn("exit_code", record)

    async def test_content_must_match_its_declared_type(self) -> None:
        """An SVG (which ImageMagick would render, links to local files included) declared as
        a PNG is refused with 415 before anything reads it."""
        svg = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/'
               b'xlink" width="10" height="10"><image xlink:href="/etc/hostname"/></svg>')
        answer = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("x.png", "image/png", svg)}, role="pro")
        self.assertEqual(answer.status, 415, answer.body)
        self.assertEqual(answer.json, {"detail": "the content of image is not image/png"})
        declared_svg = await self.pipelines.post(
            "image-thumbnail", {}, {"image": ("x.svg", "image/svg+xml", svg)}, role="pro")
        self.assertEqual(declared_svg.status, 415, declared_svg.body)
        await self.pipelines.settled(2)

    async def test_ffprobe_that_cannot_start_is_the_nodes_failure(self) -> None:
        """Not the client's 400: a logged 500, or 503 when the node is out of descriptors."""
        for code, status in ((errno.EIO, 500), (errno.EMFILE, 503)):
            def failing(*args: object, code: int = code, **kwargs: object) -> object:
                raise OSError(code, os.strerror(code))

            self.patch(probe, "start_job", failing)
            answer = await self.pipelines.post(
                "audio-gain", {"gain": 0},
                {"media": ("x.wav", "audio/wav", sine_wav(self.media, 1))}, role="registered")
            self.assertEqual(answer.status, status, answer.body)
            if status == 500:
                self.assertEqual(answer.json, {"detail": "The upload could not be measured"})
        self.assertEqual(answer.headers.getRawHeaders("retry-after"), ["10"])
        await self.pipelines.settled(2)

    async def test_unreadable_media_under_a_limit(self) -> None:
        """A file ffprobe cannot read is refused with 400 when the plan has a limit."""
        answer = await self.pipelines.post(
            "audio-gain", {"gain": 0}, {"media": ("x.wav", "audio/wav", _WAVE_GARBAGE)},
            role="registered")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertEqual(answer.json,
                         {"detail": "The uploaded file could not be read as media"})
        await self.pipelines.settled(1)
