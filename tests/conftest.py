"""Shared fixtures: small real data written as real files, in a fresh temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedctr.models import FeatureSpec, builtin_spec_path, load_spec

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
# Read when Ray is first imported: Ray then keeps 127.0.0.1 as the node address instead
# of swapping in the machine's routable one, so every Ray server in the tests listens on
# loopback (a single-machine cluster; tests never join a second machine).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


@pytest.fixture(scope="session")
def demo_spec() -> FeatureSpec:
    return load_spec(builtin_spec_path("demo"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only real ad samples (../shared/data from the project root)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    """A small generated federation (3 partners, one CSV with bad rows) + platform test."""
    from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation

    partners = (
        PartnerProfile("shop-a", 1500, "parquet", 0, 0.7, -1.2),
        PartnerProfile("advertiser-b", 1200, "parquet", 14, 0.4, -1.4),
        PartnerProfile("crm-c", 900, "csv", 27, 0.55, -1.0, bad_rows=3),
    )
    return generate_federation(
        tmp_path_factory.mktemp("logs"), partners=partners, platform_test_rows=800
    )


@pytest.fixture
def fsync_log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ``os.fsync`` in order: "file" or "dir" (durability checks)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced
