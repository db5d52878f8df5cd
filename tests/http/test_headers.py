"""The header list and which request headers may reach a runner."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.headers import Headers, forwardable_request_headers

__all__ = ["ForwardingTests", "HeadersTests"]


class HeadersTests(SynchronousTestCase):
    """Ordered, case-insensitive fields."""

    def test_lookup_ignores_case(self) -> None:
        """Names compare case-insensitively; the first value wins for ``get``."""
        headers = Headers([("X-A", "1"), ("x-a", "2"), ("Host", "gw")])
        self.assertEqual(headers.get("X-a"), "1")
        self.assertEqual(headers.get_all("X-A"), ["1", "2"])
        self.assertIsNone(headers.get("missing"))
        self.assertEqual(headers.get("missing", "d"), "d")
        self.assertIn("HOST", headers)
        self.assertNotIn("missing", headers)
        self.assertNotIn(3, headers)
        self.assertEqual(len(headers), 3)

    def test_set_replaces_every_field(self) -> None:
        """``set`` leaves exactly one field of that name, at the end."""
        headers = Headers([("X-A", "1"), ("B", "b"), ("x-a", "2")])
        headers.set("X-A", "3")
        self.assertEqual(list(headers), [("B", "b"), ("X-A", "3")])

    def test_remove_all(self) -> None:
        """``remove_all`` drops every listed name regardless of case."""
        headers = Headers([("Connection", "close"), ("A", "1"), ("content-length", "5")])
        headers.remove_all(("connection", "Content-Length"))
        self.assertEqual(list(headers), [("A", "1")])

    def test_connection_tokens(self) -> None:
        """Connection tokens are split, trimmed and lower-cased across fields."""
        headers = Headers([("Connection", "Keep-Alive, X-Secret ,"), ("connection", "close")])
        self.assertEqual(headers.connection_tokens(), {"keep-alive", "x-secret", "close"})

    def test_connection_tokens_trim_only_spaces_and_tabs(self) -> None:
        """Only SP and HTAB are trimmed: ``close`` followed by NBSP or NEL is not ``close``."""
        headers = Headers([("Connection", "\tclose\xa0, x-a\x85 , \xa0x-b")])
        self.assertEqual(headers.connection_tokens(), {"close\xa0", "x-a\x85", "\xa0x-b"})

    def test_without_hop_by_hop(self) -> None:
        """Hop-by-hop fields and those named by Connection are dropped."""
        headers = Headers([("Connection", "X-Private"), ("X-Private", "1"), ("Upgrade", "h2c"),
                           ("Keep-Alive", "timeout=5"), ("Accept", "*/*")])
        self.assertEqual(list(headers.without_hop_by_hop()), [("Accept", "*/*")])

    def test_copy_is_independent(self) -> None:
        """Changing a copy leaves the original as it was."""
        headers = Headers([("A", "1")])
        copy = headers.copy()
        copy.add("B", "2")
        self.assertEqual(list(headers), [("A", "1")])

    def test_encode(self) -> None:
        """Fields encode as ``Name: value`` lines, Latin-1."""
        self.assertEqual(Headers([("A", "1"), ("B", "caf\xe9")]).encode(),
                         b"A: 1\r\nB: caf\xe9\r\n")


class ForwardingTests(SynchronousTestCase):
    """What of the client's request goes upstream."""

    def test_credentials_never_forwarded(self) -> None:
        """The bearer token, cookies and other credentials stay at the gateway."""
        headers = Headers([("Authorization", "Bearer v4.public.x"), ("Cookie", "a=b"),
                           ("Proxy-Authorization", "Basic x"), ("X-User-Token", "t"),
                           ("Content-Type", "application/json")])
        self.assertEqual(list(forwardable_request_headers(headers)),
                         [("Content-Type", "application/json")])

    def test_forged_forwarding_headers_dropped(self) -> None:
        """A client cannot forge X-Forwarded-For, Forwarded, X-Real-IP or the request id."""
        headers = Headers([("X-Forwarded-For", "10.0.0.1"), ("Forwarded", "for=1.2.3.4"),
                           ("X-Real-IP", "1.2.3.4"), ("X-Forwarded-Proto", "https"),
                           ("X-Forwarded-Host", "evil"), ("X-Request-Id", "abc"),
                           ("Accept", "*/*")])
        self.assertEqual(list(forwardable_request_headers(headers)), [("Accept", "*/*")])

    def test_framing_and_hop_by_hop_dropped(self) -> None:
        """Framing, Host, Expect and hop-by-hop fields are the gateway's own business."""
        headers = Headers([("Host", "gw"), ("Content-Length", "5"), ("Expect", "100-continue"),
                           ("Transfer-Encoding", "chunked"), ("TE", "trailers"),
                           ("Connection", "keep-alive, X-Hop"), ("X-Hop", "1"),
                           ("User-Agent", "ollama-python")])
        self.assertEqual(list(forwardable_request_headers(headers)),
                         [("User-Agent", "ollama-python")])
