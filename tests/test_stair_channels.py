r"""``benchmarks/stair_channels.py``: the neighbour agreement against a direct count, and the
quick run end to end (its table has one row per channel block, figures in range), and the table
rebuilt from a stored run."""
from __future__ import annotations

import json

import pytest
import torch


def test_neighbour_agreement_counts_shared_neighbours(bench_script):
    agreement = bench_script("stair_channels").neighbour_agreement
    gen = torch.Generator().manual_seed(0)
    feat = torch.randn(40, 6, generator=gen)
    queries = torch.arange(0, 40, 3)
    assert agreement(feat, feat, queries, k=5) == 1.0
    assert agreement(feat * 3.0, feat, queries, k=5) == 1.0  # cosine: scale does not matter
    other = torch.randn(40, 6, generator=gen)
    # Direct count: per query, |top-5 by cosine in `other` ∩ top-5 in `feat`| / 5.
    def near(x, q):
        x = torch.nn.functional.normalize(x.double(), dim=1)
        sim = (x @ x[q]).tolist()
        order = sorted((i for i in range(40) if i != q), key=lambda i: -sim[i])
        return set(order[:5])
    expected = sum(len(near(other, int(q)) & near(feat, int(q))) / 5 for q in queries)
    assert abs(agreement(other, feat, queries, k=5) - expected / len(queries)) < 1e-12


def test_quick_run_reports_every_block(bench_script, tmp_path):
    main = bench_script("stair_channels").main
    assert main(["--quick", "--blocks", "4", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    for when in ("init", "best"):
        blocks = result[when]["blocks"]
        assert [b["channels"] for b in blocks] == [[0, 15], [16, 31], [32, 47], [48, 63]]
        for b in blocks:
            assert 0.0 <= b["agreement_table"] <= 1.0 and 0.0 <= b["ndcg20_alone"] <= 1.0
        betas = [b["mean_beta"] for b in blocks]
        assert betas == sorted(betas, reverse=True)  # early channels propagate most
    assert result["best_epoch"] >= 1 and (tmp_path / "table.md").read_text().count("\n|") >= 5


def test_from_json_rebuilds_the_committed_section(bench_script, capsys):
    # The table printed from the stored run is the one in RESULTS.md's section of that run.
    mod = bench_script("stair_channels")
    assert mod.main(["--name", "scientific-selected", "--from-json"]) == 0
    table = capsys.readouterr().out.strip()
    results = (mod.BENCH_DIR / "RESULTS.md").read_text()
    section = results.split("<!-- stair_channels:scientific-selected:begin -->")[1].split(
        "<!-- stair_channels:scientific-selected:end -->")[0]
    assert table.count("\n|") >= 5 and table in section
    with pytest.raises(SystemExit, match="does not exist"):
        mod.main(["--name", "no-such-run", "--from-json"])
