"""Editing the recovery record (``ipRS`` chunk) of a protected PNG, as an attacker or a bad disk.

The edits depend only on the record's outer layout, which every version keeps: 4 magic
bytes, a 4-byte big-endian header length, a JSON header, then binary data (the sealed
private part and the residual). `edit_record` rewrites the chunk with a correct PNG CRC,
so the PNG stays valid and only the record is wrong.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.corpus.files import png_assemble, png_chunks

RECORD_CHUNK = b"ipRS"


@dataclass
class Record:
    """A record split into its parts: magic, JSON header bytes, binary part."""

    magic: bytes
    header_bytes: bytes
    body: bytes

    @property
    def header(self) -> Any:
        """The JSON header, parsed."""
        return json.loads(self.header_bytes)

    def with_header(self, header: Any) -> Record:
        """The same record with another header (any JSON value)."""
        return Record(self.magic, json.dumps(header).encode(), self.body)

    def to_bytes(self, length: int | None = None) -> bytes:
        """The chunk body; ``length`` overrides the header length field."""
        size = len(self.header_bytes) if length is None else length
        return self.magic + struct.pack(">I", size) + self.header_bytes + self.body


def parse(data: bytes) -> Record:
    """Split a chunk body into magic, header and binary part."""
    (length,) = struct.unpack(">I", data[4:8])
    return Record(data[:4], data[8 : 8 + length], data[8 + length :])


def record_bytes(path: Path) -> bytes:
    """The record chunk's body of a protected PNG."""
    for kind, body in png_chunks(path.read_bytes()):
        if kind == RECORD_CHUNK:
            return body
    raise AssertionError(f"{path} has no {RECORD_CHUNK!r} chunk")


def set_record(path: Path, body: bytes | None, duplicate: bytes | None = None) -> None:
    """Replace the record of ``path`` by ``body`` (``None``: remove it); optionally add a second."""
    chunks = []
    for kind, data in png_chunks(path.read_bytes()):
        if kind == RECORD_CHUNK:
            if body is not None:
                chunks.append((kind, body))
            if duplicate is not None:
                chunks.append((kind, duplicate))
        else:
            chunks.append((kind, data))
    path.write_bytes(png_assemble(chunks))


def edit_record(path: Path, edit: Callable[[Record], bytes]) -> None:
    """Rewrite the record of ``path`` with ``edit(record)`` (the new chunk body)."""
    set_record(path, edit(parse(record_bytes(path))))


def edit_header(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Record], bytes]:
    """A record edit that changes the JSON header (``edit`` may mutate it or return a new one)."""

    def apply(record: Record) -> bytes:
        header = record.header
        changed = edit(header)
        return record.with_header(header if changed is None else changed).to_bytes()

    return apply


def set_field(name: str, value: Any) -> Callable[[Record], bytes]:
    """Set header field ``name`` (which must exist) to ``value``."""

    def change(header: dict[str, Any]) -> None:
        if name not in header:
            raise AssertionError(f"record header has no field {name!r}: {sorted(header)}")
        header[name] = value

    return edit_header(change)


def set_field_like(part: str, value: Any) -> Callable[[Record], bytes]:
    """Set every header field whose name contains ``part`` (at least one must) to ``value``."""

    def change(header: dict[str, Any]) -> None:
        names = [name for name in header if part in name]
        if not names:
            raise AssertionError(f"record header has no field like {part!r}: {sorted(header)}")
        for name in names:
            header[name] = value

    return edit_header(change)


def drop_field(index: int) -> Callable[[Record], bytes]:
    """Remove the ``index``-th header field in sorted order (the last one if there are fewer)."""

    def change(header: dict[str, Any]) -> None:
        names = sorted(header)
        del header[names[min(index, len(names) - 1)]]

    return edit_header(change)


def flip_body_byte(offset_from_end: int) -> Callable[[Record], bytes]:
    """Flip one byte of the binary part, ``offset_from_end`` bytes before its end."""

    def apply(record: Record) -> bytes:
        body = bytearray(record.body)
        body[len(body) - offset_from_end] ^= 0x5A
        return Record(record.magic, record.header_bytes, bytes(body)).to_bytes()

    return apply


def replace_body(make: Callable[[bytes], bytes]) -> Callable[[Record], bytes]:
    """Replace the binary part by ``make(old binary part)``."""

    def apply(record: Record) -> bytes:
        return Record(record.magic, record.header_bytes, make(record.body)).to_bytes()

    return apply
