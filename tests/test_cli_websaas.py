"""The ``runnergw`` subcommands of the WebSaaS terminal: ``keygen rsa`` and ``server-id``."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from runnergw.cli import main
from runnergw.tap import Options
from runnergw.websaas import keys
from runnergw.websaas.keys import load_rsa_private_key, load_rsa_public_key
from tests.helpers.saas import TestSaas

__all__ = ["CheckTests", "KeygenRsaTests", "ServerIdTests"]


def _run(*argv: str) -> tuple[int, str, str]:
    """Run the command; returns its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


class KeygenRsaTests(SynchronousTestCase):
    """``runnergw keygen rsa`` writes the node key pair."""

    def setUp(self) -> None:
        """Work in a fresh directory, with 2048-bit keys instead of slow 3072-bit ones."""
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        previous = os.getcwd()
        os.chdir(self.directory)
        self.addCleanup(os.chdir, previous)
        umask = os.umask(0o022)
        self.addCleanup(os.umask, umask)
        self.sizes: list[int] = []

        def generate(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
            self.sizes.append(key_size)
            return rsa.generate_private_key(public_exponent=public_exponent, key_size=2048)

        self.patch(keys, "generate_private_key", generate)

    def test_default_paths(self) -> None:
        """keys/node_private.pem (0600) and keys/node_public.pem (0644), a matching pair."""
        status, out, err = _run("keygen", "rsa")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(self.sizes, [3072])
        private_path = self.directory / "keys" / "node_private.pem"
        public_path = self.directory / "keys" / "node_public.pem"
        self.assertEqual(out, "wrote keys/node_private.pem (private, keep it secret) and "
                              "keys/node_public.pem\n")
        self.assertEqual(stat.S_IMODE(private_path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(public_path.stat().st_mode), 0o644)
        private = load_rsa_private_key(private_path.read_bytes())
        public = load_rsa_public_key(public_path.read_bytes())
        self.assertEqual(private.public_key().public_numbers(), public.public_numbers())

    def test_path_overrides(self) -> None:
        """--private and --public choose the files."""
        status, out, _ = _run("keygen", "rsa", "--private", "node/a.pem", "--public", "b.pem")
        self.assertEqual(status, 0)
        self.assertIn("node/a.pem", out)
        self.assertTrue((self.directory / "node" / "a.pem").exists())
        self.assertTrue((self.directory / "b.pem").exists())
        self.assertFalse((self.directory / "keys").exists())

    def test_config_accepted(self) -> None:
        """--config is accepted (the node key paths are not settings yet)."""
        status, _, _ = _run("keygen", "rsa", "--config", "settings/none.yaml")
        self.assertEqual(status, 0)
        self.assertTrue((self.directory / "keys" / "node_private.pem").exists())

    def test_no_overwrite_without_force(self) -> None:
        """An existing key is kept unless --force is given."""
        _run("keygen", "rsa")
        private_path = self.directory / "keys" / "node_private.pem"
        before = private_path.read_bytes()
        status, out, err = _run("keygen", "rsa")
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err, "runnergw: keys/node_private.pem exists; use --force to replace "
                              "it\n")
        self.assertEqual(private_path.read_bytes(), before)
        status, _, _ = _run("keygen", "rsa", "--force")
        self.assertEqual(status, 0)
        self.assertNotEqual(private_path.read_bytes(), before)
        self.assertEqual(stat.S_IMODE(private_path.stat().st_mode), 0o600)

    def test_unwritable(self) -> None:
        """A path that cannot be created is reported, not raised."""
        (self.directory / "file").write_text("")
        status, _, err = _run("keygen", "rsa", "--private", "file/node_private.pem")
        self.assertEqual(status, 1)
        self.assertTrue(err.startswith("runnergw: "))

    def test_paths_only_for_rsa(self) -> None:
        """--private and --public are refused for the PASETO kinds."""
        status, out, err = _run("keygen", "symmetric", "--private", "x.pem")
        self.assertEqual((status, out), (1, ""))
        self.assertIn("keygen rsa only", err)


class ServerIdTests(SynchronousTestCase):
    """``runnergw server-id`` prints a new id."""

    def test_prints_new_id(self) -> None:
        """``base64:`` and 24 random bytes, different every time."""
        status, out, err = _run("server-id")
        self.assertEqual((status, err), (0, ""))
        server_id = out.strip()
        self.assertTrue(server_id.startswith("base64:"))
        self.assertEqual(len(base64.b64decode(server_id[7:], validate=True)), 24)
        self.assertNotEqual(out, _run("server-id")[1])


class CheckTests(SynchronousTestCase):
    """``runnergw check`` on a WebSaaS node."""

    def test_descriptors_are_checked_beside_missing_keys(self) -> None:
        """Every problem at once: the missing key files and a broken model descriptor, the
        descriptor's located as file:line:column."""
        directory = Path(self.mktemp()).resolve()
        models = directory / "models-enabled"
        models.mkdir(parents=True)
        (models / "broken.json").write_text(
            '{\n  "actions": {"submit": {"endpoint": "/x/"}},\n'
            '  /* a comment */\n  "command": "true"\n}\n')
        config = directory / "settings.yaml"
        config.write_text(
            "server:\n  address: 127.0.0.1:8443\n"
            "pipelines:\n  enabled: true\n"
            f"  modelsPath: {models}\n"
            f"  jobsPath: {directory / 'jobs'}\n"
            f"  saasPublicKeyPath: {directory / 'saas_public.pem'}\n"
            f"  nodePrivateKeyPath: {directory / 'node_private.pem'}\n"
            "  serverId: 'base64:bm9kZQ=='\n")
        status, _, err = _run("check", "--config", str(config))
        self.assertEqual(status, 1)
        self.assertIn("pipelines.saasPublicKeyPath", err)
        self.assertIn("pipelines.nodePrivateKeyPath", err)
        self.assertIn(f"{models / 'broken.json'}:3:3: invalid JSON", err)

    def node(self) -> Path:
        """A node directory: a good key pair in ``keys/`` and ``models-enabled/broken.json``,
        which a comment makes invalid JSON."""
        directory = Path(self.mktemp()).resolve()
        (directory / "models-enabled").mkdir(parents=True)
        TestSaas(directory / "keys")
        (directory / "models-enabled" / "broken.json").write_text(
            '{\n  "actions": {"submit": {"endpoint": "/x/"}},\n'
            '  /* a comment */\n  "command": "true"\n}\n')
        return directory

    def settings(self, directory: Path, pipelines: str) -> Path:
        """``settings.yaml`` of a node: its ``pipelines`` section is ``modelsPath``,
        ``jobsPath`` and then the given lines."""
        config = directory / "settings.yaml"
        config.write_text(
            "server:\n  address: 127.0.0.1:8443\n"
            "pipelines:\n"
            f"  modelsPath: {directory / 'models-enabled'}\n"
            f"  jobsPath: {directory / 'jobs'}\n" + pipelines)
        return config

    def test_settings_problems_do_not_hide_keys_and_descriptors(self) -> None:
        """With serverId missing, the unreadable key and the broken descriptor are listed too,
        each located, in the order settings, keys, descriptors."""
        directory = self.node()
        config = self.settings(
            directory,
            f"  saasPublicKeyPath: {directory / 'missing.pem'}\n"
            f"  nodePrivateKeyPath: {directory / 'keys' / 'node_private.pem'}\n")
        status, out, err = _run("check", "--config", str(config))
        self.assertEqual((status, out), (1, ""))
        self.assertEqual(err.splitlines(), [
            "3 configuration problems:",
            f"  {config}:4: pipelines.serverId: required: the id agreed with the SaaS "
            "(runnergw server-id makes one; SERVER_ID in the environment works too)",
            f"  {config}:4: pipelines.saasPublicKeyPath: {directory / 'missing.pem'}: "
            "cannot read: No such file or directory",
            f"  {directory / 'models-enabled' / 'broken.json'}:3:3: invalid JSON: Expecting "
            "property name enclosed in double quotes (comments are not allowed in JSON)",
        ])
        self.assertEqual(_run("check", "--config", str(config)), (status, out, err))

    def test_a_bad_value_is_reported_once(self) -> None:
        """A key path that is not a string is named once: the default it falls back to is not
        reported as missing, and the other key and the descriptor are still checked."""
        directory = self.node()
        config = self.settings(
            directory,
            "  serverId: 'base64:bm9kZQ=='\n"
            "  saasPublicKeyPath: 3\n"
            f"  nodePrivateKeyPath: {directory / 'missing.pem'}\n")
        status, _, err = _run("check", "--config", str(config))
        self.assertEqual(status, 1)
        self.assertEqual(err.splitlines(), [
            "3 configuration problems:",
            f"  {config}:7: pipelines.saasPublicKeyPath: expected a string, got 3",
            f"  {config}:4: pipelines.nodePrivateKeyPath: {directory / 'missing.pem'}: "
            "cannot read: No such file or directory",
            f"  {directory / 'models-enabled' / 'broken.json'}:3:3: invalid JSON: Expecting "
            "property name enclosed in double quotes (comments are not allowed in JSON)",
        ])

    def test_the_gateway_still_refuses_to_start(self) -> None:
        """twistd stops on the settings problem: it never starts on partly read settings."""
        directory = self.node()
        config = self.settings(
            directory,
            f"  saasPublicKeyPath: {directory / 'keys' / 'saas_public.pem'}\n"
            f"  nodePrivateKeyPath: {directory / 'keys' / 'node_private.pem'}\n")
        with self.assertRaises(usage.UsageError) as caught:
            Options().parseOptions(["--config", str(config)])
        self.assertIn(f"{config}:4: pipelines.serverId: required", str(caught.exception))
