"""What parsing a request costs in runnergw's hand parser, against httptools (llhttp).

One run builds a few requests (small and large heads, a fixed-length body, a chunked body of
odd chunk sizes with extensions and a trailer), cuts each into pieces the way a network can
(whole, a CRLF cut between its CR and its LF everywhere, network-sized pieces, a byte at a
time), and times, on the same pieces:

* the hand parser, as the server drives it: ``skip_empty_lines`` and ``HeadScanner`` on the
  growing head, ``parse_request_head`` once it is complete, then ``FixedLengthDecoder`` or
  ``ChunkedDecoder`` on the body;
* httptools' ``HttpRequestParser`` with its default settings, its callbacks collecting the
  target, the fields and the body pieces, the fields then decoded into a ``Headers`` (what
  the rest of the gateway works on).

Both keep their state across requests, as on a keep-alive connection. Each figure is the
best of several repeats of the per-request mean, in microseconds; the ratio is hand parser
over httptools, both measured in this run. Before timing, the two are checked to agree on
every request.

A second part feeds the malformed requests of the gateway's strictness tests to both and
prints what each makes of them: what httptools, with its defaults, accepts that runnergw
refuses.

It is a benchmark, not a test: the figures depend on the machine and on what else runs.
httptools is not a dependency of runnergw (``pip install httptools``); without it, only the
hand parser's figures are printed.

Usage: ``python bench/http_parse_bench.py [--quick] [--no-strictness]``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from runnergw.http.body import ChunkedDecoder, FixedLengthDecoder  # noqa: E402
from runnergw.http.errors import BadRequest  # noqa: E402
from runnergw.http.head import HeadLimits, RequestHead, parse_request_head  # noqa: E402
from runnergw.http.headers import Headers  # noqa: E402
from runnergw.http.scan import HeadScanner, skip_empty_lines  # noqa: E402

try:
    import httptools
except ImportError:  # the comparison is skipped, with a message
    httptools = None

LIMITS = HeadLimits()
TOKEN = b"v4.public." + b"eyJzdWIiOiJhbGljZSIsInJvbGUiOiJ1c2VyIn0" * 8
CHAT = b'{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"stream":true}'


# Requests and the ways they are cut


def _head(request_line: bytes, *fields: bytes) -> bytes:
    return request_line + b"\r\n" + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


def _chunked_body() -> bytes:
    """About 24 KiB in 40 chunks of odd sizes, some with extensions, then a trailer field."""
    sizes = [1, 17, 256, 4096, 1000, 9, 64, 3000]
    out = []
    for index in range(40):
        size = sizes[index % len(sizes)]
        extension = b";n=%d" % index if index % 5 == 0 else b""
        out.append(b"%x%s\r\n%s\r\n" % (size, extension, bytes([97 + index % 26]) * size))
    return b"".join(out) + b"0\r\nX-Checksum: 8d2f\r\n\r\n"


_COMMON = (b"Host: gw.example:8443", b"Authorization: Bearer " + TOKEN, b"Accept: */*",
           b"User-Agent: ollama-python/0.4.7 (x86_64 linux) Python/3.12.3")
REQUESTS: dict[str, bytes] = {
    "GET, 4 fields": _head(b"GET /ollama/api/tags HTTP/1.1", *_COMMON),
    "POST, 9 fields, 80-byte body": _head(
        b"POST /ollama/api/chat HTTP/1.1", *_COMMON, b"Content-Type: application/json",
        b"Content-Length: %d" % len(CHAT), b"Accept-Encoding: gzip, deflate",
        b"Connection: keep-alive", b"X-Request-Id: 5f0c6a2e-3c1b-4e59-9d1a-7b6f2a9c0e11") + CHAT,
    "GET, 24 fields (browser-like, 2 KiB)": _head(
        b"GET /ollama/api/ps?verbose=1 HTTP/1.1", *_COMMON,
        *(b"X-Extra-%02d: %s" % (n, b"v" * (40 + 3 * n)) for n in range(20))),
    "POST, chunked 24 KiB in 40 chunks": _head(
        b"POST /ollama/api/create HTTP/1.1", *_COMMON, b"Content-Type: application/json",
        b"Transfer-Encoding: chunked") + _chunked_body(),
}


def whole(data: bytes) -> list[bytes]:
    return [data]


def at_every_cr(data: bytes) -> list[bytes]:
    """Cut after every CR (each CRLF split in two), and each long piece in its middle too."""
    pieces = []
    for part in data.split(b"\r"):
        if len(part) > 16:
            pieces += [part[: len(part) // 2], part[len(part) // 2 :]]
        else:
            pieces.append(part)
        pieces[-1] += b"\r"
    pieces[-1] = pieces[-1][:-1]
    return [piece for piece in pieces if piece]


def network(data: bytes, size: int = 1448) -> list[bytes]:
    """Pieces of one TCP segment's payload each."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


SPLITS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": whole, "CRLF cut": at_every_cr, "1448-byte": network, "byte by byte": bytewise,
}


# The two parsers, fed the same pieces


Parsed = tuple[str, str, list[tuple[str, str]], bytes]


def hand_request(scanner: HeadScanner, pieces: Sequence[bytes]) -> Parsed:
    """One request through the hand parser, as ``GatewayHTTPProtocol`` feeds it."""
    buffer = b""
    head: RequestHead | None = None
    decoder: ChunkedDecoder | FixedLengthDecoder | None = None
    body: list[bytes] = []
    for piece in pieces:
        if decoder is None:
            buffer = skip_empty_lines(buffer + piece)
            if buffer in (b"", b"\r"):
                continue
            end = scanner.find_end(buffer)
            if end < 0:
                error = scanner.partial_error(buffer)
                if error is not None:
                    raise error
                continue
            scanner.reset()
            head = parse_request_head(buffer[:end], LIMITS)
            decoder = (FixedLengthDecoder(head.content_length) if head.content_length is not None
                       else ChunkedDecoder())
            piece = buffer[end + 4 :]
        if piece and not decoder.done:
            parts, _ = decoder.feed(piece)
            body += parts
    assert head is not None and decoder is not None and decoder.done
    return head.method, head.target, list(head.headers), b"".join(body)


class Sink:
    """httptools callbacks collecting one request at a time.

    httptools hands trailer fields to ``on_header`` too, after the body: they are kept apart
    (the gateway drops them)."""

    __slots__ = ("url", "fields", "trailers", "body", "complete", "begun")

    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.body: list[bytes] = []
        self.complete = 0
        self.begun = 0

    def on_message_begin(self) -> None:
        self.begun += 1
        self.url = b""
        self.fields = []
        self.trailers = None
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.trailers is None:
            self.fields.append((name, value))
        else:
            self.trailers.append((name, value))

    def on_headers_complete(self) -> None:
        self.trailers = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete += 1


def llhttp_request(parser: Any, sink: Sink, pieces: Sequence[bytes]) -> Parsed:
    """One request through httptools, its fields then decoded into ``Headers``."""
    for piece in pieces:
        parser.feed_data(piece)
    headers = Headers([(name.decode("ascii"), value.decode("latin-1"))
                       for name, value in sink.fields])
    return (parser.get_method().decode("ascii"), sink.url.decode("ascii"), list(headers),
            b"".join(sink.body))


# Timing


def best_per_call(runs: Sequence[Callable[[int], float]], quick: bool) -> list[float]:
    """Seconds per call of each ``run(n)``: the best of several repeats, n calibrated per run.

    The runs take turns within each repeat, so that a change in the machine's load during the
    measurement weighs on all of them alike."""
    sizes = []
    for run in runs:
        n = 1
        while True:
            spent = run(n)
            if spent > 0.01:
                break
            n *= 2
        sizes.append(max(1, int(n * (0.03 if quick else 0.1) / spent)))
    best = [float("inf")] * len(runs)
    for _ in range(3 if quick else 7):
        for index, (run, n) in enumerate(zip(runs, sizes, strict=True)):
            best[index] = min(best[index], run(n) / n)
    return best


def timed_hand(pieces: Sequence[bytes]) -> Callable[[int], float]:
    def run(n: int) -> float:
        scanner = HeadScanner(LIMITS)
        start = time.perf_counter()
        for _ in range(n):
            hand_request(scanner, pieces)
        return time.perf_counter() - start
    return run


def timed_llhttp(pieces: Sequence[bytes]) -> Callable[[int], float]:
    def run(n: int) -> float:
        sink = Sink()
        parser = httptools.HttpRequestParser(sink)
        start = time.perf_counter()
        for _ in range(n):
            llhttp_request(parser, sink, pieces)
        return time.perf_counter() - start
    return run


def timed_body_hand(pieces: Sequence[bytes]) -> Callable[[int], float]:
    """``ChunkedDecoder`` alone on the body pieces."""
    def run(n: int) -> float:
        spent = 0.0
        for _ in range(n):
            decoder = ChunkedDecoder()
            start = time.perf_counter()
            for piece in pieces:
                decoder.feed(piece)
            spent += time.perf_counter() - start
        return spent
    return run


def timed_body_llhttp(head: bytes, pieces: Sequence[bytes]) -> Callable[[int], float]:
    """httptools on the body pieces only: the head is fed before the clock starts."""
    def run(n: int) -> float:
        sink = Sink()
        parser = httptools.HttpRequestParser(sink)
        spent = 0.0
        for _ in range(n):
            parser.feed_data(head)
            start = time.perf_counter()
            for piece in pieces:
                parser.feed_data(piece)
            spent += time.perf_counter() - start
        return spent
    return run


def _row(name: str, cut: str, pieces: int, hand: float, other: float | None) -> None:
    figures = (f"{'-':>13} {'-':>15}" if other is None
               else f"{other * 1e6:>13.2f} {hand / other:>15.2f}")
    print(f"{name:<38} {cut:<13} {pieces:>6} {hand * 1e6:>9.2f} {figures}")


def speed(quick: bool) -> None:
    have = httptools is not None
    print(f"{'request':<38} {'cut':<13} {'pieces':>6} {'hand µs':>9} {'httptools µs':>13}"
          f" {'hand/httptools':>15}")
    ratios = []
    for name, data in REQUESTS.items():
        for cut, split in SPLITS.items():
            if cut == "byte by byte" and len(data) > 4096:
                continue
            pieces = split(data)
            assert b"".join(pieces) == data
            expected = hand_request(HeadScanner(LIMITS), [data])
            assert hand_request(HeadScanner(LIMITS), pieces) == expected, (name, cut)
            other = None
            if have:
                sink = Sink()
                got = llhttp_request(httptools.HttpRequestParser(sink), sink, pieces)
                assert got == expected, (name, cut, got[:3], expected[:3])
                hand, other = best_per_call([timed_hand(pieces), timed_llhttp(pieces)], quick)
                ratios.append(hand / other)
            else:
                [hand] = best_per_call([timed_hand(pieces)], quick)
            _row(name, cut, len(pieces), hand, other)
    chunked = REQUESTS["POST, chunked 24 KiB in 40 chunks"]
    head_end = chunked.index(b"\r\n\r\n") + 4
    head, body = chunked[:head_end], chunked[head_end:]
    for cut in ("whole", "CRLF cut", "1448-byte"):
        pieces = SPLITS[cut](body)
        other = None
        if have:
            hand, other = best_per_call([timed_body_hand(pieces),
                                         timed_body_llhttp(head, pieces)], quick)
            ratios.append(hand / other)
        else:
            [hand] = best_per_call([timed_body_hand(pieces)], quick)
        _row("the chunked body alone", cut, len(pieces), hand, other)
    if ratios:
        ratios.sort()
        print(f"\nhand/httptools: median {ratios[len(ratios) // 2]:.2f}, "
              f"from {ratios[0]:.2f} to {ratios[-1]:.2f} (both parsers agreed on every request)")


# Strictness: what each parser makes of malformed requests


H = b"Host: gw\r\n"
P = b"POST / HTTP/1.1\r\nHost: gw\r\n"
C = P + b"Transfer-Encoding: chunked\r\n\r\n"
CASES: list[tuple[str, bytes, str]] = [
    # (what, raw bytes, what RFC 9112 and Go's net/http say)
    ("bare LF line ends", b"GET / HTTP/1.1\nHost: gw\n\n",
     "RFC: MAY read LF as a line end; Go does"),
    ("bare LF ending one field", b"GET / HTTP/1.1\r\nHost: gw\nX-A: 1\r\n\r\n",
     "RFC: MAY; Go reads it as a line end"),
    ("bare CR in a field value", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r2\r\n\r\n",
     "RFC: MUST reject or replace it with SP"),
    ("bare LF before the request line", b"\nGET / HTTP/1.1\r\n" + H + b"\r\n",
     "RFC: only CRLF empty lines may be skipped"),
    ("bare CR before the request line", b"\rGET / HTTP/1.1\r\n" + H + b"\r\n",
     "RFC: a bare CR is invalid"),
    ("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n folded\r\n\r\n",
     "RFC: 400, or replace with SP; Go joins the lines"),
    ("whitespace before the colon", b"GET / HTTP/1.1\r\nHost : gw\r\n\r\n", "RFC: MUST 400"),
    ("NUL in a field value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
     "RFC: not a field-value"),
    ("VT in a field value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x0bb\r\n\r\n",
     "RFC: not a field-value"),
    ("NBSP after chunked", P + b"Transfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n",
     "Go: 501 unknown coding"),
    ("Transfer-Encoding: gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
     b"0\r\n\r\n", "Go: 501"),
    ("Transfer-Encoding and Content-Length", P + b"Content-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "RFC: MAY reject; MUST close after"),
    ("two equal Content-Length", P + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
     "RFC: MAY accept as one"),
    ("Content-Length: 5, 5", P + b"Content-Length: 5, 5\r\n\r\nhello", "RFC: MAY accept as one"),
    ("Content-Length: +5", P + b"Content-Length: +5\r\n\r\nhello", "RFC: invalid"),
    ("no Host (HTTP/1.1)", b"GET / HTTP/1.1\r\n\r\n", "RFC: MUST 400 (semantics)"),
    ("two Host fields", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
     "RFC: MUST 400 (semantics)"),
    ("Host: a b", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "RFC: MUST 400 (semantics)"),
    ("# in the target", b"GET /api/tags#frag HTTP/1.1\r\n" + H + b"\r\n",
     "RFC: not a request-target; Go keeps it in the path"),
    ("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", "505 (semantics)"),
    ("lower-case version", b"GET / http/1.1\r\n" + H + b"\r\n", "RFC: case-sensitive"),
    ("two spaces in the request line", b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
     "RFC: single SP"),
    ("tab in the request line", b"GET\t/ HTTP/1.1\r\n" + H + b"\r\n", "RFC: single SP"),
    ("field line of 100 KiB", b"GET / HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 102400
     + b"\r\n\r\n", "RFC: MAY 431; Go: 1 MiB head limit"),
    ("1000 fields", b"GET / HTTP/1.1\r\n" + H + b"X-A: 1\r\n" * 1000 + b"\r\n",
     "RFC: MAY 431"),
    ("chunk size 0x10", C + b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n", "RFC, Go: invalid"),
    ("chunk size +5", C + b"+5\r\nhello\r\n0\r\n\r\n", "RFC, Go: invalid"),
    ("chunk size with a space before", C + b" 5\r\nhello\r\n0\r\n\r\n", "RFC, Go: invalid"),
    ("chunk size with a space after", C + b"5 \r\nhello\r\n0\r\n\r\n",
     "RFC: invalid (BWS only before ;); Go trims it"),
    ("space before a chunk extension", C + b"5 ;x\r\nhello\r\n0\r\n\r\n",
     "RFC: BWS allowed; Go: invalid"),
    ("chunk size of 17 hex digits", C + b"1" + b"0" * 16 + b"\r\n", "Go: too large"),
    ("bare LF ending a chunk size", C + b"5\nhello\r\n0\r\n\r\n", "Go reads it as a line end"),
    ("no CRLF after chunk data", C + b"5\r\nhelloXX0\r\n\r\n", "RFC, Go: invalid"),
    ("request line among trailers", C + b"0\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n",
     "Go: malformed trailer"),
    ("bare LF ending the trailers, then a request",
     C + b"0\r\n\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n",
     "Go: trailers end, /smuggled is a 2nd request"),
    ("bare LF ending a trailer field", C + b"0\r\nX-A: 1\n\r\n",
     "RFC: MAY; Go reads it as a line end"),
]


def hand_verdict(data: bytes) -> str:
    """What the hand parser makes of ``data`` sent at once: refused, or how many requests."""
    count = 0
    try:
        while data:
            buffer = skip_empty_lines(data)
            scanner = HeadScanner(LIMITS)
            end = scanner.find_end(buffer)
            if end < 0:
                error = scanner.partial_error(buffer)
                if error is not None:
                    raise error
                return f"waits after {count}" if count else "waits"
            head = parse_request_head(buffer[:end], LIMITS)
            data = buffer[end + 4 :]
            decoder = (FixedLengthDecoder(head.content_length) if head.content_length is not None
                       else ChunkedDecoder())
            if not decoder.done:
                _, data = decoder.feed(data)
                if not decoder.done:
                    return "waits"
            count += 1
    except BadRequest as e:
        return f"refused {e.status}"
    return f"{count} request" + ("s" if count > 1 else "")


def llhttp_verdict(data: bytes) -> str:
    sink = Sink()
    try:
        httptools.HttpRequestParser(sink).feed_data(data)
    except httptools.HttpParserError as e:
        return "refused" + (f" after {sink.complete}" if sink.complete else "") + f" ({e})"
    if sink.begun > sink.complete:
        return "waits"
    return f"{sink.complete} request" + ("s" if sink.complete > 1 else "")


def strictness() -> None:
    if httptools is None:
        print("\nSKIP the malformed-request comparison: httptools is not installed.")
        return
    print(f"\n{'malformed request':<44} {'runnergw':<12} {'httptools (defaults)':<44} note")
    refused, lenient, stricter = 0, [], []
    for what, data, note in CASES:
        ours, theirs = hand_verdict(data), llhttp_verdict(data)
        print(f"{what:<44} {ours:<12} {theirs[:44]:<44} {note}")
        if ours.startswith("refused"):
            refused += 1
            if not theirs.startswith("refused"):
                lenient.append(what)
        elif theirs.startswith("refused"):
            stricter.append(what)
    print(f"\nhttptools accepts {len(lenient)} of the {refused} that runnergw refuses: "
          + "; ".join(lenient))
    print(f"httptools refuses {len(stricter)} that runnergw accepts: " + "; ".join(stricter))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    parser.add_argument("--no-strictness", dest="strictness", action="store_false",
                        help="skip the malformed-request comparison")
    options = parser.parse_args(argv)
    print(f"Python {platform.python_version()} on {platform.machine()}; httptools "
          + (httptools.__version__ if httptools is not None else "not installed"))
    if httptools is None:
        print("SKIP the httptools comparison: httptools is not installed "
              "(pip install httptools); the hand parser's figures follow alone.")
    speed(options.quick)
    if options.strictness:
        strictness()
    return 0


if __name__ == "__main__":
    sys.exit(main())
