"""The ``role`` filter on its own: every caller gets a role, and a route may allow only some."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.filters.role import DEFAULT_ROLE, RoleFilter
from runnergw.testing import Answer, FilterRun, filter_from_settings, make_exchange, run_filters

__all__ = ["RoleFilterTests"]


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
