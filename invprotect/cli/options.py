"""Options that several commands share, defined once, and the loading of ``--protector``.

Each alias is the type of a command parameter: ``threads: ThreadsOption = None``. The
help text of an option lives here when the commands that take it mean the same by it;
an option whose meaning differs per command (``--seed``, ``--out``) stays with its
command. ``--shard`` is in `invprotect.cli.shards`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from invprotect.checkpoint import CheckpointError
from invprotect.cli.progress import fail
from invprotect.device import DEVICE_CHOICES, pick_device, set_threads
from invprotect.models.poison import PoisonConfig
from invprotect.models.protector import Protector
from invprotect.protectors import load_protector
from invprotect.targets import list_archs


def _apply_threads(threads: int | None) -> int | None:
    set_threads(threads)
    return threads


def _check_device(device: str) -> str:
    try:
        pick_device(device)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    return device


ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        callback=_apply_threads,
        show_default=False,
        help="CPU threads for torch (default: $OMP_NUM_THREADS if set, else every core).",
    ),
]
"""``--threads N`` of every command: sets torch's CPU threads while the options are parsed."""

DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        metavar="DEVICE",
        callback=_check_device,
        help=f"Where to compute: {DEVICE_CHOICES}.",
    ),
]
"""``--device`` of every command that computes: checked while the options are parsed."""

PROTECTOR_HELP = (
    "Protector: a checkpoint (the key), or a baseline: rae-igsm, rae-cw, rit-igsm, "
    "or a saved RAE/RIT."
)
"""What ``--protector`` names, for the commands that protect or measure with it."""

TARGETS_HELP = (
    "Classifier checkpoints a baseline attacks to protect, or --poison-steps attacks "
    "(repeat the option)."
)
"""What ``--targets`` gives a baseline protector."""

ProtectorOption = Annotated[str, typer.Option(metavar="PATH|NAME", help=PROTECTOR_HELP)]
"""``--protector`` of ``protect`` and ``recover``."""

TargetsOption = Annotated[
    list[Path] | None,
    typer.Option(metavar="PATH", help=TARGETS_HELP),
]
"""``--targets`` of ``protect`` and ``recover`` (what a baseline protector attacks)."""

PoisonStepsOption = Annotated[
    int,
    typer.Option(
        min=0,
        metavar="N",
        help=(
            "Refine each protected image with N steps of a targeted poison against the "
            "--targets classifiers (a RAEG key; whole images of their size), each image "
            "pushed from its class folder's class: a pirate who trains on the set learns "
            "far less. 0: the network alone."
        ),
    ),
]
"""``--poison-steps`` of ``protect`` (`invprotect.models.poison`)."""

PoisonEpsilonOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=255,
        metavar="LEVELS",
        help=(
            "Largest change of a value by the poison (8-bit) [default: 8, or 24 with "
            "--poison-psnr]."
        ),
    ),
]
"""``--poison-epsilon`` of ``protect``."""

PoisonPsnrOption = Annotated[
    float | None,
    typer.Option(
        min=10.0,
        max=60.0,
        metavar="DB",
        help=(
            "Bound the poison's change of each image by its PSNR instead of by each value "
            "(an L2 budget; values still within --poison-epsilon): a stronger poison at the "
            "same PSNR, which survives JPEG and purifiers better."
        ),
    ),
]
"""``--poison-psnr`` of ``protect``."""

PoisonThroughOption = Annotated[
    list[str] | None,
    typer.Option(
        metavar="SPEC",
        help=(
            "A thief's defence the poison's steps also see each image through (repeat for "
            "several): jpeg:quality=Q, grayscale or comdefend:weights=PATH. Stronger against "
            "that cleaning; each adds about one pass of the targets per step."
        ),
    ),
]
"""``--poison-through`` of ``protect``."""

FileBatchOption = Annotated[int, typer.Option(min=1, metavar="N", help="Images per batch.")]
"""``--batch-size`` of the folder commands ``protect`` and ``recover``."""

StepBatchOption = Annotated[int, typer.Option(min=1, help="Images per step.")]
"""``--batch-size`` of the training commands."""

TrainDataOption = Annotated[
    Path, typer.Option(help="ImageFolder root: root/<class>/<image>, or train/ and test/.")
]
"""``--data`` of ``train-targets`` and ``train-defence``."""

CheckpointOutOption = Annotated[
    Path, typer.Option(help="Checkpoint directory to write (safetensors + JSON).")
]
"""``--out`` of ``train-targets`` and ``train-defence``."""

EpochsOption = Annotated[int, typer.Option(min=1, help="Passes over the training set.")]
"""``--epochs`` of ``train-targets`` and ``train-defence``."""

ArchOption = Annotated[str, typer.Option(help=f"Architecture: {', '.join(list_archs())}.")]
"""``--arch`` of ``train-targets`` and ``pirate``."""

MaxTrainImagesOption = Annotated[
    int | None, typer.Option(min=1, help="Train on a seeded random subset of this many.")
]
"""``--max-train-images`` of ``train-targets`` and ``train-defence``."""

CacheDirOption = Annotated[
    Path | None, typer.Option(help="Keep decoded images here for the next run.")
]
"""``--cache-dir`` of ``train-targets`` and ``train-defence``."""

CacheOffOption = Annotated[bool, typer.Option(help="Do not cache decoded images.")]
"""``--no-cache`` of ``train-targets`` and ``train-defence`` (click also offers its
``--no-no-cache`` pair there; kept, since scripts may use it)."""

NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="Do not cache decoded images.")]
"""``--no-cache`` of ``demo`` and ``pirate``."""

TargetPsnrOption = Annotated[float, typer.Option(help="Wanted PSNR of protected images (dB).")]
"""``--target-psnr`` of ``train`` and ``demo``."""


def load_protector_option(
    spec: str,
    device: str,
    targets: list[Path] | None,
    protecting: bool,
    poison: PoisonConfig | None = None,
) -> Protector:
    """The protector of ``--protector``; a baseline must have ``--targets`` to protect.

    Raises:
        typer.Exit: With code 2 if it cannot be loaded, cannot protect without targets,
            or cannot add the ``poison``.
    """
    try:
        protector = load_protector(spec, pick_device(device), targets or [], poison)
    except (CheckpointError, ValueError) as error:
        raise fail(f"cannot load the protector {spec}: {error}") from None
    if protecting and not protector.can_protect:
        raise fail(f"{spec} protects by attacking classifiers: pass them with --targets")
    return protector
