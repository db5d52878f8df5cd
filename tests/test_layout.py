"""Which package may import which: model descriptors stand on their own, running jobs knows
nothing of the terminals nor of how descriptors are read, and the launcher process imports
the standard library only. Tests mirror the sources: each module has its own test module."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

__all__ = ["LayoutTests", "TestMirrorTests"]

_ROOT = Path(__file__).resolve().parents[1]


def _imports(package: str, root: Path = _ROOT) -> Iterator[tuple[str, str]]:
    """(module, imported name) for every import in a package under ``root``, relative ones
    resolved, those under ``if TYPE_CHECKING:`` included."""
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield name, alias.name
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = name.rsplit(".", node.level)[0]
                    base = f"{parent}.{base}" if base else parent
                yield name, base
                for alias in node.names:
                    yield name, f"{base}.{alias.name}"


def _offending(package: str, forbidden: tuple[str, ...], root: Path = _ROOT) -> list[str]:
    """Every import in ``package`` of a module in or under ``forbidden``."""
    return [f"{module} imports {imported}" for module, imported in _imports(package, root)
            if any(imported == f or imported.startswith(f"{f}.") for f in forbidden)]


class LayoutTests(SynchronousTestCase):
    """A newcomer finds each concept in one package, with no cycle between them."""

    def test_models_import_neither_jobs_nor_terminals(self) -> None:
        """Reading a descriptor needs no job launcher and no HTTP terminal."""
        self.assertEqual(_offending("runnergw.models",
                                    ("runnergw.jobs", "runnergw.terminals")), [])

    def test_jobs_import_neither_terminals_nor_descriptor_reading(self) -> None:
        """Running a job needs no terminal and no descriptor file."""
        self.assertEqual(_offending("runnergw.jobs", (
            "runnergw.terminals", "runnergw.models.reader", "runnergw.models.loading",
            "runnergw.models.fields", "runnergw.models.values",
            "runnergw.models.located_json")), [])

    def test_the_launcher_process_imports_the_standard_library_only(self) -> None:
        """``launcherd.py`` runs as ``python -I -S launcherd.py``: no site-packages, no
        runnergw."""
        imported = {name.split(".")[0] for module, name in _imports("runnergw.jobs")
                    if module == "runnergw.jobs.launcherd"}
        self.assertEqual(imported - set(sys.stdlib_module_names) - {"__future__"}, set())

    def test_a_forbidden_import_is_seen(self) -> None:
        """The check finds plain, relative and type-checking-only imports alike."""
        root = Path(self.mktemp())
        package = root / "pkg" / "models"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "a.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "import pkg.jobs.x\n"
            "from ..jobs import y\n"
            "if TYPE_CHECKING:\n"
            "    from pkg.terminals.z import Z\n")
        self.assertEqual(_offending("pkg.models", ("pkg.jobs", "pkg.terminals"), root), [
            "pkg.models.a imports pkg.jobs.x",
            "pkg.models.a imports pkg.jobs",
            "pkg.models.a imports pkg.jobs.y",
            "pkg.models.a imports pkg.terminals.z",
            "pkg.models.a imports pkg.terminals.z.Z",
        ])


def _untested(root: Path = _ROOT) -> list[str]:
    """Every module of ``runnergw`` (under ``root``) without ``tests/…/test_<module>.py``."""
    missing = []
    for path in sorted((root / "runnergw").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        relative = path.relative_to(root / "runnergw")
        expected = Path("tests", *relative.parent.parts, f"test_{relative.name}")
        if not (root / expected).is_file():
            missing.append(f"{Path('runnergw', relative)} has no {expected}")
    return missing


class TestMirrorTests(SynchronousTestCase):
    """A newcomer finds the tests of ``runnergw/x/y.py`` in ``tests/x/test_y.py``."""

    def test_every_module_has_its_test_module(self) -> None:
        """No module of the package is without a test module of its own."""
        self.assertEqual(_untested(), [])

    def test_a_module_without_tests_is_seen(self) -> None:
        """A module whose test module is missing (or elsewhere) is named."""
        root = Path(self.mktemp())
        for name in ("runnergw/__init__.py", "runnergw/a.py", "runnergw/sub/b.py",
                     "runnergw/sub/c.py", "tests/test_a.py", "tests/test_b.py",
                     "tests/sub/test_c.py"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("")
        self.assertEqual(_untested(root), ["runnergw/sub/b.py has no tests/sub/test_b.py"])
