"""Errors of the DP-SGD implementations: each subclass means one thing."""

from fedctr.privacy.errors import PrivacyError


class UnsupportedLayerError(PrivacyError, ValueError):
    """The model has a trainable tensor the implementation cannot clip per example.

    Raised before training starts, so no privacy budget is spent on a model whose
    per-example gradient norms would be wrong.
    """


class SeamArgumentError(PrivacyError, TypeError):
    """An argument of the DP-SGD seam is the wrong kind of object: a torch generator where
    a :class:`~fedctr.privacy.randomness.SecureRandom` belongs, an optimizer or loader Opacus
    already made private, data that is not a ``TensorDataset``. Raised before anything is
    wrapped."""


class TrainingLoopError(PrivacyError, RuntimeError):
    """The training loop broke the one-batch-per-step contract of :mod:`fedctr.privacy.dpsgd.base`
    (for example two backward passes before ``optimizer.step()``)."""


__all__ = ["SeamArgumentError", "TrainingLoopError", "UnsupportedLayerError"]
