"""Benchmark the invertible U-Net presets on the CPU: size, cost, speed and memory.

For every preset of :class:`invprotect.blocks.InvertibleUNet` (``paper`` and ``cpu`` by
default) at every image size (32x32 and 256x256 by default) the script measures:

* **Parameters**: ``sum(p.numel())`` over the network's parameters.
* **MACs per image**: one forward pass (and, separately, one inverse pass) of a batch of
  one under :class:`torch.utils.flop_counter.FlopCounterMode`, MACs = FLOPs / 2. That
  tool counts only matrix products and convolutions (here ``aten.convolution`` for the
  subnets and ``aten.bmm`` for the Haar transforms' ``einsum``); bias additions,
  element-wise work (``exp``, ``tanh``, LeakyReLU, affine updates, ``cat``) and the
  spectral-norm weight normalisation (``aten.mv``/``aten.dot``, once per call, not per
  image) are not counted. The ops seen but not counted are listed in the JSON.
* **Throughput**: images/s of ``transform`` (forward) and ``inverse`` under
  ``torch.no_grad()`` in ``eval()`` mode with ``torch.set_num_threads(--threads)``. After
  ``--warmup`` calls, the number of calls per repeat is chosen so that one repeat lasts at
  least ``--min-time`` seconds; ``--repeats`` repeats are timed with
  ``time.perf_counter`` and the median is reported (min and max go to the JSON). The
  inverse is fed the forward pass's output.
* **Peak memory**: each direction of each network runs in a fresh interpreter (this
  script re-invoked with a hidden flag), which builds the model and a random input batch
  of the benchmark's batch size, collects garbage, resets the kernel's RSS high-water
  mark (writing ``5`` to ``/proc/self/clear_refs``, Linux), reads the current RSS
  (``VmRSS`` in ``/proc/self/status``), runs a single, cold pass and reads the peak RSS.
  The reported figure is that peak minus the RSS after building, in MiB: the extra
  resident memory one call of the whole batch needs (activations, temporaries and the
  first-call allocations of the convolution backend). The peak is read as ``VmHWM``
  from ``/proc/self/status``, the high-water mark that the reset clears.
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (also recorded in the JSON) cannot be
  used: it is the maximum of that mark and a maximum the kernel carries across
  ``fork``/``exec``, so in a worker it starts at the RSS of the benchmark process that
  forked it (several hundred MiB with torch loaded), above anything a small pass reaches.
  Where the reset is impossible the script falls back to ``ru_maxrss`` and flags it in
  the JSON.
  The inverse's memory is measured on the random input itself, so that no forward pass
  runs before it.
* **Reference convolution throughput**: a large float32 ``conv2d`` (batch 64, 64 -> 64
  channels, 3x3, padding 1, 64x64 input, no bias) timed the same way, at the start and at
  the end of the run, in GMAC/s. Each network's achieved GMAC/s (MACs/image x images/s) is
  also shown as a percentage of the mean of those two references: how close the network
  gets to what this machine's convolution backend delivers on an easy shape.

The networks' zero-initialised output layers (which make every coupling the identity at
initialisation) are filled with small random values (std 0.01, ``--seed``), so that the
timed network is not the identity; the cost does not depend on the values. A round trip
on two images checks that the perturbed network still inverts.

It prints a markdown table, writes JSON (``--json``, default
``benchmarks/out/bench_blocks.json``) with machine information, date, settings and wall
time, and with ``--markdown PATH`` also a markdown report ready to paste into the docs.
``--quick`` shrinks batches and repeats to check that the script works; its numbers are
not meaningful. A full run takes a few minutes on a 2-core machine.

Example:
    .venv/bin/python benchmarks/bench_blocks.py --quick
    .venv/bin/python benchmarks/bench_blocks.py --markdown benchmarks/out/bench_blocks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from common import cpu_model
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from invprotect.blocks import UNET_PRESETS, InvertibleUNet

DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "bench_blocks.json"
DEFAULT_BATCH_SIZES: dict[int, int] = {32: 64, 256: 2}
CONV_SHAPE: dict[str, int] = {"batch": 64, "channels": 64, "kernel": 3, "size": 64}
QUICK_BATCH_SIZES: dict[int, int] = {32: 8, 256: 1}
QUICK_CONV_BATCH = 8
PERTURB_STD = 0.01
MIB = 1024.0 * 1024.0


# ----------------------------------------------------------------------------- model


def build_model(preset: str, size: int, seed: int) -> InvertibleUNet:
    """Build ``preset`` for ``size x size`` RGB images, perturbed away from the identity.

    Args:
        preset: A key of :data:`UNET_PRESETS`.
        size: Image height and width.
        seed: Seed of the parameter initialisation and of the perturbation.

    Returns:
        The network in ``eval()`` mode.
    """
    torch.manual_seed(seed)
    net = InvertibleUNet.from_preset(preset, dims_in=[(3, size, size)])
    with torch.no_grad():
        for param in net.parameters():
            if not param.any():
                param.normal_(0.0, PERTURB_STD)
    return net.eval()


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(param.numel() for param in module.parameters())


class _OpRecorder(TorchDispatchMode):
    """Records the names of the aten ops that run inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[Any] = set()

    def __torch_dispatch__(
        self,
        func: Any,
        types: Sequence[type],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        self.ops.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def count_macs(fn: Callable[[Tensor], Tensor], x: Tensor) -> dict[str, Any]:
    """MACs of one call ``fn(x)`` as counted by ``FlopCounterMode`` (FLOPs / 2).

    Args:
        fn: The function to count, called once under ``torch.no_grad()``.
        x: Its input.

    Returns:
        ``macs`` (total), ``macs_by_op`` and ``uncounted_ops`` (ops that ran but have no
        FLOP formula, so count zero).
    """
    counter = FlopCounterMode(display=False)
    recorder = _OpRecorder()
    with torch.no_grad(), counter:
        fn(x)
    with torch.no_grad(), recorder:
        fn(x)
    by_op = {str(op): flops // 2 for op, flops in counter.get_flop_counts()["Global"].items()}
    uncounted = sorted(str(op) for op in recorder.ops if op not in flop_registry)
    return {
        "macs": counter.get_total_flops() // 2,
        "macs_by_op": by_op,
        "uncounted_ops": uncounted,
    }


# ----------------------------------------------------------------------------- timing


def time_calls(
    fn: Callable[[], object], warmup: int, repeats: int, min_time: float
) -> dict[str, Any]:
    """Time ``fn`` after a warm-up: ``repeats`` repeats of ``calls`` calls each.

    ``calls`` is chosen from the last warm-up call so that one repeat lasts at least
    ``min_time`` seconds.

    Returns:
        ``calls`` per repeat and ``seconds_per_call`` of every repeat.
    """
    single = 0.0
    for _ in range(max(1, warmup)):
        start = time.perf_counter()
        fn()
        single = time.perf_counter() - start
    calls = max(1, math.ceil(min_time / single)) if single > 0 else 1
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        per_call.append((time.perf_counter() - start) / calls)
    return {"calls_per_repeat": calls, "seconds_per_call": per_call}


def rate_summary(timing: dict[str, Any], items_per_call: float) -> dict[str, Any]:
    """Median, min and max of ``items_per_call / seconds`` over the repeats."""
    rates = [items_per_call / seconds for seconds in timing["seconds_per_call"]]
    median = statistics.median(rates)
    return {
        "median": median,
        "min": min(rates),
        "max": max(rates),
        "relative_spread": (max(rates) - min(rates)) / median,
        "repeats": len(rates),
        **timing,
    }


def conv_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput of a large float32 ``conv2d`` under ``no_grad``, in GMAC/s."""
    batch = QUICK_CONV_BATCH if args.quick else CONV_SHAPE["batch"]
    ch, k, size = CONV_SHAPE["channels"], CONV_SHAPE["kernel"], CONV_SHAPE["size"]
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.randn(batch, ch, size, size, generator=generator)
    weight = torch.randn(ch, ch, k, k, generator=generator) / math.sqrt(ch * k * k)
    macs = batch * ch * ch * k * k * size * size

    def call() -> Tensor:
        return torch.nn.functional.conv2d(x, weight, padding=k // 2)

    with torch.no_grad():
        timing = time_calls(call, args.warmup, args.repeats, args.min_time)
    summary = rate_summary(timing, macs / 1e9)
    return {
        "shape": {
            "batch": batch,
            "c_in": ch,
            "c_out": ch,
            "kernel": k,
            "height": size,
            "width": size,
            "padding": k // 2,
            "bias": False,
        },
        "macs_per_call": macs,
        "gmac_per_s": summary,
    }


def bench_network(preset: str, size: int, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Parameters, MACs, round-trip error and forward/inverse throughput of one network."""
    net = build_model(preset, size, args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.rand(batch, 3, size, size, generator=generator)
    fwd_cost = count_macs(net.transform, x[:1])
    inv_cost = count_macs(net.inverse, x[:1])
    with torch.no_grad():
        pair = x[:2]
        roundtrip = (net.inverse(net.transform(pair)) - pair).abs().max().item()
        y = net.transform(x)
        forward = time_calls(lambda: net.transform(x), args.warmup, args.repeats, args.min_time)
        inverse = time_calls(lambda: net.inverse(y), args.warmup, args.repeats, args.min_time)
    return {
        "preset": preset,
        "config": asdict(UNET_PRESETS[preset]),
        "size": size,
        "batch": batch,
        "params": count_parameters(net),
        "macs_per_image": fwd_cost["macs"],
        "macs_per_image_inverse": inv_cost["macs"],
        "macs_by_op": fwd_cost["macs_by_op"],
        "uncounted_ops": sorted(set(fwd_cost["uncounted_ops"]) | set(inv_cost["uncounted_ops"])),
        "roundtrip_max_abs_error": roundtrip,
        "forward_images_per_s": rate_summary(forward, batch),
        "inverse_images_per_s": rate_summary(inverse, batch),
    }


# ----------------------------------------------------------------------------- memory


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} line in /proc/self/status")


def _maxrss_bytes() -> int:
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return _proc_status_bytes("VmHWM") - _proc_status_bytes("VmRSS") < MIB


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak extra RSS of one cold pass; runs in its own interpreter.

    Args:
        spec: ``preset``, ``size``, ``batch``, ``direction`` (``forward`` or
            ``inverse``), ``threads`` and ``seed``.

    Returns:
        RSS after building, peak RSS during the pass and their difference, in MiB, and
        which counter gave the peak.
    """
    torch.set_num_threads(spec["threads"])
    net = build_model(spec["preset"], spec["size"], spec["seed"])
    generator = torch.Generator().manual_seed(spec["seed"])
    x = torch.rand(spec["batch"], 3, spec["size"], spec["size"], generator=generator)
    call = net.transform if spec["direction"] == "forward" else net.inverse
    gc.collect()
    maxrss_before = _maxrss_bytes()
    reset = _reset_peak_rss()
    baseline = _proc_status_bytes("VmRSS")
    with torch.no_grad():
        out = call(x)
    hwm = _proc_status_bytes("VmHWM")
    maxrss = _maxrss_bytes()
    del out
    peak = hwm if reset else maxrss
    return {
        "rss_after_build_mib": baseline / MIB,
        "peak_rss_mib": peak / MIB,
        "peak_minus_build_mib": (peak - baseline) / MIB,
        "peak_source": "VmHWM after clear_refs" if reset else "ru_maxrss (reset failed)",
        "vmhwm_mib": hwm / MIB,
        "ru_maxrss_before_pass_mib": maxrss_before / MIB,
        "ru_maxrss_after_pass_mib": maxrss / MIB,
        "input_mib": x.numel() * x.element_size() / MIB,
    }


def measure_memory(
    preset: str, size: int, batch: int, direction: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Run :func:`memory_worker` in a fresh interpreter and return its result."""
    spec = {
        "preset": preset,
        "size": size,
        "batch": batch,
        "direction": direction,
        "threads": args.threads,
        "seed": args.seed,
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-worker", json.dumps(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker {spec} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- reporting


def machine_info(threads: int) -> dict[str, Any]:
    """Platform, CPU and torch facts that the numbers depend on."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": affinity,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "threads": threads,
        "torch_num_threads": torch.get_num_threads(),
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned."""
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0]] + ["-" * (width - 1) + ":" for width in widths[1:]]
    return "\n".join([line(headers), "| " + " | ".join(rule) + " |", *map(line, rows)])


def results_table(report: dict[str, Any]) -> str:
    """The per-network markdown table of ``report``."""
    ref = report["conv_reference_gmac_per_s"]
    headers = [
        "network",
        "params",
        "MMAC/img",
        "batch",
        "fwd img/s",
        "inv img/s",
        "fwd GMAC/s (% conv)",
        "inv GMAC/s (% conv)",
        "fwd peak MiB",
        "inv peak MiB",
    ]
    rows = []
    for res in report["results"]:
        cells = [
            f"{res['preset']} {res['size']}x{res['size']}",
            f"{res['params'] / 1e6:.2f} M",
            f"{res['macs_per_image'] / 1e6:,.1f}",
            str(res["batch"]),
        ]
        achieved = []
        for direction, macs_key in (
            ("forward", "macs_per_image"),
            ("inverse", "macs_per_image_inverse"),
        ):
            rate = res[f"{direction}_images_per_s"]["median"]
            cells.append(f"{rate:,.2f}" if rate < 100 else f"{rate:,.0f}")
            gmac = res[macs_key] * rate / 1e9
            achieved.append(f"{gmac:.1f} ({100 * gmac / ref:.0f}%)")
        cells.extend(achieved)
        cells.extend(
            f"{res['memory'][d]['peak_minus_build_mib']:,.1f}" for d in ("forward", "inverse")
        )
        rows.append(cells)
    return markdown_table(headers, rows)


def notes(report: dict[str, Any]) -> list[str]:
    """Explanatory lines printed under the table."""
    conv = report["conv_reference"]
    shape = conv["start"]["shape"]
    spreads = [
        res[f"{d}_images_per_s"]["relative_spread"]
        for res in report["results"]
        for d in ("forward", "inverse")
    ]
    uncounted = sorted({op for res in report["results"] for op in res["uncounted_ops"]})
    counted = sorted({op for res in report["results"] for op in res["macs_by_op"]})
    settings = report["settings"]
    roundtrip = max(res["roundtrip_max_abs_error"] for res in report["results"])
    return [
        f"- Reference conv: conv2d float32, batch {shape['batch']}, {shape['c_in']}->"
        f"{shape['c_out']} channels, {shape['kernel']}x{shape['kernel']}, "
        f"{shape['height']}x{shape['width']}, no grad: "
        f"{conv['start']['gmac_per_s']['median']:.1f} GMAC/s at the start, "
        f"{conv['end']['gmac_per_s']['median']:.1f} at the end; % conv uses their mean, "
        f"{report['conv_reference_gmac_per_s']:.1f} GMAC/s.",
        f"- Throughput: median of {settings['repeats']} timed repeats (each >= "
        f"{settings['min_time']} s, after {settings['warmup']} warm-up call(s)), "
        f"{settings['threads']} threads, eval(), no_grad; largest (max-min)/median "
        f"over rows: {100 * max(spreads):.0f}%.",
        f"- MACs = FlopCounterMode FLOPs / 2 for one image; counted ops: {', '.join(counted)}; "
        f"ops that ran but count zero: {', '.join(uncounted)}.",
        f"- Round trip inverse(transform(x)) on 2 images, output layers perturbed (std "
        f"{settings['perturb_std']}): max abs error {roundtrip:.1e}.",
        "- Peak MiB: peak RSS (VmHWM, reset after building) minus RSS after building model "
        "and input, one cold pass of the whole batch in a fresh process.",
        f"- Load average (1/5/15 min): start {report['load_average']['start']}, end "
        f"{report['load_average']['end']}.",
    ]


def markdown_report(report: dict[str, Any]) -> str:
    """A self-contained markdown report: header, table and notes."""
    machine = report["machine"]
    lines = ["## InvertibleUNet on the CPU (benchmarks/bench_blocks.py)", ""]
    if report["quick"]:
        lines += ["**QUICK MODE: tiny batches and repeats; these numbers are not meaningful.**", ""]
    lines += [
        f"- Command: `{report['command']}`",
        f"- Machine: {machine['cpu_model']}, {machine['cpus_available']} CPUs available, "
        f"{machine['threads']} torch threads, torch {machine['torch']} "
        f"({machine['torch_cpu_capability']}), {machine['platform']}",
        f"- Date (UTC): {report['date_utc']}",
        f"- Wall time: {report['wall_time_s']:.0f} s",
        "",
        results_table(report),
        "",
        *notes(report),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_batch_sizes(items: Sequence[str] | None) -> dict[int, int]:
    """Parse ``SIZE=BATCH`` items into a mapping."""
    parsed: dict[int, int] = {}
    for item in items or ():
        size, sep, batch = item.partition("=")
        if not sep or not size.isdigit() or not batch.isdigit() or int(batch) < 1:
            raise argparse.ArgumentTypeError(
                f"--batch-size expects SIZE=BATCH with positive integers, got {item!r}"
            )
        parsed[int(size)] = int(batch)
    return parsed


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        description="Benchmark InvertibleUNet presets on the CPU: parameters, MACs, "
        "forward/inverse throughput, peak memory and efficiency against a reference conv.",
    )
    parser.add_argument(
        "--presets",
        nargs="+",
        default=["paper", "cpu"],
        choices=sorted(UNET_PRESETS),
        help="presets to benchmark",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=int,
        default=[32, 256],
        help="square image sizes (multiples of 2**levels)",
    )
    parser.add_argument(
        "--batch-size",
        action="append",
        metavar="SIZE=BATCH",
        help="batch size for one image size (repeatable); defaults "
        + ", ".join(f"{s}={b}" for s, b in DEFAULT_BATCH_SIZES.items())
        + ", otherwise 1",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="minimum seconds per timed repeat"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and inputs")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="JSON output path")
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="also write a markdown report (table plus header) here",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny batches and repeats, only to check that the script runs",
    )
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its reports; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.memory_worker is not None:
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return 0
    try:
        batch_sizes = {**DEFAULT_BATCH_SIZES, **parse_batch_sizes(args.batch_size)}
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    if args.quick:
        args.repeats, args.warmup, args.min_time = 2, 1, 0.0
        explicit = parse_batch_sizes(args.batch_size)
        batch_sizes = {**QUICK_BATCH_SIZES, **explicit}
    if args.threads < 1 or args.repeats < 1 or args.warmup < 0 or args.min_time < 0:
        parser.error("--threads and --repeats must be >= 1, --warmup and --min-time >= 0")

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    load_start = [round(v, 2) for v in os.getloadavg()]
    if args.quick:
        print("QUICK MODE: tiny batches and repeats; the numbers are not meaningful.")
    print(
        f"threads={args.threads} repeats={args.repeats} warmup={args.warmup} "
        f"min_time={args.min_time}s load={load_start}",
        flush=True,
    )

    conv_start = conv_reference(args)
    print(f"reference conv: {conv_start['gmac_per_s']['median']:.1f} GMAC/s", flush=True)
    results = []
    for preset in args.presets:
        for size in args.sizes:
            batch = batch_sizes.get(size, 1)
            res = bench_network(preset, size, batch, args)
            res["memory"] = {
                d: measure_memory(preset, size, batch, d, args) for d in ("forward", "inverse")
            }
            results.append(res)
            print(
                f"{preset} {size}x{size} batch {batch}: "
                f"fwd {res['forward_images_per_s']['median']:.2f} img/s, "
                f"inv {res['inverse_images_per_s']['median']:.2f} img/s, "
                f"peak fwd {res['memory']['forward']['peak_minus_build_mib']:.1f} MiB "
                f"({time.perf_counter() - started:.0f} s elapsed)",
                flush=True,
            )
    conv_end = conv_reference(args)
    ref = (conv_start["gmac_per_s"]["median"] + conv_end["gmac_per_s"]["median"]) / 2

    report: dict[str, Any] = {
        "benchmark": "benchmarks/bench_blocks.py",
        "quick": args.quick,
        "command": shlex.join(["python", *sys.argv])
        if argv is None
        else shlex.join(["python", "benchmarks/bench_blocks.py", *argv]),
        "date_utc": date,
        "machine": machine_info(args.threads),
        "settings": {
            "threads": args.threads,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "min_time": args.min_time,
            "seed": args.seed,
            "batch_sizes": {str(s): batch_sizes.get(s, 1) for s in args.sizes},
            "perturb_std": PERTURB_STD,
        },
        "mac_counting": "torch.utils.flop_counter.FlopCounterMode, batch of 1, MACs = FLOPs/2; "
        "counts convolutions and matrix products only",
        "conv_reference": {"start": conv_start, "end": conv_end},
        "conv_reference_gmac_per_s": ref,
        "results": results,
        "load_average": {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]},
    }
    report["wall_time_s"] = time.perf_counter() - started

    print()
    if args.quick:
        print("QUICK MODE: tiny batches and repeats; the numbers are not meaningful.")
    print(results_table(report))
    print()
    print("\n".join(notes(report)))
    print(f"\nwall time {report['wall_time_s']:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_report(report), encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
