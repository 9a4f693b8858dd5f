"""Files protected on one machine are recovered bit for bit on another.

Another CPU is simulated by the code paths its kernels would take: ``ATEN_CPU_CAPABILITY``
picks ATen's vectorised kernels (``avx512``, ``avx2`` or scalar ``default``) and
``ONEDNN_MAX_CPU_ISA`` caps oneDNN's (convolutions), so float results differ in their last
bits between the two processes, as they do between an Intel Xeon and an AMD EPYC. Protect
and recover run in separate processes through the command line, with different thread counts
too. Recovery must still give the originals bit for bit. (Precision does not enter here:
``protect`` and ``recover`` never autocast; bfloat16 is a training setting, tested in
``tests/training``.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.models import RAEG
from tests.contracts import train_away_from_identity

pytestmark = [pytest.mark.cross_machine, pytest.mark.slow]

NATIVE: dict[str, str] = {}
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SCALAR = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
"""Differs from the native paths on every x86 machine (on an AVX2-only CPU, NATIVE is AVX2)."""


@pytest.fixture(scope="module", params=["affine", "integer"])
def key(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A small RAEG trained 20 steps away from the identity (far from it: PSNR ~ 10 dB).

    Both generators: DSAC blocks (a residual repairs the rounding) and integer blocks
    (one pass; only tiles in context need a residual).
    """
    torch.manual_seed(0)
    generator = {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8}
    raeg = RAEG.from_preset("cpu-32", generator=generator | {"coupling": request.param})
    train_away_from_identity(
        raeg.generator, lambda: torch.rand(4, 3, 32, 32), forward=raeg.generate
    )
    return raeg.eval().save(tmp_path_factory.mktemp("key") / "protector")


@pytest.fixture(scope="module")
def originals(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real CIFAR-10 JPEGs plus PNGs of other sizes (a batch of their own, padding, tiles)."""
    root = tmp_path_factory.mktemp("originals")
    sources = []
    for name in ("frog", "ship"):
        (root / name).mkdir()
        for source in sorted((cifar10_root / "test" / name).glob("*.jpg"))[:4]:
            (root / name / source.name).write_bytes(source.read_bytes())
            sources.append(source)
    photo = Image.open(sources[0]).convert("RGB")
    photo.resize((64, 64), Image.BICUBIC).save(root / "big.png")
    photo.resize((47, 33), Image.BICUBIC).save(root / "odd.png")
    photo.resize((600, 40), Image.BICUBIC).save(root / "wide.png")  # two tiles, in context
    return root


def _cli(*args: str | Path, env: dict[str, str], threads: int) -> None:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    }
    command = [sys.executable, "-m", "invprotect", *map(str, args)]
    command += ["--device", "cpu", "--threads", str(threads)]
    result = subprocess.run(
        command, env=environment | env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_recovery_on_other_code_paths_is_bit_exact(
    key: Path, originals: Path, tmp_path: Path
) -> None:
    protected = tmp_path / "protected"
    _cli("protect", originals, protected, "--protector", key, env=NATIVE, threads=1)
    files = sorted(p for p in originals.rglob("*") if p.is_file())
    assert len(files) == 11
    for name, env in (("avx2", AVX2), ("scalar", SCALAR)):
        recovered = tmp_path / name
        _cli("recover", protected, recovered, "--protector", key, env=env, threads=2)
        for original in files:
            relative = original.relative_to(originals).with_suffix(".png")
            before = _pixels(original)
            assert not np.array_equal(_pixels(protected / relative), before)  # protected
            assert np.array_equal(_pixels(recovered / relative), before), (name, relative)
