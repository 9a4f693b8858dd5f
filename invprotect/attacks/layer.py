"""The attack layer the protector trains through: one random attack per sample (or batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from invprotect.attacks._checks import apply_grouped, check_images, check_weights
from invprotect.attacks.base import Attack, AttackParams
from invprotect.attacks.registry import create_attack, is_attack, list_attacks

DEFAULT_ATTACKS: dict[str, float] = {
    "identity": 1.0,
    "gaussian_noise": 1.0,
    "gaussian_blur": 1.0,
    "resize": 1.0,
    "random_crop": 1.0,
    "pseudo_jpeg": 1.0,
}
"""Default mix of `AttackLayer`: no attack plus the paper's five attack types, equally."""


class AttackResult(NamedTuple):
    """What an `AttackLayer` did to a batch.

    Attributes:
        images: The attacked images ``(B, C, H, W)``, with the autograd graph.
        names: Registry name of the attack applied to each sample (length ``B``).
        params: Parameters of each sample's attack (length ``B``): a dict of tensors, each
            the sample's row of the attack's `invprotect.attacks.Attack.sample_params`
            output (0-d for scalar parameters). Pass the whole result to
            `AttackLayer.replay` to repeat the attack.
    """

    images: Tensor
    names: list[str]
    params: list[AttackParams]


class AttackLayer(nn.Module):
    """Apply one randomly chosen attack to each sample (or to the whole batch).

    The attacks come from the attack registry, chosen with probabilities proportional to
    their weights; include ``"identity"`` to leave a share of the samples unattacked.
    Each chosen attack draws its own per-sample parameters. Samples that drew the same
    attack go through it in one call, and the outputs are put back in the input order.
    The result records, per sample, the attack's name and parameters, so
    `replay` can repeat it exactly. ``train()``/``eval()`` change nothing: the
    caller decides when to attack.

    Args:
        attacks: Mapping registry name -> non-negative weight (normalised to sum 1); default
            `DEFAULT_ATTACKS`. Attacks of weight 0 are not built.
        attack_kwargs: Optional mapping registry name -> constructor keyword arguments
            (``None`` values dropped, as in `invprotect.attacks.create_attack`).
        per_sample: One attack per sample (default) or one per batch.

    Raises:
        ValueError: If a weight is invalid, a name is not a registered attack, or
            ``attack_kwargs`` names an attack that is not in ``attacks``.

    Example:
        >>> layer = AttackLayer({"identity": 1.0, "gaussian_noise": 1.0, "jpeg_ss": 2.0})
        >>> x = torch.rand(4, 3, 16, 16)
        >>> result = layer(x, generator=torch.Generator().manual_seed(0))
        >>> result.images.shape, len(result.names), len(result.params)
        (torch.Size([4, 3, 16, 16]), 4, 4)
        >>> torch.equal(layer.replay(x, result), result.images)
        True
    """

    def __init__(
        self,
        attacks: Mapping[str, float] | None = None,
        attack_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        per_sample: bool = True,
    ) -> None:
        super().__init__()
        weights = dict(DEFAULT_ATTACKS) if attacks is None else dict(attacks)
        unknown = sorted(name for name in weights if not is_attack(name))
        if unknown:
            raise ValueError(
                f"AttackLayer: expected registered attacks among {list_attacks()}; "
                f"received unknown attacks {unknown}"
            )
        normalised = check_weights("AttackLayer", weights)
        kwargs = dict(attack_kwargs or {})
        extra = sorted(set(kwargs) - set(weights))
        if extra:
            raise ValueError(
                f"AttackLayer: attack_kwargs given for {extra}, which are not among the "
                f"attacks {sorted(weights)}; add them to attacks or remove their kwargs"
            )
        if not isinstance(per_sample, bool):
            raise ValueError(f"AttackLayer: per_sample must be a bool; received {per_sample!r}")
        self.weights: dict[str, float] = {k: v for k, v in normalised.items() if v > 0}
        self.per_sample = per_sample
        self.attacks = nn.ModuleDict(
            {name: create_attack(name, **dict(kwargs.get(name, {}))) for name in self.weights}
        )
        self._names: list[str] = list(self.weights)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> AttackResult:
        """Attack each sample with a randomly chosen attack and random parameters.

        Args:
            x: Images ``(B, C, H, W)``, float in ``[0, 1]``.
            generator: Source of randomness (choice of attacks and their parameters);
                ``None`` uses torch's global generator.

        Returns:
            The attacked images with, per sample, the attack's name and parameters.

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: If ``x`` is not a floating ``(B, C, H, W)`` batch.
        """
        check_images("AttackLayer", x)
        batch = x.shape[0]
        if batch == 0:
            return AttackResult(x, [], [])
        source = generator.device if generator is not None else torch.device("cpu")
        probabilities = torch.tensor(list(self.weights.values()), device=source)
        draws = batch if self.per_sample else 1
        choice = torch.multinomial(probabilities, draws, replacement=True, generator=generator)
        choice = choice.cpu().expand(batch)
        names = [self._names[index] for index in choice.tolist()]
        records: list[AttackParams] = [{} for _ in range(batch)]

        def attack_group(part: Tensor, index: Tensor) -> Tensor:
            rows = index.tolist()
            attack: Attack = self.attacks[names[rows[0]]]  # type: ignore[assignment]
            params = attack.sample_params(len(rows), generator, x.device)
            for row, sample in enumerate(rows):
                records[sample] = {key: value[row] for key, value in params.items()}
            return attack(part, params)

        images = apply_grouped(x, choice, attack_group)
        return AttackResult(images, names, records)

    def replay(self, x: Tensor, result: AttackResult) -> Tensor:
        """Apply to ``x`` exactly the attacks recorded in ``result`` (same names, same params).

        Args:
            x: Images ``(B, C, H, W)`` with the batch size of ``result``.
            result: The record returned by `forward` (its ``images`` are ignored).

        Returns:
            The attacked images.

        Raises:
            ValueError: If the batch sizes differ or the record names an attack this layer
                does not have.
        """
        check_images("AttackLayer", x)
        names, params = result.names, result.params
        if len(names) != x.shape[0] or len(params) != x.shape[0]:
            raise ValueError(
                f"AttackLayer.replay: expected a record of {x.shape[0]} samples; received "
                f"{len(names)} names and {len(params)} parameter sets"
            )
        missing = sorted(set(names) - set(self.attacks))
        if missing:
            raise ValueError(
                f"AttackLayer.replay: the record uses attacks {missing} that this layer does "
                f"not have ({sorted(self.attacks)})"
            )
        if not names:
            return x
        keys = torch.tensor([self._names.index(name) for name in names])

        def replay_group(part: Tensor, index: Tensor) -> Tensor:
            rows = index.tolist()
            attack: Attack = self.attacks[names[rows[0]]]  # type: ignore[assignment]
            stacked = {
                key: torch.stack([params[row][key] for row in rows]) for key in params[rows[0]]
            }
            return attack(part, stacked)

        return apply_grouped(x, keys, replay_group)

    def extra_repr(self) -> str:
        """The settings, shown by ``repr``."""
        weights = ", ".join(f"{name}: {weight:.3g}" for name, weight in self.weights.items())
        return f"weights={{{weights}}}, per_sample={self.per_sample}"
