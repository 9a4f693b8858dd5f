"""``invprotect pirate`` on a small real ImageFolder, and its refusals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from invprotect.cli import app

runner = CliRunner()


@pytest.fixture
def split(small_image_folder: Path, tmp_path: Path) -> dict[str, Path]:
    """``train/`` (8 images a class) and ``test/`` (4 a class) cut from the shared folder."""
    roots = {"train": tmp_path / "train", "test": tmp_path / "test"}
    for folder in sorted(small_image_folder.iterdir()):
        for i, image in enumerate(sorted(folder.iterdir())):
            target = roots["train" if i < 8 else "test"] / folder.name
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / image.name)
    return roots


def pirate(split: dict[str, Path], *extra: str) -> list[str]:
    # One thread: the tests share a busy machine, and the runner runs in this process.
    train, test = str(split["train"]), str(split["test"])
    return ["pirate", "--threads", "1", "--train", train, "--test", test, *extra]


def test_a_pirate_run_prints_and_writes_its_report(split: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["--defence", "bit_depth:bits=2", "--arch", "mobilenet_small", "--epochs", "2"]
    args += ["--out", str(out), "--size", "16", "--batch-size", "12", "--no-cache"]
    result = runner.invoke(app, pirate(split, *args))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    report = json.loads((out / "pirate.json").read_text())
    assert summary == {
        "defence": "bit_depth:bits=2",
        "arch": "mobilenet_small",
        "final_accuracy": report["accuracy"][1],
        "peak_accuracy": max(report["accuracy"]),
        "peak_epoch": report["peak_epoch"],
        "out": str(out),
    }
    assert report["train_images"] == 24 and report["test_images"] == 12
    assert "epoch 2: clean-test accuracy" in result.output
    assert (out / "accuracy.png").stat().st_size > 1000


def test_learned_inverse_trains_on_the_leaked_originals(
    split: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["-d", "learned-inverse:max_steps=2,width=4", "--leaked-originals", str(split["train"])]
    args += ["--leaked-count", "6", "--arch", "mobilenet_small", "--epochs", "1", "--size", "16"]
    result = runner.invoke(app, pirate(split, *args, "--out", str(out), "--no-cache"))
    assert result.exit_code == 0, result.output
    report = json.loads((out / "pirate.json").read_text())
    assert report["learned_inverse"]["pairs"] == 6 and report["learned_inverse"]["steps"] == 2
    assert report["learned_inverse"]["heldout_pairs"] == 18


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--test", "MISSING"], "test folder .* does not exist"),
        (["-d", "jpg:quality=10"], "unknown defence 'jpg'; did you mean 'jpeg'"),
        (["-d", "jpeg:quality=500"], "JPEG quality must be in 1..100"),
        (["-d", "jpeg:quality"], "is not key=value"),
        (["-d", "comdefend"], "needs trained weights"),
        (["-d", "learned-inverse"], "needs them"),
        (["--arch", "resnet"], "unknown architecture 'resnet'"),
        (["--test", "OTHER"], "has classes \\['dog'\\] but the training folder has"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(
    split: dict[str, Path], tmp_path: Path, change: list[str], message: str
) -> None:
    other = tmp_path / "other" / "dog"
    other.mkdir(parents=True)
    shutil.copy(next((split["test"] / "cat").iterdir()), other / "a.jpg")
    places = {"MISSING": str(tmp_path / "missing"), "OTHER": str(other.parent)}
    change = [places.get(item, item) for item in change]
    if change[0] == "--test":
        args = ["pirate", "--threads", "1", "--train", str(split["train"]), *change]
    else:
        args = [*pirate(split), *change]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out"), "--no-cache"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    assert not (tmp_path / "out" / "pirate.json").exists()
