"""Images per second of folder protect and recover in 1 shard and in N shards at once.

The same ``--files`` CIFAR-10 test images (every k-th file of the test set, copied into
class folders) are protected with the reference protector, by ``protect_tree`` (the work
of ``invprotect protect``): in one process, then in ``N`` processes at once, shard
``K/N`` each (as ``invprotect protect --shard K/N`` or torchrun's workers run it), each
with ``--threads`` intra-op threads; ``--repeats`` times, in turn. The protected set of
the one-process run is then recovered the same ways. Every process imports torch and
loads the protector first, then waits at a start line; the clock runs from the start
signal until the last process is done, so start-up (10-30 s on a loaded machine) is not
counted; it is recorded apart, and so is the CPU time the processes spend per image
(which other work on the machine changes little: the same in both rows means that
sharding costs nothing extra). The outputs of the sharded runs are compared byte for
byte with the one-process run's, and their merged manifest with its manifest.

The rows run one after the other; other processes on the machine change them, so the
load average before and after each row is recorded with it.

Example:
    .venv/bin/python benchmarks/bench_sharded.py --files 400 --shards 2 --repeats 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import machine

from invprotect.data import default_cifar10_root
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.protectors import load_protector
from invprotect.sharding import parse_shard

OUT = Path(__file__).resolve().parent / "out"
PROTECTOR = Path(__file__).resolve().parent / "reference" / "proxy" / "protector-margin"
"""A RAEG trained on CIFAR-10 (see ``benchmarks/reference/proxy/README.md``)."""
START_LINE_SECONDS = 600.0
"""How long the processes may take to import and load before the benchmark gives up."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=400, help="CIFAR-10 test files.")
    parser.add_argument("--shards", type=int, default=2, help="Shards of the sharded rows.")
    parser.add_argument("--threads", type=int, default=1, help="Intra-op threads per process.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=1, help="Measure 1 and N shards this many times, in turn."
    )
    parser.add_argument("--protector", type=Path, default=PROTECTOR)
    parser.add_argument(
        "--commands", nargs="+", choices=["protect", "recover"], default=["protect", "recover"]
    )
    parser.add_argument("--json", type=Path, default=OUT / "sharded.json")
    parser.add_argument("--worker", nargs=6, metavar="ARG", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _worker(args: argparse.Namespace) -> None:
    """One shard: load, say ready, wait for the start signal, work, write the times."""
    command, src, dst, shard_text, folder, name = args.worker
    torch.set_num_threads(args.threads)
    protector = load_protector(args.protector, "cpu")
    shard = parse_shard(shard_text)
    work = protect_tree if command == "protect" else recover_tree
    start_line = Path(folder)
    (start_line / f"{name}.ready").touch()
    while not (start_line / "go").exists():
        time.sleep(0.01)
    started, cpu = time.time(), time.process_time()
    report = work(Path(src), Path(dst), protector, args.batch_size, None, shard)
    result = {"started": started, "ended": time.time(), "written": report.written}
    result.update(cpu_seconds=time.process_time() - cpu, failed=len(report.failed))
    (start_line / f"{name}.json").write_text(json.dumps(result))


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != "manifest.jsonl"
    }


def _manifest_lines(root: Path) -> list[str]:
    path = root / "manifest.jsonl"
    return sorted(path.read_text().splitlines()) if path.exists() else []


def _row(args: argparse.Namespace, command: str, src: Path, dst: Path, shards: int) -> dict:
    """Run ``command`` in ``shards`` processes at once; its times and figures."""
    load_before = os.getloadavg()[0]
    launched = time.time()
    with tempfile.TemporaryDirectory() as folder:
        start_line = Path(folder)
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        settings = ["--threads", str(args.threads), "--batch-size", str(args.batch_size)]
        settings += ["--protector", str(args.protector), "--worker", command, str(src), str(dst)]
        processes = [
            subprocess.Popen(
                [sys.executable, __file__, *settings, f"{k}/{shards}", folder, str(k)],
                env=environment,
            )
            for k in range(shards)
        ]
        deadline = time.monotonic() + START_LINE_SECONDS
        while len(list(start_line.glob("*.ready"))) < shards:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                for process in processes:
                    process.kill()
                sys.exit(f"the {command} processes did not reach the start line")
            time.sleep(0.05)
        go = time.time()
        (start_line / "go").touch()
        for process in processes:
            if process.wait() != 0:
                sys.exit(f"a {command} process failed with exit status {process.returncode}")
        results = [json.loads((start_line / f"{k}.json").read_text()) for k in range(shards)]
    seconds = max(result["ended"] for result in results) - go
    written = sum(result["written"] for result in results)
    cpu_seconds = sum(result["cpu_seconds"] for result in results)
    return {
        "command": command,
        "shards": shards,
        "threads_per_process": args.threads,
        "images": written,
        "failed": sum(result["failed"] for result in results),
        "per_shard": [result["written"] for result in results],
        "seconds": round(seconds, 2),
        "images_per_s": round(written / seconds, 2),
        "cpu_ms_per_image": round(1000 * cpu_seconds / written, 1),
        "start_up_seconds": round(go - launched, 2),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


def _source(root: Path, files: int) -> Path:
    """Every k-th CIFAR-10 test file, ``files`` of them, copied into class folders."""
    test = default_cifar10_root() / "test"
    every = sorted(test.rglob("*.jpg"))
    for path in every[:: max(1, len(every) // files)][:files]:
        copy = root / path.relative_to(test)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, copy)
    return root


def main(argv: list[str] | None = None) -> None:
    """Measure 1 shard and ``--shards`` shards per command, print a table, write the JSON."""
    args = _parse(argv)
    if args.worker:
        _worker(args)
        return
    if args.shards < 2:
        sys.exit("--shards must be at least 2 (the one-shard row is always measured)")
    rows, identical = [], {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        src = _source(work / "src", args.files)
        inputs = {"protect": src, "recover": work / "protect-1"}
        for command in args.commands:
            if command == "recover" and not inputs["recover"].exists():
                _row(args, "protect", src, inputs["recover"], 1)  # the set to recover
            for repeat in range(args.repeats):
                for shards in (1, args.shards):
                    dst = work / f"{command}-{shards}"
                    if repeat:
                        shutil.rmtree(dst)
                    rows.append(_row(args, command, inputs[command], dst, shards))
                    rows[-1]["repeat"] = repeat
                    print(json.dumps(rows[-1]), flush=True)
            one, many = work / f"{command}-1", work / f"{command}-{args.shards}"
            identical[command] = _digests(one) == _digests(many) and (
                _manifest_lines(one) == _manifest_lines(many)
            )
    print(
        f"\n{'command':>8} {'shards':>6} {'threads':>7} {'images/s':>9} {'speed-up':>8} "
        f"{'CPU ms/image':>12} load"
    )
    for row in rows:
        base = next(
            r
            for r in rows
            if (r["command"], r["repeat"], r["shards"]) == (row["command"], row["repeat"], 1)
        )
        load = f"{row['load_average_before']:.1f}-{row['load_average_after']:.1f}"
        print(
            f"{row['command']:>8} {row['shards']:>6} {row['threads_per_process']:>7} "
            f"{row['images_per_s']:>9.2f} {row['images_per_s'] / base['images_per_s']:>7.2f}x "
            f"{row['cpu_ms_per_image']:>12.1f} {load}"
        )
    print(f"sharded outputs and manifest identical to one process: {identical}")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings = {k: v for k, v in settings.items() if k not in ("json", "worker")}
    report = {"rows": rows, "identical": identical, "settings": settings, "machine": machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
