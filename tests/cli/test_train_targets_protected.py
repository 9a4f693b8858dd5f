"""``invprotect train-targets --protector``: train on a protected folder, originals in memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.files.protect import protect_tree
from invprotect.models import RAEG
from invprotect.targets import Classifier
from tests.contracts import tiny_raeg

runner = CliRunner()


@pytest.fixture
def key_and_folder(small_image_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    raeg = tiny_raeg(0)
    key = raeg.save(tmp_path / "key")
    assert protect_tree(small_image_folder, tmp_path / "protected", raeg).ok
    return key, tmp_path / "protected"


def _train(data: Path, out: Path, *extra: str) -> Classifier:
    args = ["train-targets", "--data", str(data), "--arch", "convnet_small", "--out", str(out)]
    args += ["--epochs", "1", "--batch-size", "8", "--no-cache", "--device", "cpu", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["arch"] == "convnet_small"
    return Classifier.load(out)


def test_trains_on_the_recovered_originals_and_writes_none(
    small_image_folder: Path, key_and_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    key, protected = key_and_folder
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    model = _train(protected, tmp_path / "from-protected", "--protector", str(key))
    written = sorted(set(p for p in tmp_path.rglob("*") if p.is_file()) - set(before))
    assert all(p.is_relative_to(tmp_path / "from-protected") for p in written)
    assert not [p for p in written if p.suffix in (".png", ".jpg")]
    # The same pixels, split and order as training on the originals: the same model.
    reference = _train(small_image_folder, tmp_path / "from-originals")
    assert model.metadata["data_fingerprint"] == reference.metadata["data_fingerprint"]
    assert model.metadata["protector_key_id"] == RAEG.load(key).key_id
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_refuses_a_cache_and_names_an_altered_file(
    key_and_folder: tuple[Path, Path], tmp_path: Path
) -> None:
    key, protected = key_and_folder
    base = ["train-targets", "--data", str(protected), "--arch", "convnet_small"]
    base += ["--out", str(tmp_path / "out"), "--protector", str(key)]
    result = runner.invoke(app, [*base, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "--cache-dir would write" in result.output
    victim = sorted((protected / "cat").iterdir())[2]
    Image.open(victim).save(victim)  # saved again by PIL: the same pixels, the record lost
    result = runner.invoke(app, [*base, "--no-cache"])
    assert result.exit_code == 2, result.output
    assert victim.name in result.output and "has no recovery record" in result.output
    assert not (tmp_path / "out" / "config.json").exists()
    result = runner.invoke(app, [*base[:-1], str(tmp_path / "nothing"), "--no-cache"])
    assert result.exit_code == 2 and "cannot load the protector" in result.output
