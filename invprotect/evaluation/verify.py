"""Verify a protector the way it is used: real files, real defences, targets and unseen models.

`verify` takes a class-balanced, seeded choice of test files from an ImageFolder, copies
them to ``OUT/files/originals``, runs the user pipeline (`invprotect.files.protect.protect_tree`
into ``OUT/files/protected``, `invprotect.files.recover.recover_tree` into
``OUT/files/recovered``), reads the three sets back and measures:

- ``A_ori``, ``A_prt``, ``A_rev``: top-1 accuracy of every model (targets and unseen
  models, by name) on original, protected and recovered images;
- ``P_prt``, ``P_rev``, ``S_prt``, ``S_rev``: mean PSNR per image (dB, clamped at 100)
  and SSIM of protected and recovered images against the originals;
- ``exact_rate``: the fraction of recovered files whose decoded pixels equal the
  original's (`invprotect.files.images.pixel_digest`);
- for every defence: the accuracy of every model on the defended protected images and
  on the defended originals (clean accuracy under that defence, the baseline the first
  figure has to be read against), and the PSNR of ``protector.recover`` applied to the
  defended protected images (what recovery gives back after an attack).

Stochastic defences draw each image's numbers from ``config.seed`` and the file's
relative path (`invprotect.defences.sample_generators`), as ``invprotect purify --seed``
does, so the figures do not depend on the batch size. Images of several sizes are
measured in groups of one size; protected files keep the padded size they were written
with, and are cropped to the original's size only where they are compared with it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from pytorch_msssim import ssim
from torch import Tensor, nn

from invprotect.data import ImageFolderIndex, train_test_split
from invprotect.defences import (
    Defence,
    create_defence_from_spec,
    list_defences,
    parse_defence_spec,
    sample_generators,
    to_8bit_grid,
)
from invprotect.evaluation.verify_report import DefenceResult, VerifyReport
from invprotect.files.images import open_image, pixel_digest, read_rgb
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.files.tree import paths_overlap
from invprotect.metrics import psnr
from invprotect.models.protector import Protector
from invprotect.targets import Classifier

DEFAULT_DEFENCE_SPECS: tuple[str, ...] = (
    "jpeg:quality=90",
    "jpeg:quality=50",
    "resize:scale=0.75",
    "gaussian_noise:sigma=8",
    "median_filter:kernel_size=3",
    "grayscale",
    "bit_depth:bits=4",
    "dipdefend",
)
"""The defences ``--defences all`` runs (`default_defences` adds ComDefend when trained
weights are given). DIPDefend is slow, so it sees only the first ``dip_limit`` images."""

SLOW_DEFENCES = frozenset(list_defences(tag="slow"))
"""Defence names applied only to the first `VerifyConfig.dip_limit` images (tagged ``slow``)."""

PSNR_CAP = 100.0
"""PSNR (dB) given to identical images, so that means stay finite."""

Progress = Callable[[str, int, int], None]
"""A progress callback ``(stage, done, total)``: stage names are ``protect``,
``recover``, ``measure`` and each defence spec."""


def default_defences(comdefend: Path | str | None = None) -> tuple[str, ...]:
    """`DEFAULT_DEFENCE_SPECS`, with ``comdefend:weights=PATH`` before DIPDefend if given.

    Args:
        comdefend: A ComDefend checkpoint directory (from ``invprotect train-defence``).

    Example:
        >>> default_defences("runs/comdefend")[-2:]
        ('comdefend:weights=runs/comdefend', 'dipdefend')
    """
    specs = list(DEFAULT_DEFENCE_SPECS)
    if comdefend is not None:
        specs.insert(specs.index("dipdefend"), f"comdefend:weights={comdefend}")
    return tuple(specs)


def split_defence_specs(text: str, comdefend: Path | str | None = None) -> tuple[str, ...]:
    """Split a comma-separated list of defence specs; ``all`` stands for `default_defences`.

    A spec's own parameters are also separated by commas: a piece ``key=value`` (an
    ``=`` with no ``:`` before it) continues the spec before it. With ``comdefend``,
    ``comdefend:weights=PATH`` is added unless a ComDefend spec is already listed.

    Raises:
        ValueError: For an empty list, or a parameter with no spec before it.

    Example:
        >>> split_defence_specs("jpeg:quality=50,resize:scale=0.5,interpolation=bicubic,grayscale")
        ('jpeg:quality=50', 'resize:scale=0.5,interpolation=bicubic', 'grayscale')
        >>> len(split_defence_specs("all"))
        8
    """
    specs: list[str] = []
    for piece in (piece.strip() for piece in text.split(",")):
        if not piece:
            continue
        key, equals, _ = piece.partition("=")
        if equals and ":" not in key:
            if not specs or specs[-1] == "all":
                raise ValueError(f"{piece!r} in {text!r} is a parameter with no defence before it")
            specs[-1] = f"{specs[-1]},{piece}"
        else:
            specs.append(piece)
    if not specs:
        raise ValueError(f"no defence in {text!r}; give 'all' or specs like jpeg:quality=50")
    expanded: list[str] = []
    for spec in specs:
        for item in default_defences(comdefend) if spec == "all" else (spec,):
            if item not in expanded:
                expanded.append(item)
    names = [spec.partition(":")[0].strip() for spec in expanded]
    if comdefend is not None and "comdefend" not in names:
        expanded.append(f"comdefend:weights={comdefend}")
    return tuple(expanded)


@dataclass(frozen=True)
class VerifyConfig:
    """What `verify` measures, and on how many images.

    Attributes:
        limit: Test images used (``None``: all), chosen class-balanced with ``seed``.
        batch_size: Images per protector, defence and classifier call.
        defences: Defence specs (``name:key=value,...``, see
            `invprotect.defences.parse_defence_spec`).
        dip_limit: Images DIPDefend is applied to (the first ones of the choice).
        seed: Seed of the choice of files and of stochastic defences.

    Raises:
        ValueError: For a ``limit`` or ``batch_size`` below 1 or a negative ``dip_limit``.
    """

    limit: int | None = 1000
    batch_size: int = 64
    defences: tuple[str, ...] = DEFAULT_DEFENCE_SPECS
    dip_limit: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be at least 1 (or None for all), got {self.limit}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.dip_limit < 0:
            raise ValueError(f"dip_limit must be 0 or more, got {self.dip_limit}")


VERIFY_FOLDERS = ("originals", "protected", "recovered")
"""The folders `verify` writes under ``OUT/files``."""


def remove_earlier_files(out: Path) -> None:
    """Delete the files an earlier `verify` into ``out`` left under ``OUT/files``.

    Raises:
        ValueError: If ``OUT/files`` holds anything but `VERIFY_FOLDERS` (then it is not
            only an earlier run's, and is left alone).
    """
    files = Path(out) / "files"
    if not files.is_dir():
        return
    if not {path.name for path in files.iterdir()} <= set(VERIFY_FOLDERS):
        raise ValueError(f"{files} holds more than an earlier verify run wrote; delete it yourself")
    shutil.rmtree(files)


def choose_files(
    index: ImageFolderIndex, limit: int | None, seed: int = 0
) -> list[tuple[Path, int]]:
    """A class-balanced, seeded choice of ``limit`` files, classes interleaved.

    Each class's files are shuffled with ``seed``; the choice takes one file of each
    class in turn, so class counts differ by at most one (a class that runs out leaves
    its share to the others) and every prefix of the result is balanced too.

    Returns:
        ``(path, label)`` pairs in the order they are measured.
    """
    generator = torch.Generator().manual_seed(seed)
    by_label: list[list[tuple[Path, int]]] = [[] for _ in index.classes]
    for sample in index.samples:
        by_label[sample[1]].append(sample)
    per_class = []
    for files in by_label:
        order = torch.randperm(len(files), generator=generator).tolist()
        per_class.append([files[i] for i in order])
    chosen: list[tuple[Path, int]] = []
    for turn in range(max((len(files) for files in per_class), default=0)):
        chosen.extend(files[turn] for files in per_class if turn < len(files))
    return chosen if limit is None else chosen[:limit]


def _groups(images: Sequence[Tensor], indices: Sequence[int], size: int) -> Iterator[list[int]]:
    """Batches of at most ``size`` indices whose images share one shape."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i in indices:
        by_shape.setdefault(tuple(images[i].shape), []).append(i)
    for group in by_shape.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _float(images: Sequence[Tensor], batch: Sequence[int], device: torch.device) -> Tensor:
    return torch.stack([images[i] for i in batch]).to(device).float().div(255.0)


def _crop(images: Tensor, reference: Tensor) -> Tensor:
    return images[..., : reference.shape[-2], : reference.shape[-1]]


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def _predict(model: nn.Module, images: Tensor) -> Tensor:
    return model(images.to(_device(model))).argmax(1).cpu()


def _check_models(
    targets: dict[str, Classifier], unseen: dict[str, Classifier], classes: list[str]
) -> dict[str, Classifier]:
    if not targets:
        raise ValueError("give at least one target classifier")
    shared = sorted(set(targets) & set(unseen))
    if shared:
        raise ValueError(f"model names must be unique; {', '.join(shared)} is a target and unseen")
    models = {**targets, **unseen}
    for name, model in models.items():
        if list(model.classes) != list(classes):
            raise ValueError(
                f"model {name!r} knows classes {list(model.classes)}, "
                f"but the test data has {list(classes)}"
            )
    return models


def _build_defences(specs: Sequence[str]) -> dict[str, Defence]:
    defences = {}
    for spec in specs:
        try:
            defences[spec] = create_defence_from_spec(spec)
        except KeyError as error:  # UnknownNameError: the message lists close matches
            raise ValueError(str(error)) from None
    return defences


def _copy_originals(chosen: list[tuple[Path, int]], root: Path, dst: Path) -> list[str]:
    relatives = []
    for path, _ in chosen:
        relative = path.relative_to(root).as_posix()
        target = dst / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        relatives.append(relative)
    return relatives


def _png(relative: str) -> str:
    return Path(relative).with_suffix(".png").as_posix()


def _defend(defence: Defence, images: Tensor, keys: list[str], seed: int) -> Tensor:
    """Apply ``defence``; a stochastic one draws from ``seed`` and each file's relative path."""
    if not defence.stochastic:
        return defence(images)
    torch.manual_seed(seed)
    return defence(images, sample_generators(seed, keys))


@dataclass
class _Run:
    """What the measurements of one verification share."""

    models: dict[str, Classifier]
    protector: Protector
    originals: list[Tensor]
    labels: Tensor
    batch_size: int

    @property
    def device(self) -> torch.device:
        return self.protector.device

    def batches(self, count: int) -> Iterator[list[int]]:
        return _groups(self.originals, range(count), self.batch_size)

    def no_predictions(self, count: int) -> dict[str, Tensor]:
        return {name: torch.full((count,), -1, dtype=torch.long) for name in self.models}

    def predict(self, predictions: dict[str, Tensor], batch: list[int], images: Tensor) -> None:
        for name, model in self.models.items():
            predictions[name][batch] = _predict(model, images)

    def accuracy(self, predictions: dict[str, Tensor]) -> dict[str, float]:
        return {
            name: (found == self.labels[: len(found)]).float().mean().item()
            for name, found in predictions.items()
        }


def verify(
    data: Path,
    protector: Protector,
    targets: dict[str, Classifier],
    unseen: dict[str, Classifier],
    out: Path,
    config: VerifyConfig | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Protect and recover test files of ``data`` with the real pipeline and measure everything.

    Args:
        data: An ImageFolder (``data/train`` + ``data/test``, or one folder split 9:1
            as `invprotect.data.train_test_split` does with its default seed, the split
            the targets were trained on).
        protector: The protector to verify: a `RAEG` (the key) or a baseline.
        targets: The classifiers the protector was trained to fool, by name.
        unseen: Classifiers it never saw, by name (names distinct from the targets').
        out: Folder for the files (``OUT/files/{originals,protected,recovered}``); must
            not hold an earlier run's files, nor lie inside ``data``.
        config: Sizes, defences and seed; default `VerifyConfig()`.
        progress: Called as ``progress(stage, done, total)`` while the work goes on.

    Returns:
        The figures and facts (`VerifyReport`; its ``to_dict`` is the JSON of
        ``report.json``, with the keys ``A_ori``, ``P_prt``, ``exact_rate``, ...). A slow
        defence is left out of ``defences`` when ``dip_limit`` is 0.

    Raises:
        ValueError: For a bad data folder, classes of a model that differ from the
            data's, a bad defence spec, an ``out`` that overlaps ``data`` or holds
            files already, or when no image comes through the pipeline.
    """
    config = config or VerifyConfig()
    started = time.perf_counter()
    data, out = Path(data).resolve(), Path(out).resolve()
    _, test_index = train_test_split(data)
    models = _check_models(targets, unseen, test_index.classes)
    defences = _build_defences(config.defences)
    files = out / "files"
    if paths_overlap(data, out):
        raise ValueError(f"OUT {out} must not be DATA {data}, nor lie inside it (or contain it)")
    if files.exists() and any(files.iterdir()):
        raise ValueError(f"{files} holds files of an earlier run; choose another OUT or delete it")
    report_progress = progress or (lambda stage, done, total: None)

    chosen = choose_files(test_index, config.limit, config.seed)
    relatives = _copy_originals(chosen, test_index.root, files / "originals")
    label_of = {relative: label for relative, (_, label) in zip(relatives, chosen, strict=True)}
    refused = _through_pipeline(relatives, files, protector, config.batch_size, report_progress)
    relatives = [relative for relative in relatives if relative not in refused]
    if not relatives:
        raise ValueError(f"no image came through protection and recovery: {refused}")

    count = len(relatives)
    originals = [read_rgb(files / "originals" / r) for r in relatives]
    protected = [read_rgb(files / "protected" / _png(r)) for r in relatives]
    recovered = [read_rgb(files / "recovered" / _png(r)) for r in relatives]
    exact = [
        pixel_digest(open_image(files / "originals" / r))
        == pixel_digest(open_image(files / "recovered" / _png(r)))
        for r in relatives
    ]
    labels = torch.tensor([label_of[r] for r in relatives])
    run = _Run(models, protector, originals, labels, config.batch_size)
    sets = {"ori": originals, "prt": protected, "rev": recovered}
    predicted, psnrs, ssims = _measure_sets(run, sets, report_progress)
    defence_results = {}
    for spec, defence in defences.items():
        slow = parse_defence_spec(spec)[0] in SLOW_DEFENCES
        limit = min(count, config.dip_limit) if slow else count
        if limit:
            defence_results[spec] = _measure_defence(
                spec, defence, run, protected, relatives[:limit], config.seed, report_progress
            )
    return VerifyReport(
        images=count,
        accuracy_original=run.accuracy(predicted["ori"]),
        accuracy_protected=run.accuracy(predicted["prt"]),
        accuracy_recovered=run.accuracy(predicted["rev"]),
        psnr_protected=psnrs["prt"].mean().item(),
        ssim_protected=ssims["prt"].mean().item(),
        psnr_recovered=psnrs["rev"].mean().item(),
        ssim_recovered=ssims["rev"].mean().item(),
        exact_rate=sum(exact) / count,
        defences=defence_results,
        data=str(data),
        targets=list(targets),
        unseen=list(unseen),
        classes=list(test_index.classes),
        files=relatives,
        failed=[[relative, reason] for relative, reason in refused.items()],
        protector={"sha256": protector.key_id} | protector.describe(),
        config={**asdict(config), "defences": list(config.defences)},
        wall_seconds=time.perf_counter() - started,
    )


def _through_pipeline(
    relatives: list[str], files: Path, protector: Protector, batch_size: int, progress: Progress
) -> dict[str, str]:
    """Protect ``files/originals`` and recover the result; the refused files, with why."""
    refused: dict[str, str] = {}
    for stage, work, src, dst in (
        ("protect", protect_tree, "originals", "protected"),
        ("recover", recover_tree, "protected", "recovered"),
    ):
        done = 0

        def advance(count: int, stage: str = stage) -> None:
            nonlocal done
            done += count
            progress(stage, done, len(relatives))

        tree = work(files / src, files / dst, protector, batch_size, advance)
        failed = dict(tree.failed)
        for relative in relatives:
            reason = failed.get(relative if stage == "protect" else _png(relative))
            if reason is not None:
                refused.setdefault(relative, f"{stage}: {reason}")
    return refused


def _measure_sets(
    run: _Run, sets: dict[str, list[Tensor]], progress: Progress
) -> tuple[dict[str, dict[str, Tensor]], dict[str, Tensor], dict[str, Tensor]]:
    """Predictions of every model on each set; PSNR and SSIM of each set but the originals."""
    count, device = len(run.originals), run.device
    predicted = {name: run.no_predictions(count) for name in sets}
    compared = [name for name in sets if name != "ori"]
    psnrs = {name: torch.zeros(count) for name in compared}
    ssims = {name: torch.zeros(count) for name in compared}
    done = 0
    progress("measure", done, count)
    for batch in run.batches(count):
        reference = _float(run.originals, batch, device)
        for name, images in sets.items():
            current = _float(images, batch, device)
            run.predict(predicted[name], batch, current)
            if name in psnrs:
                current = _crop(current, reference)
                psnrs[name][batch] = psnr(current, reference).clamp(max=PSNR_CAP).cpu()
                similarity = ssim(current, reference, data_range=1.0, size_average=False)
                ssims[name][batch] = similarity.cpu()
        done += len(batch)
        progress("measure", done, count)
    return predicted, psnrs, ssims


def _measure_defence(
    spec: str,
    defence: Defence,
    run: _Run,
    protected: list[Tensor],
    relatives: list[str],
    seed: int,
    progress: Progress,
) -> DefenceResult:
    """Accuracy on defended protected and original images, and PSNR of recovery after it."""
    count = len(relatives)
    device = run.device
    defence = defence.to(device).eval()
    on_protected, on_clean = run.no_predictions(count), run.no_predictions(count)
    recovered_psnr = torch.zeros(count)
    done = 0
    progress(spec, done, count)
    for batch in run.batches(count):
        reference = _float(run.originals, batch, device)
        keys = [relatives[i] for i in batch]
        attacked = _defend(defence, _float(protected, batch, device), list(map(_png, keys)), seed)
        run.predict(on_protected, batch, attacked)
        run.predict(on_clean, batch, _defend(defence, reference, keys, seed))
        back = _crop(_recover_attacked(run.protector, attacked).to(device), reference)
        recovered_psnr[batch] = psnr(back, reference).clamp(max=PSNR_CAP).cpu()
        done += len(batch)
        progress(spec, done, count)
    return DefenceResult(
        images=count,
        protected=run.accuracy(on_protected),
        clean=run.accuracy(on_clean),
        recovered_psnr=recovered_psnr.mean().item(),
    )


def _recover_attacked(protector: Protector, attacked: Tensor) -> Tensor:
    """What the key holder recovers from defended protected images saved as 8-bit files."""
    pixels = to_8bit_grid(attacked).mul(255).round().to(torch.uint8).cpu()
    return protector.approximate(pixels).float() / 255


def sample_images(
    report: VerifyReport, out: Path, protector: Protector, count: int = 8
) -> dict[str, Tensor]:
    """The rows of a report's picture grid, read back from ``OUT/files``.

    Takes the first ``count`` measured files that have the size of the first one, and
    recovers their protected files after the report's JPEG-50 defence (or its first
    defence; none when it has none).

    Args:
        report: What `verify` returned.
        out: The ``out`` folder `verify` wrote to.
        protector: The protector `verify` measured.
        count: Columns of the grid.

    Returns:
        Float ``(N, 3, H, W)`` images in ``[0, 1]`` by row label, in order:
        ``"original"``, ``"protected"``, ``"recovered"`` and ``"recovered after SPEC"``
        (``"recovered, not attacked"`` when the report ran no defence).
    """
    files = Path(out) / "files"
    first = read_rgb(files / "originals" / report.files[0]).shape
    chosen = []
    for relative in report.files:
        if len(chosen) < count and read_rgb(files / "originals" / relative).shape == first:
            chosen.append(relative)

    def load(folder: str, names: list[str]) -> Tensor:
        return torch.stack([read_rgb(files / folder / name) for name in names]).float() / 255

    originals = load("originals", chosen)
    protected = load("protected", [_png(r) for r in chosen])
    specs = list(report.defences)
    spec = next((s for s in specs if s.replace(" ", "") == "jpeg:quality=50"), None)
    spec = spec or (specs[0] if specs else None)
    attacked = protected.to(protector.device)
    if spec is not None:
        defence = create_defence_from_spec(spec).to(protector.device).eval()
        keys = [_png(r) for r in chosen]
        attacked = _defend(defence, attacked, keys, report.seed)
    back = _recover_attacked(protector, attacked)
    return {
        "original": originals,
        "protected": _crop(protected, originals),
        "recovered": load("recovered", [_png(r) for r in chosen]),
        f"recovered after {spec}" if spec else "recovered, not attacked": _crop(back, originals),
    }
