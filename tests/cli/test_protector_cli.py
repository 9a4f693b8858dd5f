"""``invprotect train``, ``protect`` and ``recover`` end to end on a small real folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.files.images import pixel_digest
from invprotect.models import RAEG

runner = CliRunner()


def _json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_train_protect_recover(small_image_folder: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    result = runner.invoke(
        app,
        [
            *("train-targets", "--data", str(small_image_folder), "--arch", "mobilenet_small"),
            *("--out", str(target), "--epochs", "1", "--batch-size", "8", "--no-cache"),
        ],
    )
    assert result.exit_code == 0, result.output
    key = tmp_path / "key"
    train_args = [
        *("train", "--data", str(small_image_folder), "--targets", str(target)),
        *("--out", str(key), "--steps", "3", "--batch-size", "4"),
    ]
    refused = runner.invoke(app, [*train_args, "--attacks", "identity=1,jpg=2"])
    assert refused.exit_code != 0 and "jpg" in refused.output and not key.exists()
    refused = runner.invoke(app, [*train_args, "--perceptual", str(tmp_path / "nothing")])
    assert refused.exit_code != 0 and "perceptual" in refused.output and not key.exists()
    refused = runner.invoke(app, [*train_args, "--recipe", "wide-margin"])
    assert refused.exit_code != 0 and "wide-margin-squeeze" in refused.output
    assert not key.exists()
    result = runner.invoke(
        app,
        [
            *train_args, "--attacks", "identity=1,jpeg_ss=1", "--perceptual", str(target),
            *("--recipe", "wide-margin-squeeze"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert _json(result.stdout)["train_psnr"] > 10
    assert RAEG.load(key).metadata["classes"] == ["airplane", "cat", "ship"]
    assert RAEG.load(key).metadata["attacks"] == {"identity": 1.0, "jpeg_ss": 1.0}
    recipe = {"fooling": "margin", "margin": 20.0, "smoothness": 0.02}
    assert RAEG.load(key).metadata["recipe"] == recipe
    assert RAEG.load(key).metadata["perceptual"] == str(target)

    (small_image_folder / "cat" / "broken.png").write_bytes(b"")
    protected = tmp_path / "protected"
    result = runner.invoke(
        app, ["protect", str(small_image_folder), str(protected), "--protector", str(key)]
    )
    assert result.exit_code == 1  # the broken file
    assert "broken.png" in result.output and _json(result.stdout)["written"] == 36
    again = runner.invoke(
        app, ["protect", str(small_image_folder), str(protected), "--protector", str(key)]
    )
    assert _json(again.stdout)["skipped"] == 36

    recovered = tmp_path / "recovered"
    result = runner.invoke(
        app, ["recover", str(protected), str(recovered), "--protector", str(key)]
    )
    assert result.exit_code == 0, result.output
    for original in sorted(small_image_folder.rglob("*.jpg")):
        relative = original.relative_to(small_image_folder).with_suffix(".png")
        assert pixel_digest(Image.open(recovered / relative)) == pixel_digest(Image.open(original))

    first = next(iter(sorted(protected.rglob("*.png"))))
    pixels = np.asarray(Image.open(first)).copy()
    pixels[0, 0, 0] ^= 4
    Image.fromarray(pixels).save(first)
    result = runner.invoke(
        app, ["recover", str(protected), str(tmp_path / "again"), "--protector", str(key)]
    )
    assert result.exit_code == 1 and "altered" in result.output and "mismatch" in result.output


def test_bad_protector_and_bad_paths_are_clear_errors(
    small_image_folder: Path, tmp_path: Path
) -> None:
    (tmp_path / "model.pt").write_bytes(b"\x80\x04not really")
    result = runner.invoke(
        app,
        [
            "protect",
            str(small_image_folder),
            str(tmp_path / "o"),
            "--protector",
            str(tmp_path / "model.pt"),
        ],
    )
    assert result.exit_code == 2 and "never unpickles" in result.output
