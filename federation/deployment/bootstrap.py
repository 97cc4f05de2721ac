"""``init`` and ``add-partner``: the folders, keys, certificates and configs of each side.

Platform folder (``fedctr platform init DIR``)::

    platform.toml  spec.toml
    tls/ca.crt ca.key superlink.crt superlink.key   (keys 0600; give partners ca.crt)
    keys/platform.key platform.pub                   (Ed25519: signs models and ledger)
    node-keys/<id>.pub  partner-keys/<id>.pub        (filled by add-partner)
    registry/ runs/ ledgers/ flwr-home/ logs/ run/

Partner folder (``fedctr partner init DIR``)::

    partner.toml  spec.toml  tls/ca.crt
    keys/<id>.key <id>.pub    (Ed25519: signs the partner's ledger)
    keys/node.key node.pub    (Flower node key: EC P-384, OpenSSH format)
    registration.toml         (public keys only: send this to the platform)
    state/ flwr-home/ logs/ run/

Private keys are written 0600 and never printed.
"""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedctr.clients.config import PrivacySettings, TrainingSettings, load_partner_config
from fedctr.federation.config import load_platform_config
from fedctr.federation.deployment.credentials import (
    create_dev_tls,
    create_node_key,
    load_node_public_key,
    node_key_fingerprint,
    validate_hosts,
)
from fedctr.federation.deployment.errors import CredentialError, DeploymentConfigError
from fedctr.federation.deployment.settings import (
    load_node_settings,
    load_superlink_settings,
    split_address,
)
from fedctr.federation.tomlfile import toml_line
from fedctr.federation.waits import Waits
from fedctr.models import LRConfig, ModelConfig, builtin_spec_path
from fedctr.models.spec import FeatureSpecError
from fedctr.privacy.secagg import SecAggSettings
from fedctr.privacy.signing import generate_signing_key, save_private_key, save_public_key
from fedctr.server.platform.strategies.registry import strategy_config

REGISTRATION_FILE = "registration.toml"


def _fresh_dir(path: Path) -> Path:
    path = path.resolve()
    if path.exists() and any(path.iterdir()):
        raise DeploymentConfigError(f"{path} exists and is not empty; choose a new folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_spec(spec: str | Path) -> Path:
    """A spec file path, or the name of a built-in spec (``demo``)."""
    path = Path(spec)
    if path.is_file():
        return path.resolve()
    try:
        return builtin_spec_path(str(spec))
    except FeatureSpecError as exc:
        raise DeploymentConfigError(f"--spec {spec}: no such file; {exc}") from exc


# ---- platform ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PlatformOptions:
    hosts: tuple[str, ...]
    spec: Path
    port: int = 9093
    listen: str = "0.0.0.0"
    # partners spread their budget over PrivacySettings' planned rounds by default
    rounds: int = field(default_factory=lambda: PrivacySettings().planned_rounds)
    min_partners: int = 2
    strategy: str = "fedavg"
    model: ModelConfig = field(default_factory=LRConfig)
    timeout_s: float = 600.0
    eval_data: Path | None = None
    run_name: str = "fedctr"
    secure_aggregation: SecAggSettings | None = None  # None: plain aggregation


def init_platform(root: Path, opts: PlatformOptions) -> Path:
    """Create the platform folder; returns the path of platform.toml."""
    hosts = validate_hosts(opts.hosts)
    strategy_config(opts.strategy, min_partners=opts.min_partners)  # validates
    root = _fresh_dir(root)
    shutil.copyfile(opts.spec, root / "spec.toml")
    create_dev_tls(root / "tls", hosts=hosts)
    key = generate_signing_key()
    (root / "keys").mkdir()
    save_private_key(key, root / "keys" / "platform.key")
    save_public_key(key, root / "keys" / "platform.pub")
    for folder in ("node-keys", "partner-keys", "registry", "runs", "ledgers", "flwr-home"):
        (root / folder).mkdir()
    host = hosts[0]
    address = f"[{host}]:{opts.port}" if ":" in host else f"{host}:{opts.port}"
    model = opts.model.to_dict()
    lines = [
        "# fedctr platform: written by `fedctr platform init`; paths relative to this file.",
        "[platform]",
        toml_line("run_name", opts.run_name),
        toml_line("spec", "spec.toml", "partners must use this exact spec"),
        toml_line("work_dir", "runs"),
        toml_line("registry", "registry", "signed models"),
        toml_line("signing_key", "keys/platform.key", "Ed25519, 0600"),
        toml_line("ledger", "ledgers/platform.jsonl"),
        toml_line("partner_keys", "partner-keys", "<partner_id>.pub: partners' ledger keys"),
    ]
    if opts.eval_data is not None:
        lines.append(toml_line("eval_data", str(opts.eval_data.resolve()), "platform test data"))
    lines += [
        "",
        "[federation]",
        toml_line("rounds", opts.rounds),
        toml_line("strategy", opts.strategy, "fedprox, fedadam, fedmedian, fedtrimmedavg, krum"),
        toml_line("min_partners", opts.min_partners, "a round aggregates only with this many"),
        toml_line("timeout_s", opts.timeout_s, "longest wait for partners' replies per round"),
        "",
        "[model]",
        *(toml_line(k, v) for k, v in model.items()),
        "",
        *(
            []
            if opts.secure_aggregation is None
            else [
                "[secure_aggregation]",
                *(toml_line(k, v) for k, v in opts.secure_aggregation.to_dict().items()),
                "",
            ]
        ),
        "[superlink]",
        toml_line("host", opts.listen, "interface to listen on"),
        toml_line("port", opts.port, "Fleet + Control + Runtime APIs"),
        toml_line("address", address, "what partners dial (host in the certificate)"),
        toml_line("hosts", list(hosts), "certificate SAN entries (informational)"),
        toml_line("ca_cert", "tls/ca.crt", "give this file to partners"),
        toml_line("server_cert", "tls/superlink.crt"),
        toml_line("server_key", "tls/superlink.key"),
        toml_line("node_keys", "node-keys", "<partner_id>.pub: registered Flower node keys"),
        toml_line("flwr_home", "flwr-home"),
        "",
    ]
    config = root / "platform.toml"
    config.write_text("\n".join(lines))
    load_platform_config(config)  # what we wrote must load
    load_superlink_settings(config)
    return config


# ---- partner ----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PartnerOptions:
    partner_id: str
    data: Path
    spec: Path
    superlink: str
    ca_cert: Path
    privacy: PrivacySettings
    training: TrainingSettings
    bad_rows: str = "skip"


def init_partner(root: Path, opts: PartnerOptions) -> Path:
    """Create the partner folder; returns the path of partner.toml."""
    split_address(opts.superlink, "--superlink")
    if not opts.data.is_file():
        raise DeploymentConfigError(f"--data {opts.data}: no such file")
    if not opts.ca_cert.is_file():
        raise DeploymentConfigError(
            f"--ca {opts.ca_cert}: no such file (the platform's tls/ca.crt)"
        )
    root = _fresh_dir(root)
    pid = opts.partner_id
    shutil.copyfile(opts.spec, root / "spec.toml")
    (root / "tls").mkdir()
    shutil.copyfile(opts.ca_cert, root / "tls" / "ca.crt")
    (root / "keys").mkdir()
    ledger_key = generate_signing_key()
    save_private_key(ledger_key, root / "keys" / f"{pid}.key")
    save_public_key(ledger_key, root / "keys" / f"{pid}.pub")
    create_node_key(root / "keys" / "node.key", root / "keys" / "node.pub", comment=pid)
    for folder in ("state", "flwr-home"):
        (root / folder).mkdir()
    p, t = opts.privacy, opts.training
    lines = [
        "# fedctr partner node: written by `fedctr partner init`; paths relative to this file.",
        "# The privacy budget lives here only: the platform never sends or changes it.",
        "[partner]",
        toml_line("id", pid),
        toml_line("data", str(opts.data.resolve()), "conversion log; never leaves this machine"),
        toml_line("spec", "spec.toml", "must be the platform's spec"),
        toml_line("state_dir", "state", "privacy spend so far"),
        toml_line("signing_key", f"keys/{pid}.key", "Ed25519, signs the ledger; 0600"),
        toml_line("ledger", "ledger.jsonl"),
        toml_line("bad_rows", opts.bad_rows, "skip or reject"),
        "",
        "[privacy]",
        toml_line("epsilon", p.epsilon, "total budget over all rounds"),
        toml_line("delta", p.delta),
        toml_line("planned_rounds", p.planned_rounds, "rounds the budget is spread over"),
        toml_line("sample_rate", p.sample_rate, "Poisson rate q (declared, public)"),
        toml_line("max_grad_norm", p.max_grad_norm),
        toml_line("accountant", p.accountant, "rdp or prv"),
        toml_line("dp_implementation", p.dp_implementation),
        toml_line("unit", p.unit, "example (one row) or user (all rows of one person)"),
        toml_line("max_rows_per_user", p.max_rows_per_user, "unit = user: rows used per round"),
        toml_line("bucket_selection", p.bucket_selection, "DP-AdaFEST embedding-row selection"),
        toml_line("selection_noise_ratio", p.selection_noise_ratio),
        toml_line("selection_threshold", p.selection_threshold, "in selection-noise stds"),
        "",
        "[training]",
        toml_line("batch_size", t.batch_size),
        toml_line("local_epochs", t.local_epochs),
        toml_line("learning_rate", t.learning_rate),
        toml_line("optimizer", t.optimizer),
        toml_line("holdout_fraction", t.holdout_fraction),
        toml_line("seed", t.seed),
        toml_line("aggregation_weight", t.aggregation_weight, "FedAvg weight (declared)"),
        "",
        "[node]",
        toml_line("superlink", opts.superlink, "the platform's SuperLink"),
        toml_line("root_certificates", "tls/ca.crt", "the platform's CA certificate"),
        toml_line("node_key", "keys/node.key", "Flower node key (EC P-384, OpenSSH); 0600"),
        toml_line("runtime_port", 0, "local Runtime API port; 0 = any free port"),
        toml_line("idle_poll_s", Waits().idle_poll, "seconds between an idle node's polls"),
        toml_line("flwr_home", "flwr-home"),
        "",
    ]
    config = root / "partner.toml"
    config.write_text("\n".join(lines))
    load_partner_config(config)  # what we wrote must load
    load_node_settings(config)
    write_registration(root, pid)
    return config


def write_registration(root: Path, partner_id: str) -> Path:
    """The partner's public keys, in one file for the platform operator."""
    node_pub = (root / "keys" / "node.pub").read_text().strip()
    ledger_pub = (root / "keys" / f"{partner_id}.pub").read_text()
    text = (
        "# Public keys of a fedctr partner (no secrets). The platform registers them with\n"
        f"#   fedctr platform add-partner PLATFORM_DIR {REGISTRATION_FILE}\n"
        + tomli_w.dumps(
            {
                "partner_id": partner_id,
                "node_public_key": node_pub,
                "ledger_public_key": ledger_pub,
            },
            multiline_strings=True,
        )
    )
    path = root / REGISTRATION_FILE
    path.write_text(text)
    return path


# ---- registration at the platform ----------------------------------------------
@dataclass(frozen=True)
class Registration:
    partner_id: str
    node_public_key: str
    ledger_public_key_pem: str

    @property
    def fingerprint(self) -> str:
        return node_key_fingerprint(self.node_public_key)


def read_registration(path: Path) -> Registration:
    """Parse a partner's registration file as untrusted input."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeploymentConfigError(f"{path}: not a readable registration file") from exc
    values = {k: raw.get(k) for k in ("partner_id", "node_public_key", "ledger_public_key")}
    if not all(isinstance(v, str) and v for v in values.values()):
        raise DeploymentConfigError(
            f"{path}: needs partner_id, node_public_key and ledger_public_key"
        )
    pid, node, ledger = (str(v) for v in values.values())
    if not pid.replace("-", "").replace("_", "").isalnum():
        raise DeploymentConfigError(f"{path}: partner_id must be letters, digits, '-' or '_'")
    load_node_public_key(node)  # raises CredentialError
    try:
        key = serialization.load_pem_public_key(ledger.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialError(f"{path}: ledger_public_key is not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CredentialError(f"{path}: ledger_public_key must be an Ed25519 key")
    return Registration(pid, node.strip(), ledger)


def add_partner(platform_toml: Path, registration: Registration, *, replace: bool) -> bool:
    """Store a partner's node and ledger public keys; True if anything changed."""
    link = load_superlink_settings(platform_toml)
    config = load_platform_config(platform_toml)
    node_file = link.node_keys / f"{registration.partner_id}.pub"
    ledger_file = config.partner_keys / f"{registration.partner_id}.pub"
    for other in link.node_keys.glob("*.pub"):
        if (
            other != node_file
            and other.read_text().split()[:2] == (registration.node_public_key.split()[:2])
        ):
            raise CredentialError(f"this node key is already registered for partner '{other.stem}'")
    new = {
        node_file: registration.node_public_key + "\n",
        ledger_file: registration.ledger_public_key_pem,
    }
    changed = False
    for path, text in new.items():
        if path.exists() and path.read_text() == text:
            continue
        if path.exists() and not replace:
            raise CredentialError(
                f"partner '{registration.partner_id}' is registered with a different key "
                f"({path}); pass --replace to rotate it"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        changed = True
    return changed


__all__ = [
    "REGISTRATION_FILE",
    "PartnerOptions",
    "PlatformOptions",
    "Registration",
    "add_partner",
    "init_partner",
    "init_platform",
    "read_registration",
    "resolve_spec",
]
