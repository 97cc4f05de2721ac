"""SecAgg+ as a protocol: what the platform can and cannot learn, and what partners refuse.

No training here: partners mask known vectors, so every assertion is exact."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.secagg import (
    AggregatorSession,
    PartnerSession,
    SecAggAbort,
    SecAggError,
    SecAggRefused,
    SecAggSettings,
    dequantize,
    quantize,
)
from fedctr.privacy.secagg import keys as K
from fedctr.privacy.secagg.vectors import as_words

SESSION = "0123456789abcdef0123456789abcdef"


class Round:
    """One session driven by hand: ``n`` partners, a platform that follows the protocol."""

    def __init__(self, n: int, *, settings: SecAggSettings | None = None, d: int = 64) -> None:
        self.settings = settings or SecAggSettings()
        self.nodes = list(range(101, 101 + n))
        self.platform = AggregatorSession(self.settings, SESSION, 1, self.nodes)
        self.partners = {
            u: PartnerSession.start(session=SESSION, node=u, server_round=1, settings=self.settings)
            for u in self.nodes
        }
        for u, p in self.partners.items():
            self.platform.accept_keys(u, *p.public_keys())
        keyed = self.platform.key_nodes()
        keys = [self.platform.public[u] for u in keyed]
        for u, p in self.partners.items():
            self.platform.accept_shares(
                u, *p.share_keys(keyed, [c for c, _ in keys], [s for _, s in keys])
            )
        for u, p in self.partners.items():
            p.receive(*self.platform.forwarded(u))
        rng = np.random.default_rng(7)
        self.updates = {u: rng.normal(0, 0.05, d) for u in self.nodes}
        self.masked: dict[int, np.ndarray] = {}

    def seal(self, nodes: list[int] | None = None) -> None:
        for u in nodes or self.nodes:
            values = quantize(
                self.updates[u], self.settings, weight=1, rng=SecureRandom.from_key(bytes(32))
            )
            self.masked[u] = self.partners[u].seal(as_words(values))

    def collect(
        self,
        answering: list[int] | None = None,
        corrupt: Callable[[int, list[bytes]], list[bytes]] | None = None,
    ) -> None:
        """The unmask step: each answering node's shares (``corrupt`` may alter them)
        reach the platform."""
        survivors = set(self.masked)
        for u in answering if answering is not None else sorted(survivors):
            active, dropped = self.platform.unmask_request(u, survivors)
            owners, shares = self.partners[u].unmask(active, dropped)
            if corrupt is not None:
                shares = corrupt(u, shares)
            self.platform.accept_unmask(u, owners, shares, survivors)

    def unmask(self, answering: list[int] | None = None) -> np.ndarray:
        self.collect(answering)
        return dequantize(self.platform.unmask(self.masked), self.settings)

    def plain_sum(self, nodes: set[int]) -> np.ndarray:
        return sum(self.updates[u] for u in sorted(nodes))


def _flipped(shares: list[bytes]) -> list[bytes]:
    """Well-formed shares (same holder index) with wrong values."""
    return [s[:4] + bytes(b ^ 0xFF for b in s[4:]) for s in shares]


STEP = 2 * SecAggSettings().clipping_range / SecAggSettings().levels  # one grid step


def test_the_unmasked_sum_equals_the_plain_sum_within_one_grid_step_per_partner():
    r = Round(4)
    r.seal()
    total = r.unmask()
    assert np.abs(total - r.plain_sum(set(r.nodes))).max() <= 4 * STEP


def test_a_masked_input_is_uniform_whatever_the_update_it_hides():
    """The platform's view of one partner: a zero update and a large one give masked
    words that no test tells apart, and neither differs from uniform on Z_2^64."""
    d = 20_000
    views = []
    for value in (0.0, 7.9):
        r = Round(3, d=d)
        r.updates = {u: np.full(d, value) for u in r.nodes}
        r.seal()
        views.append(r.masked[r.nodes[0]])
    for words in views:
        top = (words >> np.uint64(56)).astype(np.int64)  # 256 bins of the top byte
        counts = np.bincount(top, minlength=256)
        chi2 = ((counts - d / 256) ** 2 / (d / 256)).sum()
        assert chi2 < 340  # 255 degrees of freedom: p ~ 3e-4 at 340
    zero, large = (np.sort(v.astype(np.float64)) for v in views)
    ks = np.abs(np.searchsorted(zero, large) / d - np.arange(1, d + 1) / d).max()
    assert ks < 0.02  # two-sample KS at d = 20k: p < 1e-3 needs ~0.0195
    quantized = as_words(
        quantize(np.full(d, 7.9), SecAggSettings(), weight=1, rng=SecureRandom.from_key(bytes(32)))
    )
    assert len(np.unique(quantized >> np.uint64(56))) == 1  # unmasked it is one value


def test_a_partner_that_drops_after_masking_still_leaves_the_exact_sum_of_the_others():
    r = Round(5)
    r.seal([101, 102, 103, 104])  # 105 shared its keys, then its masked input never came
    total = r.unmask()
    assert np.abs(total - r.plain_sum({101, 102, 103, 104})).max() <= 4 * STEP


def test_secagg_plus_neighbourhoods_tolerate_dropouts_too():
    r = Round(10, settings=SecAggSettings(neighbours=4))
    assert all(len(r.platform.members(u)) == 5 for u in r.nodes)
    r.seal([u for u in r.nodes if u not in (103, 108)])
    total = r.unmask()
    assert np.abs(total - r.plain_sum(set(r.masked))).max() <= 8 * STEP


def test_unmasking_needs_the_threshold_of_answering_partners():
    r = Round(5)  # threshold 3 of 5
    r.seal()
    with pytest.raises(SecAggAbort, match="fewer than the threshold 3"):
        r.unmask(answering=[101, 102])


def test_fewer_shares_than_the_threshold_do_not_rebuild_a_secret():
    secret = bytes(range(32))
    shares = K.split_secret(secret, 3, 5)
    assert K.join_shares(shares[:3]) == secret
    try:
        rebuilt = K.join_shares(shares[:2])
    except SecAggError:
        return  # does not combine at all
    assert rebuilt != secret


def test_a_malformed_share_excludes_its_holder_and_the_others_still_unmask():
    r = Round(5)
    r.seal()
    survivors = set(r.masked)
    r.collect(
        corrupt=lambda u, shares: [b"\x00" * 4 + s[4:] for s in shares] if u == 102 else shares
    )  # wrong holder index
    assert r.platform.excluded == {102: "secagg-malformed-unmask"}
    total = dequantize(r.platform.unmask(r.masked), r.settings)
    assert np.abs(total - r.plain_sum(survivors)).max() <= 5 * STEP


def test_a_wrong_but_well_formed_share_is_found_by_the_commitment_check():
    r = Round(5)
    r.seal()
    survivors = set(r.masked)
    r.collect(corrupt=lambda u, shares: _flipped(shares) if u == 101 else shares)  # same index
    total = dequantize(r.platform.unmask(r.masked), r.settings)
    assert np.abs(total - r.plain_sum(survivors)).max() <= 5 * STEP


def test_the_round_aborts_with_a_clear_error_when_too_few_valid_shares_remain():
    r = Round(3)  # threshold 2 of 3
    r.seal()
    r.collect(corrupt=lambda u, shares: shares if u == 101 else _flipped(shares))
    with pytest.raises(SecAggAbort, match="do not rebuild a secret that matches"):
        r.platform.unmask(r.masked)


# ---- a malicious platform ---------------------------------------------------------------
def test_a_partner_never_reveals_both_secrets_of_one_neighbour():
    r = Round(4)
    r.seal()
    victim = 104
    p = r.partners[101]
    p.unmask([101, 102, 103, victim], [])  # victim reported alive: its self-mask share
    with pytest.raises(SecAggRefused, match="both asked for"):
        p.unmask([101, 102, 103], [victim])  # now "dropped": its key share too


def test_a_partner_refuses_to_unmask_a_sum_smaller_than_the_threshold():
    r = Round(5)
    r.seal()
    with pytest.raises(SecAggRefused, match="fewer than the threshold"):
        r.partners[101].unmask([101, 102], [103, 104, 105])


def test_a_partner_refuses_to_be_reported_dropped_after_it_masked():
    r = Round(3)
    r.seal()
    with pytest.raises(SecAggRefused, match="listed as dropped"):
        r.partners[101].unmask([102, 103], [101])


def test_a_threshold_below_a_majority_cannot_be_configured():
    with pytest.raises(SecAggRefused, match="threshold"):
        SecAggSettings(threshold=0.0)
    assert SecAggSettings(threshold=0.01).threshold_for(10) == 6  # a majority whatever is asked


def test_a_partner_refuses_a_node_list_without_its_own_keys_or_with_duplicate_keys():
    settings = SecAggSettings()
    a, b, c = (
        PartnerSession.start(session=SESSION, node=n, server_round=1, settings=settings)
        for n in (1, 2, 3)
    )
    ka, kb, kc = a.public_keys(), b.public_keys(), c.public_keys()
    with pytest.raises(SecAggRefused, match="own public keys"):
        a.share_keys([1, 2, 3], [kb[0], kb[0], kc[0]], [kb[1], kb[1], kc[1]])
    with pytest.raises(SecAggRefused, match="same public key"):
        a.share_keys([1, 2, 3], [ka[0], kb[0], kb[0]], [ka[1], kb[1], kb[1]])


def test_a_partner_refuses_shares_from_outside_its_neighbourhood_or_that_do_not_decrypt():
    r = Round(3)
    fresh = Round(3)  # same node ids, other keys: its ciphertexts do not decrypt here
    p = PartnerSession.from_json(fresh.partners[101].to_json())
    p.stage = "shared"
    senders, ciphertexts = r.platform.forwarded(101)
    with pytest.raises(SecAggRefused, match="does not decrypt"):
        p.receive(senders, ciphertexts)
    with pytest.raises(SecAggRefused, match="not a neighbour"):
        PartnerSession.from_json(fresh.partners[101].to_json()).receive([999], [b"x"])


def test_a_session_masks_at_most_one_input():
    r = Round(3)
    r.seal()
    with pytest.raises(SecAggRefused, match="out of order"):
        r.partners[101].seal(np.zeros(64, dtype=np.uint64))


def test_partner_state_survives_a_round_trip_through_json():
    r = Round(3)
    p = r.partners[102]
    assert PartnerSession.from_json(p.to_json()) == p
