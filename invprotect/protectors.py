"""Any protector from what a user types: a checkpoint directory or a baseline's name.

``--protector`` of the command line accepts a saved protector of any registered format
(`invprotect.models.protector.PROTECTORS`: a saved `RAEG`, the key, or a saved `RAE` or
`RIT`), or the registered name of a baseline (``rae-igsm``, ``rae-cw``, ``rit-igsm``).
A baseline attacks target classifiers to protect, so protecting with one needs their
checkpoints; recovering needs none (the baselines keep nothing secret).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

import invprotect.models  # noqa: F401  (registers RAEG)
from invprotect._registry import UnknownNameError
from invprotect.attacks import create_attack
from invprotect.baselines import create_baseline, is_baseline, list_baselines
from invprotect.checkpoint import CheckpointError
from invprotect.defences import JPEG, ComDefend, Grayscale, create_defence_from_spec
from invprotect.models.poison import PoisonConfig, TargetedPoison
from invprotect.models.protector import PROTECTORS, Checkpoint, Protector
from invprotect.targets import Classifier, Ensemble

__all__ = ["load_protector"]


def load_protector(
    spec: str | Path,
    device: torch.device | str | None = None,
    targets: Sequence[str | Path] = (),
    poison: PoisonConfig | None = None,
) -> Protector:
    """The protector named by ``spec``.

    A checkpoint is read once; the class registered for its ``format`` builds the
    protector (`invprotect.models.protector.Protector.from_checkpoint`).

    Args:
        spec: A protector checkpoint directory or a baseline's name.
        device: Where to compute (default: the CPU).
        targets: Classifier checkpoints a baseline attacks when protecting (their
            ensemble); for `RAEG`, what ``poison`` attacks (else they are not used: the
            network was trained against its targets).
        poison: Settings of a targeted poison that refines every protected image
            (`invprotect.models.poison`); ``None`` or 0 steps: none.

    Raises:
        CheckpointError: If ``spec`` is neither a protector checkpoint nor a baseline name.
        ValueError: If a poison is asked for without targets, of classifiers that
            disagree on their input size, or of a protector that cannot add one.
    """
    device = torch.device(device or "cpu")
    if isinstance(spec, str) and is_baseline(spec):
        protector = create_baseline(spec, _ensemble(targets, device))
    else:
        protector = _from_checkpoint(Path(spec), device, targets)
    if poison is not None and poison.steps > 0:
        try:
            protector.use_poison(_poison(targets, device, poison))
        except TypeError as error:  # a protector whose records cannot code a refined image
            raise ValueError(str(error)) from None
    return protector


def _from_checkpoint(path: Path, device: torch.device, targets: Sequence[str | Path]) -> Protector:
    """The protector saved in ``path`` (a baseline's with its targets)."""
    if not path.exists():
        raise CheckpointError(
            f"{path} is neither a protector checkpoint nor a baseline "
            f"({', '.join(list_baselines())})"
        )
    checkpoint = Checkpoint.read(path)  # refuses pickles and incomplete checkpoints
    kind = checkpoint.format
    if not isinstance(kind, str) or kind not in PROTECTORS:
        raise CheckpointError(f"{path} is not a protector checkpoint (format {kind!r})")
    cls = PROTECTORS.get(kind)
    protector = cls.from_checkpoint(checkpoint, device)
    if cls.attacks_targets:
        protector.use_targets(_ensemble(targets, device))
    return protector


def _poison(
    targets: Sequence[str | Path], device: torch.device, config: PoisonConfig
) -> TargetedPoison:
    """The poison of ``config`` against the ensemble of ``targets``."""
    ensemble = _ensemble(targets, device)
    if ensemble is None:
        raise ValueError("the targeted poison attacks classifiers: pass them with --targets")
    sizes = {member.input_size for member in ensemble.members}
    if len(sizes) != 1:
        raise ValueError(f"the poison's classifiers take different image sizes: {sorted(sizes)}")
    views = _poison_views(config.through, device)
    return TargetedPoison(ensemble, sizes.pop(), config, views=views)


def _poison_views(specs: Sequence[str], device: torch.device) -> list[Callable[[Tensor], Tensor]]:
    """Differentiable stand-ins for the thief's defences ``specs`` that the poison sees through.

    Raises:
        ValueError: For a malformed spec, or a defence the poison cannot see through.
        CheckpointError: For a ComDefend whose weights cannot be read.
    """
    views: list[Callable[[Tensor], Tensor]] = []
    for spec in specs:
        try:
            defence = create_defence_from_spec(spec)
        except UnknownNameError as error:
            raise ValueError(f"the poison cannot see through {spec!r}: {error}") from None
        if isinstance(defence, ComDefend):
            purifier = defence.to(device).eval().requires_grad_(False)
            views.append(purifier.reconstruct_straight_through)
        elif isinstance(defence, JPEG):
            views.append(create_attack("jpeg_kornia", quality=defence.quality))
        elif isinstance(defence, Grayscale):
            views.append(create_attack("grayscale"))
        else:
            raise ValueError(
                f"the poison cannot see through {spec!r}: it takes jpeg:quality=Q, grayscale "
                "and comdefend:weights=PATH"
            )
    return views


def _ensemble(targets: Sequence[str | Path], device: torch.device) -> Ensemble | None:
    """The ensemble a baseline attacks (``None`` without targets: recovery only)."""
    members = []
    for path in targets:
        try:
            members.append(Classifier.load(path, device))
        except CheckpointError as error:
            raise CheckpointError(f"cannot load the classifier {path}: {error}") from None
        except (KeyError, TypeError) as error:  # a hand-edited config.json
            raise CheckpointError(
                f"cannot load the classifier {path}: config.json is malformed: {error!r}"
            ) from None
    return Ensemble(members) if members else None
