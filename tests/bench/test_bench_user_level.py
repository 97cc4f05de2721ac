"""bench/bench_user_level.py --quick runs end to end: a regression in user-level training,
the talkingdata read (its damaged header) or the report shows up here (~15 s)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.bench_user_level import main  # noqa: E402


def test_quick_run_reports_both_units_and_group_privacy(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    out = tmp_path / "report.md"
    try:
        assert main(["--quick", "--data-root", str(shared_data), "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # the bench pins one thread for itself

    printed = capsys.readouterr().out
    assert out.read_text().strip() == printed.strip()
    rows = {
        tuple(cell.strip() for cell in line.split("|")[1:3]): line
        for line in printed.splitlines()
        if line.startswith("| ")
    }
    for dataset in ("talkingdata", "zipf-demo"):
        for setting in ("non-private", "example eps=3", "user k=8 eps=3"):
            assert (dataset, setting) in rows
    # user-level DP-SGD learns on the real data (0.70 on 12 test positives when written)
    header = next(line for line in printed.splitlines() if line.startswith("| dataset | setting"))
    column = [cell.strip() for cell in header.split("|")].index("test AUC")
    test_auc = float(rows[("talkingdata", "user k=8 eps=3")].split("|")[column].split("±")[0])
    assert test_auc > 0.6
    # the heaviest users get nothing from example-level DP: group privacy saturates
    assert "**1**" in printed
    # Zipf(2) rows per user: a user-level run with k = 8 drops a large share of rows
    zipf_training = rows[("zipf-demo", "training partners")]
    kept = float(zipf_training.rstrip(" |").rsplit("|", 1)[1].strip().rstrip("%"))
    assert 30 < kept < 80
