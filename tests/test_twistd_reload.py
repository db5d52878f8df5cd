"""A real ``twistd runnergw`` reloaded by real SIGHUPs: roles, keys and model descriptors
change without a restart, a broken configuration keeps the running one, and requests under
way or arriving meanwhile are all served."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.clients import BytesProducer, fetch
from tests.helpers.command_gateway import SERVER_ID, example
from tests.helpers.gateway import start_fake_ollama
from tests.helpers.saas import TestSaas
from tests.helpers.twistd import TwistdProcess, spawn_twistd

__all__ = ["BrokenReloadTests", "ReloadChangesTests", "ReloadUnderLoadTests"]

_ENDINGS = ("reloaded", "reload_refused")
"""The events that end a reload."""


class _TwistdCase(TestCase):
    """A twistd gateway in a temporary directory, with a fake Ollama under ``/ollama``."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.fake, port = start_fake_ollama(self)
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        self.config = self.directory / "settings.yaml"
        self.document: dict[str, Any] = {
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": f"127.0.0.1:{port}", "path": "/ollama"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": "0s", "grace": "5s"},
        }
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 16
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)

    def write(self, change: Callable[[dict[str, Any]], None] | None = None) -> None:
        if change is not None:
            change(self.document)
        self.config.write_text(yaml.safe_dump(self.document))

    async def start(self) -> TwistdProcess:
        self.write()
        process = TwistdProcess()
        spawn_twistd(self, process, self.config, directory=self.directory)
        self.url = await process.listening
        self.process = process
        return process

    async def reload(self, change: Callable[[dict[str, Any]], None] | None = None
                     ) -> dict[str, Any]:
        """Write the settings (changed by ``change``), send SIGHUP, and return the event
        that ended the reload."""
        self.write(change)
        ended = self.process.next_event(*_ENDINGS)
        os.kill(self.process.transport.pid, signal.SIGHUP)  # type: ignore[union-attr]
        return await ended

    def token(self, key: str = "paseto.key", role: str | None = None) -> str:
        signing = load_signing_key((self.directory / key).read_bytes(), 4)
        return mint_token(signing, subject="tester", role=role, lifetime=600, now=time.time())

    async def call(self, method: str, path: str, token: str | None = None,
                   body: Any = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        producer = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            producer = BytesProducer(json.dumps(body).encode())
        response, data = await fetch(self.agent, method, self.url + path, headers, producer)
        return response.code, data


class ReloadChangesTests(_TwistdCase):
    """What a reload changes, seen from a client."""

    async def test_role_allows_a_model_after_reload(self) -> None:
        """A model the role may not use is refused; once the roles allow it and SIGHUP is
        sent, the same request is served."""
        self.document["roles"] = {"user": {"models": ["llama3.2:*"]}}
        self.document["policy"] = {"ledgerPath": str(self.directory / "usage.sqlite")}
        await self.start()
        token = self.token(role="user")
        body = {"model": "qwen2.5:7b", "prompt": "hi", "stream": False}
        status, _ = await self.call("POST", "/ollama/api/generate", token, body)
        self.assertEqual(status, 403)
        ended = await self.reload(
            lambda d: d["roles"]["user"].update(models=["llama3.2:*", "qwen2.5:*"]))
        self.assertEqual(ended["event"], "reloaded")
        status, _ = await self.call("POST", "/ollama/api/generate", token, body)
        self.assertEqual(status, 200)

    async def test_new_public_key_accepted(self) -> None:
        """A token signed by a key the gateway does not know is refused; once the key's
        file is added to ``paseto.publicPath`` and SIGHUP sent, it is accepted."""
        write_signing_keypair(self.directory / "next.key", self.directory / "next.pub")
        await self.start()
        token = self.token("next.key")
        self.assertEqual((await self.call("GET", "/ollama/api/tags", token))[0], 401)
        await self.reload(lambda d: d["paseto"].update(publicPath=[
            str(self.directory / "paseto.pub"), str(self.directory / "next.pub")]))
        self.assertEqual((await self.call("GET", "/ollama/api/tags", token))[0], 200)

    async def test_descriptor_added_and_removed(self) -> None:
        """A descriptor put in the models directory is served after SIGHUP, and no longer
        once it is removed and SIGHUP sent again."""
        models = self.directory / "models"
        models.mkdir()
        (models / "text-stats.json").write_text(json.dumps(example("text-stats")))
        saas = TestSaas(self.directory / "keys")
        self.document["pipelines"] = {
            "modelsPath": str(models), "jobsPath": str(self.directory / "jobs"),
            "saasPublicKeyPath": str(saas.public_path),
            "nodePrivateKeyPath": str(saas.node_private_path), "serverId": SERVER_ID}
        await self.start()
        # Without the SaaS's tokens a model's route answers 401; a path no route serves, 404.
        self.assertEqual((await self.call("POST", "/text-stats/"))[0], 401)
        self.assertEqual((await self.call("POST", "/word-count/"))[0], 404)
        added = example("text-stats")
        added["actions"]["submit"]["endpoint"] = "https://node.example.org/word-count/"
        (models / "word-count.json").write_text(json.dumps(added))
        self.assertEqual((await self.reload())["event"], "reloaded")
        self.assertEqual((await self.call("POST", "/word-count/"))[0], 401)
        (models / "word-count.json").unlink()
        self.assertEqual((await self.reload())["event"], "reloaded")
        self.assertEqual((await self.call("POST", "/word-count/"))[0], 404)
        self.assertEqual((await self.call("POST", "/text-stats/"))[0], 401)


class BrokenReloadTests(_TwistdCase):
    """A configuration with a problem."""

    async def test_old_configuration_kept(self) -> None:
        """A misspelt setting: the reload is refused with a log line naming the file, line
        and YAML path; the runner is served as before, and a later good reload applies."""
        await self.start()
        token = self.token()
        ended = await self.reload(lambda d: d["runners"][0].update(path="/elsewhere", pth=1))
        self.assertEqual(ended["event"], "reload_refused")
        [problem] = self.process.events_named("reload_problem")
        self.assertIn(f"{self.config}:", problem["problem"])
        self.assertIn("runners[0].pth", problem["problem"])
        self.assertEqual((await self.call("GET", "/ollama/api/tags", token))[0], 200)
        self.assertEqual((await self.call("GET", "/elsewhere/api/tags", token))[0], 404)
        ended = await self.reload(lambda d: d["runners"][0].pop("pth"))
        self.assertEqual(ended["event"], "reloaded")
        self.assertEqual((await self.call("GET", "/elsewhere/api/tags", token))[0], 200)


class ReloadUnderLoadTests(_TwistdCase):
    """Reloads while requests are served."""

    async def test_stream_open_across_reload_finishes(self) -> None:
        """A generation streaming while the gateway reloads ends normally, every line of it;
        the routes it began on are retired once it is over."""
        await self.start()
        token = self.token()
        self.fake.gated = True
        arrived = self.fake.next_request()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = BytesProducer(json.dumps({"model": "llama3.2:1b", "prompt": "hi"}).encode())
        responding = ensureDeferred(self.agent.request(
            b"POST", (self.url + "/ollama/api/generate").encode(),
            _twisted_headers(headers), body))
        record = await arrived
        await record.held()
        retired = self.process.next_event("configuration_retired")
        ended = await self.reload(lambda d: d["runners"][0].update(
            rewrite={"setHeaders": {"X-Generation": "2"}}))
        self.assertEqual(ended["event"], "reloaded")
        self.assertFalse(retired.called)
        record.gated = False
        record.release()
        response = await responding
        lines = [json.loads(line) for line in (await readBody(response)).splitlines()]
        self.assertEqual(response.code, 200)
        self.assertTrue(lines[-1]["done"], lines)
        await retired

    async def test_no_failed_request_during_reloads(self) -> None:
        """Four clients calling in a loop while the settings are reloaded five times: every
        request is answered 200."""
        await self.start()
        token = self.token()
        outcomes: list[Any] = []
        progress: list[tuple[int, Deferred[None]]] = []
        reloading = True

        def record(outcome: Any) -> None:
            outcomes.append(outcome)
            for waiter in [w for w in progress if len(outcomes) >= w[0]]:
                progress.remove(waiter)
                waiter[1].callback(None)

        def answered(count: int) -> Deferred[None]:
            """Fires once ``count`` requests in all were answered."""
            waiter: Deferred[None] = Deferred()
            progress.append((count, waiter))
            return waiter

        async def client() -> None:
            while reloading:
                try:
                    status, _ = await self.call("POST", "/ollama/api/generate", token,
                                                {"model": "llama3.2:1b", "prompt": "hi"})
                    record(status)
                except Exception as e:
                    record(repr(e))

        clients = [ensureDeferred(client()) for _ in range(4)]
        for generation in range(5):
            # Requests are under way during each reload and between two of them.
            await answered(len(outcomes) + 8)
            ended = await self.reload(lambda d, n=generation: d["runners"][0].update(
                rewrite={"setHeaders": {"X-Generation": str(n)}}))
            self.assertEqual(ended["event"], "reloaded")
        await answered(len(outcomes) + 8)
        reloading = False
        await DeferredList(clients)
        failures = [outcome for outcome in outcomes if outcome != 200]
        self.assertEqual(failures, [])
        self.assertEqual(len(self.process.events_named("reloaded")), 5)


def _twisted_headers(headers: dict[str, str]) -> Any:
    from twisted.web.http_headers import Headers

    return Headers({name: [value] for name, value in headers.items()})
