"""Settings YAML: every key and item knows its file and line, a key written twice is refused,
and an overlay file lies over the base key by key."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError, ConfigErrors, Origin
from runnergw.config.load import load_settings
from runnergw.config.yamlfile import MarkedMap, load_yaml_file, overlay, set_override

__all__ = ["LoadYamlFileTests", "OverlayTests", "SetOverrideTests"]


class _FileTestCase(SynchronousTestCase):
    def write(self, text: str | bytes, name: str = "settings.yaml") -> str:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return str(path)

    def refused(self, text: str | bytes) -> str:
        """The one error loading ``text`` gives, with the file named ``settings.yaml``."""
        path = self.write(text)
        error = self.assertRaises(ConfigError, load_yaml_file, path)
        return str(error).replace(path, "settings.yaml")


class LoadYamlFileTests(_FileTestCase):
    """``load_yaml_file``."""

    def test_origins_of_keys_and_items(self) -> None:
        """Each mapping, key and list item carries the file and line it was written on."""
        path = self.write("server:\n  address: x\nrunners:\n  - host: a\n\n  - host: b\n")
        data = load_yaml_file(path)
        self.assertEqual(data.origin, Origin(path, 1))
        self.assertEqual(data.key_origins["runners"], Origin(path, 3))
        self.assertEqual(data["server"].key_origins["address"], Origin(path, 2))
        runners = data["runners"]
        self.assertEqual(runners.item_origins, [Origin(path, 4), Origin(path, 6)])
        self.assertEqual(runners[1].origin, Origin(path, 6))
        self.assertEqual(runners[1], {"host": "b"})

    def test_empty_file(self) -> None:
        """An empty file is an empty mapping (every default), located at its first line."""
        path = self.write("# nothing yet\n")
        data = load_yaml_file(path)
        self.assertEqual((data, data.origin, data.key_origins), ({}, Origin(path, 1), {}))

    def test_duplicate_keys_refused(self) -> None:
        """A key written twice in one mapping is an error at the second one (YAML would keep
        the last silently)."""
        self.assertEqual(self.refused("server:\n  address: a\n  address: b\n"),
                         "settings.yaml:3: address: duplicate key")

    def test_duplicate_keys_refused_in_a_whole_file(self) -> None:
        """Loading settings with a section written twice reports the duplicate."""
        path = self.write("logging:\n  level: debug\nrunners: []\nlogging:\n  level: info\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(path, {})
        self.assertIn("duplicate key", str(caught.exception.errors[0]))

    def test_keys_must_be_strings(self) -> None:
        """A number or a list as a key is refused where it is written."""
        self.assertEqual(self.refused("server:\n  8443: x\n"),
                         "settings.yaml:2: keys must be strings, got 8443")

    def test_invalid_yaml_names_the_line(self) -> None:
        """Broken YAML is reported with its line."""
        error = self.refused("server:\n  address: [unclosed\nrunners: []\n")
        self.assertRegex(error, r"^settings\.yaml:\d+: invalid YAML: ")

    def test_top_level_must_be_a_mapping(self) -> None:
        """A file holding a list or a scalar is refused at line 1."""
        for text in ("- a\n- b\n", "just text\n"):
            with self.subTest(text=text):
                self.assertEqual(self.refused(text), "settings.yaml:1: the settings file "
                                                     "must be a mapping of sections")

    def test_not_utf8(self) -> None:
        """A file that is not UTF-8 text is named as such."""
        self.assertEqual(self.refused(b"server:\n  address: \xff\n"),
                         "settings.yaml: settings file is not UTF-8 text")

    def test_unreadable(self) -> None:
        """A missing file is one error naming it."""
        path = str(Path(self.mktemp()) / "settings.yaml")
        error = self.assertRaises(ConfigError, load_yaml_file, path)
        self.assertEqual(str(error), f"{path}: cannot read settings file: "
                                     "No such file or directory")

    def test_only_safe_tags(self) -> None:
        """Python object tags are refused: settings are data, never code."""
        self.assertIn("invalid YAML",
                      self.refused("server: !!python/object/apply:os.system [true]\n"))


class OverlayTests(_FileTestCase):
    """``overlay``: a file laid over another (``GO_ENV``)."""

    def test_mappings_merge_and_the_rest_is_replaced(self) -> None:
        """Sections merge key by key; lists and values are replaced whole; each key keeps
        the origin of the file it came from; the base is left as it was."""
        base_path = self.write("server:\n  address: a\n  keyPath: k\nrunners:\n  - host: a\n")
        top_path = self.write("server:\n  address: b\nrunners:\n  - host: b\n", "prod.yaml")
        base, top = load_yaml_file(base_path), load_yaml_file(top_path)
        merged = overlay(base, top)
        self.assertEqual(merged, {"server": {"address": "b", "keyPath": "k"},
                                  "runners": [{"host": "b"}]})
        self.assertEqual(merged["server"].key_origins["address"], Origin(top_path, 2))
        self.assertEqual(merged["server"].key_origins["keyPath"], Origin(base_path, 3))
        self.assertEqual(merged.key_origins["runners"], Origin(top_path, 3))
        self.assertEqual(base["server"]["address"], "a")

    def test_mapping_over_a_value(self) -> None:
        """A section written where the base had a plain value replaces it."""
        base = load_yaml_file(self.write("audit: off\n"))
        top = load_yaml_file(self.write("audit:\n  path: x\n", "prod.yaml"))
        self.assertEqual(overlay(base, top), {"audit": {"path": "x"}})


class SetOverrideTests(SynchronousTestCase):
    """``set_override``: an environment variable's value put at its place."""

    def test_sets_and_creates_sections(self) -> None:
        """The value lands at its dotted place, sections made as needed, with the
        variable as its origin."""
        root = MarkedMap()
        root.origin, root.key_origins = Origin("settings.yaml", 1), {}
        origin = Origin("environment variable SERVER_ID")
        set_override(root, ("pipelines", "serverId"), "base64:x", origin)
        self.assertEqual(root, {"pipelines": {"serverId": "base64:x"}})
        self.assertEqual(root.key_origins["pipelines"], origin)
        self.assertEqual(root["pipelines"].key_origins["serverId"], origin)
        self.assertEqual(root["pipelines"].origin, origin)

    def test_replaces_a_value_and_keeps_its_section(self) -> None:
        """An existing section keeps its other keys and their origins."""
        root = MarkedMap()
        root.origin, root.key_origins = Origin("s.yaml", 1), {"server": Origin("s.yaml", 1)}
        server = MarkedMap(address="a", keyPath="k")
        server.origin = Origin("s.yaml", 1)
        server.key_origins = {"address": Origin("s.yaml", 2), "keyPath": Origin("s.yaml", 3)}
        root["server"] = server
        set_override(root, ("server", "address"), ":9443", Origin("environment"))
        self.assertEqual(root["server"], {"address": ":9443", "keyPath": "k"})
        self.assertEqual(server.key_origins["keyPath"], Origin("s.yaml", 3))
        self.assertEqual(root.key_origins["server"], Origin("s.yaml", 1))
