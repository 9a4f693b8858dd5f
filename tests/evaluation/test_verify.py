"""``invprotect verify`` end to end on a tiny real folder, and its figures checked directly."""

from __future__ import annotations

import doctest
import importlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.data import scan_image_folder
from invprotect.defences import create_defence_from_spec, sample_generators
from invprotect.evaluation import (
    DEFAULT_DEFENCE_SPECS,
    VerifyConfig,
    VerifyReport,
    choose_files,
    default_defences,
    image_grid,
    split_defence_specs,
    verify,
)
from invprotect.files.images import read_rgb
from invprotect.models import RAEG
from invprotect.targets import Classifier
from tests.contracts import train_away_from_identity

CLASSES = ["airplane", "cat", "ship"]
REPORT_KEYS = (
    *("images", "A_ori", "A_prt", "A_rev", "P_prt", "S_prt", "P_rev", "S_rev", "exact_rate"),
    *("defences", "data", "targets", "unseen", "classes", "files", "failed", "protector"),
    *("config", "wall_seconds"),
)
runner = CliRunner()


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, cifar10_root: Path) -> dict[str, Path]:
    """A 3-class ImageFolder (6 test images a class), a non-identity protector, 3 classifiers."""
    root = tmp_path_factory.mktemp("verify")
    data = root / "data"
    for split, count in (("train", 2), ("test", 6)):
        for name in CLASSES:
            (data / split / name).mkdir(parents=True)
            for source in sorted((cifar10_root / split / name).glob("*.jpg"))[:count]:
                shutil.copy(source, data / split / name / source.name)
    torch.manual_seed(0)
    generator = {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}
    raeg = RAEG.from_preset("cpu-32", generator=generator)
    train_away_from_identity(  # about 29 dB
        raeg.generator,
        lambda: torch.rand(4, 3, 32, 32),
        lr=1e-2,
        forward=raeg.generate,
        target=lambda x: x + 0.05 * torch.sin(20 * x),
    )
    raeg.eval().save(root / "key")
    paths = {"data": data, "key": root / "key", "root": root}
    files = sorted(data.rglob("*.jpg"))
    images = torch.stack([read_rgb(path) for path in files]).float() / 255
    labels = torch.tensor([CLASSES.index(path.parent.name) for path in files])
    for seed, name in enumerate(("alpha", "beta", "gamma")):
        _partly_fitted(seed, images, labels).save(root / name)
        paths[name] = root / name
    return paths


def _partly_fitted(seed: int, images: torch.Tensor, labels: torch.Tensor) -> Classifier:
    """A few Adam steps: predictions that depend on the image (untrained nets predict one class)."""
    torch.manual_seed(seed)
    model = Classifier("resnet_small", CLASSES)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


@pytest.fixture(scope="module")
def verified(setting: dict[str, Path]) -> tuple[Path, str]:
    out = setting["root"] / "report"
    args = ["verify", "--data", str(setting["data"]), "--protector", str(setting["key"])]
    args += ["--targets", str(setting["alpha"]), "--targets", str(setting["beta"])]
    args += ["--unseen", str(setting["gamma"]), "--out", str(out), "--limit", "6"]
    args += ["--defences", "jpeg:quality=50,grayscale", "--batch-size", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, result.output


def _classify(path: Path, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return Classifier.load(path)(images).argmax(1)


def test_cli_writes_every_report_file(verified: tuple[Path, str]) -> None:
    out, output = verified
    report = json.loads((out / "report.json").read_text())
    assert list(report) == [*REPORT_KEYS]  # the keys and order of every earlier report.json
    figures = ["images", "protected", "clean", "recovered_psnr"]
    assert list(report["defences"]["grayscale"]) == figures
    assert report["images"] == 6 and report["exact_rate"] == 1.0
    assert report["targets"] == ["alpha", "beta"] and report["unseen"] == ["gamma"]
    for key in ("A_ori", "A_prt", "A_rev"):
        assert set(report[key]) == {"alpha", "beta", "gamma"}
    assert report["A_rev"] == report["A_ori"]  # bit-exact recovery
    assert 20 < report["P_prt"] < 60 and report["P_rev"] == 100.0 and 0 < report["S_prt"] < 1
    assert list(report["defences"]) == ["jpeg:quality=50", "grayscale"]
    for result in report["defences"].values():
        assert result["images"] == 6 and set(result["clean"]) == {"alpha", "beta", "gamma"}
        assert 5 < result["recovered_psnr"] < 100
    # class-balanced: 2 files of each class
    assert Counter(Path(f).parts[0] for f in report["files"]) == dict.fromkeys(CLASSES, 2)
    markdown = (out / "report.md").read_text()
    assert "| jpeg:quality=50 | 6 |" in markdown and "alpha protected" in markdown
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "grayscale" in page
    assert Image.open(out / "grid.png").size == (6 * 32 * 3, 5 * 32 * 3)
    assert Image.open(out / "accuracy.png").format == "PNG"
    assert "gamma (unseen)" in output and json.loads(output.strip().splitlines()[-1])["images"] == 6


def test_accuracy_under_a_defence_equals_a_direct_measurement(
    verified: tuple[Path, str], setting: dict[str, Path]
) -> None:
    out, _ = verified
    report = json.loads((out / "report.json").read_text())
    files = sorted((out / "files" / "protected").rglob("*.png"))
    labels = torch.tensor([CLASSES.index(path.parent.name) for path in files])
    protected = torch.stack([read_rgb(path) for path in files]).float() / 255
    originals = torch.stack(
        [read_rgb(out / "files" / "originals" / f) for f in sorted(report["files"])]
    )
    attacked = create_defence_from_spec("jpeg:quality=50")(protected)
    cleaned = create_defence_from_spec("jpeg:quality=50")(originals.float() / 255)
    for name in ("alpha", "beta", "gamma"):
        found = _classify(setting[name], attacked)
        assert len(set(found.tolist())) > 1, f"{name} predicts one class: the check is weak"
        expected = (found == labels).float().mean().item()
        assert report["defences"]["jpeg:quality=50"]["protected"][name] == pytest.approx(expected)
        clean = (_classify(setting[name], cleaned) == labels).float().mean().item()
        assert report["defences"]["jpeg:quality=50"]["clean"][name] == pytest.approx(clean)
        direct = (_classify(setting[name], protected) == labels).float().mean().item()
        assert report["A_prt"][name] == pytest.approx(direct)


def test_library_limits_the_slow_defence_and_seeds_noise(setting: dict[str, Path]) -> None:
    out = setting["root"] / "library"
    gamma = Classifier.load(setting["gamma"])
    specs = ("dipdefend:max_iterations=2,channels=4", "gaussian_noise:sigma=8")
    config = VerifyConfig(limit=4, batch_size=3, defences=specs, dip_limit=2, seed=5)
    stages: set[str] = set()
    report = verify(
        setting["data"],
        RAEG.load(setting["key"]),
        {"gamma": gamma},
        {},
        out,
        config,
        lambda stage, done, total: stages.add(stage),
    )
    assert stages == {"protect", "recover", "measure", *specs}
    assert report.defences[specs[0]].images == 2
    assert report.defences[specs[1]].images == 4
    relatives = [Path(f).with_suffix(".png").as_posix() for f in report.files]
    protected = torch.stack([read_rgb(out / "files" / "protected" / r) for r in relatives])
    noise = create_defence_from_spec(specs[1])
    noisy = noise(protected.float() / 255, sample_generators(5, relatives))
    labels = torch.tensor([CLASSES.index(Path(r).parts[0]) for r in relatives])
    expected = (_classify(setting["gamma"], noisy) == labels).float().mean().item()
    assert report.defences[specs[1]].protected["gamma"] == pytest.approx(expected)
    assert VerifyReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    with pytest.raises(ValueError, match="earlier run"):
        verify(setting["data"], RAEG.load(setting["key"]), {"gamma": gamma}, {}, out, config)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--targets": "missing"}, "cannot load the classifier"),
        ({"--protector": "missing"}, "cannot load the protector"),
        ({"--data": "missing"}, "is not a folder"),
        ({"--targets": "other"}, "classes"),
        ({"--defences": "jpg:quality=50"}, "jpeg"),
    ],
)
def test_bad_inputs_are_clear_errors(
    setting: dict[str, Path], tmp_path: Path, change: dict[str, str], message: str
) -> None:
    other = tmp_path / "other"
    Classifier("mobilenet_small", ["a", "b", "c"]).save(other)
    options = {
        "--data": str(setting["data"]),
        "--protector": str(setting["key"]),
        "--targets": str(setting["alpha"]),
        "--out": str(tmp_path / "out"),
        "--defences": "grayscale",
    }
    for key, value in change.items():
        options[key] = str(other if value == "other" else tmp_path / value)
        if key == "--defences":
            options[key] = value
    result = runner.invoke(app, ["verify", *(item for pair in options.items() for item in pair)])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert not (tmp_path / "out" / "files").exists()


def test_defence_lists_and_the_balanced_choice(cifar10_root: Path) -> None:
    assert split_defence_specs("all") == DEFAULT_DEFENCE_SPECS
    assert split_defence_specs("resize:scale=0.5,interpolation=bicubic, grayscale") == (
        "resize:scale=0.5,interpolation=bicubic",
        "grayscale",
    )
    assert split_defence_specs("grayscale", comdefend="w") == ("grayscale", "comdefend:weights=w")
    assert default_defences("w").index("comdefend:weights=w") == len(DEFAULT_DEFENCE_SPECS) - 1
    with pytest.raises(ValueError, match="no defence before it"):
        split_defence_specs("quality=50,jpeg")
    index = scan_image_folder(cifar10_root / "test")
    chosen = choose_files(index, 25, seed=1)
    counts = Counter(label for _, label in chosen)
    assert len(counts) == 10 and set(counts.values()) == {2, 3}
    assert Counter(label for _, label in chosen[:10]) == dict.fromkeys(range(10), 1)
    assert chosen == choose_files(index, 25, seed=1) != choose_files(index, 25, seed=2)
    assert image_grid([torch.zeros(2, 3, 32, 32)] * 3).size == (192, 288)


@pytest.mark.parametrize("module_name", ["invprotect.evaluation.verify", "invprotect.pictures"])
def test_docstring_examples_run(module_name: str) -> None:
    result = doctest.testmod(importlib.import_module(module_name), verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_a_second_run_into_the_same_out_is_refused(
    verified: tuple[Path, str], setting: dict[str, Path]
) -> None:
    out, _ = verified
    args = ["verify", "--data", str(setting["data"]), "--protector", str(setting["key"])]
    args += ["--targets", str(setting["alpha"]), "--out", str(out), "--defences", "grayscale"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "earlier run" in result.output
    (out / "files" / "notes.txt").write_text("mine")
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 2 and "delete it yourself" in result.output
    assert (out / "files" / "notes.txt").is_file()
    (out / "files" / "notes.txt").unlink()


def test_cli_verifies_a_baseline_by_name(setting: dict[str, Path]) -> None:
    out = setting["root"] / "baseline"
    args = ["verify", "--data", str(setting["data"]), "--protector", "rit-igsm"]
    args += ["--targets", str(setting["alpha"]), "--out", str(out), "--limit", "3"]
    args += ["--defences", "jpeg:quality=50", "--batch-size", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["protector"]["kind"] == "rit" and report["protector"]["spec"] == "rit-igsm"
    assert report["exact_rate"] == 1.0 and report["A_rev"] == report["A_ori"]
    assert report["P_prt"] < 100 and list(report["defences"]) == ["jpeg:quality=50"]
    assert "- protector: rit" in (out / "report.md").read_text()
    assert (out / "report.html").is_file() and (out / "grid.png").is_file()


def test_a_file_that_is_no_verify_report_is_refused_with_what_it_lacks() -> None:
    with pytest.raises(ValueError, match="not a verify report: no A_ori, A_prt, A_rev, P_prt"):
        VerifyReport.from_dict({"images": 3, "exact_rate": 1.0})
