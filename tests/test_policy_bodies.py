"""Request bodies as Ollama receives them through a gateway applying roles: aliases resolved,
``keep_alive`` pinned, generation capped, and bodies read exactly as Ollama's Go decoder
reads them."""

from __future__ import annotations

import json

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from runnergw.config.errors import ConfigErrors
from tests.helpers.ollama_proxy import in_thread_with, ollama_client, openai_client
from tests.helpers.policy import PREFIX, call, go_reads, start_policy_proxy

__all__ = ["BodyReadingTests", "RewrittenBodyTests"]


class RewrittenBodyTests(TestCase):
    """What the role changes in a body, seen by Ollama."""

    timeout = 10

    async def test_alias_becomes_the_real_model(self) -> None:
        """A role's alias reaches Ollama as the model it names, under ``model`` alone, and the
        answer reaches the client."""
        upstream, gateway = start_policy_proxy(self, aliases={"fast": "llama3.2:1b"})
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        answer = await deferToThread(in_thread_with, client, lambda c: c.generate(
            model="fast", prompt="Hi", stream=False))
        self.assertEqual(answer.response, "t0 t1 t2 ")
        [seen] = upstream.fake.requests
        body = json.loads(seen.body)
        self.assertEqual((body["model"], body["prompt"]), ("llama3.2:1b", "Hi"))

    def test_alias_to_a_model_outside_the_role_refused(self) -> None:
        """An alias gives no way around the role's models: a gateway whose alias names a
        model the role may not use does not start, and says which."""
        error = self.assertRaises(ConfigErrors, start_policy_proxy, self,
                                  aliases={"big": "qwen2.5:7b"})
        self.assertIn('roles.user.aliases: "big" names "qwen2.5:7b", which the role\'s models '
                      "do not allow", str(error))

    async def test_keep_alive_pinned(self) -> None:
        """The role's ``keepAlive`` replaces what the client asked for."""
        upstream, gateway = start_policy_proxy(self, keepAlive="5m")
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        await deferToThread(in_thread_with, client, lambda c: c.chat(
            model="llama3.2:1b", messages=[{"role": "user", "content": "Hi"}], stream=False,
            keep_alive="24h"))
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["keep_alive"], "5m")

    async def test_num_predict_capped(self) -> None:
        """Asking for more than ``maxTokens`` gets ``maxTokens``: Ollama is asked for that
        many and the stream has that many tokens."""
        upstream, gateway = start_policy_proxy(self, maxTokens=4)
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        parts = await deferToThread(in_thread_with, client, lambda c: list(c.generate(
            model="llama3.2:1b", prompt="Hi", stream=True, options={"num_predict": 100,
                                                                    "temperature": 0})))
        self.assertEqual([part.response for part in parts], ["t0 ", "t1 ", "t2 ", "t3 ", ""])
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["options"], {"num_predict": 4, "temperature": 0})

    async def test_smaller_num_predict_kept(self) -> None:
        """A client asking for fewer tokens than ``maxTokens`` keeps its figure."""
        upstream, gateway = start_policy_proxy(self, maxTokens=4)
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        answer = await deferToThread(in_thread_with, client, lambda c: c.generate(
            model="llama3.2:1b", prompt="Hi", stream=False, options={"num_predict": 2}))
        self.assertEqual(answer.eval_count, 2)
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["options"]["num_predict"], 2)

    async def test_uncapped_request_gets_the_cap(self) -> None:
        """A request that sets no limit is given ``maxTokens``."""
        upstream, gateway = start_policy_proxy(self, maxTokens=4)
        response = await call(self, gateway, "POST", "/api/generate",
                              gateway.token(role="user"),
                              {"model": "llama3.2:1b", "prompt": "Hi", "stream": False})
        self.assertEqual(json.loads(response.body)["eval_count"], 4)
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["options"], {"num_predict": 4})

    async def test_max_tokens_capped_on_v1(self) -> None:
        """An OpenAI chat asking for more than ``maxTokens`` reaches Ollama with
        ``max_tokens`` lowered."""
        upstream, gateway = start_policy_proxy(self, maxTokens=4)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        answer = await deferToThread(in_thread_with, client, lambda c: (
            c.chat.completions.create(model="llama3.2:1b", max_tokens=100,
                                      messages=[{"role": "user", "content": "Hi"}])))
        self.assertEqual(answer.choices[0].message.content, "t0 t1 t2 t3 ")
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["max_tokens"], 4)


class BodyReadingTests(TestCase):
    """Bodies sent raw through the TLS front door are read as Ollama reads them."""

    timeout = 10

    async def test_other_case_of_model_refused(self) -> None:
        """``{"model": allowed, "MODEL": refused}``: Ollama would run the second (keys match
        without regard to case, the last winning), so the gateway refuses it."""
        upstream, gateway = start_policy_proxy(self)
        response = await call(self, gateway, "POST", "/api/generate", gateway.token(role="user"),
                              b'{"model":"llama3.2:1b","MODEL":"qwen2.5:7b","prompt":"Hi"}')
        self.assertEqual(response.status, 403)
        self.assertEqual(json.loads(response.body),
                         {"error": 'model "qwen2.5:7b" is not available to role "user"'})
        self.assertEqual(upstream.fake.requests, [])

    async def test_last_duplicate_decides(self) -> None:
        """Of two ``model`` keys the last counts: refused when it is outside the role; let
        through when it is inside, and then Ollama reads that same model."""
        upstream, gateway = start_policy_proxy(self)
        token = gateway.token(role="user")
        refused = await call(self, gateway, "POST", "/api/generate", token,
                             b'{"model":"llama3.2:1b","model":"qwen2.5:7b","stream":false}')
        allowed = await call(self, gateway, "POST", "/api/generate", token,
                             b'{"model":"qwen2.5:7b","model":"llama3.2:1b","stream":false}')
        self.assertEqual((refused.status, allowed.status), (403, 200))
        [seen] = upstream.fake.requests
        self.assertEqual(go_reads(seen.body, "model"), "llama3.2:1b")

    async def test_kelvin_sign_spelling_of_keep_alive_replaced(self) -> None:
        """``\\u212aeep_alive`` (a Kelvin sign for the k) is ``keep_alive`` to Ollama: the
        pinned value replaces it, and no other spelling reaches Ollama."""
        upstream, gateway = start_policy_proxy(self, keepAlive="5m")
        response = await call(
            self, gateway, "POST", "/api/generate", gateway.token(role="user"),
            '{"model":"llama3.2:1b","prompt":"Hi","stream":false,"\u212aeep_alive":-1}'
            .encode())
        self.assertEqual(response.status, 200)
        [seen] = upstream.fake.requests
        self.assertEqual(go_reads(seen.body, "keep_alive"), "5m")
        keys = [key for key, _ in json.loads(seen.body, object_pairs_hook=list)]
        self.assertEqual([key for key in keys if key.casefold() == "keep_alive"],
                         ["keep_alive"])

    async def test_body_read_otherwise_than_by_ollama_refused(self) -> None:
        """A body the gateway cannot read as Ollama would (a model that is not a string) is
        400, never passed on."""
        upstream, gateway = start_policy_proxy(self)
        response = await call(self, gateway, "POST", "/api/generate", gateway.token(role="user"),
                              b'{"model":["qwen2.5:7b"],"prompt":"Hi"}')
        self.assertEqual(response.status, 400)
        self.assertEqual(upstream.fake.requests, [])
