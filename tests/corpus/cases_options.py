"""Corpus cases for the command line's options and for damaged protector checkpoints."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tests.corpus import files as f
from tests.corpus.corpus import (
    FATAL,
    OK,
    Ctx,
    Scenario,
    case,
    protected_count,
    recovered_count,
    truncated,
)

# --- command-line options --------------------------------------------------------------------


def _option(
    name: str, command: str, extra: tuple[str, ...], outcome: str, codes: tuple[int, ...] = (FATAL,)
) -> None:
    def build(ctx: Ctx) -> Scenario:
        ctx.good()
        if command == "recover":
            ctx.pool()
            return Scenario(ctx.recover(*extra), None)
        return Scenario(ctx.protect(*extra), None)

    case(name, codes, outcome)(build)


_option("device_tpu", "protect", ("--device", "tpu"), "--device tpu: a usage error")
_option("device_empty", "protect", ("--device", ""), "--device '': a usage error")
_option("device_cuda_99", "protect", ("--device", "cuda:99"), "--device cuda:99: a usage error")
_option(
    "device_garbage", "recover", ("--device", "cuda:x"), "recover --device cuda:x: a usage error"
)
_option("recover_device_tpu", "recover", ("--device", "tpu"), "recover --device tpu: a usage error")
_option("batch_size_zero", "protect", ("--batch-size", "0"), "--batch-size 0: a usage error")
_option("batch_size_negative", "protect", ("--batch-size", "-3"), "--batch-size -3: a usage error")
_option("batch_size_text", "protect", ("--batch-size", "many"), "--batch-size many: a usage error")
_option(
    "recover_batch_size_zero",
    "recover",
    ("--batch-size", "0"),
    "recover --batch-size 0: a usage error",
)
_option("threads_negative", "protect", ("--threads", "-1"), "--threads -1: a usage error")
_option("threads_zero", "protect", ("--threads", "0"), "--threads 0: a usage error")
_option("threads_text", "recover", ("--threads", "two"), "recover --threads two: a usage error")
_option("unknown_option", "protect", ("--frobnicate",), "an unknown option: a usage error")
_option(
    "protector_missing",
    "protect",
    ("--protector", "/nonexistent/protector"),
    "a protector path that does not exist",
)
_option("protector_empty_string", "protect", ("--protector", ""), "--protector ''")
_option(
    "protector_path_with_markup",
    "protect",
    ("--protector", "/nonexistent/[/]key"),
    "a missing protector whose path is console markup: printed, not interpreted",
)
_option(
    "recover_protector_missing",
    "recover",
    ("--protector", "/nonexistent/protector"),
    "recover with a protector that does not exist",
)
_option(
    "baseline_without_targets",
    "protect",
    ("--protector", "rae-igsm"),
    "a baseline that needs --targets, without them",
)


@case("threads_one", OK, "--threads 1: works")
def _threads_one(ctx: Ctx) -> Scenario:
    ctx.good()
    return Scenario(
        ctx.protect("--threads", "1"), ctx.dst, sources=ctx.src, roundtrip=ctx.kit.protector
    )


@case("device_cpu_upper_case", (OK, FATAL), "--device CPU: accepted or a usage error")
def _device_upper(ctx: Ctx) -> Scenario:
    ctx.good()
    return Scenario(ctx.protect("--device", "CPU"), ctx.dst, sources=ctx.src)


@case("no_arguments", FATAL, "protect without arguments: usage")
def _no_arguments(ctx: Ctx) -> Scenario:
    return Scenario(["protect"], None)


@case("unknown_command", FATAL, "an unknown command: usage")
def _unknown_command(ctx: Ctx) -> Scenario:
    return Scenario(["protekt", "a", "b"], None)


# --- the protector (checkpoint) --------------------------------------------------------------


def _checkpoint(name: str, damage: Callable[[Path], None], outcome: str, **limits: Any) -> None:
    def build(ctx: Ctx) -> Scenario:
        ctx.good()
        protector = ctx.protector_copy()
        damage(protector)
        return Scenario(
            ctx.protect("--protector", str(protector)),
            ctx.dst,
            check=protected_count(ctx, 0),
            **limits,
        )

    case(name, FATAL, f"{outcome}: refused with a message, no image written")(build)


def _edit_config(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def damage(protector: Path) -> None:
        config = json.loads((protector / "config.json").read_text())
        changed = edit(config)
        (protector / "config.json").write_text(json.dumps(config if changed is None else changed))

    return damage


def _generator(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["config"]["generator"][key] = value

    return edit


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda protector: f.write(protector / name, data)


class _Marker:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


def _pickle_weights(protector: Path) -> None:
    (protector / "weights.safetensors").write_bytes(
        pickle.dumps(_Marker(protector.parent / "PWNED"))
    )


def _pickle_file(ctx: Ctx) -> Path:
    path = ctx.root / "protector.pt"
    torch.save({"weights": torch.zeros(3), "marker": _Marker(ctx.root / "PWNED")}, path)
    return path


def _drop_tensor(protector: Path) -> None:
    tensors = load_file(protector / "weights.safetensors")
    del tensors[sorted(tensors)[0]]
    save_file(tensors, protector / "weights.safetensors")


def _other_architecture(protector: Path) -> None:
    config = json.loads((protector / "config.json").read_text())
    config["config"]["generator"]["hidden_channels"] = 12
    (protector / "config.json").write_text(json.dumps(config))


_checkpoint(
    "config_unknown_key",
    _edit_config(lambda c: c["config"].update(bogus=1)),
    "config.json with an unknown config key",
)
_checkpoint(
    "config_unknown_generator_key", _edit_config(_generator("wings", 2)), "an unknown generator key"
)
_checkpoint(
    "config_missing_config", _edit_config(lambda c: c.pop("config")), "config.json without 'config'"
)
_checkpoint(
    "config_missing_format", _edit_config(lambda c: c.pop("format")), "config.json without 'format'"
)
_checkpoint(
    "config_wrong_format",
    _edit_config(lambda c: c.update(format="invprotect.raeg/99")),
    "an unknown format version",
)
_checkpoint(
    "config_levels_9",
    _edit_config(_generator("levels", 9)),
    "levels=9 (would allocate gigabytes)",
    time_limit=60,
    memory_cap_mb=3000,
)
_checkpoint("config_levels_negative", _edit_config(_generator("levels", -1)), "levels=-1")
_checkpoint("config_levels_string", _edit_config(_generator("levels", "2")), "levels='2'")
_checkpoint("config_levels_float", _edit_config(_generator("levels", 2.5)), "levels=2.5")
_checkpoint(
    "config_hidden_zero", _edit_config(_generator("hidden_channels", 0)), "hidden_channels=0"
)
_checkpoint(
    "config_huge_width",
    _edit_config(_generator("hidden_channels", 10**7)),
    "hidden_channels=10**7",
    time_limit=30,
    memory_cap_mb=3000,
)
_checkpoint(
    "config_unknown_subnet",
    _edit_config(_generator("subnet", "os.system")),
    "an unknown subnet name",
)
_checkpoint(
    "config_generator_list",
    _edit_config(lambda c: c["config"].update(generator=[1, 2])),
    "generator is a list",
)
_checkpoint("config_not_json", _write("config.json", b"{not json"), "config.json that is not JSON")
_checkpoint("config_json_list", _write("config.json", b"[1, 2]"), "config.json holding a list")
_checkpoint("config_empty", _write("config.json", b""), "an empty config.json")
_checkpoint(
    "config_not_utf8",
    _write("config.json", b'{"format": "\xff\xfe"}'),
    "config.json with non-UTF-8 bytes",
)
_checkpoint("config_missing", lambda p: (p / "config.json").unlink(), "config.json missing")
_checkpoint("weights_missing", lambda p: (p / "weights.safetensors").unlink(), "weights missing")
_checkpoint("weights_empty", _write("weights.safetensors", b""), "empty weights")
_checkpoint(
    "weights_truncated",
    lambda p: _write("weights.safetensors", truncated((p / "weights.safetensors").read_bytes()))(p),
    "truncated weights",
)
_checkpoint("weights_are_a_pickle", _pickle_weights, "a pickle as weights (never unpickled)")
_checkpoint("weights_missing_tensor", _drop_tensor, "weights without one tensor")
_checkpoint("weights_other_architecture", _other_architecture, "weights that do not fit the config")


@case("protector_is_a_pickle_file", FATAL, "--protector a .pt pickle: refused, never unpickled")
def _pickle_protector(ctx: Ctx) -> Scenario:
    ctx.good()
    return Scenario(
        ctx.protect("--protector", str(_pickle_file(ctx))), ctx.dst, check=protected_count(ctx, 0)
    )


@case("protector_is_an_image", FATAL, "--protector an image file")
def _image_protector(ctx: Ctx) -> Scenario:
    path = ctx.good()
    return Scenario(ctx.protect("--protector", str(path)), ctx.dst, check=protected_count(ctx, 0))


@case("protector_empty_folder", FATAL, "--protector an empty folder")
def _empty_protector(ctx: Ctx) -> Scenario:
    ctx.good()
    (ctx.root / "empty").mkdir()
    return Scenario(
        ctx.protect("--protector", str(ctx.root / "empty")), ctx.dst, check=protected_count(ctx, 0)
    )


@case("protector_symlink_loop", FATAL, "--protector a symlink to itself")
def _loop_protector(ctx: Ctx) -> Scenario:
    ctx.good()
    (ctx.root / "loop").symlink_to("loop")
    return Scenario(
        ctx.protect("--protector", str(ctx.root / "loop")), ctx.dst, check=protected_count(ctx, 0)
    )


@case("recover_with_damaged_protector", FATAL, "recover with a config.json that is not JSON")
def _recover_bad_protector(ctx: Ctx) -> Scenario:
    ctx.pool()
    protector = ctx.protector_copy()
    (protector / "config.json").write_text("{")
    return Scenario(
        ctx.recover("--protector", str(protector)), ctx.root / "rec", check=recovered_count(ctx, 0)
    )
