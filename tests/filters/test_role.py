"""The ``role`` filter on its own: every caller gets a role, and a route may allow only some."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Identity
from runnergw.config.roles import RoleSettings
from runnergw.filters.role import DEFAULT_ROLE, RoleFilter, role_rules, subject_key
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters

__all__ = ["RoleFilterTests", "RolesSectionTests"]


@attrs.frozen
class _Route:
    """What a pipeline route tells its filters: the model's allowed roles."""

    allowed_roles: tuple[str, ...] | None


class RoleFilterTests(SynchronousTestCase):
    """Callers with and without roles, on routes with and without a list."""

    def serve(self, role_filter: RoleFilter, **identity: Any) -> FilterRun:
        exchange = make_exchange("POST", "/whisper/", **identity)
        return self.successResultOf(run_filters([role_filter], exchange, Answer(),
                                                error_shape="detail"))

    def test_default_role(self) -> None:
        """A caller whose token names no role is a "user"."""
        run = self.serve(RoleFilter(), subject="alice")
        self.assertEqual(DEFAULT_ROLE, "user")
        assert run.exchange.identity is not None
        self.assertEqual((run.exchange.identity.subject, run.exchange.identity.role),
                         ("alice", "user"))
        self.assertEqual(run.status, 200)

    def test_role_kept(self) -> None:
        """A role from the token is kept."""
        run = self.serve(RoleFilter(), subject="bob", role="pro")
        assert run.exchange.identity is not None
        self.assertEqual(run.exchange.identity.role, "pro")

    def test_allowed_role(self) -> None:
        """A role the route lists reaches the runner."""
        run = self.serve(RoleFilter(("pro", "team")), subject="bob", role="team")
        self.assertTrue(run.terminal.called)

    def test_other_role_refused(self) -> None:
        """A role the route does not list is refused with 403; the runner is not called."""
        run = self.serve(RoleFilter(("pro",)), subject="alice", role="free")
        self.assertEqual((run.status, run.json()),
                         (403, {"detail": "Your plan does not include this model"}))
        self.assertFalse(run.terminal.called)
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("denied", "role free not allowed"))

    def test_default_role_checked_too(self) -> None:
        """A caller without a role is checked as a "user"."""
        self.assertEqual(self.serve(RoleFilter(("pro",)), subject="alice").status, 403)
        self.assertEqual(self.serve(RoleFilter(("user",)), subject="alice").status, 200)

    def test_unauthenticated(self) -> None:
        """An exchange no token filter authenticated is refused with 401."""
        run = self.serve(RoleFilter())
        self.assertEqual((run.status, run.json()), (401, {"detail": "authentication required"}))
        self.assertFalse(run.terminal.called)

    def test_allowed_roles_from_the_route(self) -> None:
        """Built from settings, the filter takes the route's allowed roles, or allows all."""
        self.assertEqual(filter_from_settings("role", route=_Route(("pro",))).allowed_roles,
                         frozenset({"pro"}))
        self.assertIsNone(filter_from_settings("role", route=_Route(None)).allowed_roles)
        self.assertIsNone(filter_from_settings("role").allowed_roles)

    def test_after_a_token_filter(self) -> None:
        """The filter says it needs token or websaas before it."""
        self.assertEqual(RoleFilter.after_any, ("token", "websaas"))


_ROLES = {"free": RoleSettings("free", requests_per_minute=10),
          "pro": RoleSettings("pro", max_tokens=4096)}


class RolesSectionTests(SynchronousTestCase):
    """On Ollama routes with a ``roles`` section: claims, the default role, unknown roles."""

    def serve(self, claims: dict[str, Any], subject: str | None = "alice",
              token_id: str = "") -> FilterRun:
        exchange = make_exchange("POST", "/api/chat")
        exchange.identity = Identity(subject=subject, role=claims.get("role"), claims=claims,
                                     token_kind="v4.public", token_id=token_id)
        return self.successResultOf(run_filters([RoleFilter(None, _ROLES, "free")], exchange,
                                                Answer()))

    def test_role_claim(self) -> None:
        """The ``role`` claim names the role; its rules are handed to later filters."""
        run = self.serve({"role": "pro"})
        self.assertEqual(role_rules(run.exchange), _ROLES["pro"])
        self.assertEqual(run.status, 200)

    def test_first_known_of_a_roles_list(self) -> None:
        """A ``roles`` list gives the first role the settings know."""
        run = self.serve({"roles": ["staff", "pro", "free"]})
        assert run.exchange.identity is not None
        self.assertEqual(run.exchange.identity.role, "pro")
        self.assertEqual(role_rules(run.exchange), _ROLES["pro"])

    def test_no_claim_gets_the_default_role(self) -> None:
        """runner-gateway's tokens carry no role: they get ``policy.defaultRole``."""
        run = self.serve({})
        assert run.exchange.identity is not None
        self.assertEqual(run.exchange.identity.role, "free")
        self.assertEqual(role_rules(run.exchange), _ROLES["free"])

    def test_unknown_role_refused(self) -> None:
        """A role the settings do not define is refused, never taken as "no limits"."""
        run = self.serve({"role": "enterprise"})
        self.assertEqual((run.status, run.json()),
                         (403, {"error": 'role "enterprise" is not known to this gateway'}))
        self.assertFalse(run.terminal.called)

    def test_unknown_roles_list_refused(self) -> None:
        """A ``roles`` list with no known entry is refused, naming its first entry."""
        run = self.serve({"roles": ["staff", "intern"]})
        self.assertEqual((run.status, run.json()),
                         (403, {"error": 'role "staff" is not known to this gateway'}))

    def test_subject_key(self) -> None:
        """Limits count per ``sub``, or per token for a token without one."""
        self.assertEqual(subject_key(self.serve({}).exchange), "alice")
        anonymous = self.serve({}, subject=None, token_id="token:0123456789abcdef")
        self.assertEqual(subject_key(anonymous.exchange), "token:0123456789abcdef")

    def test_roles_only_on_runner_routes(self) -> None:
        """Command routes keep their descriptors' ``allowed_roles``: the roles section is for
        Ollama routes."""
        from runnergw.config.runners import RunnerSettings
        from runnergw.config.settings import Settings
        settings = Settings(files=("<test>",), roles=_ROLES)
        runner = filter_from_settings("role", settings=settings,
                                      route=RunnerSettings("r", "/", "127.0.0.1", 1))
        self.assertEqual(set(runner.roles), {"free", "pro"})
        command = filter_from_settings("role", settings=settings, route=_Route(("pro",)))
        self.assertEqual((command.roles, command.allowed_roles), ({}, frozenset({"pro"})))
