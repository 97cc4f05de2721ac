"""The signed model artifact: publish, verify, refuse anything altered."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.models import FeatureSpec, builtin_spec_path, load_spec
from fedctr.privacy.signing import save_public_key
from fedctr.server.registry import (
    ArtifactNotFound,
    ArtifactTampered,
    CardFieldError,
    ModelCard,
    ModelCardFields,
    PartnerProvenance,
    SpecMismatchError,
    build_verify_parser,
    list_versions,
    load_verified,
    publish_model,
    read_latest,
    verify_model,
    verify_model_main,
)
from fedctr.server.registry.examples import example_card, random_model


def random_inputs(spec: FeatureSpec, n: int = 32, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x_cat = torch.stack([torch.randint(0, b, (n,), generator=g) for b in spec.bucket_sizes], dim=1)
    x_num = torch.randn(n, spec.num_numeric, generator=g)
    x_dense = torch.randn(n, spec.dense_dim(), generator=g)
    return x_cat, x_num, x_dense


@pytest.fixture
def spec() -> FeatureSpec:
    return load_spec(builtin_spec_path("demo"))


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def published(tmp_path: Path, spec: FeatureSpec, key: Ed25519PrivateKey):
    model = random_model(spec)
    result = publish_model(
        registry_dir=tmp_path / "registry",
        model=model,
        spec=spec,
        card=example_card(),
        signing_key=key,
        created_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
    return model, result


def test_publish_writes_versioned_layout_and_latest(published, spec, tmp_path) -> None:
    """A publish writes safetensors + card + signature under models/<version> and moves LATEST."""
    _, result = published
    registry = tmp_path / "registry"
    assert result.version.startswith("v0001-") and result.version[6:] == result.weights_sha256[:12]
    assert read_latest(registry) == result.version
    assert sorted(p.name for p in result.path.iterdir()) == [
        "card.json",
        "card.sig",
        "model.safetensors",
    ]
    header_len = int.from_bytes((result.path / "model.safetensors").read_bytes()[:8], "little")
    assert 0 < header_len < 1 << 20  # a safetensors header, not a pickle
    card = json.loads((result.path / "card.json").read_text())
    assert card["weights"]["sha256"] == result.weights_sha256
    assert card["feature_spec"]["hash"] == spec.spec_hash
    assert card["feature_spec"]["spec"] == spec.to_dict()
    assert card["model"]["name"] == "deepfm"
    assert card["privacy"]["num_partners"] == 3
    assert card["privacy"]["partners"][0]["unit_of_privacy"] == "example"
    assert card["serving"]["non_personalized"]["user_columns"] == [
        "user_segment",
        "user_visits_7d",
    ]
    assert card["created_at"] == "2025-01-02T00:00:00+00:00"


def test_loaded_model_scores_like_the_published_one(published, spec, key, tmp_path) -> None:
    """load_verified rebuilds the model in eval mode with identical outputs."""
    model, result = published
    loaded = load_verified(
        tmp_path / "registry", key.public_key(), expected_spec_hash=spec.spec_hash
    )
    inputs = random_inputs(spec)
    assert loaded.version == result.version and not loaded.model.training
    assert loaded.card_sha256 == result.card_sha256
    torch.testing.assert_close(loaded.model(*inputs), model(*inputs), rtol=0, atol=0)


def test_the_loaded_card_is_the_typed_signed_card(published, key, tmp_path) -> None:
    """LoadedModel.card is a ModelCard that writes back the signed card.json unchanged."""
    _, result = published
    loaded = load_verified(result.path, key.public_key(), expected_spec_hash=None)
    assert isinstance(loaded.card, ModelCard)
    assert loaded.card.to_json() == json.loads((result.path / "card.json").read_text())
    assert loaded.card.model_name == "deepfm" and loaded.card.rounds == 3
    assert [p.partner_id for p in loaded.card.partners] == ["partner-0", "partner-1", "partner-2"]
    assert loaded.card.serving == example_card().serving


@pytest.mark.parametrize("name", ["lr", "fm", "deepfm", "dcnv2", "fusion"])
def test_every_model_type_round_trips(name, spec, key, tmp_path) -> None:
    """Each registered model publishes and loads back bit-identically."""
    model = random_model(spec, name)
    result = publish_model(
        registry_dir=tmp_path, model=model, spec=spec, card=example_card(), signing_key=key
    )
    loaded = load_verified(result.path, key.public_key(), expected_spec_hash=None)
    inputs = random_inputs(spec)
    torch.testing.assert_close(loaded.model(*inputs), model(*inputs), rtol=0, atol=0)


def test_second_publish_gets_next_version(published, spec, key, tmp_path) -> None:
    """Versions are monotonic and LATEST follows the newest."""
    _, first = published
    second = publish_model(
        registry_dir=tmp_path / "registry",
        model=random_model(spec, seed=5),
        spec=spec,
        card=example_card(),
        signing_key=key,
    )
    assert second.version.startswith("v0002-")
    assert list_versions(tmp_path / "registry") == [first.version, second.version]
    assert read_latest(tmp_path / "registry") == second.version


def test_one_flipped_weight_byte_fails(published, key, tmp_path) -> None:
    """Changing a single byte of model.safetensors makes verification fail."""
    _, result = published
    weights = result.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactTampered):
        load_verified(tmp_path / "registry", key.public_key(), expected_spec_hash=None)


def test_edited_card_fails(published, key, tmp_path) -> None:
    """Editing the card (here a partner's epsilon) breaks the signature."""
    _, result = published
    card_path = result.path / "card.json"
    card = json.loads(card_path.read_text())
    card["privacy"]["partners"][0]["epsilon"] = 0.1
    card_path.write_text(json.dumps(card))
    with pytest.raises(ArtifactTampered):
        load_verified(result.path, key.public_key(), expected_spec_hash=None)


def test_wrong_key_and_missing_signature_fail(published, tmp_path, key) -> None:
    """Another key's public half, or no card.sig at all, is refused the same opaque way."""
    _, result = published
    with pytest.raises(ArtifactTampered) as wrong:
        load_verified(
            result.path, Ed25519PrivateKey.generate().public_key(), expected_spec_hash=None
        )
    (result.path / "card.sig").unlink()
    with pytest.raises(ArtifactTampered) as unsigned:
        load_verified(result.path, key.public_key(), expected_spec_hash=None)
    assert str(wrong.value) == str(unsigned.value)


def test_spec_mismatch_fails(published, key, tmp_path) -> None:
    """A model trained for another spec is refused with both hashes named."""
    other = load_spec(builtin_spec_path("criteo_attribution"))
    with pytest.raises(SpecMismatchError, match=other.spec_hash[:12]):
        load_verified(tmp_path / "registry", key.public_key(), expected_spec_hash=other.spec_hash)


def test_publishing_with_a_wrong_spec_is_refused(spec, key, tmp_path) -> None:
    """The publisher refuses a model built for another spec."""
    other = load_spec(builtin_spec_path("criteo_attribution"))
    with pytest.raises(SpecMismatchError):
        publish_model(
            registry_dir=tmp_path,
            model=random_model(spec),
            spec=other,
            card=example_card(),
            signing_key=key,
        )


def test_rollback_under_a_newer_name_fails(published, spec, key, tmp_path) -> None:
    """An authentic older version copied over a newer one is refused."""
    _, first = published
    second = publish_model(
        registry_dir=tmp_path / "registry",
        model=random_model(spec, seed=9),
        spec=spec,
        card=example_card(),
        signing_key=key,
    )
    shutil.rmtree(second.path)
    shutil.copytree(first.path, second.path)
    with pytest.raises(ArtifactTampered):
        load_verified(tmp_path / "registry", key.public_key(), expected_spec_hash=None)


def test_missing_registry_is_not_found(tmp_path, key) -> None:
    """An empty directory has no model to load."""
    with pytest.raises(ArtifactNotFound):
        load_verified(tmp_path, key.public_key(), expected_spec_hash=None)


@pytest.mark.parametrize(
    "change",
    [
        {"metrics": {"auc": float("nan")}},
        {"rounds": -1},
        {"serving": "0.1"},
    ],
)
def test_card_fields_are_validated(change) -> None:
    """Non-finite metrics, negative rounds and wrong types are refused at construction."""
    base = example_card()
    kwargs = {f: getattr(base, f) for f in base.__dataclass_fields__} | change
    with pytest.raises(CardFieldError):
        ModelCardFields(**kwargs)


def test_partner_provenance_is_validated() -> None:
    """An unknown accountant or delta outside (0, 1) is refused."""
    with pytest.raises(CardFieldError, match="accountant"):
        PartnerProvenance(
            partner_id="a",
            epsilon=1.0,
            delta=1e-5,
            accountant="moments",
            unit_of_privacy="example",
            dp_implementation="opacus-ghost",
            rounds_contributed=1,
        )
    with pytest.raises(CardFieldError, match="delta"):
        PartnerProvenance(
            partner_id="a",
            epsilon=1.0,
            delta=1.5,
            accountant="rdp",
            unit_of_privacy="example",
            dp_implementation="opacus-ghost",
            rounds_contributed=1,
        )


def test_verify_model_cli_verdicts(published, key, tmp_path, capsys) -> None:
    """fedctr verify-model: 0 and OK when intact; 1 and FAILED after a byte flip or wrong spec."""
    _, result = published
    pub = save_public_key(key, tmp_path / "platform.pub")
    registry = str(tmp_path / "registry")
    assert verify_model_main([registry, "--public-key", str(pub), "--spec", "demo"]) == 0
    assert "OK  " + result.version in capsys.readouterr().out
    assert (
        verify_model_main([registry, "--public-key", str(pub), "--spec", "criteo_attribution"]) == 1
    )
    assert "FAILED" in capsys.readouterr().out
    weights = result.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert verify_model_main([registry, "--public-key", str(pub)]) == 1
    assert "does not verify" in capsys.readouterr().out


def test_verify_model_cli_wrong_key(published, tmp_path) -> None:
    """A different platform key gives exit code 1."""
    other = save_public_key(Ed25519PrivateKey.generate(), tmp_path / "other.pub")
    out = io.StringIO()

    args = build_verify_parser().parse_args(
        [str(tmp_path / "registry"), "--public-key", str(other)]
    )
    assert verify_model(args, out) == 1
    assert out.getvalue().startswith("FAILED")
