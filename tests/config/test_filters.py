"""A ``filters`` list: names, or names with their options, each located in its file."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import Origin
from runnergw.config.filters import FilterSpec, filter_names, read_filter_specs
from runnergw.config.reader import ErrorSink, MapReader
from runnergw.config.yamlfile import load_yaml_file

__all__ = ["ReadFilterSpecsTests"]


class ReadFilterSpecsTests(SynchronousTestCase):
    """``read_filter_specs`` over a runner's section of a real YAML file."""

    def read(self, text: str,
             default: tuple[str, ...] = ("token", "audit")) -> tuple[FilterSpec, ...]:
        """Read ``filters`` of the first runner in ``text``; problems go to ``self.errors``."""
        path = Path(self.mktemp())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.path = str(path)
        self.sink = ErrorSink()
        root = MapReader(load_yaml_file(self.path), "", Origin(self.path), self.sink)
        runner = next(root.sections("runners"))
        return read_filter_specs(runner, "filters", default)

    @property
    def errors(self) -> list[str]:
        return [str(error) for error in self.sink.errors]

    def test_names(self) -> None:
        """A list of names gives a spec per name, in order, each at its own line."""
        specs = self.read("runners:\n  - name: a\n    filters:\n      - token\n      - role\n")
        self.assertEqual(filter_names(specs), ("token", "role"))
        self.assertEqual([spec.path for spec in specs],
                         ["runners[0].filters[0]", "runners[0].filters[1]"])
        self.assertEqual([spec.origin for spec in specs],
                         [Origin(self.path, 4), Origin(self.path, 5)])
        self.assertEqual([spec.options for spec in specs], [None, None])
        self.assertEqual(self.errors, [])

    def test_one_name(self) -> None:
        """A single name stands for a one-filter list."""
        specs = self.read("runners:\n  - name: a\n    filters: audit\n")
        self.assertEqual(filter_names(specs), ("audit",))
        self.assertEqual(specs[0].path, "runners[0].filters[0]")

    def test_with_options(self) -> None:
        """{name: options} keeps the options as written, with their own origins."""
        specs = self.read("runners:\n  - name: a\n    filters:\n      - token\n"
                          "      - my.filters.Quota:\n          perDay: 10\n")
        quota = specs[1]
        self.assertEqual(quota.name, "my.filters.Quota")
        self.assertEqual(dict(quota.options or {}), {"perDay": 10})
        self.assertEqual(quota.options.key_origins["perDay"], Origin(self.path, 6))
        self.assertEqual((quota.path, quota.origin), ("runners[0].filters[1]",
                                                      Origin(self.path, 5)))

    def test_with_null_options(self) -> None:
        """{name: null} is the name alone."""
        specs = self.read("runners:\n  - name: a\n    filters:\n      - rewrite:\n")
        self.assertEqual((specs[0].name, specs[0].options), ("rewrite", None))
        self.assertEqual(self.errors, [])

    def test_absent_gives_the_defaults(self) -> None:
        """Without a filters key the route's default chain is used."""
        specs = self.read("runners:\n  - name: a\n")
        self.assertEqual(filter_names(specs), ("token", "audit"))
        self.assertEqual(specs[1].path, "runners[0].filters[1]")

    def test_empty_list(self) -> None:
        """An empty list is a chain without filters."""
        self.assertEqual(self.read("runners:\n  - name: a\n    filters: []\n"), ())
        self.assertEqual(self.errors, [])

    def test_bad_items_located(self) -> None:
        """Each bad item is reported at its own line and index; the good ones are kept."""
        specs = self.read("""\
runners:
  - name: a
    filters:
      - token
      - 3
      - ""
      - {role: null, audit: null}
      - rewrite: [x]
      - audit
""")
        self.assertEqual(filter_names(specs), ("token", "audit"))
        self.assertEqual(specs[1].path, "runners[0].filters[5]")
        self.assertEqual(self.errors, [
            f"{self.path}:5: runners[0].filters[1]: expected a filter name or "
            "{name: options}, got 3",
            f'{self.path}:6: runners[0].filters[2]: expected a filter name or '
            '{name: options}, got ""',
            f"{self.path}:7: runners[0].filters[3]: expected a filter name or "
            "{name: options}, got a mapping",
            f"{self.path}:8: runners[0].filters[4].rewrite: expected the filter's options as "
            "a mapping, got a list",
        ])

    def test_not_a_list(self) -> None:
        """A mapping where the list belongs is refused at the key."""
        self.assertEqual(self.read("runners:\n  - name: a\n    filters: {token: null}\n"), ())
        self.assertEqual(self.errors, [f"{self.path}:3: runners[0].filters: expected a list of "
                                       "filters, got a mapping"])

    def test_specs_compare_by_name(self) -> None:
        """Two specs of one filter are equal wherever they were written."""
        self.assertEqual(FilterSpec("token", None, "a[0]", Origin("x", 1)),
                         FilterSpec("token", None, "b[3]", Origin("y", 9)))
