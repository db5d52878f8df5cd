"""A runner host's health: ejected after failures in a row, for a time that doubles, probed
until it answers again; and the models it has loaded."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.upstream.host import UpstreamHost
from tests.helpers.fake_hosts import ScriptedPool, answer, make_host, reset

__all__ = ["EjectionTests", "HealthCheckTests", "LoadedModelsTests", "ProbeTests"]


class _HostTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def named(self, name: str) -> list[dict[str, Any]]:
        """The events of that name logged so far."""
        return [event for event in self.events if event.get("event") == name]

    def refuse(self, host: UpstreamHost, pool: ScriptedPool, times: int = 1) -> None:
        """``times`` requests whose connect is refused."""
        for _ in range(times):
            failing = host.acquire()
            pool.refuse()
            self.failureResultOf(failing, ConnectionRefusedError)

    def exchange(self, host: UpstreamHost, pool: ScriptedPool) -> None:
        """A request answered whole."""
        acquiring = host.acquire()
        connection, _ = pool.open()
        self.assertIs(self.successResultOf(acquiring), connection)
        connection.send_request("GET", b"GET /api/tags HTTP/1.1\r\n\r\n", _Quiet(), "none")
        answer(connection)
        host.release(connection)

    def eject(self, host: UpstreamHost, pool: ScriptedPool) -> None:
        self.refuse(host, pool, host.options.eject_after)
        self.assertFalse(host.healthy)

    def probe_answers(self, pool: ScriptedPool, status: int) -> bytes:
        """The probe waiting connects and gets ``status``; returns what it sent."""
        connection, transport = pool.open()
        sent = transport.value()
        answer(connection, status, b'{"version":"0.12.0"}')
        return sent


class _Quiet:
    def response_head(self, head: Any) -> None:
        pass

    def response_data(self, data: bytes) -> None:
        pass

    def response_done(self) -> None:
        pass

    def response_failed(self, reason: Exception) -> None:
        pass


class EjectionTests(_HostTestCase):
    """Refused connects and resets eject a host; a success starts the count again."""

    def test_ejected_after_failures_in_a_row(self) -> None:
        """The third refused connect in a row ejects the host, logged once."""
        host, pool = make_host(self.clock, eject_after=3)
        self.refuse(host, pool, 2)
        self.assertTrue(host.healthy)
        self.refuse(host, pool, 1)
        self.assertFalse(host.healthy)
        self.assertEqual((host.ejections, host.active), (1, 0))
        [event] = self.named("upstream_host_ejected")
        self.assertEqual((event["runner"], event["host"], event["seconds"]),
                         ("gpu", "10.0.0.1:11434", 1.0))

    def test_success_starts_the_count_again(self) -> None:
        """Failures separated by a successful exchange never add up to an ejection."""
        host, pool = make_host(self.clock, eject_after=3)
        self.refuse(host, pool, 2)
        self.exchange(host, pool)
        self.refuse(host, pool, 2)
        self.assertTrue(host.healthy)

    def test_reset_during_an_exchange_counts(self) -> None:
        """A fresh connection the host resets before answering is a failure."""
        host, pool = make_host(self.clock, eject_after=1)
        acquiring = host.acquire()
        connection, _ = pool.open()
        self.successResultOf(acquiring)
        connection.send_request("POST", b"POST /api/generate HTTP/1.1\r\n\r\n", _Quiet(),
                                "length")
        reset(connection)
        host.release(connection)
        self.assertFalse(host.healthy)

    def test_idle_keep_alive_closed_does_not_count(self) -> None:
        """A reused connection the host had closed while idle is not a host failure."""
        host, pool = make_host(self.clock, eject_after=1)
        connection, _ = pool.connection()
        pool.keep(connection)
        self.successResultOf(host.acquire())
        connection.send_request("GET", b"GET /api/tags HTTP/1.1\r\n\r\n", _Quiet(), "none")
        reset(connection)
        host.release(connection)
        self.assertTrue(host.healthy)

    def test_requests_under_way_counted(self) -> None:
        """A request counts from its connect to its release, and not after a failed
        connect or a cancelled one."""
        host, pool = make_host(self.clock, eject_after=5)
        first = host.acquire()
        cancelled = host.acquire()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        pool.waiting.remove(cancelled)
        self.assertEqual(host.active, 1)
        connection, _ = pool.open()
        self.successResultOf(first)
        self.refuse(host, pool)
        self.assertEqual(host.active, 1)
        host.release(connection)
        self.assertEqual(host.active, 0)


class ProbeTests(_HostTestCase):
    """An ejected host is probed once its ejection is over, and readmitted at a 200."""

    def test_probed_when_the_ejection_ends(self) -> None:
        """Nothing is sent to the host during its ejection; then ``GET /api/version``, and
        a 200 readmits it, logged once."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0)
        self.eject(host, pool)
        self.clock.advance(0.999)
        self.assertEqual(pool.waiting, [])
        self.clock.advance(0.001)
        sent = self.probe_answers(pool, 200)
        self.assertTrue(sent.startswith(b"GET /api/version HTTP/1.1\r\nHost: 10.0.0.1:11434\r\n"))
        self.assertTrue(host.healthy)
        [event] = self.named("upstream_host_readmitted")
        self.assertEqual((event["host"], event["seconds"]), ("10.0.0.1:11434", 1.0))

    def test_probed_every_interval_until_it_answers(self) -> None:
        """A refused probe or one answered with an error leaves the host ejected; the next
        comes a probe interval later."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0, probe_interval=2.0)
        self.eject(host, pool)
        self.clock.advance(1.0)
        pool.refuse()
        self.clock.advance(1.999)
        self.assertEqual(pool.waiting, [])
        self.clock.advance(0.001)
        self.probe_answers(pool, 500)
        self.assertFalse(host.healthy)
        self.clock.advance(2.0)
        self.probe_answers(pool, 200)
        self.assertTrue(host.healthy)
        self.assertEqual(len(self.named("upstream_host_readmitted")), 1)

    def test_probe_that_never_answers_times_out(self) -> None:
        """A probe silent for a probe interval is a failed one: the next follows."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0, probe_interval=2.0)
        self.eject(host, pool)
        self.clock.advance(1.0)
        connection, _ = pool.open()
        self.clock.advance(2.0)
        self.assertTrue(connection._broken)
        self.clock.advance(2.0)
        self.assertEqual(len(pool.waiting), 1)
        self.assertFalse(host.healthy)

    def test_ejection_doubles_and_is_capped(self) -> None:
        """Ejections in a row last 1s, 2s, then at most ``maxEjectFor``."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0, max_eject_for=3.0)
        for length in (1.0, 2.0, 3.0):
            self.eject(host, pool)
            self.clock.advance(length - 0.001)
            self.assertEqual(pool.waiting, [], length)
            self.clock.advance(0.001)
            self.probe_answers(pool, 200)
            self.assertTrue(host.healthy)
        self.assertEqual(host.ejections, 3)

    def test_success_shortens_the_next_ejection(self) -> None:
        """After a successful exchange the next ejection is the first length again."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0)
        self.eject(host, pool)
        self.clock.advance(1.0)
        self.probe_answers(pool, 200)
        self.exchange(host, pool)
        self.eject(host, pool)
        self.clock.advance(1.0)
        self.assertEqual(len(pool.waiting), 1)

    def test_close_stops_probing(self) -> None:
        """A closed host is not probed again, and its connections are closed."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=1.0)
        self.eject(host, pool)
        self.successResultOf(host.close())
        self.clock.advance(10)
        self.assertEqual((pool.waiting, pool.closed), ([], True))


def _ps(*names: str) -> bytes:
    return json.dumps({"models": [{"name": name, "model": name} for name in names]}).encode()


class LoadedModelsTests(_HostTestCase):
    """``/api/ps`` read every ``psInterval`` while the gateway runs."""

    def test_polled_at_once_and_every_interval(self) -> None:
        """The first read comes at start, the next a ``psInterval`` later; names match in
        their normal form (no tag is ``:latest``)."""
        host, pool = make_host(self.clock, ps_interval=5.0)
        host.start_checks(at_once=True)
        connection, transport = pool.open()
        self.assertTrue(transport.value().startswith(b"GET /api/ps HTTP/1.1\r\n"))
        answer(connection, 200, _ps("llama3.2:latest", "qwen3:8b"))
        self.assertEqual(host.loaded_models, ("llama3.2:latest", "qwen3:8b"))
        self.assertTrue(host.has_model("llama3.2"))
        self.assertFalse(host.has_model("qwen3:4b"))
        self.clock.advance(5.0)
        connection, _ = pool.open()
        answer(connection, 200, _ps())
        self.assertEqual(host.loaded_models, ())

    def test_unreadable_answer_means_unknown(self) -> None:
        """An error or a body that is not the expected JSON: no model is known loaded."""
        host, pool = make_host(self.clock, ps_interval=5.0)
        host.start_checks(at_once=True)
        answer(pool.open()[0], 200, _ps("llama3.2:latest"))
        self.clock.advance(5.0)
        answer(pool.open()[0], 200, b"[1, 2]")
        self.assertEqual(host.loaded_models, ())

    def test_not_polled_while_ejected(self) -> None:
        """An ejected host's models are unknown, and it is not asked for them."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=60.0, max_eject_for=60.0,
                               ps_interval=5.0)
        host.start_checks(at_once=True)
        answer(pool.open()[0], 200, _ps("llama3.2:latest"))
        self.eject(host, pool)
        self.assertEqual(host.loaded_models, ())
        self.clock.advance(5.0)
        self.assertEqual(pool.waiting, [])

    def test_close_stops_polling(self) -> None:
        """Once closed (the gateway stops), the host is not asked again."""
        host, pool = make_host(self.clock, ps_interval=5.0)
        host.start_checks(at_once=True)
        answer(pool.open()[0], 200, _ps())
        self.successResultOf(host.close())
        self.clock.advance(50.0)
        self.assertEqual(pool.waiting, [])


class HealthCheckTests(_HostTestCase):
    """A healthy host is checked every interval: failed checks eject it as failed requests
    do, so an idle gateway learns that a host is down."""

    def check_fails(self, pool: ScriptedPool, how: str) -> None:
        """The check waiting fails ``how``: refused, reset, 500 or silent until it times
        out."""
        if how == "refused":
            pool.refuse()
            return
        connection, _ = pool.open()
        if how == "reset":
            reset(connection)
        elif how == "500":
            answer(connection, 500, b'{"error":"x"}')

    def test_version_checked_without_affinity(self) -> None:
        """Without affinity the check is ``GET /api/version`` every ``probeInterval``, the
        first an interval after the start; one request per interval."""
        host, pool = make_host(self.clock, affinity=False, probe_interval=2.0)
        host.start_checks()
        self.assertEqual(pool.waiting, [])
        for _ in range(2):
            self.clock.advance(2.0)
            self.assertEqual(len(pool.waiting), 1)
            connection, transport = pool.open()
            self.assertTrue(transport.value().startswith(b"GET /api/version HTTP/1.1\r\n"))
            answer(connection, 200, b'{"version":"0.12.0"}')
        self.assertTrue(host.healthy)

    def test_failed_checks_eject(self) -> None:
        """A refused, a reset, a 500 and a timed-out check each count: ``ejectAfter`` of them
        in a row eject the host, logged with the last reason."""
        for how in ("refused", "reset", "500", "timeout"):
            with self.subTest(how=how):
                self.setUp()
                host, pool = make_host(self.clock, eject_after=2, ps_interval=5.0)
                host.start_checks()
                for _ in range(2):
                    self.assertTrue(host.healthy)
                    self.clock.advance(5.0)
                    self.check_fails(pool, how)
                if how == "timeout":
                    self.clock.advance(5.0)
                self.assertFalse(host.healthy)
                [event] = self.named("upstream_host_ejected")
                self.assertIn("GET /api/ps", event["reason"])

    def test_check_and_request_failures_add_up(self) -> None:
        """A failed check and failed requests count together, as one kind of failure."""
        host, pool = make_host(self.clock, eject_after=3, ps_interval=5.0)
        host.start_checks()
        self.refuse(host, pool, 2)
        self.clock.advance(5.0)
        pool.refuse()
        self.assertFalse(host.healthy)

    def test_passed_check_resets_the_count(self) -> None:
        """A check answered 200 starts the failure count again."""
        host, pool = make_host(self.clock, eject_after=3, ps_interval=5.0)
        host.start_checks()
        self.refuse(host, pool, 2)
        self.clock.advance(5.0)
        answer(pool.open()[0], 200, _ps())
        self.refuse(host, pool, 2)
        self.assertTrue(host.healthy)

    def test_ejected_host_probed_then_checked(self) -> None:
        """While ejected the host gets only its probes; readmitted, it is checked at once
        and every interval again."""
        host, pool = make_host(self.clock, eject_after=1, eject_for=7.0, max_eject_for=7.0,
                               ps_interval=5.0, probe_interval=2.0)
        host.start_checks()
        self.clock.advance(5.0)
        pool.refuse()
        self.assertFalse(host.healthy)
        self.clock.advance(5.0)
        self.assertEqual(pool.waiting, [])
        self.clock.advance(2.0)
        self.probe_answers(pool, 200)
        self.assertTrue(host.healthy)
        connection, transport = pool.open()
        self.assertTrue(transport.value().startswith(b"GET /api/ps HTTP/1.1\r\n"))

    def test_close_stops_checks(self) -> None:
        """A closed host is not checked again, and a check under way counts for nothing."""
        host, pool = make_host(self.clock, eject_after=1, ps_interval=5.0)
        host.start_checks()
        self.clock.advance(5.0)
        self.successResultOf(host.close())
        pool.refuse()
        self.clock.advance(50.0)
        self.assertEqual((pool.waiting, host.healthy), ([], True))
