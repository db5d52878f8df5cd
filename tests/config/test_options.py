"""A filter's options, read from settings by the fields of its attrs ``Options`` class."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors, Origin
from runnergw.config.filters import read_filter_specs
from runnergw.config.options import read_options, setting_key
from runnergw.config.reader import ErrorSink, MapReader
from runnergw.config.yamlfile import load_yaml_file
from runnergw.filters.registry import build_filter
from runnergw.testing import filter_from_settings

__all__ = ["ErrorTests", "FieldTypeTests", "SettingKeyTests", "SettingsFileTests"]


@attrs.frozen
class _Window:
    size: int = 10
    unit: Literal["minute", "hour"] = "minute"


def _positive(instance: Any, attribute: Any, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be more than 0")


@attrs.frozen
class _Every:
    """One field of every supported kind."""

    name: str
    enabled: bool = False
    count: int = 3
    ratio: float = attrs.field(default=0.5, validator=_positive)
    mode: Literal["fast", "safe"] = "safe"
    tags: tuple[str, ...] = ()
    names: list[str] = attrs.field(factory=list)
    either: Sequence[str] = ()
    headers: Mapping[str, str] = attrs.field(factory=dict)
    labels: dict[str, str] = attrs.field(factory=dict)
    window: _Window = attrs.field(factory=_Window)
    timeout: float = attrs.field(default=30.0, metadata={"setting": "duration"})
    max_upload: int = attrs.field(default=1024, metadata={"setting": "size"})


@attrs.frozen
class _Methods:
    verb: Literal["GET", "POST"] = "GET"


@attrs.frozen
class _Derived:
    limit: int = 5
    doubled: int = attrs.field(init=False)
    _secret: str = "default"

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "doubled", self.limit * 2)


@attrs.frozen
class _SelfRead:
    value: str

    @classmethod
    def from_yaml(cls, section: MapReader) -> _SelfRead:
        text = section.string("custom")
        if text == "bad":
            section.error("custom", "not that one")
        section.finish()
        return cls(text.upper())


@attrs.frozen
class _Unreadable:
    handler: Any = None


@attrs.frozen
class _Nesting:
    inner: _Unreadable = attrs.field(factory=_Unreadable)


class Quota:
    """A filter from elsewhere, named by its dotted path in settings."""

    name = "quota"

    @attrs.frozen
    class Options:
        per_day: int
        window: _Window = attrs.field(factory=_Window)

    def __init__(self, options: Quota.Options) -> None:
        self.options = options

    def request_headers(self, exchange: Any) -> None:
        pass


class _OptionsTestCase(SynchronousTestCase):
    """Reads options written as YAML in a real file, as an operator writes them."""

    def section(self, text: str) -> MapReader:
        """The mapping ``text`` as a filter's options, at ``filters[0].test``."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text or "{}\n")
        self.path = str(path)
        self.sink = ErrorSink()
        return MapReader(load_yaml_file(str(path)), "filters[0].test", Origin(str(path)),
                         self.sink)

    def read(self, cls: type, text: str) -> Any:
        """Read ``cls`` from ``text``; the errors are in ``self.errors()``."""
        return read_options(cls, self.section(text))

    def errors(self) -> list[str]:
        return [str(error) for error in self.sink.errors]


class SettingKeyTests(SynchronousTestCase):
    """Field names become camelCase keys."""

    def test_camel_case(self) -> None:
        """per_minute is perMinute; one-word names stay as they are."""
        self.assertEqual(setting_key("per_minute"), "perMinute")
        self.assertEqual(setting_key("max_upload_size"), "maxUploadSize")
        self.assertEqual(setting_key("limit"), "limit")


class FieldTypeTests(_OptionsTestCase):
    """Every supported field type, read from YAML."""

    def test_every_type(self) -> None:
        """Each kind of field reads its YAML value."""
        options = self.read(_Every, """\
name: alpha
enabled: true
count: 7
ratio: 2
mode: fast
tags: [a, b]
names: c
either: [d]
headers: {X-One: "1"}
labels: {team: ml}
window: {size: 2, unit: hour}
timeout: 1m30s
maxUpload: 64MiB
""")
        self.assertEqual(self.errors(), [])
        self.assertEqual(options, _Every(
            name="alpha", enabled=True, count=7, ratio=2.0, mode="fast", tags=("a", "b"),
            names=["c"], either=("d",), headers={"X-One": "1"}, labels={"team": "ml"},
            window=_Window(2, "hour"), timeout=90.0, max_upload=64 << 20))
        self.assertIsInstance(options.names, list)

    def test_negative_numbers(self) -> None:
        """Settings check a number's type only: its bounds are the options class's own."""
        options = self.read(_Every, "name: gamma\ncount: -2\n")
        self.assertEqual(self.errors(), [])
        self.assertEqual(options.count, -2)
        self.assertIsNone(self.read(_Every, "name: gamma\nratio: -0.5\n"))
        self.assertEqual(len(self.errors()), 1)

    def test_defaults(self) -> None:
        """Fields left out keep their defaults."""
        self.assertEqual(self.read(_Every, "name: beta\n"), _Every(name="beta"))
        self.assertEqual(self.errors(), [])

    def test_null_keeps_the_default(self) -> None:
        """A key written without a value keeps the field's default, as elsewhere in the
        settings."""
        options = self.read(_Every, "name: beta\ncount:\nmode: ~\nratio: null\ntags:\n")
        self.assertEqual(self.errors(), [])
        self.assertEqual(options, _Every(name="beta"))

    def test_null_required(self) -> None:
        """A required key written without a value is still missing."""
        self.assertIsNone(self.read(_Every, "name:\n"))
        self.assertEqual(self.errors(), [f"{self.path}:1: filters[0].test.name: required"])

    def test_numbers_as_durations_and_sizes(self) -> None:
        """Durations and sizes also take plain numbers (seconds, bytes)."""
        options = self.read(_Every, "name: x\ntimeout: 5\nmaxUpload: 2048\n")
        self.assertEqual((options.timeout, options.max_upload), (5.0, 2048))

    def test_literal_choice_case(self) -> None:
        """A Literal choice is matched regardless of case and kept as the class spells it."""
        self.assertEqual(self.read(_Methods, "verb: POST\n"), _Methods("POST"))
        self.assertEqual(self.read(_Methods, "verb: post\n"), _Methods("POST"))
        self.assertEqual(self.read(_Every, "name: x\nmode: FAST\n").mode, "fast")
        self.assertEqual(self.errors(), [])

    def test_literal_refused(self) -> None:
        """A value that is none of the choices is refused, listing them."""
        self.assertIsNone(self.read(_Every, "name: x\nmode: reckless\n"))
        self.assertEqual(self.errors(), [
            f'{self.path}:2: filters[0].test.mode: expected one of fast, safe; got "reckless"'])

    def test_fields_not_in_init_skipped(self) -> None:
        """A field the class sets itself is neither required nor a setting; a private field
        is set by its name without the underscore."""
        options = self.read(_Derived, "limit: 4\nsecret: s3\n")
        self.assertEqual(self.errors(), [])
        self.assertEqual((options.limit, options.doubled, options._secret), (4, 8, "s3"))
        self.read(_Derived, "doubled: 100\n")
        self.assertEqual(self.errors(), [f"{self.path}:1: filters[0].test.doubled: unknown "
                                         "setting (check the spelling; see the settings "
                                         "reference)"])

    def test_own_from_yaml(self) -> None:
        """A class with its own from_yaml reads itself, with its own problems."""
        self.assertEqual(self.read(_SelfRead, "custom: abc\n"), _SelfRead("ABC"))
        self.read(_SelfRead, "custom: bad\nother: 1\n")
        self.assertEqual(self.errors(), [
            f"{self.path}:1: filters[0].test.custom: not that one",
            f"{self.path}:2: filters[0].test.other: unknown setting (check the spelling; see "
            "the settings reference)"])

    def test_unsupported_field_type(self) -> None:
        """A field of a type settings cannot hold is the filter author's bug, named whether
        or not the operator sets it."""
        for text in ("handler: x\n", ""):
            with self.subTest(text=text):
                error = self.assertRaises(TypeError, self.read, _Unreadable, text)
                self.assertEqual(str(error), "_Unreadable.handler: an options field of type "
                                             "typing.Any cannot be read from settings")

    def test_unsupported_nested_field_type(self) -> None:
        """A nested class's unreadable field is found too, even when the section is absent."""
        error = self.assertRaises(TypeError, self.read, _Nesting, "")
        self.assertIn("_Unreadable.handler", str(error))


class ErrorTests(_OptionsTestCase):
    """What the operator is told, located by file, line and YAML path."""

    def test_required(self) -> None:
        """A field without default must be given."""
        self.assertIsNone(self.read(_Every, "count: 1\n"))
        self.assertEqual(self.errors(), [f"{self.path}:1: filters[0].test.name: required"])

    def test_unknown_keys(self) -> None:
        """A key no field reads is refused, the snake_case spelling of a field too."""
        self.assertIsNone(self.read(_Every, "name: x\nmax_upload: 1\ncolour: red\n"))
        self.assertEqual(self.errors(), [
            f"{self.path}:2: filters[0].test.max_upload: unknown setting (check the "
            "spelling; see the settings reference)",
            f"{self.path}:3: filters[0].test.colour: unknown setting (check the spelling; see "
            "the settings reference)"])

    def test_wrong_types(self) -> None:
        """Every wrongly typed value is reported, each at its own line and path."""
        self.assertIsNone(self.read(_Every, """\
name: 3
enabled: sometimes
count: many
ratio: high
tags: {a: 1}
headers: [x]
window: [1]
timeout: soon
maxUpload: huge
"""))
        self.assertEqual(self.errors(), [
            f"{self.path}:1: filters[0].test.name: expected a string, got 3",
            f'{self.path}:2: filters[0].test.enabled: expected true or false, got "sometimes"',
            f'{self.path}:3: filters[0].test.count: expected a whole number, got "many"',
            f'{self.path}:4: filters[0].test.ratio: expected a number, got "high"',
            f"{self.path}:5: filters[0].test.tags: expected a list of strings, got a mapping",
            f"{self.path}:6: filters[0].test.headers: expected a mapping, got a list",
            f"{self.path}:7: filters[0].test.window: expected a mapping, got a list",
            f"{self.path}:8: filters[0].test.timeout: expected a duration such as 5s, 10m or "
            "8766h (units ns us ms s m h)",
            f"{self.path}:9: filters[0].test.maxUpload: expected a size such as 8KiB, 64MiB "
            "or 2GiB",
        ])

    def test_nested_problems_at_their_path(self) -> None:
        """A problem inside a nested class is reported at its nested path."""
        self.assertIsNone(self.read(_Every, "name: x\nwindow:\n  size: 2\n  unit: week\n"))
        self.assertEqual(self.errors(), [
            f'{self.path}:4: filters[0].test.window.unit: expected one of minute, hour; '
            'got "week"'])

    def test_validator_refusal(self) -> None:
        """What the class's validator refuses is reported at the options' path."""
        self.assertIsNone(self.read(_Every, "name: x\nratio: 0\n"))
        self.assertEqual(self.errors(), [f"{self.path}:1: filters[0].test: ratio must be more "
                                         "than 0"])


class SettingsFileTests(SynchronousTestCase):
    """Options of a filter named by its dotted path, in a real settings file."""

    def build(self, text: str) -> tuple[Any, list[str], str]:
        """Read ``text``'s ``filters`` and build its first filter."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        sink = ErrorSink()
        section = MapReader(load_yaml_file(str(path)), "", Origin(str(path)), sink)
        runner = next(section.sections("runners"))
        specs = read_filter_specs(runner, "filters", ())
        built = build_filter(specs[-1], None, sink)  # type: ignore[arg-type]
        return built, [str(error) for error in sink.errors], str(path)

    def test_options_read(self) -> None:
        """A dotted-path filter gets its Options instance, nested values and all."""
        built, errors, _ = self.build(f"""\
runners:
  - name: local
    filters:
      - {__name__}.Quota:
          perDay: 100
          window: {{unit: hour}}
""")
        self.assertEqual(errors, [])
        self.assertEqual(built.options, Quota.Options(per_day=100, window=_Window(10, "hour")))

    def test_errors_located(self) -> None:
        """Each problem names the file, the line and the YAML path down to the key."""
        built, errors, path = self.build(f"""\
runners:
  - name: local
    filters:
      - token
      - {__name__}.Quota:
          perDya: 100
          window:
            unit: fortnight
""")
        self.assertIsNone(built)
        prefix = f'runners[0].filters[1]["{__name__}.Quota"]'
        self.assertEqual(errors, [
            f"{path}:6: {prefix}.perDay: required",
            f'{path}:8: {prefix}.window.unit: expected one of minute, hour; got "fortnight"',
            f"{path}:6: {prefix}.perDya: unknown setting (check the spelling; see the "
            "settings reference)",
        ])

    def test_filter_from_settings_reports_the_same(self) -> None:
        """The test harness reports a filter's options problems as the loader does."""
        error = self.assertRaises(ConfigErrors, filter_from_settings, f"{__name__}.Quota",
                                  {"perDay": "lots"})
        self.assertEqual([e.path for e in error.errors],
                         [f'filters[0]["{__name__}.Quota"].perDay'])
        self.assertEqual(filter_from_settings(f"{__name__}.Quota", {"perDay": 3}).options,
                         Quota.Options(per_day=3))
