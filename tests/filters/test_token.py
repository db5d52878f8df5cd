"""The ``token`` filter on its own: a valid PASETO bearer token, or 401 without a trace of it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.audit_log import AuditLog
from runnergw.config.errors import ConfigErrors
from runnergw.filters.audit import AuditFilter
from runnergw.filters.token import TokenFilter
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.verifier import TokenVerifier
from tests.http.support import NOW, _key_files, mint, token_verifier

__all__ = ["TokenFilterTests", "TokenIdentityTests"]


class TokenFilterTests(SynchronousTestCase):
    """Requests with and without a good token, behind the audit and token filters."""

    def setUp(self) -> None:
        self.audit_path = Path(self.mktemp())
        self.audit_log = AuditLog(str(self.audit_path))
        self.addCleanup(self.audit_log.close)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def serve(self, authorization: str | None) -> FilterRun:
        headers = [("Host", "gw"), ("Content-Type", "application/json")]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        exchange = make_exchange("POST", "/api/chat", headers=headers,
                                 body=b'{"prompt": "my secret prompt"}')
        filters = [AuditFilter(self.audit_log), TokenFilter(token_verifier())]
        return self.successResultOf(run_filters(filters, exchange, Answer.json({"ok": True})))

    def assert_refused(self, authorization: str | None, message: str, reason: str,
                       challenge: str) -> FilterRun:
        """401 with the message and challenge, the runner never reached, nothing leaked."""
        run = self.serve(authorization)
        self.assertEqual((run.status, run.json()), (401, {"error": message}))
        self.assertEqual(run.client.headers.get("www-authenticate"), challenge)
        self.assertFalse(run.terminal.called)
        self.assertIsNone(run.exchange.identity)
        self.assertEqual((run.exchange.outcome, run.exchange.reason), ("denied", reason))
        if authorization is not None:
            self.assert_nowhere(authorization.partition(" ")[2], run)
        return run

    def assert_nowhere(self, token: str, run: FilterRun) -> None:
        """The token is in no reply, header, audit line or log event."""
        if not token:
            return
        texts = [run.body.decode(), repr(list(run.client.headers)),
                 self.audit_path.read_text(), repr(self.events)]
        for text in texts:
            self.assertNotIn(token, text)

    def test_valid_token(self) -> None:
        """A valid token reaches the runner, without the token, with the caller known."""
        token = mint("alice")
        run = self.serve(f"Bearer {token}")
        self.assertEqual(run.status, 200)
        self.assertTrue(run.terminal.called)
        self.assertIsNone(run.terminal.upstream_headers.get("authorization"))
        identity = run.exchange.identity
        assert identity is not None
        self.assertEqual((identity.subject, identity.role, identity.token_kind),
                         ("alice", None, "v4.public"))
        self.assertEqual(identity.claims["sub"], "alice")
        self.assert_nowhere(token, run)

    def test_scheme_case_and_spaces(self) -> None:
        """The scheme is matched in any case, and spaces around the token are ignored."""
        self.assertEqual(self.serve(f"bearer   {mint()}  ").status, 200)

    def test_missing(self) -> None:
        """No Authorization header: 401 with a plain Bearer challenge."""
        self.assert_refused(None, "missing bearer token", "token missing",
                            'Bearer realm="runnergw"')

    def test_other_scheme(self) -> None:
        """Basic credentials are refused as malformed, and never echoed."""
        self.assert_refused("Basic YWxpY2U6c2VjcmV0cGFzc3dvcmQ=",
                            "expected an Authorization: Bearer token", "token malformed",
                            'Bearer realm="runnergw", error="invalid_token", '
                            'error_description="expected a Bearer token"')

    def test_empty_bearer(self) -> None:
        """Bearer without a token is malformed."""
        self.assert_refused("Bearer ", "expected an Authorization: Bearer token",
                            "token malformed",
                            'Bearer realm="runnergw", error="invalid_token", '
                            'error_description="expected a Bearer token"')

    def test_not_paseto(self) -> None:
        """Something that is no PASETO token is refused with the verifier's reason."""
        self.assert_refused("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl",
                            "token is not a PASETO token", "token malformed",
                            'Bearer realm="runnergw", error="invalid_token", '
                            'error_description="token is not a PASETO token"')

    def test_tampered(self) -> None:
        """A token whose signature does not hold is refused as invalid."""
        token = mint()
        tampered = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
        reason = "token signature or encryption is invalid"
        self.assert_refused(f"Bearer {tampered}", reason, "token invalid",
                            'Bearer realm="runnergw", error="invalid_token", '
                            f'error_description="{reason}"')

    def test_expired(self) -> None:
        """An expired token is refused as expired."""
        token = mint(now=NOW - 7200, lifetime=3600)
        self.assert_refused(f"Bearer {token}", "token expired", "token expired",
                            'Bearer realm="runnergw", error="invalid_token", '
                            'error_description="token expired"')

    def test_audit_line_of_a_refusal(self) -> None:
        """The refusal is audited with its status and reason, never the token or prompt."""
        token = mint(now=NOW - 7200, lifetime=3600)
        self.serve(f"Bearer {token}")
        line = self.audit_path.read_text()
        self.assertIn('"status":401', line)
        self.assertIn('"reason":"token expired"', line)
        self.assertNotIn("secret prompt", line)

    def test_needs_keys(self) -> None:
        """Without PASETO keys the filter cannot be set up, and the operator is told why."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, "token")
        self.assertEqual(str(error.errors[0]), "<test>: filters[0]: the token filter needs "
                                               "paseto.publicPath or paseto.secretKey")
        self.assertIsInstance(filter_from_settings("token", verifier=token_verifier()),
                              TokenFilter)



class TokenIdentityTests(SynchronousTestCase):
    """One token filter serving the same tokens again, as a gateway does."""

    def setUp(self) -> None:
        self.now = NOW
        self.filter = TokenFilter(TokenVerifier(
            versions=("v4",), local_keys={},
            public_keys={"v4": load_public_keys(_key_files()[1], 4)},
            leeway=0.0, issuer=None, audience=None, clock=lambda: self.now))

    def serve(self, token: str) -> FilterRun:
        exchange = make_exchange("POST", "/api/chat", headers=[
            ("Host", "gw"), ("Authorization", f"Bearer {token}")], body=b"{}")
        return self.successResultOf(run_filters([self.filter], exchange,
                                                Answer.json({"ok": True})))

    def token_id(self, token: str) -> str:
        identity = self.serve(token).exchange.identity
        assert identity is not None
        return identity.token_id

    def test_each_token_keeps_its_own_id(self) -> None:
        """Two tokens of one subject are told apart on every request, each by its own id."""
        first, second = mint("alice"), mint("alice", now=NOW - 1)
        ids = [self.token_id(token) for token in (first, second, first, second)]
        expected = ["token:" + hashlib.sha256(token.encode()).hexdigest()[:16]
                    for token in (first, second)]
        self.assertEqual(ids, expected * 2)

    def test_expiry_still_checked(self) -> None:
        """A token that was accepted is refused once it expires, however often it was used."""
        token = mint("alice", lifetime=60)
        self.assertEqual(self.serve(token).status, 200)
        self.assertEqual(self.serve(token).status, 200)
        self.now = NOW + 61
        self.assertEqual(self.serve(token).status, 401)
