"""Reply tokens signed off the event loop's thread: the same tokens, errors as failures."""

from __future__ import annotations

import threading

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from runnergw.websaas.signing import verify_response_token
from runnergw.websaas.signing_thread import SigningThread
from tests.websaas.test_signing import _SERVER_ID, _node_key, _signer


class SigningThreadTests(TestCase):
    def setUp(self) -> None:
        self.signing = SigningThread(reactor, _signer(clock=lambda: 1_700_000_000.0))
        self.addCleanup(self.signing.stop)

    async def test_tokens_are_signed_in_another_thread(self) -> None:
        signed_in = []
        sign = self.signing.signer.sign

        def recording_sign(**arguments: object) -> str:
            signed_in.append(threading.current_thread())
            return sign(**arguments)  # type: ignore[arg-type]

        self.patch(self.signing.signer, "sign", recording_sign)
        tokens = [await self.signing.sign(subject=f"user-{n}", endpoint="e",
                                          output_hashes={"out": None}) for n in range(3)]
        claims = [verify_response_token(t, _node_key().public_key(), issuer=_SERVER_ID,
                                        now=1_700_000_000) for t in tokens]
        self.assertEqual([c["sub"] for c in claims], ["user-0", "user-1", "user-2"])
        self.assertNotIn(threading.main_thread(), signed_in)
        self.assertEqual(len(set(signed_in)), 1)

    async def test_a_refused_digest_fails_the_deferred(self) -> None:
        with self.assertRaises(ValueError):
            await self.signing.sign(subject=None, endpoint="e", output_hashes={"out": "md5:x"})
        token = await self.signing.sign(subject=None, endpoint="e", output_hashes={})
        self.assertEqual(token.count("."), 2)

    async def test_stop_ends_the_thread(self) -> None:
        await self.signing.sign(subject=None, endpoint="e", output_hashes={})
        thread = self.signing._thread
        assert thread is not None
        self.signing.stop()
        thread.join(10)
        self.assertFalse(thread.is_alive())
