"""A partner node's own configuration: its data, its spec, and its privacy budget.

The budget lives here, on the partner's machine, and nowhere the server can change
it: the server sends a model and a round number, never an epsilon.

Example ``partner.toml`` (paths relative to the file)::

    [partner]
    id = "shop-a"
    data = "data/shop-a.parquet"
    spec = "spec.toml"
    state_dir = "state"
    signing_key = "keys/shop-a.key"   # Ed25519, signs the partner's ledger
    ledger = "ledger.jsonl"
    bad_rows = "skip"            # or "reject"
    data_cache = "auto"          # "disk": encode the log once, block by block, into state_dir
                                 # and train from it (bounded memory); "memory": read whole;
                                 # "auto": disk for logs over 256 MiB

    [privacy]
    epsilon = 8.0
    delta = 1e-5
    planned_rounds = 4
    sample_rate = 0.05           # Poisson rate, declared: never derived from the row count
    max_grad_norm = 5.0
    accountant = "rdp"           # or "prv"
    unit = "example"             # or "user": protect every row of one person (spec's user_key)
    max_rows_per_user = 8        # unit = "user": rows of one user used per round, at most
    bucket_selection = false     # true: DP-AdaFEST, noise only on embedding rows the batch uses

    [training]
    batch_size = 1024
    local_epochs = 1
    learning_rate = 0.02
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fedctr.clients.errors import PartnerConfigError
from fedctr.models.logs.reader import BadRowPolicy
from fedctr.privacy import ACCOUNTANT_KINDS, AccountantKind, PrivacyBudget
from fedctr.privacy.dpsgd import (
    DEFAULT_IMPLEMENTATION,
    available_implementations,
    get_implementation,
)
from fedctr.privacy.errors import InvalidPrivacyParameter
from fedctr.privacy.unit import PRIVACY_UNITS, UnitOfPrivacy
from fedctr.validate import Checker

_CHECK = Checker(PartnerConfigError)


@dataclass(frozen=True, kw_only=True)
class PrivacySettings:
    """The partner's DP-SGD settings; ``enabled = false`` exists for non-private baselines."""

    epsilon: float = 8.0
    delta: float = 1e-5
    # Defaults from the utility table (README "Utility on real ad data", bench/bench_utility.py):
    # 4 rounds x 1 local epoch; C = 5 sits between what categorical-only logs need (3) and
    # what 13 log-count numerics need (10). C = 1 clips positives' gradients but not
    # negatives' and drags the mean prediction down (0.26 -> 0.15 on Criteo DAC).
    planned_rounds: int = 4
    # Poisson sampling rate of DP-SGD, public by declaration: it is never derived from the
    # number of rows (q = 1/ceil(n/B) revealed n), so epsilon depends on the config alone.
    # Steps per round are ceil(local_epochs / sample_rate).
    sample_rate: float = 0.05
    max_grad_norm: float = 5.0
    accountant: AccountantKind = "rdp"
    dp_implementation: str = DEFAULT_IMPLEMENTATION
    # The unit of privacy (fedctr.privacy.unit). "user" samples users at sample_rate and
    # clips each user's summed gradient; the spec must name the user_key columns.
    unit: str = "example"
    # unit = "user": a user's rows beyond this sit out the round (chosen by CSPRNG
    # priorities before its first step), so a step's memory is bounded; declared.
    max_rows_per_user: int = 8
    # DP selection of the embedding rows a step updates (fedctr.privacy.dpsgd.bucket_selection,
    # DP-AdaFEST): rows whose noisy count of units is under the threshold get neither
    # gradient nor noise. selection_noise_ratio = sigma_select / sigma_grad (the pair is
    # calibrated to the budget together); selection_threshold is in sigma_select units.
    bucket_selection: bool = False
    selection_noise_ratio: float = 3.0
    selection_threshold: float = 2.0
    # "distributed": each round is one clipped gradient step carrying only a Skellam
    # *share* of the noise, masked by secure aggregation; the platform and the public see
    # the full noise in sums of at least min_noise_shares partners, which the node
    # enforces when it answers the unmask step (fedctr.privacy.distributed). A round
    # without secure aggregation is refused. "local": every update is DP on its own.
    noise: str = "local"
    min_noise_shares: int = 2
    enabled: bool = True

    def __post_init__(self) -> None:
        check = _CHECK.at("[privacy]")
        check.choice(self.noise, "noise", ("local", "distributed"))
        check.integer(self.min_noise_shares, "min_noise_shares", minimum=1)
        if self.noise == "distributed" and self.bucket_selection:
            raise PartnerConfigError(
                "[privacy] noise = 'distributed' takes one dense gradient step per round; "
                "bucket_selection is for local DP-SGD only"
            )
        check.choice(self.accountant, "accountant", ACCOUNTANT_KINDS)
        check.choice(self.unit, "unit", PRIVACY_UNITS)
        check.integer(self.max_rows_per_user, "max_rows_per_user", minimum=1)
        impl = get_implementation(self.dp_implementation)
        check.positive(self.selection_noise_ratio, "selection_noise_ratio")
        check.number(self.selection_threshold, "selection_threshold")
        if self.bucket_selection and not impl.supports_bucket_selection:
            raise PartnerConfigError(
                f"[privacy] bucket_selection needs dp_implementation = 'fedctr-sparse'; "
                f"'{self.dp_implementation}' noises every embedding row"
            )
        if self.unit == "user" and not impl.supports_user_level:
            users = [
                n for n in available_implementations() if get_implementation(n).supports_user_level
            ]
            raise PartnerConfigError(
                f"[privacy] unit = 'user' needs a DP-SGD implementation that clips each user's "
                f"summed gradient ({users}); '{self.dp_implementation}' clips per row"
            )
        check.integer(self.planned_rounds, "planned_rounds", minimum=1)
        check.rate(self.sample_rate, "sample_rate")
        check.positive(self.max_grad_norm, "max_grad_norm")
        check.choice(self.dp_implementation, "dp_implementation", available_implementations())
        try:
            self.budget  # noqa: B018  (validates epsilon and delta)
        except InvalidPrivacyParameter as exc:
            raise PartnerConfigError(f"[privacy] {exc}") from exc

    @property
    def budget(self) -> PrivacyBudget:
        return PrivacyBudget(epsilon=self.epsilon, delta=self.delta)

    @property
    def unit_of_privacy(self) -> UnitOfPrivacy:
        if self.unit == "user":
            return UnitOfPrivacy.user(self.max_rows_per_user)
        return UnitOfPrivacy.example()


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Local optimisation per round."""

    # Under DP-SGD ``batch_size`` is the declared *expected* batch size: the noised sum of
    # clipped gradients is divided by it (never by the real count). Pick it near
    # sample_rate x rows (unit = "user": sample_rate x the rows users keep, sum of
    # min(rows_u, max_rows_per_user)); Adam, the default, is insensitive to a mismatch.
    batch_size: int = 1024
    local_epochs: int = 1
    learning_rate: float = 0.02
    optimizer: str = "adam"
    holdout_fraction: float = 0.2
    seed: int = 0
    # FedAvg weight of this partner's update, public by declaration (the platform never
    # learns the row count). Equal weights unless partners agree on declared ones.
    aggregation_weight: float = 1.0

    def __post_init__(self) -> None:
        check = _CHECK.at("[training]")
        check.integer(self.batch_size, "batch_size", minimum=1)
        check.integer(self.local_epochs, "local_epochs", minimum=1)
        check.positive(self.learning_rate, "learning_rate")
        check.choice(self.optimizer, "optimizer", ("adam", "sgd"))
        if not 0 <= self.holdout_fraction < 1:
            raise PartnerConfigError("[training] holdout_fraction must be in [0, 1)")
        check.positive(self.aggregation_weight, "aggregation_weight")


@dataclass(frozen=True, kw_only=True)
class PartnerConfig:
    """Everything a partner node needs; paths are absolute after loading."""

    partner_id: str
    data: Path
    spec: Path
    state_dir: Path
    signing_key: Path | None = None
    ledger: Path | None = None
    bad_rows: BadRowPolicy = BadRowPolicy.SKIP
    # Where the encoded log lives while training (fedctr.models.logs.cache): "memory"
    # (read whole, each process), "disk" (encoded once into state_dir/encoded, batches read),
    # "auto" (disk for files over DISK_CACHE_FROM_BYTES).
    data_cache: str = "auto"
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def __post_init__(self) -> None:
        if not self.partner_id or not self.partner_id.replace("-", "").replace("_", "").isalnum():
            raise PartnerConfigError(
                f"[partner] id must be letters, digits, '-' or '_', got {self.partner_id!r}"
            )
        if self.data_cache not in DATA_CACHES:
            raise PartnerConfigError(
                f"[partner] data_cache must be one of {DATA_CACHES}, got {self.data_cache!r}"
            )

    def cache_on_disk(self) -> bool:
        """Whether the node trains from its on-disk encoded cache of the log."""
        if self.data_cache == "auto":
            try:
                return self.data.stat().st_size > DISK_CACHE_FROM_BYTES
            except OSError:
                return False  # the reader names the missing file
        return self.data_cache == "disk"


DATA_CACHES = ("auto", "memory", "disk")
DISK_CACHE_FROM_BYTES = 256 << 20
_PARTNER_KEYS = frozenset(
    {"id", "data", "spec", "state_dir", "signing_key", "ledger", "bad_rows", "data_cache"}
)


def _section(raw: dict[str, Any], name: str, cls: type, source: Path) -> Any:
    table = _CHECK.at(str(source)).table(raw, name, known={f.name for f in fields(cls)})
    try:
        return cls(**table)
    except PartnerConfigError as exc:
        raise PartnerConfigError(f"{source}: {exc}") from exc
    except TypeError as exc:
        raise PartnerConfigError(f"{source}: [{name}]: {exc}") from exc


def load_partner_config(path: str | Path) -> PartnerConfig:
    """Parse and validate a partner TOML file; relative paths resolve against its folder."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PartnerConfigError(f"cannot read partner config {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PartnerConfigError(f"{path}: not valid TOML: {exc}") from exc
    # [node] (SuperLink address, CA, Flower node key) belongs to fedctr.federation.deployment.
    unknown = sorted(set(raw) - {"partner", "privacy", "training", "node"})
    if unknown:
        raise PartnerConfigError(f"{path}: unknown sections {unknown}")
    partner = _CHECK.at(str(path)).table(raw, "partner", known=_PARTNER_KEYS)
    for key in ("id", "data", "spec"):
        if key not in partner:
            raise PartnerConfigError(f"{path}: [partner] needs '{key}'")
    base = path.parent
    try:
        policy = BadRowPolicy(partner.get("bad_rows", "skip"))
    except ValueError:
        raise PartnerConfigError(f"{path}: [partner] bad_rows must be 'skip' or 'reject'") from None
    key = partner.get("signing_key")
    return PartnerConfig(
        partner_id=str(partner["id"]),
        data=(base / partner["data"]).resolve(),
        spec=(base / partner["spec"]).resolve(),
        state_dir=(base / partner.get("state_dir", "state")).resolve(),
        signing_key=(base / key).resolve() if key else None,
        ledger=(base / partner.get("ledger", "ledger.jsonl")).resolve(),
        bad_rows=policy,
        data_cache=str(partner.get("data_cache", "auto")),
        privacy=_section(raw, "privacy", PrivacySettings, path),
        training=_section(raw, "training", TrainingSettings, path),
    )


__all__ = ["PartnerConfig", "PrivacySettings", "TrainingSettings", "load_partner_config"]
