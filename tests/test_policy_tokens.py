"""Which role a token gets through a real gateway: runner-gateway's tokens (no role, no
subject), unknown roles, ``roles`` list claims, and gateways without a ``roles`` section."""

from __future__ import annotations

import json

import ollama
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.helpers.clients import AuditTap
from tests.helpers.ollama_proxy import in_thread_with, ollama_client, start_proxy
from tests.helpers.policy import MODELS, PREFIX, call, policy_roles, start_policy_proxy

__all__ = ["NoRolesSectionTests", "RoleClaimTests", "RunnerGatewayTokenTests"]

_GUEST = {"guest": {"models": ["llama3.2:1b"], "requestsPerMinute": 1, "burst": 1}}
"""A default role for tokens without a role claim, one request a minute."""


class RunnerGatewayTokenTests(TestCase):
    """Tokens as runner-gateway mints them carry neither ``sub`` nor ``role``."""

    timeout = 10

    async def test_default_role_applies(self) -> None:
        """Such a token gets ``policy.defaultRole``: its models and its name in refusals and
        in the audit trail."""
        upstream, gateway = start_policy_proxy(
            self, {**policy_roles(), **_GUEST}, {"defaultRole": "guest"})
        audit = AuditTap(self, gateway)
        token = gateway.token(subject=None)
        refused = await call(self, gateway, "POST", "/api/generate", token,
                             {"model": "llama3.2:3b", "prompt": "Hi"})
        self.assertEqual((refused.status, json.loads(refused.body)), (403, {
            "error": 'model "llama3.2:3b" is not available to role "guest"'}))
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["subject"], record["role"], record["status"]),
                         (None, "guest", 403))

    async def test_counted_per_token(self) -> None:
        """Two tokens without a subject are limited apart: the first token's second request
        is over the rate, the other token's first is not."""
        upstream, gateway = start_policy_proxy(
            self, {**policy_roles(), **_GUEST}, {"defaultRole": "guest"})
        first, other = gateway.token(subject=None), gateway.token(subject=None, lifetime=3000)
        self.assertNotEqual(first, other)
        statuses = [(await call(self, gateway, "GET", "/api/tags", token)).status
                    for token in (first, first, other)]
        self.assertEqual(statuses, [200, 429, 200])


class RoleClaimTests(TestCase):
    """The ``role`` and ``roles`` claims."""

    timeout = 10

    async def test_unknown_role_refused(self) -> None:
        """A role the settings do not define is 403, never "no limits"; Ollama hears nothing."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX, gateway.token(role="ghost"))
        error = await self.assertFailure(
            deferToThread(in_thread_with, client, lambda c: c.list()), ollama.ResponseError)
        self.assertEqual((error.status_code, error.error),
                         (403, 'role "ghost" is not known to this gateway'))
        self.assertEqual(upstream.fake.requests, [])

    async def test_first_known_role_of_a_list(self) -> None:
        """A ``roles`` list claim gives its first role the settings know."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX,
                               gateway.token(roles=["ghost", "admin", "user"]))
        pulled = await deferToThread(in_thread_with, client, lambda c: c.pull("qwen2.5:7b"))
        self.assertEqual(pulled.status, "success")
        self.assertEqual([seen.path for seen in upstream.fake.requests], ["/api/pull"])


class NoRolesSectionTests(TestCase):
    """Without a ``roles`` section the gateway behaves as runner-gateway did."""

    timeout = 10

    async def test_any_model_and_management(self) -> None:
        """Any valid token lists every model, generates with any, and pulls; no rate limit
        headers are sent."""
        upstream, gateway = start_proxy(self)
        upstream.fake.models = list(MODELS)
        client = ollama_client(gateway, PREFIX, gateway.token(subject=None))

        def use(c: ollama.Client) -> tuple[list[str], str, str]:
            listed = [model.model for model in c.list().models]
            answer = c.generate(model="qwen2.5:7b", prompt="Hi", stream=False)
            return listed, answer.response, c.pull("qwen2.5:7b").status

        listed, response, pulled = await deferToThread(in_thread_with, client, use)
        self.assertEqual((listed, response, pulled), (MODELS, "t0 t1 t2 ", "success"))
        answer = await call(self, gateway, "GET", "/api/tags", gateway.token(role="user"))
        self.assertEqual(answer.status, 200)
        self.assertFalse({name for name in answer.names if name.startswith("ratelimit")})
