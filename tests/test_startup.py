"""Turning settings into keys, TLS and an audit trail, or a complete list of problems."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.settings import Settings
from runnergw.routes import build_router
from runnergw.startup import ensure_development_keys, prepare
from runnergw.tokens.key_generation import generate_local_key_hex, write_signing_keypair
from tests.helpers.certs import make_ca


class PrepareTests(SynchronousTestCase):
    """``prepare`` loads what the settings point at."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()

    def settings(self, paseto: dict, server: dict | None = None, audit: str = "-",
                 **extra: Any) -> Settings:
        document = {
            "paseto": paseto,
            "runners": [{"host": "127.0.0.1:11434", "path": "/"}],
            "server": server or {"address": "127.0.0.1:0"},
            "audit": {"path": audit},
            **extra,
        }
        path = self.directory / "settings.yaml"
        path.write_text(yaml.safe_dump(document))
        self.last = load_settings(str(path), {})
        return self.last

    def keypair(self) -> tuple[str, str]:
        key, pub = self.directory / "paseto.key", self.directory / "paseto.pub"
        write_signing_keypair(key, pub)
        return str(key), str(pub)

    def problems(self, settings: Settings) -> list[str]:
        with self.assertRaises(ConfigErrors) as caught:
            prepare(settings)
        return [str(error) for error in caught.exception.errors]

    def test_public_and_local_keys_load(self) -> None:
        """A public key file and a hex secret key give a verifier for both purposes."""
        key, pub = self.keypair()
        parts = prepare(self.settings({"keyPath": key, "publicPath": pub,
                                       "secretKey": generate_local_key_hex()}))
        self.addCleanup(parts.audit_log.close)
        self.assertIsNotNone(parts.verifier)
        self.assertIsNone(parts.tls)

    def test_placeholder_secret_key_refused(self) -> None:
        """runner-gateway's placeholder secretKey is refused with the setting's name."""
        key, pub = self.keypair()
        problems = self.problems(self.settings(
            {"keyPath": key, "publicPath": pub, "secretKey": "your-secret-key"}))
        self.assertEqual(len(problems), 1)
        self.assertIn("paseto.secretKey:", problems[0])
        self.assertNotIn("your-secret-key", problems[0])

    def test_no_verification_key(self) -> None:
        """The token filter without any key is a startup error naming the filter, not an
        open gateway."""
        parts = prepare(self.settings({}))
        self.addCleanup(parts.audit_log.close)
        with self.assertRaises(ConfigErrors) as caught:
            build_router(self.last, parts,
                         MemoryReactorClock())
        [problem] = [str(error) for error in caught.exception.errors]
        self.assertIn("runners[0].filters[0]: the token filter needs paseto.publicPath or "
                      "paseto.secretKey", problem)

    def test_every_problem_listed(self) -> None:
        """Missing key file, bad TLS files and plain HTTP on a public address, all at once."""
        problems = self.problems(self.settings(
            {"publicPath": str(self.directory / "missing.pub")},
            server={"address": ":8443", "certificatePath": str(self.directory / "nope.cer"),
                    "keyPath": str(self.directory / "nope.key")},
        ))
        joined = "\n".join(problems)
        self.assertIn("paseto.publicPath", joined)
        self.assertIn("missing.pub: cannot read", joined)
        self.assertIn("server.certificatePath", joined)
        self.assertIn("nope.cer", joined)
        self.assertEqual(len(problems), 2, joined)

    def test_plaintext_on_public_address_refused(self) -> None:
        """Listening on every interface without TLS needs server.allowPlaintext."""
        key, pub = self.keypair()
        problems = self.problems(self.settings({"publicPath": pub},
                                               server={"address": ":8443"}))
        self.assertIn("refusing to listen on :8443 without TLS", problems[0])
        parts = prepare(self.settings({"publicPath": pub},
                                      server={"address": ":8443", "allowPlaintext": True}))
        parts.audit_log.close()

    def test_mismatched_tls_key_names_the_key(self) -> None:
        """A certificate with someone else's key is refused, naming server.keyPath."""
        key, pub = self.keypair()
        ca = make_ca(str(self.directory / "ca"))
        first = ca.issue(str(self.directory / "one"), "one")
        second = ca.issue(str(self.directory / "two"), "two")
        problems = self.problems(self.settings(
            {"publicPath": pub},
            server={"address": "127.0.0.1:0", "certificatePath": str(first.fullchain_path),
                    "keyPath": str(second.key_path)}))
        self.assertIn("server.keyPath", problems[0])
        self.assertIn(str(second.key_path), problems[0])

    def test_unwritable_audit_path(self) -> None:
        """An audit file that cannot be opened is a startup error."""
        key, pub = self.keypair()
        problems = self.problems(self.settings({"publicPath": pub},
                                               audit=str(self.directory / "no" / "audit.log")))
        self.assertIn("audit.path", problems[0])

    def test_ledger_in_a_missing_directory(self) -> None:
        """With roles, a usage ledger the gateway could not create is a startup error at
        ``policy.ledgerPath``, not a failure once the service runs."""
        _, pub = self.keypair()
        ledger = self.directory / "no" / "usage.sqlite"
        problems = self.problems(self.settings({"publicPath": pub}, roles={"user": {}},
                                               policy={"ledgerPath": str(ledger)}))
        self.assertEqual(len(problems), 1)
        self.assertIn(f"policy.ledgerPath: {ledger}: the directory {ledger.parent} does not "
                      "exist", problems[0])

    def test_ledger_not_checked_without_roles(self) -> None:
        """Without roles there is no ledger to check."""
        _, pub = self.keypair()
        parts = prepare(self.settings({"publicPath": pub},
                                      policy={"ledgerPath": "/nonexistent/usage.sqlite"}))
        parts.audit_log.close()

    def test_development_keys_created_on_loopback_only(self) -> None:
        """Missing signing keys are created for a loopback gateway, not for a public one."""
        key, pub = self.directory / "k" / "paseto.key", self.directory / "k" / "paseto.pub"
        public = self.settings({"keyPath": str(key), "publicPath": str(pub)},
                               server={"address": ":8443", "allowPlaintext": True})
        self.assertFalse(ensure_development_keys(public))
        self.assertFalse(key.exists())
        local = self.settings({"keyPath": str(key), "publicPath": str(pub)})
        self.assertTrue(ensure_development_keys(local))
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        self.assertTrue(pub.read_text().startswith("ssh-ed25519 "))
        self.assertFalse(ensure_development_keys(local))
        parts = prepare(local)
        parts.audit_log.close()


class JobsDirectoryTests(SynchronousTestCase):
    """The jobs directory holds uploads and outputs: it must be private to the gateway."""

    def test_shared_jobs_directory_refused(self) -> None:
        """A jobs directory others can read or write is a startup error naming it."""
        from runnergw.websaas.keys import write_rsa_keypair

        directory = Path(self.mktemp())
        keys = directory / "keys"
        write_rsa_keypair(keys / "node_private.pem", keys / "node_public.pem", bits=2048)
        write_rsa_keypair(keys / "saas_private.pem", keys / "saas_public.pem", bits=2048)
        jobs = directory / "jobs"
        jobs.mkdir()
        os.chmod(jobs, 0o777)
        models = directory / "models"
        models.mkdir()
        path = directory / "settings.yaml"
        path.write_text(yaml.safe_dump({
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "pipelines": {"modelsPath": str(models), "jobsPath": str(jobs), "serverId": "x",
                          "saasPublicKeyPath": str(keys / "saas_public.pem"),
                          "nodePrivateKeyPath": str(keys / "node_private.pem")},
        }))
        settings = load_settings(str(path), {}, dotenv_path=None)
        with self.assertRaises(ConfigErrors) as caught:
            prepare(settings)
        self.assertIn(f"pipelines.jobsPath: {jobs}: must belong to this user and be private",
                      str(caught.exception))
        os.chmod(jobs, 0o700)
        prepare(settings).audit_log.close()
