"""Reversible data hiding (RDH) in 8-bit images.

`embed` hides bytes in a ``uint8`` image so that `extract` returns the bytes and the
original image bit for bit; `capacity` says how many bits fit. The scheme, sorted
rhombus prediction-error expansion with histogram shifting, and its exact layout are
described in `invprotect.rdh.pee`.

Example:
    >>> import numpy as np
    >>> cover = np.full((16, 16), 120, dtype=np.uint8)
    >>> payload, restored = extract(embed(cover, b"hi"))
    >>> payload, np.array_equal(restored, cover)
    (b'hi', True)
"""

from invprotect.rdh.pee import MAGIC, CapacityError, capacity, capacity_bpp, embed, extract

__all__ = ["MAGIC", "CapacityError", "capacity", "capacity_bpp", "embed", "extract"]
