"""``runnergw usage --cluster``: the day's totals of every node, read from Redis."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["ClusterUsageTests"]


class ClusterUsageTests(TestCase):
    """An operator reads what the whole cluster counted."""

    timeout = 30

    def setUp(self) -> Deferred[None]:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.server = RedisServer(self)
        return self.server.start()

    def settings(self, backend: str = "redis") -> str:
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        path = self.directory / "settings.yaml"
        path.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": "127.0.0.1:11434", "path": "/ollama"}],
            "roles": {"user": {"tokensPerDay": 1000}},
            "policy": {"ledgerPath": str(self.directory / "usage.sqlite")},
            "limits": {"backend": backend, "nodes": 2},
            "redis": {"address": self.server.address, "keyPrefix": "test:"},
        }))
        return str(path)

    async def usage(self, *args: str) -> tuple[int, str, str]:
        out, err, code = await getProcessOutputAndValue(
            sys.executable, ("-c", "import sys; from runnergw.cli import main; "
                                   "sys.exit(main())", "usage", *args),
            env=dict(os.environ), path=str(self.directory), reactor=reactor)
        return code, out.decode(), err.decode()

    async def test_totals_per_subject(self) -> None:
        """``--day`` prints each subject's tokens of that day, largest first."""
        state = shared_state(self, self.server, prefix="test:")
        await state.add_tokens("alice", "2026-12-04", 120)
        await state.add_tokens("bob", "2026-12-04", 300)
        await state.add_tokens("alice", "2026-12-05", 7)
        code, out, err = await self.usage("--cluster", "--config", self.settings(),
                                        "--day", "2026-12-04", "--format", "json")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out), [
            {"day": "2026-12-04", "subject": "bob", "total_tokens": 300},
            {"day": "2026-12-04", "subject": "alice", "total_tokens": 120}])

    async def test_needs_redis_backend(self) -> None:
        """Settings that keep limits in the process: an error saying what is missing."""
        code, _, err = await self.usage("--cluster", "--config", self.settings("local"))
        self.assertEqual(code, 2)
        self.assertIn("limits.backend: redis", err)

    async def test_redis_away(self) -> None:
        """Redis not answering: an error naming where it was looked for."""
        settings = self.settings()
        await self.server.kill()
        code, _, err = await self.usage("--cluster", "--config", settings)
        self.assertEqual(code, 2)
        self.assertIn(f"cannot read the totals from Redis at {self.server.address}", err)
