"""ComDefend: training helps, checkpoints round-trip, and no weights is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from invprotect.checkpoint import CheckpointError, save_checkpoint
from invprotect.data import ImageSet
from invprotect.defences import (
    COMDEFEND_PRESETS,
    ComDefend,
    ComDefendConfig,
    create_defence,
    create_defence_from_spec,
    evaluate_comdefend,
    train_comdefend,
)

from .conftest import TINY_COMDEFEND


@pytest.mark.slow
def test_training_beats_the_untrained_network(
    trained_comdefend: ComDefend, cifar_test_images: ImageSet
) -> None:
    held_out = cifar_test_images.subset(range(300, 400))
    torch.manual_seed(0)  # the initial weights of train_comdefend(seed=0)
    untrained = evaluate_comdefend(ComDefend(TINY_COMDEFEND), held_out)
    trained = evaluate_comdefend(trained_comdefend, held_out)
    assert trained > untrained + 1.5, (untrained, trained)
    assert trained_comdefend.metrics["test_psnr"] == pytest.approx(trained)
    assert trained_comdefend.metrics["steps"] == 300


def test_training_is_seeded_and_leaves_the_global_rng_alone(cifar_test_images: ImageSet) -> None:
    small = cifar_test_images.subset(range(40))
    state = torch.get_rng_state()
    runs = [
        train_comdefend(
            small, None, epochs=1, batch_size=8, seed=3, config=TINY_COMDEFEND, max_steps=4
        )
        for _ in range(2)
    ]
    assert torch.equal(torch.get_rng_state(), state)
    for (name, a), (_, b) in zip(
        runs[0].state_dict().items(), runs[1].state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert "test_psnr" not in runs[0].metrics
    with pytest.raises(ValueError, match="epochs and batch_size"):
        train_comdefend(small, None, epochs=0)


def test_checkpoint_round_trip(
    trained_comdefend: ComDefend, comdefend_weights: Path, images: torch.Tensor
) -> None:
    config = json.loads((comdefend_weights / "config.json").read_text())
    assert config["architecture"]["com_channels"] == [16]
    assert config["architecture"]["code_channels"] == 12
    assert config["metrics"]["test_psnr"] > 10
    loaded = create_defence("comdefend", weights=str(comdefend_weights))
    assert isinstance(loaded, ComDefend) and not loaded.training
    assert torch.equal(loaded(images), trained_comdefend(images))
    spec = create_defence_from_spec(f"comdefend:weights={comdefend_weights}")
    assert torch.equal(spec(images), trained_comdefend(images))


def test_the_code_is_binary_with_twelve_bits_per_pixel(
    trained_comdefend: ComDefend, images: torch.Tensor
) -> None:
    bits = trained_comdefend.binarize(trained_comdefend.encode(images))
    assert bits.shape == (images.shape[0], 12, 32, 32)
    assert set(bits.unique().tolist()) <= {0.0, 1.0}


def test_comdefend_without_weights_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="comdefend defence needs trained weights"):
        create_defence("comdefend")
    with pytest.raises(ValueError, match="needs trained weights"):
        create_defence_from_spec("comdefend")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        create_defence("comdefend", weights=tmp_path / "missing")
    (tmp_path / "model.pt").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="never unpickles"):
        create_defence("comdefend", weights=tmp_path / "model.pt")
    other = save_checkpoint(tmp_path / "other", {"w": torch.zeros(1)}, {"kind": "classifier"})
    with pytest.raises(CheckpointError, match="not a ComDefend checkpoint"):
        create_defence("comdefend", weights=other)


def test_presets_and_config_validation() -> None:
    assert COMDEFEND_PRESETS["paper"].space_to_depth == 1
    assert len(COMDEFEND_PRESETS["paper"].com_channels) == 8
    paper = ComDefend(COMDEFEND_PRESETS["paper"])
    assert paper.encode(torch.rand(1, 3, 8, 8)).shape == (1, 12, 8, 8)
    assert ComDefendConfig.from_dict(TINY_COMDEFEND.to_dict()) == TINY_COMDEFEND
    with pytest.raises(ValueError, match="com_channels"):
        ComDefendConfig(com_channels=())
    with pytest.raises(ValueError, match="unknown ComDefend config keys"):
        ComDefendConfig.from_dict({"depth": 3})


def test_a_checkpoint_in_the_older_kind_version_dialect_still_loads(
    comdefend_weights: Path, trained_comdefend: ComDefend, images: torch.Tensor, tmp_path: Path
) -> None:
    config = json.loads((comdefend_weights / "config.json").read_text())
    assert config["format"] == "invprotect.defences.comdefend/1" and "kind" not in config
    old = tmp_path / "old"
    old.mkdir()
    (old / "weights.safetensors").write_bytes(
        (comdefend_weights / "weights.safetensors").read_bytes()
    )
    del config["format"]
    config |= {"kind": "invprotect.defences.comdefend", "version": 1}
    (old / "config.json").write_text(json.dumps(config))
    assert torch.equal(ComDefend.load(old)(images), trained_comdefend(images))
    config["version"] = 2
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"format 'invprotect\.defences\.comdefend/2'"):
        ComDefend.load(old)
