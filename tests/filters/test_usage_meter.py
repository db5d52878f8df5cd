"""What the usage filter keeps of a request while its answer is relayed."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.roles import RoleSettings
from runnergw.filters.usage_meter import UsageMeter, stream_object
from runnergw.ollama.endpoints import endpoint_for

__all__ = ["StreamObjectTests", "UsageMeterTests"]


def _meter(tokens_per_day: int | None = 1000) -> UsageMeter:
    endpoint = endpoint_for("/v1/chat/completions")
    assert endpoint is not None
    return UsageMeter("alice", "2026-12-05", RoleSettings("user", tokens_per_day=tokens_per_day),
                      endpoint)


class UsageMeterTests(SynchronousTestCase):
    """The meter's figures."""

    def test_quota_is_the_roles(self) -> None:
        """The quota is the role's ``tokensPerDay`` (None: no quota)."""
        self.assertEqual((_meter().quota, _meter(None).quota), (1000, None))

    def test_nothing_leased_at_first(self) -> None:
        """A new meter holds no tokens and has relayed none."""
        meter = _meter()
        self.assertEqual((meter.lease.tokens, meter.relayed, meter.stream_seen), (0, 0, False))


class StreamObjectTests(SynchronousTestCase):
    """A streamed line's JSON object, the first one telling what the stream repeats."""

    def test_first_object_tells_the_stream(self) -> None:
        """The first chunk's model, id and creation time are kept: an ending the gateway
        makes repeats them; later chunks change nothing."""
        meter = _meter()
        stream_object(meter, b'{"model": "m", "id": "c-1", "created": 7, "choices": []}')
        stream_object(meter, b'{"model": "other", "id": "c-2", "created": 8}')
        self.assertEqual((meter.stream_model, meter.stream_id, meter.stream_created),
                         ("m", "c-1", 7))

    def test_not_an_object(self) -> None:
        """A line that is not JSON, or not an object, is None and tells nothing."""
        meter = _meter()
        self.assertIsNone(stream_object(meter, b"not json"))
        self.assertIsNone(stream_object(meter, b"[1, 2]"))
        self.assertFalse(meter.stream_seen)

    def test_odd_fields_ignored(self) -> None:
        """A boolean creation time, or a model that is not a string, is not kept."""
        meter = _meter()
        stream_object(meter, b'{"model": 3, "id": "c-1", "created": true}')
        self.assertEqual((meter.stream_model, meter.stream_id, meter.stream_created),
                         (None, "c-1", None))
