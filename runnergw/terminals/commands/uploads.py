"""Receive a ``multipart/form-data`` request body: text fields in memory, files on disk.

The body is parsed as it arrives with ``multipart.PushMultipartParser`` (a sans-io parser).
Every limit is checked while receiving, so a refused upload stops being written at once, and
memory stays bounded by a few chunks whatever the size of the uploaded files.

Parts follow RFC 7578: one part per field, named by the ``name`` parameter of its
``Content-Disposition``; a part without ``Content-Type`` is ``text/plain``. The RFC 2231 / RFC 5987
extended parameters (``name*=``, ``filename*=``) are forbidden by RFC 7578 section 4.2 and are
not decoded: a part whose only name is ``name*=`` is refused with 400, and a lone ``filename*=``
counts as no file name.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Mapping
from typing import BinaryIO

import attrs
from multipart import (
    MultipartError,
    MultipartSegment,
    ParserLimitReached,
    PushMultipartParser,
    parse_options_header,
)
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from runnergw.logs import level_gate

__all__ = ["MultipartReceiver", "ReceivedForm", "ReceivedUpload", "UploadError", "UploadLimits"]

_MAX_HEADERS_PER_PART = 8
"""RFC 7578 parts need at most three headers; a few more are tolerated."""
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
"""RFC 2046 section 5.1.1: 1 to 70 characters, not ending with a space."""
_EXTENSION = re.compile(r"[A-Za-z0-9]{1,8}")
_SAFE_STEM = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE_SHOWN = re.compile(r"[^A-Za-z0-9_.+/-]")
_SHOWN_LENGTH = 40
_DEFAULT_PART_TYPE = "text/plain"
"""RFC 7578 section 4.4: the type of a part without ``Content-Type``."""
_FILE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY
_FILE_MODE = 0o600


class UploadError(Exception):
    """A request body refused; the caller answers ``status`` with ``{"detail": detail}``.

    Attributes:
        status: 400 malformed body, 413 a part too large, 415 a file type not accepted.
        detail: Text for the client. It may name a field in a short sanitized form; it never
            holds a file name or any part's contents.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"


@attrs.frozen
class UploadLimits:
    """What a multipart body may hold.

    Attributes:
        max_parts: Most parts in the body.
        max_header_bytes: Most header bytes of one part (each line and all lines together).
        max_field_bytes: Largest text part (one that is not an upload field).
        max_file_bytes: Largest file per upload field id; every upload field needs an entry.
        accepted_types: Media types accepted per upload field id (``"audio/*"`` matches any
            ``audio/`` subtype); an empty tuple or no entry accepts anything.
        upload_fields: The part names that are files.

    Raises:
        ValueError: An upload field has no ``max_file_bytes`` entry.
    """

    max_parts: int = 64
    max_header_bytes: int = 8192
    max_field_bytes: int = 1 << 20
    max_file_bytes: Mapping[str, int] = attrs.field(factory=dict)
    accepted_types: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    upload_fields: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    def __attrs_post_init__(self) -> None:
        missing = self.upload_fields - self.max_file_bytes.keys()
        if missing:
            raise ValueError(f"no max_file_bytes for upload fields {sorted(missing)}")


@attrs.frozen
class ReceivedUpload:
    """A file part, written to the job directory.

    Attributes:
        field: The upload field id (the part name).
        path: The file, named ``<field>-<16 hex digits><.ext>``: ``.ext`` is the client file
            name's extension, lower-cased, when it is 1 to 8 ASCII letters or digits, else
            nothing. A field id that is not 1 to 64 of ``[A-Za-z0-9_-]`` is written ``upload``.
        size: Bytes written.
        content_type: The part's media type, lower-cased, without parameters.
        filename_given: True when the part carried a non-empty ``filename`` parameter.
    """

    field: str
    path: str
    size: int
    content_type: str
    filename_given: bool


@attrs.frozen
class ReceivedForm:
    """A whole multipart body.

    Attributes:
        fields: Text parts by name, decoded as UTF-8 (``input_form``, ``command``, ...).
        uploads: File parts by upload field id.
    """

    fields: Mapping[str, str]
    uploads: Mapping[str, ReceivedUpload]


@attrs.define
class _FilePart:
    field: str
    path: str
    file: BinaryIO
    limit: int
    content_type: str
    filename_given: bool
    size: int = 0
    head: bytes = b""
    """The first bytes of the file, to check them against its declared type."""


_SIGNATURES: dict[str, tuple[tuple[int, bytes], ...]] = {
    # type: (offset, bytes) pairs, any of which must match
    "image/png": ((0, b"\x89PNG\r\n\x1a\n"),),
    "image/jpeg": ((0, b"\xff\xd8\xff"),),
    "image/gif": ((0, b"GIF87a"), (0, b"GIF89a")),
    "image/webp": ((8, b"WEBP"),),
    "image/bmp": ((0, b"BM"),),
    "image/tiff": ((0, b"II*\x00"), (0, b"MM\x00*")),
    "audio/wav": ((8, b"WAVE"),),
    "audio/x-wav": ((8, b"WAVE"),),
    "audio/wave": ((8, b"WAVE"),),
    "audio/mpeg": ((0, b"ID3"), (0, b"\xff\xfb"), (0, b"\xff\xf3"), (0, b"\xff\xf2")),
    "audio/flac": ((0, b"fLaC"),),
    "audio/ogg": ((0, b"OggS"),),
    "video/mp4": ((4, b"ftyp"),),
    "application/pdf": ((0, b"%PDF-"),),
}
"""Magic bytes of common types. A file declared as one of them must start like one: a
converter that sniffs content (ImageMagick reads an SVG, with its links to local files,
whatever the name says) must not be handed something else under a harmless label."""
_SIGNATURE_BYTES = 16


def _content_matches(content_type: str, head: bytes) -> bool:
    signatures = _SIGNATURES.get(content_type.partition(";")[0].strip().lower())
    if signatures is None:
        return True
    return any(head[offset:offset + len(magic)] == magic for offset, magic in signatures)


@attrs.define
class _TextPart:
    name: str
    data: bytearray = attrs.field(factory=bytearray)


class MultipartReceiver:
    """A request body consumer that parses ``multipart/form-data`` as it arrives.

    Text parts are kept in memory (each at most ``max_field_bytes``); file parts are written
    as they arrive, with blocking writes, to new files (mode 0600) in ``job_directory``. A file
    is closed when its part ends or the body is refused; the caller removes the directory.

    ``result`` fires with the ``ReceivedForm`` once the body ended with the closing boundary.
    It fails, as soon as the problem is seen, with ``UploadError``: 400 for a malformed body, a
    part without a name, a duplicate name, a file part for a name that is not an upload field,
    a text part that is not UTF-8, too many parts or part headers too large; 413 for a file or a
    text part over its limit; 415 for a file whose type is not accepted. It fails with the
    ``OSError`` when a file cannot be created or written, and with the reason given to
    ``body_failed``. Once ``result`` has fired, further calls do nothing.

    Attributes:
        result: Fires with the received form, or fails as described above.
        bytes_received: Body bytes given to ``body_data`` so far.
    """

    log = Logger(observer=level_gate)

    def __init__(self, content_type_header: str, job_directory: str, limits: UploadLimits) -> None:
        """Check the request's ``Content-Type`` and get ready to receive.

        Args:
            content_type_header: The request's ``Content-Type`` header value.
            job_directory: An existing directory for the uploaded files.
            limits: What the body may hold.

        Raises:
            UploadError: 400 when the header is not ``multipart/form-data`` with a valid
                boundary (a wrong media type is refused as malformed, not with 415).
        """
        self.result: Deferred[ReceivedForm] = Deferred()
        self.bytes_received = 0
        self._directory = job_directory
        self._limits = limits
        self._parser = PushMultipartParser(
            _boundary(content_type_header),
            max_header_size=limits.max_header_bytes,
            max_header_count=_MAX_HEADERS_PER_PART,
            max_segment_count=limits.max_parts,
        )
        self._part: _FilePart | _TextPart | None = None
        self._names: set[str] = set()
        self._fields: dict[str, str] = {}
        self._uploads: dict[str, ReceivedUpload] = {}
        self._over = False

    def body_data(self, data: bytes) -> None:
        """Parse the next piece of the body, writing file data as it comes.

        Args:
            data: Body bytes, in order; an empty piece is ignored.
        """
        if self._over or not data:
            return
        self.bytes_received += len(data)
        try:
            for event in self._parser.parse(data):
                if event is None:
                    self._end_part()
                elif isinstance(event, MultipartSegment):
                    self._start_part(event)
                else:
                    self._part_data(event)
        except ParserLimitReached as error:
            self._fail(UploadError(400, f"multipart limit exceeded: {_reason(error)}"))
        except MultipartError as error:
            self._fail(UploadError(400, f"malformed multipart body: {_reason(error)}"))
        except (UploadError, OSError) as error:
            self._fail(error)

    def body_done(self) -> None:
        """The body ended: fire ``result``, or fail it when the closing boundary is missing."""
        if self._over:
            return
        try:
            self._parser.close()
        except MultipartError:
            self._fail(UploadError(400, "malformed multipart body: no closing boundary"))
            return
        self._over = True
        self.result.callback(ReceivedForm(fields=self._fields, uploads=self._uploads))

    def body_failed(self, reason: Exception) -> None:
        """The body could not be read to its end: close any file and fail ``result``.

        Args:
            reason: Why the body failed; ``result`` fails with it.
        """
        if self._over:
            return
        self._over = True
        self._close_part()
        self.result.errback(reason)

    def _start_part(self, segment: MultipartSegment) -> None:
        name = segment.name
        if not name:
            raise UploadError(400, "a part has no field name (name*= is not supported)")
        header_bytes = sum(len(f"{key}: {value}\r\n".encode()) for key, value in segment.headerlist)
        if header_bytes > self._limits.max_header_bytes:
            raise UploadError(400, f"headers of part {_shown(name)} are too large")
        if name in self._names:
            raise UploadError(400, f"duplicate field {_shown(name)}")
        self._names.add(name)
        if name in self._limits.upload_fields:
            self._part = self._open_upload(name, segment)
        elif segment.filename is not None:
            raise UploadError(400, f"unexpected file field {_shown(name)}")
        else:
            self._part = _TextPart(name)

    def _open_upload(self, field: str, segment: MultipartSegment) -> _FilePart:
        content_type = segment.content_type or _DEFAULT_PART_TYPE
        if not _accepts(self._limits.accepted_types.get(field, ()), content_type):
            raise UploadError(
                415, f"type {_shown(content_type)} is not accepted for field {_shown(field)}"
            )
        stem = field if _SAFE_STEM.fullmatch(field) else "upload"
        name = f"{stem}-{secrets.token_hex(8)}{_extension(segment.filename)}"
        path = os.path.join(self._directory, name)
        return _FilePart(
            field=field,
            path=path,
            file=open(path, "wb", opener=_create),
            limit=self._limits.max_file_bytes[field],
            content_type=content_type,
            filename_given=bool(segment.filename),
        )

    def _part_data(self, chunk: bytes) -> None:
        part = self._part
        if isinstance(part, _FilePart):
            if part.size + len(chunk) > part.limit:
                raise UploadError(
                    413, f"upload {_shown(part.field)} is larger than {part.limit} bytes"
                )
            if len(part.head) < _SIGNATURE_BYTES:
                part.head += chunk[: _SIGNATURE_BYTES - len(part.head)]
            part.file.write(chunk)
            part.size += len(chunk)
        elif part is not None:
            if len(part.data) + len(chunk) > self._limits.max_field_bytes:
                raise UploadError(
                    413,
                    f"field {_shown(part.name)} is larger than "
                    f"{self._limits.max_field_bytes} bytes",
                )
            part.data += chunk

    def _end_part(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            part.file.close()
            if not _content_matches(part.content_type, part.head):
                raise UploadError(
                    415, f"the content of {_shown(part.field)} is not "
                         f"{_shown(part.content_type)}"
                )
            self._uploads[part.field] = ReceivedUpload(
                field=part.field,
                path=part.path,
                size=part.size,
                content_type=part.content_type,
                filename_given=part.filename_given,
            )
        elif part is not None:
            try:
                self._fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise UploadError(400, f"field {_shown(part.name)} is not UTF-8 text") from None

    def _close_part(self) -> None:
        part, self._part = self._part, None
        if isinstance(part, _FilePart):
            with contextlib.suppress(OSError):
                part.file.close()

    def _fail(self, error: Exception) -> None:
        self._over = True
        self._close_part()
        if isinstance(error, UploadError):
            self.log.debug(
                "Upload refused: {status} {detail}", status=error.status, detail=error.detail
            )
        self.result.errback(error)


def _boundary(content_type_header: str) -> str:
    kind, options = parse_options_header(content_type_header)
    boundary = options.get("boundary", "")
    if kind != "multipart/form-data" or not _BOUNDARY.fullmatch(boundary):
        raise UploadError(400, "the body must be multipart/form-data with a valid boundary")
    return boundary


def _accepts(patterns: tuple[str, ...], content_type: str) -> bool:
    for pattern in patterns:
        wanted = pattern.partition(";")[0].strip().lower()
        if wanted in ("*", "*/*", content_type):
            return True
        prefix = wanted[:-1]
        if wanted.endswith("/*") and content_type.startswith(prefix) and content_type != prefix:
            return True
    return not patterns


def _extension(filename: str | None) -> str:
    _, dot, extension = (filename or "").rpartition(".")
    return f".{extension.lower()}" if dot and _EXTENSION.fullmatch(extension) else ""


def _shown(text: str) -> str:
    """A short form of client text that is safe to put in a detail."""
    return _UNSAFE_SHOWN.sub("?", text[:_SHOWN_LENGTH])


def _reason(error: MultipartError) -> str:
    return str(error.args[0]) if error.args else type(error).__name__


def _create(path: str, flags: int) -> int:
    """``open()`` opener: a new file only (never an existing one or a symbolic link)."""
    return os.open(path, _FILE_FLAGS, _FILE_MODE)
