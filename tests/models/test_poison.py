"""The targeted poison on top of RAEG: it moves the classifiers, and recovery stays bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.data import load_image_set, scan_image_folder
from invprotect.models import RAEG
from invprotect.models.poison import PoisonConfig, TargetedPoison
from invprotect.protectors import load_protector
from invprotect.targets import Classifier
from invprotect.tiles import encode_tiles
from tests.contracts import tiny_raeg

REFERENCE = Path(__file__).parents[2] / "benchmarks" / "reference" / "cifar10-h200"
"""A committed CIFAR-10 target (an untrained classifier's output does not depend on its input)."""
COMDEFEND = REFERENCE.parent / "proxy" / "comdefend-seen"
"""A committed ComDefend, for a poison that sees the images through it."""


@pytest.fixture(scope="module")
def originals(cifar10_root: Path) -> torch.Tensor:
    index = scan_image_folder(cifar10_root / "test")
    index.samples = index.samples[::500][:16]
    return load_image_set(index, None, None).images


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(REFERENCE / "resnet_small")


def _poisoned(steps: int, classifier: Classifier) -> RAEG:
    raeg = tiny_raeg(0)
    raeg.use_poison(TargetedPoison(classifier, 32, PoisonConfig(steps=steps)))
    return raeg


def test_poisoned_images_recover_bit_for_bit(
    originals: torch.Tensor, classifier: Classifier
) -> None:
    plain = tiny_raeg(0)
    network, _ = plain.encode(originals)
    poisoned = _poisoned(6, classifier)
    assert poisoned.poisons and not plain.poisons
    pixels, records = poisoned.encode(originals)
    change = (pixels.int() - originals.int()).abs()
    assert change.max() <= 8  # the poison's budget around the original
    assert (pixels != network).float().mean() > 0.3  # it is not the network's image
    restored, exact = poisoned.decode(pixels, records)
    assert all(exact) and torch.equal(restored, originals)
    restored, _ = plain.decode(pixels, records)  # recovery needs the key alone
    assert torch.equal(restored, originals)
    again, records_again = poisoned.encode(originals)  # a rerun writes the same files
    assert torch.equal(again, pixels) and records_again == records


def test_poison_pushes_the_classifiers_to_the_next_class(
    originals: torch.Tensor, classifier: Classifier
) -> None:
    with torch.no_grad():
        wanted = (classifier(originals.float() / 255).argmax(1) + 1) % len(classifier.classes)
    pixels, _ = _poisoned(10, classifier).encode(originals)
    network, _ = tiny_raeg(0).encode(originals)
    with torch.no_grad():
        hit = (classifier(pixels.float() / 255).argmax(1) == wanted).float().mean()
        before = (classifier(network.float() / 255).argmax(1) == wanted).float().mean()
    assert hit >= 0.75 and hit >= before + 0.4


def test_poison_pushes_each_image_from_its_label_where_the_classifiers_know_it(
    originals: torch.Tensor, classifier: Classifier
) -> None:
    with torch.no_grad():
        seen = classifier(originals.float() / 255).argmax(1)
    count = len(classifier.classes)
    # the first 8 labelled one class past what the classifier sees: pushed two classes on
    labels = [classifier.classes[(int(c) + 1) % count] for c in seen[:8]]
    labels += [None] * 4 + ["zebra"] * 4  # no label, and a class the classifier does not know
    raeg = _poisoned(10, classifier)
    pixels, records = raeg.encode(originals, labels)
    unlabelled, _ = raeg.encode(originals)
    with torch.no_grad():
        got = classifier(pixels.float() / 255).argmax(1)
        without = classifier(unlabelled.float() / 255).argmax(1)
    two_on = (seen[:8] + 2) % count
    assert (got[:8] == two_on).float().mean() >= 0.5 > (without[:8] == two_on).float().mean()
    assert torch.equal(got[8:], without[8:])  # no usable label: pushed as without labels
    assert torch.equal(raeg.decode(pixels, records)[0], originals)
    with pytest.raises(ValueError, match="3 labels for 16 images"):
        raeg.encode(originals, ["cat"] * 3)


def test_psnr_budget_holds_each_images_psnr_and_moves_values_where_it_pays(
    originals: torch.Tensor, classifier: Classifier
) -> None:
    budget = 32.0
    raeg = tiny_raeg(0)
    raeg.use_poison(TargetedPoison(classifier, 32, PoisonConfig(steps=10, psnr=budget)))
    pixels, records = raeg.encode(originals)
    change = pixels.float() - originals.float()
    # the L2 ball holds the budget before rounding; rounding adds at most half a level per value
    rms_bound = 255 * 10 ** (-budget / 20) + 0.5
    assert change.square().flatten(1).mean(1).sqrt().max() <= rms_bound
    assert change.abs().max() <= 24  # the per-value cap of a PSNR budget's default
    assert (change.abs() > 8).any()  # not an L-inf ball of 8: the change goes where it pays
    with torch.no_grad():
        wanted = (classifier(originals.float() / 255).argmax(1) + 1) % len(classifier.classes)
        hit = (classifier(pixels.float() / 255).argmax(1) == wanted).float().mean()
    assert hit >= 0.75
    restored, exact = raeg.decode(pixels, records)
    assert all(exact) and torch.equal(restored, originals)


def test_poison_steps_see_the_images_through_each_defence_of_through(
    tmp_path: Path, originals: torch.Tensor, classifier: Classifier
) -> None:
    seen = []

    def spy(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.requires_grad)
        return images.flip(-2)  # a view the classifier must be fooled through as well

    poison = TargetedPoison(classifier, 32, PoisonConfig(steps=3), views=[spy])
    poison.refine(originals[:2], originals[:2].float())
    assert seen == [True] * 3  # once per step, on the images being optimised

    key = tiny_raeg(0).save(tmp_path / "key")
    target = classifier.save(tmp_path / "target")
    through = ("jpeg:quality=10", "grayscale", f"comdefend:weights={COMDEFEND}")
    loaded = load_protector(key, "cpu", [target], PoisonConfig(steps=1, through=through))
    assert isinstance(loaded, RAEG) and loaded.poison is not None
    assert len(loaded.poison.views) == 3
    for spec, message in [("median_filter", "takes jpeg:quality=Q"), ("jpgg", "did you mean")]:
        with pytest.raises(ValueError, match=message):
            load_protector(key, "cpu", [target], PoisonConfig(steps=1, through=(spec,)))


def test_poison_refuses_images_of_another_size(classifier: Classifier) -> None:
    raeg = _poisoned(2, classifier)
    large = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    with pytest.raises(ValueError, match="32x32 images; this image is 64x64"):
        raeg.encode(large)
    with pytest.raises(ValueError, match="protected as tiles"):
        encode_tiles(raeg, large[0], 32)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": -1}, "steps"),
        ({"epsilon": 0}, "epsilon"),
        ({"shift": 1.5}, "shift"),
        ({"psnr": 5.0}, "psnr"),
        ({"psnr": "32"}, "psnr"),
        ({"through": ["grayscale"]}, "through"),
    ],
)
def test_poison_config_refuses_bad_settings(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoisonConfig(**settings)


def test_load_protector_refuses_a_poison_it_cannot_add(
    tmp_path: Path, classifier: Classifier
) -> None:
    key = tiny_raeg(0).save(tmp_path / "key")
    target = classifier.save(tmp_path / "target")
    with pytest.raises(ValueError, match="pass them with --targets"):
        load_protector(key, "cpu", [], PoisonConfig(steps=2))
    with pytest.raises(ValueError, match="cannot add a targeted poison"):
        load_protector("rae-igsm", "cpu", [target], PoisonConfig(steps=2))
    assert load_protector(key, "cpu", [target], PoisonConfig(steps=2)).poisons
    assert not load_protector(key, "cpu", [target], PoisonConfig(steps=0)).poisons
