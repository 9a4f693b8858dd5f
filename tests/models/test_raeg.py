"""RAEG protector: protect/recover, presets, save/load, discriminator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from invprotect.checkpoint import CheckpointError, save_checkpoint
from invprotect.models import RAEG, RAEG_PRESETS, Discriminator, Protector, RAEGConfig
from invprotect.models.exact import ExactCodec
from tests.contracts import train_away_from_identity
from tests.tolerances import round_trip_tolerance


@pytest.fixture(scope="module")
def trained_raeg() -> RAEG:
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32")
    train_away_from_identity(
        raeg.generator, lambda: torch.rand(4, 3, 32, 32), forward=raeg.generate
    )
    return raeg.eval()


def test_protect_changes_images_and_recover_undoes_it(trained_raeg: RAEG) -> None:
    x = torch.rand(3, 3, 32, 32) * 0.35 + 0.05  # well inside [0, 1] after y = 2x + 0.1
    with torch.no_grad():
        protected = trained_raeg.protect(x)
        recovered = trained_raeg.recover(protected)
    assert protected.min() >= 0 and protected.max() <= 1
    assert (protected - x).abs().mean() > 0.05
    tolerance = round_trip_tolerance(trained_raeg.generator, torch.cat([x, protected]))
    assert (recovered - x).abs().max() <= tolerance  # float32 round-off only


def test_protected_images_are_clipped_so_recovery_of_clipped_pixels_is_approximate(
    trained_raeg: RAEG,
) -> None:
    x = torch.full((1, 3, 32, 32), 0.9)  # 2x + 0.1 leaves [0, 1]: clipping loses information
    with torch.no_grad():
        assert trained_raeg.generate(x).max() > 1.0
        assert trained_raeg.protect(x).max() == 1.0


def test_save_and_load_give_the_same_protector(trained_raeg: RAEG, tmp_path: Path) -> None:
    trained_raeg.metadata = {"note": "test"}
    trained_raeg.save(tmp_path / "key")
    loaded = RAEG.load(tmp_path / "key")
    assert loaded.config == trained_raeg.config and loaded.metadata == {"note": "test"}
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.protect(x), trained_raeg.protect(x))
    save_checkpoint(tmp_path / "other", {}, {"format": "invprotect.target/1"})
    with pytest.raises(CheckpointError, match="not a RAEG protector"):
        RAEG.load(tmp_path / "other")
    torch.save(trained_raeg.state_dict(), tmp_path / "key.pt")
    with pytest.raises(CheckpointError, match="never unpickles"):
        RAEG.load(tmp_path / "key.pt")


def test_the_key_holds_no_discriminator_and_keys_with_one_still_load(
    trained_raeg: RAEG, tmp_path: Path
) -> None:
    trained_raeg.save(tmp_path / "key")
    names = list(load_file(tmp_path / "key" / "weights.safetensors"))
    assert names and all(name.startswith("generator.") for name in names)
    settings = {"format": "invprotect.raeg/1", "config": trained_raeg.config.to_dict()}
    save_checkpoint(tmp_path / "old", trained_raeg.state_dict(), settings)  # as before
    old, key = RAEG.load(tmp_path / "old"), RAEG.load(tmp_path / "key")
    assert old.key_id == key.key_id == trained_raeg.key_id
    for name, tensor in trained_raeg.discriminator.state_dict().items():
        assert torch.equal(old.discriminator.state_dict()[name], tensor), name
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old.protect(x), key.protect(x))
    save_checkpoint(tmp_path / "empty", {}, settings)  # the generator is still required
    with pytest.raises(CheckpointError, match="does not belong"):
        RAEG.load(tmp_path / "empty")


def test_presets_and_config_round_trip() -> None:
    assert set(RAEG_PRESETS) == {"paper", "cpu-32", "paper-integer", "cpu-32-integer"}
    for name in ("paper", "cpu-32"):  # the integer presets differ only in their blocks
        integer = RAEG_PRESETS[f"{name}-integer"]
        assert integer.generator.coupling == "integer"
        assert replace(integer.generator, coupling="affine") == RAEG_PRESETS[name].generator
    paper = RAEG_PRESETS["paper"]
    assert (paper.image_size, paper.generator.levels, paper.generator.blocks_per_level) == (
        256,
        3,
        4,
    )
    for config in RAEG_PRESETS.values():
        assert RAEGConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown preset 'cpu'"):
        RAEG.from_preset("cpu")
    assert RAEG.from_preset("cpu-32", image_size=64).config.image_size == 64


def test_keys_saved_before_integer_networks_load_as_dsac_networks() -> None:
    saved = RAEG_PRESETS["cpu-32"].to_dict()
    del saved["generator"]["coupling"]  # as every config.json written before the field
    assert RAEGConfig.from_dict(saved) == RAEG_PRESETS["cpu-32"]
    saved["generator"]["coupling"] = "cubic"
    with pytest.raises(ValueError, match="coupling must be one of"):
        RAEGConfig.from_dict(saved)


def test_discriminator_scores_any_size_with_spectral_norm() -> None:
    critic = Discriminator(width=8, depth=3)
    assert critic(torch.rand(2, 3, 32, 32)).shape == (2,)
    assert critic(torch.rand(1, 3, 40, 24)).shape == (1,)
    normalised = [m for m in critic.modules() if hasattr(m, "parametrizations")]
    assert len(normalised) == 4
    with pytest.raises(ValueError, match="positive"):
        Discriminator(depth=0)


def test_protector_is_an_abstract_contract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        Protector()  # type: ignore[abstract]
    assert isinstance(RAEG.from_preset("cpu-32"), Protector)


def test_encoder_decoder_ablation_generator(tmp_path: Path) -> None:
    torch.manual_seed(0)
    raeg = RAEG.from_preset("cpu-32", architecture="encoder-decoder")
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(raeg.eval().protect(x), x)  # both halves start as the identity
    optimiser = torch.optim.Adam(raeg.generator.parameters(), lr=1e-3)
    raeg.train()
    for _ in range(3):  # protection away from x, recovery back to x
        protected = raeg.generate(x)
        loss = (protected - (1 - x)).abs().mean() + (
            raeg.generator.inverse(protected) - x
        ).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    for half in (raeg.generator.encoder, raeg.generator.decoder):
        assert half.head.weight.abs().sum() > 0  # gradients reached both networks
    raeg.eval().save(tmp_path / "ed")
    loaded = RAEG.load(tmp_path / "ed")
    assert loaded.config.architecture == "encoder-decoder"
    assert torch.equal(loaded.protect(x), raeg.protect(x))
    # not invertible: the decoder only approximates, and the exactness residual closes the gap
    originals = (x * 255).round().to(torch.uint8)
    protected = (raeg.protect(originals.float() / 255) * 255).round().to(torch.uint8)
    codec = ExactCodec(raeg)
    assert torch.equal(codec.restore(protected, codec.residuals(originals, protected)), originals)
    with pytest.raises(ValueError, match="architecture"):
        RAEG.from_preset("cpu-32", architecture="transformer")
