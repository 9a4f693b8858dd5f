"""The baselines through the same files, commands and loader as RAEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from invprotect.baselines import RAE, RIT, create_baseline
from invprotect.checkpoint import CheckpointError
from invprotect.cli import app
from invprotect.files.images import pixel_digest
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from invprotect.protectors import load_protector
from invprotect.targets import Classifier

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FAST_IGSM = {"epsilon": 4 / 255, "steps": 3}


@pytest.fixture(scope="module")
def target_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An (untrained) CIFAR-10 classifier checkpoint the baselines attack."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("target") / "mobilenet"
    Classifier("mobilenet_small", CLASSES).eval().save(path)
    return path


@pytest.fixture(scope="module")
def model(target_dir: Path) -> Classifier:
    return Classifier.load(target_dir)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_rit_round_trip_through_png_files_is_bit_exact(
    model: Classifier, mixed_tree: Path, tmp_path: Path
) -> None:
    rit = RIT(model, "igsm", FAST_IGSM)
    report = protect_tree(mixed_tree, tmp_path / "prt", rit, batch_size=4)
    assert report.ok and report.written == 8, report.failed
    entries = read_manifest(tmp_path / "prt" / MANIFEST)
    changed = [
        relative
        for relative, entry in entries.items()
        if not np.array_equal(
            _pixels(mixed_tree / relative), _pixels(tmp_path / "prt" / entry["output"])
        )
    ]
    assert len(changed) >= 6  # the transformation really moved the images
    assert Image.open(tmp_path / "prt" / "ship" / "odd.png").size == (47, 33)  # no padding
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", RIT(None))  # no model needed
    assert back.ok and back.written == 8 and not back.approximate and not back.mismatched
    for relative, entry in entries.items():
        original, recovered = (
            Image.open(mixed_tree / relative),
            Image.open(tmp_path / "rec" / entry["output"]),
        )
        assert recovered.mode == original.mode, relative
        assert pixel_digest(recovered) == pixel_digest(original), relative


def test_rae_recovery_that_cannot_be_exact_is_reported_not_a_mismatch(
    model: Classifier, small_image_folder: Path, tmp_path: Path
) -> None:
    # At 32x32 an IGSM perturbation never fits the image's capacity: RAE stores a reduced one.
    rae = RAE(model, "igsm", FAST_IGSM)
    protect_tree(small_image_folder, tmp_path / "prt", rae, batch_size=16)
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", RAE(None))
    assert back.ok and back.written == 36 and not back.mismatched
    assert len(back.approximate) == 36
    entries = read_manifest(tmp_path / "prt" / MANIFEST)
    relative, entry = next(iter(entries.items()))
    original = _pixels(small_image_folder / relative)
    error_protected = np.abs(_pixels(tmp_path / "prt" / entry["output"]) - original).mean()
    error_recovered = np.abs(_pixels(tmp_path / "rec" / entry["output"]) - original).mean()
    assert error_recovered < error_protected  # the reduced perturbation still helps


def test_an_image_too_small_for_the_hidden_data_fails_alone(
    model: Classifier, small_image_folder: Path, tmp_path: Path
) -> None:
    Image.new("RGB", (2, 2), (90, 120, 200)).save(small_image_folder / "cat" / "tiny.png")
    report = protect_tree(small_image_folder, tmp_path / "prt", RIT(model, "igsm", FAST_IGSM), 64)
    assert report.written == 36
    assert [relative for relative, _ in report.failed] == ["cat/tiny.png"]
    assert "capacity" in report.failed[0][1] or "fit" in report.failed[0][1]


def test_loader_picks_each_kind(target_dir: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", generator={"levels": 2, "blocks_per_level": 1})
    raeg.save(tmp_path / "raeg")
    create_baseline("rit-igsm", None).save(tmp_path / "rit")
    assert isinstance(load_protector(tmp_path / "raeg"), RAEG)
    assert isinstance(load_protector(str(tmp_path / "rit")), RIT)
    protector = load_protector("rae-cw", targets=[target_dir])
    assert isinstance(protector, RAE) and protector.attack == "cw" and protector.model is not None
    assert load_protector("rae-igsm").model is None  # recovers without targets
    with pytest.raises(CheckpointError, match="neither a protector checkpoint nor a baseline"):
        load_protector("rae-fgsm")
    with pytest.raises(CheckpointError, match="is not a protector checkpoint"):
        load_protector(target_dir)  # a classifier is not a protector
    with pytest.raises(CheckpointError, match="cannot load the classifier"):
        load_protector("rit-igsm", targets=[tmp_path / "missing"])
    assert RAE(None).key_id == RAE(None, "cw").key_id  # needs no settings
    assert RAE(None).key_id != RIT(None).key_id


def test_cli_protects_and_recovers_with_a_baseline_name(
    target_dir: Path, small_image_folder: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    args = ["protect", str(small_image_folder), str(tmp_path / "prt"), "--protector", "rit-igsm"]
    refused = runner.invoke(app, [*args, "--device", "cpu"])
    assert refused.exit_code == 2 and "--targets" in refused.output
    done = runner.invoke(app, [*args, "--targets", str(target_dir), "--device", "cpu"])
    assert done.exit_code == 0, done.output
    back = runner.invoke(
        app, ["recover", str(tmp_path / "prt"), str(tmp_path / "rec"), "--protector", "rit-igsm"]
    )
    assert back.exit_code == 0, back.output
    assert '"mismatched": 0' in back.output and '"written": 36' in back.output
    for path in sorted(small_image_folder.rglob("*.jpg"))[:5]:
        relative = path.relative_to(small_image_folder).with_suffix(".png")
        assert pixel_digest(Image.open(tmp_path / "rec" / relative)) == pixel_digest(
            Image.open(path)
        )
