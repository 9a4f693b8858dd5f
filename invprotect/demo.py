"""The end-to-end demo: targets, a protector, protection and bit-exact recovery, measured.

`run_demo` trains two small target classifiers and a RAEG protector on CIFAR-10 (or
any ImageFolder with ``train/`` and ``test/``) with the runs the commands use
(`invprotect.training.run_target_training`, `invprotect.training.run_protector_training`),
then measures them with `invprotect.evaluation.verify` (no defences): held-out test
files protected into PNG and recovered, the accuracy of the targets on original,
protected and recovered images (A_ori, A_prt, A_rev), the PSNR and SSIM of protected
and recovered images, and the exact-recovery rate. Everything is written under one
folder; the protector lands at ``OUT/protector``, usable with ``invprotect protect``
and ``invprotect recover``, and the measured files under ``OUT/verify/files``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from invprotect.evaluation import VerifyConfig, VerifyReport, remove_earlier_files, verify
from invprotect.files.images import read_rgb
from invprotect.models import RAEG
from invprotect.pictures import amplified_difference, image_grid
from invprotect.targets import Classifier
from invprotect.training import (
    ClassifierTrainingConfig,
    ProtectorRunConfig,
    TargetRunConfig,
    TrainingData,
    load_training_data,
    run_protector_training,
    run_target_training,
)
from invprotect.training.data import Listener, Log, Progress, no_log, no_progress
from invprotect.training.protector import ProtectorTrainingConfig

PRESET = "cpu-32"
"""The protector's preset; its 32 px is the working size of the training images."""

VERIFY_STAGES = {"protect": "protecting", "recover": "recovering", "measure": "measuring"}
"""The demo's names of `invprotect.evaluation.verify`'s progress stages."""

FIGURES = ("images", "A_ori", "A_prt", "A_rev", "P_prt", "S_prt", "P_rev", "S_rev")
"""The figures of verify's report that the demo's report repeats, under the same keys."""

GRID_COLUMNS = 8
"""Files shown in ``OUT/grid.png``."""


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (defaults: under 5 minutes on a 2-core AVX2 CPU; see ``docs/results.md``).

    Attributes:
        target_archs: Target architectures (trained on ``train_images`` images).
        train_images: Training images used (a seeded random subset).
        target_epochs: Epochs of each target.
        protector_steps: Generator updates of the protector.
        protector_lr: Starting learning rate of the protector (cosine decay).
        batch_size: Protector batch size.
        target_psnr: Wanted PSNR of protected images.
        test_per_class: Test files per class protected and recovered.
        seed: Seed of everything.
    """

    target_archs: tuple[str, ...] = ("resnet_small", "convnet_small")
    train_images: int = 4_000
    target_epochs: int = 3
    protector_steps: int = 200
    protector_lr: float = 6e-4
    batch_size: int = 16
    target_psnr: float = 30.0
    test_per_class: int = 40
    seed: int = 0


def save_grid(
    originals: torch.Tensor, protected: torch.Tensor, recovered: torch.Tensor, path: Path
) -> None:
    """Rows of original, protected, difference amplified 10x around gray, recovered."""
    difference = amplified_difference(protected, originals)
    image_grid([originals, protected, difference, recovered], scale=3).save(path)


def run_demo(
    data: Path,
    out: Path,
    config: DemoConfig | None = None,
    log: Log = no_log,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Run the demo; returns (and writes to ``OUT/report.json``) the measured figures.

    Args:
        data: ImageFolder with ``train/`` and ``test/``.
        out: Folder for everything the demo makes; a rerun reuses finished targets and
            protector, and measures again.
        config: Sizes (default: `DemoConfig`).
        log: Receives one message per stage.
        progress: Receives the progress of each stage (decoding, each target, the
            protector, protecting, recovering, measuring).
        cache_dir: Keep the decoded training images here for the next run.

    Returns:
        ``config``, ``images``, ``A_ori``, ``A_prt``, ``A_rev`` (by architecture),
        ``P_prt``, ``S_prt``, ``P_rev``, ``S_rev``, ``exact_recovery_rate`` (verify's
        ``exact_rate``) and ``seconds`` (of each stage that ran, and ``total``).
    """
    config = config or DemoConfig()
    show = progress or no_progress
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    images = load_training_data(
        data,
        32,
        cache_dir=cache_dir,
        with_test=False,
        max_train_images=config.train_images,
        seed=config.seed,
        progress=show,
    )
    seconds = {"decoding": time.perf_counter() - started}
    log(f"training targets {', '.join(config.target_archs)} on {len(images.train)} images")
    targets = _targets(data, out, config, images, show, seconds)
    raeg = _protector(data, out, config, images, show, log, seconds)
    log("protecting and recovering test files")
    stage = time.perf_counter()
    remove_earlier_files(out / "verify")  # a rerun measures afresh
    limit = config.test_per_class * len(images.train.classes)
    settings = VerifyConfig(limit=limit, defences=(), seed=config.seed)
    measured = verify(
        data,
        raeg,
        targets,
        {},
        out / "verify",
        settings,
        lambda stage, done, total: show(VERIFY_STAGES[stage], done, total, ""),
    )
    seconds["protect and recover"] = time.perf_counter() - stage
    figures = measured.to_dict()
    report: dict = {"config": asdict(config), **{key: figures[key] for key in FIGURES}}
    report["exact_recovery_rate"] = measured.exact_rate
    report["seconds"] = {
        **{name: round(value, 1) for name, value in seconds.items()},
        "total": round(time.perf_counter() - started, 1),
    }
    _grid(measured, out / "verify" / "files", out / "grid.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _targets(
    data: Path,
    out: Path,
    config: DemoConfig,
    images: TrainingData,
    show: Progress,
    seconds: dict[str, float],
) -> dict[str, Classifier]:
    """The targets by architecture, trained (or loaded) with `run_target_training`."""
    targets = {}
    for arch in config.target_archs:
        stage = time.perf_counter()
        settings = ClassifierTrainingConfig(epochs=config.target_epochs, seed=config.seed)
        folder = out / "targets" / arch
        run = TargetRunConfig(data, arch, folder, settings, evaluate=False, decoded=images)

        def renamed(_: str, done: int, total: int | None, status: str, arch: str = arch) -> None:
            show(f"target {arch}", done, total, status)

        result = run_target_training(run, listener=Listener(renamed))
        targets[arch] = result.model.eval()
        if not result.already_trained:
            seconds[f"target {arch}"] = time.perf_counter() - stage
    return targets


def _protector(
    data: Path,
    out: Path,
    config: DemoConfig,
    images: TrainingData,
    show: Progress,
    log: Log,
    seconds: dict[str, float],
) -> RAEG:
    """The protector, trained (or loaded) with `run_protector_training`."""
    stage = time.perf_counter()
    sizes = (config.protector_steps, config.batch_size, config.protector_lr)
    settings = ProtectorTrainingConfig(*sizes, target_psnr=config.target_psnr, seed=config.seed)
    paths = tuple(out / "targets" / arch for arch in config.target_archs)
    run = ProtectorRunConfig(data, paths, out / "protector", PRESET, settings, decoded=images)
    result = run_protector_training(run, listener=Listener(show, log))
    if not result.already_trained:
        seconds["protector"] = time.perf_counter() - stage
    return result.model


def _grid(report: VerifyReport, files: Path, path: Path) -> None:
    """`save_grid` of the first `GRID_COLUMNS` measured files."""
    chosen = report.files[:GRID_COLUMNS]

    def load(folder: str, suffix: str | None) -> torch.Tensor:
        names = [Path(r).with_suffix(suffix) if suffix else Path(r) for r in chosen]
        return torch.stack([read_rgb(files / folder / name) for name in names]).float() / 255

    originals = load("originals", None)
    protected = load("protected", ".png")[..., : originals.shape[-2], : originals.shape[-1]]
    save_grid(originals, protected, load("recovered", ".png"), path)
