"""Parsing request bodies into :class:`FormData`: urlencoded, and multipart with python-multipart.

Multipart bodies are parsed as they stream in; file parts go to spooled temporary files (in
memory up to 1 MB each, then on disk). Limits protect the server: ``max_files`` file parts,
``max_fields`` other parts, ``max_part_size`` bytes per non-file part. A body that breaks a
limit or the multipart syntax raises :class:`FormParseError`, which the request answers with 400.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator
from tempfile import SpooledTemporaryFile
from typing import Any
from urllib.parse import parse_qsl

from .datastructures import FormData, Headers, UploadFile

__all__ = ["FormParseError", "parse_form"]

#: A file part stays in memory up to this size, then moves to a file on disk.
SPOOL_MAX_SIZE = 1024 * 1024


class FormParseError(ValueError):
    """The form body is malformed or breaks a limit; the message says which."""


def _multipart() -> Any:
    try:
        import python_multipart
    except ImportError:  # pragma: no cover - the extra is installed wherever forms are tested
        raise RuntimeError(
            "Form data needs python-multipart: pip install 'fasterapi-hub[forms]' (or python-multipart)"
        ) from None
    return python_multipart


def require_multipart() -> None:
    """Raise a clear RuntimeError now if python-multipart is missing (checked when a route with
    ``Form``/``File``/``UploadFile`` parameters is added, as FastAPI does)."""
    _multipart()


async def parse_form(
    content_type: str,
    stream: AsyncIterator[bytes],
    *,
    max_files: int = 1000,
    max_fields: int = 1000,
    max_part_size: int = 1024 * 1024,
) -> FormData:
    """The form in ``stream``, whose media type is ``content_type`` (the Content-Type header)."""
    media_type, options = _parse_content_type(content_type)
    if media_type == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise FormParseError("multipart/form-data without a boundary in its Content-Type")
        parser = _MultipartReader(boundary, max_files, max_fields, max_part_size)
        return await parser.read(stream)
    if media_type == b"application/x-www-form-urlencoded":
        body = b"".join([chunk async for chunk in stream])
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise FormParseError("The urlencoded form is not valid UTF-8") from None
        pairs = parse_qsl(text, keep_blank_values=True)
        if len(pairs) > max_fields:
            raise FormParseError(f"Too many fields: more than {max_fields}")
        return FormData(list(pairs))
    shown = media_type.decode("latin-1") or "none"
    raise FormParseError(
        f"Expected a form (multipart/form-data or application/x-www-form-urlencoded), got Content-Type {shown!r}"
    )


def _parse_content_type(value: str) -> tuple[bytes, dict[bytes, bytes]]:
    media_type, options = _multipart().multipart.parse_options_header(value)
    return media_type.lower(), options


class _Event(enum.Enum):
    PART_BEGIN = 0
    PART_DATA = 1
    PART_END = 2
    HEADER_FIELD = 3
    HEADER_VALUE = 4
    HEADER_END = 5
    HEADERS_FINISHED = 6


class _MultipartReader:
    """Feeds python-multipart, whose callbacks are synchronous, and handles their events
    after each chunk, where writing a file part may await a worker thread."""

    def __init__(self, boundary: bytes, max_files: int, max_fields: int, max_part_size: int) -> None:
        self.max_files = max_files
        self.max_fields = max_fields
        self.max_part_size = max_part_size
        self.events: list[tuple[_Event, bytes]] = []
        callbacks = {
            "on_part_begin": lambda: self.events.append((_Event.PART_BEGIN, b"")),
            "on_part_data": lambda data, start, end: self.events.append((_Event.PART_DATA, data[start:end])),
            "on_part_end": lambda: self.events.append((_Event.PART_END, b"")),
            "on_header_field": lambda data, start, end: self.events.append((_Event.HEADER_FIELD, data[start:end])),
            "on_header_value": lambda data, start, end: self.events.append((_Event.HEADER_VALUE, data[start:end])),
            "on_header_end": lambda: self.events.append((_Event.HEADER_END, b"")),
            "on_headers_finished": lambda: self.events.append((_Event.HEADERS_FINISHED, b"")),
        }
        self.parser = _multipart().multipart.MultipartParser(boundary, callbacks)
        self.items: list[tuple[str, str | UploadFile]] = []
        self.files = 0
        self.fields = 0
        # The part being read.
        self.header_field = b""
        self.header_value = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.name = ""
        self.file: UploadFile | None = None
        self.data = bytearray()

    async def read(self, stream: AsyncIterator[bytes]) -> FormData:
        errors = _multipart().exceptions.FormParserError
        try:
            async for chunk in stream:
                self.parser.write(chunk)
                await self._handle_events()
            self.parser.finalize()
            await self._handle_events()
        except errors as error:
            await self._close_files()
            raise FormParseError(f"Malformed multipart body: {error}") from None
        except FormParseError:
            await self._close_files()
            raise
        return FormData(self.items)

    async def _handle_events(self) -> None:
        events, self.events = self.events, []
        for event, data in events:
            if event is _Event.PART_BEGIN:
                self.headers, self.file, self.data, self.name = [], None, bytearray(), ""
            elif event is _Event.HEADER_FIELD:
                self.header_field += data
            elif event is _Event.HEADER_VALUE:
                self.header_value += data
            elif event is _Event.HEADER_END:
                self.headers.append((self.header_field.lower(), self.header_value))
                self.header_field = self.header_value = b""
            elif event is _Event.HEADERS_FINISHED:
                self._start_part()
            elif event is _Event.PART_DATA:
                if self.file is not None:
                    await self.file.write(data)
                else:
                    self.data += data
                    if len(self.data) > self.max_part_size:
                        raise FormParseError(
                            f"Part {self.name!r} exceeds the maximum size of {self.max_part_size} bytes"
                        )
            elif event is _Event.PART_END:
                if self.file is not None:
                    await self.file.seek(0)
                    self.items.append((self.name, self.file))
                    self.file = None
                else:
                    self.items.append((self.name, self.data.decode("utf-8", "replace")))

    def _start_part(self) -> None:
        disposition = next((v for k, v in self.headers if k == b"content-disposition"), None)
        if disposition is None:
            raise FormParseError("A multipart part has no Content-Disposition header")
        _, options = _multipart().multipart.parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise FormParseError("A multipart part's Content-Disposition has no name")
        self.name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        if filename is None:
            self.fields += 1
            if self.fields > self.max_fields:
                raise FormParseError(f"Too many fields: more than {self.max_fields}")
            return
        self.files += 1
        if self.files > self.max_files:
            raise FormParseError(f"Too many files: more than {self.max_files}")
        spooled = SpooledTemporaryFile(max_size=SPOOL_MAX_SIZE)
        self.file = UploadFile(
            spooled,  # type: ignore[arg-type]
            size=0,
            filename=filename.decode("utf-8", "replace"),
            headers=Headers(self.headers),
        )

    async def _close_files(self) -> None:
        for _, value in self.items:
            if isinstance(value, UploadFile):
                await value.close()
        if self.file is not None:
            await self.file.close()
