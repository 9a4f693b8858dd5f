"""Any protector from what a user types: a checkpoint directory or a baseline's name.

``--protector`` of the command line accepts a saved `RAEG` (the key), a saved `RAE` or
`RIT`, or the registered name of a baseline (``rae-igsm``, ``rae-cw``, ``rit-igsm``).
A baseline attacks target classifiers to protect, so protecting with one needs their
checkpoints; recovering needs none (the baselines keep nothing secret).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from invprotect.baselines import RAE, RIT, create_baseline, is_baseline, list_baselines
from invprotect.checkpoint import CheckpointError, load_checkpoint
from invprotect.models import RAEG
from invprotect.models.protector import Protector
from invprotect.targets import Classifier, Ensemble

__all__ = ["load_protector"]


def load_protector(
    spec: str | Path,
    device: torch.device | str | None = None,
    targets: Sequence[str | Path] = (),
) -> Protector:
    """The protector named by ``spec``.

    Args:
        spec: A checkpoint directory (`RAEG`, `RAE` or `RIT`) or a baseline's name.
        device: Where to compute (default: the CPU).
        targets: Classifier checkpoints a baseline attacks when protecting (their
            ensemble); ignored for `RAEG`, which was trained against its targets.

    Raises:
        CheckpointError: If ``spec`` is neither a protector checkpoint nor a baseline name.
    """
    device = torch.device(device or "cpu")
    if isinstance(spec, str) and is_baseline(spec):
        return create_baseline(spec, _ensemble(targets, device))
    path = Path(spec)
    if not path.exists():
        raise CheckpointError(
            f"{spec} is neither a protector checkpoint nor a baseline "
            f"({', '.join(list_baselines())})"
        )
    _, settings = load_checkpoint(path)  # refuses pickles and incomplete checkpoints
    kind = settings.get("format")
    if kind == "invprotect.raeg/1":
        return RAEG.load(path, device)  # checks its config field by field
    if kind not in ("invprotect.rae/1", "invprotect.rit/1"):
        raise CheckpointError(f"{path} is not a protector checkpoint (format {kind!r})")
    ensemble = _ensemble(targets, device)
    try:
        return RAE.load(path, ensemble) if kind == "invprotect.rae/1" else RIT.load(path, ensemble)
    except (KeyError, TypeError) as error:  # a hand-edited config.json: a key missing or wrong
        raise CheckpointError(f"{path}/config.json is malformed: {error!r}") from None


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
