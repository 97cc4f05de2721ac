"""Lay out a federation on disk: one folder per party, keys, configs.

The layout mirrors who holds what (ARCHITECTURE.md): each partner folder holds the
partner's data path, budget, state, ledger and private key; the platform folder
its signing key, registry, runs and ledger; the auditor folder only public keys.
The simulation and the demo use it; a real deployment has the same folders on
different machines.

::

    <root>/spec.toml
    <root>/platform/{platform.toml, keys/platform.key, registry/, runs/, ledgers/}
    <root>/partners/<id>/{partner.toml, keys/<id>.key, state/, ledger.jsonl}
    <root>/auditor/keys/{platform.pub, <id>.pub}
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.tomlfile import toml_sections
from fedctr.models import FeatureSpec, ModelConfig
from fedctr.privacy.ledger import Ledger
from fedctr.privacy.secagg import SecAggSettings
from fedctr.privacy.signing import generate_signing_key, save_private_key, save_public_key
from fedctr.server.platform.strategies.registry import StrategyConfig


@dataclass(frozen=True)
class PartnerSetup:
    """What one partner brings: its id, its log file, its privacy and training choices."""

    partner_id: str
    data: Path
    privacy: PrivacySettings
    training: TrainingSettings
    bad_rows: str = "skip"


@dataclass(frozen=True)
class Workspace:
    root: Path
    platform_config: Path
    partner_configs: dict[str, Path]

    @property
    def registry(self) -> Path:
        return self.root / "platform" / "registry"

    @property
    def platform_public_key(self) -> Path:
        return self.root / "auditor" / "keys" / "platform.pub"

    @property
    def runs(self) -> Path:
        return self.root / "platform" / "runs"

    @property
    def auditor_keys(self) -> Path:
        return self.root / "auditor" / "keys"

    def partner_dir(self, partner_id: str) -> Path:
        return self.root / "partners" / partner_id

    def platform_ledger(self) -> Path:
        return self.root / "platform" / "ledgers" / "platform.jsonl"


def _keypair(private: Path, public_copies: list[Path]) -> Ed25519PrivateKey:
    private.parent.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key()
    save_private_key(key, private)
    for pub in public_copies:
        pub.parent.mkdir(parents=True, exist_ok=True)
        save_public_key(key, pub)
    return key


def create_workspace(
    root: Path,
    *,
    spec_file: Path,
    spec: FeatureSpec,
    partners: list[PartnerSetup],
    model: ModelConfig,
    strategy: StrategyConfig,
    rounds: int,
    eval_data: Path | None,
    run_name: str = "demo",
    release_gate_canaries: int | None = None,
    secure_aggregation: SecAggSettings | None = None,
) -> Workspace:
    """Create folders, keys and config files for a federation (``root`` must be new).

    ``release_gate_canaries``: publish only after a passing empirical audit with that
    many canaries on ``eval_data`` (``[release_gate]``); None: no gate.
    ``secure_aggregation``: the ``[secure_aggregation]`` settings (None: plain FedAvg).
    """
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; choose a new --workdir")
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(spec_file, root / "spec.toml")
    del spec  # the copied file is the authority; its hash is checked at load time
    auditor = root / "auditor" / "keys"

    platform = root / "platform"
    _keypair(
        platform / "keys" / "platform.key",
        [platform / "keys" / "platform.pub", auditor / "platform.pub"],
    )
    strategy_table = {"strategy": strategy.name, **strategy.options()}
    (platform / "platform.toml").write_text(
        toml_sections(
            {
                "platform": {
                    "run_name": run_name,
                    "spec": "../spec.toml",
                    "work_dir": "runs",
                    "registry": "registry",
                    "signing_key": "keys/platform.key",
                    "ledger": "ledgers/platform.jsonl",
                    "partner_keys": "partner-keys",
                    "eval_data": str(eval_data.resolve()) if eval_data else None,
                },
                "federation": {"rounds": rounds, **strategy_table},
                "model": model.to_dict(),
                **(
                    {}
                    if release_gate_canaries is None
                    else {"release_gate": {"canaries": release_gate_canaries}}
                ),
                **(
                    {}
                    if secure_aggregation is None
                    else {"secure_aggregation": secure_aggregation.to_dict()}
                ),
            }
        )
    )

    partner_configs: dict[str, Path] = {}
    for p in partners:
        folder = root / "partners" / p.partner_id
        key = _keypair(
            folder / "keys" / f"{p.partner_id}.key",
            [
                folder / "keys" / f"{p.partner_id}.pub",
                auditor / f"{p.partner_id}.pub",
                # registered with the platform: an update from an unknown key is rejected
                platform / "partner-keys" / f"{p.partner_id}.pub",
            ],
        )
        # An empty ledger from day one: "never released anything" is auditable too.
        Ledger.open(folder / "ledger.jsonl", signing_key=key, owner=p.partner_id).close()
        config = folder / "partner.toml"
        config.write_text(
            toml_sections(
                {
                    "partner": {
                        "id": p.partner_id,
                        "data": str(p.data.resolve()),
                        "spec": "../../spec.toml",
                        "state_dir": "state",
                        "signing_key": f"keys/{p.partner_id}.key",
                        "bad_rows": p.bad_rows,
                    },
                    "privacy": {
                        "epsilon": p.privacy.epsilon,
                        "delta": p.privacy.delta,
                        "planned_rounds": p.privacy.planned_rounds,
                        "sample_rate": p.privacy.sample_rate,
                        "max_grad_norm": p.privacy.max_grad_norm,
                        "accountant": p.privacy.accountant,
                        "dp_implementation": p.privacy.dp_implementation,
                        "unit": p.privacy.unit,
                        "max_rows_per_user": p.privacy.max_rows_per_user,
                        "bucket_selection": p.privacy.bucket_selection,
                        "selection_noise_ratio": p.privacy.selection_noise_ratio,
                        "selection_threshold": p.privacy.selection_threshold,
                        "enabled": p.privacy.enabled,
                    },
                    "training": {
                        "batch_size": p.training.batch_size,
                        "local_epochs": p.training.local_epochs,
                        "learning_rate": p.training.learning_rate,
                        "optimizer": p.training.optimizer,
                        "holdout_fraction": p.training.holdout_fraction,
                        "seed": p.training.seed,
                        "aggregation_weight": p.training.aggregation_weight,
                    },
                }
            )
        )
        partner_configs[p.partner_id] = config
    return Workspace(root, platform / "platform.toml", partner_configs)


__all__ = ["PartnerSetup", "Workspace", "create_workspace"]
