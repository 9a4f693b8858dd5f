"""Sharded folder work: K/N shards write the bytes of one run, one manifest, and resume alone.

The reference is always one unsharded run of the same protector on the same tree; the
shards run one after the other (in this process), at the same time (two command-line
processes), and as torchrun's workers (two processes with torchrun's variables).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.cli.app import EXIT_USAGE, invoke
from invprotect.cli.protector import _entries, _means
from invprotect.files.locks import LOCK_FILE, MERGE_LOCK, DestinationLockedError
from invprotect.files.manifest import MANIFEST, manifest_part, read_manifest
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.files.tree import TreeReport
from invprotect.protectors import load_protector
from invprotect.sharding import (
    Shard,
    parse_shard,
    shard_from_environment,
    shard_of,
    worker_device,
)
from tests.contracts import tiny_raeg

HALVES = (Shard(0, 2), Shard(1, 2))
SUBPROCESS_SECONDS = 300
"""A command takes 5-20 s here (mostly importing torch); past this it hangs."""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small protector trained away from the identity, saved as a key."""
    return tiny_raeg(0).save(tmp_path_factory.mktemp("key") / "key")


@pytest.fixture(scope="module")
def protector(key: Path):
    return load_protector(key, "cpu")


@pytest.fixture
def tree(mixed_tree: Path) -> Path:
    """The mixed tree with a file that fails and one that is skipped, in more folders."""
    (mixed_tree / "cat" / "empty.png").write_bytes(b"")
    (mixed_tree / "notes.txt").write_text("not an image")
    deep = mixed_tree / "ship" / "deeper" / "deepest"
    deep.mkdir(parents=True)
    for index, source in enumerate(sorted((mixed_tree / "cat").glob("*.jpg"))):
        Image.open(source).crop((index, 0, 32, 29 + index)).save(deep / f"crop{index}.png")
    return mixed_tree


def _files(root: Path) -> dict[str, str]:
    """Digest of every file under ``root`` but the manifest."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != MANIFEST
    }


def _canonical(manifest: Path) -> list[str]:
    """The manifest's lines in a canonical order (sorted), each one checked to be an entry."""
    lines = manifest.read_text().splitlines()
    assert len(read_manifest(manifest)) == len(lines)
    return sorted(lines)


def _single(tree: Path, out: Path, protector) -> TreeReport:
    report = protect_tree(tree, out, protector, batch_size=3)
    assert report.written == 11 and [name for name, _ in report.failed] == ["cat/empty.png"]
    return report


def _assert_same_set(sharded: Path, single: Path) -> None:
    assert _files(sharded) == _files(single)
    assert _canonical(sharded / MANIFEST) == _canonical(single / MANIFEST)
    assert sorted(path.name for path in sharded.iterdir() if path.is_file()) == [MANIFEST]


def test_the_split_is_a_partition_fixed_by_the_path_alone() -> None:
    paths = [f"class{index % 7}/image{index}.jpg" for index in range(2000)]
    for count in (1, 2, 3, 8):
        owners = [shard_of(path, count) for path in paths]
        assert owners == [shard_of(path, count) for path in reversed(paths)][::-1]
        assert all(0 <= owner < count for owner in owners)
        sizes = np.bincount(owners, minlength=count)
        assert sizes.min() > 0.8 * len(paths) / count  # balanced (binomial: +-5% here)
        shards = [Shard(index, count) for index in range(count)]
        assert all(sum(shard.owns(path) for shard in shards) == 1 for path in paths)
    # pinned: a set started by this version and resumed by a later one keeps its split
    assert [shard_of(f"a/{index}.png", 4) for index in range(8)] == [0, 2, 3, 0, 1, 1, 1, 0]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("2/2", "received 2/2; the shards of 2 are 0/2 to 1/2"),
        ("1/0", "received 1/0; give N of at least 1"),
        ("0/0", "received 0/0; give N of at least 1"),
        ("-1/2", "received '-1/2'"),
        ("1", "received '1'"),
        ("a/b", "received 'a/b'"),
        ("", "received ''"),
    ],
)
def test_bad_shards_are_refused_with_what_was_expected(text: str, words: str) -> None:
    with pytest.raises(ValueError, match="expected a shard") as error:
        parse_shard(text)
    assert words in str(error.value)
    assert parse_shard(" 3 / 4 ") == Shard(3, 4) and str(Shard(3, 4)) == "3/4"


def test_bad_shard_options_exit_2(
    key: Path, tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [str(tree), str(tmp_path / "out"), "--protector", str(key)]
    for command in ("protect", "recover"):
        assert invoke([command, *base, "--shard", "2/2"]) == EXIT_USAGE
        assert "the shards of 2 are 0/2 to 1/2" in " ".join(capsys.readouterr().err.split())
    assert invoke(["purify", *base[:2], "--defence", "jpeg", "--shard", "x"]) == EXIT_USAGE
    assert "expected a shard K/N with K from 0 to N-1" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_shard_option_and_torchrun_together_exit_2(
    key: Path, tree: Path, tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in _torchrun_variables(1, 2).items():
        monkeypatch.setenv(name, value)
    assert shard_from_environment() == Shard(1, 2)
    argv = ["protect", str(tree), str(tmp_path / "out"), "--protector", str(key)]
    assert invoke([*argv, "--shard", "0/2"]) == EXIT_USAGE
    assert "expected --shard or torchrun, received both" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "one")
    assert invoke(argv) == EXIT_USAGE
    assert "RANK='one'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_torchrun_workers_take_the_gpu_of_their_local_rank(monkeypatch) -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert worker_device(cuda) == cuda  # not under torchrun: as asked
    for name, value in _torchrun_variables(1, 2).items():
        monkeypatch.setenv(name, value)
    assert worker_device(cpu) == cpu and worker_device(torch.device("cuda", 0)).index == 0
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_device(cuda) == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="received LOCAL_RANK 1 on a machine with 1 GPU"):
        worker_device(cuda)


def test_a_shards_quality_summary_reads_its_own_entries_where_they_are(tmp_path: Path) -> None:
    shard = HALVES[0]
    mine = next(f"{i}.png" for i in range(99) if shard.owns(f"{i}.png"))
    other = next(f"{i}.png" for i in range(99) if not shard.owns(f"{i}.png"))
    lines = [{"path": path, "output": path, "psnr": 30.0} for path in (mine, other)]
    (tmp_path / MANIFEST).write_text("".join(json.dumps(line) + "\n" for line in lines))
    newer = {"path": mine, "output": mine, "psnr": 35.0}
    (tmp_path / manifest_part(shard)).write_text(json.dumps(newer) + "\n")
    assert _entries(tmp_path / MANIFEST, shard) == {mine: newer}  # the part's, not folded yet
    assert _means(tmp_path / MANIFEST, {}, shard)["psnr"] == 35.0
    assert set(_entries(tmp_path / MANIFEST)) == {mine, other}


def test_shards_one_after_the_other_write_the_bytes_of_one_run(
    protector, tree: Path, tmp_path: Path
) -> None:
    single = _single(tree, tmp_path / "single", protector)
    reports = [protect_tree(tree, tmp_path / "sharded", protector, 2, None, s) for s in HALVES]
    assert sum(report.written for report in reports) == single.written
    assert all(report.written for report in reports)  # both shards had work
    assert sorted(x for r in reports for x in r.failed) == sorted(single.failed)
    assert sorted(x for r in reports for x in r.skipped_files) == sorted(single.skipped_files)
    _assert_same_set(tmp_path / "sharded", tmp_path / "single")
    again = protect_tree(tree, tmp_path / "sharded", protector, 3, None, HALVES[1])
    assert again.written == 0 and again.skipped == reports[1].written
    _assert_same_set(tmp_path / "sharded", tmp_path / "single")

    for shard in HALVES:  # and recovery, sharded, gives the single recovery's bytes
        assert recover_tree(tmp_path / "sharded", tmp_path / "rec", protector, 2, None, shard).ok
    assert recover_tree(tmp_path / "single", tmp_path / "rec1", protector, batch_size=3).ok
    assert _files(tmp_path / "rec") == _files(tmp_path / "rec1")
    assert len(_files(tmp_path / "rec")) == 11


def test_an_interrupted_shard_resumes_alone(protector, tree: Path, tmp_path: Path) -> None:
    _single(tree, tmp_path / "single", protector)
    out = tmp_path / "sharded"

    def interrupt(count: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        protect_tree(tree, out, protector, 2, interrupt, HALVES[0])
    part = out / manifest_part(HALVES[0])
    assert len(read_manifest(part)) == 2 and not (out / MANIFEST).exists()
    assert not list(out.glob(".invprotect*.lock"))
    # the other shard runs meanwhile; it folds the idle part in, keeping its entries
    other = protect_tree(tree, out, protector, 2, None, HALVES[1])
    assert other.written and not part.exists()
    assert len(read_manifest(out / MANIFEST)) == 2 + other.written
    resumed = protect_tree(tree, out, protector, 2, None, HALVES[0])
    assert resumed.skipped == 2 and resumed.written > 0
    _assert_same_set(out, tmp_path / "single")


def test_a_shard_ending_during_a_merge_leaves_its_part_to_the_next_merge(
    protector, tree: Path, tmp_path: Path
) -> None:
    _single(tree, tmp_path / "single", protector)
    out = tmp_path / "sharded"
    merging = json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "since": "now"})

    def another_process_merges(count: int) -> None:
        (out / MERGE_LOCK).write_text(merging)

    first = protect_tree(tree, out, protector, 3, another_process_merges, HALVES[1])
    assert first.written and (out / manifest_part(HALVES[1])).is_file()  # it did not wait
    assert not (out / MANIFEST).exists()
    (out / MERGE_LOCK).unlink()  # that merge ends; the next shard to end folds both parts
    second = protect_tree(tree, out, protector, 3, None, HALVES[0])
    assert second.written + first.written == 11
    _assert_same_set(out, tmp_path / "single")


def test_locks_let_shards_of_one_set_share_the_destination_only(
    protector, tree: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    alive = json.dumps({"pid": os.getppid(), "host": host, "since": "now"})
    lock = out / f".invprotect.{HALVES[1].tag}.lock"
    lock.write_text(alive)  # shard 1/2 is running
    with pytest.raises(DestinationLockedError, match="in use for shard 1/2 by process"):
        protect_tree(tree, out, protector, 3, None, HALVES[1])
    with pytest.raises(DestinationLockedError, match="but shard 1/2 holds it"):
        protect_tree(tree, out, protector, 3, None, Shard(0, 3))
    with pytest.raises(DestinationLockedError, match="but shard 1/2 holds it"):
        protect_tree(tree, out, protector, 3)
    report = protect_tree(tree, out, protector, 3, None, HALVES[0])  # its sibling may run
    assert report.written and lock.read_text() == alive
    lock.unlink()
    (out / LOCK_FILE).write_text(alive)  # an unsharded run is running
    with pytest.raises(DestinationLockedError, match="but an unsharded run holds it"):
        protect_tree(tree, out, protector, 3, None, HALVES[1])
    (out / LOCK_FILE).write_text(json.dumps({"pid": _dead_pid(), "host": host}))
    assert protect_tree(tree, out, protector, 3, None, HALVES[1]).written  # dead: taken over
    assert not (out / LOCK_FILE).exists()


def _dead_pid() -> int:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def test_purify_shards_write_the_bytes_of_one_run(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = ["--defence", "gaussian_noise", "--seed", "3"]
    assert invoke(["purify", str(tree), str(tmp_path / "single"), *spec]) == 1  # empty.png
    written = []
    for shard in HALVES:
        argv = ["purify", str(tree), str(tmp_path / "sharded"), *spec, "--shard", str(shard)]
        invoke(argv)
        summary = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert summary["shard"] == str(shard)
        written.append(summary["written"])
    assert all(written) and sum(written) == 11
    assert _files(tmp_path / "sharded") == _files(tmp_path / "single")


def _torchrun_variables(rank: int, world: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }


def test_a_shard_and_a_torchrun_worker_at_once_write_the_bytes_of_one_run(
    key: Path, protector, tree: Path, tmp_path: Path
) -> None:
    """Shard 0/2 by ``--shard`` and torchrun's worker 1 of 2, at the same time, in one DST.

    Two processes rather than four (both shards by each route): on a loaded 2-core
    machine each one spends 10-30 s importing torch, and one pair checks both routes and
    that they agree on the split.
    """
    _single(tree, tmp_path / "single", protector)
    common = ["protect", str(tree), str(tmp_path / "sharded"), "--protector", str(key)]
    common += ["--device", "cpu", "--batch-size", "2"]
    environment = {k: v for k, v in os.environ.items() if k not in _torchrun_variables(0, 1)}
    environment.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1]))
    commands = [([*common, "--shard", "0/2"], {}), (common, _torchrun_variables(1, 2))]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "invprotect", *argv],
            env={**environment, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv, extra in commands
    ]
    summaries, codes = [], []
    for process in processes:
        out, err = process.communicate(timeout=SUBPROCESS_SECONDS)
        assert process.returncode in (0, 1), err
        codes.append(process.returncode)
        summaries.append(json.loads(out.splitlines()[-1]))
    assert [summary["shard"] for summary in summaries] == ["0/2", "1/2"]
    assert all(summary["written"] for summary in summaries)
    assert sum(summary["written"] for summary in summaries) == 11
    assert sorted(codes) == [0, 1] and sum(summary["failed"] for summary in summaries) == 1
    _assert_same_set(tmp_path / "sharded", tmp_path / "single")
