"""``invprotect demo``: the whole story on CIFAR-10 in about ten minutes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from invprotect.cli.app import app
from invprotect.cli.progress import console
from invprotect.data import default_cifar10_root, download_cifar10
from invprotect.demo import DemoConfig, run_demo
from invprotect.pngio import write_png


def _export(root: Path) -> Path:
    """Download CIFAR-10 with torchvision and write it as a PNG ImageFolder under ``root``."""
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
    data: Annotated[
        Path | None, typer.Option(help="ImageFolder with train/ and test/ (default: CIFAR-10).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for everything the demo makes.")] = Path(
        "demo-out"
    ),
    train_images: Annotated[int, typer.Option(min=10, help="Training images used.")] = 20_000,
    target_epochs: Annotated[int, typer.Option(min=1, help="Epochs per target.")] = 4,
    steps: Annotated[int, typer.Option(min=1, help="Protector training steps.")] = 600,
    test_per_class: Annotated[int, typer.Option(min=1, help="Test files per class.")] = 50,
    target_psnr: Annotated[
        float, typer.Option(help="Wanted PSNR of protected images (dB).")
    ] = 30.0,
) -> None:
    """Train two targets and a protector, protect and recover test images, print the figures."""
    if data is None:
        data = default_cifar10_root()
        if data is None:
            console.print("CIFAR-10 not found locally: downloading it with torchvision")
            data = _export(out / "cifar10")
    config = DemoConfig(
        train_images=train_images,
        target_epochs=target_epochs,
        protector_steps=steps,
        test_per_class=test_per_class,
        target_psnr=target_psnr,
    )
    report = run_demo(data, out, config, log=lambda message: console.print(message))
    console.print(f"grid of original / protected / difference x10 / recovered: {out / 'grid.png'}")
    console.print(f"protector (the key): {out / 'protector'}")
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
