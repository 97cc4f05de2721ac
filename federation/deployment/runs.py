"""``fedctr platform run``: submit the federation to the running SuperLink, report the model.

The run is submitted with ``flwr run`` (run config ``platform-config=...`` and
``run-id=...``). The app submitted is a descriptor (pyproject.toml only): the
ServerApp and ClientApp code is the fedctr installed on each machine, and partners'
nodes refuse any other ClientApp, so the platform never ships code to partners.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from fedctr.federation.config import PLATFORM_CONFIG_KEY, PlatformConfig, load_platform_config
from fedctr.federation.deployment.errors import DeploymentError
from fedctr.federation.deployment.platform import CONNECTION, flwr_env, read_state
from fedctr.federation.deployment.processes import StopFlag, Supervisor, flwr_bin
from fedctr.federation.deployment.settings import SuperLinkSettings, load_superlink_settings
from fedctr.federation.server_app import FAULT_KEY, RESUME_KEY, RUN_ID_KEY
from fedctr.privacy.card import CARD_FILE, ModelCard
from fedctr.server.platform.publishing import SUMMARY_FILE
from fedctr.server.platform.rounds import failure_text, read_round_log

logger = logging.getLogger(__name__)

APP_COMPONENTS = {
    "serverapp": "fedctr.federation.server_app:app",
    "clientapp": "fedctr.federation.client_app:app",
}
STARTED_RUN = re.compile(r"Successfully started run (\d+)")
WAITING = re.compile(r"Waiting for nodes to connect: \d+ connected \(minimum required: \d+\)")


@dataclass(frozen=True)
class RunReport:
    run_id: str
    summary: dict[str, Any]
    card: ModelCard
    log_path: Path

    @property
    def model_path(self) -> Path:
        return Path(self.summary["model_path"])


def write_app_descriptor(link: SuperLinkSettings) -> Path:
    """The Flower app submitted with ``flwr run``: pyproject.toml only."""
    app = link.root / "app"
    app.mkdir(exist_ok=True)
    (app / "pyproject.toml").write_text(
        tomli_w.dumps(
            {
                "build-system": {
                    "requires": ["setuptools>=68"],
                    "build-backend": "setuptools.build_meta",
                },
                "project": {"name": "fedctr", "version": "0.1.0", "dependencies": []},
                "tool": {
                    "flwr": {
                        "app": {
                            "publisher": "fedctr",
                            "components": APP_COMPONENTS,
                            "config": {
                                PLATFORM_CONFIG_KEY: "",
                                RUN_ID_KEY: "",
                                RESUME_KEY: "",
                                FAULT_KEY: "",
                            },
                        }
                    }
                },
            }
        )
    )
    return app


def _progress(config: PlatformConfig, run_id: str, shown: int) -> int:
    rows = read_round_log(config.work_dir / run_id / "rounds.jsonl")
    for row in rows[shown:]:
        partners = sorted(t["partner_id"] for t in row["train"])
        failures = [failure_text(f) for f in row["failures"]]
        logger.info(
            "round %d/%d: %s from %s%s",
            row["round"],
            config.rounds,
            "aggregated" if row["aggregated"] else "NOT aggregated",
            ", ".join(partners) or "nobody",
            f"; did not contribute: {', '.join(failures)}" if failures else "",
        )
    return len(rows)


def run_platform(
    platform_toml: Path,
    *,
    stop: StopFlag,
    run_id: str | None = None,
    timeout_s: float | None = None,
    resume: bool = False,
    fault: str | None = None,
) -> RunReport:
    """Submit one federation run and wait for its published model.

    ``resume`` continues ``run_id`` from its last committed round (after the platform
    crashed); partners' nodes need nothing, they answer the resumed run's messages.
    ``fault`` (``<stage>@<round>``, fault-injection tests only) ends the ServerApp there.
    """
    if resume and not run_id:
        raise DeploymentError("--resume needs the id of the run to continue (--run-id)")
    link = load_superlink_settings(platform_toml)
    config = load_platform_config(platform_toml)
    state = read_state(link)
    if state is None or state.get("status") != "ready":
        raise DeploymentError(
            f"the SuperLink of {link.root} is not running; start it first with "
            f"`fedctr platform start {link.root}`"
        )
    run_id = run_id or f"{config.run_name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    timeout_s = timeout_s or config.rounds * config.timeout_s + 300
    app = write_app_descriptor(link)
    log_path = link.log_dir / f"run-{run_id}.log"
    overrides = f'{PLATFORM_CONFIG_KEY}="{config.source}" {RUN_ID_KEY}="{run_id}"'
    if resume:
        overrides += f' {RESUME_KEY}="true"'
    if fault:
        overrides += f' {FAULT_KEY}="{fault}"'
    argv = [flwr_bin("flwr"), "run", str(app), CONNECTION, "--run-config", overrides, "--stream"]
    sup = Supervisor(link.log_dir)
    flower_run: list[str] = []
    last_wait = [0.0]

    def watch(_proc: object, line: str) -> None:
        flower_run.extend(STARTED_RUN.findall(line))
        waiting = WAITING.search(line)
        if waiting is not None and time.monotonic() - last_wait[0] > 15:
            last_wait[0] = time.monotonic()
            logger.info("the ServerApp is %s", waiting.group(0).lower())

    sup.on_line(watch)
    logger.info(
        "%s run %s (%d rounds); log: %s",
        "resuming" if resume else "submitting",
        run_id,
        config.rounds,
        log_path,
    )
    proc = sup.start(f"run-{run_id}", argv, flwr_env(link))
    deadline = time.monotonic() + timeout_s
    shown = 0
    try:
        while proc.exit_code() is None:
            shown = _progress(config, run_id, shown)
            if stop.is_set() or time.monotonic() > deadline:
                _stop_flower_run(link, flower_run)
                raise DeploymentError(
                    f"run {run_id} {'interrupted' if stop.is_set() else 'timed out'}; "
                    "asked the SuperLink to stop it"
                )
            stop.event.wait(0.5)
        _progress(config, run_id, shown)
    finally:
        sup.stop_all(grace_s=5)
    summary_path = config.work_dir / run_id / SUMMARY_FILE
    if not summary_path.exists():
        raise DeploymentError(
            f"run {run_id} ended without publishing a model; {log_path} ends with:\n"
            + proc.tail(25)
            + f"\nIts committed rounds are kept: continue it with "
            f"`fedctr platform run {link.root} --run-id {run_id} --resume`"
        )
    summary = json.loads(summary_path.read_text())
    card = ModelCard.from_json(json.loads((Path(summary["model_path"]) / CARD_FILE).read_text()))
    return RunReport(run_id, summary, card, log_path)


def _stop_flower_run(link: SuperLinkSettings, flower_run: list[str]) -> None:
    if not flower_run:
        return
    subprocess.run(
        [flwr_bin("flwr"), "stop", flower_run[0], CONNECTION],
        env=flwr_env(link),
        capture_output=True,
        timeout=60,
        check=False,
    )


def describe(report: RunReport) -> str:
    """What the operator needs to know about a finished run, one fact per line."""
    card = report.card
    lines = [
        f"published {report.summary['model_version']} ({report.model_path})",
        f"weights sha256 {report.summary['weights_sha256']}",
        f"rounds aggregated: {card.training.get('rounds_aggregated')}",
    ]
    for p in card.partners:
        lines.append(
            f"  {p.partner_id}: {p.rounds_contributed} round(s), "
            f"epsilon {p.epsilon:.3f} (delta {p.delta:g}, {p.accountant})"
        )
    failures = card.training.get("failures", [])
    if failures:
        lines.append(f"did not contribute: {[(f['round'], f['kind']) for f in failures]}")
    return "\n".join(lines)


__all__ = ["APP_COMPONENTS", "RunReport", "describe", "run_platform", "write_app_descriptor"]
