"""The command routes built from the ``pipelines`` section: one per good descriptor, each
capped to what its uploads may hold, each behind the chain that checks the SaaS's tokens;
descriptor and chain problems reported as settings problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Router
from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.config.load import load_settings, read_settings
from runnergw.config.settings import Settings
from runnergw.filters.registry import BUILTIN_FILTERS, FilterContext
from runnergw.routes import build_router
from runnergw.startup import prepare
from runnergw.terminals.commands.routes import build_pipeline_routes, load_descriptors
from runnergw.terminals.commands.terminal import CommandTerminal
from tests.helpers.command_gateway import SERVER_ID, descriptor, example
from tests.helpers.saas import TestSaas

__all__ = ["ChainContractTests", "LoadDescriptorsTests", "PipelineChainTests", "RouteTests"]

_MIB = 1024 * 1024


def _upload(field_id: str, max_size: float | None) -> dict[str, Any]:
    """An upload field, with ``maxSize`` in MB unless None."""
    field: dict[str, Any] = {"id": field_id, "type": "fileUpload"}
    if max_size is not None:
        field["maxSize"] = max_size
    return field


class _Node(SynchronousTestCase):
    """A node directory: SaaS keys, a models directory and settings pointing at them."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.models = self.directory / "models"
        self.models.mkdir(parents=True)
        self.saas = TestSaas(self.directory / "keys")

    def model(self, name: str, content: dict[str, Any] | str) -> Path:
        """Write ``models/<name>.json``."""
        path = self.models / f"{name}.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        return path

    def settings(self, **pipelines: Any) -> Settings:
        """Settings whose pipelines section points at this node, with ``pipelines`` over it."""
        return load_settings(str(self.settings_file(**pipelines)), {}, dotenv_path=None)

    def settings_file(self, **pipelines: Any) -> Path:
        """Write the settings file of :meth:`settings`."""
        section: dict[str, Any] = {
            "modelsPath": str(self.models), "jobsPath": str(self.directory / "jobs"),
            "saasPublicKeyPath": str(self.saas.public_path),
            "nodePrivateKeyPath": str(self.saas.node_private_path),
            "serverId": "base64:bm9kZQ==", "maxRequestSize": "8MiB",
        }
        section.update(pipelines)
        path = self.directory / "settings.yaml"
        path.write_text(yaml.safe_dump({
            "server": {"address": "127.0.0.1:8443"},
            "audit": {"path": str(self.directory / "audit.log")},
            "pipelines": section,
        }))
        return path

    def build(self, settings: Settings, *, signed: bool = True) -> tuple[list[Any],
                                                                          list[ConfigError]]:
        """The routes built from ``settings``, and the problems found."""
        parts = prepare(settings)
        self.addCleanup(parts.audit_log.close)
        context = FilterContext(settings=settings, clock=MemoryReactorClock(),
                                audit_log=parts.audit_log, verifier=parts.verifier,
                                saas_verifier=parts.saas_verifier,
                                signer=parts.signer if signed else None)
        errors: list[ConfigError] = []
        routes = build_pipeline_routes(context, MemoryReactorClock(), errors)
        return routes, errors


class LoadDescriptorsTests(_Node):
    """The models of the enabled pipelines, with their problems as settings problems."""

    def test_good_models_are_served_and_problems_listed(self) -> None:
        """A broken descriptor is one located problem; the good one is still loaded."""
        self.model("good", descriptor("good", "true <result>"))
        broken = self.model("broken", '{\n  "command": 3\n}')
        errors: list[ConfigError] = []
        models = load_descriptors(self.settings(), errors)
        self.assertEqual([m.endpoint for m in models], ["good"])
        self.assertTrue(errors)
        self.assertTrue(all(isinstance(e, ConfigError) for e in errors))
        self.assertEqual(str(errors[0]), f"{broken}:2:14: command: must be a non-empty string")

    def test_disabled_pipelines_read_nothing(self) -> None:
        """With the pipelines turned off no descriptor is read, broken or not."""
        self.model("broken", "{")
        errors: list[ConfigError] = []
        # Read as far as it goes: with nothing else to serve, the settings have a problem.
        settings, _ = read_settings(str(self.settings_file(enabled=False)), {}, None)
        assert settings is not None
        self.assertEqual(load_descriptors(settings, errors), [])
        self.assertEqual(errors, [])


class RouteTests(_Node):
    """One route per model."""

    def test_a_route_per_model_on_its_endpoint(self) -> None:
        """Each model answers on ``/<endpoint>/`` through its own command terminal."""
        self.model("a", descriptor("process-a", "true <result>"))
        self.model("b", descriptor("process-b", "true <result>"))
        routes, errors = self.build(self.settings())
        self.assertEqual(errors, [])
        self.assertEqual([(r.name, r.prefix) for r in routes],
                         [("process-a", ("process-a",)), ("process-b", ("process-b",))])
        self.assertTrue(all(isinstance(r.terminal, CommandTerminal) for r in routes))
        self.assertEqual([f.name for f in routes[0].filters],
                         ["websaas", "role", "mediaLimits", "audit"])

    def test_no_server_timing(self) -> None:
        """Command routes answer the SaaS byte for byte as before: no ``Server-Timing``,
        though runner routes have it by default."""
        self.model("a", descriptor("process-a", "true <result>"))
        settings = self.settings()
        routes, _ = self.build(settings)
        self.assertTrue(settings.server.server_timing)
        self.assertEqual([r.server_timing for r in routes], [None])

    def test_every_route_shares_one_job_launcher(self) -> None:
        """The models share the job parts: one launcher process for the node."""
        self.model("a", descriptor("process-a", "true <result>"))
        self.model("b", descriptor("process-b", "true <result>"))
        routes, _ = self.build(self.settings())
        self.assertIs(routes[0].terminal.jobs, routes[1].terminal.jobs)

    def test_body_cap_from_the_upload_sizes(self) -> None:
        """Uploads that all declare maxSize cap the request at their sum plus room for the
        form; one without maxSize leaves the cap at maxRequestSize."""
        self.model("sized", descriptor("sized", "true <a> <b> <result>",
                                       fields=[_upload("a", 2), _upload("b", 0.5)]))
        self.model("open", descriptor("open", "true <a> <result>", fields=[_upload("a", None)]))
        routes, _ = self.build(self.settings())
        caps = {r.name: r.max_body_size for r in routes}
        self.assertEqual(caps, {"sized": 2 * _MIB + _MIB // 2 + _MIB, "open": 8 * _MIB})

    def test_no_routes_without_the_reply_key(self) -> None:
        """Without a signer nothing is served, but descriptors are still checked."""
        self.model("broken", "{")
        routes, errors = self.build(self.settings(), signed=False)
        self.assertEqual(routes, [])
        self.assertEqual(len(errors), 1)


class ChainContractTests(_Node):
    """The SaaS token check, the role check and the plan limits cannot be configured away."""

    def test_websaas_is_required(self) -> None:
        """A chain without websaas would let anyone run the models."""
        self.model("a", descriptor("a", "true <result>"))
        _, errors = self.build(self.settings(filters=["role", "audit"]))
        self.assertIn(("pipelines.filters",
                       "must include websaas: without it anyone can run the models"),
                      [(e.path, e.message) for e in errors])

    def test_role_must_follow_websaas(self) -> None:
        """The role check needs the role the SaaS token carries."""
        self.model("a", descriptor("a", "true <result>"))
        _, errors = self.build(self.settings(filters=["role", "websaas", "audit"]))
        self.assertIn("must include role after websaas: it enforces allowed_roles",
                      [e.message for e in errors])

    def test_role_limits_need_media_limits(self) -> None:
        """A model with role limits names itself when mediaLimits is left out."""
        self.model("limited", descriptor(
            "limited", "true <m> <result>", fields=[_upload("m", 1)], main_input_id="m",
            role_limits={"basic": [{"type": "media", "attribute": "duration", "value": 30}]}))
        _, errors = self.build(self.settings(filters=["websaas", "role", "audit"]))
        self.assertEqual([e.message for e in errors], [
            "must include mediaLimits after role: limited set role_limits, which it enforces"])


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
            f'{where}: pipelines.filters[2]: unknown filter "tokn" (built in: '
            f'{", ".join(BUILTIN_FILTERS)}; or a dotted path to a filter class)',
        ])

    def test_filter_problem_reported_once(self) -> None:
        """A problem in pipelines.filters is told once, however many models there are."""
        errors = self.refused("[websaas, role, mediaLimits, tokn]")
        self.assertEqual(len(errors), 1, errors)


    def test_filters_named_by_their_dotted_path(self) -> None:
        """The SaaS check given by its dotted path counts as websaas: the node starts."""
        router = self.build("[runnergw.filters.websaas.WebSaasTokenFilter, role, mediaLimits, "
                            "audit]")
        self.assertEqual(sorted(route.name for route in router.routes),
                         ["audio-gain", "text-stats"])
