"""The demo on real files, as a newcomer uses it: the traps of issue 15.

A ``test``/``valid`` file in a folder of partner files is the platform's evaluation
file, never a fourth partner; a run that can never reach ``min_partners`` refuses at
once instead of waiting; a header damaged by stray bytes is named as such."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.demo.datasets import real_federation
from fedctr.federation.simulation import run_simulation
from fedctr.federation.workspace import PartnerSetup, create_workspace
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.models.logs.errors import DataFileError, DataProblem
from fedctr.models.logs.reader import read_partner_log
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.strategies.registry import strategy_config


def _folder(root: Path, logs: dict[str, Path], test_file: Path, eval_name: str) -> Path:
    root.mkdir()
    for pid, path in logs.items():
        (root / f"{pid}{path.suffix}").symlink_to(path)
    (root / eval_name).symlink_to(test_file)
    return root


@pytest.mark.parametrize("eval_name", ["test.parquet", "shop-valid.parquet", "eval.parquet"])
def test_a_test_or_valid_file_is_the_platforms_evaluation_file_not_a_partner(
    tmp_path: Path, synthetic_logs, eval_name: str
) -> None:
    logs, test_file = synthetic_logs
    folder = _folder(tmp_path / "data", logs, test_file, eval_name)

    data = real_federation(
        folder, tmp_path / "work", spec_file=None, num_partners=3, split_column=None
    )

    assert sorted(data.partners) == sorted(logs)
    assert data.eval_data is not None and data.eval_data.name == eval_name
    assert f"platform evaluates on {eval_name}" in data.description


def test_a_run_that_cannot_reach_min_partners_refuses_at_once(
    tmp_path: Path, synthetic_logs
) -> None:
    logs, test_file = synthetic_logs
    spec_file = builtin_spec_path("demo")
    ws = create_workspace(
        tmp_path / "fed",
        spec_file=spec_file,
        spec=load_spec(spec_file),
        partners=[
            PartnerSetup(
                "shop-a", logs["shop-a"], PrivacySettings(), TrainingSettings(batch_size=64)
            )
        ],
        model=model_config("lr"),
        strategy=strategy_config(min_partners=2),
        rounds=1,
        eval_data=test_file,
    )
    started = time.monotonic()
    with pytest.raises(PlatformConfigError, match=r"min_partners = 2, but only 1 partner"):
        run_simulation(
            platform_config=ws.platform_config,
            partner_configs=list(ws.partner_configs.values()),
            run_id="never",
            flwr_home=tmp_path / "flwr-home",
        )
    assert time.monotonic() - started < 10  # refused before any engine starts


def test_stray_bytes_before_a_quoted_header_are_named(tmp_path: Path, synthetic_logs) -> None:
    logs, _ = synthetic_logs
    broken = tmp_path / "crm-c.csv"
    broken.write_bytes(b".." + logs["crm-c"].read_bytes())

    with pytest.raises(DataFileError) as caught:
        read_partner_log(broken, load_spec(builtin_spec_path("demo")))

    assert caught.value.problem is DataProblem.BAD_HEADER
    assert caught.value.column == "click"
    assert "starts with 2 stray byte(s)" in str(caught.value)
