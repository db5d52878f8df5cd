"""The ``pipelines`` routes: the SaaS token check, the role check and the plan's media limits
cannot be configured away, and saying so names the settings line to fix."""

from __future__ import annotations

import json
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Router
from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.routes import build_router
from runnergw.startup import prepare
from tests.helpers.saas import TestSaas
from tests.terminals.test_commands import SERVER_ID, example

__all__ = ["PipelineChainTests"]


class PipelineChainTests(SynchronousTestCase):
    """Building the routes of a node serving models with a given ``pipelines.filters``."""

    def build(self, filters: str, models: tuple[str, ...] = ("audio-gain", "text-stats"),
              ) -> Router:
        """Write settings with ``filters`` (a YAML flow list, or "" for the default) and
        descriptors, and build the routes."""
        base = Path(self.mktemp())
        models_path = base / "models"
        models_path.mkdir(parents=True)
        for name in models:
            (models_path / f"{name}.json").write_text(json.dumps(example(name)))
        saas = TestSaas(base / "keys")
        self.settings_path = base / "settings.yaml"
        self.settings_path.write_text(f"""\
server:
  address: "127.0.0.1:0"
audit:
  path: {base / "audit.log"}
pipelines:
  serverId: "{SERVER_ID}"
  modelsPath: {models_path}
  jobsPath: {base / "jobs"}
  saasPublicKeyPath: {saas.public_path}
  nodePrivateKeyPath: {saas.node_private_path}
""" + (f"  filters: {filters}\n" if filters else ""))
        settings = load_settings(str(self.settings_path), {}, dotenv_path=None)
        parts = prepare(settings)
        self.addCleanup(parts.audit_log.close)
        return build_router(settings, parts, Clock())

    def refused(self, filters: str, models: tuple[str, ...] = ("audio-gain", "text-stats"),
                ) -> list[str]:
        """The problems building the routes raises."""
        with self.assertRaises(ConfigErrors) as caught:
            self.build(filters, models)
        return [str(error) for error in caught.exception.errors]

    def test_default_chain(self) -> None:
        """The default chain serves every model, with websaas, role and mediaLimits."""
        router = self.build("")
        self.assertEqual(sorted(route.name for route in router.routes),
                         ["audio-gain", "text-stats"])
        for route in router.routes:
            self.assertEqual([f.name for f in route.filters],
                             ["websaas", "role", "mediaLimits", "audit"])

    def test_without_websaas(self) -> None:
        """Without websaas anyone could run the models: refused at the filters line."""
        errors = self.refused("[audit]", ("text-stats",))
        self.assertEqual(errors, [f"{self.settings_path}:11: pipelines.filters: must include "
                                  "websaas: without it anyone can run the models"])

    def test_role_before_websaas(self) -> None:
        """role before websaas is refused: it enforces allowed_roles on a known caller."""
        errors = self.refused("[role, websaas, audit]", ("text-stats",))
        self.assertIn(f"{self.settings_path}:11: pipelines.filters: must include role after "
                      "websaas: it enforces allowed_roles", errors)

    def test_without_role(self) -> None:
        """Without role, allowed_roles would not be enforced: refused."""
        self.assertEqual(self.refused("[websaas, audit]", ("text-stats",)), [
            f"{self.settings_path}:11: pipelines.filters: must include role after websaas: "
            "it enforces allowed_roles"])

    def test_without_media_limits(self) -> None:
        """A model with role_limits needs mediaLimits: refused, naming the model."""
        self.assertEqual(self.refused("[websaas, role, audit]"), [
            f"{self.settings_path}:11: pipelines.filters: must include mediaLimits after "
            "role: audio-gain set role_limits, which it enforces"])

    def test_media_limits_optional_without_role_limits(self) -> None:
        """Models without role_limits are served without mediaLimits."""
        router = self.build("[websaas, role, audit]", ("text-stats",))
        self.assertEqual([f.name for f in router.routes[0].filters],
                         ["websaas", "role", "audit"])

    def test_every_problem_at_once(self) -> None:
        """Chain problems and filter problems are all reported together, located."""
        errors = self.refused("[role, websaas, tokn]")
        where = f"{self.settings_path}:11"
        self.assertEqual(sorted(set(errors)), [
            f"{where}: pipelines.filters: must include mediaLimits after role: audio-gain set "
            "role_limits, which it enforces",
            f"{where}: pipelines.filters: must include role after websaas: it enforces "
            "allowed_roles",
            f"{where}: pipelines.filters[0]: role must come after one of token, websaas",
            f'{where}: pipelines.filters[2]: unknown filter "tokn" (built in: token, websaas, '
            "role, rewrite, mediaLimits, audit; or a dotted path to a filter class)",
        ])

    def test_filter_problem_reported_once(self) -> None:
        """A problem in pipelines.filters is told once, however many models there are."""
        errors = self.refused("[websaas, role, mediaLimits, tokn]")
        self.assertEqual(len(errors), 1, errors)

    test_filter_problem_reported_once.todo = (  # type: ignore[attr-defined]
        "build_pipeline_routes builds the chain once per model and reports each of its "
        "problems once per model")
