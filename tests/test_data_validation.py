import hashlib

import numpy as np
import pytest

from stair_pyg.data import DataError, DataWarning, describe, load_csv, load_mmrec
from stair_pyg.data.prepare import prepare_dataset, read_item_text

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"
GOOD = "0\t0\t1\t0\t0\n0\t1\t1\t1\t1\n0\t2\t1\t2\t2\n1\t1\t1\t0\t0\n1\t0\t1\t1\t1\n1\t2\t1\t2\t2\n"


def inter(tmp_path, body, header=HEADER, name="d"):
    path = tmp_path / f"{name}.inter"
    path.write_text(header + body)
    return path


def test_missing_columns(tmp_path):
    path = inter(tmp_path, "0\t0\n", header="userID\titemID\n")
    with pytest.raises(DataError, match=r"line 1: missing column\(s\) \['x_label'\]") as e:
        load_mmrec(path)
    assert str(path) in str(e.value) and e.value.line == 1
    csv = tmp_path / "r.csv"
    csv.write_text("user,product\n1,2\n")
    with pytest.raises(DataError, match=r"r.csv, line 1: missing column\(s\) for \['item'\]"):
        load_csv(csv)
    with pytest.raises(DataError, match="missing column 'iid'"):
        load_csv(csv, item_col="iid")


@pytest.mark.parametrize("bad,line,what", [
    ("0\tabc\t1\t0\t0\n", 4, "'abc' is not an integer id"),
    ("0\t1.5\t1\t0\t0\n", 4, "'1.5' is not an integer id"),
    ("0\t\t1\t0\t0\n", 4, "an empty value is not an integer id"),
])
def test_non_integer_ids(tmp_path, bad, line, what):
    rows = GOOD.splitlines(keepends=True)
    path = inter(tmp_path, "".join(rows[:2]) + bad + "".join(rows[2:]))
    assert path.read_text().splitlines()[line - 1] == bad.strip("\n")
    with pytest.raises(DataError, match=f"line {line}: column 'itemID': {what}"):
        load_mmrec(path)


def test_non_integer_ids_csv(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\n1,2\n1,3\n1,2.5\n")
    with pytest.raises(DataError, match=r"r.csv, line 4: column 'item': '2.5' is not an integer"):
        load_csv(csv)


def test_negative_ids(tmp_path):
    path = inter(tmp_path, GOOD + "-1\t0\t1\t0\t0\n")
    with pytest.raises(DataError, match="line 8: column 'userID': negative id -1"):
        load_mmrec(path)
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\n1,2\n1,-3\n")
    with pytest.raises(DataError, match="line 3: column 'item': negative id '-3'"):
        load_csv(csv)


def test_bad_labels_and_empty(tmp_path):
    with pytest.raises(DataError, match="line 3: column 'x_label': 3 is not a split label"):
        load_mmrec(inter(tmp_path, "0\t0\t1\t0\t0\n0\t1\t1\t0\t3\n"))
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_csv(empty)


def test_feature_rows_fewer_than_items(tmp_path):
    inter(tmp_path, GOOD)
    np.save(tmp_path / "text_feat.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match="text_feat.npy: 'text' features have 2 rows, fewer than "
                                        "the 3 items"):
        load_mmrec(tmp_path)


@pytest.mark.parametrize("value,kind", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_features(tmp_path, value, kind):
    inter(tmp_path, GOOD)
    x = np.zeros((3, 4), dtype=np.float32)
    x[2, 1] = value
    np.save(tmp_path / "image_feat.npy", x)
    with pytest.raises(DataError, match=f"image_feat.npy, row 2: 'image' features contain {kind}"):
        load_mmrec(tmp_path)


def test_feature_not_2d(tmp_path):
    inter(tmp_path, GOOD)
    np.save(tmp_path / "text_feat.npy", np.zeros(3, dtype=np.float32))
    with pytest.raises(DataError, match="2-d array"):
        load_mmrec(tmp_path)


@pytest.mark.parametrize("missing", [0, 1, 2])
def test_empty_split_for_every_user(tmp_path, missing):
    rows = [r for r in GOOD.splitlines() if not r.endswith(f"\t{missing}")]
    path = inter(tmp_path, "\n".join(rows) + "\n")
    name = ["train", "valid", "test"][missing]
    with pytest.raises(DataError, match=f"the {name} split is empty for every user"):
        load_mmrec(path)


def test_random_split_too_small_users_gives_empty_split(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\n1,1\n1,2\n2,1\n")  # nobody has 3 items: all train
    with pytest.raises(DataError, match="r.csv: the valid split is empty for every user"):
        load_csv(csv)


def test_cold_users_and_items_kept_and_reported(tmp_path):
    # user 2 and item 3 occur only in valid / test (item 2 is test-only already in GOOD)
    path = inter(tmp_path, GOOD + "2\t0\t1\t0\t1\n2\t3\t1\t0\t2\n")
    with pytest.warns(DataWarning, match=r"cold start kept: valid has 1 user\(s\) and 0 item\(s\), "
                                         r"test has 1 user\(s\) and 2 item\(s\)"):
        data, splits = load_mmrec(path)
    assert data["user"].num_nodes == 3 and data["item"].num_nodes == 4
    assert (splits.valid[0] == 2).sum() == 1 and (splits.test[1] == 3).sum() == 1
    assert not (splits.train[0] == 2).any()
    cold = describe((data, splits))["cold_start"]
    assert cold == {"valid_users": 1, "valid_items": 0, "valid_interactions": 1,
                    "test_users": 1, "test_items": 2, "test_interactions": 3}


def test_duplicates_merged_with_warning(tmp_path):
    path = inter(tmp_path, GOOD + "0\t0\t1\t9\t2\n1\t1\t1\t9\t0\n")
    with pytest.warns(UserWarning, match=r"merged 2 duplicated \(user, item\)"):
        data, splits = load_mmrec(path)
    assert splits.train.size(1) == 2 and splits.test.size(1) == 2  # first rows kept
    csv = tmp_path / "r.csv"
    csv.write_text("user,item,timestamp\n1,1,5\n1,2,1\n1,3,2\n1,1,0\n1,4,3\n")
    with pytest.warns(UserWarning, match="merged 1 duplicated"):
        _, splits = load_csv(csv, split="loo")
    # (1,1) kept at timestamp 0, so item 4 (t=3) is last
    assert splits.test.tolist() == [[0], [3]]


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_input_never_written_over(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    inter(folder, GOOD)
    np.save(folder / "text_feat.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    before = digest(folder)
    load_mmrec(folder)
    assert digest(folder) == before
    with pytest.raises(DataError, match="refusing to write over the input"):
        prepare_dataset(folder / "d.inter", folder, name="d", overwrite=True)
    assert digest(folder) == before
    csv = folder / "raw.csv"
    csv.write_text("user,item\n" + "".join(f"{u},{i}\n" for u in range(3) for i in range(4)))
    before = digest(folder)
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_dataset(csv, folder)
    assert digest(folder) == before
    out = prepare_dataset(csv, tmp_path / "out")
    assert digest(folder) == before
    with pytest.raises(FileExistsError):
        prepare_dataset(csv, out)
    prepare_dataset(csv, out, overwrite=True)


def test_item_text_errors(tmp_path):
    text = tmp_path / "t.tsv"
    text.write_text("item_id\ttext\n1\thello\n2 no tab here\n")
    with pytest.raises(DataError, match="t.tsv, line 3: expected 'item<TAB>text'"):
        read_item_text(text)
    csv = tmp_path / "r.csv"
    csv.write_text("user,item\n" + "".join(f"{u},{i}\n" for u in range(3) for i in range(4)))
    text.write_text("1\thello\n2\tworld\n")
    with pytest.raises(DataError, match=r"2 item\(s\) of the interactions have no text"):
        prepare_dataset(csv, tmp_path / "out", item_text=text)
    assert not (tmp_path / "out").exists()
