"""Exit codes of the command line: 0 ok, 1 failed files, 2 usage or fatal, 3 crash; no traceback."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image

from invprotect.cli import app, protector
from invprotect.cli.app import EXIT_CRASH, EXIT_FAILED, EXIT_OK, EXIT_USAGE, invoke
from invprotect.device import available_cpus, default_threads, pick_device, set_threads
from invprotect.models import RAEG, raeg

TINY = {"levels": 2, "blocks_per_level": 1, "hidden_channels": 8, "subnet": "conv"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return RAEG.from_preset("cpu-32", generator=TINY).save(tmp_path_factory.mktemp("key") / "k")


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = invoke(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.out, captured.err


def _tampered(key: Path, tmp_path: Path, edit) -> Path:
    copy = tmp_path / "tampered"
    copy.mkdir()
    (copy / "weights.safetensors").write_bytes((key / "weights.safetensors").read_bytes())
    settings = json.loads((key / "config.json").read_text())
    result = edit(settings)
    data = result if isinstance(result, bytes) else json.dumps(settings).encode()
    (copy / "config.json").write_bytes(data)
    return copy


def test_ok_and_some_files_failed(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        ["protect", str(images), str(tmp_path / "a"), "--protector", str(key)], capsys
    )
    assert code == EXIT_OK, err
    assert json.loads(out)["written"] == 3
    assert re.search(r"protected 3 files, mean PSNR \d+\.\d\d dB", err)
    (images / "broken.png").write_bytes(b"not a png")
    code, out, err = _run(
        ["protect", str(images), str(tmp_path / "b"), "--protector", str(key)], capsys
    )
    assert code == EXIT_FAILED and "broken.png" in err
    assert json.loads(out)["failed"] == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no-such-command"], "No such command"),
        (["protect"], "Missing argument"),
        (["protect", "SRC", "DST", "--protector", "rit-igsm", "--device", "tpu"], "unknown device"),
        (["protect", "SRC", "DST", "--protector", "rit-igsm", "--device", "cuda:x"], "device"),
        (["protect", "SRC", "DST", "--protector", "rit-igsm", "--threads", "0"], "--threads"),
        (
            [
                "train-targets",
                "--data",
                "d",
                "--arch",
                "vgg_small",
                "--out",
                "o",
                "--device",
                "gpu",
            ],
            "device",
        ),
        (
            [
                "verify",
                "--data",
                "d",
                "--protector",
                "p",
                "--targets",
                "t",
                "--out",
                "o",
                "--device",
                "tpu",
            ],
            "device",
        ),
        (["demo", "--out", "o", "--target", "resnet_tiny"], "unknown --target resnet_tiny"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(argv, capsys)
    assert code == EXIT_USAGE and message in err


def test_destination_problems_exit_2_before_writing(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    for dst, message in ((a_file, "is a file"), (a_file / "below", "is a file, not a folder")):
        code, _, err = _run(["protect", str(images), str(dst), "--protector", str(key)], capsys)
        assert code == EXIT_USAGE and message in err
    assert a_file.read_text() == "keep me"
    code, _, err = _run(
        ["protect", str(tmp_path / "missing"), str(tmp_path / "o"), "--protector", str(key)], capsys
    )
    assert code == EXIT_USAGE and "does not exist" in err
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)  # read-only
    code, _, err = _run(
        ["protect", str(images), str(tmp_path / "ro"), "--protector", str(key)], capsys
    )
    assert code == EXIT_USAGE and "not writable" in err and not (tmp_path / "ro").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train-targets", "--data", "{tmp}", "--arch", "vgg_small", "--out", "{file}"],
        ["train", "--data", "{tmp}", "--targets", "{tmp}", "--out", "{file}"],
        ["train-defence", "comdefend", "--data", "{tmp}", "--out", "{file}"],
        ["verify", "--data", "{tmp}", "--protector", "p", "--targets", "t", "--out", "{file}"],
        ["demo", "--out", "{file}"],
        ["purify", "{tmp}/src", "{file}", "--defence", "jpeg"],
    ],
)
def test_an_output_folder_that_is_a_file_exits_2_at_once(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    (tmp_path / "src").mkdir()
    filled = [arg.format(tmp=tmp_path, file=a_file) for arg in argv]
    code, _, err = _run(filled, capsys)
    assert code == EXIT_USAGE and f"{a_file} exists and is a file" in err
    assert a_file.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_real_read_only_destination_exits_2(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = _run(
            ["recover", str(images), str(locked / "o"), "--protector", str(key)], capsys
        )
    finally:
        locked.chmod(0o755)
    assert code == EXIT_USAGE and "not writable" in err


def test_an_os_error_while_working_exits_2_in_one_line(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "0.png"))

    monkeypatch.setattr(protector, "protect_tree", full_disk)
    code, _, err = _run(
        ["protect", str(images), str(tmp_path / "o"), "--protector", str(key)], capsys
    )
    assert code == EXIT_USAGE
    assert (
        err.strip().splitlines()[-1]
        == f"error: No space left on device: {tmp_path / 'o' / '0.png'}"
    )


def test_a_crash_exits_3_with_one_line_and_a_traceback_file(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug\nover two lines")

    monkeypatch.setattr(protector, "protect_tree", bug)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code, _, err = _run(
        ["protect", str(images), str(tmp_path / "o"), "--protector", str(key)], capsys
    )
    assert code == EXIT_CRASH
    line = err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"internal error: ZeroDivisionError: a bug over two lines; please report it "
        r"\(traceback in (.+)\)",
        line,
    )
    assert match, line
    written = Path(match.group(1)).read_text()
    assert "Traceback" in written and "ZeroDivisionError: a bug" in written and "argv" in written


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("levels=9", lambda s: s["config"]["generator"].update(levels=9), "levels"),
        (
            "levels=8 at 512 px",  # within the limits, but far more network than the weights
            lambda s: (
                s["config"].update(image_size=512) or s["config"]["generator"].update(levels=8)
            ),
            "does not belong to these weights",
        ),
        (
            "huge width",
            lambda s: s["config"]["generator"].update(hidden_channels=4096),
            "does not belong",
        ),
        ("unknown key", lambda s: s["config"].update(colour="red"), "unknown keys ['colour']"),
        ("missing key", lambda s: s["config"]["generator"].pop("clamp"), "missing keys ['clamp']"),
        ("wrong type", lambda s: s["config"].update(image_size="32"), "must be int"),
        ("bool as int", lambda s: s["config"]["generator"].update(levels=True), "must be int"),
        ("unknown subnet", lambda s: s["config"]["generator"].update(subnet="mlp"), "subnet"),
        ("not an object", lambda s: s.update(config=[1, 2]), "JSON object"),
        ("no config", lambda s: s.pop("config"), "JSON object"),
        ("metadata a list", lambda s: s.update(metadata=[1]), "metadata"),
        (
            "other weights",
            lambda s: s["config"]["generator"].update(hidden_channels=7),
            "do not match",
        ),
        ("non-UTF-8", lambda s: b"\xff\xfe{}", "not UTF-8"),
        ("malformed JSON", lambda s: b'{"format": ', "not valid JSON"),
        ("deep JSON", lambda s: b"[" * 100_000, "not valid JSON"),
        ("JSON list", lambda s: b"[1, 2]", "JSON object"),
    ],
)
def test_bad_sidecars_are_refused_before_building(
    name: str,
    edit,
    message: str,
    key: Path,
    images: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch,
) -> None:
    bad = _tampered(key, tmp_path, edit)
    if name != "other weights":  # refused from the config alone: nothing is built

        def no_building(*args, **kwargs):
            raise AssertionError("the network was built")

        monkeypatch.setattr(raeg, "InvertibleUNet", no_building)
    code, _, err = _run(
        ["protect", str(images), str(tmp_path / "o"), "--protector", str(bad)], capsys
    )
    assert code == EXIT_USAGE, err
    assert message in err and "cannot load the protector" in err
    assert not (tmp_path / "o").exists()


def test_pickles_are_refused(
    key: Path, images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled = tmp_path / "model.pt"
    pickled.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    code, _, err = _run(
        ["protect", str(images), str(tmp_path / "o"), "--protector", str(pickled)], capsys
    )
    assert code == EXIT_USAGE and "pickle" in err
    disguised = _tampered(key, tmp_path, lambda s: None)
    (disguised / "weights.safetensors").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    code, _, err = _run(
        ["recover", str(images), str(tmp_path / "o"), "--protector", str(disguised)], capsys
    )
    assert code == EXIT_USAGE and "not a valid safetensors file" in err


def test_every_command_takes_threads_and_sets_them(capsys: pytest.CaptureFixture[str]) -> None:
    commands = typer.main.get_command(app).commands
    assert {"protect", "recover", "train", "train-targets", "verify", "demo", "purify"} <= set(
        commands
    )
    for name, command in commands.items():
        assert "--threads" in [opt for param in command.params for opt in param.opts], name
    before = torch.get_num_threads()
    try:
        code, _, _ = _run(
            ["protect", "missing", "out", "--protector", "rit-igsm", "--threads", "3"], capsys
        )
        assert code == EXIT_USAGE and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))
def test_help_shows_no_type_placeholders(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run([command, "--help"], capsys)
    assert code == EXIT_OK and "Usage: invprotect" in out
    odd = re.findall(r"<(?:bool|int|float|str|path|text)[^>]*>|\{\w+\}", out, flags=re.IGNORECASE)
    assert not odd, odd


@pytest.mark.parametrize("text", ["tpu", "gpu", "cuda:", "cuda:-1", "cuda:0:1", "cpu:0 ", "vulkan"])
def test_pick_device_names_the_valid_choices(text: str) -> None:
    with pytest.raises(ValueError, match=r"'auto'.*'cpu'.*'cuda:N'.*'mps'"):
        pick_device(text)


def test_pick_device_accepts_the_documented_strings() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            pick_device("cuda:1")


@pytest.mark.parametrize(("value", "expected"), [("3", 3), ("0", None), ("x", None), ("", None)])
def test_default_threads_follow_omp_num_threads(
    value: str, expected: int | None, monkeypatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_threads() == (expected or available_cpus())
    before = torch.get_num_threads()
    try:
        assert set_threads() == default_threads() == torch.get_num_threads()
        assert set_threads(2) == 2 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
