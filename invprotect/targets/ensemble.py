"""An ensemble of frozen target classifiers, the models the protector must fool."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

Combine = Literal["logits", "probs"]


class Ensemble(nn.Module):
    """Frozen classifiers combined into one prediction.

    ``combine="logits"`` averages the logits; ``combine="probs"`` averages the softmax
    probabilities and returns their logarithm (so cross-entropy and argmax work on
    the output either way). The members are put in ``eval()`` mode and their
    parameters frozen; gradients still flow to the input.

    Args:
        members: Classifiers with the same classes, taking the same input.
        combine: How to combine the members' outputs.

    Shape:
        - Input: ``(B, 3, H, W)`` float in ``[0, 1]``
        - Output: ``(B, num_classes)``
    """

    def __init__(self, members: Sequence[nn.Module], combine: Combine = "logits") -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one classifier")
        if combine not in ("logits", "probs"):
            raise ValueError(f"combine must be 'logits' or 'probs', got {combine!r}")
        classes = {tuple(getattr(m, "classes", ())) for m in members}
        if len(classes) > 1:
            raise ValueError(f"ensemble members disagree on the classes: {sorted(classes)}")
        self.members = nn.ModuleList(members)
        self.combine = combine
        for parameter in self.members.parameters():
            parameter.requires_grad_(False)
        self.members.eval()

    @property
    def classes(self) -> list[str]:
        """The members' class names, in the order of the logits (empty if they name none)."""
        return list(getattr(self.members[0], "classes", ()))

    def train(self, mode: bool = True) -> Ensemble:
        """Keep the members in ``eval()`` mode whatever ``mode`` is (they are frozen)."""
        super().train(mode)
        self.members.eval()
        return self

    def member_logits(self, x: Tensor) -> list[Tensor]:
        """Each member's logits, in order."""
        return [member(x) for member in self.members]

    def forward(self, x: Tensor) -> Tensor:
        """Combined logits (``"logits"``) or log of the mean probabilities (``"probs"``)."""
        outputs = torch.stack(self.member_logits(x))
        if self.combine == "logits":
            return outputs.mean(0)
        return torch.logsumexp(outputs.log_softmax(-1), dim=0) - torch.log(
            torch.tensor(float(len(self.members)), device=x.device)
        )
