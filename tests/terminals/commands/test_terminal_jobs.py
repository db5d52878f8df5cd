"""Running jobs: failures, timeouts, clients that leave, the slot a killed job holds, and
process groups."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.jobs import launcher, process
from tests.helpers.clients import raw_connect
from tests.helpers.command_gateway import (
    FAILED,
    TIMED_OUT,
    Pipelines,
    decode_data_uri,
    descriptor,
    start_pipelines,
)
from tests.helpers.job_control import (
    JobControl,
    RunningJob,
    kill_at_cleanup,
    process_gone,
    when_queued,
)

__all__ = ["FailureTests", "KillTests"]


class FailureTests(TestCase):
    """A command that fails: 400 with the end of its stderr."""

    timeout = 20

    async def test_non_zero_exit(self) -> None:
        pipelines = start_pipelines(self, {"fails": descriptor(
            "fails", "python3 -c 'import sys; sys.stderr.write(\"start\" + \"boom\" * 2000); "
            "sys.exit(3)' <result>")})
        answer = await pipelines.post("fails")
        self.assertEqual(answer.status, 400, answer.body)
        [detail] = answer.json.values()
        self.assertTrue(detail.startswith(FAILED + "boom"), detail[:40])
        self.assertTrue(detail.endswith("boom"))
        self.assertLess(len(detail), 2100)
        self.assertNotIn("start", detail)
        record = await pipelines.settled(1)
        self.assertEqual((record["outcome"], record["exit_code"]), ("command_failed", 3))

    async def test_missing_program(self) -> None:
        pipelines = start_pipelines(self, {"nothing": descriptor(
            "nothing", "no-such-program-here <result>")})
        answer = await pipelines.post("nothing")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertIn("no-such-program-here", answer.json["detail"])
        await pipelines.settled(1)


class KillTests(TestCase):
    """Jobs over their time, and jobs whose client left, are killed with their children."""

    timeout = 20

    def setUp(self) -> None:
        self.control = JobControl(self)
        self.pipelines: Pipelines = start_pipelines(
            self, {"wait": self.control.descriptor("wait"),
                   "hold": self.control.descriptor("hold")},
            models={"wait": {"timeout": "1s", "concurrency": 1, "queueSize": 1},
                    "hold": {"timeout": "10s", "concurrency": 1, "queueSize": 1}})

    async def started(self) -> RunningJob:
        job = await self.control.next()
        kill_at_cleanup(self, job.pid)
        kill_at_cleanup(self, job.info["child"])
        return job

    async def timed_out(self, mode: str) -> dict[str, Any]:
        """Run a job that never finishes on the 1 s model; what it reported at its start."""
        answer = await self.pipelines.post("wait", {"mode": mode})
        self.assertEqual((answer.status, answer.json), (408, {"detail": TIMED_OUT}))
        info = self.control.marker("job")
        kill_at_cleanup(self, info["pid"])
        kill_at_cleanup(self, info["child"])
        return info

    async def test_timeout(self) -> None:
        """408 ``Command timed out``; the job and the child it started are gone."""
        info = await self.timed_out("child")
        await process_gone(info["pid"])
        await process_gone(info["child"])
        record = await self.pipelines.settled(1)
        self.assertEqual((record["outcome"], record["status"]), ("timeout", 408))

    async def test_timeout_kills_a_child_that_ignores_sigterm(self) -> None:
        info = await self.timed_out("stubborn-child")
        await process_gone(info["pid"])
        await process_gone(info["child"])
        await self.pipelines.settled(1)

    async def test_finished_job_leaves_no_child_behind(self) -> None:
        """A command that exits leaving a helper (holding its stderr) is answered at once."""
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "leave-child"}))
        job = await self.started()
        answer = await answering
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(decode_data_uri(answer.json["outputs"]["result"])[1], b"job")
        await process_gone(job.info["child"])
        await self.pipelines.settled(1)

    async def test_helper_in_its_own_session_does_not_hold_the_reply(self) -> None:
        """A helper that left the group keeps the pipes open: they are closed after a grace."""
        self.patch(process, "PIPE_GRACE", 0.2)
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "escape"}))
        job = await self.started()
        answer = await answering
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(decode_data_uri(answer.json["outputs"]["result"])[1], b"job")
        await self.pipelines.settled(1)
        self.assertTrue(_alive(job.info["child"]), "outside the group: not the gateway's to kill")

    async def test_next_job_starts_once_the_command_has_exited(self) -> None:
        """The slot is free as soon as the command is gone and nothing of its group is left:
        a helper that left the group and holds the pipes does not hold the next job."""
        self.patch(process, "PIPE_GRACE", 600.0)
        first_answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "escape"}))
        first = await self.started()
        second_answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "second"}))
        second = await self.started()
        self.assertEqual(second.tag, "second")
        self.assertFalse(first_answer.called, "the first reply waits for its pipes")
        second.go()
        self.assertEqual((await second_answer).status, 200)
        os.kill(first.info["child"], signal.SIGKILL)  # the pipes close: the first reply ends
        self.assertEqual((await first_answer).status, 200)
        await self.pipelines.settled(2)

    async def test_a_job_whose_launcher_died_is_killed_and_answered_500(self) -> None:
        """The node's failure, not the program's: 500, logged; the next job starts a new
        launcher."""
        answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "child"}))
        job = await self.started()
        job_launcher = self.pipelines.terminal("hold").jobs.launcher
        assert job_launcher._process is not None
        os.kill(job_launcher._process.transport.pid, signal.SIGKILL)
        await process_gone(job.pid)
        await process_gone(job.info["child"])
        lost = await answer
        self.assertEqual((lost.status, lost.json), (500, {"detail": "The job was lost"}))
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "error")
        # The next launcher starts a second after the last one died, at the soonest.
        busy = await self.pipelines.post("hold", {"tag": "too-soon"})
        self.assertEqual(busy.status, 503)
        self.assertEqual(busy.headers.getRawHeaders("retry-after"), ["10"])
        self.patch(launcher, "RESTART_DELAY", 0.0)
        again = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "again"}))
        (await self.started()).go()
        self.assertEqual((await again).status, 200)

    async def test_client_leaving_kills_the_job(self) -> None:
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.pipelines.raw_request("hold", {"mode": "child"}))
        job = await self.started()
        await client.close()
        await process_gone(job.pid)
        await process_gone(job.info["child"])
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "client_gone")
        self.assertIs(record["job_killed"], True)
        self.assertEqual(client.data, b"")

    async def test_killed_job_holds_its_slot_until_it_is_gone(self) -> None:
        """One GPU, one job: the next job starts only once the killed one has exited."""
        self.patch(process, "KILL_GRACE", 0.5)
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.pipelines.raw_request("hold", {"mode": "stubborn", "tag": "first"}))
        first = await self.started()
        terminal = self.pipelines.terminal("hold")
        queued = when_queued(self, terminal)
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "second"}))
        await queued
        await client.close()
        second = await self.started()
        self.assertEqual(second.tag, "second")
        self.assertFalse(_alive(first.pid), "the next job started beside the killed one")
        second.go()
        self.assertEqual((await answering).status, 200)
        await self.pipelines.settled(2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
