"""``invprotect demo`` end to end at a tiny size on the real CIFAR-10 files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from invprotect.cli import app
from invprotect.models import RAEG


@pytest.mark.slow
def test_demo_runs_end_to_end_at_a_tiny_size(cifar10_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--data", str(cifar10_root), "--out", str(out), "--train-images", "200"]
    args += ["--target-epochs", "1", "--steps", "2", "--test-per-class", "1", "--no-cache"]
    result = CliRunner().invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["images"] == 10 and report["exact_recovery_rate"] == 1.0
    for key in ("A_ori", "A_prt", "A_rev"):
        assert set(report[key]) == {"resnet_small", "convnet_small"}
    assert 10 < report["P_prt"] < 100 and 0 < report["S_prt"] <= 1
    assert Image.open(out / "grid.png").size == (8 * 32 * 3, 4 * 32 * 3)
    assert isinstance(RAEG.load(out / "protector"), RAEG)
    stages = {"decoding", "target resnet_small", "target convnet_small", "protector"}
    assert stages | {"protect and recover", "total"} == set(report["seconds"])
    # stderr is no terminal here: progress comes as plain lines, as it would in a log file
    log = result.stderr
    assert "with 1 CPU threads" in log
    assert "decoding: 200/200 (100%)" in log
    assert "target convnet_small: 1/1 (100%)" in log and "| epoch 1/1 loss" in log
    assert "protector: 2/2 (100%)" in log and "fooled" in log
    assert "protecting: 10/10 (100%)" in log and "recovering: 10/10 (100%)" in log
