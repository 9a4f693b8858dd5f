"""``invprotect protect --poison-steps`` on a real folder: poisoned files recover bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.files.images import pixel_digest
from invprotect.targets import Classifier
from tests.contracts import tiny_raeg

runner = CliRunner()
TARGET = Path(__file__).parents[2] / "benchmarks" / "reference" / "cifar10-h200" / "resnet_small"
"""A committed CIFAR-10 target: the poison needs a classifier whose output depends on its input."""


def _summary(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_poisoned_folder_recovers_and_names_what_it_cannot_poison(
    small_image_folder: Path, tmp_path: Path
) -> None:
    key = tiny_raeg(0).save(tmp_path / "key")
    photo = np.asarray(Image.open(next((small_image_folder / "cat").glob("*.jpg"))))
    Image.fromarray(photo).resize((64, 64)).save(small_image_folder / "cat" / "large.png")
    protect = ["protect", str(small_image_folder), str(tmp_path / "plain"), "--protector", str(key)]
    assert runner.invoke(app, protect).exit_code == 0
    refused = runner.invoke(
        app, [*protect[:2], str(tmp_path / "p"), *protect[3:], "--poison-steps", "3"]
    )
    assert refused.exit_code == 2 and "pass them with --targets" in refused.output

    poisoned = tmp_path / "poisoned"
    result = runner.invoke(
        app,
        [
            *("protect", str(small_image_folder), str(poisoned), "--protector", str(key)),
            *("--targets", str(TARGET), "--poison-steps", "6"),
        ],
    )
    assert result.exit_code == 1, result.output  # the 64x64 image is named, the rest written
    assert "large.png" in result.output and "32x32" in result.output
    assert _summary(result.stdout)["written"] == 36
    assert "weaker" not in result.output  # every class folder is one the target knows
    name = Path("airplane") / sorted(p.name for p in (small_image_folder / "airplane").iterdir())[0]
    plain = np.asarray(Image.open(tmp_path / "plain" / name.with_suffix(".png")))
    changed = np.asarray(Image.open(poisoned / name.with_suffix(".png")))
    assert (plain != changed).mean() > 0.3  # the poison changed the network's image
    target = Classifier.load(TARGET)
    hits = {}
    for tree in (tmp_path / "plain", poisoned):  # each file pushed from its folder's class
        count = 0
        for folder in ("airplane", "cat", "ship"):
            files = sorted((tree / folder).glob("[!l]*.png"))  # not large.png
            pixels = np.stack([np.asarray(Image.open(file)) for file in files])
            with torch.no_grad():
                seen = target(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
            following = (target.classes.index(folder) + 1) % len(target.classes)
            count += int((seen.argmax(1) == following).sum())
        hits[tree.name] = count / 36
    assert hits["poisoned"] >= 0.5 and hits["poisoned"] >= hits["plain"] + 0.3, hits

    recovered = tmp_path / "recovered"
    result = runner.invoke(app, ["recover", str(poisoned), str(recovered), "--protector", str(key)])
    assert result.exit_code == 0, result.output
    for original in sorted(small_image_folder.rglob("*.jpg")):
        relative = original.relative_to(small_image_folder).with_suffix(".png")
        assert pixel_digest(Image.open(recovered / relative)) == pixel_digest(Image.open(original))


def test_poison_warns_of_images_without_a_class_folder_the_targets_know(
    small_image_folder: Path, tmp_path: Path
) -> None:
    key = tiny_raeg(0).save(tmp_path / "key")
    zoo = tmp_path / "zoo"
    (zoo / "zebra").mkdir(parents=True)
    photo = next((small_image_folder / "cat").glob("*.jpg"))
    (zoo / "zebra" / photo.name).write_bytes(photo.read_bytes())
    poison = ("--protector", str(key), "--targets", str(TARGET), "--poison-steps", "1")
    result = runner.invoke(app, ["protect", str(zoo), str(tmp_path / "out"), *poison])
    assert result.exit_code == 0, result.output
    assert "class folders the --targets do not know (zebra)" in result.output
    assert "airplane, automobile" in result.output  # what the targets know
    single = runner.invoke(app, ["protect", str(photo), str(tmp_path / "one"), *poison])
    assert single.exit_code == 0, single.output
    assert "SRC has no class folders" in single.output


def test_poison_psnr_bounds_each_file_and_recovers(
    small_image_folder: Path, tmp_path: Path
) -> None:
    key = tiny_raeg(0).save(tmp_path / "key")
    poison = ("--protector", str(key), "--targets", str(TARGET), "--poison-steps", "3")
    src = small_image_folder / "cat"
    bad = runner.invoke(
        app, ["protect", str(src), str(tmp_path / "x"), *poison, "--poison-psnr", "5"]
    )
    assert bad.exit_code == 2 and "--poison-psnr" in bad.output
    through = ("--poison-through", "median_filter")
    bad = runner.invoke(app, ["protect", str(src), str(tmp_path / "x"), *poison, *through])
    assert bad.exit_code == 2 and "cannot see through 'median_filter'" in bad.output
    assert not (tmp_path / "x").exists()  # refused before anything was written
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", str(src), str(out), *poison, "--poison-psnr", "31"])
    assert result.exit_code == 0, result.output
    rms_bound = 255 * 10 ** (-31 / 20) + 0.5  # the budget, plus rounding's half level
    moved_far = False
    for original in sorted(src.glob("*.jpg")):
        before = np.asarray(Image.open(original)).astype(float)
        after = np.asarray(Image.open(out / original.with_suffix(".png").name)).astype(float)
        change = after - before
        assert np.sqrt(np.mean(change**2)) <= rms_bound and np.abs(change).max() <= 24
        moved_far |= bool((np.abs(change) > 8).any())
    assert moved_far  # some values moved past the L-inf poison's 8 levels
    recovered = tmp_path / "recovered"
    result = runner.invoke(app, ["recover", str(out), str(recovered), "--protector", str(key)])
    assert result.exit_code == 0, result.output
    for original in sorted(src.glob("*.jpg")):
        again = Image.open(recovered / original.with_suffix(".png").name)
        assert pixel_digest(again) == pixel_digest(Image.open(original))
