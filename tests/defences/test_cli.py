"""``invprotect purify`` and ``invprotect train-defence`` on a small real ImageFolder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli.app import app
from invprotect.defences import JPEG, ComDefend, GaussianNoise, sample_generators
from invprotect.files.images import read_rgb
from invprotect.files.manifest import MANIFEST, read_manifest

runner = CliRunner()


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def summary(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture
def folder(small_image_folder: Path) -> Path:
    """36 real CIFAR-10 JPEGs in 3 classes, a nested sub-folder, and one broken file."""
    (small_image_folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    nested = small_image_folder / "ship" / "more"
    nested.mkdir()
    first = sorted((small_image_folder / "ship").glob("*.jpg"))[0]
    (nested / "copy.jpg").write_bytes(first.read_bytes())
    return small_image_folder


def test_purify_writes_pngs_reports_bad_files_and_resumes(folder: Path, tmp_path: Path) -> None:
    before = tree_digest(folder)
    dst = tmp_path / "purified"
    args = ["purify", str(folder), str(dst), "--defence", "jpeg:quality=50", "--batch-size", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # one bad file: reported, the run goes on
    assert "broken.png" in result.output
    assert summary(result.stdout) == {
        "defence": "jpeg:quality=50",
        "written": 37,
        "skipped_existing": 0,
        "failed": 1,
        "dst": str(dst),
    }
    assert tree_digest(folder) == before  # SRC untouched
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.png"))
    assert (
        len(outputs) == 37 and "ship/more/copy.png" in outputs and "cat/broken.png" not in outputs
    )
    assert not list(dst.rglob("*.tmp"))
    # Each output is exactly the defence applied to the source, stored losslessly.
    source = sorted((folder / "cat").glob("*.jpg"))[3]
    expected = JPEG(50)(read_rgb(source)[None].float() / 255)[0]
    written = read_rgb(dst / "cat" / f"{source.stem}.png").float() / 255
    assert torch.equal(written, expected)
    with Image.open(dst / "cat" / f"{source.stem}.png") as image:
        assert image.mode == "RGB" and image.format == "PNG"

    # Rerun: finished outputs are skipped (not rewritten), the bad file is reported again.
    removed = dst / outputs[0]  # as if the first run had been interrupted before it
    removed.unlink()
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*.png")}
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert summary(again.stdout)["written"] == 1 and removed.is_file()
    assert summary(again.stdout)["skipped_existing"] == 36
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())

    # Other settings into the same DST are refused unless --overwrite.
    other = runner.invoke(app, ["purify", str(folder), str(dst), "--defence", "jpeg:quality=90"])
    assert other.exit_code == 2 and "different settings" in other.output
    forced = runner.invoke(
        app, ["purify", str(folder), str(dst), "--defence", "jpeg:quality=90", "--overwrite"]
    )
    assert forced.exit_code == 1 and summary(forced.stdout)["written"] == 37
    entries = read_manifest(dst / MANIFEST)
    assert len(entries) == 37 and {e["settings"] for e in entries.values()} == {"jpeg:quality=90"}
    assert tree_digest(folder) == before


def test_purify_refuses_dst_inside_or_equal_to_src(folder: Path) -> None:
    before = tree_digest(folder)
    for dst in (folder, folder / "out", folder / "cat"):
        result = runner.invoke(app, ["purify", str(folder), str(dst), "--defence", "grayscale"])
        assert result.exit_code == 2 and "overlap" in result.output
    result = runner.invoke(
        app, ["purify", str(folder / "cat"), str(folder.parent), "-d", "grayscale"]
    )
    assert result.exit_code == 2 and "overlap" in result.output
    assert tree_digest(folder) == before
    # One file: its output may sit beside it, but never replace it.
    png = folder / "cat" / "original.png"
    Image.open(sorted((folder / "cat").glob("*.jpg"))[0]).save(png)
    before = tree_digest(folder)
    result = runner.invoke(app, ["purify", str(png), str(folder / "cat"), "-d", "grayscale"])
    assert result.exit_code == 2 and "would replace SRC" in result.output
    assert tree_digest(folder) == before
    jpg = sorted((folder / "cat").glob("*.jpg"))[1]
    result = runner.invoke(app, ["purify", str(jpg), str(folder / "cat"), "-d", "grayscale"])
    assert result.exit_code == 0 and (folder / "cat" / f"{jpg.stem}.png").is_file()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpg:quality=50", "did you mean 'jpeg'"),
        ("jpeg:quality=500", "quality must be in 1..100"),
        ("jpeg:quality=50,foo=1", "takes no parameter 'foo'"),
        ("median_filter:kernel_size=4", "positive odd integer"),
        ("comdefend", "needs trained weights"),
        ("jpeg:quality", "is not key=value"),
    ],
)
def test_purify_bad_defence_specs(spec: str, message: str, folder: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["purify", str(folder), str(tmp_path / "o"), "--defence", spec])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()


def test_purify_a_single_file_and_a_missing_source(folder: Path, tmp_path: Path) -> None:
    source = sorted((folder / "cat").glob("*.jpg"))[0]
    result = runner.invoke(
        app, ["purify", str(source), str(tmp_path / "one.png"), "-d", "bit_depth:bits=2"]
    )
    assert result.exit_code == 0, result.output
    assert set(read_rgb(tmp_path / "one.png").unique().tolist()) <= {0, 85, 170, 255}
    result = runner.invoke(app, ["purify", str(source), str(tmp_path / "dir"), "-d", "grayscale"])
    assert result.exit_code == 0 and (tmp_path / "dir" / f"{source.stem}.png").is_file()
    result = runner.invoke(
        app, ["purify", str(tmp_path / "nope"), str(tmp_path / "x"), "-d", "grayscale"]
    )
    assert result.exit_code == 2 and "does not exist" in result.output


def test_random_defences_give_the_same_images_whatever_the_batching(
    folder: Path, tmp_path: Path
) -> None:
    spec = "gaussian_noise:sigma=10"
    for batch, out in (("64", "a"), ("3", "b")):
        args = [
            "purify",
            str(folder / "ship"),
            str(tmp_path / out),
            "-d",
            spec,
            "--batch-size",
            batch,
        ]
        assert runner.invoke(app, [*args, "--seed", "7"]).exit_code == 0
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    # ... and each image's noise comes from the seed and its relative path.
    source = sorted((folder / "ship").glob("*.jpg"))[0]
    x = read_rgb(source)[None].float() / 255
    expected = GaussianNoise(sigma=10)(x, sample_generators(7, [source.name]))
    assert torch.equal(
        read_rgb(tmp_path / "a" / f"{source.stem}.png").float()[None] / 255, expected
    )
    again = runner.invoke(
        app, ["purify", str(folder / "ship"), str(tmp_path / "a"), "-d", spec, "--seed", "8"]
    )
    assert again.exit_code == 2 and "different settings" in again.output


def test_train_defence_then_purify_with_the_checkpoint(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "comdefend"
    args = ["train-defence", "comdefend", "--data", str(folder), "--out", str(out)]
    args += ["--epochs", "2", "--batch-size", "8", "--no-cache", "--threads", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    info = summary(result.stdout)
    assert info["defence"] == "comdefend" and np.isfinite(info["test_psnr"])
    assert "test PSNR" in result.output and "broken.png" in result.output
    model = ComDefend.load(out)
    assert model.metrics["test_psnr"] == info["test_psnr"] and model.metrics["size"] == 32
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds a checkpoint" in again.output

    dst = tmp_path / "purified"
    result = runner.invoke(
        app, ["purify", str(folder / "cat"), str(dst), "-d", f"comdefend:weights={out}"]
    )
    assert result.exit_code == 1 and summary(result.stdout)["written"] == 12


def test_train_defence_errors(folder: Path, tmp_path: Path) -> None:
    base = ["--data", str(folder), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, ["train-defence", "jpeg", *base])
    assert result.exit_code == 2 and "not a trainable defence" in result.output
    result = runner.invoke(app, ["train-defence", "comdefend", *base, "--size", "31"])
    assert result.exit_code == 2 and "multiple of 2" in result.output
    result = runner.invoke(
        app,
        [
            "train-defence",
            "comdefend",
            "--data",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 2 and "does not exist" in result.output
