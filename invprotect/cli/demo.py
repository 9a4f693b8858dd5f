"""``invprotect demo``: the whole story on CIFAR-10 in a few minutes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import torch
import typer

from invprotect.cli.app import ThreadsOption, app
from invprotect.cli.paths import check_output_folder
from invprotect.cli.progress import console, fail, progress_bar
from invprotect.data import default_cache_dir, default_cifar10_root, download_cifar10
from invprotect.demo import DemoConfig, run_demo
from invprotect.files.png import write_png
from invprotect.targets import is_arch, list_archs


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
    target: Annotated[
        list[str] | None,
        typer.Option(
            help="Target architecture (repeat for several; default: "
            + ", ".join(DemoConfig.target_archs)
            + ")."
        ),
    ] = None,
    train_images: Annotated[
        int, typer.Option(min=10, help="Training images used.")
    ] = DemoConfig.train_images,
    target_epochs: Annotated[
        int, typer.Option(min=1, help="Epochs per target.")
    ] = DemoConfig.target_epochs,
    steps: Annotated[
        int, typer.Option(min=1, help="Protector training steps.")
    ] = DemoConfig.protector_steps,
    lr: Annotated[
        float, typer.Option(min=0.0, help="Protector's starting learning rate.")
    ] = DemoConfig.protector_lr,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Protector's images per step.")
    ] = DemoConfig.batch_size,
    test_per_class: Annotated[
        int, typer.Option(min=1, help="Test files per class.")
    ] = DemoConfig.test_per_class,
    target_psnr: Annotated[
        float, typer.Option(help="Wanted PSNR of protected images (dB).")
    ] = DemoConfig.target_psnr,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not cache decoded images.")
    ] = False,
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
    if data is None:
        data = default_cifar10_root()
        if data is None:
            console.print("CIFAR-10 not found locally: downloading it with torchvision")
            data = _export(out / "cifar10")
    config = DemoConfig(
        target_archs=tuple(target) if target else DemoConfig.target_archs,
        train_images=train_images,
        target_epochs=target_epochs,
        protector_steps=steps,
        protector_lr=lr,
        batch_size=batch_size,
        test_per_class=test_per_class,
        target_psnr=target_psnr,
    )
    console.print(f"demo on {data} with {torch.get_num_threads()} CPU threads, into {out}")
    with progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def show(stage: str, done: int, total: int, status: str) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, status=status)
            bar.update(tasks[stage], completed=done, total=total, status=status)

        try:
            report = run_demo(
                data,
                out,
                config,
                log=lambda message: bar.console.print(message),
                progress=show,
                cache_dir=None if no_cache else default_cache_dir(),
            )
        except ValueError as error:
            raise fail(str(error)) from None
    console.print(f"grid of original / protected / difference x10 / recovered: {out / 'grid.png'}")
    console.print(f"protector (the key): {out / 'protector'}")
    console.print(f"done in {report['seconds']['total']:.0f} s")
    typer.echo(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))
