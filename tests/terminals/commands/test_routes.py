"""The command routes built from the ``pipelines`` section: one per good descriptor, each
capped to what its uploads may hold, each behind the chain that checks the SaaS's tokens;
descriptor and chain problems reported as settings problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError
from runnergw.config.load import load_settings, read_settings
from runnergw.config.settings import Settings
from runnergw.filters.registry import FilterContext
from runnergw.startup import prepare
from runnergw.terminals.commands.routes import build_pipeline_routes, load_descriptors
from runnergw.terminals.commands.terminal import CommandTerminal
from tests.helpers.command_gateway import descriptor
from tests.helpers.saas import TestSaas

__all__ = ["ChainContractTests", "LoadDescriptorsTests", "RouteTests"]

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
