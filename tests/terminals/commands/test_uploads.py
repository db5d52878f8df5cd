"""Tests for runnergw.terminals.commands.uploads: real multipart bodies, fed in pieces."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
import tracemalloc
from collections.abc import Iterable, Iterator

from twisted.internet.error import ConnectionLost
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from runnergw.terminals.commands.uploads import (
    MultipartReceiver,
    ReceivedForm,
    UploadError,
    UploadLimits,
)

BOUNDARY = "----runnergwTestBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
SEED = 20240611
MIB = 1 << 20


def part(headers: Iterable[str], data: bytes) -> bytes:
    """One part, without its delimiter: header lines, a blank line, the data."""
    head = "".join(f"{line}\r\n" for line in headers).encode("utf-8")
    return head + b"\r\n" + data


def text_part(name: str, value: str | bytes) -> bytes:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return part([f'Content-Disposition: form-data; name="{name}"'], data)


def file_part(name: str, filename: str | None, content_type: str | None, data: bytes) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    headers = [disposition]
    if content_type is not None:
        headers.append(f"Content-Type: {content_type}")
    return part(headers, data)


def body(parts: Iterable[bytes], boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart body: each part after ``--boundary CRLF``, then the closing delimiter."""
    delimiter = f"--{boundary}".encode("ascii")
    out = b"".join(delimiter + b"\r\n" + each + b"\r\n" for each in parts)
    return out + delimiter + b"--\r\n" if close else out


def pieces(data: bytes, rng: random.Random, largest: int) -> Iterator[bytes]:
    """``data`` cut into random-sized pieces of 1 to ``largest`` bytes."""
    offset = 0
    while offset < len(data):
        size = rng.randint(1, largest)
        yield data[offset : offset + size]
        offset += size


def open_files_under(directory: str) -> list[str]:
    """Files under ``directory`` that this process holds open."""
    fd_directory = "/proc/self/fd"
    if not os.path.isdir(fd_directory):
        raise SkipTest("needs /proc/self/fd to see open files")
    root = os.path.realpath(directory) + os.sep
    found = []
    for fd in os.listdir(fd_directory):
        try:
            target = os.readlink(os.path.join(fd_directory, fd))
        except OSError:
            continue
        if target.startswith(root):
            found.append(target)
    return found


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


TRICKY = b"\r\n--" + BOUNDARY[:-1].encode() + b"\r\n-\r\n--\r\r\n\n--" + BOUNDARY.encode() + b"x"
"""Bytes that look like a delimiter without being one (the last is followed by ``x``)."""


class ReceiverTestCase(SynchronousTestCase):
    """Helpers shared by the test cases: a fresh job directory, receivers, feeding."""

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)

    def limits(self, **changes: object) -> UploadLimits:
        options: dict[str, object] = {
            "upload_fields": frozenset({"media", "subtitles"}),
            "max_file_bytes": {"media": 32 * MIB, "subtitles": MIB},
            "accepted_types": {"media": ("audio/*",), "subtitles": ("text/plain",)},
        }
        options.update(changes)
        return UploadLimits(**options)  # type: ignore[arg-type]

    def receiver(self, limits: UploadLimits | None = None) -> MultipartReceiver:
        return MultipartReceiver(CONTENT_TYPE, self.directory, limits or self.limits())

    def feed(
        self,
        receiver: MultipartReceiver,
        data: bytes,
        largest: int = 4096,
        seed: int = SEED,
        done: bool = True,
    ) -> None:
        for piece in pieces(data, random.Random(seed), largest):
            receiver.body_data(piece)
        if done:
            receiver.body_done()

    def refused(self, receiver: MultipartReceiver, status: int) -> UploadError:
        error = self.failureResultOf(receiver.result, UploadError).value
        self.assertEqual(error.status, status, error.detail)
        self.assertEqual(open_files_under(self.directory), [])
        return error

    def form(self, receiver: MultipartReceiver) -> ReceivedForm:
        result = self.successResultOf(receiver.result)
        self.assertEqual(open_files_under(self.directory), [])
        return result


class RoundTripTests(ReceiverTestCase):
    """Well-formed bodies come out byte-exact."""

    def sample(self, media: bytes, subtitles: bytes) -> bytes:
        input_form = json.dumps({"language": "fr", "gain": 3, "note": "é\u2603"})
        return body(
            [
                text_part("input_form", input_form),
                file_part("media", "Song.MP3", "audio/mpeg", media),
                text_part("command", "ffmpeg -i <media> <output>"),
                file_part("subtitles", "subs.txt", "text/plain; charset=utf-8", subtitles),
            ]
        )

    def check(self, form: ReceivedForm, media: bytes, subtitles: bytes) -> None:
        self.assertEqual(
            dict(form.fields),
            {
                "input_form": json.dumps({"language": "fr", "gain": 3, "note": "é\u2603"}),
                "command": "ffmpeg -i <media> <output>",
            },
        )
        self.assertEqual(set(form.uploads), {"media", "subtitles"})
        for field, data, content_type, extension in [
            ("media", media, "audio/mpeg", ".mp3"),
            ("subtitles", subtitles, "text/plain", ".txt"),
        ]:
            upload = form.uploads[field]
            self.assertEqual(upload.field, field)
            self.assertEqual(upload.size, len(data))
            self.assertEqual(upload.content_type, content_type)
            self.assertTrue(upload.filename_given)
            self.assertEqual(os.path.dirname(upload.path), self.directory)
            self.assertRegex(
                os.path.basename(upload.path), rf"\A{field}-[0-9a-f]{{16}}{re.escape(extension)}\Z"
            )
            self.assertEqual(stat.S_IMODE(os.stat(upload.path).st_mode), 0o600)
            self.assertEqual(file_sha256(upload.path), sha256(data))

    def test_byte_by_byte(self) -> None:
        """A small body fed one byte at a time, with empty pieces in between."""
        media = b"ID3" + TRICKY + bytes(range(256))
        subtitles = TRICKY + "1\r\n00:00 --> 00:01\r\nçà\r\n".encode()
        data = self.sample(media, subtitles)
        receiver = self.receiver()
        for index in range(len(data)):
            receiver.body_data(data[index : index + 1])
            receiver.body_data(b"")
        self.assertEqual(receiver.bytes_received, len(data))
        receiver.body_done()
        self.check(self.form(receiver), media, subtitles)

    def test_random_pieces(self) -> None:
        """Larger files cut into random-sized pieces."""
        rng = random.Random(SEED)
        media = b"ID3" + rng.randbytes(300_000) + TRICKY + rng.randbytes(70_000)
        subtitles = (TRICKY + b"line\r\n") * 500
        data = self.sample(media, subtitles)
        receiver = self.receiver()
        self.feed(receiver, data, largest=9000)
        self.assertEqual(receiver.bytes_received, len(data))
        self.check(self.form(receiver), media, subtitles)

    def test_preamble_epilogue_and_empty_form(self) -> None:
        """A preamble and an epilogue are ignored; a body with no part is an empty form."""
        receiver = self.receiver()
        data = b"preamble\r\n" + body([text_part("command", "x")]) + b"epilogue\r\n"
        self.feed(receiver, data, largest=7)
        self.assertEqual(dict(self.form(receiver).fields), {"command": "x"})

        receiver = self.receiver()
        self.feed(receiver, body([]))
        form = self.form(receiver)
        self.assertEqual((dict(form.fields), dict(form.uploads)), ({}, {}))

    def test_upload_without_filename(self) -> None:
        """A file part without ``filename`` (``curl -F media=<file``) is still an upload."""
        receiver = self.receiver()
        self.feed(receiver, body([file_part("media", None, "audio/ogg", b"OggS")]))
        upload = self.form(receiver).uploads["media"]
        self.assertFalse(upload.filename_given)
        self.assertRegex(os.path.basename(upload.path), r"\Amedia-[0-9a-f]{16}\Z")
        self.assertEqual((upload.size, upload.content_type), (4, "audio/ogg"))

    def test_wildcard_type_accepted(self) -> None:
        """``audio/*`` accepts any audio subtype, compared lower-cased without parameters."""
        receiver = self.receiver()
        wav = b"RIFF\x00\x00\x00\x00WAVE"
        data = body([file_part("media", "a.wav", "Audio/X-WAV; rate=44100", wav)])
        self.feed(receiver, data)
        self.assertEqual(self.form(receiver).uploads["media"].content_type, "audio/x-wav")

    def test_no_type_restriction(self) -> None:
        """An empty tuple of accepted types accepts anything, even a part with no type."""
        receiver = self.receiver(self.limits(accepted_types={"media": ()}))
        self.feed(receiver, body([file_part("media", "a.bin", None, b"\x00\x01")]))
        self.assertEqual(self.form(receiver).uploads["media"].content_type, "text/plain")


class MemoryTests(ReceiverTestCase):
    """A large upload streams to disk."""

    def test_twenty_mebibytes_bounded_memory(self) -> None:
        """20 MiB in 64 KiB pieces: traced memory grows by far less than the file."""
        piece_size = 64 * 1024
        count = 20 * MIB // piece_size
        rng = random.Random(SEED)
        blocks = [rng.randbytes(piece_size) for _ in range(4)]
        blocks[0] = b"fLaC" + blocks[0][4:]  # the file starts like the FLAC it claims to be
        head = body([text_part("input_form", "{}")], close=False)
        head += f"--{BOUNDARY}\r\n".encode() + file_part("media", "big.flac", "audio/flac", b"")
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        expected = hashlib.sha256()
        receiver = self.receiver()

        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            receiver.body_data(head)
            for index in range(count):
                block = blocks[index % len(blocks)]
                expected.update(block)
                receiver.body_data(block)
            receiver.body_data(tail)
            receiver.body_done()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        self.assertLess(peak - baseline, 4 * MIB)
        upload = self.form(receiver).uploads["media"]
        self.assertEqual(upload.size, 20 * MIB)
        self.assertEqual(file_sha256(upload.path), expected.hexdigest())


class RefusalTests(ReceiverTestCase):
    """Limits are enforced while receiving."""

    def test_file_too_large_refused_while_receiving(self) -> None:
        """A file over its limit fails ``result`` with 413 before the body ends."""
        receiver = self.receiver(self.limits(max_file_bytes={"media": 1000, "subtitles": 10}))
        data = body([file_part("media", "a.mp3", "audio/mpeg", b"m" * 5000)])
        chunks = list(pieces(data, random.Random(SEED), 100))
        saw_open_file = False
        fed = 0
        for chunk in chunks:
            receiver.body_data(chunk)
            fed += 1
            if receiver.result.called:
                break
            saw_open_file = saw_open_file or bool(open_files_under(self.directory))
        self.assertTrue(saw_open_file)
        self.assertLess(fed, len(chunks))
        error = self.refused(receiver, 413)
        self.assertIn("media", error.detail)
        (name,) = os.listdir(self.directory)
        self.assertLessEqual(os.path.getsize(os.path.join(self.directory, name)), 1000)
        # Whatever the caller still passes on is ignored.
        for chunk in chunks[fed:]:
            receiver.body_data(chunk)
        receiver.body_done()
        self.assertLessEqual(os.path.getsize(os.path.join(self.directory, name)), 1000)

    def test_file_at_limit_accepted(self) -> None:
        """A file of exactly its limit is accepted."""
        receiver = self.receiver(self.limits(max_file_bytes={"media": 1000, "subtitles": 10}))
        media = b"ID3" + b"m" * 997
        self.feed(receiver, body([file_part("media", "a.mp3", "audio/mpeg", media)]))
        self.assertEqual(self.form(receiver).uploads["media"].size, 1000)

    def test_text_field_too_large(self) -> None:
        """A text part over ``max_field_bytes`` is refused with 413."""
        receiver = self.receiver(self.limits(max_field_bytes=100))
        self.feed(receiver, body([text_part("input_form", "x" * 101)]), done=False)
        self.refused(receiver, 413)

    def test_too_many_parts(self) -> None:
        """More than ``max_parts`` parts is refused with 400."""
        receiver = self.receiver(self.limits(max_parts=3))
        self.feed(receiver, body([text_part(f"f{index}", "v") for index in range(3)]))
        self.assertEqual(len(self.form(receiver).fields), 3)

        receiver = self.receiver(self.limits(max_parts=3))
        self.feed(receiver, body([text_part(f"f{index}", "v") for index in range(4)]), done=False)
        self.refused(receiver, 400)

    def test_duplicate_field(self) -> None:
        """A name given twice is refused with 400, for text and for file parts."""
        receiver = self.receiver()
        self.feed(receiver, body([text_part("command", "a"), text_part("command", "b")]))
        self.assertIn("duplicate", self.refused(receiver, 400).detail)

        receiver = self.receiver()
        media = file_part("media", "a.mp3", "audio/mpeg", b"ID3x")
        self.feed(receiver, body([media, media]))
        self.assertIn("duplicate", self.refused(receiver, 400).detail)

    def test_unexpected_file_field(self) -> None:
        """A file part for a name that is not an upload field is refused with 400."""
        receiver = self.receiver()
        self.feed(receiver, body([file_part("input_form", "f.json", "application/json", b"{}")]))
        error = self.refused(receiver, 400)
        self.assertIn("unexpected file field", error.detail)
        self.assertEqual(os.listdir(self.directory), [])

    def test_wrong_content_type(self) -> None:
        """A file whose type is not accepted is refused with 415; none is written."""
        receiver = self.receiver()
        self.feed(receiver, body([file_part("media", "a.mp3", "video/mp4", b"x")]))
        self.refused(receiver, 415)
        self.assertEqual(os.listdir(self.directory), [])

        receiver = self.receiver()
        self.feed(receiver, body([file_part("subtitles", "a.txt", "text/plain2", b"x")]))
        self.refused(receiver, 415)

        receiver = self.receiver()
        self.feed(receiver, body([file_part("media", "a.mp3", None, b"x")]))
        self.refused(receiver, 415)

    def test_content_not_matching_its_declared_type(self) -> None:
        """An SVG declared as ``image/png`` is refused with 415 once its part ends."""
        limits = self.limits(
            upload_fields=frozenset({"image"}),
            max_file_bytes={"image": MIB},
            accepted_types={"image": ("image/png",)},
        )
        receiver = self.receiver(limits)
        svg = (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
               b'height="10"><rect width="10" height="10"/></svg>')
        self.feed(receiver, body([file_part("image", "x.png", "image/png", svg)]))
        error = self.refused(receiver, 415)
        self.assertEqual(error.detail, "the content of image is not image/png")

    def test_content_of_a_type_without_signature_not_checked(self) -> None:
        """A type outside the table of magic bytes is accepted whatever its bytes."""
        receiver = self.receiver()
        data = b"not audio at all\x00\xff"
        self.feed(receiver, body([file_part("media", "a.bin", "audio/x-test", data)]))
        upload = self.form(receiver).uploads["media"]
        self.assertEqual((upload.content_type, upload.size), ("audio/x-test", len(data)))
        self.assertEqual(file_sha256(upload.path), sha256(data))

    def test_part_headers_too_large(self) -> None:
        """Part headers over ``max_header_bytes`` are refused with 400, one line or many."""
        receiver = self.receiver(self.limits(max_header_bytes=256))
        long_name = "n" * 300
        self.feed(receiver, body([text_part(long_name, "v")]), largest=50, done=False)
        self.refused(receiver, 400)

        receiver = self.receiver(self.limits(max_header_bytes=256))
        padding = [f"X-Pad-{index}: {'p' * 40}" for index in range(5)]
        headers = ['Content-Disposition: form-data; name="a"', *padding]
        self.feed(receiver, body([part(headers, b"v")]), done=False)
        self.refused(receiver, 400)

    def test_text_not_utf8(self) -> None:
        """A text part that is not UTF-8 is refused with 400."""
        receiver = self.receiver()
        self.feed(receiver, body([text_part("input_form", b"\xff\xfe")]))
        self.refused(receiver, 400)

    def test_not_multipart(self) -> None:
        """A ``Content-Type`` without multipart/form-data and a valid boundary: 400."""
        for header in [
            "application/json",
            "multipart/mixed; boundary=abc",
            "multipart/form-data",
            "multipart/form-data; boundary=",
            'multipart/form-data; boundary="ends with space "',
            "multipart/form-data; boundary=" + "b" * 71,
            "",
        ]:
            with self.assertRaises(UploadError) as caught:
                MultipartReceiver(header, self.directory, self.limits())
            self.assertEqual(caught.exception.status, 400, header)
        receiver = MultipartReceiver(
            'Multipart/Form-Data; charset=utf-8; boundary="a b"', self.directory, self.limits()
        )
        self.feed(receiver, body([text_part("command", "x")], boundary="a b"))
        self.assertEqual(dict(self.form(receiver).fields), {"command": "x"})

    def test_no_closing_boundary(self) -> None:
        """A body that ends without its closing delimiter fails with 400 at ``body_done``."""
        receiver = self.receiver()
        data = body([text_part("command", "x"), file_part("media", "a.mp3", "audio/mpeg", b"abc")])
        self.feed(receiver, data[: -len(f"\r\n--{BOUNDARY}--\r\n")], done=False)
        self.assertNoResult(receiver.result)
        self.assertEqual(len(open_files_under(self.directory)), 1)
        receiver.body_done()
        self.refused(receiver, 400)

    def test_not_a_multipart_body(self) -> None:
        """Bytes that never hold the boundary fail with 400 at ``body_done``."""
        receiver = self.receiver()
        self.feed(receiver, b'{"input_form": {}}' * 100)
        self.refused(receiver, 400)

    def test_malformed_part(self) -> None:
        """A part without ``Content-Disposition`` is refused with 400."""
        receiver = self.receiver()
        self.feed(receiver, body([part(["Content-Type: text/plain"], b"x")]), done=False)
        self.refused(receiver, 400)

    def test_rfc2231_name_refused(self) -> None:
        """A part named only by ``name*=`` (RFC 7578 forbids it) is refused with 400."""
        receiver = self.receiver()
        disposition = "Content-Disposition: form-data; name*=UTF-8''media; filename=\"a.mp3\""
        data = body([part([disposition, "Content-Type: audio/mpeg"], b"x")])
        self.feed(receiver, data, largest=3, done=False)
        self.assertIn("no field name", self.refused(receiver, 400).detail)
        self.assertEqual(os.listdir(self.directory), [])

    def test_rfc2231_filename_ignored(self) -> None:
        """``filename*=`` is not decoded: the upload has no file name and no extension."""
        receiver = self.receiver()
        disposition = "Content-Disposition: form-data; name=\"media\"; filename*=UTF-8''%C3%A9.mp3"
        self.feed(receiver, body([part([disposition, "Content-Type: audio/mpeg"], b"ID3x")]))
        upload = self.form(receiver).uploads["media"]
        self.assertFalse(upload.filename_given)
        self.assertRegex(os.path.basename(upload.path), r"\Amedia-[0-9a-f]{16}\Z")

    def test_body_failed(self) -> None:
        """``body_failed`` closes the open file and fails ``result`` with the reason."""
        receiver = self.receiver()
        data = body([file_part("media", "a.mp3", "audio/mpeg", b"x" * 10_000)])
        self.feed(receiver, data[:5000], done=False)
        self.assertEqual(len(open_files_under(self.directory)), 1)
        receiver.body_failed(ConnectionLost("gone"))
        self.failureResultOf(receiver.result, ConnectionLost)
        self.assertEqual(open_files_under(self.directory), [])
        receiver.body_data(data[5000:])
        receiver.body_done()

    def test_unwritable_directory(self) -> None:
        """A file that cannot be created fails ``result`` with the ``OSError``."""
        receiver = MultipartReceiver(
            CONTENT_TYPE, os.path.join(self.directory, "missing"), self.limits()
        )
        self.feed(receiver, body([file_part("media", "a.mp3", "audio/mpeg", b"x")]))
        self.failureResultOf(receiver.result, FileNotFoundError)

    def test_limits_need_every_file_limit(self) -> None:
        """An upload field without ``max_file_bytes`` is a configuration error."""
        with self.assertRaises(ValueError):
            UploadLimits(upload_fields=frozenset({"media"}))


class FileNameTests(ReceiverTestCase):
    """Client file names never become paths; only a plain extension is kept."""

    def test_hostile_names(self) -> None:
        """Traversal, NUL, empty and non-ASCII names stay inside the job directory."""
        cases = {
            "../../etc/passwd": "",
            "a\x00b.wav": ".wav",
            "x.": "",
            "évil.mp3": ".mp3",
            "..": "",
            "/abs/path/song.Ogg": ".ogg",
            "C:\\Users\\me\\track.flac": ".flac",
            "long.extension9": "",
            "arch.tar.gz": ".gz",
            "": "",
        }
        for filename, extension in cases.items():
            directory = os.path.join(self.directory, f"job{len(os.listdir(self.directory))}")
            os.makedirs(directory)
            receiver = MultipartReceiver(CONTENT_TYPE, directory, self.limits())
            self.feed(receiver, body([file_part("media", filename, "audio/mpeg", b"ID3data")]))
            upload = self.successResultOf(receiver.result).uploads["media"]
            self.assertEqual(os.path.dirname(upload.path), directory, filename)
            self.assertRegex(
                os.path.basename(upload.path),
                rf"\Amedia-[0-9a-f]{{16}}{re.escape(extension)}\Z",
                repr(filename),
            )
            self.assertEqual(upload.filename_given, bool(filename))
            self.assertEqual(os.listdir(directory), [os.path.basename(upload.path)])

    def test_detail_does_not_echo_names(self) -> None:
        """A refusal names a field only in a short sanitized form."""
        receiver = self.receiver()
        hostile = "../../x\u2603" + "y" * 100
        self.feed(receiver, body([file_part(hostile, "secret-name.mp3", "audio/mpeg", b"x")]))
        detail = self.refused(receiver, 400).detail
        self.assertNotIn("secret-name", detail)
        self.assertNotIn("\u2603", detail)
        self.assertLess(len(detail), 100)

    def test_unsafe_field_id_in_path(self) -> None:
        """An upload field id unfit for a file name is written as ``upload``."""
        limits = UploadLimits(
            upload_fields=frozenset({"a/b"}), max_file_bytes={"a/b": 100}, accepted_types={}
        )
        receiver = self.receiver(limits)
        self.feed(receiver, body([file_part("a/b", "t.mp3", "audio/mpeg", b"ID3x")]))
        upload = self.form(receiver).uploads["a/b"]
        self.assertRegex(os.path.basename(upload.path), r"\Aupload-[0-9a-f]{16}\.mp3\Z")
        self.assertEqual(os.path.dirname(upload.path), self.directory)
