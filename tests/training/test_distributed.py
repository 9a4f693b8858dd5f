"""Training in two gloo processes equals one process with the same global batch, and resumes.

The processes are started with ``torch.multiprocessing`` and meet through PyTorch's TCP
store on a free local port, as torchrun's workers would; each saves its weights to
``tmp_path`` and the test process compares them. They are forked rather than spawned: a
spawned worker imports torch and invprotect again (about 8 s each on a loaded 2-core
machine, 150 s for this module against 16 s), and forking is safe here because the tests
run on the CPU with one intra-op thread (``conftest.py``), so no OpenMP pool or CUDA
context is copied into the children.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch import nn

from invprotect import distributed
from invprotect.checkpoint import load_checkpoint
from invprotect.data import ImageSet, load_image_set, scan_image_folder
from invprotect.models import RAEG
from invprotect.targets import Classifier, Ensemble
from invprotect.training import ClassifierTrainingConfig, train_classifier
from invprotect.training.protector import ProtectorTrainingConfig, train_protector
from tests.tolerances import roundoff

TINY = {"generator": {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}}
PROTECTOR = ProtectorTrainingConfig(
    steps=4,
    batch_size=4,
    save_every=1,
    attacks={"identity": 1.0, "gaussian_noise": 1.0, "jpeg_ss": 1.0},
    precision="fp32",
)
CLASSIFIER = ClassifierTrainingConfig(epochs=2, batch_size=10, precision="fp32")
"""35 images in batches of 10: the last batch of each epoch (5) splits 3 + 2."""
DEADLINE_SECONDS = 300
"""A run of 2 processes takes 2-5 s here; past this it hangs (a rank waiting for a dead one)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, world: int, port: int, job: Callable[..., None], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        job(*args)
    finally:
        dist.destroy_process_group()


def _spawn(job: Callable[..., None], *args: object, world: int = 2) -> None:
    """Run ``job(*args)`` in ``world`` ranks; a failed rank raises, a hung run fails the test."""
    ranks = mp.start_processes(
        _worker,
        args=(world, _free_port(), job, args),
        nprocs=world,
        join=False,
        start_method="fork",
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not ranks.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail(f"{world} training processes did not finish in {DEADLINE_SECONDS} s")


def _save_rank(module: nn.Module, out: Path, record: object) -> None:
    """Each rank's weights; rank 0's record of the run (events or history)."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, out / f"rank{distributed.rank()}.safetensors")
    if distributed.is_main():
        (out / "record.json").write_text(json.dumps(record))


def _die(rank_to_kill: int) -> None:
    if distributed.rank() == rank_to_kill:
        os.kill(os.getpid(), signal.SIGKILL)


def _protector_setting(root: Path) -> tuple[ImageSet, nn.Module]:
    index = scan_image_folder(root / "test")
    index.samples = index.samples[::250]  # 40 images
    torch.manual_seed(0)
    return load_image_set(index), Ensemble([Classifier("mobilenet_small", index.classes).eval()])


def _fresh_raeg() -> RAEG:
    torch.manual_seed(3)
    return RAEG.from_preset("cpu-32", **TINY)


def _protector_job(root: Path, out: Path, state: Path | None, die_at: int | None) -> None:
    images, ensemble = _protector_setting(root)
    raeg = _fresh_raeg()

    def on_event(event) -> None:
        if event.step == die_at:
            _die(1)

    events = train_protector(raeg, ensemble, images, PROTECTOR, state, on_event)
    _save_rank(raeg, out, [asdict(e) for e in events])


def _classifier_subset(root: Path) -> ImageSet:
    index = scan_image_folder(root / "test")
    index.samples = index.samples[::250][:35]
    return load_image_set(index)


def _fresh_classifier(classes: list[str], batch_norm: bool) -> Classifier:
    torch.manual_seed(1)
    model = Classifier("convnet_small", classes)
    if not batch_norm:  # every registered architecture has batch norm
        for block in model.net.modules():
            for name, layer in block.named_children():
                if isinstance(layer, nn.BatchNorm2d):
                    setattr(block, name, nn.Identity())
    return model


def _classifier_job(
    root: Path, out: Path, state: Path | None, batch_norm: bool, die_at: tuple[int, int] | None
) -> None:
    train = _classifier_subset(root)
    model = _fresh_classifier(train.classes, batch_norm)

    def on_event(event) -> None:
        if (event.epoch, event.step) == die_at:
            _die(1)

    history = train_classifier(model, train, None, CLASSIFIER, state, on_event)
    _save_rank(model, out, history)


def _weights(out: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return load_file(out / f"rank{rank}.safetensors")


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    for (name, a), b in zip(
        expected.state_dict().items(), actual.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def _assert_ranks_identical(out: Path) -> None:
    """DDP keeps every parameter (and the spectral-norm vectors) identical on all ranks."""
    zero, one = _weights(out, 0), _weights(out, 1)
    for name, value in zero.items():
        if "running_" not in name and "num_batches" not in name:
            assert torch.equal(value, one[name]), name


def _assert_close_to_one_process(
    distributed_weights: dict[str, torch.Tensor], single: nn.Module, ulps: float
) -> None:
    for name, expected in single.state_dict().items():
        got = distributed_weights[name]
        # Distributed and single runs differ only in round-off: sums over a share of 2
        # images instead of 4 (or 5 against 3 + 2), the all-reduce's sum of two
        # gradients and its halving, each a few ulps of a gradient, carried into the
        # weights by the optimiser's few updates; `ulps` is counted in units of the
        # weights themselves (`roundoff`, at least 1).
        tolerance = roundoff(expected, ulps)
        assert (got - expected).abs().max().item() <= tolerance, name


@pytest.fixture(scope="module")
def two_process_protector(cifar10_root: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("protector2")
    _spawn(_protector_job, cifar10_root, out, None, None)
    return out


def test_share_splits_a_batch_in_contiguous_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    parts, weights = [], []
    for me in range(3):
        monkeypatch.setattr(distributed, "rank", lambda me=me: me)
        parts.append(distributed.share(10))
        weights.append(distributed.share_weight(10))
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 7), (7, 10)]
    assert sum(weights) / 3 == pytest.approx(1.0) and weights[0] > 1 > weights[2]
    with pytest.raises(ValueError, match="cannot be shared by 3 processes"):
        distributed.share(2)


def test_one_process_without_a_group_is_rank_zero_of_one() -> None:
    assert not distributed.is_distributed() and distributed.is_main()
    assert distributed.share(5) == slice(0, 5) and distributed.share_weight(5) == 1.0
    module = nn.Linear(2, 2)
    assert distributed.wrap(module, torch.device("cpu")) is module
    assert distributed.sum_over_ranks([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]


def test_more_processes_than_gpus_are_refused_before_joining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    variables = dict(RANK="3", WORLD_SIZE="4", LOCAL_RANK="3", MASTER_ADDR="x", MASTER_PORT="1")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.launched_by_torchrun()
    with pytest.raises(ValueError, match="--nproc-per-node 2"):
        with distributed.process_group(torch.device("cuda")):
            pass
    assert not dist.is_initialized()


def test_protector_in_two_processes_matches_one_process(
    two_process_protector: Path, cifar10_root: Path
) -> None:
    out = two_process_protector
    _assert_ranks_identical(out)
    images, ensemble = _protector_setting(cifar10_root)
    single = _fresh_raeg()
    events = train_protector(single, ensemble, images, PROTECTOR)
    # Adam divides each gradient by its running size, so a gradient near zero passes
    # its round-off on at full scale: 25 ulps were measured after 4 steps (AMD EPYC,
    # AVX2). 256 leaves a 10x margin and stays 10x below one Adam step (lr = 3e-4 =
    # 2,500 ulps of 1): drawing the attacks per share instead of for the global batch
    # moved the weights by 2,967 ulps.
    _assert_close_to_one_process(_weights(out), single, ulps=256)
    record = json.loads((out / "record.json").read_text())
    assert [e["step"] for e in record] == [1, 2, 3, 4]
    for mine, theirs in zip(record, (asdict(e) for e in events), strict=True):
        assert mine["fooling_rate"] == theirs["fooling_rate"]
        assert math.isclose(mine["psnr"], theirs["psnr"], rel_tol=1e-5)
        assert math.isclose(mine["loss"], theirs["loss"], rel_tol=1e-5)


def test_protector_resumes_after_a_rank_dies(
    two_process_protector: Path, cifar10_root: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _spawn(_protector_job, cifar10_root, tmp_path / "killed", state, 3)
    _spawn(_protector_job, cifar10_root, tmp_path / "resumed", state, None)
    record = json.loads((tmp_path / "resumed" / "record.json").read_text())
    assert record[0]["step"] in (3, 4) and record[-1]["step"] == 4  # rank 0 had saved 2 or 3
    straight = _weights(two_process_protector)
    for name, value in _weights(tmp_path / "resumed").items():
        assert torch.equal(value, straight[name]), name


def test_protector_resumes_from_weights_newer_than_their_config(
    cifar10_root: Path, tmp_path: Path
) -> None:
    # A rank killed between the two renames of a save leaves the new weights beside the
    # old config.json: the weights carry their own step, so the resume is still exact.
    images, ensemble = _protector_setting(cifar10_root)
    state = tmp_path / "state"
    steps = []

    def keep_config_of_step_2(event) -> None:
        steps.append(event.step)
        if event.step == 3:  # before step 3's save
            (tmp_path / "config.json").write_bytes((state / "config.json").read_bytes())
        if event.step == 4:  # after it: the torn state
            (state / "config.json").write_bytes((tmp_path / "config.json").read_bytes())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_protector(_fresh_raeg(), ensemble, images, PROTECTOR, state, keep_config_of_step_2)
    resumed, straight = _fresh_raeg(), _fresh_raeg()
    events = train_protector(resumed, ensemble, images, PROTECTOR, state)
    assert [e.step for e in events] == [4]
    train_protector(straight, ensemble, images, PROTECTOR)
    _assert_same_weights(straight, resumed)


def test_classifier_resumes_from_weights_newer_than_their_config(
    cifar10_root: Path, tmp_path: Path
) -> None:
    train = _classifier_subset(cifar10_root)
    config, state = replace(CLASSIFIER, epochs=3), tmp_path / "state"

    def keep_config_of_epoch_1(event) -> None:
        if (event.epoch, event.step) == (2, 1):
            (tmp_path / "config.json").write_bytes((state / "config.json").read_bytes())
        if (event.epoch, event.step) == (3, 1):  # epoch 2's weights, epoch 1's config
            (state / "config.json").write_bytes((tmp_path / "config.json").read_bytes())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model = _fresh_classifier(train.classes, batch_norm=True)
        train_classifier(model, train, None, config, state, keep_config_of_epoch_1)
    resumed, straight = (_fresh_classifier(train.classes, batch_norm=True) for _ in "ab")
    assert [h["epoch"] for h in train_classifier(resumed, train, None, config, state)] == [3]
    train_classifier(straight, train, None, config)
    _assert_same_weights(straight, resumed)


def test_classifier_in_two_processes_matches_one_process(
    cifar10_root: Path, tmp_path: Path
) -> None:
    _spawn(_classifier_job, cifar10_root, tmp_path, None, False, None)
    _assert_ranks_identical(tmp_path)
    train = _classifier_subset(cifar10_root)
    single = _fresh_classifier(train.classes, batch_norm=False)
    history = train_classifier(single, train, None, CLASSIFIER)
    # SGD updates are linear in the gradients, so round-off stays round-off: 4.4 ulps
    # measured after 8 steps; 64 leaves a 15x margin. Averaging the uneven last shares
    # (3 + 2 images) without weighting them moved the weights by 137,774 ulps.
    _assert_close_to_one_process(_weights(tmp_path), single, ulps=64)
    record = json.loads((tmp_path / "record.json").read_text())
    for mine, theirs in zip(record, history, strict=True):
        assert math.isclose(mine["loss"], theirs["loss"], rel_tol=1e-5)


def test_classifier_with_batch_norm_resumes_after_a_rank_dies(
    cifar10_root: Path, tmp_path: Path
) -> None:
    # Batch norm normalises with each rank's share on the CPU: weights follow the world
    # size, not one process, so the claim here is determinism and resume.
    _spawn(_classifier_job, cifar10_root, tmp_path / "straight", None, True, None)
    _assert_ranks_identical(tmp_path / "straight")
    state = tmp_path / "state"
    with pytest.raises(mp.ProcessExitedException, match="SIGKILL"):
        _spawn(_classifier_job, cifar10_root, tmp_path / "killed", state, True, (2, 2))
    _spawn(_classifier_job, cifar10_root, tmp_path / "resumed", state, True, None)
    record = json.loads((tmp_path / "resumed" / "record.json").read_text())
    assert [h["epoch"] for h in record] == [2]
    straight = _weights(tmp_path / "straight")
    for name, value in _weights(tmp_path / "resumed").items():
        assert torch.equal(value, straight[name]), name


@pytest.mark.slow
def test_train_targets_under_torchrun_writes_one_classifier(
    small_image_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "target"
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"),
        *("-m", "invprotect", "train-targets", "--data", str(small_image_folder)),
        *("--arch", "convnet_small", "--out", str(out), "--epochs", "1", "--batch-size", "10"),
        *("--device", "cpu", "--precision", "fp32", "--no-cache"),
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summaries = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # rank 0 alone reports
    assert json.loads(summaries[0])["out"] == str(out)
    assert done.stderr.count("training convnet_small on cpu") == 1
    _, config = load_checkpoint(out)
    assert config["metadata"]["processes"] == 2 and config["metadata"]["epochs"] == 1
