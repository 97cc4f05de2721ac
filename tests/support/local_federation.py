"""A whole federation in one process for fault tests: real partner nodes (Opacus DP-SGD,
spend state, signed ledgers, outboxes), the platform's real orchestrator, ledger and
publishing; only the transport is a direct call instead of a SuperLink.

Partners are rebuilt from their config for every message, as a restarted node would
be, and their noise is seeded per (node, round), so two runs that receive the same
requests produce the same updates: a crashed-and-resumed run can be compared bit for
bit with an uninterrupted one.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from flwr.app import Message, MessageType, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity

from fedctr.clients.config import PartnerConfig, PrivacySettings, TrainingSettings
from fedctr.clients.node import ROUND_TIMES_FILE, PartnerNode
from fedctr.federation.client_app import handle_message
from fedctr.models import builtin_spec_path, load_spec, model_config
from fedctr.privacy import wire as P
from fedctr.privacy.audit import AuditResult, audit_directories
from fedctr.privacy.ledger import PLATFORM_OWNER, ledger_file, public_key_file
from fedctr.privacy.secagg import SecAggSettings
from fedctr.privacy.signing import (
    generate_signing_key,
    load_private_key,
    save_private_key,
    save_public_key,
)
from fedctr.server.platform.faults import FaultPlan, FaultStage
from fedctr.server.platform.ledger import PlatformLedger, load_partner_keys
from fedctr.server.platform.orchestrator import FederationOutcome, FederationPlan, run_federation
from fedctr.server.platform.publishing import PublishResult, PublishTarget, publish_outcome
from fedctr.server.platform.strategies.registry import strategy_config


class LocalGrid(Grid):
    """Nodes are partner configs; each message is handled by a freshly built node."""

    def __init__(self, partners: dict[int, PartnerConfig], *, seed: int = 0) -> None:
        self.partners = partners
        self.seed = seed
        self.asked: Counter[tuple[int, int]] = Counter()  # (node, round) -> messages
        self.states: dict[int, RecordDict] = {}  # each node's context state (its SuperNode's)
        self._run = None

    def set_run(self, run) -> None:  # type: ignore[no-untyped-def]
        self._run = run

    @property
    def run(self):  # type: ignore[no-untyped-def]
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.partners)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("LocalGrid answers in send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("LocalGrid answers in send_and_receive")

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        replies = []
        for msg in messages:
            assert msg.metadata.message_type == MessageType.TRAIN
            node_id = msg.metadata.dst_node_id
            state = self.states.setdefault(node_id, RecordDict())
            if P.CONFIG not in msg.content.config_records:  # a secure-aggregation step
                replies.append(handle_message(lambda: None, msg, state=state))  # type: ignore[arg-type,return-value]
                continue
            server_round = int(msg.content[P.CONFIG][P.SERVER_ROUND])
            self.asked[(node_id, server_round)] += 1
            seed = self.seed * 1_000_003 + node_id * 1_009 + server_round
            replies.append(
                handle_message(  # a node started afresh
                    lambda n=node_id: PartnerNode(self.partners[n]), msg, state=state, seed=seed
                )
            )
        return replies


@dataclass
class LocalFederation:
    """Folders in the auditor's layout: ``ledgers/<owner>.jsonl``, ``keys/<owner>.pub``."""

    root: Path
    plan: FederationPlan
    partners: dict[int, PartnerConfig]
    platform_key: Path
    registry: Path
    grids: list[LocalGrid] = field(default_factory=list)

    @property
    def ledgers(self) -> Path:
        return self.root / "ledgers"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def platform_ledger(self) -> Path:
        return ledger_file(self.ledgers, PLATFORM_OWNER)

    def ledger(self) -> PlatformLedger:
        return PlatformLedger(
            self.platform_ledger,
            load_private_key(self.platform_key),
            partner_keys=load_partner_keys(self.keys),
        )

    def grid(self) -> LocalGrid:
        grid = LocalGrid(self.partners)
        self.grids.append(grid)
        return grid

    def run(self, *, resume: bool = False, faults: FaultPlan | None = None) -> FederationOutcome:
        # The identity a ServerApp process gets from its runtime (as flwr.server.compat does).
        TaskIdentity.task_id, TaskIdentity.run_id = 1, 1
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        return run_federation(
            self.grid(), self.plan, ledger=self.ledger(), resume=resume, faults=faults
        )

    def publish(self, outcome: FederationOutcome, faults: FaultPlan | None = None) -> PublishResult:
        target = PublishTarget(
            registry=self.registry, signing_key=self.platform_key, ledger=self.platform_ledger
        )
        return publish_outcome(outcome, target, faults=faults)

    def audit(self) -> AuditResult:
        return audit_directories(
            ledgers_dir=self.ledgers, keys_dir=self.keys, registry_dir=self.registry
        )

    def asked(self, node_id: int, server_round: int) -> int:
        """How many training messages node ``node_id`` got for ``server_round``, all runs."""
        return sum(g.asked[(node_id, server_round)] for g in self.grids)


def local_federation(
    root: Path,
    logs: dict[str, Path],
    eval_data: Path,
    *,
    rounds: int = 3,
    strategy: str = "fedavg",
    run_id: str = "run-faults",
    secure_aggregation: SecAggSettings | None = None,
    privacy: dict[str, object] | None = None,
    **strategy_options: object,
) -> LocalFederation:
    """Partners for every log in ``logs`` (node ids 1..n), the platform, one plan."""
    spec_path = builtin_spec_path("demo")
    (root / "ledgers").mkdir(parents=True, exist_ok=True)
    (root / "keys").mkdir(parents=True, exist_ok=True)
    platform_key = root / "platform.key"
    key = generate_signing_key()
    save_private_key(key, platform_key)
    save_public_key(key, public_key_file(root / "keys", PLATFORM_OWNER))
    partners = {}
    for node_id, (pid, log) in enumerate(sorted(logs.items()), start=1):
        partner_key = root / "partners" / pid / "partner.key"
        partner_key.parent.mkdir(parents=True, exist_ok=True)
        pkey = generate_signing_key()
        save_private_key(pkey, partner_key)
        save_public_key(pkey, public_key_file(root / "keys", pid))
        partners[node_id] = PartnerConfig(
            partner_id=pid,
            data=log,
            spec=spec_path,
            state_dir=root / "partners" / pid / "state",
            signing_key=partner_key,
            ledger=ledger_file(root / "ledgers", pid),
            privacy=PrivacySettings(
                **{  # type: ignore[arg-type]
                    "epsilon": 4.0,
                    "delta": 1e-5,
                    "planned_rounds": rounds,
                    "sample_rate": 0.1,
                    "max_grad_norm": 1.0,
                    **(privacy or {}),
                }
            ),
            training=TrainingSettings(
                batch_size=128, local_epochs=1, learning_rate=0.05, holdout_fraction=0.0
            ),
        )
    plan = FederationPlan(
        run_id=run_id,
        rounds=rounds,
        spec=load_spec(spec_path),
        model=model_config("lr"),
        strategy=strategy_config(strategy, min_partners=2, **strategy_options),
        work_dir=root / "platform" / run_id,
        eval_data=eval_data,
        secure_aggregation=secure_aggregation,
    )
    return LocalFederation(
        root=root,
        plan=plan,
        partners=partners,
        platform_key=platform_key,
        registry=root / "registry",
    )


def _crashing_platform(fed: LocalFederation, stage: FaultStage, server_round: int) -> None:
    """Child process: the platform's run (and publish), ended by ``os._exit`` at ``stage``."""
    faults = FaultPlan(stage, server_round, exit_process=True)
    outcome = fed.run(faults=faults)
    fed.publish(outcome, faults=faults)
    raise AssertionError(f"the platform should have crashed at {stage.value}")


def crash_platform(fed: LocalFederation, stage: FaultStage, server_round: int) -> int:
    """Run the platform in a fresh process that dies at ``stage`` of ``server_round``
    (no cleanup, no flush); its exit code."""
    context = multiprocessing.get_context("spawn")
    proc = context.Process(target=_crashing_platform, args=(fed, stage, server_round))
    proc.start()
    proc.join(timeout=600)
    assert proc.exitcode is not None, "the platform process did not end"
    return proc.exitcode


def trained_rounds(config: PartnerConfig) -> list[tuple[str, int]]:
    """(run, round) of every round the node trained, from its own local timing file
    (a release re-sent from the outbox is not training and is not listed)."""
    path = config.state_dir / ROUND_TIMES_FILE
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["run_id"], r["round"]) for r in rows]


def killed_partner_round(
    config: PartnerConfig,
    weights: dict[str, torch.Tensor],
    *,
    run_id: str,
    server_round: int,
    die_at: str,
) -> None:
    """Child process: one training round of the node, ended by SIGKILL at ``die_at``
    (``training``: once the round is reserved, as training starts; ``before-release``:
    trained and counted, before the update is kept and ledgered)."""
    import fedctr.clients.node as node_module

    def die(*_args: object, **_kwargs: object) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    if die_at == "training":
        node_module.train_locally = die  # type: ignore[assignment]
    elif die_at == "before-release":
        node_module.Outbox.keep = die  # type: ignore[assignment,method-assign]
    else:
        raise ValueError(die_at)
    node = PartnerNode(config)
    node.train(
        weights,
        model_config=model_config("lr"),
        spec_hash=node.spec.spec_hash,
        run_id=run_id,
        server_round=server_round,
        seed=server_round,
    )
    raise AssertionError("the round should have been killed")


def kill_partner_mid_round(
    config: PartnerConfig,
    weights: dict[str, torch.Tensor],
    *,
    run_id: str,
    server_round: int,
    die_at: str,
) -> int:
    """Run :func:`killed_partner_round` in a fresh process; its exit code (-9 if killed)."""
    context = multiprocessing.get_context("spawn")
    proc = context.Process(
        target=killed_partner_round,
        args=(config, weights),
        kwargs={"run_id": run_id, "server_round": server_round, "die_at": die_at},
    )
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode is not None, "the partner process did not end"
    return proc.exitcode


__all__ = [
    "LocalFederation",
    "LocalGrid",
    "crash_platform",
    "kill_partner_mid_round",
    "killed_partner_round",
    "local_federation",
    "trained_rounds",
]
