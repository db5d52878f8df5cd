"""The ``runners`` list: Ollama servers behind path prefixes, each with its own limits,
filters and header rewrites."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Reject
from runnergw.chain.route import Route, Router
from runnergw.config.errors import ConfigErrors
from runnergw.config.filters import filter_names
from runnergw.config.load import load_settings
from runnergw.config.runners import RunnerSettings, read_runners
from tests.helpers.settings_text import read_text

__all__ = ["RewriteSettingsTests", "RunnerPrefixTests", "RunnerSettingsTests"]


def _read(testcase: SynchronousTestCase, text: str) -> tuple[tuple[RunnerSettings, ...],
                                                              list[str]]:
    return read_text(testcase, text, read_runners)


class RunnerSettingsTests(SynchronousTestCase):
    """One runner's keys."""

    def test_defaults(self) -> None:
        """Only ``host`` is needed: the runner serves ``/`` with the default chain and
        runner-gateway's generous timeouts."""
        (runner,), errors = _read(self, "runners:\n  - host: 127.0.0.1:11434\n")
        self.assertEqual(errors, [])
        self.assertEqual((runner.name, runner.path, runner.host, runner.port, runner.scheme),
                         ("runner0", "/", "127.0.0.1", 11434, "http"))
        self.assertEqual(filter_names(runner.filters), ("token", "role", "rewrite", "audit"))
        self.assertEqual((runner.connect_timeout, runner.first_byte_timeout,
                          runner.idle_timeout, runner.max_connections, runner.max_body_size),
                         (10.0, 300.0, 300.0, 64, 1 << 30))
        self.assertEqual((runner.prefix_segments, runner.netloc, runner.yaml_path),
                         ((), "127.0.0.1:11434", "runners[0]"))

    def test_every_key(self) -> None:
        """Each key reads into its setting."""
        (runner,), errors = _read(
            self, "runners:\n  - host: gpu.example.org:443\n    name: gpu\n"
            "    path: /gpu/a\n    scheme: https\n    caPath: ca.pem\n"
            "    maxBodySize: 64MiB\n    connectTimeout: 2s\n    firstByteTimeout: 10m\n"
            "    idleTimeout: 1m\n    maxConnections: 8\n    filters: [token, audit]\n")
        self.assertEqual(errors, [])
        self.assertEqual((runner.name, runner.host, runner.port, runner.scheme,
                          runner.ca_path), ("gpu", "gpu.example.org", 443, "https", "ca.pem"))
        self.assertEqual(runner.prefix_segments, ("gpu", "a"))
        self.assertEqual((runner.max_body_size, runner.connect_timeout,
                          runner.first_byte_timeout, runner.idle_timeout,
                          runner.max_connections), (64 << 20, 2.0, 600.0, 60.0, 8))
        self.assertEqual(filter_names(runner.filters), ("token", "audit"))

    def test_ipv6_runner(self) -> None:
        """An IPv6 runner is written in brackets and sent upstream in brackets."""
        (runner,), errors = _read(self, "runners:\n  - host: '[::1]:11434'\n")
        self.assertEqual((runner.host, runner.netloc, errors), ("::1", "[::1]:11434", []))

    def test_host_required(self) -> None:
        """A runner without ``host``, or with a port alone, is refused at its line."""
        _, errors = _read(self, "runners:\n  - path: /a\n  - host: ':11434'\n")
        self.assertEqual(errors, [
            'settings.yaml:2: runners[0].host: required: the runner\'s "host:port", as '
            '"127.0.0.1:11434" (or hosts: a list of them)',
            'settings.yaml:3: runners[1].host: expected "host:port", got ":11434"'])

    def test_timeouts_longer_than_zero(self) -> None:
        """A zero timeout would fail every request: refused, each at its line."""
        _, errors = _read(self, "runners:\n  - host: 127.0.0.1:1\n    connectTimeout: 0s\n"
                                "    idleTimeout: 0\n")
        self.assertEqual(errors, [
            "settings.yaml:3: runners[0].connectTimeout: must be longer than zero",
            "settings.yaml:4: runners[0].idleTimeout: must be longer than zero"])

    def test_wrong_types_and_unknown_keys(self) -> None:
        """Wrong types, bad choices and misspelt keys are each named where written."""
        _, errors = _read(self, "runners:\n  - host: 127.0.0.1:1\n    scheme: ftp\n"
                                "    maxConnections: 0\n    pth: /a\n")
        self.assertEqual(errors, [
            'settings.yaml:3: runners[0].scheme: expected one of http, https; got "ftp"',
            "settings.yaml:4: runners[0].maxConnections: expected at least 1 and at most "
            "10000, got 0",
            "settings.yaml:5: runners[0].pth: unknown setting (check the spelling; see the "
            "settings reference)"])

    def test_not_a_list_of_mappings(self) -> None:
        """``runners`` is a list of mappings: anything else is located."""
        runners, errors = _read(self, "runners:\n  - 127.0.0.1:11434\n")
        self.assertEqual(runners, ())
        self.assertEqual(errors, ['settings.yaml:2: runners[0]: expected a mapping, got '
                                  '"127.0.0.1:11434"'])
        _, errors = _read(self, "runners: 127.0.0.1:11434\n")
        self.assertEqual(errors, ['settings.yaml:1: runners: expected a list, got '
                                  '"127.0.0.1:11434"'])

    def test_origins_kept(self) -> None:
        """Where filters, caPath and path were set is kept for problems found later."""
        (runner,), _ = _read(self, "runners:\n  - host: 127.0.0.1:1\n    path: /a\n"
                                   "    caPath: ca.pem\n")
        self.assertEqual((runner.origins["path"].line, runner.origins["caPath"].line), (3, 4))


class RunnerPrefixTests(SynchronousTestCase):
    """Prefixes: whole segments, no way out, one runner each."""

    def errors(self, text: str) -> list[str]:
        return _read(self, text)[1]

    def test_prefix_normalised(self) -> None:
        """A trailing slash is dropped: ``/a/`` and ``/a`` are one prefix."""
        (runner,), errors = _read(self, "runners:\n  - host: 127.0.0.1:1\n    path: /a/b/\n")
        self.assertEqual((runner.path, runner.prefix_segments, errors),
                         ("/a/b", ("a", "b"), []))

    def test_escaped_prefix_matched_decoded(self) -> None:
        """A prefix written with percent-escapes serves the paths clients send with the same
        escapes (routes match decoded segments)."""
        (runner,), errors = _read(self, "runners:\n  - host: 127.0.0.1:1\n"
                                        "    path: /caf%C3%A9/v%201\n")
        self.assertEqual((runner.prefix_segments, errors), (("café", "v 1"), []))
        router = Router([Route("r", runner.prefix_segments, (), None)], Route("", (), (), None))
        self.assertEqual(router.match("/caf%C3%A9/v%201/api/tags")[1], "/api/tags")
        self.assertRaises(Reject, router.match, "/caf%25C3%25A9/v%25201/api/tags")

    def test_one_prefix_spelt_two_ways(self) -> None:
        """``/a`` and ``/%61`` are one prefix: the second runner is refused at its line."""
        errors = self.errors("runners:\n  - host: 127.0.0.1:1\n    path: /a\n"
                             "  - host: 127.0.0.1:2\n    path: /%61\n")
        self.assertEqual(errors, ['settings.yaml:5: runners[1].path: "/%61" is already the '
                                  'prefix of runners[0]'])

    def test_escape_attempts_located(self) -> None:
        """Empty, dot and encoded-slash segments are named with the prefix."""
        for path in ("/a//b", "/a/%2e%2e", "/a%2Fb", "/./a"):
            with self.subTest(path=path):
                self.assertEqual(self.errors(f"runners:\n  - host: 127.0.0.1:1\n"
                                             f"    path: '{path}'\n"),
                                 [f'settings.yaml:3: runners[0].path: "{path}" has empty, '
                                  'dot or encoded-slash segments'])

    def test_duplicate_prefix_refused(self) -> None:
        """Two runners on the same prefix are refused (one would be unreachable)."""
        errors = self.errors(
            "runners:\n  - host: 127.0.0.1:1\n    path: /a\n  - host: 127.0.0.1:2\n    path: /a/\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("runners[1].path", errors[0])
        self.assertIn("already the prefix of runners[0]", errors[0])

    def test_unsafe_prefixes_refused(self) -> None:
        """Prefixes with dot segments or no leading slash are refused."""
        errors = self.errors(
            "runners:\n  - host: 127.0.0.1:1\n    path: /a/../b\n"
            "  - host: 127.0.0.1:2\n    path: ollama\n")
        self.assertEqual(len(errors), 2)


class RewriteSettingsTests(SynchronousTestCase):
    """Header rewrites cannot break framing or inject lines."""

    def test_bad_rewrites_refused(self) -> None:
        """Invalid names, framing headers and line breaks in values are refused."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text(
            "runners:\n  - host: 127.0.0.1:1\n    rewrite:\n"
            "      setHeaders:\n        X-Ok: fine\n        Bad Name: x\n"
            "        X-Split: \"a\\r\\nInjected: yes\"\n"
            "      removeHeaders: [Content-Length]\n"
            "      setResponseHeaders:\n        Transfer-Encoding: chunked\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(str(path), {})
        joined = "\n".join(str(e) for e in caught.exception.errors)
        self.assertIn('runners[0].rewrite.setHeaders: "Bad Name" is not a valid header name',
                      joined)
        self.assertIn('the value of "X-Split" holds a line break', joined)
        self.assertIn('rewrite.removeHeaders: "Content-Length" is set by the gateway', joined)
        self.assertIn('rewrite.setResponseHeaders: "Transfer-Encoding" is set by the gateway',
                      joined)
        self.assertEqual(len(caught.exception.errors), 4)

    def test_rewrites_read(self) -> None:
        """Headers to set and remove, both ways, read as written."""
        (runner,), errors = _read(self, "runners:\n  - host: 127.0.0.1:1\n    rewrite:\n"
                                        "      setHeaders: {X-Team: a}\n"
                                        "      removeHeaders: [Cookie]\n"
                                        "      setResponseHeaders: {X-Served-By: gw}\n"
                                        "      removeResponseHeaders: Server\n")
        self.assertEqual(errors, [])
        rewrite = runner.rewrite
        self.assertEqual((dict(rewrite.set_headers), rewrite.remove_headers),
                         ({"X-Team": "a"}, ("Cookie",)))
        self.assertEqual((dict(rewrite.set_response_headers), rewrite.remove_response_headers),
                         ({"X-Served-By": "gw"}, ("Server",)))
