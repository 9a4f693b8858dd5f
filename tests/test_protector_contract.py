"""Contract tests run on every registered protector (each checkpoint format of `PROTECTORS`).

Each protector really changes the images: RAEG's generator is trained away from the
identity, the baselines attack a (fixed, untrained) classifier. Through the folder
pipeline, on real CIFAR-10 files plus odd sizes and modes, an untouched file comes back
bit for bit, or, for a protector that declares a bound (`recovery_error_bound`), within
it and reported as approximate; the key id survives save and load; an altered file is
reported as altered, and as not the original.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invprotect.baselines import RAE, RIT
from invprotect.checkpoint import CONFIG_FILE, CheckpointError
from invprotect.files.images import pixel_digest
from invprotect.files.manifest import MANIFEST, read_manifest
from invprotect.files.png import encode_png, iter_chunks
from invprotect.files.protect import protect_tree
from invprotect.files.recover import recover_tree
from invprotect.models import RAEG
from invprotect.models.protector import PROTECTORS, Protector, list_protector_formats
from invprotect.protectors import load_protector
from invprotect.record import RECORD_CHUNK
from invprotect.targets import Classifier
from tests.contracts import train_away_from_identity

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FAST_IGSM = {"epsilon": 4 / 255, "steps": 3}
MODES_ONLY_EXACT = {"ship/gray.png", "ship/palette.png"}
"""Files of ``mixed_tree`` in modes L and P: only an exact recovery can be rebuilt in them."""


@functools.cache
def _target() -> Classifier:
    """The (untrained) classifier the baselines attack; fixed by its seed."""
    torch.manual_seed(0)
    return Classifier("mobilenet_small", CLASSES).eval()


def _raeg() -> RAEG:
    torch.manual_seed(1)
    raeg = RAEG.from_preset(
        "cpu-32", generator={"levels": 2, "blocks_per_level": 1, "hidden_channels": 8}
    )
    train_away_from_identity(
        raeg.generator, lambda: torch.rand(4, 3, 32, 32), forward=raeg.generate
    )
    return raeg.eval()


@dataclass(frozen=True)
class ProtectorCase:
    """A registered checkpoint format and how the tests build a protector of it."""

    format: str
    make: Callable[[], Protector]
    exact: bool
    """Whether it declares bit-exact recovery (``recovery_error_bound == 0``)."""

    @property
    def id(self) -> str:
        return self.format.removeprefix("invprotect.")


CASES = [
    ProtectorCase("invprotect.raeg/1", _raeg, exact=True),
    ProtectorCase("invprotect.rae/1", lambda: RAE(_target(), "igsm", FAST_IGSM), exact=False),
    ProtectorCase("invprotect.rit/1", lambda: RIT(_target(), "igsm", FAST_IGSM), exact=True),
]
IDS = [case.id for case in CASES]
APPROXIMATE = [case for case in CASES if not case.exact]


@functools.cache
def _built(case_id: str) -> Protector:
    return CASES[IDS.index(case_id)].make()


def _protector(case: ProtectorCase) -> Protector:
    """The case's protector, built once per session."""
    return _built(case.id)


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def test_every_registered_protector_is_covered() -> None:
    assert {case.format for case in CASES} == set(list_protector_formats())
    for case in CASES:
        assert PROTECTORS.get(case.format).checkpoint_format == case.format
        assert type(case.make()) is PROTECTORS.get(case.format)
        assert case.exact == (_protector(case).recovery_error_bound == 0), case.id


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_protection_really_changes_the_images(case: ProtectorCase, cifar10_root: Path) -> None:
    paths = sorted((cifar10_root / "test" / "cat").glob("*.jpg"))[:4]
    originals = torch.stack([torch.from_numpy(_rgb(p)).permute(2, 0, 1) for p in paths])
    originals = originals.to(torch.uint8)
    protected, records = _protector(case).encode(originals)
    assert protected.dtype == torch.uint8 and protected.shape == originals.shape
    assert len(records) == len(paths)
    changed = (protected.float() - originals.float()).abs().mean(dim=(1, 2, 3))
    assert (changed > 0.2).all(), changed  # mean levels; measured 0.34 (RIT) to 68 (RAEG)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_round_trip_through_the_folder_pipeline(
    case: ProtectorCase, mixed_tree: Path, tmp_path: Path
) -> None:
    protector = _protector(case)
    report = protect_tree(mixed_tree, tmp_path / "prt", protector, batch_size=4)
    assert report.ok and report.written == 8, report.failed
    protector.save(tmp_path / "key")
    key = load_protector(tmp_path / "key")  # the recovering side: the saved key alone
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", key)
    assert not back.altered and not back.mismatched and not back.warnings
    bound = protector.recovery_error_bound
    if bound == 0:
        assert back.ok and back.written == 8 and not back.approximate
    else:  # approximate: every file written in its mode, listed as approximate
        assert back.ok and back.written == 8 and back.approximate
    for relative, entry in read_manifest(tmp_path / "prt" / MANIFEST).items():
        original, recovered = mixed_tree / relative, tmp_path / "rec" / entry["output"]
        assert Image.open(recovered).mode == Image.open(original).mode, relative
        if entry["output"] not in back.approximate:
            assert pixel_digest(Image.open(recovered)) == pixel_digest(Image.open(original))
            continue
        rms = np.sqrt(np.mean((_rgb(recovered) - _rgb(original)) ** 2))
        assert 0 < rms <= bound, (relative, rms, bound)  # RAE-IGSM: measured 2.1-2.4 of 4


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_key_id_is_stable_across_save_and_load(
    case: ProtectorCase, tmp_path: Path, cifar10_root: Path
) -> None:
    protector = _protector(case)
    path = protector.save(tmp_path / "key")
    settings = json.loads((path / CONFIG_FILE).read_text())
    assert settings["format"] == case.format == type(protector).checkpoint_format
    by_class, by_format = type(protector).load(path), load_protector(path)
    assert type(by_class) is type(by_format) is type(protector)
    assert by_class.key_id == by_format.key_id == protector.key_id
    assert len(protector.key_id) == 64 and protector.key_id != protector.key_material().hex()
    if type(protector).attacks_targets:
        assert not by_class.can_protect  # loaded recover-only
        by_class.use_targets(_target())
    assert by_class.can_protect
    image = torch.from_numpy(_rgb(sorted((cifar10_root / "test" / "ship").glob("*.jpg"))[0]))
    originals = image.permute(2, 0, 1)[None].to(torch.uint8)
    first, second = protector.encode(originals), by_class.encode(originals)
    assert torch.equal(first[0], second[0]) and first[1] == second[1]  # the same protector
    for other in CASES:
        if other.format != case.format:
            with pytest.raises(
                CheckpointError, match=f"not a {PROTECTORS.get(other.format).__name__}"
            ):
                PROTECTORS.get(other.format).load(path)


def test_key_ids_tell_the_protectors_apart() -> None:
    assert len({_protector(case).key_id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_an_altered_protected_file_is_detected(
    case: ProtectorCase, mixed_tree: Path, tmp_path: Path
) -> None:
    protector = _protector(case)
    protect_tree(mixed_tree, tmp_path / "prt", protector, batch_size=4)
    target = tmp_path / "prt" / "cat" / sorted(p.name for p in (mixed_tree / "cat").iterdir())[0]
    target = target.with_suffix(".png")
    record = dict(iter_chunks(target.read_bytes()))[RECORD_CHUNK]
    pixels = np.asarray(Image.open(target)).copy()
    pixels[5, 7, 1] ^= 4  # one pixel, record kept: only the record's digest can tell
    target.write_bytes(encode_png(pixels, {RECORD_CHUNK: record}))
    relative = target.relative_to(tmp_path / "prt").as_posix()
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", protector)
    assert back.altered == [relative] and back.mismatched == [relative]
    assert (tmp_path / "rec" / relative).is_file()  # written, approximately


@pytest.mark.parametrize("case", APPROXIMATE, ids=[case.id for case in APPROXIMATE])
def test_approximate_recovery_keeps_gray_and_palette_files(
    case: ProtectorCase, mixed_tree: Path, tmp_path: Path
) -> None:
    protect_tree(mixed_tree, tmp_path / "prt", _protector(case), batch_size=4)
    back = recover_tree(tmp_path / "prt", tmp_path / "rec", _protector(case))
    assert not back.failed
    for relative in MODES_ONLY_EXACT:
        assert relative in back.approximate
        original = Image.open(mixed_tree / relative)
        recovered = Image.open(tmp_path / "rec" / relative)
        assert recovered.mode == original.mode and recovered.size == original.size
        # close to the original, within what the mode allows
        difference = np.abs(
            np.asarray(recovered.convert("RGB"), dtype=float)
            - np.asarray(original.convert("RGB"), dtype=float)
        )
        assert difference.mean() < 16, (relative, difference.mean())
