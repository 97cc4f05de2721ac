"""Every package declares its public names, and each of them exists."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "fedctr",
    "fedctr.models",
    "fedctr.models.logs",
    "fedctr.privacy",
    "fedctr.privacy.dpsgd",
    "fedctr.privacy.ledger",
    "fedctr.privacy.audit",
    "fedctr.clients",
    "fedctr.server.platform",
    "fedctr.server.registry",
    "fedctr.server.platform.strategies",
    "fedctr.server.scoring.api",
    "fedctr.server.scoring",
    "fedctr.federation",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_star_import_exposes_exactly_all(name: str) -> None:
    """``from pkg import *`` works and every name in ``__all__`` is defined."""
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    missing = [n for n in module.__all__ if n not in namespace]
    assert not missing


def test_fedctr_errors_share_one_root() -> None:
    """Every domain error is a FedctrError, so a process boundary can catch them all."""
    from fedctr.errors import FedctrError
    from fedctr.models.errors import FeatureSpecError
    from fedctr.models.logs.errors import DataFileError
    from fedctr.privacy.errors import BudgetExceededError
    from fedctr.server.platform.errors import PlatformConfigError
    from fedctr.server.registry import ArtifactTampered
    from fedctr.server.scoring import ScoringError

    for cls in (
        DataFileError,
        FeatureSpecError,
        BudgetExceededError,
        PlatformConfigError,
        ArtifactTampered,
        ScoringError,
    ):
        assert issubclass(cls, FedctrError)


@pytest.mark.parametrize(
    ("package", "name", "heavy"),
    [
        ("fedctr.privacy", "PrivacyBudget", "opacus"),
        ("fedctr.server.scoring.api", "API_PREFIX", "numpy"),
    ],
)
def test_lazy_packages_import_nothing_heavy_until_a_name_is_used(
    package: str, name: str, heavy: str
) -> None:
    """The scoring service imports ``fedctr.privacy`` without Opacus and
    ``fedctr.server.scoring.api`` before numpy (it sets BLAS thread limits first):
    checked in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        f"import sys, {package} as p; assert {heavy!r} not in sys.modules; "
        f"p.{name}; assert {name!r} in vars(p) and {name!r} in dir(p)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
