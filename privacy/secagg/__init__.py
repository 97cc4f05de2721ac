"""Secure aggregation (SecAgg+) for fedctr's Message-API federation: the platform sees
only the sum of the partners' masked, quantized DP updates.

The protocol's cryptography and its checks live here, next to the other privacy
decisions; the Flower wiring (the platform's strategy wrapper and the partner's
client mod) only moves its messages.
"""

from fedctr.privacy.secagg.aggregator import AggregatorSession
from fedctr.privacy.secagg.errors import SecAggAbort, SecAggError, SecAggRefused
from fedctr.privacy.secagg.partner import PartnerSession
from fedctr.privacy.secagg.settings import PROTOCOL, SecAggSettings
from fedctr.privacy.secagg.vectors import Layout, dequantize, quantize, update_vector

__all__ = [
    "PROTOCOL",
    "AggregatorSession",
    "Layout",
    "PartnerSession",
    "SecAggAbort",
    "SecAggError",
    "SecAggRefused",
    "SecAggSettings",
    "dequantize",
    "quantize",
    "update_vector",
]
