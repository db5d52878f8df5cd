"""Writing a key pair: the private half never readable by others, nothing overwritten unless
asked, and nothing half-written left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.keyfiles import check_absent, write_key_pair

__all__ = ["CheckAbsentTests", "WriteKeyPairTests"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class WriteKeyPairTests(SynchronousTestCase):
    """``write_key_pair`` as ``runnergw keygen`` and the development keys use it."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp())
        self.private = self.directory / "private" / "key.pem"
        self.public = self.directory / "public" / "key.pub"

    def umask(self, mask: int) -> None:
        previous = os.umask(mask)
        self.addCleanup(os.umask, previous)

    def test_both_files_written_with_their_modes(self) -> None:
        """The private half is 0600 and the public half 0644, in directories made for them."""
        self.umask(0o022)
        write_key_pair(self.private, b"private\n", self.public, b"public\n")
        self.assertEqual(self.private.read_bytes(), b"private\n")
        self.assertEqual(self.public.read_bytes(), b"public\n")
        self.assertEqual((_mode(self.private), _mode(self.public)), (0o600, 0o644))

    def test_permissive_umask_keeps_the_private_key_private(self) -> None:
        """Even under umask 0 the private key is created owner-only, never opened wider
        first."""
        self.umask(0)
        write_key_pair(self.private, b"private\n", self.public, b"public\n")
        self.assertEqual(_mode(self.private), 0o600)
        self.assertEqual(_mode(self.public), 0o644)

    def test_existing_files_left_alone(self) -> None:
        """Without ``overwrite`` an existing file of the pair stops the write before anything
        is written, naming the file."""
        self.public.parent.mkdir(parents=True)
        self.public.write_bytes(b"keep me\n")
        error = self.assertRaises(FileExistsError, write_key_pair,
                                  self.private, b"private\n", self.public, b"public\n")
        self.assertEqual(error.filename, str(self.public))
        self.assertFalse(self.private.exists())
        self.assertEqual(self.public.read_bytes(), b"keep me\n")

    def test_overwrite_replaces_with_fresh_modes(self) -> None:
        """``overwrite`` replaces both files; a private key that was made readable by others
        comes back 0600, and no temporary file is left beside it."""
        self.umask(0o022)
        write_key_pair(self.private, b"old private\n", self.public, b"old public\n")
        self.private.chmod(0o644)
        write_key_pair(self.private, b"new private\n", self.public, b"new public\n",
                       overwrite=True)
        self.assertEqual(self.private.read_bytes(), b"new private\n")
        self.assertEqual(self.public.read_bytes(), b"new public\n")
        self.assertEqual(_mode(self.private), 0o600)
        self.assertEqual(os.listdir(self.private.parent), ["key.pem"])
        self.assertEqual(os.listdir(self.public.parent), ["key.pub"])

    def test_failed_overwrite_leaves_no_temporary_file(self) -> None:
        """A replacement that cannot be moved into place (a directory stands there) fails
        with an OSError and leaves no temporary copy of the key behind."""
        self.private.mkdir(parents=True)
        self.assertRaises(OSError, write_key_pair, self.private, b"private\n",
                          self.public, b"public\n", overwrite=True)
        self.assertEqual(os.listdir(self.private.parent), ["key.pem"])
        self.assertTrue(self.private.is_dir())


class CheckAbsentTests(SynchronousTestCase):
    """``check_absent``: refuse before generating anything."""

    def test_absent_files_pass(self) -> None:
        """Missing files are fine."""
        directory = Path(self.mktemp())
        check_absent(directory / "a", directory / "b")

    def test_first_existing_file_named(self) -> None:
        """The first file that exists is named in the error, with EEXIST."""
        directory = Path(self.mktemp())
        directory.mkdir()
        (directory / "b").write_text("")
        (directory / "c").write_text("")
        error = self.assertRaises(FileExistsError, check_absent, directory / "a",
                                  directory / "b", directory / "c")
        self.assertEqual(error.filename, str(directory / "b"))
        self.assertIn("exists", str(error))
