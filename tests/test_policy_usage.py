"""The usage ledger and the audit trail through a real gateway: what ``runnergw usage``
reports after it stopped, quotas kept across a restart, streams cut short charged what was
relayed."""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from runnergw.filters.usage import LEASE_BLOCK
from tests.helpers.clients import AuditTap
from tests.helpers.policy import call, start_policy_proxy, stream_request, usage_report

__all__ = ["AuditTests", "CutStreamTests", "LedgerTests"]

_HI = {"model": "llama3.2:1b", "prompt": "Hi"}


class LedgerTests(TestCase):
    """What the ledger keeps, read by ``runnergw usage``."""

    timeout = 10

    async def test_report_after_stop(self) -> None:
        """Once the gateway stopped, the report shows each subject's requests and the tokens
        Ollama counted (5 for the prompt, one per generated token)."""
        upstream, gateway = start_policy_proxy(self)
        alice, bob = gateway.token(subject="alice", role="user"), gateway.token(subject="bob")
        for token, body in ((alice, {**_HI, "stream": False}), (alice, _HI),
                            (bob, {**_HI, "options": {"num_predict": 10}})):
            self.assertEqual((await call(self, gateway, "POST", "/api/generate", token,
                                         body)).status, 200)
        rows = await usage_report(gateway)
        self.assertEqual(rows, [
            {"key": "alice", "requests": 2, "prompt_tokens": 10, "completion_tokens": 6,
             "total_tokens": 16, "truncated": 0},
            {"key": "bob", "requests": 1, "prompt_tokens": 5, "completion_tokens": 10,
             "total_tokens": 15, "truncated": 0},
        ])

    async def test_report_by_model_names_the_real_model(self) -> None:
        """Usage through an alias is reported under the model Ollama ran."""
        upstream, gateway = start_policy_proxy(self, aliases={"fast": "llama3.2:3b"})
        response = await call(self, gateway, "POST", "/api/generate",
                              gateway.token(role="user"), {"model": "fast", "prompt": "Hi"})
        self.assertEqual(response.status, 200)
        rows = await usage_report(gateway, "--by", "model")
        self.assertEqual([(row["key"], row["total_tokens"]) for row in rows],
                         [("llama3.2:3b", 8)])

    async def test_spent_quota_survives_a_restart(self) -> None:
        """A subject that spent its quota is still refused by a new gateway on the same
        ledger, before Ollama hears anything."""
        upstream, gateway = start_policy_proxy(self, tokensPerDay=10)
        first = await call(self, gateway, "POST", "/api/generate",
                           gateway.token(subject="alice", role="user"), {**_HI, "stream": False})
        self.assertEqual(first.status, 200)
        await gateway.stop()
        upstream_after, restarted = start_policy_proxy(
            self, policy={"ledgerPath": str(gateway.ledger_path)}, tokensPerDay=10)
        refused = await call(self, restarted, "POST", "/api/generate",
                             restarted.token(subject="alice", role="user"), _HI)
        other = await call(self, restarted, "POST", "/api/generate",
                           restarted.token(subject="bob", role="user"), _HI)
        self.assertEqual((refused.status, other.status), (429, 200))
        self.assertIn("quota", refused.body.decode())
        self.assertEqual(len(upstream_after.fake.requests), 1)


class CutStreamTests(TestCase):
    """Streams that end early are charged what the client got."""

    timeout = 10

    async def test_client_leaving_charged_what_it_got(self) -> None:
        """A client that closes its connection after three tokens is charged three generated
        tokens (and its prompt's estimate); Ollama's request is closed."""
        upstream, gateway = start_policy_proxy(self)
        upstream.fake.gated = True
        client = await stream_request(self, gateway, "/api/generate",
                                      gateway.token(subject="alice", role="user"),
                                      {**_HI, "options": {"num_predict": 10}})
        await client.wait_for(b'"t0 "')
        [seen] = upstream.fake.requests
        for index in (1, 2):
            await seen.held()
            seen.release()
            await client.wait_for(b'"t%d "' % index)
        await seen.held()  # the fourth token is held back: the client has exactly three
        await client.close()
        await seen.disconnected
        [row] = await usage_report(gateway)
        self.assertEqual((row["key"], row["prompt_tokens"], row["completion_tokens"],
                          row["truncated"]), ("alice", 1, 3, 0))

    async def test_quota_cut_recorded_as_truncated(self) -> None:
        """A stream the quota cut is reported as truncated, in the audit trail and the usage
        report, and charged what was relayed."""
        upstream, gateway = start_policy_proxy(self, tokensPerDay=LEASE_BLOCK + 4)
        audit = AuditTap(self, gateway)
        upstream.fake.gated = True
        token = gateway.token(subject="alice", role="user")
        client = await stream_request(self, gateway, "/api/generate", token,
                                      {**_HI, "options": {"num_predict": 30}})
        await client.wait_for(b'"t0 "')
        [seen] = upstream.fake.requests
        upstream.fake.gated = False
        other = await call(self, gateway, "POST", "/api/generate", token, _HI)
        self.assertEqual(other.status, 200)
        for index in range(1, LEASE_BLOCK + 1):
            await seen.held()
            seen.release()
            if index < LEASE_BLOCK:
                await client.wait_for(b'"t%d "' % index)
        await client.wait_for_chunked_end()
        await seen.disconnected
        await audit.written(2)
        self.assertEqual([(record["outcome"], record.get("reason"))
                          for record in gateway.audit_records()],
                         [("ok", None), ("truncated", "daily token quota reached")])
        [row] = await usage_report(gateway)
        # The cut stream: its prompt's estimate (1) and the tokens relayed; the other
        # request: what Ollama counted (5 and the 2 tokens left to it).
        self.assertEqual((row["requests"], row["prompt_tokens"], row["completion_tokens"],
                          row["truncated"]), (2, 1 + 5, LEASE_BLOCK + 2, 1))


class AuditTests(TestCase):
    """The audit trail of requests under a role."""

    timeout = 10

    async def test_audit_line_never_holds_the_prompt(self) -> None:
        """The audit line of a generation names the model and the role, not the prompt."""
        prompt = "the quick violet prompt 7f3a"
        upstream, gateway = start_policy_proxy(self)
        audit = AuditTap(self, gateway)
        response = await call(self, gateway, "POST", "/api/generate",
                              gateway.token(subject="alice", role="user"),
                              {**_HI, "prompt": prompt, "stream": False})
        self.assertEqual(response.status, 200)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["subject"], record["role"], record["model"]),
                         ("alice", "user", "llama3.2:1b"))
        self.assertNotIn(prompt, gateway.audit_path.read_text())

    async def test_audit_line_carries_the_counts(self) -> None:
        """The audit line of a generation has the runner's token counts."""
        upstream, gateway = start_policy_proxy(self)
        audit = AuditTap(self, gateway)
        response = await call(self, gateway, "POST", "/api/generate",
                              gateway.token(subject="alice", role="user"),
                              {**_HI, "stream": False})
        reported = json.loads(response.body)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["prompt_tokens"], record["completion_tokens"]),
                         (reported["prompt_eval_count"], reported["eval_count"]))
        self.assertNotIn("prompt_tokens_estimated", record)
