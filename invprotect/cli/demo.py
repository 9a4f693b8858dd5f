"""``invprotect demo``: the whole story on CIFAR-10 in a few minutes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import torch
import typer

from invprotect.cli.app import app
from invprotect.cli.options import NoCacheOption, TargetPsnrOption, ThreadsOption
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, stages
from invprotect.data import default_cache_dir, default_cifar10_root, download_cifar10
from invprotect.demo import DemoConfig, run_demo
from invprotect.files.png import write_png
from invprotect.targets import is_arch, list_archs

DEMO_OUT = Path("demo-out")
"""Where the demo writes unless told otherwise."""

_SIZES = DemoConfig()
_LR_HELP = "Protector's starting learning rate."
_BATCH_HELP = "Protector's images per step."
_DATA_HELP = "ImageFolder with train/ and test/ (default: CIFAR-10)."
_TARGET_HELP = (
    "Target architecture (repeat for several; default: "
    + ", ".join(DemoConfig.target_archs)
    + ")."
)


def _export(root: Path) -> Path:
    """Download CIFAR-10 with torchvision and write it as a PNG ImageFolder under ``root``."""
    console.print("CIFAR-10 not found locally: downloading it with torchvision")
    for split in ("train", "test"):
        image_set = download_cifar10(root / "download", train=split == "train")
        for i, (image, label) in enumerate(zip(image_set.images, image_set.labels, strict=True)):
            path = root / split / image_set.classes[label] / f"{i:05d}.png"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                write_png(path, image.permute(1, 2, 0).numpy())
    return root


@app.command("demo")
def demo(
    data: Annotated[Path | None, typer.Option(help=_DATA_HELP)] = None,
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = DEMO_OUT,
    target: Annotated[list[str] | None, typer.Option(help=_TARGET_HELP)] = None,
    train_images: Annotated[int, typer.Option(min=10, help="Training images used.")] = (
        _SIZES.train_images
    ),
    target_epochs: Annotated[int, typer.Option(min=1, help="Epochs per target.")] = (
        _SIZES.target_epochs
    ),
    steps: Annotated[int, typer.Option(min=1, help="Protector training steps.")] = (
        _SIZES.protector_steps
    ),
    lr: Annotated[float, typer.Option(min=0.0, help=_LR_HELP)] = _SIZES.protector_lr,
    batch_size: Annotated[int, typer.Option(min=1, help=_BATCH_HELP)] = _SIZES.batch_size,
    test_per_class: Annotated[int, typer.Option(min=1, help="Test files per class.")] = (
        _SIZES.test_per_class
    ),
    target_psnr: TargetPsnrOption = _SIZES.target_psnr,
    no_cache: NoCacheOption = False,
    threads: ThreadsOption = None,
) -> None:
    """Train two targets and a protector, protect and recover test images, print the figures.

    Progress goes to stderr: a bar on a terminal, plain lines (stage, step, rate, ETA)
    when stderr is a file or a pipe. The figures go to stdout as JSON.
    """
    check_output_folder(out, "--out")
    unknown = [name for name in target or () if not is_arch(name)]
    if unknown:
        raise fail(f"unknown --target {', '.join(unknown)}; choose from {', '.join(list_archs())}")
    data = data or default_cifar10_root() or _export(out / "cifar10")
    config = DemoConfig(
        tuple(target) if target else DemoConfig.target_archs,
        train_images=train_images,
        target_epochs=target_epochs,
        protector_steps=steps,
        protector_lr=lr,
        batch_size=batch_size,
        target_psnr=target_psnr,
        test_per_class=test_per_class,
    )
    console.print(f"demo on {data} with {torch.get_num_threads()} CPU threads, into {out}")
    with stages() as shown:
        try:
            cache = None if no_cache else default_cache_dir()
            report = run_demo(data, out, config, shown.log, shown.show, cache)
        except ValueError as error:
            raise fail(str(error)) from None
    console.print(f"grid of original / protected / difference x10 / recovered: {out / 'grid.png'}")
    console.print(f"protector (the key): {out / 'protector'}")
    console.print(f"done in {report['seconds']['total']:.0f} s")
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
