"""A runner's hosts (``host`` or ``hosts``) and its ``pool`` options."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.runner_pool import PoolSettings, RunnerHost
from runnergw.config.runners import RunnerSettings, read_runners
from tests.helpers.settings_text import read_text

__all__ = ["RunnerHostsTests", "PoolOptionsTests"]


def _read(testcase: SynchronousTestCase, text: str) -> tuple[tuple[RunnerSettings, ...],
                                                              list[str]]:
    return read_text(testcase, text, read_runners)


class RunnerHostsTests(SynchronousTestCase):
    """``hosts`` lists several Ollama servers; ``host`` keeps meaning one."""

    def test_single_host_is_a_pool_of_one(self) -> None:
        """A runner-gateway ``host`` is a runner with one host and the default pool."""
        (runner,), errors = _read(self, "runners:\n  - host: 127.0.0.1:11434\n")
        self.assertEqual(errors, [])
        self.assertEqual(runner.hosts, (RunnerHost("127.0.0.1", 11434),))
        self.assertEqual(runner.pool, PoolSettings())

    def test_several_hosts(self) -> None:
        """``hosts`` keeps its order; the first is also ``host``, IPv6 written in brackets."""
        (runner,), errors = _read(
            self, "runners:\n  - hosts: [10.0.0.1:11434, '[::1]:11435', gpu.lan:11434]\n")
        self.assertEqual(errors, [])
        self.assertEqual([str(host) for host in runner.hosts],
                         ["10.0.0.1:11434", "[::1]:11435", "gpu.lan:11434"])
        self.assertEqual((runner.host, runner.port), ("10.0.0.1", 11434))

    def test_both_host_and_hosts_refused(self) -> None:
        """Giving both is ambiguous: refused at the ``hosts`` line."""
        _, errors = _read(self, "runners:\n  - host: 10.0.0.1:1\n    hosts: [10.0.0.2:1]\n")
        self.assertEqual(errors, ["settings.yaml:3: runners[0].hosts: give either host or "
                                  "hosts, not both"])

    def test_empty_list_refused(self) -> None:
        """A runner with no host at all cannot serve: refused at its line."""
        _, errors = _read(self, "runners:\n  - hosts: []\n")
        self.assertEqual(errors, ["settings.yaml:2: runners[0].hosts: must list at least one "
                                  "host"])

    def test_duplicate_host_refused(self) -> None:
        """The same server twice would double its share: refused at the second mention."""
        _, errors = _read(self, "runners:\n  - hosts:\n      - 10.0.0.1:11434\n"
                                "      - 10.0.0.2:11434\n      - 10.0.0.1:11434\n")
        self.assertEqual(errors, ["settings.yaml:5: runners[0].hosts[2]: 10.0.0.1:11434 is "
                                  "listed twice"])

    def test_bad_items_located(self) -> None:
        """Each malformed item is named by its index and line."""
        _, errors = _read(self, "runners:\n  - hosts:\n      - ':11434'\n      - 7\n")
        self.assertEqual(errors, [
            'settings.yaml:3: runners[0].hosts[0]: expected "host:port", got ":11434"',
            'settings.yaml:4: runners[0].hosts[1]: expected "host:port", got 7'])

    def test_not_a_list_refused(self) -> None:
        """A single string under ``hosts`` is a mistake worth naming (``host`` is for one)."""
        _, errors = _read(self, "runners:\n  - hosts: 10.0.0.1:1\n")
        self.assertEqual(errors, ['settings.yaml:2: runners[0].hosts: expected a list of '
                                  '"host:port", as ["127.0.0.1:11434"]'])


class PoolOptionsTests(SynchronousTestCase):
    """``runners[].pool``: ejection, probes and model affinity."""

    def test_every_option(self) -> None:
        """Each key reads into its setting."""
        (runner,), errors = _read(
            self, "runners:\n  - hosts: [10.0.0.1:1, 10.0.0.2:1]\n    pool:\n"
                  "      ejectAfter: 5\n      ejectFor: 500ms\n      maxEjectFor: 30s\n"
                  "      probeInterval: 1s\n      affinity: false\n      psInterval: 10s\n"
                  "      affinitySlack: 0\n")
        self.assertEqual(errors, [])
        self.assertEqual(runner.pool, PoolSettings(
            eject_after=5, eject_for=0.5, max_eject_for=30.0, probe_interval=1.0,
            affinity=False, ps_interval=10.0, affinity_slack=0))

    def test_defaults(self) -> None:
        """Three failures eject for 1s doubling up to 60s, probes every 2s, ``/api/ps`` read
        every 5s, affinity within two requests of the least busy host."""
        self.assertEqual(PoolSettings(), PoolSettings(3, 1.0, 60.0, 2.0, True, 5.0, 2))

    def test_bad_values_located(self) -> None:
        """Zero intervals, a zero failure count, a maximum below the first ejection and
        unknown keys are each refused at their line."""
        _, errors = _read(
            self, "runners:\n  - host: 10.0.0.1:1\n    pool:\n      ejectAfter: 0\n"
                  "      probeInterval: 0s\n      maxEjectFor: 500ms\n      psIntervall: 1s\n")
        self.assertEqual(errors, [
            "settings.yaml:4: runners[0].pool.ejectAfter: expected at least 1 and at most 1000, "
            "got 0",
            "settings.yaml:5: runners[0].pool.probeInterval: must be longer than zero",
            "settings.yaml:6: runners[0].pool.maxEjectFor: maxEjectFor (0.5s) is shorter "
            "than ejectFor (1s)",
            "settings.yaml:7: runners[0].pool.psIntervall: unknown setting (check the "
            "spelling; see the settings reference)"])
