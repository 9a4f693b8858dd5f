"""The recovery record stored in each protected PNG (private chunk ``ipRS``), sealed under a key.

Layout (versions 2 and 3): ``b"IPR2"``, a 4-byte big-endian header length, a JSON header,
the encrypted private part (``private_bytes`` long), then the encrypted residual of
`invprotect.models.exact.ExactCodec`. Version 3 (written since the fixed-point exact
recovery) differs from version 2 only in what the residual holds: a version 3 record may
hold a residual of coding 1, which versions that read only version 2 cannot decode, so
they refuse it by its version instead of misreading it. Version 2 records are still
read; their residuals (coding 0) still decode.

What can be read without the key (the public header): the format version, the mode and
size of the original, the protector's public key id, a keyed digest of the original
(HMAC-SHA256, useless without the key), the SHA-256 of the protected pixels (which anyone
holding the protected file can compute), a nonce and a tag. Everything else - the palette
and index map of palette images, the original's metadata (EXIF, ICC profile, text chunks,
DPI, gamma) and the residual - is encrypted with a keystream of SHAKE-256 under a secret
that only the protector's weights give. The tag (HMAC-SHA256 over the whole record)
detects corruption and forgery before anything is decoded. The nonce is derived from the
content (a synthetic IV), so protecting the same file twice gives the same bytes.

Large images are protected as tiles (`invprotect.tiles`): their record keeps the same
layout and version, with the tile layout in the private part; a record without one
(every file protected before tiles existed) describes one untiled image.

Records of version 1 (written before records were sealed: plain digests, plain index
map) are still read, with the key that wrote them, so files protected earlier recover.

Not hidden: the alpha channel of RGBA and LA images stays in the protected PNG as it
was, in the clear; it is part of the image's appearance, like the protected RGB pixels.

Keys come from `RecordKeys.derive`: one secret ``material`` (for RAEG the SHA-256 of the
generator's weights) gives, with separate domain prefixes, a public key id stored in
every record and the secret used for the MAC and the encryption. The baselines RAE and
RIT have no secret; their material is a digest of their public settings, so their records
are sealed only against corruption, not against a reader.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from invprotect.models.exact import inflate_exactly

RECORD_CHUNK = b"ipRS"
"""PNG chunk type of the record: ancillary, private, not safe to copy."""
RECORD_VERSION = 3
"""Version of the record layout written by this module."""
READABLE_VERSIONS = (2, 3)
"""Versions of the sealed layout that `RecoveryRecord.open` reads (and version 1)."""
RECORD_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA"})
"""Original modes a record can describe."""
MAX_PRIVATE_BYTES = 64 * 2**20
"""Largest private part (palette, index map, metadata) accepted, inflated."""
MAX_SIDE = 2**20
"""Largest image side a record may claim."""

_MAGIC = b"IPR2"
_OLD_MAGIC = b"IPR1"
_MAX_HEADER = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEADER_TYPES: dict[str, type] = {
    "version": int,
    "mode": str,
    "height": int,
    "width": int,
    "key_id": str,
    "original_mac": str,
    "protected_sha256": str,
    "nonce": str,
    "private_bytes": int,
    "private_size": int,
    "tag": str,
}
_PRIVATE_KEYS = frozenset({"palette", "transparency", "indices", "metadata", "tiles"})
_TILE_FIELDS = frozenset({"side", "lengths", "digests"})


class BadRecordError(ValueError):
    """A recovery record is malformed, corrupt or forged; the message names the file and field."""


class WrongKeyError(BadRecordError):
    """A recovery record was sealed under another protector's key."""


@dataclass(frozen=True)
class RecordKeys:
    """The public key id and the secret of one protector.

    Attributes:
        key_id: Public identifier stored in each record (hex SHA-256).
        secret: 32 secret bytes for the keyed digests, the tag and the encryption.
        legacy_id: What version-1 records stored to name the protector (the material in
            hex), to read records written before records were sealed.
    """

    key_id: str
    secret: bytes = field(repr=False)
    legacy_id: str = field(default="", repr=False)

    @classmethod
    def derive(cls, material: bytes) -> RecordKeys:
        """Both values from the protector's secret ``material``, with distinct domain prefixes."""
        key_id = hashlib.sha256(b"invprotect/record-key-id/v2\0" + material).hexdigest()
        secret = hashlib.sha256(b"invprotect/record-secret/v2\0" + material).digest()
        return cls(key_id, secret, material.hex())

    def mac(self, label: bytes, *parts: bytes) -> bytes:
        """HMAC-SHA256 of ``parts`` (each length-prefixed) under the secret, for ``label``."""
        digest = hmac.new(self.secret, label + b"\0", hashlib.sha256)
        for part in parts:
            digest.update(struct.pack(">Q", len(part)))
            digest.update(part)
        return digest.digest()

    def original_mac(self, pixel_digest: str) -> str:
        """The keyed digest of an original from its plain `pixel_digest` (hex)."""
        return self.mac(b"original", pixel_digest.encode()).hex()

    def _xor(self, label: bytes, nonce: bytes, data: bytes) -> bytes:
        if not data:
            return b""
        stream = hashlib.shake_256(self.secret + b"\0" + label + b"\0" + nonce).digest(len(data))
        mixed = np.frombuffer(data, np.uint8) ^ np.frombuffer(stream, np.uint8)
        return mixed.tobytes()


@dataclass
class RecoveryRecord:
    """What exact recovery needs besides the protector.

    Attributes:
        mode: PIL mode of the original (one of `RECORD_MODES`).
        height: Original height (before padding).
        width: Original width.
        original_mac: Keyed digest of the original (`RecordKeys.original_mac`).
        protected_sha256: SHA-256 of the protected RGB pixels as saved.
        key_id: Public key id of the protector (`RecordKeys.key_id`).
        residual: Compressed residual of the padded RGB image (stored encrypted); for a
            tiled image, every tile's residual one after the other.
        extra: Private data (stored encrypted): ``palette``, ``transparency``, ``indices``
            (base64 index map of palette images with duplicate colours), ``metadata``
            and, for an image protected as tiles, ``tiles`` (`invprotect.tiles.TileLayout`).
    """

    mode: str
    height: int
    width: int
    original_mac: str
    protected_sha256: str
    key_id: str
    residual: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def seal(self, keys: RecordKeys) -> bytes:
        """The chunk body: public header, encrypted private part and residual, tag.

        Raises:
            ValueError: If ``keys`` are not the record's (another key id).
        """
        if keys.key_id != self.key_id:
            raise ValueError(f"record key id {self.key_id} does not match keys {keys.key_id}")
        private = json.dumps(self.extra, sort_keys=True, separators=(",", ":")).encode()
        packed = zlib.compress(private, 9)
        header: dict[str, Any] = {
            "version": RECORD_VERSION,
            "mode": self.mode,
            "height": self.height,
            "width": self.width,
            "key_id": self.key_id,
            "original_mac": self.original_mac,
            "protected_sha256": self.protected_sha256,
            "private_bytes": len(packed),
            "private_size": len(private),
        }
        nonce = keys.mac(b"nonce", _canonical(header), private, self.residual)[:16]
        header["nonce"] = nonce.hex()
        body = keys._xor(b"private", nonce, packed) + keys._xor(b"residual", nonce, self.residual)
        header["tag"] = keys.mac(b"tag", _canonical(header), body).hex()
        text = _canonical(header)
        return _MAGIC + struct.pack(">I", len(text)) + text + body

    @classmethod
    def open(cls, data: bytes, keys: RecordKeys, name: str = "record") -> RecoveryRecord:
        """Check, authenticate and decrypt a chunk body written by `seal`.

        Args:
            data: The chunk body.
            keys: The protector's keys.
            name: The file the record came from, for error messages.

        Raises:
            WrongKeyError: If the record was sealed under another key.
            BadRecordError: If any field is missing, unknown, of the wrong type or out of
                range, or the tag does not match (corrupt or forged).
        """
        if data.startswith(_OLD_MAGIC):
            return _open_version_1(data, keys, name)
        header, body = read_header(data, name)
        if header["key_id"] != keys.key_id:
            raise WrongKeyError(
                f"{name}: protected with another key (record key id {header['key_id'][:12]}..., "
                f"this protector's {keys.key_id[:12]}...); use the protector that protected it"
            )
        core = {key: value for key, value in header.items() if key != "tag"}
        expected = keys.mac(b"tag", _canonical(core), body).hex()
        if not hmac.compare_digest(expected, header["tag"]):
            raise BadRecordError(f"{name}: record corrupt or forged (field 'tag' does not match)")
        nonce = bytes.fromhex(header["nonce"])
        split = header["private_bytes"]
        packed = keys._xor(b"private", nonce, body[:split])
        residual = keys._xor(b"residual", nonce, body[split:])
        private = inflate(packed, header["private_size"], f"{name}: record private part")
        try:
            extra = json.loads(private)
        except (ValueError, RecursionError) as error:  # JSON, UTF-8 or nesting
            raise BadRecordError(f"{name}: record private part is not JSON ({error})") from None
        record = cls(
            header["mode"],
            header["height"],
            header["width"],
            header["original_mac"],
            header["protected_sha256"],
            header["key_id"],
            residual,
            extra,
        )
        _check_private(record, name)
        return record


def read_header(data: bytes, name: str = "record") -> tuple[dict[str, Any], bytes]:
    """The validated public header of a chunk body and the (encrypted) rest; no key needed.

    Raises:
        BadRecordError: For a wrong magic, a malformed header, or a field that is
            missing, unknown, of the wrong type or out of range.
    """
    if data.startswith(_OLD_MAGIC):
        raise BadRecordError(f"{name}: record version 1 has no public header (it is not sealed)")
    if not data.startswith(_MAGIC) or len(data) < 8:
        raise BadRecordError(f"{name}: not an invprotect recovery record (bad magic)")
    (length,) = struct.unpack(">I", data[4:8])
    if length > min(_MAX_HEADER, len(data) - 8):
        raise BadRecordError(f"{name}: record header length {length} is out of range")
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError) as error:  # JSON, UTF-8 or nesting
        raise BadRecordError(f"{name}: corrupt recovery record header: {error}") from None
    if not isinstance(header, dict):
        raise BadRecordError(f"{name}: record header is not a JSON object")
    missing = sorted(set(_HEADER_TYPES) - set(header))
    unknown = sorted(set(header) - set(_HEADER_TYPES))
    if missing or unknown:
        raise BadRecordError(f"{name}: record header fields missing {missing}, unknown {unknown}")
    for key, kind in _HEADER_TYPES.items():
        value = header[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BadRecordError(
                f"{name}: record field {key!r} must be {kind.__name__}, got {value!r:.40}"
            )
    body = data[8 + length :]
    if header["version"] not in READABLE_VERSIONS:
        raise BadRecordError(
            f"{name}: record field 'version' is {header['version']}, expected 2 or 3 "
            "(a newer invprotect wrote it: update invprotect to recover it)"
        )
    if header["mode"] not in RECORD_MODES:
        raise BadRecordError(f"{name}: record field 'mode' {header['mode']!r:.20} not protectable")
    for key in ("height", "width"):
        if not 0 < header[key] <= MAX_SIDE:
            raise BadRecordError(f"{name}: record field {key!r} is {header[key]}, out of range")
    for key in ("key_id", "original_mac", "protected_sha256", "tag"):
        if not _HEX64.fullmatch(header[key]):
            raise BadRecordError(f"{name}: record field {key!r} is not a 64-digit hex digest")
    if not _HEX32.fullmatch(header["nonce"]):
        raise BadRecordError(f"{name}: record field 'nonce' is not 32 hex digits")
    if not 0 <= header["private_bytes"] <= len(body):
        raise BadRecordError(f"{name}: record field 'private_bytes' exceeds the record")
    if not 0 <= header["private_size"] <= MAX_PRIVATE_BYTES:
        raise BadRecordError(f"{name}: record field 'private_size' is out of range")
    return header, body


_VERSION_1_TYPES: dict[str, type] = {
    "mode": str,
    "height": int,
    "width": int,
    "original_sha256": str,
    "protected_sha256": str,
    "protector_sha256": str,
    "extra": dict,
}


def _open_version_1(data: bytes, keys: RecordKeys, name: str) -> RecoveryRecord:
    """Read a record written before records were sealed (plain digests, plain index map).

    Its plain digest of the original is turned into the keyed form on reading, and its
    compressed index map into the current form, so recovery treats it like any record.
    """
    (length,) = struct.unpack(">I", data[4:8].rjust(4, b"\xff"))
    if length > len(data) - 8:
        raise BadRecordError(f"{name}: record header length {length} is out of range")
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError) as error:  # JSON, UTF-8 or nesting
        raise BadRecordError(f"{name}: corrupt record header (version 1): {error}") from None
    if not isinstance(header, dict) or set(header) != set(_VERSION_1_TYPES):
        fields = list(_VERSION_1_TYPES)
        raise BadRecordError(f"{name}: record version 1 must have exactly the fields {fields}")
    for key, kind in _VERSION_1_TYPES.items():
        if not isinstance(header[key], kind) or isinstance(header[key], bool):
            raise BadRecordError(f"{name}: record field {key!r} must be {kind.__name__}")
    if header["protector_sha256"] != keys.legacy_id:
        raise WrongKeyError(f"{name}: protected with another key (record version 1)")
    for key in ("height", "width"):
        if not 0 < header[key] <= MAX_SIDE:
            raise BadRecordError(f"{name}: record field {key!r} is {header[key]}, out of range")
    for key in ("original_sha256", "protected_sha256"):
        if not _HEX64.fullmatch(header[key]):
            raise BadRecordError(f"{name}: record field {key!r} is not a 64-digit hex digest")
    if header["mode"] not in RECORD_MODES:
        raise BadRecordError(f"{name}: record field 'mode' {header['mode']!r:.20} not protectable")
    extra = dict(header["extra"])
    if isinstance(extra.get("indices"), str):
        try:
            packed = base64.b64decode(extra["indices"], validate=True)
        except binascii.Error:
            raise BadRecordError(f"{name}: record field 'indices' is not base64") from None
        size = header["height"] * header["width"]
        raw = inflate(packed, size, f"{name}: record field 'indices'")
        extra["indices"] = base64.b64encode(raw).decode()
    record = RecoveryRecord(
        header["mode"],
        header["height"],
        header["width"],
        keys.original_mac(header["original_sha256"]),
        header["protected_sha256"],
        keys.key_id,
        data[8 + length :],
        extra,
    )
    _check_private(record, name)
    return record


def inflate(data: bytes, size: int, what: str) -> bytes:
    """`inflate_exactly`, raising `BadRecordError` (``what`` names the file and part)."""
    try:
        return inflate_exactly(data, size, what)
    except ValueError as error:
        raise BadRecordError(str(error)) from None


def _canonical(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def _byte_list(value: Any, low: int, high: int) -> bool:
    return (
        isinstance(value, list)
        and low <= len(value) <= high
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value)
    )


def _check_private(record: RecoveryRecord, name: str) -> None:
    """Validate the decrypted private part against the mode and size."""
    extra = record.extra
    if not isinstance(extra, dict):
        raise BadRecordError(f"{name}: record private part is not a JSON object")
    unknown = sorted(set(extra) - _PRIVATE_KEYS)
    if unknown:
        raise BadRecordError(f"{name}: record private part has unknown fields {unknown}")
    if "metadata" in extra and not isinstance(extra["metadata"], dict):
        raise BadRecordError(f"{name}: record field 'metadata' must be an object")
    if "tiles" in extra:
        _check_tiles(record, name)
    if record.mode != "P":
        if {"palette", "indices"} & set(extra) or ("transparency" in extra):
            raise BadRecordError(f"{name}: palette fields in a record of mode {record.mode}")
        return
    palette = extra.get("palette")
    if not _byte_list(palette, 3, 768) or len(palette) % 3:
        raise BadRecordError(
            f"{name}: record field 'palette' must be 3 to 768 values in 0..255, a multiple of 3"
        )
    transparency = extra.get("transparency", 0)
    single = isinstance(transparency, int) and not isinstance(transparency, bool)
    if not (_byte_list(transparency, 0, 256) or (single and 0 <= transparency <= 255)):
        raise BadRecordError(f"{name}: record field 'transparency' must be 0..255 or such a list")
    if "indices" in extra:
        indices = extra["indices"]
        encoded = 4 * -(-record.height * record.width // 3)  # base64 of one byte per pixel
        if not isinstance(indices, str) or len(indices) != encoded:
            raise BadRecordError(
                f"{name}: record field 'indices' must hold {record.height}x{record.width} indices"
            )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tiles(record: RecoveryRecord, name: str) -> None:
    """Validate the tile layout of a tiled record (see `invprotect.tiles.TileLayout`).

    The residual of a tiled record is every tile's record bytes one after the other;
    ``lengths`` splits it, ``digests`` names each protected tile's pixels, and ``margin``
    (absent: 0) is the context around each tile that its prediction saw.
    """
    tiles = record.extra["tiles"]
    if not isinstance(tiles, dict) or set(tiles) - {"margin"} != _TILE_FIELDS:
        raise BadRecordError(
            f"{name}: record field 'tiles' must hold exactly {sorted(_TILE_FIELDS)}"
            " and may hold 'margin'"
        )
    side, lengths, digests = tiles["side"], tiles["lengths"], tiles["digests"]
    if not _is_count(side) or not 0 < side <= MAX_SIDE:
        raise BadRecordError(f"{name}: record field 'tiles.side' is {side!r:.20}, out of range")
    margin = tiles.get("margin", 0)
    if not _is_count(margin) or margin >= side:
        raise BadRecordError(
            f"{name}: record field 'tiles.margin' is {margin!r:.20}, not 0 up to the side {side}"
        )
    count = -(-record.height // side) * -(-record.width // side)
    if not (isinstance(lengths, list) and len(lengths) == count and all(map(_is_count, lengths))):
        raise BadRecordError(
            f"{name}: record field 'tiles.lengths' must be {count} byte counts "
            f"(a {record.height}x{record.width} image in tiles of {side})"
        )
    if sum(lengths) != len(record.residual):
        raise BadRecordError(
            f"{name}: record field 'tiles.lengths' adds up to {sum(lengths)} bytes, "
            f"the residual holds {len(record.residual)}"
        )
    if not (isinstance(digests, list) and len(digests) == count):
        raise BadRecordError(f"{name}: record field 'tiles.digests' must be {count} digests")
    if not all(isinstance(d, str) and _HEX64.fullmatch(d) for d in digests):
        raise BadRecordError(f"{name}: record field 'tiles.digests' holds a malformed digest")
