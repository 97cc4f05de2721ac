"""DP-SGD implementations behind one seam; see :mod:`fedctr.privacy.dpsgd.base`."""

from fedctr.privacy.dpsgd import opacus_impl, sparse_impl  # noqa: F401  (register the implementations)
from fedctr.privacy.dpsgd.base import (
    DPSGDImplementation,
    PrivateTraining,
    UserSampling,
    check_private_arguments,
)
from fedctr.privacy.dpsgd.errors import SeamArgumentError, TrainingLoopError, UnsupportedLayerError
from fedctr.privacy.dpsgd.registry import (
    available_implementations,
    get_implementation,
    register_implementation,
)
from fedctr.privacy.dpsgd.sampling import PoissonLoader
from fedctr.privacy.dpsgd.sparse_impl import FedctrSparse, SparseDPModule
from fedctr.privacy.dpsgd.sparse_optimizer import SparseDPOptimizer

DEFAULT_IMPLEMENTATION = "fedctr-sparse"

__all__ = [
    "DEFAULT_IMPLEMENTATION",
    "DPSGDImplementation",
    "FedctrSparse",
    "PoissonLoader",
    "PrivateTraining",
    "SeamArgumentError",
    "SparseDPModule",
    "SparseDPOptimizer",
    "TrainingLoopError",
    "UnsupportedLayerError",
    "UserSampling",
    "available_implementations",
    "check_private_arguments",
    "get_implementation",
    "register_implementation",
]
