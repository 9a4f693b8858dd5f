"""Checkpoints: safetensors + JSON, atomic, and pickles refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_keeps_tensors_and_config(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6.0).view(2, 3).t(), "b": torch.tensor([1, 2], dtype=torch.int64)}
    save_checkpoint(tmp_path / "ck", tensors, {"name": "x", "values": [1, 2]})
    loaded, config = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])
    assert config == {"name": "x", "values": [1, 2]}
    assert not list((tmp_path / "ck").glob("*.tmp"))


def test_pickle_files_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):  # runs on unpickling
            return (marker.write_text, ("pwned",))

    torch.save({"x": Exploit()}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="pickled PyTorch file"):
        load_checkpoint(tmp_path / "model.pt")
    (tmp_path / "ck").mkdir()
    torch.save({"x": Exploit()}, tmp_path / "ck" / "weights.safetensors")
    (tmp_path / "ck" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(tmp_path / "ck")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no checkpoint"),
        (lambda d: d.mkdir(), "weights.safetensors missing"),
        (lambda d: d.write_text("x"), "is a file"),
    ],
)
def test_missing_or_odd_checkpoints_are_clear_errors(tmp_path: Path, setup, message: str) -> None:
    setup(tmp_path / "ck")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "ck")
