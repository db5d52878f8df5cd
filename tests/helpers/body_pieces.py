"""Feeding a body decoder its bytes cut in pieces, as they come off a connection."""

from __future__ import annotations

from runnergw.http.body import BodyDecoder

__all__ = ["decode_in_pieces", "splits"]


def decode_in_pieces(decoder: BodyDecoder, pieces: list[bytes]) -> tuple[bytes, bytes]:
    """Feed each piece; return the body and what came after it."""
    body, after = b"", b""
    for piece in pieces:
        if decoder.done:
            after += piece
            continue
        decoded, rest = decoder.feed(piece)
        body += b"".join(decoded)
        after += rest
    return body, after


def splits(data: bytes) -> list[list[bytes]]:
    """``data`` whole, byte by byte, and cut in two at every position."""
    return ([[data], [data[i:i + 1] for i in range(len(data))]]
            + [[data[:i], data[i:]] for i in range(1, len(data))])
