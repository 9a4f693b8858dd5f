"""Protector training: the loop runs, is seeded, resumes exactly, and refuses changed settings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from invprotect.data import load_image_set, scan_image_folder
from invprotect.models import RAEG
from invprotect.targets import Classifier, Ensemble
from invprotect.training.protector import (
    ProtectorEvent,
    ProtectorTrainingConfig,
    train_protector,
)

TINY = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}}


@pytest.fixture(scope="module")
def setting(cifar10_root: Path):
    index = scan_image_folder(cifar10_root / "test")
    index.samples = index.samples[::250]  # 40 images
    torch.manual_seed(0)
    ensemble = Ensemble([Classifier("mobilenet_small", index.classes).eval()])
    return load_image_set(index), ensemble


def _fresh() -> RAEG:
    torch.manual_seed(3)
    return RAEG.from_preset("cpu-32", **TINY)


CONFIG = ProtectorTrainingConfig(
    steps=4,
    batch_size=4,
    save_every=2,
    attacks={"identity": 1.0, "jpeg_ss": 1.0},
    precision="fp32",  # explicit: "auto" would pick bf16 on some CPUs and fp32 on others
)


class _StopError(Exception):
    pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_changes_the_generator_and_reports_progress(setting, precision: str) -> None:
    images, ensemble = setting
    raeg = _fresh()
    before = {k: v.clone() for k, v in raeg.generator.state_dict().items()}
    events = train_protector(raeg, ensemble, images, replace(CONFIG, precision=precision))
    assert [e.step for e in events] == [1, 2, 3, 4]
    for event in events:
        assert 10 < event.psnr < 200 and 0 <= event.fooling_rate <= 1 and 20 <= event.floor <= 40
    changed = [k for k, v in raeg.generator.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and not raeg.training
    assert all(p.dtype == torch.float32 for p in raeg.parameters())  # bf16 only inside autocast


def test_resume_after_interruption_matches_an_uninterrupted_run(setting, tmp_path: Path) -> None:
    images, ensemble = setting
    straight = _fresh()
    train_protector(straight, ensemble, images, CONFIG)

    def stop_after_three(event: ProtectorEvent) -> None:
        if event.step == 3:
            raise _StopError

    with pytest.raises(_StopError):
        train_protector(_fresh(), ensemble, images, CONFIG, tmp_path / "state", stop_after_three)
    resumed = _fresh()
    events = train_protector(resumed, ensemble, images, CONFIG, tmp_path / "state")
    assert [e.step for e in events] == [3, 4]
    for (name, a), b in zip(
        straight.state_dict().items(), resumed.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="different settings"):
        changed = ProtectorTrainingConfig(steps=4, batch_size=4, save_every=2, target_psnr=25)
        train_protector(_fresh(), ensemble, images, changed, tmp_path / "state")


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="target_psnr"):
        ProtectorTrainingConfig(target_psnr=80)
    with pytest.raises(ValueError, match="positive"):
        ProtectorTrainingConfig(steps=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_runs_on_cuda_with_every_default_attack(setting) -> None:
    images, ensemble = setting
    raeg = _fresh().to("cuda")
    config = ProtectorTrainingConfig(steps=3, batch_size=4, save_every=10)
    events = train_protector(raeg, ensemble.to("cuda"), images, config)
    assert [e.step for e in events] == [1, 2, 3]
    assert all(p.device.type == "cuda" for p in raeg.parameters())
    x = images.batch(range(4), device="cuda")
    assert raeg.protect(x).device.type == "cuda"
