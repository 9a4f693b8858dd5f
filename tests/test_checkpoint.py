"""Checkpoints: safetensors + JSON, atomic, and pickles refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.checkpoint import (
    CheckpointError,
    checkpoint_format,
    load_checkpoint,
    load_module,
    save_checkpoint,
)


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


def test_both_header_dialects_name_the_same_format() -> None:
    assert checkpoint_format({"format": "invprotect.raeg/1"}) == "invprotect.raeg/1"
    old = {"kind": "invprotect.defences.comdefend", "version": 1}
    assert checkpoint_format(old) == "invprotect.defences.comdefend/1"
    assert checkpoint_format({"kind": "classifier"}) == "classifier"
    assert checkpoint_format({}) is None


def test_load_module_names_the_mismatch(tmp_path: Path) -> None:
    module = torch.nn.Linear(2, 3)
    tensors = {name: torch.ones_like(t) for name, t in module.state_dict().items()}
    load_module(module, tensors, tmp_path, "the architecture")
    assert torch.equal(module.weight, torch.ones(3, 2))
    with pytest.raises(CheckpointError, match=r"a 2 -> 3 layer: size mismatch for bias"):
        load_module(module, {**tensors, "bias": torch.ones(4)}, tmp_path, "a 2 -> 3 layer")
    with pytest.raises(CheckpointError, match="Missing key"):
        load_module(module, {"weight": tensors["weight"]}, tmp_path, "the architecture")
