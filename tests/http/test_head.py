"""The strict request-head parser: request line, header fields, framing, limits."""

from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http import head
from runnergw.http.errors import BadRequest
from runnergw.http.head import HeadLimits, RequestHead, parse_request_head

_WELL_FORMED = head._well_formed_fields

__all__ = ["FieldTests", "FramingTests", "HostTests", "LimitTests", "RequestLineTests"]

_LIMITS = HeadLimits()


def _head(*lines: str | bytes, limits: HeadLimits = _LIMITS) -> RequestHead:
    """Parse CRLF-joined lines (without the final empty line)."""
    block = b"\r\n".join(line.encode("latin-1") if isinstance(line, str) else line
                         for line in lines)
    return parse_request_head(block, limits)


class _HeadTestCase(SynchronousTestCase):
    """An assertion for refused heads."""

    def assertRefused(self, status: int, *lines: str | bytes,
                      limits: HeadLimits = _LIMITS) -> BadRequest:
        """Parsing ``lines`` raises ``BadRequest`` with ``status``."""
        error = self.assertRaises(BadRequest, _head, *lines, limits=limits)
        self.assertEqual(error.status, status, error.message)
        self.assertTrue(error.message)
        self.assertNotIn('"', error.message)
        return error


class RequestLineTests(_HeadTestCase):
    """The request line: method, origin-form target, version."""

    def test_simple_get(self) -> None:
        """A plain GET is parsed into its parts, with keep-alive on for HTTP/1.1."""
        head = _head("GET /api/tags?x=1&y HTTP/1.1", "Host: gw")
        self.assertEqual(
            (head.method, head.target, head.path, head.query, head.version),
            ("GET", "/api/tags?x=1&y", "/api/tags", "x=1&y", "HTTP/1.1"),
        )
        self.assertEqual(head.content_length, 0)
        self.assertFalse(head.has_body)
        self.assertTrue(head.keep_alive)
        self.assertFalse(head.expect_continue)

    def test_http2_version(self) -> None:
        """An HTTP/2.0 request line is answered 505, not 400."""
        self.assertRefused(505, "GET / HTTP/2.0", "Host: gw")

    def test_unknown_minor_version(self) -> None:
        """HTTP/1.2 is not guessed at: 505."""
        self.assertRefused(505, "GET / HTTP/1.2", "Host: gw")

    def test_lower_case_version(self) -> None:
        """The version is case-sensitive."""
        self.assertRefused(400, "GET / http/1.1", "Host: gw")

    def test_absolute_form(self) -> None:
        """A proxy-style absolute URI is refused; the gateway is not a forward proxy."""
        self.assertRefused(400, "GET http://runner:11434/api/tags HTTP/1.1", "Host: gw")

    def test_asterisk_form(self) -> None:
        """``OPTIONS *`` is refused."""
        self.assertRefused(400, "OPTIONS * HTTP/1.1", "Host: gw")

    def test_authority_form(self) -> None:
        """``CONNECT host:port`` is refused: no tunnels."""
        self.assertRefused(400, "CONNECT runner:11434 HTTP/1.1", "Host: gw")

    def test_extra_spaces(self) -> None:
        """Two spaces between the parts of the request line are refused."""
        self.assertRefused(400, "GET  / HTTP/1.1", "Host: gw")
        self.assertRefused(400, "GET / HTTP/1.1 ", "Host: gw")

    def test_tab_separator(self) -> None:
        """Only single spaces separate the request line."""
        self.assertRefused(400, "GET\t/ HTTP/1.1", "Host: gw")

    def test_space_in_target(self) -> None:
        """A raw space in the target makes four parts: refused."""
        self.assertRefused(400, "GET /a b HTTP/1.1", "Host: gw")

    def test_non_ascii_target(self) -> None:
        """Raw bytes above 0x7e in the target are refused."""
        self.assertRefused(400, b"GET /caf\xc3\xa9 HTTP/1.1", b"Host: gw")

    def test_fragment_in_target(self) -> None:
        """A raw ``#`` in the target, in the path or the query, is refused."""
        for target in ("/api/tags#frag", "/api/tags?x=1#frag", "/#", "/a?#"):
            with self.subTest(target=target):
                self.assertRefused(400, f"GET {target} HTTP/1.1", "Host: gw")

    def test_encoded_hash_in_target(self) -> None:
        """An escaped ``%23`` is an ordinary character of the path."""
        self.assertEqual(_head("GET /a%23b HTTP/1.1", "Host: gw").path, "/a%23b")

    def test_malformed_method(self) -> None:
        """A method that is not a token is refused."""
        self.assertRefused(400, "G(T / HTTP/1.1", "Host: gw")

    def test_control_character_in_target(self) -> None:
        """A NUL in the target is refused."""
        self.assertRefused(400, b"GET /a\x00b HTTP/1.1", b"Host: gw")

    def test_bare_lf_inside_head(self) -> None:
        """A line ended by a bare LF is refused."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw\nX-Smuggled: 1")

    def test_bare_cr_inside_head(self) -> None:
        """A bare CR inside a line is refused."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw\rX-Smuggled: 1")


class HostTests(_HeadTestCase):
    """The Host field."""

    def test_missing_host_http11(self) -> None:
        """HTTP/1.1 without Host is 400."""
        self.assertRefused(400, "GET / HTTP/1.1", "Accept: */*")

    def test_duplicate_host(self) -> None:
        """Two Host fields are 400, in either version."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: a", "Host: b")
        self.assertRefused(400, "GET / HTTP/1.0", "Host: a", "Host: a")

    def test_valid_hosts(self) -> None:
        """Names, IPv4 and bracketed IPv6 addresses, with or without a port, are accepted."""
        for host in ("gw", "gw.example:8443", "127.0.0.1", "127.0.0.1:8443", "[::1]",
                     "[::1]:8443", "[2001:db8::192.0.2.1]", "xn--caf-dma.example", "my_host",
                     "a%41b", "gw:0"):
            with self.subTest(host=host):
                self.assertEqual(_head("GET / HTTP/1.1", "Host: " + host).headers.get("host"),
                                 host)

    def test_malformed_host(self) -> None:
        """A Host that is not ``host[:port]`` is 400: spaces, paths, user info, bad ports…"""
        for host in ("a b", "gw\tx", "gw:", "gw:abc", "gw:123456", "gw:-1", "user@gw", "gw/x",
                     "gw?x", "gw#x", '"gw"', "caf\xe9", "a%4", "a%zz", "[::1", "::1",
                     "[zz::1]", "[::1]x", "[::1]:", "[fe80::1%25eth0]", "gw:80:80", ":8443"):
            with self.subTest(host=host):
                self.assertRefused(400, b"GET / HTTP/1.1", b"Host: " + host.encode("latin-1"))

    def test_empty_host(self) -> None:
        """An empty Host is 400, in either version."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host:")
        self.assertRefused(400, "GET / HTTP/1.1", "Host:  ")
        self.assertRefused(400, "GET / HTTP/1.0", "Host:")

    def test_malformed_host_http10(self) -> None:
        """An HTTP/1.0 request that sends a Host must send a valid one."""
        self.assertRefused(400, "GET / HTTP/1.0", "Host: a b")

    def test_http10_without_host(self) -> None:
        """HTTP/1.0 without Host is accepted and closes after the response by default."""
        head = _head("GET / HTTP/1.0")
        self.assertEqual(head.version, "HTTP/1.0")
        self.assertFalse(head.keep_alive)

    def test_http10_keep_alive(self) -> None:
        """HTTP/1.0 with ``Connection: keep-alive`` keeps the connection."""
        self.assertTrue(_head("GET / HTTP/1.0", "Connection: Keep-Alive").keep_alive)

    def test_connection_close_with_unicode_whitespace(self) -> None:
        """``close`` or ``keep-alive`` followed by NBSP or NEL is another token (as in Go)."""
        for value in (b"close\xa0", b"close\x85", b"\xa0close"):
            with self.subTest(value=value):
                self.assertTrue(_head(b"GET / HTTP/1.1", b"Host: gw",
                                      b"Connection: " + value).keep_alive)
        self.assertFalse(_head(b"GET / HTTP/1.0", b"Connection: keep-alive\xa0").keep_alive)

    def test_http11_connection_close(self) -> None:
        """``Connection: close`` among other tokens ends keep-alive."""
        self.assertFalse(_head("GET / HTTP/1.1", "Host: gw", "Connection: te, close").keep_alive)


class FieldTests(_HeadTestCase):
    """Header field syntax."""

    def test_fields_in_order(self) -> None:
        """Fields keep their order and optional whitespace around values is removed."""
        head = _head("GET / HTTP/1.1", "Host: gw", "X-A:  1 \t", "x-a:2", "X-Empty:")
        self.assertEqual(list(head.headers), [("Host", "gw"), ("X-A", "1"), ("x-a", "2"),
                                              ("X-Empty", "")])
        self.assertEqual(head.headers.get_all("X-A"), ["1", "2"])

    def test_obs_fold(self) -> None:
        """A continuation line (obsolete line folding) is refused."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw", "X-A: 1", " folded")
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw", "X-A: 1", "\tfolded")

    def test_whitespace_before_colon(self) -> None:
        """``Name : value`` is refused (a classic smuggling vector)."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host : gw")
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw", "Content-Length\t: 5")

    def test_no_colon(self) -> None:
        """A field line without a colon is refused."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw", "garbage")

    def test_empty_name(self) -> None:
        """A field line starting with a colon is refused."""
        self.assertRefused(400, "GET / HTTP/1.1", "Host: gw", ": value")

    def test_control_characters_in_value(self) -> None:
        """NUL, ESC and DEL in a field value are refused; a tab is fine."""
        for bad in (b"\x00", b"\x1b", b"\x7f", b"\x0b"):
            self.assertRefused(400, b"GET / HTTP/1.1", b"Host: gw", b"X-A: a" + bad + b"b")
        self.assertEqual(_head("GET / HTTP/1.1", "Host: gw", "X-A: a\tb").headers.get("x-a"),
                         "a\tb")

    def test_obs_text_in_value(self) -> None:
        """Bytes above 0x7f in a value are kept as Latin-1 text."""
        head = _head(b"GET / HTTP/1.1", b"Host: gw", b"X-Name: caf\xe9")
        self.assertEqual(head.headers.get("x-name"), "caf\xe9")

    def test_expect_other_than_continue(self) -> None:
        """An expectation other than ``100-continue`` is 417."""
        self.assertRefused(417, "POST / HTTP/1.1", "Host: gw", "Expect: something")

    def test_expect_continue(self) -> None:
        """``Expect: 100-continue`` is noticed in HTTP/1.1 only."""
        lines = ("Host: gw", "Content-Length: 3", "Expect: 100-Continue")
        self.assertTrue(_head("POST / HTTP/1.1", *lines).expect_continue)
        self.assertFalse(_head("POST / HTTP/1.0", *lines).expect_continue)


class FramingTests(_HeadTestCase):
    """How the body is delimited; anything ambiguous is refused."""

    def test_content_length(self) -> None:
        """A plain Content-Length is the body length."""
        head = _head("POST / HTTP/1.1", "Host: gw", "Content-Length: 0042")
        self.assertEqual(head.content_length, 42)
        self.assertTrue(head.has_body)

    def test_chunked(self) -> None:
        """``Transfer-Encoding: chunked`` (any case) means a chunked body."""
        head = _head("POST / HTTP/1.1", "Host: gw", "Transfer-Encoding: Chunked")
        self.assertIsNone(head.content_length)
        self.assertTrue(head.has_body)

    def test_transfer_encoding_and_content_length(self) -> None:
        """Both framings at once are refused (CL.TE / TE.CL smuggling)."""
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Content-Length: 5",
                           "Transfer-Encoding: chunked")
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Transfer-Encoding: chunked",
                           "Content-Length: 5")

    def test_two_different_content_lengths(self) -> None:
        """Two different Content-Length fields are refused."""
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Content-Length: 5",
                           "Content-Length: 6")

    def test_two_equal_content_lengths(self) -> None:
        """Two equal Content-Length fields are refused too."""
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Content-Length: 5",
                           "Content-Length: 5")

    def test_content_length_list(self) -> None:
        """A comma-separated Content-Length is refused."""
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Content-Length: 5, 5")

    def test_malformed_content_length(self) -> None:
        """Non-numeric, signed, empty, hex, spaced and non-ASCII digits are refused."""
        for text in ("abc", "-1", "+5", "", "0x10", "1 0", "1.0", "5e2", "\xb2", "\u0665"):
            with self.subTest(text=text):
                self.assertRefused(400, b"POST / HTTP/1.1", b"Host: gw",
                                   b"Content-Length: " + text.encode("utf-8"))

    def test_huge_content_length(self) -> None:
        """A Content-Length of 19 digits or more is refused outright."""
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw", "Content-Length: " + "9" * 19)
        self.assertRefused(400, "POST / HTTP/1.1", "Host: gw",
                           "Content-Length: 99999999999999999999999999999999")

    def test_large_content_length(self) -> None:
        """18 digits still parse (the route's size limit refuses it later)."""
        head = _head("POST / HTTP/1.1", "Host: gw", "Content-Length: " + "9" * 18)
        self.assertEqual(head.content_length, 10**18 - 1)

    def test_other_transfer_codings(self) -> None:
        """gzip, identity and stacked codings are not implemented: 501."""
        for value in ("gzip, chunked", "identity", "chunked, gzip", "chunked, chunked", "",
                      "xchunked"):
            with self.subTest(value=value):
                self.assertRefused(501, "POST / HTTP/1.1", "Host: gw",
                                   "Transfer-Encoding: " + value)

    def test_transfer_encoding_with_unicode_whitespace(self) -> None:
        """``chunked`` with NBSP or NEL around it is an unknown coding (501), as in Go."""
        for value in (b"chunked\xa0", b"\xa0chunked", b"chunked\x85", b"\x85chunked"):
            with self.subTest(value=value):
                self.assertRefused(501, b"POST / HTTP/1.1", b"Host: gw",
                                   b"Transfer-Encoding: " + value)

    def test_transfer_encoding_optional_whitespace(self) -> None:
        """Spaces and tabs around ``chunked`` are optional whitespace."""
        head = _head(b"POST / HTTP/1.1", b"Host: gw", b"Transfer-Encoding: \t chunked \t")
        self.assertIsNone(head.content_length)

    def test_two_transfer_encoding_fields(self) -> None:
        """Two Transfer-Encoding fields are not a chunked body."""
        self.assertRefused(501, "POST / HTTP/1.1", "Host: gw", "Transfer-Encoding: chunked",
                           "Transfer-Encoding: chunked")

    def test_transfer_encoding_in_http10(self) -> None:
        """Transfer-Encoding in an HTTP/1.0 request is refused."""
        self.assertRefused(400, "POST / HTTP/1.0", "Transfer-Encoding: chunked")


class LimitTests(_HeadTestCase):
    """Size and count limits."""

    def test_request_line_at_limit(self) -> None:
        """A request line of exactly ``max_line`` bytes is fine."""
        line = "GET /" + "a" * (8192 - len("GET / HTTP/1.1")) + " HTTP/1.1"
        self.assertEqual(len(line), 8192)
        self.assertEqual(_head(line, "Host: gw").method, "GET")

    def test_request_line_too_long(self) -> None:
        """One byte more is 414."""
        line = "GET /" + "a" * (8193 - len("GET / HTTP/1.1")) + " HTTP/1.1"
        self.assertRefused(414, line, "Host: gw")

    def test_field_too_long(self) -> None:
        """A field line over ``max_line`` is 431."""
        self.assertRefused(431, "GET / HTTP/1.1", "Host: gw", "X-A: " + "a" * 8188)
        self.assertEqual(len(_head("GET / HTTP/1.1", "Host: gw", "X-A: " + "a" * 8187)
                             .headers.get("x-a") or ""), 8187)

    def test_too_many_fields(self) -> None:
        """More than ``max_fields`` fields is 431."""
        fields = [f"X-{n}: {n}" for n in range(99)]
        self.assertEqual(len(_head("GET / HTTP/1.1", "Host: gw", *fields).headers), 100)
        self.assertRefused(431, "GET / HTTP/1.1", "Host: gw", *fields, "X-Last: 1")

    def test_block_too_large(self) -> None:
        """A head over ``max_bytes`` is 431 even when each field is within its limit."""
        fields = [f"X-{n}: " + "a" * 8000 for n in range(9)]
        self.assertRefused(431, "GET / HTTP/1.1", "Host: gw", *fields)

    def test_custom_limits(self) -> None:
        """The limits come from the settings."""
        limits = HeadLimits(max_line=64, max_fields=2, max_bytes=200)
        self.assertRefused(414, "GET /" + "a" * 60 + " HTTP/1.1", "Host: gw", limits=limits)
        self.assertRefused(431, "GET / HTTP/1.1", "Host: gw", "A: 1", "B: 2", limits=limits)
        self.assertRefused(431, "GET / HTTP/1.1", "Host: gw", "A: " + "a" * 70, limits=limits)


class WellFormedFieldsTests(SynchronousTestCase):
    """The one-pattern parse of well-formed heads gives what the line-by-line parse gives,
    and every malformed head still gets the line-by-line parse's answer."""

    @staticmethod
    def answer(block: bytes, limits: HeadLimits) -> Any:
        """What the parse makes of ``block``, in a comparable form."""
        try:
            parsed = parse_request_head(block, limits)
        except BadRequest as e:
            return (e.status, str(e))
        return (parsed.method, parsed.target, parsed.path, parsed.query, parsed.version,
                list(parsed.headers), parsed.content_length, parsed.keep_alive,
                parsed.expect_continue)

    def both(self, block: bytes, limits: HeadLimits) -> Any:
        fast = self.answer(block, limits)
        self.patch(head, "_well_formed_fields", lambda *args: None)
        try:
            return fast, self.answer(block, limits)
        finally:
            self.patch(head, "_well_formed_fields", _WELL_FORMED)

    def test_same_answers_on_random_heads(self) -> None:
        pieces = [b"Host: gw", b"X-A:  spaced value \t", b"x-b:", b"Bad Name: v", b"C:\tv",
                  b"D: a\x01b", b"E: caf\xe9", b"F : v", b"G:v\rx", b"H:v\nx", b"I: \x7f",
                  b"Content-Length: 5", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
                  b"J: " + b"v" * 60,
                  b"no colon", b":empty-name", b"K: v\x00"]
        lines = [b"GET / HTTP/1.1", b"POST /x?y HTTP/1.0", b"GET  / HTTP/1.1", b"GET /\r HTTP/1.1"]
        chooser = random.Random(20261123)
        limits = HeadLimits(max_line=40, max_fields=5)
        outcomes: set[object] = set()
        for _ in range(3000):
            fields = [chooser.choice(pieces) for _ in range(chooser.randrange(0, 7))]
            block = b"\r\n".join([chooser.choice(lines), *fields])
            fast, slow = self.both(block, limits)
            self.assertEqual(fast, slow, block)
            outcomes.add("parsed" if len(fast) > 2 else fast[0])
        # The heads drawn cover success and each kind of refusal.
        self.assertEqual(outcomes, {"parsed", 400, 431, 501})
