"""RESP2: commands encoded as Redis reads them, every kind of reply parsed."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.redis_resp import Incomplete, RedisError, encode_command, parse_reply

__all__ = ["EncodeTests", "ParseTests"]


class EncodeTests(SynchronousTestCase):
    """A command is an array of bulk strings."""

    def test_arguments_of_each_type(self) -> None:
        """Text, bytes and numbers are sent as bulk strings of their exact length."""
        self.assertEqual(encode_command("SET", b"k\r\n", 12),
                         b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n")


class ParseTests(SynchronousTestCase):
    """Each reply with where the next one starts."""

    def test_simple_string_integer_and_error(self) -> None:
        """``+OK``, ``:12`` and ``-ERR`` (an error value, not raised)."""
        data = b"+OK\r\n:12\r\n-ERR no\r\n"
        value, at = parse_reply(data, 0)
        self.assertEqual(value, b"OK")
        value, at = parse_reply(data, at)
        self.assertEqual(value, 12)
        value, at = parse_reply(data, at)
        self.assertIsInstance(value, RedisError)
        self.assertEqual((str(value), at), ("ERR no", len(data)))

    def test_bulk_and_null(self) -> None:
        """A bulk string may hold CRLF; a null bulk is None."""
        self.assertEqual(parse_reply(b"$4\r\na\r\nb\r\n", 0), (b"a\r\nb", 10))
        self.assertEqual(parse_reply(b"$-1\r\n", 0), (None, 5))

    def test_nested_array(self) -> None:
        """Arrays hold replies of any kind, arrays included."""
        self.assertEqual(parse_reply(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n", 0)[0], [1, [b"x"]])

    def test_incomplete(self) -> None:
        """A reply cut anywhere asks for more bytes."""
        whole = b"*2\r\n:1\r\n$3\r\nabc\r\n"
        for cut in range(len(whole)):
            self.assertRaises(Incomplete, parse_reply, whole[:cut], 0)

    def test_not_resp(self) -> None:
        """A line of an unknown kind is a protocol error."""
        self.assertRaises(ValueError, parse_reply, b"?what\r\n", 0)
