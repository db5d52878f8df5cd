"""RESP2, the protocol Redis speaks: commands encoded, replies parsed, errors named."""

from __future__ import annotations

from typing import Any

__all__ = ["Incomplete", "RedisError", "RedisUnavailable", "encode_command", "parse_reply"]


class RedisUnavailable(Exception):
    """Redis did not answer: not connected, the connection was lost, or the deadline passed."""


class RedisError(Exception):
    """Redis answered with an error (``-ERR …``)."""


def encode_command(*args: bytes | str | int) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Incomplete(Exception):
    """More bytes are needed for the reply."""


def parse_reply(buffer: bytes, start: int) -> tuple[Any, int]:
    """One reply at ``start``: (the value, where the next reply starts)."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise Incomplete
    kind, line = buffer[start:start + 1], buffer[start + 1:end]
    after = end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise Incomplete
        return buffer[after:after + size], after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse_reply(buffer, after)
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP2 reply: {kind!r}")
