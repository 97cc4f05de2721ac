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


def _flipped(test_file: Path, out: Path) -> Path:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(test_file)
    flipped = pc.subtract(1, table.column("click"))
    pq.write_table(table.set_column(table.schema.get_field_index("click"), "click", flipped), out)
    return out


def test_the_centralized_baseline_is_chosen_without_reading_the_test_file(
    tmp_path: Path, synthetic_logs
) -> None:
    """Learning rate and epochs come from a validation split of the training rows: the
    same choice whatever the test file holds (here: its labels inverted), which then
    only scores the chosen model. The federated run's own learning rate is among those
    tried, so the tuned baseline is never worse on validation than the untuned one."""
    from fedctr.federation.demo.baseline import centralized_baseline

    logs, test_file = synthetic_logs
    spec = load_spec(builtin_spec_path("demo"))
    training = TrainingSettings(batch_size=256, learning_rate=0.05)
    runs = [
        centralized_baseline(
            spec=spec,
            model=model_config("lr"),
            train_files=[logs["shop-a"], logs["advertiser-b"]],
            eval_file=eval_file,
            max_epochs=2,
            training=training,
        )
        for eval_file in (test_file, _flipped(test_file, tmp_path / "flipped.parquet"))
    ]

    assert runs[0].choice == runs[1].choice
    assert runs[0].test.auc + runs[1].test.auc == pytest.approx(1.0, abs=1e-4)  # float sums
    tried = {(lr, epochs) for lr, epochs, _ in runs[0].choice.tried}
    assert {(0.05, 1), (0.05, 2), (1e-3, 1), (1e-2, 2)} <= tried
    assert runs[0].choice.validation_auc == max(auc for *_, auc in runs[0].choice.tried)
