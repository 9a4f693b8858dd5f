"""``invprotect train-targets`` on a small real ImageFolder."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.targets import Classifier

runner = CliRunner()


def test_train_targets_writes_a_loadable_checkpoint(
    small_image_folder: Path, tmp_path: Path
) -> None:
    (small_image_folder / "cat" / "broken.png").write_bytes(b"")
    out = tmp_path / "target"
    args = ["train-targets", "--data", str(small_image_folder), "--arch", "mobilenet_small"]
    args += ["--out", str(out), "--epochs", "1", "--batch-size", "8", "--no-cache"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["arch"] == "mobilenet_small" and 0.0 <= summary["test_accuracy"] <= 1.0
    assert "broken.png" in result.output
    model = Classifier.load(out)
    assert model.classes == ["airplane", "cat", "ship"]
    assert model.metadata["test_accuracy"] == summary["test_accuracy"]
    assert len(model.metadata["data_fingerprint"]) == 64
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "already holds a trained classifier" in again.output


def test_train_targets_rejects_unknown_arch_and_bad_folder(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["train-targets", "--data", str(tmp_path), "--arch", "vgg", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "unknown architecture 'vgg'" in result.output
    result = runner.invoke(
        app,
        [
            *("train-targets", "--data", str(tmp_path / "nope"), "--arch", "vgg_small"),
            *("--out", str(tmp_path / "o"), "--no-cache"),
        ],
    )
    assert result.exit_code == 2 and "does not exist" in result.output
