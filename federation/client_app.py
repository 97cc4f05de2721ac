"""The partner's Flower ClientApp: translate messages to and from the partner node.

Which partner this process serves comes from the SuperNode's node config
(``--node-config 'partner-config="/path/partner.toml"'``). Flower's simulation gives
virtual nodes only a partition id, so the simulation launcher lists the partner
configs in ``FEDCTR_SIM_PARTNERS`` (os.pathsep-separated) and partition ``i`` is
partner ``i``. Either way the budget comes from the partner's own file.

Replies are built only by :mod:`fedctr.federation.replies`, i.e. through the wire
contract. Evaluate messages are refused: partner-side evaluation is off (the
platform evaluates on its own data), because exact metrics on weights the server
chooses can count the partner's rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedctr.clients import secagg as S
from fedctr.clients.config import PartnerConfig, load_partner_config
from fedctr.clients.errors import PartnerConfigError
from fedctr.clients.node import PartnerNode
from fedctr.federation.packing import packing_mod
from fedctr.federation.replies import baseline_reply, error_reply, refusal, train_reply
from fedctr.federation.secagg_mod import (
    ContextStore,
    answer_request,
    is_protocol_request,
    secagg_mod,
)
from fedctr.models import ModelConfig
from fedctr.privacy import wire as P
from fedctr.privacy.rdp_memo import memoize_opacus_rdp
from fedctr.privacy.wire import ErrorCode, ErrorReply, Problem

logger = logging.getLogger(__name__)

PARTNER_CONFIG_KEY = "partner-config"
SIM_PARTNERS_ENV = "FEDCTR_SIM_PARTNERS"

app = ClientApp(mods=[packing_mod, secagg_mod])


def partner_config_for(context: Context) -> PartnerConfig:
    """The partner config of the node running this ClientApp."""
    path = context.node_config.get(PARTNER_CONFIG_KEY)
    if not path:
        value = os.environ.get(SIM_PARTNERS_ENV, "")
        if value.startswith("@"):  # a file listing them, one per line (many partners)
            value = os.pathsep.join(Path(value[1:]).read_text().splitlines())
        listed = [p for p in value.split(os.pathsep) if p]
        pid = context.node_config.get("partition-id")
        if pid is None or int(pid) >= len(listed):
            raise PartnerConfigError(
                f"this node has no '{PARTNER_CONFIG_KEY}' in its node config; start the "
                f"SuperNode with --node-config '{PARTNER_CONFIG_KEY}=\"/path/partner.toml\"'"
            )
        path = listed[int(pid)]
    return load_partner_config(str(path))


def handle_train(
    node: PartnerNode,
    msg: Message,
    *,
    seed: int | None = None,
    state: RecordDict | None = None,
) -> Message:
    """One training message for ``node``: the DP reply, or a contract error reply.

    Server-sent values are parsed as untrusted input; any failure, including a bug,
    becomes an error reply whose text is only the contract's reason class. Under
    secure aggregation (a ``secagg`` record, the ``collect`` step) the update is
    sealed into a masked input with the session kept in ``state`` (the node's context).
    """
    try:
        seal = None
        if P.SECAGG in msg.content.config_records:
            store = ContextStore(state if state is not None else RecordDict())
            seal = S.sealer_for(
                dict(msg.content.config_records[P.SECAGG]),
                store=store,
                weight=node.config.training.aggregation_weight,
            )
        config = msg.content[P.CONFIG]
        model_config = ModelConfig.from_dict(json.loads(str(config[P.MODEL_CONFIG])))
        weights, reply = node.train(
            msg.content[P.ARRAYS].to_torch_state_dict(),
            model_config=model_config,
            spec_hash=str(config[P.SPEC_HASH]),
            run_id=str(config[P.RUN_ID]),
            server_round=int(config[P.SERVER_ROUND]),
            proximal_mu=float(config.get(P.PROXIMAL_MU, 0.0)),
            seed=seed,
            seal=seal,
        )
        if seal is not None:
            S.sealed(seal, store)
    except Exception as exc:  # nothing but the contract may leave
        return error_reply(msg, exc)
    if reply is None:  # a non-private baseline partner (benchmarks on public data)
        return baseline_reply(msg, weights, weight=node.config.training.aggregation_weight)
    return train_reply(msg, weights, reply)


def handle_message(
    node: Callable[[], PartnerNode],
    msg: Message,
    *,
    state: RecordDict,
    seed: int | None = None,
) -> Message:
    """What the ClientApp with its secure-aggregation mod answers, for in-process grids
    (benchmarks, fault tests): a protocol request, or a training message (``node`` is
    called only then). ``state`` is the node's context state, kept across messages."""
    if is_protocol_request(msg):
        return answer_request(msg, state)
    return handle_train(node(), msg, seed=seed, state=state)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One local DP round on the partner's data; refusals are error replies."""
    memoize_opacus_rdp()  # same floats, computed once per process (simulation workers)
    try:
        node = PartnerNode(partner_config_for(context))
    except Exception as exc:
        return error_reply(msg, exc)
    return handle_train(node, msg, state=context.state)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Refused: exact partner-side metrics are not covered by the partner's budget."""
    logger.info("evaluate message refused: partner-side evaluation is off")
    return refusal(msg, ErrorReply(code=ErrorCode.EVALUATION_OFF, problem=Problem.EVALUATION_OFF))


__all__ = [
    "PARTNER_CONFIG_KEY",
    "SIM_PARTNERS_ENV",
    "app",
    "handle_message",
    "handle_train",
    "partner_config_for",
]
