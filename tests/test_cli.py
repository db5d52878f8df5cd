"""The ``runnergw`` command: keygen, token, check."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml
from twisted.trial.unittest import SynchronousTestCase

from runnergw.cli import main
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.verifier import TokenVerifier


class CommandTests(SynchronousTestCase):
    """What an operator sees when running ``runnergw``."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.directory.mkdir()
        self.config = self.directory / "settings.yaml"
        self.secret = "0123456789abcdef" * 4
        self.config.write_text(yaml.safe_dump({
            "paseto": {"keyPath": str(self.directory / "paseto.key"),
                       "publicPath": str(self.directory / "paseto.pub"),
                       "secretKey": self.secret, "expiration": "2h"},
            "runners": [{"host": "127.0.0.1:11434", "path": "/"}],
            "server": {"address": "127.0.0.1:8443"},
            "audit": {"path": "-"},
        }))

    def run_command(self, *argv: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(argv))
        return status, out.getvalue(), err.getvalue()

    def test_keygen_symmetric_prints_64_hex(self) -> None:
        """keygen symmetric prints a fresh 64-hex-character key."""
        status, out, _ = self.run_command("keygen", "symmetric")
        self.assertEqual(status, 0)
        self.assertRegex(out.strip(), r"^[0-9a-f]{64}$")
        self.assertNotEqual(out, self.run_command("keygen", "symmetric")[1])

    def test_keygen_asymmetric_writes_runner_gateway_formats(self) -> None:
        """keygen asymmetric writes paseto.key (Go PEM) and paseto.pub (OpenSSH), no overwrite."""
        status, _, _ = self.run_command("keygen", "asymmetric", "--config", str(self.config))
        self.assertEqual(status, 0)
        key_text = (self.directory / "paseto.key").read_text()
        self.assertTrue(key_text.startswith("-----BEGIN ED25519 PRIVATE KEY-----"))
        self.assertTrue((self.directory / "paseto.pub").read_text().startswith("ssh-ed25519 AAAA"))
        self.assertEqual(os.stat(self.directory / "paseto.key").st_mode & 0o777, 0o600)
        status, _, err = self.run_command("keygen", "asymmetric", "--config", str(self.config))
        self.assertEqual(status, 1)
        self.assertIn("exists; use --force", err)
        self.assertEqual((self.directory / "paseto.key").read_text(), key_text)

    def test_token_public_verifies(self) -> None:
        """token public mints a v4.public token with sub, role and the configured lifetime."""
        self.run_command("keygen", "asymmetric", "--config", str(self.config))
        status, out, _ = self.run_command("token", "public", "--config", str(self.config),
                                          "--sub", "alice", "--role", "admin")
        self.assertEqual(status, 0)
        token = out.strip()
        self.assertTrue(token.startswith("v4.public."))
        keys = load_public_keys((self.directory / "paseto.pub").read_bytes(), 4)
        verified = TokenVerifier(versions=("v4",), local_keys={}, public_keys={"v4": keys},
                                 leeway=0, issuer=None, audience=None).verify(token)
        self.assertEqual((verified.subject, verified.role), ("alice", "admin"))
        self.assertLess(abs(verified.expires_at - time.time() - 7200), 60)

    def test_token_local_with_expiry(self) -> None:
        """token local --expires 1h mints a v4.local token with the symmetric key."""
        status, out, _ = self.run_command("token", "local", "--config", str(self.config),
                                          "--expires", "1h")
        self.assertEqual(status, 0)
        key = parse_local_key(self.secret, 4)
        verified = TokenVerifier(versions=("v4",), local_keys={"v4": [key]}, public_keys={},
                                 leeway=0, issuer=None, audience=None).verify(out.strip())
        self.assertLess(abs(verified.expires_at - time.time() - 3600), 60)

    def test_check_lists_every_problem(self) -> None:
        """check exits 1 and lists every problem (here: both key files missing, a typo)."""
        text = self.config.read_text().replace("runners:", "runers:\n- 1\nrunners:")
        self.config.write_text(text)
        status, _, err = self.run_command("check", "--config", str(self.config))
        self.assertEqual(status, 1)
        self.assertIn("runers: unknown setting", err)
        self.config.write_text(text.replace("runers:\n- 1\n", ""))
        status, _, err = self.run_command("check", "--config", str(self.config))
        self.assertEqual(status, 1)
        self.assertIn("paseto.publicPath", err)

    def test_check_lists_settings_and_key_problems_together(self) -> None:
        """A typo in the settings does not hide the missing public key: both are listed,
        settings first, each located."""
        text = self.config.read_text().replace("runners:", "runers: 1\nrunners:")
        self.config.write_text(text)
        lines = text.splitlines()
        typo = lines.index("runers: 1") + 1
        public = next(n for n, line in enumerate(lines, 1) if line.startswith("  publicPath:"))
        status, _, err = self.run_command("check", "--config", str(self.config))
        self.assertEqual(status, 1)
        self.assertEqual(err.splitlines(), [
            "2 configuration problems:",
            f"  {self.config}:{typo}: runers: unknown setting (check the spelling; see the "
            "settings reference)",
            f"  {self.config}:{public}: paseto.publicPath: {self.directory / 'paseto.pub'}: "
            "cannot read: No such file or directory",
        ])

    def test_check_passes(self) -> None:
        """check exits 0 on good settings."""
        self.run_command("keygen", "asymmetric", "--config", str(self.config))
        status, out, err = self.run_command("check", "--config", str(self.config))
        self.assertEqual((status, err), (0, ""))
        self.assertIn("OK", out)

    def test_console_entry_point(self) -> None:
        """The installed command runs as a module too."""
        result = subprocess.run(
            [sys.executable, "-m", "runnergw.cli", "keygen", "symmetric"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertTrue(re.fullmatch(r"[0-9a-f]{64}\n", result.stdout))


class SaasTokenCommandTests(SynchronousTestCase):
    """``runnergw saas-token`` signs test requests with the development SaaS key."""

    def test_tokens_verify_with_the_saas_public_key(self) -> None:
        """The printed server and user tokens pass the gateway's WebSaaS check."""
        from runnergw.websaas.keys import load_rsa_public_key, write_rsa_keypair
        from runnergw.websaas.tokens import SaasTokenVerifier

        directory = Path(self.mktemp())
        keys = directory / "keys"
        write_rsa_keypair(keys / "saas_dev_private.pem", keys / "saas_public.pem", bits=2048)
        config = directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "runners": [{"host": "127.0.0.1:11434", "path": "/"}],
            "pipelines": {"saasPublicKeyPath": str(keys / "saas_public.pem"),
                          "serverId": "base64:x"},
        }))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["saas-token", "--config", str(config), "--role", "basic"])
        self.assertEqual(status, 0)
        values = dict(line.split("=", 1) for line in out.getvalue().split())
        verifier = SaasTokenVerifier(load_rsa_public_key((keys / "saas_public.pem").read_bytes()),
                                     issuer=None, audience=None)
        caller = verifier.verify("Bearer " + values["SERVER_TOKEN"], values["USER_TOKEN"])
        self.assertEqual((caller.subject, caller.role), ("developer", "basic"))
