"""The recovery record stored in each protected PNG (private chunk ``ipRS``).

Layout: ``b"IPR1"``, a 4-byte big-endian header length, a JSON header, then the
zlib-compressed residual of `invprotect.models.exact.ExactCodec`. The header says how
to turn the recovered RGB array back into the original file's pixels (mode, size
before padding, alpha, palette) and holds SHA-256 digests that tell whether the
protected image was altered and whether the recovery is exact.
"""

from __future__ import annotations

import json
import struct
from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_CHUNK = b"ipRS"
"""PNG chunk type of the record: ancillary, private, not safe to copy."""
_MAGIC = b"IPR1"


@dataclass
class RecoveryRecord:
    """What exact recovery needs besides the protector.

    Attributes:
        mode: PIL mode of the original (``RGB``, ``L``, ``RGBA``, ``LA``, ``P``, ``1``).
        height: Original height (before padding).
        width: Original width.
        original_sha256: Digest of the original's decoded pixels (`pixel_digest`).
        protected_sha256: Digest of the protected RGB pixels as saved.
        protector_sha256: Digest of the protector's weights.
        residual: Compressed residual of the padded RGB image.
        extra: Mode-specific data, e.g. ``{"palette": [...]}`` for palette images.
    """

    mode: str
    height: int
    width: int
    original_sha256: str
    protected_sha256: str
    protector_sha256: str
    residual: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """Serialise as the chunk body."""
        header = asdict(self)
        del header["residual"]
        text = json.dumps(header, sort_keys=True).encode()
        return _MAGIC + struct.pack(">I", len(text)) + text + self.residual

    @classmethod
    def from_bytes(cls, data: bytes) -> RecoveryRecord:
        """Parse a chunk body written by `to_bytes`.

        Raises:
            ValueError: If the body is not a version-1 record.
        """
        if not data.startswith(_MAGIC) or len(data) < 8:
            raise ValueError("not an invprotect recovery record (bad magic)")
        (length,) = struct.unpack(">I", data[4:8])
        try:
            header = json.loads(data[8 : 8 + length])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"corrupt recovery record header: {error}") from None
        return cls(**header, residual=data[8 + length :])
