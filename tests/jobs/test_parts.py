"""The job parts every command route shares: the environment a job gets, where its directory
is made, and one launcher stopped once for all routes."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs.parts import JobParts

__all__ = ["EnvironmentTests", "StopTests"]


class EnvironmentTests(SynchronousTestCase):
    """A job's environment is made, never inherited."""

    def test_clean_environment_in_the_job_directory(self) -> None:
        """PATH, LANG, and HOME and TMPDIR in the job's directory: nothing of the gateway's."""
        os.environ["RUNNERGW_TEST_SECRET"] = "gateway only"
        self.addCleanup(os.environ.pop, "RUNNERGW_TEST_SECRET")
        parts = JobParts(MemoryReactorClock(), "/jobs", None)
        self.assertEqual(parts.environment("/jobs/job-1"), {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/jobs/job-1",
            "TMPDIR": "/jobs/job-1", "LANG": "C.UTF-8"})

    def test_the_operators_variables_are_added(self) -> None:
        """``pipelines.environment`` adds variables and may replace PATH."""
        parts = JobParts(MemoryReactorClock(), "/jobs", None,
                         {"PATH": "/opt/venv/bin:/usr/bin", "CUDA_VISIBLE_DEVICES": "0"})
        environment = parts.environment("/jobs/job-1")
        self.assertEqual((environment["PATH"], environment["CUDA_VISIBLE_DEVICES"]),
                         ("/opt/venv/bin:/usr/bin", "0"))

    def test_a_relative_jobs_path_is_made_absolute(self) -> None:
        """Jobs run in their own directory: the jobs path cannot depend on the gateway's."""
        parts = JobParts(MemoryReactorClock(), "var/jobs", "/usr/bin/ffprobe")
        self.assertEqual(parts.jobs_path, os.path.join(os.getcwd(), "var/jobs"))
        self.assertEqual(parts.ffprobe, "/usr/bin/ffprobe")


class StopTests(SynchronousTestCase):
    """Every command route stops the shared launcher; it is stopped once."""

    def setUp(self) -> None:
        self.parts = JobParts(MemoryReactorClock(), "/jobs", None)
        self.stopping: Deferred[None] = Deferred()
        self.asked = 0

        def stop() -> Deferred[None]:
            self.asked += 1
            return self.stopping

        self.parts.launcher.stop = stop  # type: ignore[method-assign]

    def test_every_route_waits_for_the_one_stop(self) -> None:
        """Two routes stopping: the launcher is asked once, both hear when it has exited."""
        first, second = self.parts.stop(), self.parts.stop()
        self.assertEqual(self.asked, 1)
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.stopping.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_a_route_stopping_late_hears_at_once(self) -> None:
        """Once the launcher has exited, a later stop fires at once."""
        self.parts.stop()
        self.stopping.callback(None)
        self.successResultOf(self.parts.stop())
        self.assertEqual(self.asked, 1)
