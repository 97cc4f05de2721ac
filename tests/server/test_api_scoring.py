"""The inference path: numpy kernels equal torch, encoding equals training, breaker behaves."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedctr.models import FeatureSpec, builtin_spec_path, hash_column, load_spec, registered_models
from fedctr.models.encoding import transform_numeric
from fedctr.server.registry import ContextFallback, ServingGuard
from fedctr.server.registry.examples import random_model
from fedctr.server.scoring import BreakerSettings, CircuitBreaker, Scorer, TorchKernel, build_kernel
from tests.support.scoring import example_row, torch_reference

DEMO = load_spec(builtin_spec_path("demo"))
CRITEO = load_spec(builtin_spec_path("criteo_attribution"))


def random_encoded(spec: FeatureSpec, n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    x_cat = np.stack([rng.integers(0, b, n) for b in spec.bucket_sizes], axis=1).reshape(
        n, spec.num_categorical
    )
    x_num = rng.standard_normal((n, spec.num_numeric)).astype(np.float32)
    x_dense = rng.standard_normal((n, spec.dense_dim())).astype(np.float32)
    return x_cat.astype(np.int64), x_num, x_dense


def demo_row(i: int = 0) -> dict:
    return example_row(DEMO, i)


@pytest.mark.parametrize("name", registered_models())
@pytest.mark.parametrize("spec", [DEMO, CRITEO], ids=["demo", "criteo"])
def test_numpy_kernel_equals_torch(name: str, spec: FeatureSpec) -> None:
    """Every registered model: numpy click probabilities within 1e-5 of torch's, N=1 and N>1."""
    if name == "fusion" and not spec.embedding:
        pytest.skip("fusion needs embedding columns")
    model = random_model(spec, name, seed=3)
    kernel = build_kernel(model)
    assert not isinstance(kernel, TorchKernel), f"no numpy kernel for {name}"
    for n, seed in ((1, 0), (7, 1), (513, 2)):
        inputs = random_encoded(spec, n, seed)
        with torch.no_grad():
            expected = torch.sigmoid(model(*(torch.from_numpy(a) for a in inputs))).numpy()
        got = 1 / (1 + np.exp(-kernel(*inputs).astype(np.float64)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
        one = [kernel.one(*(a[i].tolist() for a in inputs)) for i in range(n)]
        np.testing.assert_allclose(1 / (1 + np.exp(-np.array(one))), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", registered_models())
def test_scorer_equals_torch_on_raw_rows(name: str) -> None:
    """Raw rows scored by the service path equal the torch model fed the training encoding."""
    model = random_model(DEMO, name, seed=4)
    scorer = Scorer(model, DEMO, fallback=ContextFallback())
    rows = [demo_row(i) for i in range(40)]
    single = np.array([scorer.score_one(r, personalized=True) for r in rows])
    via_batch_path = np.array([scorer.score([r], personalized=True)[0] for r in rows])
    batch = scorer.score(rows, personalized=True)
    expected = torch_reference(model, DEMO, rows, personalized=True)
    np.testing.assert_allclose(single, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(via_batch_path, expected, rtol=0, atol=1e-5)
    off = [scorer.score_one(r, personalized=False) for r in rows]
    expected_off = torch_reference(model, DEMO, rows, personalized=False)
    np.testing.assert_allclose(off, expected_off, rtol=0, atol=1e-5)


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=20),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=20))
def test_bucket_hashing_equals_training(column: list) -> None:
    """Request hashing puts every value in the bucket partner training puts it in."""
    feature = DEMO.categorical[1]
    scorer_enc = Scorer(random_model(DEMO, "lr"), DEMO, fallback=ContextFallback()).encoder
    expected = hash_column(
        pa.array([None if v is None else str(v) for v in column], type=pa.string()),
        feature=feature,
        salt=DEMO.salt,
    )
    rows = [{feature.name: v} for v in column]
    got_batch = scorer_enc.encode(rows, personalized=True).x_cat[:, 1]
    got_single = [scorer_enc.encode([r], personalized=True).x_cat[0, 1] for r in rows]
    assert list(got_batch) == list(expected) == list(got_single)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=64)))
def test_numeric_transform_equals_training(value: float | None) -> None:
    """Single-row and batch numeric transforms are bit-identical to transform_numeric."""
    scorer_enc = Scorer(random_model(DEMO, "lr"), DEMO, fallback=ContextFallback()).encoder
    row = {f.name: value for f in DEMO.numeric}
    raw = np.array([np.nan if value is None else value])
    expected = [transform_numeric(raw, feature=f)[0] for f in DEMO.numeric]
    assert list(scorer_enc.encode([row], personalized=True).x_num[0]) == expected
    assert list(scorer_enc.encode([row, row], personalized=True).x_num[1]) == expected


def test_non_personalized_masks_user_scope() -> None:
    """personalized=False encodes user-scope columns as missing and keeps context columns."""
    enc = Scorer(random_model(DEMO, "lr"), DEMO, fallback=ContextFallback()).encoder
    row = demo_row(3)
    masked = {k: v for k, v in row.items() if k not in ("user_segment", "user_visits_7d")}
    for rows in ([row], [row, row]):
        off = enc.encode(rows, personalized=False)
        ref = enc.encode([masked] * len(rows), personalized=True)
        np.testing.assert_array_equal(off.x_cat, ref.x_cat)
        np.testing.assert_array_equal(off.x_num, ref.x_num)
        assert off.x_cat[0, 0] == 0


def test_non_personalized_logit_shift_is_applied() -> None:
    """The card's logit shift moves only non-personalised scores."""
    model = random_model(DEMO, "deepfm")
    plain = Scorer(model, DEMO, fallback=ContextFallback())
    shifted = Scorer(model, DEMO, fallback=ContextFallback(logit_shift=0.5))
    row = [demo_row(1)]
    assert shifted.score(row, personalized=True)[0] == plain.score(row, personalized=True)[0]
    np.testing.assert_allclose(
        shifted.logits(row, personalized=False),
        plain.logits(row, personalized=False) + 0.5,
        atol=1e-6,
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


GUARD = ServingGuard(base_rate=0.05, mean_prediction_low=0.01, mean_prediction_high=0.2)


def test_breaker_trips_on_non_finite_and_recovers() -> None:
    """NaN output: base rate for everyone until the cooldown passes without another NaN."""
    clock = FakeClock()
    b = CircuitBreaker(GUARD, BreakerSettings(window=10, min_samples=5, cooldown_s=2), clock=clock)
    out, flagged = b.apply(np.array([0.1, np.nan]), track=True)
    assert flagged and b.is_open and list(out) == [0.05, 0.05]
    clock.now = 1.0
    assert b.apply(np.array([0.1]), track=True)[1]
    clock.now = 2.5
    out, flagged = b.apply(np.array([0.1]), track=True)
    assert not flagged and not b.is_open and out[0] == 0.1


def test_breaker_trips_on_drift_and_recovers_when_back_in_band() -> None:
    """Mean prediction above the card's band opens the breaker; back in band it closes."""
    clock = FakeClock()
    b = CircuitBreaker(GUARD, BreakerSettings(window=10, min_samples=5, cooldown_s=1), clock=clock)
    for _ in range(4):
        assert not b.apply(np.array([0.9]), track=True)[1]  # too few samples to judge
    out, flagged = b.apply(np.array([0.9]), track=True)
    assert flagged and b.reason == "mean_prediction_out_of_band" and out[0] == 0.05
    assert b.apply(np.array([0.9]), track=False)[1]  # open for every request
    clock.now = 5.0
    for _ in range(10):
        b.apply(np.array([0.1]), track=True)  # shadow scores pull the window back in band
    assert b.is_open  # the cooldown counts from the last out-of-band evidence
    clock.now = 6.5
    out, flagged = b.apply(np.array([0.1]), track=True)
    assert not flagged and out[0] == 0.1 and b.window_mean == pytest.approx(0.1)


def test_breaker_single_score_path_matches_batch_path() -> None:
    """apply_one makes the same decisions as apply on one-element arrays."""
    clock_a, clock_b = FakeClock(), FakeClock()
    cfg = BreakerSettings(window=5, min_samples=3, cooldown_s=1)
    a = CircuitBreaker(GUARD, cfg, clock=clock_a)
    b = CircuitBreaker(GUARD, cfg, clock=clock_b)
    stream = [0.1, 0.1, float("nan"), 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    for t, x in enumerate(stream):
        clock_a.now = clock_b.now = t * 0.4
        one = a.apply_one(x, track=True)
        arr, flag = b.apply(np.array([x]), track=True)
        assert one == (float(arr[0]), flag)
    assert a.window_mean == pytest.approx(b.window_mean)


def test_breaker_window_mean_is_exact_over_wraparound() -> None:
    """The running mean equals the mean of the last `window` scores."""
    b = CircuitBreaker(GUARD, BreakerSettings(window=7, min_samples=1, cooldown_s=0))
    rng = np.random.default_rng(0)
    seen: list[float] = []
    for k in (3, 5, 1, 9, 2, 7, 4):
        v = rng.uniform(0, 0.1, k)
        b.apply(v, track=True)
        seen.extend(v)
        assert b.window_mean == pytest.approx(np.mean(seen[-7:]), abs=1e-12)
