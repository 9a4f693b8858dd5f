"""Bit-exact recovery: a compact residual that repairs what 8-bit rounding and clipping destroy.

A protected image is saved as 8-bit PNG, so recovery starts from the rounded and clipped
image, and the inverse network alone cannot return the original bit for bit.
`ExactCodec` closes that gap with a residual stored in each file's record: what the
original differs from a prediction that the recovering machine computes from the
protected pixels. Both sides must compute that prediction to the same bits.

How (record coding 1, written since record version 3). Protection and prediction run
the network's fixed-point twin (`invprotect.models.fixed_point.FixedPointUNet`), whose
every tensor is bit for bit the same on every CPU code path, thread count, batch size
and device (its module docstring holds the proof). It costs about as much as the
float32 network (measured in ``benchmarks/bench_exact.py``), where the float64
prediction of coding 0 cost several times more and was only very probably the same
everywhere. Protection computes the twin's output ``y``, rounds ``255 y`` to integers
``q`` and saves ``q`` clipped to ``[0, 255]``. The record holds:

1. *Overflow*: for every value saved as 0 or 255, how far ``q`` lay beyond it (mostly
   0), so that the inverse pass sees ``q`` itself, not the clipped value: clipping then
   costs one small number where it happens instead of a cloud of residuals around it.
2. *Residual*: ``original - round(v)`` per value, where ``v = 255 * inverse(q / 255)``
   is the prediction. Values whose ``v`` lies near a rounding boundary are far more
   often off by one, in the direction of ``v``'s fraction, than values whose ``v`` is
   near an integer. So each residual is multiplied by the sign of ``v``'s fraction and
   the residuals are grouped by the distance of ``v`` from an integer (8 classes, plus
   one for predictions outside ``[0, 255]``) before compression: each group is a run of
   like statistics. The decoder knows ``v`` to the bit, hence the groups and signs.

Both sequences are stored as one: a bit per entry that says whether it is non-zero
(most are 0), then the non-zero bytes, then the large values, escaped (so any image
codes), all compressed with LZMA. A residual is decompressed only up to the size its
image and its header's counts allow (`inflate_exactly` for coding 0), and every count
in it is checked against the image, so a forged one cannot make recovery allocate more.

Coding 0 (record version 2 and earlier) stored ``original - round(v64)`` as zlib-packed
16-bit integers, with ``v64`` the float64 inverse of the clipped image; such residuals
still decode with that prediction. Protectors the twin does not implement (the
encoder-decoder ablation, subnets registered elsewhere) keep writing coding 0.
"""

from __future__ import annotations

import copy
import lzma
import struct
import weakref
import zlib
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from invprotect.models.fixed_point import FixedPointUNet, supports
from invprotect.models.protector import Protector

Refinement = Callable[[Tensor, Tensor], Tensor]
"""``(uint8 originals, protected levels) -> new protected levels`` (floats holding integers)."""
CODING = 1
"""First byte of a residual written by this version (coding 0 residuals are zlib streams)."""
WINDOW_CODING = 2
"""First byte of a tile's part that holds its window's levels (`code_window`), not a residual."""
OVERFLOW_LIMIT = 65535
"""Largest overflow kept; the network's output is clipped to ``[-limit, 255 + limit]`` first."""
CLASSES = 9
"""Residual groups: 8 distances of the prediction from an integer, and outside ``[0, 255]``."""
_HEADER = struct.Struct(">BII")  # coding, non-zero entries, escaped values
_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 2**20, "lc": 0, "lp": 0, "pb": 0}]


class ExactCodec:
    """Residual coding for bit-exact recovery with a given protector.

    Args:
        protector: A protector that is an ``nn.Module`` (such as `RAEG`). Its generator
            is mirrored by the fixed-point twin when the twin supports it; otherwise
            (and for residuals of coding 0) a float64 copy predicts.
    """

    def __init__(self, protector: Protector) -> None:
        if not isinstance(protector, nn.Module):
            raise ValueError(f"ExactCodec needs an nn.Module protector, got {type(protector)}")
        self.protector = protector
        self.twin = _twin_of(protector)
        self._legacy: nn.Module | None = None

    @property
    def coding(self) -> int:
        """The coding `residuals` and `encode` write: 1 with the twin, else 0."""
        return CODING if self.twin is not None else 0

    def encode(
        self, originals: Tensor, refine: Refinement | None = None
    ) -> tuple[Tensor, list[bytes]]:
        """Protect ``uint8`` originals ``(B, 3, H, W)``: protected ``uint8`` images and residuals.

        With the twin, the protected images are the twin's forward pass (the same bits on
        every machine); otherwise the protector's own `protect`. ``refine`` (such as
        `invprotect.models.poison.TargetedPoison.refine`) may change those levels before
        they are saved: the residual codes the original against whatever is saved, so
        recovery stays bit for bit. With an integer network's twin (`FixedPointUNet.lossless`)
        and no ``refine``, the prediction is known to be the originals themselves, so
        protection runs the twin forward only and every residual is zero: the record
        holds the overflow alone.
        """
        _check_uint8(originals, "originals")
        if self.twin is None:
            protected = Protector.encode(self.protector, originals)[0]  # the float network
            if refine is not None:
                protected = refine(originals, protected.float()).clamp(0, 255).to(torch.uint8)
            return protected, self.residuals(originals, protected)
        levels, lossless = self.lossless_levels(originals)
        if refine is not None:
            levels = refine(originals, levels)
        protected = levels.clamp(0, 255).to(torch.uint8)
        if lossless and refine is None:
            # an integer twin's inverse of its own levels is the originals: no inverse pass,
            # and every residual value is 0 (the bytes `code` would write, without sorting)
            return protected, [
                _pack(_overflow(saved, level).numpy(), np.zeros(saved.numel(), np.int64))
                for saved, level in zip(protected, levels, strict=True)
            ]
        return protected, self._code(originals, protected, levels)

    def protected_levels(self, originals: Tensor) -> Tensor:
        """The twin's protected images as integer levels ``round(255 y)``, unclipped (CPU).

        Saved clipped to ``[0, 255]``, they are the protected pixels `encode` returns.

        Raises:
            ValueError: If the protector has no fixed-point twin.
        """
        _check_uint8(originals, "originals")
        return _levels(self._twin().forward(originals.float() / 255)).cpu()

    def lossless_levels(self, originals: Tensor) -> tuple[Tensor, bool]:
        """`protected_levels`, and whether the twin's inverse of them is ``originals`` exactly.

        True for an integer network's twin (`FixedPointUNet.lossless`) whose values all
        stayed exact float32 integers (`FixedPointUNet.forward_checked`) and whose levels
        were not bounded by `OVERFLOW_LIMIT`: then no inverse pass is needed to code them.

        Raises:
            ValueError: If the protector has no fixed-point twin.
        """
        _check_uint8(originals, "originals")
        output, exact = self._twin().forward_checked(originals.float() / 255)
        levels = _levels(output).cpu()
        inside = (levels > -OVERFLOW_LIMIT) & (levels < 255 + OVERFLOW_LIMIT)
        return levels, self._twin().lossless and exact and bool(inside.all())

    def prediction(self, levels: Tensor) -> Tensor:
        """``255 * inverse(levels / 255)``: what recovery rounds, from protected levels (CPU).

        Raises:
            ValueError: If the protector has no fixed-point twin.
        """
        self._twin()
        return self._prediction(levels)

    def code(
        self, originals: Tensor, protected: Tensor, levels: Tensor, values: Tensor
    ) -> list[bytes]:
        """Coding-1 residuals of ``uint8`` originals against a `prediction` ``values``.

        ``levels`` are the protected levels (`protected_levels`), ``protected`` the same
        clipped to 8 bits; ``values`` may come from a larger window than the images (a
        tile's context, `invprotect.tiles`), as long as recovery computes them alike.
        """
        blobs = []
        for image, saved, level, value in zip(originals, protected, levels, values, strict=True):
            prediction, groups, signs = _context(value)
            difference = (image.to(torch.int64) - prediction) * signs
            order = torch.argsort(groups.flatten(), stable=True)
            overflow = _overflow(saved, level).numpy()
            blobs.append(_pack(overflow, difference.flatten()[order].numpy()))
        return blobs

    def unpack(self, protected: Tensor, blobs: list[bytes]) -> tuple[Tensor, list[np.ndarray]]:
        """The protected levels and the residuals of `code`: the first half of `restore`.

        Raises:
            ValueError: If a residual is corrupt or does not fit its image.
        """
        rests = []
        levels = protected.float()
        for index, (saved, blob) in enumerate(zip(protected, blobs, strict=True)):
            bounds = at_bounds(saved)
            overflow, rest = _unpack(blob, int(bounds.sum()), saved.numel())
            signed = torch.where(saved[bounds] == 0, -overflow, overflow).float()
            levels[index][bounds] += signed
            rests.append(rest)
        return levels, rests

    def combine(self, values: Tensor, rests: list[np.ndarray]) -> Tensor:
        """The ``uint8`` originals from a `prediction` and `unpack`'s residuals.

        Raises:
            ValueError: If a residual restores values outside ``0..255`` (it is corrupt).
        """
        restored = []
        for value, rest in zip(values, rests, strict=True):
            prediction, groups, signs = _context(value)
            difference = torch.empty(value.numel(), dtype=torch.int64)
            difference[torch.argsort(groups.flatten(), stable=True)] = torch.from_numpy(rest)
            original = prediction + difference.view(value.shape) * signs
            if original.min() < 0 or original.max() > 255:
                raise ValueError("residual is corrupt (it restores values outside 0..255)")
            restored.append(original.to(torch.uint8))
        return torch.stack(restored)

    def code_window(
        self, protected: Tensor, overflow: Tensor, ring_saved: Tensor, ring_levels: Tensor
    ) -> bytes:
        """Coding 2: one tile protected inside its window by an integer network.

        An integer network's inverse gives the tile back exactly from its window's
        levels, so instead of a residual the part holds what recovery cannot see: the
        tile's overflow (as in `code`), and how far the window's levels outside the tile
        (``ring_levels``) lie from the pixels saved there by the neighbouring tiles
        (``ring_saved``). Both are small where the window overlaps its neighbours'.

        Args:
            protected: The tile's saved ``uint8`` pixels ``(3, h, w)``.
            overflow: The tile's levels minus its saved pixels where those are 0 or 255
                (`at_bounds` order).
            ring_saved: The saved pixels of the window outside the tile (any shape).
            ring_levels: The window's levels there, the same shape.
        """
        difference = ring_levels.to(torch.int64) - ring_saved.to(torch.int64)
        over = overflow.abs().to(torch.int64).numpy()
        return _pack(over, difference.flatten().numpy(), WINDOW_CODING)

    def unpack_window(self, protected: Tensor, blob: bytes, ring: int) -> tuple[Tensor, Tensor]:
        """The tile's levels and the ``ring`` window differences of a `code_window` part.

        Raises:
            ValueError: If the part is corrupt or does not fit the tile and its window.
        """
        bounds = at_bounds(protected)
        overflow, difference = _unpack(
            blob, int(bounds.sum()), ring, WINDOW_CODING, OVERFLOW_LIMIT + 255
        )
        levels = protected.float()
        levels[bounds] += torch.where(protected[bounds] == 0, -overflow, overflow).float()
        return levels, torch.from_numpy(difference)

    def _twin(self) -> FixedPointUNet:
        if self.twin is None:
            raise ValueError(
                "this protector's architecture has no fixed-point network (residual coding 0)"
            )
        return self.twin

    def residuals(self, originals: Tensor, protected: Tensor) -> list[bytes]:
        """Per image, the coded difference between the original and the prediction.

        Args:
            originals: ``uint8`` originals ``(B, 3, H, W)``.
            protected: ``uint8`` protected images of the same shape, as they are saved
                (no overflow is known: every overflow is coded as 0).
        """
        _check_uint8(protected, "protected images")
        if originals.shape != protected.shape or originals.dtype != torch.uint8:
            raise ValueError(
                f"expected uint8 originals of shape {tuple(protected.shape)}, "
                f"got {originals.dtype} {tuple(originals.shape)}"
            )
        if self.twin is None:
            difference = originals.to(torch.int16) - self._predict_legacy(protected)
            return [zlib.compress(d.numpy().astype("<i2").tobytes(), 9) for d in difference]
        return self._code(originals, protected, protected.float())

    def predict(self, protected: Tensor) -> Tensor:
        """The 8-bit recovery of 8-bit protected images ``(B, 3, H, W)`` without residuals."""
        _check_uint8(protected, "protected images")
        if self.twin is None:
            return self._predict_legacy(protected).clamp(0, 255).to(torch.uint8)
        values = self._prediction(protected.float())
        return values.round().clamp(0, 255).to(torch.uint8)

    def restore(self, protected: Tensor, residuals: list[bytes]) -> Tensor:
        """The exact ``uint8`` originals from 8-bit protected images and their residuals.

        Each residual is decoded in the coding it was written in (its first byte).

        Raises:
            ValueError: If a residual does not match its image (a corrupt record).
        """
        _check_uint8(protected, "protected images")
        if len(residuals) != protected.shape[0]:
            raise ValueError(f"{len(residuals)} residuals for {protected.shape[0]} images")
        restored = torch.empty_like(protected)
        modern = [i for i, blob in enumerate(residuals) if blob[:1] == bytes([CODING])]
        legacy = sorted(set(range(len(residuals))) - set(modern))
        if legacy:
            restored[legacy] = self._restore_legacy(
                protected[legacy], [residuals[i] for i in legacy]
            )
        if modern:
            if self.twin is None:
                raise ValueError(
                    "residual of coding 1 needs the fixed-point network, which this "
                    "protector's architecture does not have"
                )
            restored[modern] = self._restore(protected[modern], [residuals[i] for i in modern])
        return restored

    def _prediction(self, levels: Tensor) -> Tensor:
        """``255 * inverse(levels / 255)`` from the twin, float32 on the CPU, finite."""
        assert self.twin is not None
        values = self.twin.inverse(levels / 255).mul_(255).cpu()
        return torch.nan_to_num(values, nan=0.0, posinf=1e6, neginf=-1e6).clamp_(-1e6, 1e6)

    def _code(self, originals: Tensor, protected: Tensor, levels: Tensor) -> list[bytes]:
        return self.code(originals, protected, levels, self._prediction(levels))

    def _restore(self, protected: Tensor, blobs: list[bytes]) -> Tensor:
        levels, rests = self.unpack(protected, blobs)
        return self.combine(self._prediction(levels), rests)

    def _legacy_model(self) -> nn.Module:
        if self._legacy is None:
            self._legacy = copy.deepcopy(self.protector).double().eval()
        return self._legacy

    @torch.no_grad()
    def _predict_legacy(self, protected: Tensor) -> Tensor:
        """Coding 0's prediction: the float64 recovery, rounded (``int16``)."""
        model = self._legacy_model()
        device = next(model.parameters()).device
        recovered = model.recover(protected.to(device=device, dtype=torch.float64) / 255)
        return (recovered * 255).round().clamp(0, 255).to(torch.int16).cpu()

    def _restore_legacy(self, protected: Tensor, residuals: list[bytes]) -> Tensor:
        prediction = self._predict_legacy(protected)
        restored = []
        for image, blob in zip(prediction, residuals, strict=True):
            raw = inflate_exactly(blob, 2 * image.numel(), "residual")
            difference = np.frombuffer(raw, dtype="<i2")
            restored.append(image + torch.from_numpy(difference.astype(np.int16)).view(image.shape))
        return torch.stack(restored).clamp(0, 255).to(torch.uint8)


_TWINS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, FixedPointUNet]] = (
    weakref.WeakKeyDictionary()
)


def _twin_of(protector: nn.Module) -> FixedPointUNet | None:
    """The fixed-point twin of a protector's generator, built once per state of its weights."""
    generator = getattr(protector, "generator", None)
    if not isinstance(generator, nn.Module):
        return None
    tensors = [*generator.parameters(), *generator.buffers()]
    state = tuple((t.data_ptr(), t._version, t.device) for t in tensors)
    cached = _TWINS.get(generator)
    if cached is not None and cached[0] == state:
        return cached[1]
    if not supports(generator):
        return None
    cached = (state, FixedPointUNet(generator, next(generator.parameters()).device))
    _TWINS[generator] = cached
    return cached[1]


def _check_uint8(images: Tensor, what: str) -> None:
    if images.dtype != torch.uint8 or images.dim() != 4:
        shape = tuple(images.shape)
        raise ValueError(f"expected uint8 {what} (B, C, H, W), got {images.dtype} {shape}")


def _levels(output: Tensor) -> Tensor:
    """The network's float output as integer levels ``round(255 y)``, bounded (float32)."""
    levels = torch.nan_to_num(output * 255, nan=0.0).round_()
    return levels.clamp_(-OVERFLOW_LIMIT, 255 + OVERFLOW_LIMIT)


def _overflow(saved: Tensor, levels: Tensor) -> Tensor:
    """How far the levels of the values saved as 0 or 255 lay beyond them (``int64``)."""
    return (levels - saved.float()).abs()[at_bounds(saved)].to(torch.int64)


def at_bounds(saved: Tensor) -> Tensor:
    """Where a saved image is 0 or 255 (where clipping may have happened)."""
    return (saved == 0) | (saved == 255)


def _context(value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The rounded prediction, the group and the sign of each value (see the module docstring)."""
    nearest = value.round()
    fraction = value - nearest
    inside = (value >= -0.5) & (value <= 255.5)
    groups = torch.where(inside, (fraction.abs() * 16).to(torch.int64).clamp_(max=7), 8)
    signs = torch.where(inside, torch.where(fraction >= 0, 1, -1), torch.where(value < 0, 1, -1))
    prediction = nearest.clamp(0, 255).to(torch.int64)
    return prediction, groups, signs


def _pack(overflow: np.ndarray, difference: np.ndarray, coding: int = CODING) -> bytes:
    """Coding 1: header, then LZMA of the non-zero map, the non-zero bytes and escaped values.

    The overflow bytes (``0..254``, 255 escaped) and the residual bytes (``-127..127``,
    -128 escaped) form one sequence; a bit per entry says whether it is non-zero, and
    only the non-zero bytes follow. Most entries are 0: the map compresses far better
    than the bytes themselves.
    """
    over = overflow.astype(np.int64)
    over_escaped = over >= 255
    diff_escaped = np.abs(difference) >= 128
    entries = np.concatenate(
        [
            np.where(over_escaped, 255, over).astype(np.uint8),
            np.where(diff_escaped, -128, difference).astype(np.int8).view(np.uint8),
        ]
    )
    nonzero = entries != 0
    escapes = np.concatenate([over[over_escaped], difference[diff_escaped]]).astype(">i4")
    payload = np.packbits(nonzero).tobytes() + entries[nonzero].tobytes() + escapes.tobytes()
    header = _HEADER.pack(coding, int(nonzero.sum()), len(escapes))
    return header + lzma.compress(payload, format=lzma.FORMAT_RAW, filters=_FILTERS)


def _unpack(
    blob: bytes, bounded: int, count: int, coding: int = CODING, limit: int = 255
) -> tuple[Tensor, np.ndarray]:
    """Overflow (``int64`` tensor) and sorted residual (``int64`` array) of a coding-1 residual.

    Also the overflow and window differences of a ``coding`` 2 part (`code_window`), whose
    values may reach ``limit``.

    Raises:
        ValueError: If the residual is corrupt or does not fit an image of ``count``
            values of which ``bounded`` are 0 or 255.
    """
    if len(blob) < _HEADER.size:
        raise ValueError(f"residual is corrupt (only {len(blob)} bytes)")
    written, nonzero_count, escaped = _HEADER.unpack_from(blob)
    if written != coding:
        raise ValueError(f"residual is of coding {written}, expected {coding}")
    total = bounded + count
    if nonzero_count > total or escaped > nonzero_count:
        raise ValueError(f"residual is corrupt ({nonzero_count} non-zero values of {total})")
    map_bytes = -(-total // 8)
    size = map_bytes + nonzero_count + 4 * escaped
    raw = _decompress_exactly(blob[_HEADER.size :], size)
    bits = np.unpackbits(np.frombuffer(raw, np.uint8, map_bytes))
    nonzero = bits[:total].astype(bool)
    if bits[total:].any() or int(nonzero.sum()) != nonzero_count:
        raise ValueError("residual is corrupt (its non-zero map does not match its count)")
    entries = np.zeros(total, np.uint8)
    entries[nonzero] = np.frombuffer(raw, np.uint8, nonzero_count, map_bytes)
    over = entries[:bounded].astype(np.int64)
    difference = entries[bounded:].view(np.int8).astype(np.int64)
    escapes = np.frombuffer(raw, ">i4", escaped, map_bytes + nonzero_count).astype(np.int64)
    over_escaped, diff_escaped = over == 255, difference == -128
    if over_escaped.sum() + diff_escaped.sum() != escaped:
        raise ValueError("residual is corrupt (escape count does not match)")
    split = int(over_escaped.sum())
    over[over_escaped] = escapes[:split]
    difference[diff_escaped] = escapes[split:]
    if (over < 0).any() or (over > OVERFLOW_LIMIT).any() or (np.abs(difference) > limit).any():
        raise ValueError("residual is corrupt (a value out of range)")
    return torch.from_numpy(over), difference


def _decompress_exactly(data: bytes, size: int) -> bytes:
    """LZMA-decompress a coding-1 payload that must give exactly ``size`` bytes, no more.

    Raises:
        ValueError: If the data are corrupt or hold another number of bytes.
    """
    decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_FILTERS)
    try:
        out = decompressor.decompress(data, max(size, 1))
        more = b"" if decompressor.eof else decompressor.decompress(b"", 1)
    except lzma.LZMAError as error:
        raise ValueError(f"residual is corrupt ({error})") from None
    if more or decompressor.unused_data or not decompressor.eof or len(out) != size:
        held = f"{len(out)}" if not more and decompressor.eof else f"more than {size}"
        raise ValueError(f"residual holds {held} bytes, expected {size}")
    return out


def inflate_exactly(data: bytes, size: int, what: str) -> bytes:
    """zlib-decompress ``data`` that must give exactly ``size`` bytes, never inflating more.

    Args:
        data: The compressed bytes.
        size: The number of bytes they must decompress to.
        what: What the data are, for error messages.

    Raises:
        ValueError: If the data are corrupt or hold another number of bytes.
    """
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, max(size, 1))  # a limit of 0 would mean no limit
        more = inflater.unconsumed_tail or inflater.decompress(b"", 1)
    except zlib.error as error:
        raise ValueError(f"{what} is corrupt ({error})") from None
    if more or inflater.unused_data or not inflater.eof or len(out) != size:
        held = f"{len(out)}" if not more and inflater.eof else f"more than {size}"
        raise ValueError(f"{what} holds {held} bytes, expected {size}")
    return out
