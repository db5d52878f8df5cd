"""A node's settings written into a temporary directory, with the keys they point at: a
PASETO pair for runner routes, SaaS and node keys and descriptors for command routes; and the
parts ``prepare`` loads from them. Nothing listens: for tests of how routes are built."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.config.settings import Settings
from runnergw.startup import GatewayParts, prepare
from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.command_gateway import SERVER_ID
from tests.helpers.saas import TestSaas

__all__ = ["Node", "write_node"]


@attrs.frozen
class Node:
    """Settings as loaded from a written file, and the parts ``prepare`` made of them."""

    path: Path
    settings: Settings
    parts: GatewayParts


def write_node(
    testcase: SynchronousTestCase,
    *,
    runners: Sequence[Mapping[str, Any]] = (),
    descriptors: Mapping[str, Mapping[str, Any]] | None = None,
    pipelines: Mapping[str, Any] | None = None,
    server: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Node:
    """Write ``settings.yaml`` and its keys into a fresh directory, load and prepare it.

    ``descriptors`` (name to descriptor) turn pipelines on, ``pipelines`` adds keys to that
    section; ``extra`` adds top-level sections. The audit trail is off.
    """
    directory = Path(testcase.mktemp()).absolute()
    directory.mkdir(parents=True)
    key_path, pub_path = directory / "paseto.key", directory / "paseto.pub"
    write_signing_keypair(key_path, pub_path)
    document: dict[str, Any] = {
        "paseto": {"keyPath": str(key_path), "publicPath": str(pub_path)},
        "server": {"address": "127.0.0.1:0", **(server or {})},
        "audit": {"path": ""},
        "runners": [dict(runner) for runner in runners],
        # A port of its own: never the default, which another gateway may hold.
        "metrics": {"address": "127.0.0.1:0"},
    }
    if descriptors is not None:
        models = directory / "models"
        models.mkdir()
        for name, content in descriptors.items():
            (models / f"{name}.json").write_text(json.dumps(content))
        saas = TestSaas(directory / "keys")
        document["pipelines"] = {
            "modelsPath": str(models),
            "jobsPath": str(directory / "jobs"),
            "saasPublicKeyPath": str(saas.public_path),
            "nodePrivateKeyPath": str(saas.node_private_path),
            "serverId": SERVER_ID,
            **(pipelines or {}),
        }
    document.update(extra or {})
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(document))
    settings = load_settings(str(path), {}, dotenv_path=None)
    parts = prepare(settings)
    testcase.addCleanup(parts.audit_log.close)
    return Node(path, settings, parts)
