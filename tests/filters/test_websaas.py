"""The ``websaas`` filter in a real gateway chain: identity on success, FastAPI 401s otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from runnergw.audit_log import AuditLog
from runnergw.chain.exchange import Exchange, Identity
from runnergw.chain.interfaces import IFilter
from runnergw.chain.route import Route, Router, error_body_detail
from runnergw.chain.runner import ChainRunner
from runnergw.filters.audit import AuditFilter
from runnergw.filters.websaas import WebSaasTokenFilter
from runnergw.http.headers import Headers
from runnergw.testing import RecordingClient
from runnergw.websaas.tokens import SaasTokenVerifier
from tests.http.support import StubTerminal
from tests.websaas import NOW, mint, other_key, saas_key

__all__ = ["WebSaasFilterTests"]


def _user_token(**changes: Any) -> str:
    claims = {"sub": "user-42", "role": "pro", "iss": "websaas", "iat": int(NOW) - 10,
              "exp": int(NOW) + 600}
    claims.update(changes)
    return mint(claims)


def _server_token(**changes: Any) -> str:
    claims = {"iss": "websaas", "exp": int(NOW) + 600}
    claims.update(changes)
    return mint(claims)


class WebSaasFilterTests(SynchronousTestCase):
    """A ``/process-audio`` route guarded by the audit and websaas filters."""

    def setUp(self) -> None:
        """Build the gateway, an audit log file and a log capture."""
        self.audit_path = Path(self.mktemp())
        audit_log = AuditLog(str(self.audit_path))
        self.addCleanup(audit_log.close)
        verifier = SaasTokenVerifier(saas_key().public_key(), issuer="websaas", audience=None,
                                     clock=lambda: NOW)
        self.filter = WebSaasTokenFilter(verifier)
        self.terminal = StubTerminal(echo=True)
        route = Route("websaas", ("process-audio",), (AuditFilter(audit_log), self.filter),
                      self.terminal, error_body=error_body_detail)
        self.gateway = ChainRunner(Router([route], Route("", (), (), None)))
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def serve(self, headers: list[tuple[str, str]]) -> tuple[Exchange, RecordingClient]:
        """Send a bodiless ``POST /process-audio/`` with ``headers``."""
        exchange = Exchange(
            request_id="req-1", method="POST", path="/process-audio/", query="",
            version="HTTP/1.1", headers=Headers([("Host", "node"), *headers]),
            client_address="192.0.2.1", secure=True, started=NOW, content_length=0,
        )
        client = RecordingClient()
        self.successResultOf(self.gateway.serve(exchange, client))
        self.assertIsNone(client.aborted, "the gateway dropped the connection")
        return exchange, client

    def audit_text(self) -> str:
        """Everything the audit log holds."""
        return self.audit_path.read_text()

    def assert_refused(self, headers: list[tuple[str, str]], detail: str, code: str) -> None:
        """The request gets 401 ``{"detail": …}``, the terminal is not reached, no token leaks."""
        exchange, client = self.serve(headers)
        self.assertEqual(client.status, 401)
        self.assertEqual(json.loads(client.body), {"detail": detail})
        self.assertEqual(client.header("WWW-Authenticate"), "Bearer")
        self.assertEqual(self.terminal.calls, [])
        self.assertIsNone(exchange.identity)
        self.assertEqual((exchange.outcome, exchange.reason),
                         ("denied", f"websaas token {code}"))
        record = json.loads(self.audit_text().splitlines()[-1])
        self.assertEqual((record["status"], record["reason"]), (401, f"websaas token {code}"))
        self.assert_no_token_leak([value for _, value in headers], client.body)

    def assert_no_token_leak(self, secrets: list[str], *outputs: bytes) -> None:
        """No credential (nor its signature) appears in a reply, the audit log or the logs."""
        logged = repr(self.events)
        texts = [self.audit_text(), logged, *(output.decode() for output in outputs)]
        for secret in secrets:
            for part in [secret, *secret.replace(" ", ".").split(".")]:
                if len(part) > 16:
                    for text in texts:
                        self.assertNotIn(part, text)

    def test_provides_ifilter(self) -> None:
        """The filter verifies against ``IFilter`` and is called ``websaas``."""
        self.assertTrue(verifyObject(IFilter, self.filter))
        self.assertEqual(self.filter.name, "websaas")

    def test_success_sets_identity(self) -> None:
        """Valid tokens reach the terminal with the user's identity."""
        server, user = _server_token(), _user_token()
        exchange, client = self.serve([("Authorization", f"Bearer {server}"),
                                       ("X-User-Token", user)])
        self.assertEqual(client.status, 200)
        (call,) = self.terminal.calls
        self.assertIs(call.exchange, exchange)
        identity = exchange.identity
        self.assertIsInstance(identity, Identity)
        self.assertEqual((identity.subject, identity.role, identity.token_kind),
                         ("user-42", "pro", "websaas"))
        self.assertEqual(identity.claims["sub"], "user-42")
        self.assertIsNone(exchange.upstream_headers.get("x-user-token"))
        self.assertIsNone(exchange.upstream_headers.get("authorization"))
        record = json.loads(self.audit_text())
        self.assertEqual((record["subject"], record["role"], record["token"]),
                         ("user-42", "pro", "websaas"))
        self.assert_no_token_leak([server, user], client.body)

    def test_missing_authorization(self) -> None:
        """No Authorization header."""
        self.assert_refused([("X-User-Token", _user_token())], "Not authenticated",
                            "server_missing")

    def test_other_scheme(self) -> None:
        """Basic instead of Bearer."""
        self.assert_refused([("Authorization", "Basic dXNlcjpwYXNzd29yZA=="),
                             ("X-User-Token", _user_token())],
                            "Invalid authentication credentials", "server_malformed")

    def test_missing_user_token(self) -> None:
        """No X-User-Token header."""
        self.assert_refused([("Authorization", f"Bearer {_server_token()}")],
                            "User token missing", "user_missing")

    def test_garbage(self) -> None:
        """A server token that is not a JWT."""
        self.assert_refused([("Authorization", "Bearer garbage.garbage.garbage"),
                             ("X-User-Token", _user_token())],
                            "Invalid server authentication: Signature verification failed",
                            "server_malformed")

    def test_wrong_key(self) -> None:
        """A user token signed by someone else."""
        forged = mint({"sub": "user-42", "role": "admin", "exp": int(NOW) + 600},
                      key=other_key())
        self.assert_refused([("Authorization", f"Bearer {_server_token()}"),
                             ("X-User-Token", forged)],
                            "Invalid user authentication: Signature verification failed",
                            "user_invalid")

    def test_expired(self) -> None:
        """An expired server token."""
        self.assert_refused([("Authorization", f"Bearer {_server_token(exp=int(NOW) - 60)}"),
                             ("X-User-Token", _user_token())],
                            "Invalid server authentication: Signature has expired",
                            "server_expired")

    def test_too_old(self) -> None:
        """A user token issued more than an hour ago."""
        self.assert_refused([("Authorization", f"Bearer {_server_token()}"),
                             ("X-User-Token", _user_token(iat=int(NOW) - 4000))],
                            "Token issued too long ago", "user_too_old")

    def test_wrong_issuer(self) -> None:
        """The route's verifier requires iss ``websaas``."""
        self.assert_refused([("Authorization", f"Bearer {_server_token(iss='other')}"),
                             ("X-User-Token", _user_token())],
                            "Invalid server authentication: Server token has the wrong issuer",
                            "server_wrong_issuer")
