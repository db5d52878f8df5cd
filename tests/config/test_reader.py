"""Parsing of Go durations, sizes and listen addresses."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.reader import parse_go_duration, parse_listen_address, parse_size


class ParseTests(SynchronousTestCase):
    """The small value parsers behind the settings."""

    def test_go_durations(self) -> None:
        """Go duration strings become seconds."""
        self.assertEqual(parse_go_duration("8766h"), 8766 * 3600)
        self.assertEqual(parse_go_duration("1h30m"), 5400)
        self.assertEqual(parse_go_duration("500ms"), 0.5)
        self.assertEqual(parse_go_duration("1.5s"), 1.5)
        self.assertEqual(parse_go_duration("0"), 0)
        for bad in ("", "5", "5x", "-5s", "s", "5s5", "1h 30m"):
            self.assertRaises(ValueError, parse_go_duration, bad)

    def test_sizes(self) -> None:
        """Sizes accept IEC and SI units and plain byte counts."""
        self.assertEqual(parse_size("8KiB"), 8192)
        self.assertEqual(parse_size("64MiB"), 64 << 20)
        self.assertEqual(parse_size("1GB"), 10**9)
        self.assertEqual(parse_size("100"), 100)
        for bad in ("", "lots", "5 parsecs", "-1MiB"):
            self.assertRaises(ValueError, parse_size, bad)

    def test_listen_addresses(self) -> None:
        """host:port, :port and [v6]:port are understood; loopback is recognised."""
        self.assertEqual(str(parse_listen_address(":8443")), ":8443")
        self.assertFalse(parse_listen_address(":8443").is_loopback())
        self.assertTrue(parse_listen_address("127.0.0.1:1").is_loopback())
        v6 = parse_listen_address("[::1]:8443")
        self.assertEqual((v6.host, v6.port), ("::1", 8443))
        self.assertTrue(v6.is_loopback())
        for bad in ("8443", "::1:8443", "host:", "host:99999", "[::1]8443"):
            self.assertRaises(ValueError, parse_listen_address, bad)
