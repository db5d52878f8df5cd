"""The per-model queue: ``concurrency`` jobs run, ``queueSize`` wait, the rest hear 503."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.helpers.clients import raw_connect
from tests.helpers.command_gateway import decode_data_uri, descriptor, start_pipelines
from tests.helpers.job_control import JobControl, when_queued


class QueueTests(TestCase):
    """``concurrency: 1, queueSize: 1``: one runs, one waits, the next is told to come back."""

    timeout = 20

    def setUp(self) -> None:
        self.control = JobControl(self)
        self.pipelines = start_pipelines(
            self, {"wait": self.control.descriptor("wait")},
            models={"wait": {"timeout": "5s", "concurrency": 1, "queueSize": 1}})
        self.terminal = self.pipelines.terminal("wait")

    async def test_full_queue_answers_503(self) -> None:
        first_answer = Deferred.fromCoroutine(self.pipelines.post("wait", {"tag": "a"}))
        first = await self.control.next()
        queued = when_queued(self, self.terminal)
        second_answer = Deferred.fromCoroutine(self.pipelines.post("wait", {"tag": "b"}))
        await queued
        third = await self.pipelines.post("wait", {"tag": "c"})
        self.assertEqual(third.status, 503, third.body)
        self.assertEqual(third.header("Retry-After"), "10")
        self.assertEqual(set(third.json), {"detail"})
        self.assertEqual((await self.pipelines.records(1))[0]["reason"], "queue full")
        first.go()
        self.assertEqual((await first_answer).status, 200)
        second = await self.control.next()
        self.assertEqual(second.tag, "b")
        second.go()
        answer = await second_answer
        self.assertEqual(decode_data_uri(answer.json["outputs"]["result"])[1], b"b")
        await self.pipelines.settled(3)
        self.assertEqual(self.control.started_tags(), {"a", "b"})

    async def test_queued_request_whose_client_left_never_starts(self) -> None:
        first_answer = Deferred.fromCoroutine(self.pipelines.post("wait", {"tag": "a"}))
        first = await self.control.next()
        queued = when_queued(self, self.terminal)
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.pipelines.raw_request("wait", {"tag": "b"}))
        await queued
        await client.close()
        [left] = await self.pipelines.records(1)
        self.assertEqual(left["outcome"], "client_gone")
        self.assertEqual(self.terminal.slots.waiting, 0)
        first.go()
        self.assertEqual((await first_answer).status, 200)
        later = Deferred.fromCoroutine(self.pipelines.post("wait", {"tag": "d"}))
        after = await self.control.next()
        self.assertEqual(after.tag, "d")
        after.go()
        self.assertEqual((await later).status, 200)
        await self.pipelines.settled(3)
        self.assertEqual(self.control.started_tags(), {"a", "d"})

    async def test_a_request_still_uploading_holds_its_place(self) -> None:
        """Requests are counted from before their upload: while the second one is still
        sending, a third is refused, so uploads and measurements are bounded too."""
        first_answer = Deferred.fromCoroutine(self.pipelines.post("wait", {"tag": "a"}))
        first = await self.control.next()
        admitted = when_admitted(self, self.terminal, 2)
        whole = self.pipelines.raw_request("wait", {"tag": "b"})
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(whole[:-20])
        await admitted
        third = await self.pipelines.post("wait", {"tag": "c"})
        self.assertEqual(third.status, 503, third.body)
        self.assertEqual(self.terminal.slots.waiting, 0)  # the second is not in line yet
        client.send(whole[-20:])
        first.go()
        self.assertEqual((await first_answer).status, 200)
        second = await self.control.next()
        self.assertEqual(second.tag, "b")
        second.go()
        await client.wait_for(b'"token"')
        await self.pipelines.settled(3)
        self.assertEqual(self.control.started_tags(), {"a", "b"})


class SlowReaderTests(TestCase):
    """A client slow to read its reply does not hold the model once its job is over."""

    timeout = 30

    async def test_next_request_runs_while_a_reply_is_still_being_read(self) -> None:
        size = 20 * 1024 * 1024
        pipelines = start_pipelines(self, {"big": descriptor(
            "big", f"python3 -c 'import sys; open(sys.argv[1], \"wb\").write(bytes({size}))' "
                   "<blob>",
            outputs=[{"id": "blob", "type": "file", "format": "bin"}])},
            models={"big": {"concurrency": 1, "queueSize": 0}})
        slow = await raw_connect(self, pipelines.gateway)
        slow.send(pipelines.raw_request("big"))
        await slow.wait_for(b"HTTP/1.1 200")
        slow.transport.pauseProducing()  # megabytes of reply stay unread
        answer = await pipelines.post("big")
        self.assertEqual(answer.status, 200, answer.body[:200])
        self.assertEqual(pipelines.terminal("big").slots.admitted, 0)
        await slow.close()
        records = await pipelines.records(2)
        self.assertEqual(sorted(r["outcome"] for r in records), ["client_gone", "ok"])
        self.assertEqual(pipelines.job_directories(), [])


def when_admitted(testcase: TestCase, terminal: Any, count: int) -> Deferred[None]:
    """Fires once ``count`` requests are in the terminal's hands."""
    slots = terminal.slots
    original = slots.admit
    reached: Deferred[None] = Deferred()

    def admit() -> Any:
        admission = original()
        if slots.admitted >= count and not reached.called:
            reached.callback(None)
        return admission

    testcase.patch(slots, "admit", admit)
    return reached
