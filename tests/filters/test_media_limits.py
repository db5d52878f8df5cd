"""The ``mediaLimits`` filter on its own: the main upload measured against the role's limits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import attrs
import jwt
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.chain.exchange import Reject
from runnergw.config.errors import ConfigErrors
from runnergw.filters.media_limits import MediaLimitsFilter
from runnergw.jobs.parts import JobParts
from runnergw.models.loading import load_models
from runnergw.models.types import ModelDescriptor
from runnergw.testing import filter_from_settings, make_exchange
from runnergw.websaas.signing import ResponseSigner
from tests.helpers.command_gateway import SERVER_ID, example
from tests.helpers.media import sine_wav
from tests.helpers.saas import TestSaas

__all__ = ["MeasuredLimitTests", "UnmeasuredTests"]


def _model(directory: Path, limits: dict[str, list[dict[str, str]]]) -> ModelDescriptor:
    """The audio-gain example with ``limits`` as its role limits."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = example("audio-gain")
    descriptor["role_limits"] = limits
    (directory / "audio-gain.json").write_text(json.dumps(descriptor))
    models, problems = load_models(str(directory), ffprobe_available=True)
    assert not problems, problems
    return models[0]


_ONE_SECOND = {"basic": [{"type": "media", "attribute": "duration", "value": "1"}]}


@attrs.frozen
class _Route:
    model: ModelDescriptor


class _NoProbe:
    """Job parts whose launcher must not be used: nothing is to be measured."""

    ffprobe = "/usr/bin/ffprobe"
    jobs_path = "/nonexistent"

    @property
    def launcher(self) -> Any:
        raise AssertionError("ffprobe was started")


class UnmeasuredTests(SynchronousTestCase):
    """Where the filter has nothing to measure (no ffprobe needed)."""

    def setUp(self) -> None:
        self.model = _model(Path(self.mktemp()), _ONE_SECOND)
        self.filter = MediaLimitsFilter(self.model, _NoProbe(), signer=None)  # type: ignore

    def check(self, role: str | None, uploads: dict[str, str]) -> Any:
        exchange = make_exchange("POST", "/audio-gain/", subject="u", role=role)
        exchange.uploads = uploads
        self.successResultOf(self.filter.request_body(exchange))  # type: ignore[arg-type]
        return exchange

    def test_role_without_limits(self) -> None:
        """A role the model sets no limit for is not measured."""
        exchange = self.check("pro", {"media": "/nonexistent/in.wav"})
        self.assertIsNone(exchange.response)

    def test_no_main_upload(self) -> None:
        """Without the main upload there is nothing to measure."""
        self.assertIsNone(self.check("basic", {}).response)

    def test_pipeline_routes_only(self) -> None:
        """The filter cannot be set up on a route that is no pipeline route."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, "mediaLimits")
        self.assertEqual(str(error.errors[0]), "<test>: filters[0]: the mediaLimits filter "
                                               "only serves pipeline routes")

    def test_after_role(self) -> None:
        """The role must be settled before the limits are looked up."""
        self.assertEqual(MediaLimitsFilter.after_any, ("role",))


class MeasuredLimitTests(TestCase):
    """Real uploads measured with the real ffprobe."""

    timeout = 60

    if shutil.which("ffprobe") is None:
        skip = "ffprobe is not installed"

    def setUp(self) -> None:
        base = Path(self.mktemp()).resolve()
        self.media = base / "media"
        # As the gateway lays it out: a private jobs directory, an upload in a job's own
        # (absolute, as every job directory is).
        self.job = base / "jobs" / "job-1"
        self.job.mkdir(mode=0o700, parents=True)
        self.model = _model(base / "models", _ONE_SECOND)
        self.saas = TestSaas(base / "keys")
        signer = ResponseSigner(self.saas.node_key, SERVER_ID)
        jobs = JobParts(reactor, str(base / "jobs"), shutil.which("ffprobe"))
        self.addCleanup(jobs.stop)
        self.filter = filter_from_settings("mediaLimits", jobs=jobs, signer=signer,
                                           route=_Route(self.model))

    async def check(self, seconds: float, role: str = "basic") -> Any:
        """Measure a WAV of ``seconds`` uploaded by a caller of ``role``."""
        upload = self.job / "upload.wav"
        upload.write_bytes(sine_wav(self.media, seconds))
        exchange = make_exchange("POST", "/audio-gain/", subject="user-1", role=role)
        exchange.uploads = {"media": str(upload)}
        await self.filter.request_body(exchange)
        return exchange

    async def test_within_the_limit(self) -> None:
        """1.5 s against a 1 s limit passes: whole seconds are compared, as the SaaS does."""
        exchange = await self.check(1.5)
        self.assertIsNone(exchange.response)
        self.assertEqual(exchange.outcome, "ok")

    async def test_over_the_limit(self) -> None:
        """2.5 s against 1 s is the signed 403 the SaaS shows as an upgrade prompt."""
        exchange = await self.check(2.5)
        reply = exchange.response
        self.assertEqual(reply.status, 403)
        body = json.loads(reply.body)
        self.assertEqual(body["outputs"], {"allowed": False, "restricted_at": {
            "title": "Exceeds the plan limit",
            "description": "Input exceeds the duration limit 1s, upgrade your plan"}})
        claims = jwt.decode(body["token"], self.saas.node_public_key(), algorithms=["RS256"],
                            options={"verify_aud": False})
        self.assertEqual(claims["iss"], SERVER_ID)
        self.assertEqual((exchange.outcome, exchange.reason),
                         ("denied", "role limit: duration 2.5 > 1"))

    async def test_not_media(self) -> None:
        """An upload ffprobe cannot read is a 400, never let past the limit."""
        upload = self.job / "upload.wav"
        upload.write_bytes(b"this is not audio at all")
        exchange = make_exchange("POST", "/audio-gain/", subject="user-1", role="basic")
        exchange.uploads = {"media": str(upload)}
        error = await self.assertFailure(ensureDeferred(self.filter.request_body(exchange)),
                                         Reject)
        self.assertEqual((error.status, error.message),
                         (400, "The uploaded file could not be read as media"))
