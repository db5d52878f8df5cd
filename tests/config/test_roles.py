"""The ``roles`` section: each role's models, endpoint groups and limits, checked at load."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.roles import DEFAULT_API_GROUPS, RoleSettings, read_roles
from tests.helpers.settings_text import read_text

__all__ = ["RoleSettingsTests"]


def _read(testcase: SynchronousTestCase, text: str) -> tuple[dict[str, RoleSettings],
                                                              list[str]]:
    return read_text(testcase, text, read_roles)


class RoleSettingsTests(SynchronousTestCase):
    """Every key read, every mistake located."""

    def test_every_key(self) -> None:
        """Each key reads into its rule."""
        roles, errors = _read(self, """\
roles:
  user:
    models: ["llama3.2:*", nomic-embed-text]
    api: [inference]
    requestsPerMinute: 30
    burst: 5
    concurrency: 2
    concurrencyWait: 2s
    maxTokens: 512
    tokensPerDay: 100000
    aliases: {fast: "llama3.2:1b"}
    keepAlive: 5m
""")
        self.assertEqual(errors, [])
        role = roles["user"]
        self.assertEqual(
            (role.models, role.api, role.requests_per_minute, role.burst_size,
             role.concurrency, role.concurrency_wait, role.max_tokens, role.tokens_per_day,
             dict(role.aliases), role.keep_alive),
            (("llama3.2:*", "nomic-embed-text"), ("inference",), 30, 5, 2, 2.0, 512,
             100000, {"fast": "llama3.2:1b"}, "5m"))

    def test_defaults(self) -> None:
        """A role named alone may use every model for inference and the catalogue, with no
        limit; never model management."""
        roles, errors = _read(self, "roles:\n  user:\n")
        self.assertEqual(errors, [])
        role = roles["user"]
        self.assertEqual((role.models, role.api, role.requests_per_minute, role.concurrency,
                          role.max_tokens, role.tokens_per_day, role.keep_alive),
                         (("*",), DEFAULT_API_GROUPS, None, None, None, None, None))
        self.assertNotIn("management", role.api)

    def test_burst_defaults_to_the_rate(self) -> None:
        """Without ``burst``, a minute's worth of requests may come at once."""
        roles, _ = _read(self, "roles:\n  user:\n    requestsPerMinute: 12\n")
        self.assertEqual(roles["user"].burst_size, 12)

    def test_keep_alive_forms(self) -> None:
        """``keepAlive`` takes a duration, a negative one (forever) or seconds."""
        roles, errors = _read(self, "roles:\n  a: {keepAlive: 1h30m}\n  b: {keepAlive: -1}\n"
                                    "  c: {keepAlive: 300}\n  d: {keepAlive: \"-1m\"}\n")
        self.assertEqual(errors, [])
        self.assertEqual([roles[n].keep_alive for n in "abcd"], ["1h30m", -1, 300, "-1m"])

    def test_mistakes_located(self) -> None:
        """Every mistake is reported at once, with its line and path."""
        _, errors = _read(self, """\
roles:
  user:
    api: [inference, admin]
    requestsPerMinute: 0
    burst: 3
    concurrencyWait: 2s
    keepAlive: soon
    modles: ["*"]
  guest: [a]
""")
        self.assertEqual(errors, [
            'settings.yaml:3: roles.user.api: unknown API group "admin" (known: inference, '
            "catalogue, management)",
            "settings.yaml:4: roles.user.requestsPerMinute: expected at least 1, got 0",
            'settings.yaml:7: roles.user.keepAlive: "soon" is not a duration such as 5m, 1h '
            "or -1",
            "settings.yaml:6: roles.user.concurrencyWait: a wait for a slot needs concurrency",
            "settings.yaml:8: roles.user.modles: unknown setting (check the spelling; see the "
            "settings reference)",
            "settings.yaml:9: roles.guest: expected a mapping of the role's rules, got a list",
        ])

    def test_burst_needs_a_rate(self) -> None:
        """A burst alone limits nothing: refused."""
        _, errors = _read(self, "roles:\n  user:\n    burst: 3\n")
        self.assertEqual(errors, ["settings.yaml:3: roles.user.burst: a burst needs "
                                  "requestsPerMinute"])

    def test_long_wait_refused(self) -> None:
        """Waiting more than a minute for a slot is a queue, not a limit."""
        _, errors = _read(self, "roles:\n  user:\n    concurrency: 1\n"
                                "    concurrencyWait: 2m\n")
        self.assertEqual(errors, ["settings.yaml:4: roles.user.concurrencyWait: at most 60s: "
                                  "a request waiting longer should be queued by the client"])

    def test_empty_section_refused(self) -> None:
        """``roles: {}`` is a mistake, not "no roles"."""
        _, errors = _read(self, "roles: {}\n")
        self.assertEqual(errors, ["settings.yaml:1: roles: name at least one role (or remove "
                                  "the section)"])

    def test_empty_pattern_refused(self) -> None:
        """An empty model pattern is refused."""
        _, errors = _read(self, "roles:\n  user:\n    models: ['']\n")
        self.assertEqual(errors, ["settings.yaml:3: roles.user.models: a model pattern cannot "
                                  "be empty"])

    def test_keep_alive_seconds_in_a_string(self) -> None:
        """Whole seconds written as a string are sent as a number: Ollama reads a string as
        a Go duration, which needs a unit, and would refuse every request of the role."""
        roles, errors = _read(self, "roles:\n  a: {keepAlive: \"300\"}\n"
                                    "  b: {keepAlive: \" -1 \"}\n  c: {keepAlive: \"0\"}\n")
        self.assertEqual(errors, [])
        self.assertEqual([roles[n].keep_alive for n in "abc"], [300, -1, 0])

    def test_keep_alive_ollama_cannot_read(self) -> None:
        """A value Go's duration parser refuses is refused at load, not on every request:
        two signs, digits that are not ASCII, longer than Go's int64 nanoseconds."""
        roles, errors = _read(self, """\
roles:
  a: {keepAlive: "--5"}
  b: {keepAlive: "\u0665m"}
  c: {keepAlive: 3000000h}
  d: {keepAlive: 9300000000}
  e: {keepAlive: 2562047h}
""")
        self.assertEqual(errors, [
            'settings.yaml:2: roles.a.keepAlive: "--5" is not a duration such as 5m, 1h or -1',
            'settings.yaml:3: roles.b.keepAlive: "\u0665m" is not a duration such as 5m, 1h '
            "or -1",
            'settings.yaml:4: roles.c.keepAlive: "3000000h" is longer than Ollama can read '
            "(use -1: forever)",
            "settings.yaml:5: roles.d.keepAlive: 9300000000 seconds is longer than Ollama can "
            "read (use -1: forever)",
        ])
        self.assertEqual(roles["e"].keep_alive, "2562047h")

    def test_bad_model_pattern_located(self) -> None:
        """A pattern that can match no model name is refused at ``models``, each one."""
        _, errors = _read(self, "roles:\n  user:\n    models: [\"llama 3.2\", \"llama3.2:*\", "
                                "\"mod\u00e8le\", \"library/\"]\n")
        self.assertEqual(errors, [
            'settings.yaml:3: roles.user.models: "llama 3.2": a model pattern is printable '
            "ASCII without spaces, and not empty",
            'settings.yaml:3: roles.user.models: "mod\u00e8le": a model pattern is printable '
            "ASCII without spaces, and not empty",
            'settings.yaml:3: roles.user.models: "library/": a model pattern names no model',
        ])

    def test_alias_names_checked(self) -> None:
        """An alias or a target that is no model name Ollama reads (a digest, spaces) is
        refused at ``aliases``."""
        _, errors = _read(self, f"""\
roles:
  user:
    aliases:
      "fast one": "llama3.2:1b"
      "sha256:{'ab' * 32}": "llama3.2:1b"
      fast: "llama3.2@sha256:{'ab' * 32}"
      slow: "llama3.2:"
""")
        self.assertEqual(errors, [
            'settings.yaml:3: roles.user.aliases: the alias "fast one" is not a model name: '
            "a model name is printable ASCII without spaces",
            f'settings.yaml:3: roles.user.aliases: the alias "sha256:{"ab" * 32}" is not a '
            "model name: a model given by digest is not read by the gateway",
            f'settings.yaml:3: roles.user.aliases: "fast" names "llama3.2@sha256:{"ab" * 32}",'
            " not a model name: a model given by digest is not read by the gateway",
            'settings.yaml:3: roles.user.aliases: "slow" names "llama3.2:", not a model name: '
            "the model name is not valid",
        ])

    def test_alias_target_allowed(self) -> None:
        """An alias must name a model the role's own ``models`` allow: it would be refused on
        every request."""
        roles, errors = _read(self, """\
roles:
  user:
    models: ["llama3.2:*", "hf.co/org/*"]
    aliases: {fast: "llama3.2:1b", big: "llama3.1:405b", hf: "hf.co/org/m:q4",
              local: "Llama3.2:1B"}
""")
        self.assertEqual(errors, [
            'settings.yaml:4: roles.user.aliases: "big" names "llama3.1:405b", which the '
            "role's models do not allow"])
        self.assertEqual(roles["user"].aliases["fast"], "llama3.2:1b")

    def test_alias_given_twice(self) -> None:
        """Two aliases Ollama would read as one name (case, ``:latest``) are refused."""
        _, errors = _read(self, "roles:\n  user:\n    aliases: {fast: \"llama3.2:1b\", "
                                "\"FAST:latest\": \"llama3.2:3b\"}\n")
        self.assertEqual(errors, ['settings.yaml:3: roles.user.aliases: "FAST:latest" is the '
                                  'alias "fast" again'])

    def test_aliases_not_checked_against_bad_patterns(self) -> None:
        """With a wrong pattern, only the pattern is reported, not every alias."""
        _, errors = _read(self, "roles:\n  user:\n    models: [\"llama 3\"]\n"
                                "    aliases: {fast: \"llama3.2:1b\"}\n")
        self.assertEqual(errors, ['settings.yaml:3: roles.user.models: "llama 3": a model '
                                  "pattern is printable ASCII without spaces, and not empty"])

    def test_default_models_allow_every_alias(self) -> None:
        """A role without ``models`` (every model) may alias any model name."""
        roles, errors = _read(self, "roles:\n  user:\n    aliases: {fast: \"hf.co/o/m:q4\"}\n")
        self.assertEqual(errors, [])
        self.assertEqual(dict(roles["user"].aliases), {"fast": "hf.co/o/m:q4"})
