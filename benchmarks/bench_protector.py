"""Benchmark the RAEG protector on CIFAR-10: train, evaluate, time tensors and folders.

Four phases, each optional, all written to one JSON report (``--json``):

* **train**: a ``cpu-32`` RAEG against the ensemble of ``--targets`` (checkpoints from
  ``benchmarks/bench_targets.py``) on the full training split, ``--steps`` generator
  updates of batch ``--batch-size`` at ``--target-psnr``. Resumable: the state lives in
  ``OUT/train-state`` and a finished protector in ``OUT/protector`` is reused. The
  wall time of the training steps run by this call is recorded.
* **evaluate**: on ``--eval-images`` seeded random test images (all 10,000 by default), the
  paper's Table 2 columns: A_ori, A_prt, A_rev per target (A_rev on the exact recovery;
  ``A_rev_network`` on the network's inverse of the 8-bit protected image alone), P/S of
  protected and recovered images (PSNR peak 1, SSIM of pytorch-msssim), A_prt after real
  JPEG quality 50, and the accuracy of ``--unseen`` models the protector never saw. It
  also measures the mean PSNR on ``--train-check`` training images, which the target-PSNR
  knob promises to hold within 0.5 dB.
* **speed**: ``RAEG.protect`` tensor in to tensor out at 32x32 (batch 256) and 256x256
  (batch 4), images per second over at least ``--speed-seconds`` each, after a warm-up.
* **folder**: ``protect_tree`` on the first ``--folder-files`` test files (JPEG in, PNG out
  with the recovery record and the manifest), then ``recover_tree`` on the result: images
  per second of each, the peak resident memory after 10% and after 100% of the files
  (equal when memory does not grow with the number of files), extra bytes per image of
  the recovery record, and the fraction of files recovered bit for bit (decoded pixels
  compared with the original file's).

Example:
    .venv/bin/python benchmarks/bench_protector.py --quick
    nohup .venv/bin/python benchmarks/bench_protector.py --steps 12000 > out.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import machine, peak_rss_mib, rss_mib
from pytorch_msssim import ssim
from speed_presets import images_per_second

from invprotect.attacks import quantize_ste
from invprotect.data import ImageSet, default_cifar10_root, load_image_set, train_test_split
from invprotect.defences import create_defence_from_spec
from invprotect.files.images import pixel_digest
from invprotect.files.png import read_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.metrics import psnr
from invprotect.models import RAEG
from invprotect.models.exact import ExactCodec
from invprotect.record import RECORD_CHUNK
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import ProtectorTrainingConfig, held_psnr, train_protector

OUT = Path(__file__).resolve().parent / "out"
TARGETS = Path(__file__).resolve().parent.parent / "runs" / "targets"
PAPER_TABLE_2 = [  # Chen et al. 2022, Table 2 (256x256; their A is one pretrained classifier)
    ("Caltech-101", 0.953, 0.654, 0.944, 30.504, 45.499, 0.900, 0.989),
    ("Caltech-101", 0.980, 0.479, 0.977, 27.256, 45.260, 0.848, 0.985),
    ("Caltech-101", 0.956, 0.166, 0.941, 24.167, 41.684, 0.728, 0.963),
    ("CelebA-100", 0.823, 0.147, 0.750, 31.878, 43.542, 0.955, 0.996),
    ("CelebA-100", 0.820, 0.060, 0.823, 28.720, 48.042, 0.901, 0.998),
    ("CelebA-100", 0.833, 0.020, 0.643, 25.928, 38.575, 0.872, 0.989),
    ("Mini-ImageNet", 0.926, 0.211, 0.889, 30.415, 42.262, 0.893, 0.983),
    ("Mini-ImageNet", 0.948, 0.068, 0.941, 27.366, 39.361, 0.871, 0.979),
    ("Mini-ImageNet", 0.942, 0.086, 0.933, 25.947, 40.209, 0.830, 0.979),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="default: local CIFAR-10")
    parser.add_argument(
        "--targets",
        type=Path,
        nargs="+",
        default=[TARGETS / "resnet_small", TARGETS / "vgg_small"],
    )
    parser.add_argument("--unseen", type=Path, nargs="*", default=[TARGETS / "densenet_small"])
    parser.add_argument("--out", type=Path, default=OUT / "protector-cifar10")
    parser.add_argument("--steps", type=int, default=12_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--target-psnr", type=float, default=28.5)
    parser.add_argument("--lr", type=float, default=ProtectorTrainingConfig.lr)
    parser.add_argument("--beta", type=float, default=ProtectorTrainingConfig.beta)
    parser.add_argument("--alpha", type=float, default=ProtectorTrainingConfig.alpha)
    parser.add_argument("--attacks", type=json.loads, default=None, help='JSON {"name": weight}')
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-images", type=int, default=10_000)
    parser.add_argument("--train-check", type=int, default=2_000)
    parser.add_argument("--speed-seconds", type=float, default=10.0)
    parser.add_argument("--folder-files", type=int, default=10_000)
    parser.add_argument("--skip", nargs="*", default=[], choices=["evaluate", "speed", "folder"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="default: OUT/bench.json")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the script only")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_images, args.train_check = 4, 64, 64
        args.speed_seconds, args.folder_files = 0.5, 40
    return args


def train(args: argparse.Namespace, ensemble: Ensemble, train_set: ImageSet) -> tuple[RAEG, dict]:
    """Train (or resume, or reuse) the protector; returns it and the training record."""
    protector_dir = args.out / "protector"
    if (protector_dir / "config.json").is_file():
        raeg = RAEG.load(protector_dir)
        return raeg, raeg.metadata.get("training", {})
    config = ProtectorTrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        target_psnr=args.target_psnr,
        alpha=args.alpha,
        beta=args.beta,
        attacks=args.attacks,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    raeg = RAEG.from_preset("cpu-32")
    started = time.perf_counter()

    def log(event: Any) -> None:
        if event.step % 100 == 0 or event.step == event.steps:
            print(
                f"step {event.step}/{event.steps} {time.perf_counter() - started:.0f}s "
                f"psnr {event.psnr:.2f} (smoothed {event.smoothed_psnr:.2f}) "
                f"fooled {event.fooling_rate:.2f} attacked {event.attacked_fooling_rate:.2f} "
                f"rec-acc {event.recovered_accuracy:.2f} floor {event.floor:.2f}",
                flush=True,
            )

    events = train_protector(raeg, ensemble, train_set, config, args.out / "train-state", log)
    record = {
        "config": {k: v for k, v in vars(config).items() if k != "attacks"}
        | {"attacks": args.attacks},
        "steps_this_call": len(events),
        "wall_seconds_this_call": time.perf_counter() - started,
    }
    raeg.metadata["training"] = record
    raeg.save(protector_dir)
    return raeg, record


@torch.no_grad()
def evaluate(
    raeg: RAEG,
    members: dict[str, Classifier],
    unseen: dict[str, Classifier],
    test: ImageSet,
    train_set: ImageSet,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The Table 2 columns, JPEG-50 accuracy, unseen models and the knob check."""
    codec = ExactCodec(raeg)
    jpeg50 = create_defence_from_spec("jpeg:quality=50")
    count = min(args.eval_images, len(test))
    # a seeded random subset (the test set is sorted by class); all of it by default
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[:count]
    models = members | unseen
    correct: dict[str, dict[str, float]] = {
        key: dict.fromkeys(models, 0.0) for key in ("ori", "prt", "prt_jpeg50", "rev", "rev_net")
    }
    sums = dict.fromkeys(("P_prt", "S_prt", "P_rev", "S_rev", "P_rev_net"), 0.0)
    exact = 0
    for start in range(0, count, 500):
        index = chosen[start : start + 500]
        x, labels = test.batch(index), test.labels[index]
        originals = test.images[index]
        protected = quantize_ste(raeg.protect(x))
        protected_8bit = (protected * 255).round().to(torch.uint8)
        restored = codec.restore(protected_8bit, codec.residuals(originals, protected_8bit))
        exact += sum(torch.equal(a, b) for a, b in zip(restored, originals, strict=True))
        recovered = restored.float() / 255
        network = quantize_ste(raeg.recover(protected))
        variants = {
            "ori": x,
            "prt": protected,
            "prt_jpeg50": jpeg50(protected),
            "rev": recovered,
            "rev_net": network,
        }
        for key, images in variants.items():
            for name, model in models.items():
                correct[key][name] += (model(images).argmax(1) == labels).sum().item()
        for key, images in (("prt", protected), ("rev", recovered)):
            sums[f"P_{key}"] += psnr(images, x).clamp(max=100.0).sum().item()
            sums[f"S_{key}"] += ssim(images, x, data_range=1.0, size_average=False).sum().item()
        sums["P_rev_net"] += psnr(network, x).clamp(max=100.0).sum().item()
    report: dict[str, Any] = {"images": count, "exact_rate": exact / count}
    for key, per_model in correct.items():
        report[f"A_{key}"] = {name: value / count for name, value in per_model.items()}
    report |= {key: value / count for key, value in sums.items()}
    check = min(args.train_check, len(train_set))
    report["train_psnr"] = held_psnr(raeg, train_set, check, seed=args.seed)
    report["train_psnr_images"] = check
    return report


@torch.no_grad()
@torch.no_grad()
def speed(raeg: RAEG, seconds: float) -> dict[str, float]:
    """Images per second of ``RAEG.protect`` (tensor in, tensor out, no autograd)."""
    result = {}
    for side, batch in ((32, 256), (256, 4)):
        x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(0))
        rate = images_per_second(raeg.protect, x, seconds, sync=lambda: None)
        result[f"protect_{side}x{side}_images_per_s"] = rate
    return result


def folder(raeg: RAEG, test_root: Path, files: int) -> dict[str, Any]:
    """Folder-to-folder protect and recover of ``files`` test files."""
    _, test_index = train_test_split(test_root)
    chosen = test_index.samples[:files]
    work = Path(tempfile.mkdtemp(prefix="bench-protector-"))
    try:
        src = work / "originals"
        for path, label in chosen:  # a copy, so the run sees exactly ``files`` files
            target = src / test_index.classes[label] / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        done, memory = 0, {}
        tenth = max(1, files // 10)

        def progress(n: int) -> None:
            nonlocal done
            before, done = done, done + n
            if before < tenth <= done:
                memory["peak_rss_mib_after_10pct"] = peak_rss_mib()

        rss_before = rss_mib()
        started = time.perf_counter()
        protected = protect_tree(src, work / "protected", raeg, progress=progress)
        protect_seconds = time.perf_counter() - started
        memory["peak_rss_mib_after_100pct"] = peak_rss_mib()
        started = time.perf_counter()
        recovered = recover_tree(work / "protected", work / "recovered", raeg)
        recover_seconds = time.perf_counter() - started
        relative = [p.relative_to(src) for p in sorted(src.rglob("*.jpg"))]
        exact = sum(
            pixel_digest_of(src / r) == pixel_digest_of(work / "recovered" / r.with_suffix(".png"))
            for r in relative
        )
        protected_files = [work / "protected" / r.with_suffix(".png") for r in relative]
        record_bytes = [len(read_chunks(p.read_bytes())[RECORD_CHUNK]) for p in protected_files]
        return {
            "files": len(relative),
            "protect_files_per_s": len(relative) / protect_seconds,
            "recover_files_per_s": len(relative) / recover_seconds,
            "protect_failed": len(protected.failed),
            "recover_failed": len(recovered.failed),
            "recover_mismatched": len(recovered.mismatched),
            "exact_rate": exact / len(relative),
            "record_bytes_per_image": sum(record_bytes) / len(record_bytes),
            "rss_mib_before": rss_before,
            **memory,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pixel_digest_of(path: Path) -> str:
    """SHA-256 of a file's decoded pixels."""
    from PIL import Image

    with Image.open(path) as image:
        return pixel_digest(image)


def markdown(report: dict[str, Any]) -> str:
    """The Table 2 rows (ours, then the paper's) and the speed figures."""
    ev = report["evaluate"]
    names = list(ev["A_prt"])
    lines = [
        "| data set | A_ori | A_prt | A_prt JPEG 50 | A_rev | P_prt | P_rev | S_prt | S_rev "
        "| exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def cell(key: str) -> str:
        return " / ".join(f"{ev[key][n]:.3f}" for n in names)

    lines.append(
        f"| CIFAR-10 (32x32; {' / '.join(names)}) | {cell('A_ori')} | {cell('A_prt')} | "
        f"{cell('A_prt_jpeg50')} | {cell('A_rev')} | {ev['P_prt']:.2f} | {ev['P_rev']:.2f} | "
        f"{ev['S_prt']:.3f} | {ev['S_rev']:.3f} | {ev['exact_rate']:.2%} |"
    )
    for row in PAPER_TABLE_2:
        name, *values = row
        a_ori, a_prt, a_rev, p_prt, p_rev, s_prt, s_rev = values
        lines.append(
            f"| paper: {name} (256x256) | {a_ori:.3f} | {a_prt:.3f} | - | {a_rev:.3f} | "
            f"{p_prt:.2f} | {p_rev:.2f} | {s_prt:.3f} | {s_rev:.3f} | - |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the phases and write the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    data = args.data or default_cifar10_root()
    if data is None:
        sys.exit("no CIFAR-10 here: pass --data")
    train_index, test_index = train_test_split(data)
    train_set = load_image_set(train_index, 32, OUT / "cache")
    test = load_image_set(test_index, 32, OUT / "cache")
    members = {p.name: Classifier.load(p) for p in args.targets}
    unseen = {p.name: Classifier.load(p) for p in args.unseen}
    raeg, training = train(args, Ensemble(list(members.values())), train_set)
    raeg.eval()
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    report["training"] = training
    report["targets"], report["unseen"] = list(members), list(unseen)
    if "evaluate" not in args.skip:
        report["evaluate"] = evaluate(raeg, members, unseen, test, train_set, args)
        print(json.dumps(report["evaluate"], indent=1), flush=True)
    if "speed" not in args.skip:
        report["speed"] = speed(raeg, args.speed_seconds)
        print(json.dumps(report["speed"]), flush=True)
    if "folder" not in args.skip and args.folder_files > 0:
        report["folder"] = folder(raeg, data, args.folder_files)
        print(json.dumps(report["folder"]), flush=True)
    report["machine"] = machine()
    report["wall_seconds"] = time.perf_counter() - wall
    path = args.json or args.out / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if "evaluate" in report:
        print(markdown(report))
    print(f"wrote {path}; wall {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
