"""What every corpus case shares: two tiny protectors, a pool of protected files, the CLI runner.

`Kit.build` makes, once per test module:

* ``protector``: a small non-identity RAEG (random weights), saved with `RAEG.save`;
* ``other_protector``: another one of the same architecture (the wrong key);
* ``originals``: 50 RGB images plus a gray, a palette and an RGBA one, all 8x8;
* ``protected``: those images protected by the real ``invprotect protect`` (with its manifest).

`run_cli` runs the console script's entry point (`invprotect.cli.run`) in-process, with
click's `CliRunner` isolation capturing its output; `run_subprocess` runs
``python -m invprotect`` for the few cases that need a real process (a kill).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import stat
import subprocess
import sys
import time
import traceback
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from click.testing import CliRunner
from PIL import Image

from invprotect.cli import run
from invprotect.models import RAEG
from tests.corpus.files import pixels, save, write

TINY = {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}
"""Generator of the corpus protectors: 2 levels (sides multiples of 4), a few thousand weights."""
POOL_SIZE = 50
"""RGB images in the protected pool (img00.png ... img49.png)."""
OTHER_MODES = ("gray.png", "palette.png", "alpha.png")
"""Pool images of other modes."""
TRACEBACK = "Traceback (most recent call last)"


@dataclass
class Outcome:
    """What one run of the CLI did.

    Attributes:
        code: The exit code (``None`` when an exception escaped the entry point).
        output: stdout and stderr together.
        error: The formatted exception that escaped, if any.
        seconds: Wall time of the run.
    """

    code: int | None
    output: str
    error: str | None
    seconds: float


def run_cli(args: list[str]) -> Outcome:
    """Run ``invprotect ARGS`` in-process through the console script's entry point."""
    runner = CliRunner()
    code: int | None = None
    error = None
    start = time.perf_counter()
    with runner.isolation() as (_, _, mixed):
        try:
            run(args)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:  # the test reports any escaping exception as a crash
            error = traceback.format_exc()
        output = mixed.getvalue().decode("utf-8", "replace")
    return Outcome(code, output, error, time.perf_counter() - start)


def subprocess_env() -> dict[str, str]:
    """The environment of a CLI subprocess: one thread, the repository importable."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{root}:{path}".rstrip(":")}


def start_subprocess(args: list[str]) -> subprocess.Popen[bytes]:
    """Start ``python -m invprotect ARGS`` (stdout and stderr together)."""
    return subprocess.Popen(
        [sys.executable, "-m", "invprotect", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
    )


def finish_subprocess(process: subprocess.Popen[bytes], timeout: float, start: float) -> Outcome:
    """Wait for a process of `start_subprocess` and collect its outcome."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return Outcome(None, output.decode("utf-8", "replace"), "timed out", timeout)
    return Outcome(
        process.returncode, output.decode("utf-8", "replace"), None, time.perf_counter() - start
    )


def run_subprocess(args: list[str], timeout: float = 120) -> Outcome:
    """Run ``python -m invprotect ARGS`` in a subprocess."""
    start = time.perf_counter()
    return finish_subprocess(start_subprocess(args), timeout, start)


def make_protector(path: Path, seed: int) -> Path:
    """Save a tiny RAEG with random, non-zero weights (far from the identity) at ``path``."""
    torch.manual_seed(seed)
    model = RAEG.from_preset("cpu-32", generator=TINY)
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.generator.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=noise))
    model.eval()
    image = torch.rand(1, 3, 8, 8, generator=noise)
    moved = (model.protect(image) - image).abs().mean().item()
    assert moved > 2 / 255, f"the corpus protector is almost the identity ({moved:.2e})"
    return model.save(path)


@dataclass
class Kit:
    """The shared protectors and pool; see the module docstring."""

    root: Path
    protector: Path
    other_protector: Path
    originals: Path
    protected: Path

    @classmethod
    def build(cls, root: Path) -> Kit:
        """Make everything under ``root``; the pool is protected by the real CLI."""
        protector = make_protector(root / "protector", seed=1)
        other = make_protector(root / "other-protector", seed=2)
        originals = root / "originals"
        for index in range(POOL_SIZE):
            image = Image.fromarray(pixels(8, 8, 3, seed=100 + index), "RGB")
            write(originals / f"img{index:02d}.png", save(image, "PNG"))
        photo = Image.fromarray(pixels(8, 8, 3, seed=99), "RGB")
        write(originals / "gray.png", save(photo.convert("L"), "PNG"))
        write(originals / "palette.png", save(photo.quantize(16), "PNG"))
        rgba = Image.fromarray(pixels(8, 8, 4, seed=98), "RGBA")
        write(originals / "alpha.png", save(rgba, "PNG"))
        protected = root / "protected"
        outcome = run_cli(
            ["protect", str(originals), str(protected), "--protector", str(protector)]
        )
        if outcome.code != 0:
            raise AssertionError(
                f"protecting the corpus pool failed ({outcome.code}):\n"
                f"{outcome.output}\n{outcome.error or ''}"
            )
        return cls(root, protector, other, originals, protected)


Snapshot = dict[bytes, tuple]


def snapshot(root: Path) -> Snapshot:
    """Every entry under ``root`` (links not followed): files by content, mtime and mode."""
    entries: Snapshot = {}
    base = os.fsencode(root)
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            relative = os.path.relpath(path, base)
            if stat.S_ISLNK(info.st_mode):
                entries[relative] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                entries[relative] = ("dir", info.st_mode, info.st_mtime_ns)
            else:
                entries[relative] = ("file", _sha256(path), info.st_mtime_ns, info.st_mode)
    return entries


def _sha256(path: bytes) -> str:
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError as error:  # unreadable (a case made it so)
        return f"unreadable: {error.strerror}"


@contextlib.contextmanager
def address_space_cap(extra_mb: int) -> Iterator[None]:
    """Cap this process's address space at its current size plus ``extra_mb`` (soft limit).

    A command that tries to allocate gigabytes then fails at once instead of swapping
    the machine.
    """
    size_kb = next(
        int(line.split()[1])
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size_kb * 1024 + extra_mb * 2**20, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def python_heap_peak(result: list[float]) -> Iterator[None]:
    """Trace Python allocations; appends the peak (MB) to ``result`` when done."""
    tracemalloc.start()
    try:
        yield
    finally:
        result.append(tracemalloc.get_traced_memory()[1] / 2**20)
        tracemalloc.stop()
