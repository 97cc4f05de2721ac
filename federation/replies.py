"""Partner replies as Flower messages, built only through the wire contract.

The one place a partner's reply is assembled (the ClientApp and the in-process
benchmark grid both call it), so what leaves a node is exactly what
:mod:`fedctr.privacy.wire` declares: a :class:`~fedctr.privacy.wire.TrainReply` with the DP update,
or an :class:`~fedctr.privacy.wire.ErrorReply` (code, reason class, file name, column).
Exception texts, row numbers and values stay in the partner's local log.
"""

from __future__ import annotations

import logging

import torch
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict

from fedctr.clients.errors import (
    PartnerConfigError,
    RoundAlreadyReleasedError,
    UnusableWeightsError,
)
from fedctr.clients.state import PartnerStateError
from fedctr.models import SpecMismatchError
from fedctr.models.logs.errors import DataFileError
from fedctr.privacy import BudgetExceededError
from fedctr.privacy import wire as P
from fedctr.privacy.secagg.errors import SecAggRefused
from fedctr.privacy.wire import ErrorCode, ErrorReply, Problem, TrainReply

logger = logging.getLogger(__name__)


def train_reply(msg: Message, weights: dict[str, torch.Tensor], reply: TrainReply) -> Message:
    """The reply to a training message: DP update plus the declared report."""
    records = reply.to_records()
    content = RecordDict(
        {
            P.ARRAYS: ArrayRecord(weights),
            P.METRICS: MetricRecord(records[P.METRICS]),
            P.REPORT: ConfigRecord(records[P.REPORT]),
        }
    )
    return Message(content=content, reply_to=msg)


def baseline_reply(msg: Message, weights: dict[str, torch.Tensor], *, weight: float) -> Message:
    """A *non-private* partner's reply, for benchmarks on public data only.

    It carries the raw update and nothing the contract could vouch for; the platform
    accepts it only when built for a non-private baseline and never publishes it.
    """
    content = RecordDict(
        {
            P.ARRAYS: ArrayRecord(weights),
            P.METRICS: MetricRecord({P.AGGREGATION_WEIGHT: weight}),
        }
    )
    return Message(content=content, reply_to=msg)


def error_for(exc: BaseException) -> ErrorReply:
    """The contract's view of a failure: never the exception's text."""
    if isinstance(exc, DataFileError):
        return ErrorReply.for_data_file(exc)
    if isinstance(exc, BudgetExceededError):
        return ErrorReply(code=ErrorCode.BUDGET_REFUSED, problem=Problem.BUDGET_EXHAUSTED)
    if isinstance(exc, SpecMismatchError):
        return ErrorReply(code=ErrorCode.SPEC_MISMATCH, problem=Problem.SPEC_MISMATCH)
    if isinstance(exc, SecAggRefused):
        return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.SECAGG_REFUSED)
    if isinstance(exc, RoundAlreadyReleasedError):
        return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.ALREADY_RELEASED)
    if isinstance(exc, PartnerStateError):
        return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.PRIVACY_STATE)
    if isinstance(exc, PartnerConfigError):
        return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.CONFIG)
    if isinstance(exc, UnusableWeightsError):
        return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.UNREADABLE_ARRAYS)
    return ErrorReply(code=ErrorCode.PARTNER, problem=Problem.INTERNAL)


def error_reply(msg: Message, exc: BaseException) -> Message:
    """Log the full error locally; send only its contract view."""
    public = error_for(exc)
    logger.warning(
        "refusing message (the platform sees only '%s %s'): %s",
        public.code.kind,
        public.reason(),
        exc,
        exc_info=public.problem is Problem.INTERNAL,
    )
    return Message(Error(code=int(public.code), reason=public.reason()), reply_to=msg)


def refusal(msg: Message, public: ErrorReply) -> Message:
    """An error reply that needs no exception (e.g. evaluation is off)."""
    return Message(Error(code=int(public.code), reason=public.reason()), reply_to=msg)


__all__ = ["baseline_reply", "error_for", "error_reply", "refusal", "train_reply"]
