"""Checkpoints as safetensors weights plus a JSON sidecar; never pickle.

A checkpoint is a directory holding ``weights.safetensors`` (tensors only) and
``config.json`` (everything else: architecture, classes, metrics, ...). Both are
written atomically (temporary file, then rename), so an interrupted save never
leaves a half-written checkpoint behind. Loading only ever parses safetensors and
JSON: a pickled ``.pt``/``.pth`` file is refused, because unpickling a file runs
whatever code it contains.

The config names what wrote it in one field, ``format``: ``"NAME/VERSION"``, for
example ``"invprotect.raeg/1"``. `checkpoint_format` reads it, and reads the older
dialect (``kind`` and ``version`` fields) as the same string.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from invprotect.files.atomic import atomic_write_bytes

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
_PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin"}


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, or not in the safetensors + JSON format."""


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], config: dict[str, Any]) -> Path:
    """Save ``tensors`` and a JSON-serialisable ``config`` to the checkpoint directory ``path``.

    Returns:
        The checkpoint directory.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    contiguous = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".weights.", suffix=".tmp")
    os.close(handle)
    try:
        save_file(contiguous, tmp)
        os.replace(tmp, directory / WEIGHTS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(directory / CONFIG_FILE, text.encode())
    return directory


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load the tensors and the config of the checkpoint directory ``path`` (on the CPU).

    Raises:
        CheckpointError: If ``path`` is a pickle file, is not a checkpoint directory, or
            its files are missing or corrupt.
    """
    directory = Path(path)
    if directory.is_file():
        if directory.suffix.lower() in _PICKLE_SUFFIXES:
            raise CheckpointError(
                f"{directory} looks like a pickled PyTorch file; invprotect never unpickles "
                "(it can run arbitrary code). Save weights with safetensors instead."
            )
        raise CheckpointError(
            f"{directory} is a file; an invprotect checkpoint is a directory holding "
            f"{WEIGHTS_FILE} and {CONFIG_FILE}"
        )
    if not directory.is_dir():
        raise CheckpointError(f"no checkpoint at {directory}")
    weights, config = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    for required in (weights, config):
        if not required.is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {required.name} missing")
    try:
        tensors = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights} is not a valid safetensors file: {error}") from None
    try:
        settings = json.loads(config.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{config} is not UTF-8 text: {error}") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise CheckpointError(f"{config} is not valid JSON: {error}") from None
    except OSError as error:
        raise CheckpointError(f"{config} cannot be read: {error.strerror}") from None
    if not isinstance(settings, dict):
        raise CheckpointError(f"{config} must hold a JSON object, got {type(settings).__name__}")
    return tensors, settings


def checkpoint_format(config: Mapping[str, Any]) -> Any:
    """The format a checkpoint's config declares, whichever header dialect it uses.

    Returns:
        The ``format`` field; for a config in the older dialect (``kind`` and
        ``version``, as ComDefend and the learned inverse wrote them), the string
        ``"KIND/VERSION"``; ``None`` when neither is there. Any other JSON value is
        returned as it is, for the caller's message.

    Example:
        >>> checkpoint_format({"format": "invprotect.raeg/1"})
        'invprotect.raeg/1'
        >>> checkpoint_format({"kind": "invprotect.defences.comdefend", "version": 1})
        'invprotect.defences.comdefend/1'
    """
    if "format" in config:
        return config["format"]
    if "kind" in config and "version" in config:
        return f"{config['kind']}/{config['version']}"
    return config.get("kind")


def load_module(
    module: nn.Module, tensors: Mapping[str, Tensor], path: str | Path, what: str
) -> None:
    """Load ``tensors`` into ``module`` (strictly), as a checkpoint's weights.

    Args:
        module: The freshly built module.
        tensors: The weights read from the checkpoint.
        path: The checkpoint, for the message.
        what: What the weights must match, for the message (``"the architecture"``).

    Raises:
        CheckpointError: If a name or a shape does not match; the message quotes the
            first two problems PyTorch found.
    """
    try:
        module.load_state_dict(dict(tensors), strict=True)
    except RuntimeError as error:
        problems = [line.strip() for line in str(error).splitlines()[1:] if line.strip()]
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise CheckpointError(
            f"{path}: weights do not match {what}: {'; '.join(problems[:2])}{more}"
        ) from None


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    """An optimiser's per-parameter state as flat tensors (``PREFIX.INDEX.NAME``) for safetensors.

    Scalar state (such as Adam's step count) is stored as a 0-d tensor.
    """
    tensors: dict[str, Tensor] = {}
    for index, state in optimizer.state_dict()["state"].items():
        for name, value in state.items():
            tensors[f"{prefix}.{index}.{name}"] = torch.as_tensor(value)
    return tensors


def load_optimizer_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str
) -> None:
    """Restore the state written by `optimizer_tensors` into a freshly built optimiser."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        head, _, rest = key.partition(".")
        if head != prefix:
            continue
        index, _, name = rest.partition(".")
        state.setdefault(int(index), {})[name] = value
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
