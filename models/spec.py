"""The feature spec: one declarative, versioned file every partner shares.

The spec is the only thing partners must agree on to train one model: which column
is the label, which columns are categorical (hashed into buckets with a
federation-wide salt, so no vocabulary is ever exchanged), which are numeric
(fixed, data-independent transforms, so no statistics leak) and which are dense
embedding vectors for the fusion model, and (optionally) which columns together name
a person, ``user_key``, for user-level DP (their values are hashed with the salt on
the partner's node and never leave it). Its hash goes into every model card so a
model is never scored with a spec it was not trained for.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedctr.models.errors import FeatureSpecError
from fedctr.models.source_layout import SourceLayout
from fedctr.validate import Checker

SPEC_FORMAT_VERSION = 1

Scope = Literal["user", "context"]
NumericTransform = Literal["identity", "log1p", "standard"]
Modality = Literal["text", "image", "behaviour"]

_SCOPES = ("user", "context")
_TRANSFORMS = ("identity", "log1p", "standard")
_MODALITIES = ("text", "image", "behaviour")


_CHECK = Checker(FeatureSpecError)


@dataclass(frozen=True)
class CategoricalFeature:
    """A column hashed into ``buckets`` slots; bucket 0 is reserved for missing values.

    ``scope`` says whether the value describes the user ("user": dropped when a
    request asks for non-personalised scoring) or the ad/placement ("context").
    """

    name: str
    buckets: int
    scope: Scope = "context"

    def __post_init__(self) -> None:
        _CHECK.integer(self.buckets, f"categorical '{self.name}' buckets", minimum=1)
        if self.buckets < 2:
            raise FeatureSpecError(f"categorical '{self.name}' needs at least 2 buckets")
        if self.scope not in _SCOPES:
            raise FeatureSpecError(
                f"categorical '{self.name}' scope must be one of {_SCOPES}, got {self.scope!r}"
            )


@dataclass(frozen=True)
class NumericFeature:
    """A numeric column with a fixed transform, then clipped to ``[clip_min, clip_max]``.

    ``log1p`` is sign-preserving (``sign(x) * log1p(|x|)``); ``standard`` uses the
    ``mean``/``std`` written in the spec, never statistics of a partner's data.
    Missing values become ``fill`` (after the transform).
    """

    name: str
    transform: NumericTransform = "log1p"
    clip_min: float = -10.0
    clip_max: float = 10.0
    mean: float = 0.0
    std: float = 1.0
    fill: float = 0.0
    scope: Scope = "context"

    def __post_init__(self) -> None:
        if self.transform not in _TRANSFORMS:
            raise FeatureSpecError(
                f"numeric '{self.name}' transform must be one of {_TRANSFORMS}, "
                f"got {self.transform!r}"
            )
        for attr in ("clip_min", "clip_max", "mean", "std", "fill"):
            _CHECK.number(getattr(self, attr), f"numeric '{self.name}' {attr}")
        if self.clip_min >= self.clip_max:
            raise FeatureSpecError(f"numeric '{self.name}' needs clip_min < clip_max")
        if self.std <= 0:
            raise FeatureSpecError(f"numeric '{self.name}' std must be > 0")
        if self.scope not in _SCOPES:
            raise FeatureSpecError(f"numeric '{self.name}' scope must be one of {_SCOPES}")


@dataclass(frozen=True)
class EmbeddingFeature:
    """A dense vector column (text/image/behaviour embedding) for the fusion model.

    In Parquet it is a list<float> column; in CSV a string of ``dim`` numbers
    separated by spaces.
    """

    name: str
    dim: int
    modality: Modality
    scope: Scope = "context"

    def __post_init__(self) -> None:
        _CHECK.integer(self.dim, f"embedding '{self.name}' dim", minimum=1)
        if self.modality not in _MODALITIES:
            raise FeatureSpecError(
                f"embedding '{self.name}' modality must be one of {_MODALITIES}, "
                f"got {self.modality!r}"
            )
        if self.scope not in _SCOPES:
            raise FeatureSpecError(f"embedding '{self.name}' scope must be one of {_SCOPES}")


@dataclass(frozen=True)
class FeatureSpec:
    """A validated feature spec; build it with :func:`load_spec` or :meth:`from_dict`."""

    name: str
    salt: str
    label: str
    categorical: tuple[CategoricalFeature, ...] = ()
    numeric: tuple[NumericFeature, ...] = ()
    embedding: tuple[EmbeddingFeature, ...] = ()
    positive_labels: tuple[str, ...] = ("1", "1.0", "true", "True")
    # Columns whose values together identify one person (e.g. ip, device, os): the unit
    # of user-level DP. May also be feature columns; never the label.
    user_key: tuple[str, ...] = ()
    version: int = SPEC_FORMAT_VERSION
    # How this partner's files hold the columns: local, so neither hashed nor compared.
    source: SourceLayout = field(default_factory=SourceLayout, compare=False)
    _hash: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != SPEC_FORMAT_VERSION:
            raise FeatureSpecError(
                f"feature spec version {self.version} is not supported "
                f"(this fedctr reads version {SPEC_FORMAT_VERSION})"
            )
        if not self.salt:
            raise FeatureSpecError(
                "feature spec needs a non-empty federation-wide 'salt' for hashing"
            )
        if not self.label:
            raise FeatureSpecError("feature spec needs a 'label' column")
        if not (self.categorical or self.numeric or self.embedding):
            raise FeatureSpecError("feature spec declares no feature columns")
        names = [self.label, *self.column_names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FeatureSpecError(f"feature spec names columns more than once: {dupes}")
        if len(set(self.user_key)) != len(self.user_key) or self.label in self.user_key:
            raise FeatureSpecError(
                f"user_key must name distinct columns, and never the label: {list(self.user_key)}"
            )
        if any(not isinstance(c, str) or not c for c in self.user_key):
            raise FeatureSpecError(f"user_key must be column names, got {list(self.user_key)}")
        object.__setattr__(self, "_hash", _hash_dict(self.to_dict()))

    # ---- derived views -------------------------------------------------
    @property
    def column_names(self) -> tuple[str, ...]:
        """Every feature column, in model-input order (label excluded)."""
        return (
            tuple(f.name for f in self.categorical)
            + tuple(f.name for f in self.numeric)
            + tuple(f.name for f in self.embedding)
        )

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every column a partner's file must hold: label, features, then the user key
        columns that are not also features."""
        extra = tuple(c for c in self.user_key if c not in self.column_names)
        return (self.label, *self.column_names, *extra)

    @property
    def spec_hash(self) -> str:
        """SHA-256 of the canonical JSON form: formatting and comments do not change it."""
        return self._hash

    @property
    def num_categorical(self) -> int:
        return len(self.categorical)

    @property
    def num_numeric(self) -> int:
        return len(self.numeric)

    @property
    def bucket_sizes(self) -> tuple[int, ...]:
        return tuple(f.buckets for f in self.categorical)

    def dense_dim(self, modality: Modality | None = None) -> int:
        """Width of the concatenated embedding columns (optionally of one modality)."""
        return sum(f.dim for f in self.embedding if modality is None or f.modality == modality)

    def to_dict(self) -> dict[str, Any]:
        """Canonical dict form (what is hashed and what a TOML/JSON file holds); the
        partner-local ``[source]`` table is left out (see ``source.to_dict()``)."""
        out = {
            "version": self.version,
            "name": self.name,
            "salt": self.salt,
            "label": self.label,
            "positive_labels": list(self.positive_labels),
            "categorical": [asdict(f) for f in self.categorical],
            "numeric": [asdict(f) for f in self.numeric],
            "embedding": [asdict(f) for f in self.embedding],
        }
        if self.user_key:  # absent when unset, so specs without one keep their hash
            out["user_key"] = list(self.user_key)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, source: str = "<dict>") -> FeatureSpec:
        """Validate an untrusted dict field by field; errors name the source and field."""
        if not isinstance(raw, dict):
            raise FeatureSpecError(f"{source}: a feature spec must be a table/object")
        known = {
            "version",
            "name",
            "salt",
            "label",
            "positive_labels",
            "buckets",
            "categorical",
            "numeric",
            "embedding",
            "source",
            "user_key",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise FeatureSpecError(f"{source}: unknown top-level keys {unknown}")
        default_buckets = raw.get("buckets", 2**16)
        try:
            categorical = tuple(
                CategoricalFeature(**{"buckets": default_buckets, **_table(c, "categorical")})
                for c in raw.get("categorical", [])
            )
            numeric = tuple(NumericFeature(**_table(n, "numeric")) for n in raw.get("numeric", []))
            embedding = tuple(
                EmbeddingFeature(**_table(e, "embedding")) for e in raw.get("embedding", [])
            )
            columns = (*(f.name for f in categorical), *(f.name for f in numeric))
            columns += tuple(f.name for f in embedding)
            user_key = raw.get("user_key", [])
            if isinstance(user_key, str):
                user_key = [user_key]
            if not isinstance(user_key, list | tuple):
                raise FeatureSpecError("user_key must be a column name or a list of them")
            columns += tuple(str(c) for c in user_key if c not in columns)
            layout = SourceLayout.from_dict(raw.get("source", {}), spec_columns=columns)
            return cls(
                version=raw.get("version", SPEC_FORMAT_VERSION),
                name=str(raw.get("name", "unnamed")),
                salt=str(raw.get("salt", "")),
                label=str(raw.get("label", "")),
                positive_labels=tuple(
                    str(v) for v in raw.get("positive_labels", ("1", "1.0", "true", "True"))
                ),
                categorical=categorical,
                numeric=numeric,
                embedding=embedding,
                user_key=tuple(str(c) for c in user_key),
                source=layout,
            )
        except FeatureSpecError as exc:
            raise FeatureSpecError(f"{source}: {exc}") from exc
        except TypeError as exc:  # unexpected/missing keyword in a column table
            raise FeatureSpecError(f"{source}: {exc}") from exc


def _table(value: Any, kind: str) -> dict[str, Any]:
    if not isinstance(value, dict) or "name" not in value:
        raise FeatureSpecError(
            f"each [[{kind}]] entry must be a table with a 'name', got {value!r}"
        )
    return dict(value)


def _hash_dict(d: dict[str, Any]) -> str:
    canonical = json.dumps(d, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_spec(path: str | Path) -> FeatureSpec:
    """Read a spec from a TOML or JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FeatureSpecError(f"cannot read feature spec {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise FeatureSpecError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    return FeatureSpec.from_dict(raw, source=str(path))


def builtin_spec_path(name: str) -> Path:
    """Path of a spec shipped with fedctr (``models/specs/<name>.toml``)."""
    path = Path(__file__).parent / "specs" / f"{name}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.toml"))
        raise FeatureSpecError(f"no built-in feature spec '{name}'; available: {available}")
    return path


__all__ = [
    "SPEC_FORMAT_VERSION",
    "CategoricalFeature",
    "EmbeddingFeature",
    "FeatureSpec",
    "NumericFeature",
    "builtin_spec_path",
    "load_spec",
]
