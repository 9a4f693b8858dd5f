"""Benchmark the attack layers on CIFAR-10 test images: cost per image and JPEG fidelity.

Two measurements, both on real CIFAR-10 test images (JPEG files under
``<data>/test/<class>/*.jpg``, decoded with ``torchvision.io.decode_image`` to float in
``[0, 1]``; ``--data`` defaults to ``$INVPROTECT_CIFAR10`` or ``../shared/datasets/cifar10``,
found by :func:`invprotect.data.default_cifar10_root`). Images are taken evenly spaced
from the sorted file list, so every class is represented.

* **Cost**: for every registered attack (default hyper-parameters) and for the default
  :class:`~invprotect.attacks.AttackLayer`, the time of one forward pass with fresh
  random parameters (sampling included) plus one backward pass to the input, on a batch
  of ``--batch-size`` images, with ``torch.set_num_threads(--threads)``. After
  ``--warmup`` untimed calls, ``--repeats`` calls are timed with ``time.perf_counter``;
  the median is reported in ms per image (min and max go to the JSON), both as wall
  time and as CPU time of this process (all threads; robust to other processes
  competing for the cores, which inflate wall time). The forward pass alone, under
  ``torch.no_grad()``, is timed the same way. Each call draws new parameters
  from one seeded generator, so attacks that group samples by a setting (kernel size,
  intermediate size) pay for their typical number of groups.
* **JPEG fidelity**: each JPEG simulation against real JPEG (libjpeg through
  ``torchvision.io.encode_jpeg``/``decode_jpeg``, 4:2:0) at quality 50 and 90 on
  ``--psnr-images`` images: the PSNR (dB) of simulation vs real per image, mean and
  standard deviation over images. The row "no attack" is the PSNR of the input itself
  against its real JPEG, i.e. how much JPEG changes the image at all. ``pseudo_jpeg``
  with its default weights contains the real codec (``jpeg_ste``) with weight 1/3, which
  flatters its row; the row "pseudo_jpeg (ss+mask)" is the mix without it.

``--threads`` defaults to 1: at 32x32 the ops are too small to gain much from intra-op
threads, and on a machine shared with other busy processes, more torch threads than free
cores make every parallel region wait for a descheduled thread (spinning, which inflates
CPU time too), so that the same attack's time jumped 10-100x between runs with 2 threads.

It prints markdown tables and writes JSON (``--json``, default
``benchmarks/out/bench_attacks.json``) with machine information, date, settings and wall
time. ``--quick`` shrinks batches, repeats and image counts to check that the script
works; its numbers are not meaningful. A full run takes well under a minute on a 2-core
machine.

Example:
    .venv/bin/python benchmarks/bench_attacks.py --quick
    .venv/bin/python benchmarks/bench_attacks.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kornia
import torch
import torchvision
from torch import Tensor
from torchvision.io import decode_image

from invprotect.attacks import AttackLayer, create_attack, list_attacks, real_jpeg
from invprotect.data import default_cifar10_root
from invprotect.metrics import psnr

DEFAULT_JSON = Path("benchmarks/out/bench_attacks.json")
QUALITIES = (50, 90)

# Name shown in the table -> (registry name, hyper-parameters).
SIMULATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpeg_kornia": ("jpeg_kornia", {}),
    "jpeg_mask": ("jpeg_mask", {}),
    "jpeg_ss": ("jpeg_ss", {}),
    "jpeg_ss (cubic-near-zero)": ("jpeg_ss", {"rounding": "cubic-near-zero"}),
    "pseudo_jpeg": ("pseudo_jpeg", {}),
    "pseudo_jpeg (ss+mask)": ("pseudo_jpeg", {"weights": {"jpeg_ss": 1.0, "jpeg_mask": 1.0}}),
}

# torchvision 0.29 deprecates its JPEG codecs (every call warns); the benchmark needs them.
warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision"
)


def load_cifar10_test(root: Path, count: int) -> Tensor:
    """``count`` CIFAR-10 test images, evenly spaced over the sorted files, float in [0, 1].

    Raises:
        SystemExit: If the folder has fewer than ``count`` JPEG files.
    """
    files = sorted((root / "test").glob("*/*.jpg"))
    if len(files) < count:
        raise SystemExit(f"need {count} JPEGs under {root / 'test'}/<class>/; found {len(files)}")
    chosen = files[:: len(files) // count][:count]
    return torch.stack([decode_image(str(path)) for path in chosen]).float() / 255


def time_calls(
    call: Callable[[], None], warmup: int, repeats: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU times in seconds of ``repeats`` calls after ``warmup`` untimed ones.

    CPU time (``time.process_time``: this process, all threads) is much less sensitive
    than wall time to other processes competing for the cores.
    """
    for _ in range(warmup):
        call()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus


def bench_costs(images: Tensor, warmup: int, repeats: int, seed: int) -> list[dict[str, Any]]:
    """Forward+backward and forward-only cost per image of every attack and the layer."""
    modules: dict[str, Callable[[Tensor, torch.Generator], Tensor]] = {}
    for name in list_attacks():
        attack = create_attack(name)
        modules[name] = lambda x, g, attack=attack: attack(x, generator=g)
    layer = AttackLayer()
    modules["AttackLayer (default)"] = lambda x, g: layer(x, generator=g).images

    batch = images.shape[0]
    upstream = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for name, run in modules.items():
        generator = torch.Generator().manual_seed(seed)

        def train_step(run: Callable[..., Tensor] = run, generator: Any = generator) -> None:
            x = images.clone().requires_grad_(True)
            run(x, generator).backward(upstream)

        def forward_only(run: Callable[..., Tensor] = run, generator: Any = generator) -> None:
            with torch.no_grad():
                run(images, generator)

        row: dict[str, Any] = {"attack": name, "batch": batch}
        for label, call in (("fwd_bwd", train_step), ("fwd", forward_only)):
            walls, cpus = time_calls(call, warmup, repeats)
            for clock, times in (("wall", walls), ("cpu", cpus)):
                key = f"{label}_{clock}_ms_per_image"
                row[key] = 1e3 * statistics.median(times) / batch
                row[f"{key}_min"] = 1e3 * min(times) / batch
                row[f"{key}_max"] = 1e3 * max(times) / batch
        rows.append(row)
        print(f"  timed {name}", file=sys.stderr)
    return rows


def bench_fidelity(images: Tensor, chunk: int) -> list[dict[str, Any]]:
    """PSNR of each JPEG simulation (and of the input) against real JPEG at each quality."""
    per_row: dict[str, dict[int, list[Tensor]]] = {}
    attacks = {label: create_attack(name, **hp) for label, (name, hp) in SIMULATIONS.items()}
    for quality in QUALITIES:
        for start in range(0, images.shape[0], chunk):
            x = images[start : start + chunk]
            real = real_jpeg(x, quality)
            per_row.setdefault("no attack", {}).setdefault(quality, []).append(psnr(x, real))
            for label, attack in attacks.items():
                params = {"quality": torch.full((x.shape[0],), quality)}
                with torch.no_grad():
                    simulated = attack(x, params if attack.param_names else {})
                values = psnr(simulated, real)
                per_row.setdefault(label, {}).setdefault(quality, []).append(values)
    rows = []
    for label, by_quality in per_row.items():
        row: dict[str, Any] = {"simulation": label}
        for quality, parts in by_quality.items():
            values = torch.cat(parts)
            row[f"psnr_q{quality}_mean"] = values.mean().item()
            row[f"psnr_q{quality}_std"] = values.std().item()
        rows.append(row)
    return rows


def cost_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the costs."""
    lines = [
        "| attack | fwd+bwd wall (ms/image) | fwd+bwd CPU (ms/image) "
        "| fwd wall (ms/image) | fwd CPU (ms/image) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = " | ".join(
            f"{row[f'{label}_{clock}_ms_per_image']:.3f}"
            for label in ("fwd_bwd", "fwd")
            for clock in ("wall", "cpu")
        )
        lines.append(f"| {row['attack']} | {cells} |")
    return "\n".join(lines)


def fidelity_table(rows: list[dict[str, Any]], count: int) -> str:
    """Markdown table of the PSNRs."""
    header = " | ".join(f"QF {q}: PSNR vs real (dB)" for q in QUALITIES)
    lines = [
        f"| simulation ({count} images) | {header} |",
        "|---|" + "---:|" * len(QUALITIES),
    ]
    for row in rows:
        cells = " | ".join(
            f"{row[f'psnr_q{q}_mean']:.2f} ± {row[f'psnr_q{q}_std']:.2f}" for q in QUALITIES
        )
        lines.append(f"| {row['simulation']} | {cells} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Versions and hardware of this run."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "kornia": kornia.__version__,
        "threads": torch.get_num_threads(),
        # Other processes on the machine inflate the wall times: record the load.
        "load_average_at_end": list(os.getloadavg()),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=default_cifar10_root(),
        help="CIFAR-10 folder with test/<class>/*.jpg (default: $INVPROTECT_CIFAR10 or "
        "../shared/datasets/cifar10)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per timed call")
    parser.add_argument("--psnr-images", type=int, default=1000, help="images for the PSNR table")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--quick", action="store_true", help="tiny settings to test the script")
    args = parser.parse_args(argv)
    if args.data is None:
        parser.error("CIFAR-10 not found: pass --data or set INVPROTECT_CIFAR10")
    if args.quick:
        args.batch_size, args.psnr_images, args.warmup, args.repeats = 8, 40, 1, 2
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    load_at_start = list(os.getloadavg())
    images = load_cifar10_test(args.data, max(args.batch_size, args.psnr_images))
    batch = images[torch.linspace(0, images.shape[0] - 1, args.batch_size).long()]
    costs = bench_costs(batch, args.warmup, args.repeats, args.seed)
    fidelity = bench_fidelity(images[: args.psnr_images], chunk=250)
    wall = time.perf_counter() - started

    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"\nCost per image, batch of {args.batch_size} CIFAR-10 test images (32x32), ", end="")
    print(f"{args.threads} threads, median of {args.repeats} (load average {load}):\n")
    print(cost_table(costs))
    print("\nJPEG simulations vs real JPEG (libjpeg via torchvision.io), mean ± std:\n")
    print(fidelity_table(fidelity, args.psnr_images))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average_at_start": load_at_start,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_time_s": wall,
        "costs": costs,
        "jpeg_fidelity": fidelity,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nwrote {args.json} ({wall:.0f} s)")


if __name__ == "__main__":
    main()
