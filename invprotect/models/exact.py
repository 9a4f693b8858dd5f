"""Bit-exact recovery: a compact residual that repairs what 8-bit rounding and clipping destroy.

A protected image is saved as 8-bit PNG, so recovery starts from the rounded (and, where
the generator left ``[0, 1]``, clipped) image, and the inverse network alone cannot
return the original bit for bit. `ExactCodec` closes that gap. When protecting, it runs
the recovery on the 8-bit protected image and stores the difference between the
original and that prediction (small integers, mostly zero) compressed with zlib. When
recovering, it adds the difference back. A residual is inflated only up to the size its
image needs (`inflate_exactly`), so a forged one cannot make recovery allocate more.

Both sides must compute the same prediction. The prediction therefore runs in float64:
the network's float64 result differs between machines, thread counts or batch sizes by
about 1e-13 of a gray level, so it rounds to the same integer except with a
vanishingly small probability, whereas float32 differences of about 1e-4 of a level
would flip a pixel or two in most images.
"""

from __future__ import annotations

import copy
import zlib

import numpy as np
import torch
from torch import Tensor, nn

from invprotect.models.protector import Protector


class ExactCodec:
    """Residual coding for bit-exact recovery with a given protector.

    Args:
        protector: A protector that is an ``nn.Module`` (such as `RAEG`); a float64
            copy of it is kept for the predictions.
    """

    def __init__(self, protector: Protector) -> None:
        if not isinstance(protector, nn.Module):
            raise ValueError(f"ExactCodec needs an nn.Module protector, got {type(protector)}")
        self.model = copy.deepcopy(protector).double().eval()

    @torch.no_grad()
    def predict(self, protected: Tensor) -> Tensor:
        """The 8-bit recovery of 8-bit protected images ``(B, 3, H, W)`` (``uint8``)."""
        if protected.dtype != torch.uint8:
            raise ValueError(f"expected uint8 protected images, got {protected.dtype}")
        device = next(self.model.parameters()).device
        recovered = self.model.recover(protected.to(device=device, dtype=torch.float64) / 255)
        return (recovered * 255).round().clamp(0, 255).to(torch.uint8).cpu()

    def residuals(self, originals: Tensor, protected: Tensor) -> list[bytes]:
        """Per image, the compressed difference between the original and the prediction.

        Args:
            originals: ``uint8`` originals ``(B, 3, H, W)``.
            protected: ``uint8`` protected images of the same shape, as they are saved.
        """
        if originals.shape != protected.shape or originals.dtype != torch.uint8:
            raise ValueError(
                f"expected uint8 originals of shape {tuple(protected.shape)}, "
                f"got {originals.dtype} {tuple(originals.shape)}"
            )
        difference = originals.to(torch.int16) - self.predict(protected).to(torch.int16)
        return [zlib.compress(d.numpy().astype("<i2").tobytes(), 9) for d in difference]

    def restore(self, protected: Tensor, residuals: list[bytes]) -> Tensor:
        """The exact ``uint8`` originals from 8-bit protected images and their residuals.

        Raises:
            ValueError: If a residual does not match its image's size (a corrupt record).
        """
        prediction = self.predict(protected).to(torch.int16)
        if len(residuals) != prediction.shape[0]:
            raise ValueError(f"{len(residuals)} residuals for {prediction.shape[0]} images")
        restored = []
        for image, blob in zip(prediction, residuals, strict=True):
            raw = inflate_exactly(blob, 2 * image.numel(), "residual")
            difference = np.frombuffer(raw, dtype="<i2")
            restored.append(image + torch.from_numpy(difference.astype(np.int16)).view(image.shape))
        return torch.stack(restored).clamp(0, 255).to(torch.uint8)


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
