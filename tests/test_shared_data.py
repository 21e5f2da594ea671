r"""Loads each dataset of ../shared/data and checks it against PROVENANCE.md's statistics table."""
import re

import pytest
import torch

from stair_pyg.data import DataWarning, describe, load_mmrec, load_recbole

DATASETS = ["scientific", "ml100k", "baby", "sports"]


def provenance_table(shared):
    text = (shared / "PROVENANCE.md").read_text()
    section = text.split("## Statistics", 1)[1]
    stats = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] in DATASETS:
            num = [int(c.replace(",", "")) for c in cells[1:7]]
            shapes = re.findall(r"(\w+) (\d+)×(\d+)", cells[8])
            stats[cells[0]] = dict(users=num[0], items=num[1], total=num[2], train=num[3],
                                   valid=num[4], test=num[5], density=float(cells[7]),
                                   features={m: [int(r), int(c)] for m, r, c in shapes})
    return stats


@pytest.mark.data
@pytest.mark.parametrize("name", DATASETS)
def test_shared_dataset_matches_provenance(shared_data, name):
    if not (shared_data / name).is_dir():
        pytest.skip(f"{shared_data / name} is absent")
    expected = provenance_table(shared_data)[name]
    with pytest.warns(DataWarning, match="cold start kept"):  # a few held-out-only items
        ds = load_mmrec(shared_data / name)
    s = describe(ds)
    assert s["users"] == expected["users"] and s["items"] == expected["items"]
    assert s["interactions"] == {"train": expected["train"], "valid": expected["valid"],
                                 "test": expected["test"], "total": expected["total"]}
    assert round(s["density"], 5) == expected["density"]
    assert s["features"] == expected["features"]
    assert s["cold_start"]["valid_users"] == 0 and s["cold_start"]["test_users"] == 0
    if name in ("scientific", "ml100k"):
        norms = ds.data["item"].text_feat.norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)


@pytest.mark.data
def test_ml100k_recbole_raw_reproduces_split(shared_data):
    raw = shared_data / "ml100k" / "raw"
    if not (raw / "ml-100k.inter").is_file():
        pytest.skip(f"{raw} is absent")
    with pytest.warns(DataWarning, match="cold start kept"):
        ours = load_recbole(raw, split="random", seed=999, min_user_interactions=3,
                            item_features=["class"])
        ref = load_mmrec(shared_data / "ml100k")
    for a, b in zip(ours.splits, ref.splits):
        assert torch.equal(a, b)
    # genre multi-hot: same columns as genre_feat.npy up to order
    genre = ref.data["item"].genre_feat
    cls = ours.data["item"].class_feat
    assert sorted(genre.sum(0).tolist()) == sorted(cls.sum(0).tolist())
    assert torch.equal(genre.sum(1), cls.sum(1))
