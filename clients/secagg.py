"""The partner node's answers to secure-aggregation requests.

The platform drives a SecAgg+ session with four requests (``setup``, ``share-keys``,
``collect`` and ``unmask``); :class:`~fedctr.privacy.secagg.PartnerSession` holds
the cryptography and the checks, this module reads the platform's request (as
untrusted input), keeps the session between requests in the node's own state store
(Flower's context, on the partner's machine) and builds the wire replies. The
``collect`` request is the training message itself: the node trains and seals its
DP update into a masked input before ledgering it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

from fedctr.privacy import wire as P
from fedctr.privacy.randomness import SecureRandom
from fedctr.privacy.secagg import PartnerSession, SecAggRefused, SecAggSettings
from fedctr.privacy.secagg.release import Sealer, integer_weight

STATE_KEY = "fedctr-secagg"
STAGES = ("setup", "share-keys", "collect", "unmask")

SessionStore = MutableMapping[str, str]
"""Where a node keeps its open session: session JSON under :data:`STATE_KEY`."""


def _field(request: Mapping[str, Any], key: str, kind: type) -> Any:
    value = request.get(key)
    if not isinstance(value, kind):
        raise SecAggRefused(f"secure-aggregation request lacks a valid '{key}'")
    return value


def _nodes(request: Mapping[str, Any], key: str) -> list[int]:
    try:
        return P.node_ids_from_bytes(request.get(key))
    except P.ContractViolation as exc:
        raise SecAggRefused(f"secure-aggregation request: '{key}' is not a node list") from exc


def _byte_list(request: Mapping[str, Any], key: str) -> list[bytes]:
    value = _field(request, key, list)
    if not all(isinstance(v, bytes) for v in value):
        raise SecAggRefused(f"secure-aggregation request: '{key}' must be a list of bytes")
    return list(value)


def _session(request: Mapping[str, Any], store: SessionStore) -> PartnerSession:
    raw = store.get(STATE_KEY)
    if raw is None:
        raise SecAggRefused("no open secure-aggregation session on this node")
    session = PartnerSession.from_json(raw)
    if _field(request, "session", str) != session.session:
        raise SecAggRefused("the request names another secure-aggregation session")
    return session


def stage_of(request: Mapping[str, Any]) -> str:
    stage = request.get("stage")
    if stage not in STAGES:
        raise SecAggRefused(f"undeclared secure-aggregation stage {stage!r}")
    return str(stage)


def answer(request: Mapping[str, Any], *, node: int, store: SessionStore) -> dict[str, Any]:
    """The reply record to a ``setup``, ``share-keys`` or ``unmask`` request."""
    stage = stage_of(request)
    if stage == "setup":
        try:
            settings = SecAggSettings.from_dict(json.loads(_field(request, "settings", str)))
        except (ValueError, TypeError) as exc:
            raise SecAggRefused(f"secure-aggregation settings are not valid: {exc}") from exc
        session = PartnerSession.start(
            session=_field(request, "session", str),
            node=node,
            server_round=_field(request, "round", int),
            settings=settings,
        )
        key_c, key_s = session.public_keys()
        reply: dict[str, Any] = {"stage": stage, "key-c": key_c, "key-s": key_s}
    elif stage == "share-keys":
        session = _session(request, store)
        recipients, ciphertexts, commitment = session.share_keys(
            _nodes(request, "nodes"), _byte_list(request, "keys-c"), _byte_list(request, "keys-s")
        )
        reply = {
            "stage": stage,
            "recipients": P.node_ids_to_bytes(recipients),
            "ciphertexts": ciphertexts,
            "commitment": commitment,
        }
    elif stage == "unmask":
        session = _session(request, store)
        owners, shares = session.unmask(_nodes(request, "active"), _nodes(request, "dropped"))
        reply = {"stage": stage, "owners": P.node_ids_to_bytes(owners), "shares": shares}
    else:
        raise SecAggRefused("the collect step is a training message")
    store[STATE_KEY] = session.to_json()
    P.parse_secagg_reply(stage, reply)  # what leaves is exactly what the contract declares
    return reply


def sealer_for(
    request: Mapping[str, Any],
    *,
    store: SessionStore,
    weight: float,
    rng: SecureRandom | None = None,
) -> Sealer:
    """The ``collect`` step: keep the forwarded shares, and the sealer for this update."""
    if stage_of(request) != "collect":
        raise SecAggRefused("a training message under secure aggregation must be 'collect'")
    session = _session(request, store)
    if session.stage == "shared":
        session.receive(_nodes(request, "senders"), _byte_list(request, "ciphertexts"))
    return Sealer(session, integer_weight(weight, session.settings.max_weight), rng)


def sealed(sealer: Sealer, store: SessionStore) -> None:
    """After the release: the session has masked its one input (a re-sent release too)."""
    sealer.session.stage = "masked"
    store[STATE_KEY] = sealer.session.to_json()


__all__ = ["STAGES", "STATE_KEY", "SessionStore", "answer", "sealed", "sealer_for", "stage_of"]
