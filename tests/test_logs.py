"""Logging: ``logging.level`` drops runnergw's events below it, and twistd's JSON observer
writes one JSON object per line."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

from twisted.logger import Logger, LogLevel, eventFromJSON, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.logging import LOG_LEVELS
from runnergw.logs import LEVELS, json_observer, level_gate

__all__ = ["JSONObserverTests", "LevelGateTests"]

_log = Logger(namespace="runnergw.test", observer=level_gate)


class LevelGateTests(SynchronousTestCase):
    """The process-wide gate every runnergw logger writes through."""

    def setUp(self) -> None:
        # The gate is process-wide: whatever a test sets, the next one starts from info.
        self.patch(level_gate, "level", LogLevel.info)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def emit_all(self) -> list[str]:
        """Emit one event per level; return the levels that got through."""
        self.events.clear()
        for level in (LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.error,
                      LogLevel.critical):
            _log.emit(level, "at {level_name}", level_name=level.name)
        return [event["level_name"] for event in self.events]

    def test_info_by_default(self) -> None:
        """Unless configured, debug events are dropped and the rest logged."""
        self.assertEqual(level_gate.level, LogLevel.info)
        self.assertEqual(self.emit_all(), ["info", "warn", "error", "critical"])

    def test_each_level_drops_what_is_below_it(self) -> None:
        """Each configured level passes its own events and those above, nothing below."""
        expected = {
            "trace": ["debug", "info", "warn", "error", "critical"],
            "debug": ["debug", "info", "warn", "error", "critical"],
            "info": ["info", "warn", "error", "critical"],
            "warn": ["warn", "error", "critical"],
            "warning": ["warn", "error", "critical"],
            "error": ["error", "critical"],
        }
        for name, passed in expected.items():
            with self.subTest(level=name):
                level_gate.set_level(name)
                self.assertEqual(self.emit_all(), passed)

    def test_every_configurable_level_is_known(self) -> None:
        """Every value ``logging.level`` accepts is a level of the gate (no KeyError at
        start-up for a setting the loader let through)."""
        for name in (*LOG_LEVELS, "warning"):
            with self.subTest(level=name):
                level_gate.set_level(name)
                self.assertIs(level_gate.level, LEVELS[name])

    def test_unknown_level_refused(self) -> None:
        """A level the loader would refuse is refused here too, leaving the gate as it was."""
        self.assertRaises(KeyError, level_gate.set_level, "verbose")
        self.assertEqual(level_gate.level, LogLevel.info)

    def test_passed_events_are_unchanged(self) -> None:
        """An event that passes reaches the log with all its fields."""
        _log.info("done {status}", event="request_done", status=200)
        [event] = self.events
        self.assertEqual((event["event"], event["status"], event["log_namespace"]),
                         ("request_done", 200, "runnergw.test"))


class JSONObserverTests(SynchronousTestCase):
    """``twistd --logger runnergw.logs.json_observer``."""

    def setUp(self) -> None:
        self.stdout = io.StringIO()
        self.patch(sys, "stdout", self.stdout)

    def test_one_json_object_per_line(self) -> None:
        """Each event is one line of JSON on stdout, with its fields, read back by
        Twisted's own reader; no record separator precedes it."""
        observer = json_observer()
        log = Logger(namespace="runnergw.test", observer=observer)
        log.info("runnergw listening on {url}", event="listening", url="https://127.0.0.1:1")
        log.warn("second {n}", n=2)
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual((first["event"], first["url"]), ("listening", "https://127.0.0.1:1"))
        self.assertEqual(json.loads(lines[1])["n"], 2)
        self.assertFalse(self.stdout.getvalue().startswith("\x1e"))
        self.assertEqual(eventFromJSON(lines[1])["log_level"], LogLevel.warn)
