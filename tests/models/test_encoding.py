"""Hashing and transforms: the same value lands in the same bucket everywhere."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from fedctr.models import (
    CategoricalFeature,
    NumericFeature,
    hash_column,
    hash_value,
    transform_numeric,
)
from fedctr.models.encoding import canonical_scalar

FEATURE = CategoricalFeature(name="ad", buckets=1024)


def test_int_float_and_string_forms_share_a_bucket() -> None:
    """5, 5.0 and "5" are one category whether read from CSV, Parquet or JSON."""
    ints = hash_column(pa.array([5, None]), feature=FEATURE, salt="s")
    floats = hash_column(pa.array([5.0, float("nan")]), feature=FEATURE, salt="s")
    strings = hash_column(pa.array(["5", ""]), feature=FEATURE, salt="s")

    assert ints.tolist() == floats.tolist() == strings.tolist()
    assert ints[1] == 0  # missing -> reserved bucket 0
    assert ints[0] == hash_value(canonical_scalar(5), feature=FEATURE, salt="s")


def test_salt_changes_buckets() -> None:
    """Without the federation's salt, bucket ids reveal nothing reusable."""
    values = pa.array([f"v{i}" for i in range(50)])
    a = hash_column(values, feature=FEATURE, salt="one")
    b = hash_column(values, feature=FEATURE, salt="two")

    assert (a != b).mean() > 0.9


@given(st.lists(st.one_of(st.integers(-(10**12), 10**12), st.text(max_size=12)), max_size=40))
def test_buckets_are_in_range_and_nonzero_for_present_values(values) -> None:
    """Every present value maps into 1..buckets-1."""
    strings = [canonical_scalar(v) for v in values]
    out = hash_column(pa.array(strings, pa.string()), feature=FEATURE, salt="s")

    for s, b in zip(strings, out, strict=True):
        assert (b == 0) == (s == "")
        assert 0 <= b < FEATURE.buckets


def test_numeric_transform_is_fixed_and_fills_missing() -> None:
    """log1p is sign-preserving and clipped; NaN becomes the fill value."""
    f = NumericFeature(name="x", transform="log1p", clip_min=-2.0, clip_max=2.0, fill=-1.0)
    out = transform_numeric(np.array([0.0, np.e - 1, -(np.e - 1), 1e9, np.nan]), feature=f)

    np.testing.assert_allclose(out, [0.0, 1.0, -1.0, 2.0, -1.0], rtol=1e-6)
