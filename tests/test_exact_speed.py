"""Exact recovery at network speed: the fixed-point twin, its proof's premises, the record coding.

The twin (`invprotect.models.fixed_point`) must give the same bits on every CPU code path,
thread count and batch size, cost at most about twice the float32 network, invert what it
protected well enough for small records, and older residuals (coding 0) must still decode.
"""

from __future__ import annotations

import hashlib
import lzma
import math
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from PIL import Image

import invprotect.record
from invprotect.data import load_image_set, scan_image_folder
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG, exact
from invprotect.models import fixed_point as fp
from invprotect.models.exact import CODING, ExactCodec
from invprotect.models.protector import Protector
from tests.contracts import train_away_from_identity

NATIVE: dict[str, str] = {}
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SCALAR = {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _trained(subnet: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", generator={"hidden_channels": 8, "subnet": subnet})
    train_away_from_identity(
        raeg.generator, lambda: torch.rand(4, 3, 32, 32), forward=raeg.generate
    )
    return raeg.eval().save(tmp_path_factory.mktemp(name) / "protector")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-level RAEG (resnet_sn subnets, spectral norm) trained away from the identity."""
    return _trained("resnet_sn", tmp_path_factory, "key")


@pytest.fixture(scope="module")
def raeg(key: Path) -> RAEG:
    return RAEG.load(key)


@pytest.fixture(scope="module")
def originals(cifar10_root: Path) -> torch.Tensor:
    index = scan_image_folder(cifar10_root / "test")
    index.samples = index.samples[::1000]  # 10 real images, one per class
    return load_image_set(index).images


_PROBE = """
import hashlib, sys, torch
from invprotect.models import RAEG
from invprotect.models.fixed_point import FixedPointUNet
torch.set_num_threads(int(sys.argv[2]))
raeg = RAEG.load(sys.argv[1])
x = torch.load(sys.argv[3])
twin = FixedPointUNet(raeg.generator)
digest = lambda t: hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()
y = twin.forward(x)
q = (y * 255).round() / 255
together = twin.inverse(q)
alone = torch.cat([twin.inverse(q[i : i + 1]) for i in range(len(q))])
with torch.no_grad():
    plain = raeg.recover(q)
print(digest(y), digest(together), digest(alone), digest(plain))
"""


@pytest.mark.cross_machine
@pytest.mark.slow
def test_twin_gives_the_same_bits_on_every_code_path(key: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    inputs = tmp_path / "x.pt"
    torch.save(torch.rand(3, 3, 48, 40), inputs)
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
    }
    runs = {}
    for name, env, threads in (("native", NATIVE, 1), ("avx2", AVX2, 2), ("scalar", SCALAR, 2)):
        result = subprocess.run(
            [sys.executable, "-c", _PROBE, str(key), str(threads), str(inputs)],
            env=environment | env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        runs[name] = result.stdout.split()
    forward, together, alone, _ = runs["native"]
    assert together == alone  # batch size does not matter
    for name in ("avx2", "scalar"):
        assert runs[name][:3] == [forward, together, alone], name
    # the code paths differ for real: the float32 network gives other bits on the scalar one
    assert runs["scalar"][3] != runs["native"][3]


@pytest.mark.parametrize("channels", [6, 24, 96])
def test_integer_convolutions_are_exact_on_the_selected_backends(channels: int) -> None:
    """The premise of the proof's step 1, checked on this machine's kernels."""
    generator = torch.Generator().manual_seed(channels)
    bits = fp.ACTIVATION_BITS
    inputs = torch.randint(-(2**bits), 2**bits + 1, (3, channels, 20, 24), generator=generator)
    weights = torch.randint(-1000, 1001, (16, channels, 3, 3), generator=generator)
    budget = 2 ** (24 - bits)
    total = weights.abs().sum(dim=(1, 2, 3), keepdim=True)
    weights = torch.div(weights * budget, total, rounding_mode="trunc")  # near the bound
    assert (weights.abs().sum(dim=(1, 2, 3)) <= budget).all()
    exact = F.conv2d(inputs.double(), weights.double(), padding=1)
    with fp.exact_backends(torch.device("cpu")):
        for memory_format in (torch.contiguous_format, torch.channels_last):
            x = inputs.float().contiguous(memory_format=memory_format)
            w = weights.float().contiguous(memory_format=memory_format)
            assert torch.equal(F.conv2d(x, w, padding=1).double(), exact)


def test_every_weight_fits_the_exactness_budget(raeg: RAEG) -> None:
    twin = fp.FixedPointUNet(raeg.generator)
    convs = [
        conv
        for step in twin.steps
        if not isinstance(step, str)
        for sub in step[1:]
        for conv in sub.convs
    ]
    config = raeg.config.generator
    assert len(convs) == config.levels * 2 * config.blocks_per_level * 2 * 4  # 4 per subnet
    for conv in convs:
        assert torch.equal(conv.weight, conv.weight.round())
        assert conv.weight.abs().sum(dim=(1, 2, 3)).max() <= 2 ** (24 - fp.ACTIVATION_BITS)
        assert conv.weight.abs().sum() > 0  # trained: no layer rounds to nothing


def test_the_scale_table_is_pinned_and_close_to_the_function() -> None:
    step, scales, inverse = fp.scale_table(2.0)
    assert (step, scales.numel()) == (12, 2 * 16 * 4096 + 1)
    # The same bits on every machine: a table built otherwise would change this digest.
    digest = hashlib.sha256(scales.numpy().tobytes() + inverse.numpy().tobytes()).hexdigest()
    assert digest == TABLE_DIGEST
    n = (scales.numel() - 1) // 2
    raw = torch.cat([torch.arange(0, n + 1), torch.arange(-n, 0)]).double() / 2**step
    expected = torch.exp(2.0 * torch.tanh(raw / 2.0))
    assert torch.allclose(scales.double(), expected, rtol=2**-23, atol=0)
    assert torch.allclose(inverse.double(), 1 / expected, rtol=2**-23, atol=0)


TABLE_DIGEST = "593fb6c7e02f25cfd057f93a45bdd7b584452c5ee253da0c1097465377480277"
"""SHA-256 of `scale_table(2.0)` (scales, then inverses), as built on an AMD EPYC (AVX2)."""


def test_twin_protects_like_the_network_and_inverts_what_it_protected(
    raeg: RAEG, originals: torch.Tensor
) -> None:
    x = originals.float() / 255
    twin = fp.FixedPointUNet(raeg.generator)
    with torch.no_grad():
        network = raeg.generate(x)
    protected = twin.forward(x)
    assert (network - x).abs().mean() * 255 > 5  # far from the identity
    assert ((protected - network) * 255).square().mean().sqrt() < 1.0  # levels, RMS (> 48 dB)
    back = twin.inverse(protected)
    assert ((back - x) * 255).abs().max() < 1.0  # the twin's own round trip, in levels


def _best_time(function, repeats: int = 5) -> float:
    function()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def test_exact_prediction_costs_at_most_twice_the_network(raeg: RAEG) -> None:
    x = torch.rand(4, 3, 64, 64)
    twin = fp.FixedPointUNet(raeg.generator)
    with torch.no_grad():
        network = _best_time(lambda: raeg.recover(x))
    prediction = _best_time(lambda: twin.inverse(x))
    assert prediction < 2.0 * network, (prediction, network)


def _coding_0(codec: ExactCodec, originals: torch.Tensor, protected: torch.Tensor) -> list[bytes]:
    """Residuals as the previous release wrote them: float64 prediction, int16, zlib."""
    difference = originals.to(torch.int16) - codec._predict_legacy(protected)
    return [zlib.compress(d.numpy().astype("<i2").tobytes(), 9) for d in difference]


def test_records_are_smaller_than_coding_0_and_exact(raeg: RAEG, originals: torch.Tensor) -> None:
    codec = ExactCodec(raeg)
    protected, blobs = codec.encode(originals)
    assert all(blob[0] == CODING for blob in blobs)
    assert torch.equal(codec.restore(protected, blobs), originals)
    assert not torch.equal(codec.predict(protected), originals)  # the residual is needed
    old_protected = Protector.encode(raeg, originals)[0]
    old = _coding_0(codec, originals, old_protected)
    assert torch.equal(codec.restore(old_protected, old), originals)  # coding 0 still decodes
    assert sum(map(len, blobs)) < 0.6 * sum(map(len, old))


def test_saturated_images_round_trip(raeg: RAEG) -> None:
    """Clipping everywhere: overflow coded, escapes for large values, odd sizes."""
    images = torch.zeros(4, 3, 16, 24, dtype=torch.uint8)
    images[1] = 255
    images[2, :, ::2] = 255
    images[3] = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
    codec = ExactCodec(raeg)
    protected, blobs = codec.encode(images)
    assert ((protected == 0) | (protected == 255)).float().mean() > 0.2
    assert torch.equal(codec.restore(protected, blobs), images)
    # a mixed batch: coding 0 and coding 1 side by side
    mixed = [blobs[0], *_coding_0(codec, images[1:2], protected[1:2]), *blobs[2:]]
    assert torch.equal(codec.restore(protected, mixed), images)


def test_corrupt_coding_1_residuals_fail_with_a_message(
    raeg: RAEG, originals: torch.Tensor
) -> None:
    codec = ExactCodec(raeg)
    protected, blobs = codec.encode(originals[:1])
    blob = blobs[0]
    header = blob[: exact._HEADER.size]
    bomb = lzma.compress(
        bytes(100 * protected.numel()), format=lzma.FORMAT_RAW, filters=exact._FILTERS
    )
    bad = {
        "truncated": blob[:3],
        "cut": blob[:-4],
        "counts": blob[:1] + (10**6).to_bytes(4, "big") + blob[5:],
        "bomb": header + bomb,
        "junk": header + b"\x78\x9c garbage",
    }
    accepted = []
    for name, data in bad.items():
        try:
            codec.restore(protected, [data])
        except ValueError as error:
            assert "residual" in str(error), (name, error)
        else:
            accepted.append(name)
    assert not accepted


def test_files_protected_before_coding_1_still_recover(
    raeg: RAEG, originals: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version-2 records holding coding-0 residuals, written as the previous release did."""
    src = tmp_path / "src"
    src.mkdir()
    for i, image in enumerate(originals):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(src / f"{i}.png")

    def previous_encode(
        self: RAEG, images: torch.Tensor, labels: object = None
    ) -> tuple[torch.Tensor, list[bytes]]:
        protected = Protector.encode(self, images)[0]
        return protected, _coding_0(ExactCodec(self), images, protected)

    with monkeypatch.context() as patch:
        patch.setattr(RAEG, "encode", previous_encode)
        patch.setattr(invprotect.record, "RECORD_VERSION", 2)
        assert protect_tree(src, tmp_path / "old", raeg).ok
    report = recover_tree(tmp_path / "old", tmp_path / "rec", raeg)
    assert report.ok and report.written == len(originals) and not report.altered
    for i, image in enumerate(originals):
        restored = np.asarray(Image.open(tmp_path / "rec" / f"{i}.png").convert("RGB"))
        assert np.array_equal(restored, image.permute(1, 2, 0).numpy())


def test_the_conv_subnet_is_mirrored_too(tmp_path_factory: pytest.TempPathFactory) -> None:
    raeg = RAEG.load(_trained("conv", tmp_path_factory, "conv"))
    assert fp.supports(raeg.generator)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    codec = ExactCodec(raeg)
    protected, blobs = codec.encode(images)
    assert torch.equal(codec.restore(protected, blobs), images)


def test_unsupported_generators_keep_coding_0() -> None:
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", architecture="encoder-decoder").eval()
    assert not fp.supports(raeg.generator)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    codec = ExactCodec(raeg)
    protected, blobs = codec.encode(images)
    assert codec.coding == 0 and all(blob[:1] != bytes([CODING]) for blob in blobs)
    assert torch.equal(codec.restore(protected, blobs), images)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_twin_on_a_gpu_gives_the_cpu_bits(raeg: RAEG) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 64, 64)
    cpu = fp.FixedPointUNet(raeg.generator)
    gpu = fp.FixedPointUNet(raeg.generator, torch.device("cuda"))
    y = cpu.forward(x)
    assert torch.equal(gpu.forward(x).cpu(), y)
    q = (y * 255).round() / 255
    assert torch.equal(gpu.inverse(q).cpu(), cpu.inverse(q))
