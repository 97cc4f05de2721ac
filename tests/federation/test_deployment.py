"""fedctr platform/partner init and add-partner: keys, certificates, configs, registration."""

from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key

from fedctr.clients.config import PrivacySettings, TrainingSettings, load_partner_config
from fedctr.federation.cli import main
from fedctr.federation.config import load_platform_config
from fedctr.federation.deployment.bootstrap import (
    PartnerOptions,
    PlatformOptions,
    add_partner,
    init_partner,
    init_platform,
    read_registration,
)
from fedctr.federation.deployment.credentials import (
    certificate_hosts,
    create_dev_tls,
    create_node_key,
)
from fedctr.federation.deployment.errors import (
    CredentialError,
    DeploymentConfigError,
)
from fedctr.federation.deployment.settings import load_node_settings, load_superlink_settings
from fedctr.federation.waits import Waits, waits_to_env
from fedctr.models import builtin_spec_path, model_config


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    return init_platform(
        tmp_path / "platform",
        PlatformOptions(
            hosts=("10.1.2.3", "platform.example", "127.0.0.1"),
            spec=builtin_spec_path("demo"),
            port=19093,
            rounds=4,
            min_partners=2,
            model=model_config("deepfm"),
        ),
    )


def _partner(tmp_path: Path, platform: Path, pid: str = "shop-a") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / f"{pid}.csv"
    data.write_text("click\n1\n")
    return init_partner(
        tmp_path / pid,
        PartnerOptions(
            partner_id=pid,
            data=data,
            spec=platform.parent / "spec.toml",
            superlink="10.1.2.3:19093",
            ca_cert=platform.parent / "tls" / "ca.crt",
            privacy=PrivacySettings(epsilon=3.0, delta=1e-6, planned_rounds=4),
            training=TrainingSettings(batch_size=128),
        ),
    )


def test_dev_ca_signs_a_server_certificate_for_every_host(tmp_path: Path) -> None:
    tls = create_dev_tls(tmp_path, hosts=["127.0.0.1", "localhost", "::1"])
    ca = x509.load_pem_x509_certificate(tls.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_cert.read_bytes())

    server.verify_directly_issued_by(ca)
    assert set(certificate_hosts(tls.server_cert)) == {"127.0.0.1", "::1", "localhost"}
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=365)
    assert _mode(tls.ca_key) == 0o600 and _mode(tls.server_key) == 0o600


def test_tls_refuses_bad_hosts_and_never_overwrites_keys(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="no scheme, no port"):
        create_dev_tls(tmp_path / "a", hosts=["https://example.com"])
    create_dev_tls(tmp_path / "b", hosts=["localhost"])
    with pytest.raises(CredentialError, match="refusing to overwrite"):
        create_dev_tls(tmp_path / "b", hosts=["localhost"])


def test_node_key_is_ec_p384_in_openssh_format_and_private(tmp_path: Path) -> None:
    create_node_key(tmp_path / "node.key", tmp_path / "node.pub", comment="shop-a")
    raw = (tmp_path / "node.key").read_bytes()

    assert raw.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    key = load_ssh_private_key(raw, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert (tmp_path / "node.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert (tmp_path / "node.pub").read_text().strip().endswith(" shop-a")
    assert _mode(tmp_path / "node.key") == 0o600


def test_platform_init_writes_a_loadable_config_with_sane_defaults(platform: Path) -> None:
    config = load_platform_config(platform)
    link = load_superlink_settings(platform)

    assert (config.rounds, config.strategy.name, config.strategy.min_partners) == (4, "fedavg", 2)
    assert config.model.name == "deepfm"
    assert link.address == "10.1.2.3:19093" and link.local_address == "127.0.0.1:19093"
    assert set(certificate_hosts(link.server_cert)) == {"10.1.2.3", "platform.example", "127.0.0.1"}
    assert _mode(config.signing_key) == 0o600
    for folder in (link.node_keys, config.partner_keys, config.registry, link.flwr_home):
        assert folder.is_dir()


def test_init_refuses_a_folder_that_is_not_empty(platform: Path) -> None:
    with pytest.raises(DeploymentConfigError, match="not empty"):
        init_platform(
            platform.parent,
            PlatformOptions(hosts=("localhost",), spec=builtin_spec_path("demo")),
        )


def test_partner_init_writes_node_and_ledger_keys_and_a_registration(
    tmp_path: Path, platform: Path
) -> None:
    toml = _partner(tmp_path, platform)
    config = load_partner_config(toml)
    node = load_node_settings(toml)
    registration = read_registration(toml.parent / "registration.toml")

    assert config.privacy.epsilon == 3.0 and config.training.batch_size == 128
    assert node.superlink == "10.1.2.3:19093" and node.root_certificates is not None
    assert node.root_certificates.read_bytes() == (platform.parent / "tls/ca.crt").read_bytes()
    assert _mode(node.node_key) == 0o600 and config.signing_key is not None
    assert _mode(config.signing_key) == 0o600
    assert registration.partner_id == "shop-a"
    text = (toml.parent / "registration.toml").read_text()
    assert "PRIVATE" not in text and registration.node_public_key in text


def test_a_partner_sets_how_often_its_idle_node_polls_and_bad_values_are_named(
    tmp_path: Path, platform: Path
) -> None:
    toml = _partner(tmp_path, platform)
    assert load_node_settings(toml).waits.idle_poll == Waits().idle_poll  # written by init
    text = toml.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("idle_poll_s"))

    toml.write_text(text.replace(line, "idle_poll_s = 2"))
    waits = load_node_settings(toml).waits
    assert waits_to_env(waits)["FEDCTR_WAIT_IDLE_POLL"] == "2.0"  # what start_partner passes
    for bad in ("0", '"fast"', "true"):
        toml.write_text(text.replace(line, f"idle_poll_s = {bad}"))
        with pytest.raises(DeploymentConfigError, match=r"\[node\] idle_poll_s"):
            load_node_settings(toml)


def test_add_partner_stores_both_public_keys_and_refuses_silent_rotation(
    tmp_path: Path, platform: Path
) -> None:
    reg = read_registration(_partner(tmp_path, platform).parent / "registration.toml")

    assert add_partner(platform, reg, replace=False) is True
    assert add_partner(platform, reg, replace=False) is False  # idempotent
    node_pub = platform.parent / "node-keys" / "shop-a.pub"
    assert node_pub.read_text().strip() == reg.node_public_key
    assert (platform.parent / "partner-keys" / "shop-a.pub").read_text().startswith("-----BEGIN")
    other = read_registration(_partner(tmp_path / "x", platform).parent / "registration.toml")
    with pytest.raises(CredentialError, match="--replace"):
        add_partner(platform, other, replace=False)
    assert add_partner(platform, other, replace=True) is True


def test_a_node_key_cannot_be_registered_for_two_partners(tmp_path: Path, platform: Path) -> None:
    reg = read_registration(_partner(tmp_path, platform).parent / "registration.toml")
    add_partner(platform, reg, replace=False)
    clone = type(reg)("shop-b", reg.node_public_key, reg.ledger_public_key_pem)

    with pytest.raises(CredentialError, match="already registered for partner 'shop-a'"):
        add_partner(platform, clone, replace=False)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('partner_id = "a"', "needs partner_id"),
        (
            'partner_id = "a b"\nnode_public_key = "x"\nledger_public_key = "y"',
            "letters, digits",
        ),
        ('partner_id = "a"\nnode_public_key = "ssh-rsa AAAA"\nledger_public_key = "y"', "OpenSSH"),
    ],
)
def test_registration_files_are_parsed_as_untrusted_input(
    tmp_path: Path, content: str, match: str
) -> None:
    path = tmp_path / "registration.toml"
    path.write_text(content)

    with pytest.raises((DeploymentConfigError, CredentialError), match=match):
        read_registration(path)


def test_cli_init_prints_paths_never_key_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["platform", "init", str(tmp_path / "p"), "--hosts", "localhost", "--port", "1"])

    out = capsys.readouterr()
    assert code == 0
    assert "ca.crt" in out.out
    keys = [p.read_text() for p in (tmp_path / "p").rglob("*.key")]
    assert keys and all(k.strip() not in out.out + out.err for k in keys)
    assert "PRIVATE KEY" not in out.out + out.err
    assert "127.0.0.1" in certificate_hosts(tmp_path / "p" / "tls" / "superlink.crt")


def test_cli_partner_init_defaults_are_the_partner_configs_own(tmp_path: Path) -> None:
    """A partner who passes no DP flags gets the defaults the utility table chose (a
    CLI with its own, C=1, once collapsed the model's calibration)."""
    platform = tmp_path / "p"
    assert main(["platform", "init", str(platform), "--hosts", "127.0.0.1"]) == 0
    assert (
        load_platform_config(platform / "platform.toml").rounds == PrivacySettings().planned_rounds
    )
    data = tmp_path / "shop.csv"
    data.write_text("click\n1\n")
    code = main(
        [
            "partner", "init", str(tmp_path / "shop"), "--id", "shop", "--data", str(data),
            "--spec", str(platform / "spec.toml"), "--superlink", "127.0.0.1:9093",
            "--ca", str(platform / "tls" / "ca.crt"),
        ]
    )  # fmt: skip
    assert code == 0
    config = load_partner_config(tmp_path / "shop" / "partner.toml")
    assert config.privacy == PrivacySettings()
    assert config.training == TrainingSettings()


def test_sample_data_writes_partner_logs_and_a_platform_test_file(tmp_path: Path) -> None:
    assert main(["sample-data", str(tmp_path / "data")]) == 0
    names = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert names == ["advertiser-b.parquet", "crm-c.csv", "platform-test.parquet", "shop-a.parquet"]
