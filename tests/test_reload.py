"""Reloading on SIGHUP, in-process: a good configuration is swapped in at once, a broken one
keeps the running one and says why, exchanges under way keep their routes, the replaced routes
are retired once idle, and what must outlive a reload (limits, the job launcher) does.
(``tests/test_twistd_reload.py`` sends real signals to a real twistd.)"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.http.headers import Headers
from runnergw.logs import level_gate
from runnergw.service import GatewayService
from runnergw.systemd.notify import Notifier
from runnergw.testing import RecordingClient, make_exchange
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.certs import make_ca
from tests.helpers.command_gateway import example
from tests.helpers.node_settings import Node, write_node

__all__ = ["BrokenReloadTests", "DrainingTests", "GoodReloadTests", "KeptPartsTests",
           "LimitCountersTests", "NotifyTests", "QueueTests", "RetirementTests",
           "RunnerHostsTests", "TLSReloadTests"]

_RUNNER = {"host": "127.0.0.1:1", "path": "/a", "filters": ["audit"]}


class _RecordingNotifier(Notifier):
    """A notifier whose messages are kept instead of sent."""

    def __init__(self, clock: Any) -> None:
        super().__init__("/nowhere", clock)
        self.sent: list[str] = []

    def send(self, *fields: str) -> bool:
        self.sent.append(fields[0])
        return True


class _ReloadCase(SynchronousTestCase):
    """A service on a memory reactor, its settings file rewritten between reloads."""

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        level = level_gate.level
        self.addCleanup(setattr, level_gate, "level", level)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def start(self, node: Node, notifier: Notifier | None = None) -> GatewayService:
        self.node = node
        self.reactor = MemoryReactorClock()
        service = GatewayService(node.settings, node.parts, self.reactor, notifier=notifier)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def rewrite(self, change: Callable[[dict[str, Any]], None]) -> None:
        document = yaml.safe_load(self.node.path.read_text())
        change(document)
        self.node.path.write_text(yaml.safe_dump(document))

    def reload(self, service: GatewayService) -> bool:
        result: bool = self.successResultOf(service.reload())
        return result

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def problems(self) -> list[str]:
        return [e["problem"] for e in self.logged("reload_problem")]


class GoodReloadTests(_ReloadCase):
    """A configuration without problems is served from the next exchange on."""

    def test_routes_swapped(self) -> None:
        """A runner moved to another prefix is served there after the reload, by the
        handler of the listener, and the reload is counted as a success."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        before = service.router
        self.rewrite(lambda d: d["runners"][0].update(path="/b"))
        self.assertTrue(self.reload(service))
        self.assertIsNot(service.router, before)
        self.assertIs(service.factory.handler.router, service.router)  # type: ignore[attr-defined]
        self.assertEqual([r.prefix for r in service.router.routes], [("b",)])
        self.assertEqual(service.settings.runners[0].path, "/b")
        self.assertEqual(service.reload_results, {"ok": 1, "failed": 0})

    def test_restart_only_change_named(self) -> None:
        """A new listen address is named in the log with the running and the asked value;
        the listener keeps its address, and the rest of the reload applies."""
        service = self.start(write_node(self, runners=[_RUNNER]))

        def change(document: dict[str, Any]) -> None:
            document["server"]["address"] = "127.0.0.1:1"
            document["runners"][0]["path"] = "/b"

        self.rewrite(change)
        self.assertTrue(self.reload(service))
        [warning] = self.logged("reload_restart_only")
        self.assertEqual((warning["path"], warning["running"], warning["wanted"]),
                         ("server.address", "127.0.0.1:0", "127.0.0.1:1"))
        self.assertEqual(warning["log_level"], LogLevel.warn)
        self.assertEqual(str(service.settings.server.address), "127.0.0.1:0")
        self.assertEqual([r.prefix for r in service.router.routes], [("b",)])

    def test_logging_level_applies(self) -> None:
        """``logging.level`` takes effect at once."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        self.rewrite(lambda d: d.update(logging={"level": "error"}))
        self.assertTrue(self.reload(service))
        self.assertEqual(level_gate.level, LogLevel.error)

    def test_shutdown_settings_apply(self) -> None:
        """The drain of a later SIGTERM uses the reloaded ``shutdown`` settings."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        self.rewrite(lambda d: d.update(shutdown={"readinessDelay": "1s", "grace": "7s"}))
        self.assertTrue(self.reload(service))
        self.assertEqual((service.drain.settings.readiness_delay, service.drain.settings.grace),
                         (1.0, 7.0))

    def test_head_limits_apply_to_new_connections(self) -> None:
        """New request head limits and timeouts are what the next connection gets."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        self.rewrite(lambda d: d["server"].update(maxHeaderLine=4096, headerTimeout="3s"))
        self.assertTrue(self.reload(service))
        protocol = service.factory.buildProtocol(None)
        self.assertEqual((protocol.limits.max_line, protocol.timeouts.header),
                         (4096, 3.0))

    def test_audit_file_moved(self) -> None:
        """A new ``audit.path`` is written by the exchanges that start after the reload;
        the old file is closed once the old routes are idle."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        old, new = directory / "old.log", directory / "new.log"
        service = self.start(write_node(self, runners=[_RUNNER],
                                        extra={"audit": {"path": str(old)}}))
        previous = service.parts.audit_log
        self.rewrite(lambda d: d.update(audit={"path": str(new)}))
        self.assertTrue(self.reload(service))
        self.assertIsNot(service.parts.audit_log, previous)
        service.parts.audit_log.write({"n": 1})
        self.assertEqual(new.read_text(), '{"n":1}\n')
        previous.write({"n": 2})  # closed: nothing written
        self.assertEqual(old.read_text(), "")


class BrokenReloadTests(_ReloadCase):
    """A configuration with a problem keeps the running one and names the problem."""

    def assert_kept(self, service: GatewayService, before: Any, name: str) -> None:
        self.assertIs(service.router, before)
        self.assertIs(service.factory.handler.router, before)  # type: ignore[attr-defined]
        self.assertEqual(service.reload_results, {"ok": 0, "failed": 1})
        problems = self.problems()
        self.assertTrue(problems and all(name in problem for problem in problems), problems)
        [refused] = self.logged("reload_refused")
        self.assertEqual(refused["log_level"], LogLevel.error)

    def test_broken_settings_file(self) -> None:
        """A misspelt key: the old routes stay, the log names file, line and YAML path."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        before = service.router
        self.rewrite(lambda d: d["runners"][0].update(pth="/b"))
        self.assertFalse(self.reload(service))
        self.assert_kept(service, before, f"{self.node.path}:")
        self.assertIn("runners[0].pth", self.problems()[0])

    def test_broken_key_file(self) -> None:
        """A PASETO public key file that no longer holds a key: the old keys stay."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        before, verifier = service.router, service.parts.verifier
        public = Path(self.node.settings.paseto.public_paths[0])
        public.write_text("not a key\n")
        self.assertFalse(self.reload(service))
        self.assert_kept(service, before, str(public))
        self.assertIs(service.parts.verifier, verifier)

    def test_bad_descriptor(self) -> None:
        """A model descriptor added with a JSON error: the models served stay those that
        were, and the log names the descriptor's file."""
        service = self.start(write_node(self, descriptors={"text-stats": example("text-stats")}))
        before = service.router
        bad = Path(self.node.settings.pipelines.models_path) / "bad.json"
        bad.write_text('{"title": "bad",\n')
        self.assertFalse(self.reload(service))
        self.assert_kept(service, before, str(bad))


class RetirementTests(_ReloadCase):
    """The routes a reload replaced."""

    def hold(self, service: GatewayService) -> tuple[Deferred[None], Any, list[str]]:
        """An exchange under way on the current route: its terminal answers when the
        returned Deferred fires; the calls to its ``retire`` are listed."""
        [route] = service.router.routes
        answer: Deferred[None] = Deferred()
        stops: list[str] = []

        async def handle(exchange: Any, client: Any) -> None:
            await answer
            client.send_head(200, Headers(), 0)
            client.finish()

        self.patch(route.terminal, "handle", handle)
        self.patch(route.terminal, "retire", lambda: stops.append(route.name))
        client = RecordingClient()
        runner = service.factory.handler  # type: ignore[attr-defined]
        exchange = make_exchange("GET", "/a/api/tags")
        done = runner.serve(exchange, client)
        self.assertNoResult(done)
        return answer, (done, client, exchange, route), stops

    def test_exchange_under_way_keeps_its_route(self) -> None:
        """A request that began before the reload is answered by the route it began on."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        answer, (done, client, exchange, route), _ = self.hold(service)
        self.rewrite(lambda d: d["runners"][0].update(name="renamed"))
        self.assertTrue(self.reload(service))
        self.assertEqual(service.router.routes[0].name, "renamed")
        answer.callback(None)
        self.successResultOf(done)
        self.assertEqual(client.status, 200)
        self.assertIs(exchange.route, route)
        self.assertEqual(route.name, "runner0")

    def test_old_terminals_retired_once_idle(self) -> None:
        """The old route's terminal is retired only once its last exchange is over."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        answer, (done, *_), stops = self.hold(service)
        self.rewrite(lambda d: d["runners"][0].update(name="renamed"))
        self.assertTrue(self.reload(service))
        self.assertEqual(stops, [])
        self.assertEqual(len(service.reloader.retirements), 1)
        answer.callback(None)
        self.successResultOf(done)
        self.assertEqual(stops, ["runner0"])
        self.assertEqual(service.reloader.retirements, [])
        self.assertEqual(len(self.logged("configuration_retired")), 1)


class KeptPartsTests(_ReloadCase):
    """What outlives a reload."""

    def test_job_launcher_kept(self) -> None:
        """The command routes after a reload use the same job parts, which retiring the
        old command routes does not stop."""
        service = self.start(write_node(self, descriptors={"text-stats": example("text-stats")}))
        jobs = service.kept.jobs
        assert jobs is not None
        stopped: list[bool] = []
        self.patch(jobs, "stop", lambda: (stopped.append(True), succeed(None))[1])
        old_terminal = service.router.routes[0].terminal
        self.rewrite(lambda d: d["pipelines"].update(timeout="5m"))
        self.assertTrue(self.reload(service))
        [route] = service.router.routes
        self.assertIsNot(route.terminal, old_terminal)
        self.assertIs(route.terminal.jobs, jobs)  # type: ignore[union-attr]
        self.assertEqual(route.terminal.settings.timeout, 300.0)  # type: ignore[union-attr]
        self.assertEqual(service.reloader.retirements, [])
        self.assertEqual(stopped, [])

    def test_job_environment_applies(self) -> None:
        """``pipelines.environment`` reaches the jobs that start after the reload."""
        service = self.start(write_node(self, descriptors={"text-stats": example("text-stats")}))
        self.rewrite(lambda d: d["pipelines"].update(environment={"CUDA_VISIBLE_DEVICES": "1"}))
        self.assertTrue(self.reload(service))
        jobs = service.kept.jobs
        assert jobs is not None
        self.assertEqual(jobs.environment("/d")["CUDA_VISIBLE_DEVICES"], "1")


    def test_launcher_stopped_with_the_gateway_after_its_routes_went(self) -> None:
        """A reload that removed every descriptor leaves no command route to stop the job
        launcher: the gateway stops it all the same when it stops."""
        service = self.start(write_node(self, descriptors={"text-stats": example("text-stats")}))
        jobs = service.kept.jobs
        assert jobs is not None
        stopped: list[bool] = []
        self.patch(jobs, "stop", lambda: (stopped.append(True), succeed(None))[1])
        for descriptor in (self.node.path.parent / "models").glob("*.json"):
            descriptor.unlink()
        self.assertTrue(self.reload(service))
        self.assertEqual(service.router.routes, [])
        self.successResultOf(service.stopService())
        self.assertEqual(stopped, [True])


class RunnerHostsTests(_ReloadCase):
    """The runner hosts, kept across reloads by their settings."""

    def hosts(self, service: GatewayService) -> dict[str, Any]:
        return {route.name: route.terminal.hosts.hosts[0]  # type: ignore[union-attr]
                for route in service.router.routes}

    def test_runner_kept_keeps_its_host(self) -> None:
        """A runner whose host settings stay keeps its host (connections, health) across a
        reload that changes its filters."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        [before] = self.hosts(service).values()
        self.rewrite(lambda d: d["runners"][0].update(filters=["rewrite", "audit"]))
        self.assertTrue(self.reload(service))
        [after] = self.hosts(service).values()
        self.assertIs(after, before)

    def test_removed_runner_host_closed_once_idle(self) -> None:
        """The host of a runner a reload removed is closed once the exchanges on the old
        routes are over, not before."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        [host] = self.hosts(service).values()
        closed: list[bool] = []
        self.patch(host, "close", lambda: (closed.append(True), succeed(None))[1])
        old = service.router
        old.inflight.enter()
        self.rewrite(lambda d: d["runners"][0].update(host="127.0.0.1:2"))
        self.assertTrue(self.reload(service))
        self.assertEqual(closed, [])
        old.inflight.leave()
        self.assertEqual(closed, [True])

    def test_refused_reload_closes_the_hosts_it_made(self) -> None:
        """A refused reload leaves no host behind that no route uses."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        hosts = service.kept.hosts
        assert hosts is not None
        before = hosts.keys()

        def change(document: dict[str, Any]) -> None:
            document["runners"].append({"host": "127.0.0.1:3", "path": "/c",
                                        "filters": ["nosuchfilter"]})

        self.rewrite(change)
        self.assertFalse(self.reload(service))
        self.assertEqual(hosts.keys(), before)


class LimitCountersTests(TestCase):
    """The role limits' counters, with the real usage ledger."""

    timeout = 20

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)

    async def test_limit_counters_survive(self) -> None:
        """A subject that spent its request rate before a reload is still limited after
        it: the counters are not reset."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        roles = {"user": {"models": ["*"], "requestsPerMinute": 1, "burst": 1}}
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/a"}], extra={
            "roles": roles, "policy": {"ledgerPath": str(directory / "usage.sqlite")}})
        service = GatewayService(node.settings, node.parts, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        limits = service.limits
        assert limits is not None
        await (limits.ready() or succeed(None))
        key = load_signing_key(Path(node.settings.paseto.key_path).read_bytes(), 4)
        token = mint_token(key, subject="someone", role="user", lifetime=600, now=time.time())

        async def call() -> int | None:
            [route] = service.router.routes
            self.patch(route.terminal, "handle", _answer_empty)
            client = RecordingClient()
            exchange = make_exchange("GET", "/a/api/tags", headers=(
                ("Host", "gw"), ("Authorization", f"Bearer {token}")))
            await service.factory.handler.serve(exchange, client)  # type: ignore[attr-defined]
            return client.status

        self.assertEqual(await call(), 200)
        document = yaml.safe_load(node.path.read_text())
        document["roles"]["user"]["models"] = ["llama*"]
        node.path.write_text(yaml.safe_dump(document))
        self.assertTrue(await service.reload())
        self.assertIs(service.limits, limits)
        self.assertEqual(await call(), 429)


    async def test_roles_appearing(self) -> None:
        """A ``roles`` section added by a reload gets its limits at once, started (its
        ledger open), and kept by the service, which stops them when the gateway stops."""
        directory = Path(self.mktemp()).absolute()
        directory.mkdir()
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/a"}])
        service = GatewayService(node.settings, node.parts, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertIsNone(service.limits)
        document = yaml.safe_load(node.path.read_text())
        document["roles"] = {"user": {"models": ["*"]}}
        document["policy"] = {"ledgerPath": str(directory / "usage.sqlite")}
        node.path.write_text(yaml.safe_dump(document))
        self.assertTrue(await service.reload())
        limits = service.limits
        assert limits is not None
        self.assertIs(service.kept.limits, limits)
        self.assertIsNone(limits.ready())
        self.assertTrue((directory / "usage.sqlite").exists())


async def _answer_empty(exchange: Any, client: Any) -> None:
    client.send_head(200, Headers(), 0)
    client.finish()


class TLSReloadTests(_ReloadCase):
    """The certificate, reloaded with the rest."""

    def tls_node(self) -> tuple[Node, Any, Path]:
        directory = Path(self.mktemp()).absolute()
        ca = make_ca(str(directory / "ca"))
        issued = ca.issue(str(directory / "cert"), "gateway")
        node = write_node(self, runners=[_RUNNER], server={
            "certificatePath": issued.fullchain_path, "keyPath": issued.key_path})
        return node, ca, directory

    def test_renewed_certificate_served(self) -> None:
        """A renewed certificate in the same files is what the listener's TLS serves next;
        the listener keeps its TLS object."""
        node, ca, directory = self.tls_node()
        service = self.start(node)
        tls = service.parts.tls
        assert tls is not None
        later = datetime.now(timezone.utc) + timedelta(days=200)
        ca.issue(str(directory / "cert"), "gateway", not_after=later)
        self.assertTrue(self.reload(service))
        self.assertIs(service.parts.tls, tls)
        self.assertEqual(tls.not_after.date(), later.date())

    def test_broken_certificate_keeps_the_old_one(self) -> None:
        """A certificate file that cannot be served fails the reload, naming the file; the
        previous certificate is served still."""
        node, _, _ = self.tls_node()
        service = self.start(node)
        tls = service.parts.tls
        assert tls is not None
        before = tls.not_after
        Path(node.settings.server.certificate_path).write_text("garbage\n")
        self.assertFalse(self.reload(service))
        self.assertEqual(tls.not_after, before)
        self.assertTrue(any(node.settings.server.certificate_path in problem
                            for problem in self.problems()), self.problems())


class NotifyTests(_ReloadCase):
    """The service manager hears of each reload."""

    def test_failed_reload_announced(self) -> None:
        """A failed reload is framed by RELOADING=1 and READY=1 as a good one is."""
        notifier = _RecordingNotifier(MemoryReactorClock())
        service = self.start(write_node(self, runners=[_RUNNER]), notifier)
        self.assertEqual(notifier.sent, ["READY=1"])
        self.rewrite(lambda d: d.update(unknown=1))
        self.assertFalse(self.reload(service))
        self.assertEqual(notifier.sent, ["READY=1", "RELOADING=1", "READY=1"])


class DrainingTests(_ReloadCase):
    """A reload once the gateway drains."""

    def test_ignored(self) -> None:
        """The routes the drain is ending are not replaced; the reload is logged as
        ignored, not counted."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        before = service.router
        service.readiness.draining = True
        self.rewrite(lambda d: d["runners"][0].update(path="/b"))
        self.assertFalse(self.reload(service))
        self.assertIs(service.router, before)
        self.assertEqual(len(self.logged("reload_ignored")), 1)
        self.assertEqual(service.reload_results, {"ok": 0, "failed": 0})

    def test_not_announced(self) -> None:
        """After STOPPING=1 the service manager hears no RELOADING=1 or READY=1."""
        notifier = _RecordingNotifier(MemoryReactorClock())
        service = self.start(write_node(self, runners=[_RUNNER]), notifier)
        service.readiness.draining = True
        self.assertFalse(self.reload(service))
        self.assertEqual(notifier.sent, ["READY=1"])

    def test_stop_beginning_while_the_reload_is_built(self) -> None:
        """A stop that begins while the reload waits (for the ledger of a ``roles`` section
        that appeared) is not undone: the new routes are not swapped in, the limits they
        opened are stopped, and the service manager hears no READY=1 after STOPPING=1."""
        notifier = _RecordingNotifier(MemoryReactorClock())
        service = self.start(write_node(self, runners=[_RUNNER]), notifier)
        before = service.router
        opened: Deferred[None] = Deferred()
        stopped: list[bool] = []

        class _Limits:
            def stop(self) -> Deferred[None]:
                stopped.append(True)
                return succeed(None)

        async def start_limits(settings: Any) -> Any:
            await opened
            return _Limits()

        self.patch(service.reloader, "_start_limits", start_limits)
        self.rewrite(lambda d: d.update(roles={"user": {"models": ["*"]}},
                                        policy={"defaultRole": "user"}))
        reloaded = service.reload()
        service.readiness.draining = True
        opened.callback(None)
        self.assertFalse(self.successResultOf(reloaded))
        self.assertIs(service.router, before)
        self.assertEqual(stopped, [True])
        self.assertEqual(notifier.sent, ["READY=1", "RELOADING=1"])


class QueueTests(_ReloadCase):
    """Reloads asked for while one runs."""

    def test_one_more_after_the_current(self) -> None:
        """Reloads asked for during a reload are run as one, after it, never alongside."""
        service = self.start(write_node(self, runners=[_RUNNER]))
        builds: list[Deferred[None]] = []
        original = service.reloader._build

        async def build() -> Any:
            waiting: Deferred[None] = Deferred()
            builds.append(waiting)
            await waiting
            return await original()

        self.patch(service.reloader, "_build", build)
        first = service.reload()
        second, third = service.reload(), service.reload()
        self.assertEqual(len(builds), 1)
        builds[0].callback(None)
        self.assertTrue(self.successResultOf(first))
        self.assertEqual(len(builds), 2)
        self.assertNoResult(second)
        builds[1].callback(None)
        self.assertEqual((self.successResultOf(second), self.successResultOf(third)),
                         (True, True))
        self.assertEqual(service.reload_results, {"ok": 2, "failed": 0})
