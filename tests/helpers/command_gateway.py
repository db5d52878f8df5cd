"""A gateway serving command-line models from a temporary models directory, a test SaaS
signing its tokens, and requests as the SaaS sends them."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from twisted.trial.unittest import TestCase

from runnergw.terminals.commands.terminal import CommandTerminal
from tests.helpers.clients import AuditTap, BytesProducer, fetch, tls_agent
from tests.helpers.gateway import RunningGateway, start_gateway
from tests.helpers.saas import TestSaas, input_form, multipart_body

__all__ = ["EXAMPLES", "FAILED", "SERVER_ID", "TIMED_OUT", "Answer", "Pipelines",
           "decode_data_uri", "descriptor", "example", "start_pipelines"]

EXAMPLES = Path(__file__).resolve().parents[2] / "models-enabled"
SERVER_ID = "base64:test-node"
TIMED_OUT = "Command execution timed out"
"""The detail of a 408."""
FAILED = "Command execution failed: "
"""The start of a failed command's detail, before its stderr."""


def example(name: str) -> dict[str, Any]:
    """One of the example descriptors shipped in ``models-enabled``."""
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return loaded


def descriptor(endpoint: str, command: str, *, fields: list[dict[str, Any]] | None = None,
               outputs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """A small descriptor for a test model."""
    return {
        "title": endpoint,
        "fields": fields or [],
        "output": outputs if outputs is not None else [
            {"id": "result", "type": "text", "format": "txt"}],
        "actions": {"submit": {"method": "POST",
                               "endpoint": f"https://node.example.org/{endpoint}/"}},
        "command": command,
        **extra,
    }


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    """MIME type and bytes of a ``data:<mime>;base64,<…>`` URI."""
    head, _, data = uri.partition(",")
    if not head.startswith("data:") or not head.endswith(";base64"):
        raise AssertionError(f"not a base64 data URI: {uri[:60]!r}")
    return head[5:-7], base64.b64decode(data, validate=True)


@attrs.frozen
class Answer:
    """A pipeline reply as the SaaS receives it."""

    status: int
    headers: Any
    body: bytes
    length: int | None = None
    """The announced Content-Length; None for a streamed (chunked) reply."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


@attrs.define
class Pipelines:
    """A running gateway with pipeline routes, and the SaaS that calls it."""

    testcase: TestCase
    gateway: RunningGateway
    saas: TestSaas
    models_path: Path
    jobs_path: Path
    audit: AuditTap
    agent: Any

    def body(self, form: Mapping[str, Any] | None = None,
             files: Mapping[str, tuple[str, str, bytes]] | None = None, *,
             command: str | None = None) -> tuple[bytes, str]:
        """A multipart body as the SaaS sends it: ``input_form``, the files, ``command``."""
        fields = {"input_form": input_form(form or {})}
        if command is not None:
            fields["command"] = command
        return multipart_body(fields, files or {})

    def headers(self, content_type: str, **token: Any) -> dict[str, str]:
        """The SaaS tokens (``role``, ``user_age``… as for ``TestSaas.headers``) and type."""
        return {**self.saas.headers(**token), "Content-Type": content_type}

    async def post(self, endpoint: str, form: Mapping[str, Any] | None = None,
                   files: Mapping[str, tuple[str, str, bytes]] | None = None, *,
                   command: str | None = None, headers: Mapping[str, str] | None = None,
                   body: bytes | None = None, chunked: bool = False, **token: Any) -> Answer:
        """POST to ``/<endpoint>/``; ``headers`` replace the SaaS's own, ``body`` the form's."""
        made, content_type = self.body(form, files, command=command)
        sent = dict(headers) if headers is not None else self.headers(content_type, **token)
        response, data = await fetch(
            self.agent, "POST", f"{self.gateway.url}/{endpoint}/", sent,
            BytesProducer(made if body is None else body, chunked=chunked))
        length = response.length if isinstance(response.length, int) else None
        return Answer(response.code, response.headers, data, length)

    def raw_request(self, endpoint: str, form: Mapping[str, Any] | None = None,
                    files: Mapping[str, tuple[str, str, bytes]] | None = None) -> bytes:
        """The bytes of a whole POST with a declared length, for a raw connection."""
        body, content_type = self.body(form, files)
        head = "".join(f"{name}: {value}\r\n"
                       for name, value in self.headers(content_type).items())
        return (f"POST /{endpoint}/ HTTP/1.1\r\nHost: node\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def terminal(self, endpoint: str) -> CommandTerminal:
        """The command terminal serving ``endpoint``."""
        for route in self.gateway.service.factory.handler.router.routes:
            if route.name == endpoint:
                assert isinstance(route.terminal, CommandTerminal)
                return route.terminal
        raise AssertionError(f"no route {endpoint}")

    def job_directories(self) -> list[str]:
        """What the jobs directory holds."""
        return sorted(os.listdir(self.jobs_path))

    async def records(self, count: int) -> list[dict[str, Any]]:
        """The audit lines, once ``count`` have been written."""
        await self.audit.written(count)
        return self.gateway.audit_records()

    async def settled(self, count: int) -> dict[str, Any]:
        """Wait for the ``count``-th audit line, check no job directory is left, return it."""
        records = await self.records(count)
        self.testcase.assertEqual(self.job_directories(), [])
        return records[count - 1]


def start_pipelines(testcase: TestCase, descriptors: Mapping[str, Mapping[str, Any]], *,
                    models: Mapping[str, Mapping[str, Any]] | None = None,
                    jobs_path: Path | None = None, server: dict[str, Any] | None = None,
                    **settings: Any) -> Pipelines:
    """Write the descriptors as ``<name>.json`` and start a gateway serving them.

    ``models`` are per-endpoint settings, ``server`` the server section, the other keyword
    arguments keys of the pipelines section.
    """
    base = Path(testcase.mktemp())
    models_path = base / "models"
    models_path.mkdir(parents=True)
    for name, content in descriptors.items():
        (models_path / f"{name}.json").write_text(json.dumps(content))
    # Relative, as ``mktemp`` gives it: jobs run elsewhere, so a relative jobsPath must work.
    jobs = jobs_path if jobs_path is not None else base / "jobs"
    saas = TestSaas(base / "keys")
    section: dict[str, Any] = {
        "modelsPath": str(models_path),
        "jobsPath": str(jobs),
        "saasPublicKeyPath": str(saas.public_path),
        "nodePrivateKeyPath": str(saas.node_private_path),
        "serverId": SERVER_ID,
        "timeout": "20s",
    }
    if models:
        section["models"] = {name: dict(value) for name, value in models.items()}
    section.update(settings)
    gateway = start_gateway(testcase, [], pipelines=section, server=server)
    return Pipelines(testcase, gateway, saas, models_path, jobs, AuditTap(testcase, gateway),
                     tls_agent(testcase, gateway))
