"""The thief's test: clean a protected training set, train a classifier on it, score it.

A data owner runs this on their own protected set to see what a pirate would get out of
it. The pirate

1. cleans every training image with a defence: any registered one
   (`invprotect.defences.list_defences`, written as a spec such as ``jpeg:quality=10``),
   ``none``, or ``learned-inverse``: a `invprotect.defences.learned_inverse.LearnedInverse`
   trained on ``leaked_count`` leaked (original, protected) pairs, then applied to the
   whole set (options ``learned-inverse:epochs=30,batch_size=32,lr=0.001,width=32``);
2. trains a registered architecture on the cleaned images
   (`invprotect.training.train_classifier`, optionally with PGD adversarial training);
3. reports the accuracy on the clean test set after every epoch, the final and the peak.

`train_pirate` works on decoded `invprotect.data.ImageSet` objects; `run_pirate` reads
the folders, calls it and writes ``OUT/pirate.json`` and ``OUT/accuracy.png``.
Everything the pirate trains is seeded by ``seed``.
"""

from __future__ import annotations

import difflib
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from invprotect._registry import UnknownNameError
from invprotect.data import ImageSet, load_image_set, scan_image_folder
from invprotect.defences import Defence, create_defence, parse_defence_spec, sample_generators
from invprotect.defences.learned_inverse import (
    LearnedInverse,
    LearnedInverseConfig,
    pair_psnr,
    train_learned_inverse,
)
from invprotect.device import Precision, pick_device
from invprotect.files.atomic import atomic_write_bytes
from invprotect.metrics import psnr
from invprotect.targets import Classifier
from invprotect.targets.zoo import is_arch, list_archs
from invprotect.training.adversarial import PGDConfig
from invprotect.training.classifier import (
    ClassifierTrainingConfig,
    TrainingEvent,
    train_classifier,
)

NO_DEFENCE = "none"
"""The defence spec of a pirate who trains on the images as he found them."""

LEARNED_INVERSE = "learned-inverse"
"""The defence spec of a pirate who learns to undo the protection from leaked pairs."""

LEARNED_INVERSE_OPTIONS = ("epochs", "batch_size", "lr", "max_steps", "width")
"""Keys a ``learned-inverse:key=value,...`` spec takes: ``width`` sets the U-Net's widths to
``(width, 2 * width, 4 * width)`` (default 32); the others go to `train_learned_inverse`."""

HELD_OUT_PAIRS = 1000
"""At most this many further (original, protected) pairs measure the learned inverse."""

_BATCH = 256


@dataclass(frozen=True)
class PirateProgress:
    """What `train_pirate` reports while it works.

    Attributes:
        stage: ``"decoding <folder>"``, ``"learned-inverse"`` (training it),
            ``"cleaning"`` or ``"training"``.
        done: Units done in this stage (images, or steps).
        total: Units in this stage.
        status: A short line to show (losses, accuracy).
    """

    stage: str
    done: int
    total: int
    status: str = ""


@dataclass
class PirateReport:
    """What a pirate run measured.

    Attributes:
        defence: The defence spec the training images were cleaned with.
        arch: The classifier architecture.
        epochs: Epochs trained.
        seed: Seed of cleaning, learned inverse, initialisation, order and augmentation.
        adversarial: PGD settings of adversarial training, or ``None``.
        train_images: Training images.
        test_images: Clean test images.
        classes: Class names.
        accuracy: Clean-test accuracy after each epoch.
        epoch_seconds: Wall time of each epoch.
        cleaning_seconds: Wall time of the cleaning (learned inverse training included).
        cleaning_psnr: Mean PSNR (dB) of the cleaned training images against the images
            as given (``None`` without a defence); 100 for unchanged images.
        learned_inverse: For ``learned-inverse``: pairs, steps, PSNR of the training
            pairs before and after cleaning, and on held-out pairs where more originals
            were given (``heldout_psnr_before``, ``heldout_psnr_after``, ``heldout_pairs``).
    """

    defence: str
    arch: str
    epochs: int
    seed: int
    adversarial: dict[str, Any] | None
    train_images: int
    test_images: int
    classes: list[str]
    accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    cleaning_seconds: float = 0.0
    cleaning_psnr: float | None = None
    learned_inverse: dict[str, Any] | None = None

    @property
    def final_accuracy(self) -> float:
        """Clean-test accuracy after the last epoch."""
        return self.accuracy[-1]

    @property
    def peak_accuracy(self) -> float:
        """Best clean-test accuracy over the epochs."""
        return max(self.accuracy)

    @property
    def peak_epoch(self) -> int:
        """The (1-based) epoch of `peak_accuracy` (the first one, on ties)."""
        return self.accuracy.index(self.peak_accuracy) + 1

    @property
    def label(self) -> str:
        """A short name of the run: ``arch, defence`` (``+ adversarial training``)."""
        extra = " + adversarial training" if self.adversarial else ""
        return f"{self.arch}, {self.defence}{extra}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy, with the final and peak accuracy and the peak's epoch."""
        data = asdict(self)
        data.update(
            final_accuracy=self.final_accuracy,
            peak_accuracy=self.peak_accuracy,
            peak_epoch=self.peak_epoch,
        )
        return data


def _widths(width: object) -> LearnedInverseConfig:
    """The learned inverse of ``learned-inverse:width=W``: widths ``(W, 2W, 4W)``."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"learned-inverse width must be a positive integer, got {width!r}")
    return LearnedInverseConfig((width, 2 * width, 4 * width))


def check_defence_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Parse and check a pirate's defence spec before any image is read.

    Accepts ``none``, ``learned-inverse[:key=value,...]`` (keys in
    `LEARNED_INVERSE_OPTIONS`) and any registered defence spec, which is built once to
    check its parameters (and, for ``comdefend``, its weights).

    Returns:
        The name and the typed keyword arguments.

    Raises:
        UnknownNameError: For a name that is none of these (close matches listed).
        ValueError: For a malformed spec or a parameter the defence does not take.
        CheckpointError: For missing or invalid ``comdefend`` weights.
    """
    name, kwargs = parse_defence_spec(spec)
    if name == NO_DEFENCE:
        if kwargs:
            raise ValueError(f"defence {NO_DEFENCE!r} takes no parameters, got spec {spec!r}")
    elif name == LEARNED_INVERSE:
        unknown = sorted(set(kwargs) - set(LEARNED_INVERSE_OPTIONS))
        if unknown:
            raise ValueError(
                f"{LEARNED_INVERSE} takes no parameter {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(LEARNED_INVERSE_OPTIONS)}"
            )
        if "width" in kwargs:
            _widths(kwargs["width"])
    else:
        create_defence(name, **kwargs)
    return name, kwargs


def check_arch(arch: str) -> None:
    """Check that ``arch`` is a registered architecture.

    Raises:
        UnknownNameError: If it is not; the message lists close matches.
    """
    if not is_arch(arch):
        close = difflib.get_close_matches(arch, list_archs(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        raise UnknownNameError(
            f"unknown architecture {arch!r}; {hint}registered: {', '.join(list_archs())}"
        )


def _with_images(images: ImageSet, pixels: torch.Tensor) -> ImageSet:
    return ImageSet(pixels, images.labels, images.classes, images.paths, images.bad_files)


def clean_images(
    images: ImageSet,
    defence: Defence,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> ImageSet:
    """Apply ``defence`` to every image (8-bit in, 8-bit out).

    Random defences draw each image's numbers from ``seed`` and its relative path
    (`invprotect.defences.sample_generators`), as ``invprotect purify`` does, so the
    result does not depend on the batching.

    Args:
        images: The images to clean.
        defence: A registered defence or a trained `LearnedInverse`.
        seed: Seed of random defences.
        progress: Called with the number of images just cleaned.

    Returns:
        A new set with the cleaned pixels and the same labels, classes and paths.
    """
    defence.eval()
    cleaned = []
    for start in range(0, len(images), _BATCH):
        index = range(start, min(len(images), start + _BATCH))
        generators = None
        if defence.stochastic:
            generators = sample_generators(seed, [images.paths[i] for i in index])
        out = defence(images.batch(index), generators)
        cleaned.append(out.mul(255.0).round().to(torch.uint8).cpu())
        if progress is not None:
            progress(len(index))
    return _with_images(images, torch.cat(cleaned))


def _key(path: str) -> str:
    """A relative path without its suffix: ``cat/0001.jpg`` and ``cat/0001.png`` match."""
    return path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path


def match_pairs(protected: ImageSet, originals: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(into protected, into originals)`` of the images present in both sets.

    Images match on their relative path without the suffix (``invprotect protect``
    turns ``cat/0001.jpg`` into ``cat/0001.png``), in the order of ``protected``.

    Raises:
        ValueError: If the class lists or image sizes differ, or no path matches.
    """
    if originals.classes != protected.classes:
        raise ValueError(
            f"the leaked originals have classes {originals.classes}, the protected training "
            f"set {protected.classes}; they must be the same data set"
        )
    where = {_key(path): i for i, path in enumerate(originals.paths)}
    pairs = [(i, where[_key(p)]) for i, p in enumerate(protected.paths) if _key(p) in where]
    if not pairs:
        raise ValueError(
            f"none of the {len(originals)} leaked originals has the relative path of a protected "
            "training image (suffix aside, e.g. cat/0001.jpg for cat/0001.png); give the "
            "originals in the layout of the protected folder"
        )
    if originals.images.shape[1:] != protected.images.shape[1:]:
        raise ValueError(
            f"leaked originals are {tuple(originals.images.shape[1:])}, protected images "
            f"{tuple(protected.images.shape[1:])}; pass a working size to load both alike"
        )
    index = torch.tensor(pairs, dtype=torch.long)
    return index[:, 0], index[:, 1]


def learn_inverse(
    protected: ImageSet,
    originals: ImageSet,
    count: int,
    seed: int = 0,
    progress: Callable[[PirateProgress], None] | None = None,
    **options: Any,
) -> LearnedInverse:
    """Train a `LearnedInverse` on ``count`` leaked pairs drawn (seeded) from the matching images.

    Pairs found in both sets beyond the ``count`` leaked ones (at most `HELD_OUT_PAIRS`)
    measure the result: ``model.metrics`` gains ``heldout_pairs``,
    ``heldout_psnr_before`` and ``heldout_psnr_after``.

    Args:
        protected: The protected training set.
        originals: Originals of some (or all) of its images, same layout (see `match_pairs`).
        count: Number of leaked pairs to train on.
        seed: Seed of the choice of pairs and of the training.
        progress: Called after every training step.
        **options: `LEARNED_INVERSE_OPTIONS`: ``width``, and settings of
            `train_learned_inverse`.

    Raises:
        ValueError: If fewer than ``count`` pairs match, or ``count < 1``.
    """
    if count < 1:
        raise ValueError(f"the number of leaked pairs must be >= 1, got {count}")
    prot_index, orig_index = match_pairs(protected, originals)
    if len(prot_index) < count:
        raise ValueError(
            f"{count} leaked pairs asked for, but only {len(prot_index)} leaked originals match "
            "a protected training image; lower the count or give more originals"
        )
    order = torch.randperm(len(prot_index), generator=torch.Generator().manual_seed(seed))
    leaked, heldout = order[:count], order[count : count + HELD_OUT_PAIRS]

    def show(step: Any) -> None:
        if progress is not None:
            status = f"loss {step.loss:.5f} PSNR {step.psnr:.2f} dB"
            progress(PirateProgress(LEARNED_INVERSE, step.step, step.total_steps, status))

    width = options.pop("width", None)
    config = None if width is None else _widths(width)
    model = train_learned_inverse(
        protected.images[prot_index[leaked]],
        originals.images[orig_index[leaked]],
        seed=seed,
        config=config,
        progress=show,
        **options,
    )
    if len(heldout):
        prot, orig = protected.images[prot_index[heldout]], originals.images[orig_index[heldout]]
        model.metrics.update(
            heldout_pairs=len(heldout),
            heldout_psnr_before=pair_psnr(prot, orig),
            heldout_psnr_after=pair_psnr(prot, orig, model),
        )
    return model


def _mean_psnr(a: ImageSet, b: ImageSet) -> float:
    total = 0.0
    for start in range(0, len(a), _BATCH):
        index = range(start, min(len(a), start + _BATCH))
        total += psnr(a.batch(index), b.batch(index), max_db=100.0).sum().item()
    return total / len(a)


def train_pirate(
    train: ImageSet,
    test: ImageSet,
    defence: str = NO_DEFENCE,
    arch: str = "resnet_small",
    epochs: int = 15,
    *,
    adversarial: PGDConfig | None = None,
    leaked_originals: ImageSet | None = None,
    leaked_count: int = 500,
    batch_size: int = 256,
    lr: float = 0.1,
    seed: int = 0,
    precision: Precision = "auto",
    device: str | torch.device | None = None,
    progress: Callable[[PirateProgress], None] | None = None,
) -> PirateReport:
    """Clean ``train`` with ``defence``, train ``arch`` on it, score every epoch on ``test``.

    Args:
        train: The (protected) training images.
        test: Clean test images of the same classes.
        defence: ``none``, ``learned-inverse[:...]`` or a registered defence spec.
        arch: Registered architecture (`invprotect.targets.list_archs`).
        epochs: Training epochs (one-cycle SGD, `ClassifierTrainingConfig`).
        adversarial: PGD settings for adversarial training; ``None`` trains plainly.
        leaked_originals: For ``learned-inverse``: originals of training images, same
            relative paths (suffix aside).
        leaked_count: For ``learned-inverse``: how many pairs leaked.
        batch_size: Images per training step.
        lr: Peak learning rate.
        seed: Seed of everything random.
        precision: ``"auto"``, ``"bf16"`` or ``"fp32"`` (classifier training).
        device: Where the classifier trains (``None``: a GPU if present); cleaning
            runs on the CPU.
        progress: Called as the work advances, with a `PirateProgress`.

    Raises:
        UnknownNameError: For an unknown defence or architecture.
        ValueError: For a bad spec, classes that differ between ``train`` and ``test``,
            ``learned-inverse`` without enough leaked originals (or leaked originals
            without it), or bad settings.
    """
    name, options = check_defence_spec(defence)
    check_arch(arch)
    if train.classes != test.classes:
        raise ValueError(
            f"the test set has classes {test.classes} but the training set has {train.classes}; "
            "both must hold the same class folders"
        )
    if (name == LEARNED_INVERSE) != (leaked_originals is not None):
        raise ValueError(
            f"leaked originals go with the {LEARNED_INVERSE} defence, and it needs them: the "
            "originals of some training images, with the protected images' relative paths"
        )
    config = ClassifierTrainingConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        precision=precision,
        adversarial=adversarial,
    )
    target_device = pick_device(device)
    report = PirateReport(
        defence=defence,
        arch=arch,
        epochs=epochs,
        seed=seed,
        adversarial=asdict(adversarial) if adversarial is not None else None,
        train_images=len(train),
        test_images=len(test),
        classes=list(train.classes),
    )
    started = time.perf_counter()
    cleaned = train
    if name != NO_DEFENCE:
        if leaked_originals is not None:  # the learned inverse (checked above)
            cleaner: Defence = learn_inverse(
                train, leaked_originals, leaked_count, seed, progress, **options
            )
            report.learned_inverse = dict(cleaner.metrics)
        else:
            cleaner = create_defence(name, **options)
        done = 0

        def cleaned_some(count: int) -> None:
            nonlocal done
            done += count
            if progress is not None:
                progress(PirateProgress("cleaning", done, len(train)))

        cleaned = clean_images(train, cleaner, seed, cleaned_some)
        report.cleaning_psnr = _mean_psnr(cleaned, train)
    report.cleaning_seconds = round(time.perf_counter() - started, 1)

    def on_event(event: TrainingEvent) -> None:
        if progress is not None:
            status = f"epoch {event.epoch}/{epochs} loss {event.loss:.3f}"
            if event.test_accuracy is not None:
                status += f" test accuracy {event.test_accuracy:.3f}"
            done = (event.epoch - 1) * event.steps_per_epoch + event.step
            progress(PirateProgress("training", done, epochs * event.steps_per_epoch, status))

    torch.manual_seed(seed)
    model = Classifier(arch, train.classes, input_size=train.images.shape[-1])
    history = train_classifier(model.to(target_device), cleaned, test, config, on_event=on_event)
    report.accuracy = [record["test_accuracy"] for record in history]
    report.epoch_seconds = [round(record["seconds"], 2) for record in history]
    return report


def accuracy_plot(
    reports: Sequence[PirateReport],
    title: str = "Pirate's clean-test accuracy",
    labels: Sequence[str] | None = None,
) -> bytes:
    """A PNG chart of clean-test accuracy per epoch, one line per report.

    Args:
        reports: The runs to draw.
        title: The chart's title.
        labels: One legend entry per report; ``None`` takes each report's `PirateReport.label`.

    Raises:
        ValueError: If ``reports`` is empty or ``labels`` does not hold one entry per report.
    """
    if not reports:
        raise ValueError("accuracy_plot needs at least one report")
    labels = [report.label for report in reports] if labels is None else list(labels)
    if len(labels) != len(reports):
        raise ValueError(f"got {len(labels)} labels for {len(reports)} reports")
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axes = figure.subplots()
    for report, label in zip(reports, labels, strict=True):
        epochs = range(1, len(report.accuracy) + 1)
        axes.plot(epochs, report.accuracy, marker="o", label=label)
    axes.set_xlabel("epoch")
    axes.set_ylabel("clean-test accuracy")
    axes.set_ylim(0.0, 1.0)
    axes.set_xticks(range(1, max(len(r.accuracy) for r in reports) + 1))
    axes.grid(alpha=0.3)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_pirate_report(report: PirateReport, out: str | Path) -> dict[str, Path]:
    """Write ``OUT/pirate.json`` (every figure) and ``OUT/accuracy.png`` (the chart).

    Returns:
        The paths written, under the keys ``"json"`` and ``"plot"``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "pirate.json", "plot": out / "accuracy.png"}
    text = json.dumps(report.to_dict(), indent=2, allow_nan=True) + "\n"
    atomic_write_bytes(paths["json"], text.encode())
    atomic_write_bytes(paths["plot"], accuracy_plot([report]))
    return paths


def _load_folder(
    root: Path,
    what: str,
    classes: list[str] | None,
    size: int | None,
    cache_dir: Path | None,
    progress: Callable[[PirateProgress], None] | None,
) -> ImageSet:
    if not root.is_dir():
        raise ValueError(f"the {what} folder {root} does not exist or is not a directory")
    index = scan_image_folder(root)
    if classes is not None and index.classes != classes:
        raise ValueError(
            f"the {what} folder {root} has classes {index.classes} but the training folder has "
            f"{classes}; both must hold the same class folders (root/<class>/<image>)"
        )
    done = 0

    def decoded(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(PirateProgress(f"decoding {what}", done, len(index)))

    return load_image_set(index, size, cache_dir, decoded)


def run_pirate(
    train_dir: str | Path,
    test_dir: str | Path,
    defence: str = NO_DEFENCE,
    arch: str = "resnet_small",
    epochs: int = 15,
    *,
    out: str | Path | None = None,
    leaked_originals: str | Path | None = None,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    **settings: Any,
) -> PirateReport:
    """`train_pirate` on image folders (``root/<class>/<image>``); writes the report to ``out``.

    The defence spec and the architecture are checked before any image is decoded.

    Args:
        train_dir: The protected training images.
        test_dir: Clean test images, same class folders.
        defence: ``none``, ``learned-inverse[:...]`` or a registered defence spec.
        arch: Registered architecture.
        epochs: Training epochs.
        out: Folder for ``pirate.json`` and ``accuracy.png`` (`write_pirate_report`);
            ``None`` writes nothing.
        leaked_originals: Folder of leaked originals (for ``learned-inverse``), laid out
            like ``train_dir``.
        size: Working size (fit every image to ``size x size``); ``None`` keeps the
            stored size, which must then be the same for every image.
        cache_dir: Keep decoded images here for the next run (``None``: no cache).
        **settings: Further keyword arguments of `train_pirate` (``adversarial``,
            ``leaked_count``, ``batch_size``, ``lr``, ``seed``, ``precision``,
            ``device``, ``progress``).

    Raises:
        UnknownNameError: For an unknown defence or architecture.
        ValueError: For a missing folder, classes that differ, a bad spec, or
            ``learned-inverse`` without leaked originals (or leaked originals without it).
    """
    name, _ = check_defence_spec(defence)
    check_arch(arch)
    if (name == LEARNED_INVERSE) != (leaked_originals is not None):
        raise ValueError(
            f"leaked originals go with the {LEARNED_INVERSE} defence, and it needs them: a "
            "folder of originals of some training images, laid out like the training folder"
        )
    if not Path(test_dir).is_dir():
        raise ValueError(
            f"the test folder {test_dir} does not exist; the pirate is scored on clean test "
            "images: give a folder root/<class>/<image> of originals not used for training"
        )
    cache = Path(cache_dir) if cache_dir is not None else None
    progress = settings.get("progress")
    train = _load_folder(Path(train_dir), "training", None, size, cache, progress)
    test = _load_folder(Path(test_dir), "test", train.classes, size, cache, progress)
    leaked = None
    if leaked_originals is not None:
        leaked = _load_folder(
            Path(leaked_originals), "leaked originals", train.classes, size, cache, progress
        )
    report = train_pirate(train, test, defence, arch, epochs, leaked_originals=leaked, **settings)
    if out is not None:
        write_pirate_report(report, out)
    return report
