"""The ``paseto`` section: which tokens the gateway accepts, and the keys that check them."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import Origin
from runnergw.config.paseto import PasetoSettings
from tests.helpers.settings_text import read_text

__all__ = ["PasetoSettingsTests"]


class PasetoSettingsTests(SynchronousTestCase):
    """Each key of the section, and the rules it enforces."""

    def read(self, text: str) -> tuple[PasetoSettings, list[str]]:
        return read_text(self, text, lambda root: PasetoSettings.from_yaml(root.section("paseto")))

    def test_defaults(self) -> None:
        """Without the section: v4 only, a year's lifetime for minted tokens, 30s leeway, no
        key (the token filter then refuses to start)."""
        settings, errors = self.read("")
        self.assertEqual(errors, [])
        self.assertEqual(settings, PasetoSettings())
        self.assertEqual((settings.version, settings.versions, settings.expiration,
                          settings.leeway, settings.public_paths, settings.secret_key),
                         ("v4", ("v4",), 8766 * 3600.0, 30.0, (), ""))

    def test_runner_gateway_keys(self) -> None:
        """runner-gateway's keys read into typed settings."""
        settings, errors = self.read(
            "paseto:\n  version: v2\n  expiration: 24h\n  keyPath: ./paseto.key\n"
            "  publicPath: ./paseto.pub\n  secretKey: " + "ab" * 32 + "\n  issuer: me\n"
            "  audience: them\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.version, settings.versions, settings.expiration),
                         ("v2", ("v2",), 86400.0))
        self.assertEqual((settings.key_path, settings.public_paths, settings.secret_key),
                         ("./paseto.key", ("./paseto.pub",), "ab" * 32))
        self.assertEqual((settings.issuer, settings.audience), ("me", "them"))

    def test_several_public_keys(self) -> None:
        """``publicPath`` may list several files (key rotation); empty entries are
        dropped."""
        settings, errors = self.read("paseto:\n  publicPath: [old.pub, '', new.pub]\n")
        self.assertEqual((settings.public_paths, errors), (("old.pub", "new.pub"), []))

    def test_accepted_versions(self) -> None:
        """``versions`` accepts more than the minted one; an unknown one is named, and the
        others stay accepted."""
        settings, errors = self.read("paseto:\n  versions: [v4, v2]\n")
        self.assertEqual((settings.versions, errors), (("v4", "v2"), []))
        settings, errors = self.read("paseto:\n  version: v2\n  versions: [v2, v3]\n")
        self.assertEqual(settings.versions, ("v2",))
        self.assertEqual(errors, ['settings.yaml:3: paseto.versions: unsupported version '
                                  '"v3" (v4 or v2)'])

    def test_unsupported_version(self) -> None:
        """v1 and v3 are not accepted, located at their line."""
        settings, errors = self.read("paseto:\n  version: v3\n")
        self.assertEqual(settings.version, "v4")
        self.assertEqual(errors, ['settings.yaml:2: paseto.version: expected one of v4, v2; '
                                  'got "v3"'])

    def test_long_leeway_refused(self) -> None:
        """A leeway over five minutes would accept long-expired tokens."""
        self.assertEqual(self.read("paseto:\n  leeway: 5m\n")[1], [])
        _, errors = self.read("paseto:\n  leeway: 301s\n")
        self.assertEqual(errors, ["settings.yaml:2: paseto.leeway: a leeway over 5m would "
                                  "accept long-expired tokens"])

    def test_limits(self) -> None:
        """Token size, lifetime cap and cache size, each within its bounds."""
        settings, errors = self.read("paseto:\n  maxTokenBytes: 1024\n  maxLifetime: 1h\n"
                                     "  cacheSize: 0\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.max_token_bytes, settings.max_lifetime, settings.cache_size),
                         (1024, 3600.0, 0))
        _, errors = self.read("paseto:\n  maxTokenBytes: 100\n  cacheSize: -1\n")
        self.assertEqual(errors, [
            "settings.yaml:2: paseto.maxTokenBytes: expected at least 256 and at most 65536, "
            "got 100",
            "settings.yaml:3: paseto.cacheSize: expected at least 0, got -1"])

    def test_wrong_types_located(self) -> None:
        """A key path that is a number, a lifetime that is no duration: each at its line."""
        _, errors = self.read("paseto:\n  keyPath: 12\n  expiration: a year\n")
        self.assertEqual(errors, [
            "settings.yaml:3: paseto.expiration: expected a duration such as 5s, 10m or 8766h "
            "(units ns us ms s m h)",
            "settings.yaml:2: paseto.keyPath: expected a string, got 12"])

    def test_unknown_key(self) -> None:
        """A misspelt key (``publicKey`` for ``publicPath``) is an error."""
        _, errors = self.read("paseto:\n  publicKey: x.pub\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("settings.yaml:2: paseto.publicKey: unknown setting", errors[0])

    def test_key_origins_kept(self) -> None:
        """Where the keys were set is kept, so a key file that cannot be read later is
        reported at its line; the secret key never shows in the settings' repr."""
        settings, _ = self.read("paseto:\n  keyPath: k\n  publicPath: p\n  secretKey: s3cr3t\n")
        self.assertEqual([settings.origins[key].line for key in
                          ("keyPath", "publicPath", "secretKey")], [2, 3, 4])
        self.assertIsInstance(settings.origins["keyPath"], Origin)
        self.assertNotIn("s3cr3t", repr(settings))
        self.assertEqual(settings.path_of("keyPath"), "paseto.keyPath")
