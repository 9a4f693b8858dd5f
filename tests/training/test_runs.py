"""The training runs the commands call: data, metadata, resume, and what they report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from invprotect.checkpoint import load_checkpoint
from invprotect.data import train_test_split
from invprotect.targets import Classifier
from invprotect.training import (
    ClassifierTrainingConfig,
    Listener,
    ProtectorRunConfig,
    TargetRunConfig,
    load_training_data,
    run_protector_training,
    run_target_training,
)
from invprotect.training.data import STATE_DIR
from invprotect.training.protector import ProtectorTrainingConfig


class _Heard:
    """A `Listener`'s two callbacks, recording what they receive."""

    def __init__(self) -> None:
        self.stages: dict[str, tuple[int, int | None]] = {}
        self.lines: list[str] = []

    @property
    def listener(self) -> Listener:
        return Listener(self.progress, self.lines.append)

    def progress(self, stage: str, done: int, total: int | None, status: str) -> None:
        self.stages[stage] = (done, total)


def test_load_training_data_decodes_a_seeded_subset_only(small_image_folder: Path) -> None:
    heard = _Heard()
    loaded = load_training_data(
        small_image_folder,
        32,
        max_train_images=7,
        seed=3,
        progress=heard.progress,
        log=heard.lines.append,
    )
    train_index, test_index = train_test_split(small_image_folder)
    assert len(loaded.train) == 7 and len(loaded.test) == len(test_index)
    assert heard.stages == {"decoding": (7 + len(test_index), 7 + len(test_index))}
    again = load_training_data(small_image_folder, 32, max_train_images=7, seed=3, with_test=False)
    assert again.test is None and again.train.paths == loaded.train.paths
    other = load_training_data(small_image_folder, 32, max_train_images=7, seed=4, with_test=False)
    assert other.train.paths != loaded.train.paths
    every = {path.relative_to(train_index.root).as_posix() for path, _ in train_index.samples}
    assert set(loaded.train.paths) < every
    counts = f"7 training and {len(test_index)} test images, 3 classes, 0 MiB decoded"
    assert heard.lines == [counts]


def test_target_run_writes_the_whole_runs_metadata_and_loads_it_when_done(
    small_image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "target"
    settings = ClassifierTrainingConfig(epochs=2, batch_size=8, precision="fp32")
    config = TargetRunConfig(small_image_folder, "convnet_small", out, settings, size=32)
    heard = _Heard()
    result = run_target_training(config, listener=heard.listener)
    assert not result.already_trained and result.saved
    metadata = Classifier.load(out).metadata
    assert metadata == json.loads(json.dumps(result.model.metadata))
    _, state = load_checkpoint(out / STATE_DIR)
    assert metadata["history"] == state["history"]
    assert [record["epoch"] for record in state["history"]] == [1, 2]
    assert metadata["test_accuracy"] == state["history"][-1]["test_accuracy"]
    assert metadata["training"] == state["config"] and metadata["epochs"] == 2
    assert metadata["train_images"] + metadata["test_images"] == 36
    assert heard.stages["convnet_small"][0] == heard.stages["convnet_small"][1] > 0
    assert sum(line.startswith("epoch ") for line in heard.lines) == 2
    again = run_target_training(config)
    assert again.already_trained and again.model.metadata == metadata


def test_target_run_refuses_an_unknown_arch_and_a_cache_with_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        TargetRunConfig(tmp_path, "vgg", tmp_path / "out")
    with pytest.raises(ValueError, match="decoding cache would write the recovered originals"):
        TargetRunConfig(tmp_path, "vgg_small", tmp_path / "o", cache_dir=tmp_path, protector="k")


def test_protector_run_checks_settings_before_decoding(
    small_image_folder: Path, tmp_path: Path
) -> None:
    settings = ProtectorTrainingConfig(steps=1, batch_size=4, attacks={"no_such_attack": 1.0})
    targets = (tmp_path / "t",)
    config = ProtectorRunConfig(tmp_path / "missing", targets, tmp_path / "key", "cpu-32", settings)
    with pytest.raises(ValueError, match="no_such_attack"):  # before the missing data is read
        run_protector_training(config)
    with pytest.raises(ValueError, match="at least one target"):
        ProtectorRunConfig(small_image_folder, (), tmp_path / "key")
    with pytest.raises(ValueError, match="cpu-32"):  # the known presets are listed
        ProtectorRunConfig(small_image_folder, (tmp_path / "t",), tmp_path / "key", "cpu-33")
