"""platform.toml's [federation] and [model] tables parse into the plug-ins' typed configs:
files written before keep their runs, and a key a plug-in does not take is named."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from flwr.serverapp.strategy import FedAvg, Strategy

from fedctr.federation.config import load_platform_config
from fedctr.models import DCNv2Config, LRConfig, builtin_spec_path
from fedctr.server.platform.errors import PlatformConfigError
from fedctr.server.platform.strategies.registry import (
    STRATEGIES,
    FedAdamConfig,
    FedAvgConfig,
    StrategyConfig,
    build_strategy,
    register_strategy,
    strategy_config,
)

# As federation/workspace.py wrote it for the demo before typed configs: every v1
# strategy and model key, whatever the strategy and model.
V1_FEDERATION = """
[federation]
rounds = 3
strategy = "fedavg"
min_partners = 2
fraction_train = 1.0
proximal_mu = 0.0
server_learning_rate = 0.01
"""
V1_MODEL = """
[model]
name = "lr"
embed_dim = 8
hidden = [64, 32]
cross_layers = 2
cross_rank = 16
modality_proj = 128
fused_dim = 64
"""


def _platform_toml(tmp_path: Path, federation: str, model: str = "") -> Path:
    path = tmp_path / "platform.toml"
    path.write_text(f'[platform]\nspec = "{builtin_spec_path("demo")}"\n{federation}{model}')
    return path


def test_a_v1_file_parses_to_the_same_run(tmp_path: Path) -> None:
    config = load_platform_config(_platform_toml(tmp_path, V1_FEDERATION, V1_MODEL))

    assert config.strategy == FedAvgConfig(min_partners=2)
    assert config.model == LRConfig()
    assert config.rounds == 3


def test_each_plugin_reads_its_own_options(tmp_path: Path) -> None:
    federation = '[federation]\nstrategy = "fedadam"\nserver_learning_rate = 0.1\n'
    model = '[model]\nname = "dcnv2"\ncross_rank = 4\n'
    config = load_platform_config(_platform_toml(tmp_path, federation, model))

    assert config.strategy == FedAdamConfig(server_learning_rate=0.1)
    assert config.model == DCNv2Config(cross_rank=4)


@pytest.mark.parametrize(
    ("federation", "model", "message"),
    [
        (
            '[federation]\nstrategy = "fedavg"\neta = 0.1\n',
            "",
            r"\[federation\] strategy 'fedavg' has no option 'eta'; it takes fraction_train",
        ),
        (
            '[federation]\nstrategy = "fedmagic"\n',
            "",
            r"\[federation\] unknown strategy 'fedmagic'; choose one of \('fedadam'",
        ),
        (
            "",
            '[model]\nname = "fm"\nembedding_dim = 4\n',
            r"\[model\] model 'fm' has no option 'embedding_dim'; it takes embed_dim",
        ),
        ("", '[model]\nname = "xgboost"\n', r"\[model\] unknown model 'xgboost'; choose one of"),
        # bad values stay errors, also for a v1 key the plug-in does not use
        ('[federation]\nstrategy = "fedavg"\ntrimmed_beta = 0.7\n', "", "trimmed_beta must be"),
        ("", '[model]\nname = "lr"\nembed_dim = 0\n', "embed_dim must be a positive integer"),
    ],
)
def test_unknown_names_keys_and_bad_values_are_named(
    tmp_path: Path, federation: str, model: str, message: str
) -> None:
    with pytest.raises(PlatformConfigError, match=message):
        load_platform_config(_platform_toml(tmp_path, federation, model))


@dataclass(frozen=True, kw_only=True)
class EveryOtherConfig(StrategyConfig):
    """A plug-in's own option: train on ``fraction_train`` then skip ``skip`` rounds."""

    name: ClassVar[str] = "test-every-other"
    skip: int = 1


@pytest.fixture
def every_other() -> Iterator[str]:
    @register_strategy(EveryOtherConfig)
    def _build(cfg: EveryOtherConfig) -> Strategy:
        return FedAvg(min_train_nodes=cfg.min_partners, fraction_evaluate=0.0)

    yield EveryOtherConfig.name
    STRATEGIES.remove(EveryOtherConfig.name)


def test_a_new_strategy_registers_with_its_own_typed_config(
    tmp_path: Path, every_other: str
) -> None:
    federation = f'[federation]\nstrategy = "{every_other}"\nskip = 3\nmin_partners = 4\n'
    config = load_platform_config(_platform_toml(tmp_path, federation))

    assert config.strategy == EveryOtherConfig(skip=3, min_partners=4)
    assert config.strategy.options() == {
        "min_partners": 4,
        "fraction_train": 1.0,
        "proximal_mu": 0.0,
        "skip": 3,
    }
    assert isinstance(build_strategy(config.strategy), FedAvg)
    with pytest.raises(PlatformConfigError, match="strategy 'fedavg' has no option 'skip'"):
        strategy_config("fedavg", skip=3)
