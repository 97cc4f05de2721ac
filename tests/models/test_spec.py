"""The feature spec: validated on load, hashed canonically, shared by every party."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedctr.models import FeatureSpec, FeatureSpecError, builtin_spec_path, load_spec


def _write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
version = 1
name = "t"
salt = "s"
label = "click"
[[categorical]]
name = "ad"
buckets = 16
[[numeric]]
name = "price"
"""


def test_every_builtin_spec_loads() -> None:
    """The shipped specs are valid."""
    for name in ("demo", "criteo_attribution", "criteo_kaggle_dac"):
        assert load_spec(builtin_spec_path(name)).spec_hash


def test_hash_ignores_formatting_and_comments(tmp_path: Path) -> None:
    """Two files saying the same thing have the same hash."""
    a = load_spec(_write(tmp_path, BASE, "a.toml"))
    b = load_spec(_write(tmp_path, "# comment\n" + BASE.replace(" = ", "=") + "\n\n", "b.toml"))

    assert a.spec_hash == b.spec_hash


def test_hash_changes_with_salt_buckets_or_transform(tmp_path: Path) -> None:
    """Anything that changes model inputs changes the hash."""
    base = load_spec(_write(tmp_path, BASE)).spec_hash
    for changed in (
        BASE.replace('salt = "s"', 'salt = "t"'),
        BASE.replace("buckets = 16", "buckets = 32"),
        BASE + 'transform = "identity"\n',
    ):
        assert load_spec(_write(tmp_path, changed, "c.toml")).spec_hash != base


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('salt = "s"', 'salt = ""'), "salt"),
        (lambda t: t.replace("buckets = 16", "buckets = 1"), "at least 2 buckets"),
        (lambda t: t.replace("version = 1", "version = 9"), "version 9"),
        (lambda t: t + '[[categorical]]\nname = "ad"\n', "more than once"),
        (lambda t: t + 'transform = "sqrt"\n', "transform must be one of"),
        (lambda t: t + "bogus = 1\n", "bogus"),
        (lambda t: t + '[[numeric]]\nname = "x"\nclip_min = 5.0\nclip_max = 1.0\n', "clip_min"),
    ],
)
def test_invalid_spec_is_rejected_naming_file_and_field(tmp_path: Path, edit, message) -> None:
    """A malformed spec raises FeatureSpecError that names the file and the problem."""
    path = _write(tmp_path, edit(BASE))

    with pytest.raises(FeatureSpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_spec_round_trips_through_dict(demo_spec: FeatureSpec) -> None:
    """to_dict/from_dict preserve the spec (the model card carries the dict)."""
    again = FeatureSpec.from_dict(demo_spec.to_dict())

    assert again == demo_spec
    assert again.spec_hash == demo_spec.spec_hash
