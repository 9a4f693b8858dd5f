"""Contract tests for every registered target architecture, the wrapper and the ensemble."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from invprotect.checkpoint import CheckpointError, save_checkpoint
from invprotect.targets import Classifier, Ensemble, create_arch, list_archs

CLASSES = [f"c{i}" for i in range(10)]


@pytest.mark.parametrize("arch", list_archs())
def test_architecture_contract(arch: str, tmp_path: Path) -> None:
    model = Classifier(arch, CLASSES, input_size=32)
    x = torch.rand(2, 3, 32, 32)
    logits = model(x)
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    model.eval()
    model.save(tmp_path / arch)
    loaded = Classifier.load(tmp_path / arch)
    assert torch.equal(loaded(x), model(x))
    assert loaded.config() == model.config()


def test_paper_architectures_are_adapted_to_small_inputs() -> None:
    net = create_arch("resnet50", 10, 32)
    assert net.conv1.stride == (1, 1) and isinstance(net.maxpool, torch.nn.Identity)
    assert create_arch("resnet50", 10, 224).conv1.stride == (2, 2)


def test_normalisation_lives_inside_the_wrapper() -> None:
    model = Classifier("vgg_small", CLASSES, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    seen = []
    model.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model(torch.full((1, 3, 32, 32), 0.75))
    assert torch.allclose(seen[0], torch.ones(1, 3, 32, 32))


def test_bad_inputs_and_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RGB images"):
        Classifier("vgg_small", CLASSES)(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="at least 2 classes"):
        Classifier("vgg_small", ["only"])
    with pytest.raises(KeyError, match="did you mean 'vgg_small'"):
        Classifier("vgg_smal", CLASSES)
    save_checkpoint(tmp_path / "other", {}, {"format": "something-else"})
    with pytest.raises(CheckpointError, match="not a target classifier"):
        Classifier.load(tmp_path / "other")


def test_ensemble_combines_frozen_members_and_passes_gradients_to_the_input() -> None:
    members = [Classifier(a, CLASSES).eval() for a in ("vgg_small", "resnet_small")]
    x = torch.rand(3, 3, 32, 32, requires_grad=True)
    by_logits = Ensemble(members, combine="logits")
    expected = (members[0](x) + members[1](x)) / 2
    torch.testing.assert_close(by_logits(x), expected)
    by_probs = Ensemble(members, combine="probs")
    probs = (members[0](x).softmax(1) + members[1](x).softmax(1)) / 2
    torch.testing.assert_close(by_probs(x).exp(), probs)
    by_probs.train()
    assert not any(m.training for m in by_probs.members)
    by_probs(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in by_probs.parameters())
    with pytest.raises(ValueError, match="disagree on the classes"):
        Ensemble([members[0], Classifier("vgg_small", CLASSES[:5])])
