"""A real deployment on 127.0.0.1: SuperLink + authenticated SuperNodes over TLS.

Every process is the one an operator starts (``fedctr platform start``, ``fedctr
partner start``), on free ports, with keys and certificates made by ``fedctr ...
init``. No mock stands in for Flower, TLS, node authentication, Opacus or the
signature. Run 1: three partners train two DP rounds and a signed model is
published. Then: an unregistered key is refused, a node without the CA cannot
connect, and run 2 goes on with a malformed data file and a node killed
mid-training, publishing a card that names only the partners that contributed.
Run 3: the ServerApp process dies after round 1's replies and ``--resume`` finishes
the run without any partner training a round twice. Run 4: the SuperLink itself is
restarted along with the node killed in run 2: all rejoin, and the audit of all four
runs passes. Run 5: the same federation under secure aggregation (SecAgg+).
Every wait polls with a deadline, and every process is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.supercore.task_identity import TaskIdentity

from fedctr.clients.config import PrivacySettings, TrainingSettings
from fedctr.federation.demo.synthetic import PartnerProfile, generate_federation
from fedctr.federation.deployment.bootstrap import (
    PartnerOptions,
    PlatformOptions,
    add_partner,
    init_partner,
    init_platform,
    read_registration,
)
from fedctr.federation.deployment.errors import DeploymentError
from fedctr.federation.deployment.localrun import LocalDeployment, poll
from fedctr.federation.deployment.processes import StopFlag, descendants, free_port
from fedctr.federation.deployment.runs import RunReport, run_platform
from fedctr.models import builtin_spec_path, model_config
from fedctr.privacy.audit import AuditResult, audit_directories
from fedctr.privacy.ledger import (
    PartnerRelease,
    PartnerWithheld,
    PlatformPublish,
    PlatformReport,
    read_ledger,
)
from fedctr.server.platform.journal import UpdateJournal
from fedctr.server.registry import verify_model_main

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RUN_TIMEOUT_S = 420.0


@dataclass
class Federation:
    root: Path
    platform: Path
    partners: dict[str, Path]
    deployment: LocalDeployment

    @property
    def platform_toml(self) -> Path:
        return self.platform / "platform.toml"


def _partner(root: Path, pid: str, data: Path, port: int, *, epochs: int = 2) -> Path:
    """Full-batch DP-SGD (sampling rate 1): calibration is instant, steps are few; 10
    planned rounds cover the five runs of two rounds below."""
    return init_partner(
        root / pid,
        PartnerOptions(
            partner_id=pid,
            data=data,
            spec=root / "platform" / "spec.toml",
            superlink=f"127.0.0.1:{port}",
            ca_cert=root / "platform" / "tls" / "ca.crt",
            privacy=PrivacySettings(
                epsilon=8.0, delta=1e-5, planned_rounds=10, max_grad_norm=5.0, accountant="rdp"
            ),
            training=TrainingSettings(batch_size=8192, local_epochs=epochs, learning_rate=0.05),
        ),
    ).parent


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = tmp_path_factory.mktemp("deploy")
    logs, test_file = generate_federation(
        root / "data",
        partners=(
            PartnerProfile("shop-a", 700, "parquet", 0, 0.7, -1.2),
            PartnerProfile("advertiser-b", 600, "parquet", 14, 0.4, -1.4),
            PartnerProfile("crm-c", 3000, "csv", 27, 0.55, -1.0, bad_rows=3),
        ),
        platform_test_rows=400,
    )
    broken = root / "data" / "broken-d.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    port = free_port()
    platform = init_platform(
        root / "platform",
        PlatformOptions(
            hosts=("127.0.0.1", "localhost"),
            spec=builtin_spec_path("demo"),
            port=port,
            listen="127.0.0.1",
            rounds=2,
            min_partners=2,
            model=model_config("lr"),
            timeout_s=120.0,
            eval_data=test_file,
            run_name="it",
        ),
    ).parent
    partners = {pid: _partner(root, pid, path, port) for pid, path in logs.items()}
    partners["broken-d"] = _partner(root, "broken-d", broken, port)
    partners["rogue"] = _partner(root, "rogue", logs["shop-a"], port)  # never registered
    partners["no-ca"] = _partner(root, "no-ca", logs["shop-a"], port)
    toml = partners["no-ca"] / "partner.toml"
    toml.write_text(toml.read_text().replace('root_certificates = "tls/ca.crt"', ""))
    # crm-c trains longer (many full-batch epochs), so it can be killed mid-training.
    crm = partners["crm-c"] / "partner.toml"
    crm.write_text(crm.read_text().replace("local_epochs = 2", "local_epochs = 25"))
    for pid in ("shop-a", "advertiser-b", "crm-c", "broken-d", "no-ca"):
        reg = read_registration(partners[pid] / "registration.toml")
        add_partner(platform / "platform.toml", reg, replace=False)

    deployment = LocalDeployment(root / "launchers")
    try:
        with deployment.watching():
            deployment.start_platform(platform)
            deployment.wait_platform(platform)
            for pid in ("shop-a", "advertiser-b", "crm-c"):
                deployment.start_partner(partners[pid])
            deployment.wait_partners([partners[p] for p in ("shop-a", "advertiser-b", "crm-c")])
            yield Federation(root, platform, partners, deployment)
    finally:
        orphans = deployment.stop_all()
        assert orphans == [], f"processes outlived their launchers: {orphans}"


def _run(fed: Federation, run_id: str, **options: object) -> RunReport:
    return run_platform(
        fed.platform_toml, stop=StopFlag(), run_id=run_id, timeout_s=RUN_TIMEOUT_S, **options
    )


def _bodies(path: Path, kind: type, run_id: str) -> list:
    bodies = [e.parsed_body() for e in read_ledger(path).entries]
    return [b for b in bodies if isinstance(b, kind) and b.run_id == run_id]


def test_three_authenticated_nodes_train_two_dp_rounds_and_publish_a_signed_model(
    federation: Federation,
) -> None:
    """Run 1: all three partners contribute to both rounds; the model verifies."""
    report = _run(federation, "run-1")

    rounds = report.summary["rounds"]
    assert [r["aggregated"] for r in rounds] == [True, True]
    for r in rounds:
        assert sorted(t["partner_id"] for t in r["train"]) == ["advertiser-b", "crm-c", "shop-a"]
        assert r["global_metrics"]["auc"] > 0  # the platform evaluates on its own data
    partners = {p.partner_id: p for p in report.card.partners}
    assert set(partners) == {"shop-a", "advertiser-b", "crm-c"}
    assert all(0 < p.epsilon <= 8.0 and p.rounds_contributed == 2 for p in partners.values())
    public_key = federation.platform / "keys" / "platform.pub"
    assert verify_model_main([str(report.model_path), "--public-key", str(public_key)]) == 0


def test_unregistered_keys_and_nodes_without_the_ca_are_refused(federation: Federation) -> None:
    """Both launchers exit with an error saying why; started side by side (with run 2's
    broken-d, which connects) to keep the test short."""
    dep = federation.deployment
    dep.start_partner(federation.partners["rogue"], "--register-wait", "0", "--skip-data-check")
    dep.start_partner(federation.partners["no-ca"], "--skip-data-check")
    dep.start_partner(federation.partners["broken-d"])

    rogue = dep.wait_exit("rogue", timeout_s=240)
    no_ca = dep.wait_exit("no-ca", timeout_s=240)

    assert rogue != 0 and "refused this node's key" in dep.launchers["rogue"].text()
    assert no_ca != 0
    assert "could not verify the SuperLink's TLS certificate" in dep.launchers["no-ca"].text()


def _kill_when_training(fed: Federation, name: str, done: threading.Event) -> list[str]:
    """SIGKILL the partner's whole node once its executor has a task process running."""
    launcher = fed.deployment.launchers[name]
    events: list[str] = []

    def executor_pid() -> int | None:
        for pid in launcher.tree():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"flower_runtime executor" in cmdline:
                return pid
        return None

    def training() -> bool:
        pid = executor_pid()
        return done.is_set() or (pid is not None and bool(descendants(pid)))

    poll(training, timeout_s=RUN_TIMEOUT_S, what=f"{name} to start training", every_s=0.02)
    if not done.is_set():
        fed.deployment.kill(name)
        events.append(f"killed {name} mid-training at {time.monotonic():.1f}")
    return events


def test_bad_data_and_a_killed_node_do_not_stop_the_run(federation: Federation) -> None:
    """Run 2: broken-d reports its unusable file each round, crm-c dies in round 1;
    shop-a and advertiser-b carry both rounds, and only they are on the card."""
    dep = federation.deployment
    if "broken-d" not in dep.launchers:  # normally started by the previous test
        dep.start_partner(federation.partners["broken-d"])
    dep.wait_partners([federation.partners["broken-d"]])
    assert "the data file cannot be used" in dep.launchers["broken-d"].text()
    result: dict[str, RunReport] = {}
    done = threading.Event()

    def submit() -> None:
        try:
            result["report"] = _run(federation, "run-2")
        finally:
            done.set()

    runner = threading.Thread(target=submit)
    runner.start()
    events = _kill_when_training(federation, "crm-c", done)
    runner.join(timeout=RUN_TIMEOUT_S + 60)

    assert events, "crm-c finished its round before it could be killed"
    report = result["report"]
    r1, r2 = report.summary["rounds"]
    assert r1["aggregated"] and r2["aggregated"]
    assert sorted(t["partner_id"] for t in r1["train"]) == ["advertiser-b", "shop-a"]
    assert sorted(t["partner_id"] for t in r2["train"]) == ["advertiser-b", "shop-a"]
    r1_failures = sorted(f["kind"] for f in r1["failures"])
    assert r1_failures == ["bad-data", "node-error"]  # broken-d's file; crm-c gone
    bad = next(f for f in r1["failures"] if f["kind"] == "bad-data")
    assert (bad["file"], bad["problem"]) == ("broken-d.parquet", "unreadable-file")
    assert [f["kind"] for f in r2["failures"]] == ["bad-data"]  # crm-c is no longer sampled
    assert {p.partner_id for p in report.card.partners} == {
        "advertiser-b",
        "shop-a",
    }
    ledger = read_ledger(federation.platform / "ledgers" / "platform.jsonl")
    bodies = [e.parsed_body() for e in ledger.entries]
    publish = [b for b in bodies if isinstance(b, PlatformPublish) and b.run_id == "run-2"]
    assert [sorted(b.partners) for b in publish] == [["advertiser-b", "shop-a"]]
    reports = [b for b in bodies if isinstance(b, PlatformReport) and b.run_id == "run-2"]
    assert {b.partner_id for b in reports} == {"advertiser-b", "shop-a"}
    timing = (federation.platform / "runs" / "run-2" / "timing.jsonl").read_text().splitlines()
    assert len(timing) == 2 and all(json.loads(row)["train_replies"] >= 2 for row in timing)


def test_a_serverapp_killed_mid_run_resumes_without_training_a_round_twice(
    federation: Federation,
) -> None:
    """Run 3: the ServerApp process ends itself (os._exit) right after round 1's replies
    are journaled. The failed run says how to resume; ``--resume`` completes round 1
    from the journal and asks only for round 2. Each partner released each round once,
    the platform reported each release once and published one model."""
    with pytest.raises(DeploymentError, match="--resume"):
        _run(federation, "run-3", fault="after-replies@1")
    platform_ledger = federation.platform / "ledgers" / "platform.jsonl"
    assert _bodies(platform_ledger, PlatformReport, "run-3") == []  # round 1 never committed

    report = _run(federation, "run-3", resume=True)

    rounds = report.summary["rounds"]
    assert [r["aggregated"] for r in rounds] == [True, True]
    for r in rounds:
        assert sorted(t["partner_id"] for t in r["train"]) == ["advertiser-b", "shop-a"]
    for pid in ("advertiser-b", "shop-a"):
        releases = _bodies(federation.partners[pid] / "ledger.jsonl", PartnerRelease, "run-3")
        assert [b.round for b in releases] == [1, 2], pid
    reports = [(b.round, b.partner_id) for b in _bodies(platform_ledger, PlatformReport, "run-3")]
    assert sorted(reports) == sorted(set(reports)) and len(reports) >= 4
    assert len(_bodies(platform_ledger, PlatformPublish, "run-3")) == 1


def _audit(fed: Federation, into: Path) -> AuditResult:
    """What an auditor is handed: every ledger and public key, copied; the registry."""
    ledgers, keys = into / "ledgers", into / "keys"
    ledgers.mkdir(parents=True)
    keys.mkdir(parents=True)
    shutil.copyfile(fed.platform / "ledgers" / "platform.jsonl", ledgers / "platform.jsonl")
    shutil.copyfile(fed.platform / "keys" / "platform.pub", keys / "platform.pub")
    for pid, folder in fed.partners.items():
        if (folder / "ledger.jsonl").exists():
            shutil.copyfile(folder / "ledger.jsonl", ledgers / f"{pid}.jsonl")
            shutil.copyfile(fed.platform / "partner-keys" / f"{pid}.pub", keys / f"{pid}.pub")
    return audit_directories(
        ledgers_dir=ledgers, keys_dir=keys, registry_dir=fed.platform / "registry"
    )


def test_restarted_superlink_and_node_rejoin_and_every_epsilon_is_accounted(
    federation: Federation, tmp_path: Path
) -> None:
    """Run 4: the SuperLink (persistent state database) is stopped and started again and
    crm-c, killed mid-training in run 2, is started again. The untouched nodes reconnect
    on their own, crm-c recovers its spend state from its own ledger and joins, and the
    audit of every run so far (including the crashed-and-resumed run 3) passes: no
    entry lost or duplicated, every epsilon recomputed."""
    dep = federation.deployment
    dep.stop("platform")
    dep.start_platform(federation.platform)
    dep.start_partner(federation.partners["crm-c"])
    dep.wait_platform(federation.platform)
    dep.wait_partners([federation.partners["crm-c"]])

    report = _run(federation, "run-4")

    assert all(r["aggregated"] for r in report.summary["rounds"])
    assert {p.partner_id for p in report.card.partners} == {"advertiser-b", "crm-c", "shop-a"}
    assert all(dep.launchers[p].running() for p in ("shop-a", "advertiser-b"))
    crm = [
        e.parsed_body() for e in read_ledger(federation.partners["crm-c"] / "ledger.jsonl").entries
    ]
    # Killed in run 2 before or after its round was reserved: nothing released for run 2,
    # and a reserved round is on the ledger as withheld (counted, nothing sent).
    assert not [b for b in crm if isinstance(b, PartnerRelease) and b.run_id == "run-2"]
    withheld = [b for b in crm if isinstance(b, PartnerWithheld)]
    assert all((b.run_id, b.round) == ("run-2", 1) for b in withheld)
    audit = _audit(federation, tmp_path / "audit")
    assert audit.passed, [str(f) for f in audit.findings]


def test_secure_aggregation_runs_over_tls_and_the_platform_keeps_only_masked_inputs(
    federation: Federation, tmp_path: Path
) -> None:
    """Run 5: the same deployment with ``[secure_aggregation]`` in platform.toml. Every
    SecAgg+ step travels through the SuperLink as Message-API train messages (models
    packed), each partner's release entry names the session and commits to its masked
    input, the platform's journal holds only masked inputs, and the audit passes."""
    toml = federation.platform_toml
    plain = toml.read_text()
    toml.write_text(plain + "\n[secure_aggregation]\nthreshold = 0.5\n")
    try:
        report = _run(federation, "run-5")
    finally:
        toml.write_text(plain)

    assert [r["aggregated"] for r in report.summary["rounds"]] == [True, True]
    assert report.card.training["secure_aggregation"]["protocol"] == "secagg+"
    for pid in ("shop-a", "advertiser-b", "crm-c"):
        releases = _bodies(federation.partners[pid] / "ledger.jsonl", PartnerRelease, "run-5")
        assert len(releases) == 2 and {b.secure_aggregation for b in releases} == {"secagg+"}
    # reading journaled messages needs the identity a ServerApp process has
    TaskIdentity.task_id, TaskIdentity.run_id = 1, 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    journal = UpdateJournal(federation.platform / "runs" / "run-5" / "journal")
    for rnd in (1, 2):
        assert {tuple(m.content["arrays"]) for m in journal.messages(rnd)} == {("masked",)}
    audit = _audit(federation, tmp_path / "audit")
    assert audit.passed, [str(f) for f in audit.findings]
