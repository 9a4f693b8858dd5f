"""The end-to-end demo: targets, a protector, protection and bit-exact recovery, measured.

`run_demo` trains two small target classifiers and a RAEG protector on CIFAR-10 (or
any ImageFolder with ``train/`` and ``test/``), protects held-out test files into PNG,
recovers them, and reports the accuracy of the targets on original, protected and
recovered images (A_ori, A_prt, A_rev), the PSNR and SSIM of protected and recovered
images, and the exact-recovery rate. Everything is written under one folder; the
protector lands at ``OUT/protector``, usable with ``invprotect protect`` and
``invprotect recover``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from PIL import Image
from pytorch_msssim import ssim

from invprotect.data import ImageSet, load_image_set, train_test_split
from invprotect.files.images import pixel_digest, read_rgb
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.pictures import amplified_difference, image_grid
from invprotect.targets import Classifier, Ensemble
from invprotect.training import ClassifierTrainingConfig, TrainingEvent, train_classifier
from invprotect.training.protector import (
    ProtectorEvent,
    ProtectorTrainingConfig,
    train_protector,
)

Progress = Callable[[str, int, int, str], None]
"""``progress(stage, done, total, status)``: how far a stage of the demo is."""


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


def _copy_test_files(test_index, per_class: int, dst: Path) -> list[Path]:
    chosen: dict[int, int] = {}
    copied = []
    for path, label in test_index.samples:
        if chosen.get(label, 0) >= per_class:
            continue
        chosen[label] = chosen.get(label, 0) + 1
        target = dst / test_index.classes[label] / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(target)
    return copied


def _images_of(paths: list[Path]) -> torch.Tensor:
    return torch.stack([read_rgb(path) for path in paths]).float() / 255


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
    log: Callable[[str], None] = lambda _: None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
) -> dict:
    """Run the demo; returns (and writes to ``OUT/report.json``) the measured figures.

    Args:
        data: ImageFolder with ``train/`` and ``test/``.
        out: Folder for everything the demo makes; a rerun reuses finished targets and
            protector.
        config: Sizes (default: `DemoConfig`).
        log: Receives one message per stage.
        progress: Receives the progress of each stage (decoding, each target, the
            protector, protecting, recovering).
        cache_dir: Keep the decoded training images here for the next run.
    """
    config = config or DemoConfig()
    show = progress or (lambda stage, done, total, status: None)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    train_index, test_index = train_test_split(data)
    keep = torch.randperm(len(train_index), generator=torch.Generator().manual_seed(config.seed))
    train_index.samples = [
        train_index.samples[i] for i in sorted(keep[: config.train_images].tolist())
    ]
    total, decoded = len(train_index), 0

    def count(done: int) -> None:
        nonlocal decoded
        decoded += done
        show("decoding", decoded, total, "")

    train: ImageSet = load_image_set(train_index, size=32, cache_dir=cache_dir, progress=count)
    seconds["decoding"] = time.perf_counter() - started
    log(f"training targets {', '.join(config.target_archs)} on {len(train)} images")
    members = []
    for arch in config.target_archs:
        path = out / "targets" / arch
        if (path / "config.json").is_file():
            members.append(Classifier.load(path))
            continue
        stage = time.perf_counter()
        torch.manual_seed(config.seed)
        model = Classifier(arch, train.classes)

        def step(event: TrainingEvent, arch: str = arch) -> None:
            done = (event.epoch - 1) * event.steps_per_epoch + event.step
            status = f"epoch {event.epoch}/{config.target_epochs}, loss {event.loss:.3f}"
            show(f"target {arch}", done, config.target_epochs * event.steps_per_epoch, status)

        train_classifier(
            model,
            train,
            None,
            ClassifierTrainingConfig(epochs=config.target_epochs, seed=config.seed),
            on_event=step,
        )
        model.save(path)
        members.append(model.eval())
        seconds[f"target {arch}"] = time.perf_counter() - stage
    ensemble = Ensemble(members)
    protector_path = out / "protector"
    if (protector_path / "config.json").is_file():
        raeg = RAEG.load(protector_path)
    else:
        log(f"training the protector for {config.protector_steps} steps")
        stage = time.perf_counter()
        torch.manual_seed(config.seed)
        raeg = RAEG.from_preset("cpu-32")
        settings = ProtectorTrainingConfig(
            steps=config.protector_steps,
            batch_size=config.batch_size,
            lr=config.protector_lr,
            target_psnr=config.target_psnr,
            seed=config.seed,
        )

        def protector_step(event: ProtectorEvent) -> None:
            status = (
                f"PSNR {event.smoothed_psnr:.1f} dB, fooled {event.fooling_rate:.2f}, "
                f"recovered right {event.recovered_accuracy:.2f}"
            )
            show("protector", event.step, event.steps, status)

        train_protector(
            raeg, ensemble, train, settings, out / "protector-state", on_event=protector_step
        )
        raeg.save(protector_path)
        seconds["protector"] = time.perf_counter() - stage
    log("protecting and recovering test files")
    originals_dir = out / "originals"
    stage = time.perf_counter()
    files = _copy_test_files(test_index, config.test_per_class, originals_dir)
    for name, work, source, target in (
        ("protecting", protect_tree, originals_dir, out / "protected"),
        ("recovering", recover_tree, out / "protected", out / "recovered"),
    ):
        done = 0

        def advance(count: int, name: str = name) -> None:
            nonlocal done
            done += count
            show(name, done, len(files), "")

        work(source, target, raeg, progress=advance)
    seconds["protect and recover"] = time.perf_counter() - stage
    relative = [p.relative_to(originals_dir) for p in files]
    originals = _images_of(files)
    protected = _images_of([out / "protected" / r.with_suffix(".png") for r in relative])
    recovered = _images_of([out / "recovered" / r.with_suffix(".png") for r in relative])
    exact = [
        pixel_digest(Image.open(originals_dir / r))
        == pixel_digest(Image.open(out / "recovered" / r.with_suffix(".png")))
        for r in relative
    ]
    labels = torch.tensor([test_index.classes.index(r.parts[0]) for r in relative])
    report: dict = {"config": asdict(config), "images": len(files)}
    with torch.no_grad():
        for name, images in (("ori", originals), ("prt", protected), ("rev", recovered)):
            report[f"A_{name}"] = {
                arch: (member(images).argmax(1) == labels).float().mean().item()
                for arch, member in zip(config.target_archs, members, strict=True)
            }
        for name, images in (("prt", protected), ("rev", recovered)):
            report[f"P_{name}"] = psnr(images, originals).clamp(max=100.0).mean().item()
            report[f"S_{name}"] = ssim(images, originals, data_range=1.0).item()
    report["exact_recovery_rate"] = sum(exact) / len(exact)
    report["seconds"] = {
        **{name: round(value, 1) for name, value in seconds.items()},
        "total": round(time.perf_counter() - started, 1),
    }
    save_grid(originals[:8], protected[:8], recovered[:8], out / "grid.png")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
