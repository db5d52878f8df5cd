"""The ``policy`` section: default role, quota day, ledger and body bound."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.policy import PolicySettings
from tests.helpers.settings_text import read_text

__all__ = ["PolicySettingsTests"]


def _read(testcase: SynchronousTestCase, text: str) -> tuple[PolicySettings, list[str]]:
    return read_text(testcase, text, lambda root: PolicySettings.from_yaml(
        root.section("policy")))


class PolicySettingsTests(SynchronousTestCase):
    """Defaults, every key, and located mistakes."""

    def test_defaults(self) -> None:
        """Without the section: role ``user``, days in UTC, ``usage.sqlite``, 16 MiB."""
        policy, errors = _read(self, "{}\n")
        self.assertEqual(errors, [])
        self.assertEqual((policy.default_role, policy.time_zone, policy.ledger_path,
                          policy.max_body_size), ("user", "UTC", "usage.sqlite", 16 << 20))

    def test_every_key(self) -> None:
        """Each key reads into its setting."""
        policy, errors = _read(self, "policy:\n  defaultRole: free\n  timeZone: Europe/Paris\n"
                                     "  ledgerPath: /var/lib/runnergw/usage.sqlite\n"
                                     "  maxBodySize: 4MiB\n")
        self.assertEqual(errors, [])
        self.assertEqual((policy.default_role, str(policy.zone), policy.ledger_path,
                          policy.max_body_size),
                         ("free", "Europe/Paris", "/var/lib/runnergw/usage.sqlite", 4 << 20))

    def test_unknown_zone(self) -> None:
        """A time zone that does not exist is refused at load, not at the first request."""
        _, errors = _read(self, "policy:\n  timeZone: Mars/Olympus\n")
        self.assertEqual(errors, ['settings.yaml:2: policy.timeZone: unknown time zone '
                                  '"Mars/Olympus" (an IANA name such as UTC or Europe/Paris)'])

    def test_no_ledger_refused(self) -> None:
        """Quotas need a ledger file."""
        _, errors = _read(self, "policy:\n  ledgerPath: ''\n")
        self.assertEqual(errors, ["settings.yaml:2: policy.ledgerPath: the usage ledger needs "
                                  "a file (quotas outlive restarts)"])

    def test_default_role_must_be_a_role(self) -> None:
        """With a roles section, tokens without a role claim must land on a defined role."""
        path = Path(self.mktemp())
        path.write_text("runners:\n  - host: 127.0.0.1:11434\npolicy:\n  defaultRole: guest\n"
                        "roles:\n  user: {}\n  admin: {api: [management]}\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(str(path))
        self.assertEqual([str(e).replace(str(path), "settings.yaml")
                          for e in caught.exception.errors],
                         ['settings.yaml:4: policy.defaultRole: "guest" is not a role of the '
                          "roles section (user, admin): tokens without a role claim would have "
                          "no rules"])
