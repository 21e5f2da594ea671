r"""Bad input through the command line (issue 16, classes 2-5): every case is a dataset written
into a fresh folder and a ``stair-pyg`` command on it. Refused input exits 2 with one
``error: ...`` line naming the file and the line / row / key, never a traceback; input that is
only suspicious exits 0 with a plain ``note: ...`` line (a :class:`DataWarning`), never Python's
warning display with a source line under it.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stair_pyg.cli import main

REPO = Path(__file__).resolve().parents[1]
MMREC = ("userID\titemID\trating\ttimestamp\tx_label\n"
         "0\t0\t1\t0\t0\n0\t1\t1\t1\t0\n0\t2\t1\t2\t1\n0\t3\t1\t3\t2\n"
         "1\t1\t1\t0\t0\n1\t2\t1\t1\t2\n1\t0\t1\t2\t1\n1\t3\t1\t3\t0\n")
CSV = ("user,item,rating,timestamp\n"
       "amy,pen,4,1\namy,cup,5,2\namy,ink,3,3\namy,box,2,4\n"
       "bob,pen,1,1\nbob,ink,2,2\nbob,cup,2,3\nbob,box,5,4\n")
RECBOLE = ("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
           "1\t10\t4\t1\n1\t11\t5\t2\n1\t12\t3\t3\n1\t13\t2\t4\n"
           "2\t10\t1\t1\n2\t12\t2\t2\n2\t11\t2\t3\n2\t13\t5\t4\n")
FEAT = np.arange(8, dtype=np.float32).reshape(4, 2)


def mmrec(tmp, inter=MMREC, **features):
    folder = tmp / "d"
    folder.mkdir()
    if inter is not None:
        (folder / "d.inter").write_bytes(inter if isinstance(inter, bytes) else inter.encode())
    for modality, x in features.items():
        np.save(folder / f"{modality}_feat.npy", x)
    return folder


def put(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def recbole(tmp, content=RECBOLE):
    folder = tmp / "rb"
    folder.mkdir()
    put(folder / "rb.inter", content)
    return folder


# ---------------------------------------------------------------- case builders
# Each returns the command line (after ``stair-pyg``).

def feat_empty(tmp):
    folder = mmrec(tmp)
    put(folder / "text_feat.npy", b"")
    return ["describe", str(folder)]


def feat_npz(tmp):
    folder = mmrec(tmp)
    with open(folder / "text_feat.npy", "wb") as f:
        np.savez(f, a=FEAT)
    return ["describe", str(folder)]


def feat_directory(tmp):
    folder = mmrec(tmp)
    (folder / "text_feat.npy").mkdir()
    return ["describe", str(folder)]


def feat_symlink_loop(tmp):
    folder = mmrec(tmp)
    os.symlink(folder / "text_feat.npy", folder / "text_feat.npy")
    return ["describe", str(folder)]


def feat_unreadable(tmp):
    folder = mmrec(tmp, text=FEAT)
    os.chmod(folder / "text_feat.npy", 0)
    return ["describe", str(folder)]


def feat_complex(tmp):
    return ["describe", str(mmrec(tmp, text=FEAT + 1j))]


def feat_not_npy(tmp):
    folder = mmrec(tmp)
    put(folder / "text_feat.npy", "0.1,0.2\n0.3,0.4\n")
    return ["describe", str(folder)]


def feat_pickled(tmp):
    folder = mmrec(tmp)
    np.save(folder / "text_feat.npy", np.array([[1, "a"]] * 4, dtype=object), allow_pickle=True)
    return ["describe", str(folder)]


def inter_directory(tmp):
    folder = mmrec(tmp, inter=None)
    (folder / "d.inter").mkdir()
    return ["describe", str(folder)]


def inter_symlink_loop(tmp):
    folder = mmrec(tmp, inter=None)
    os.symlink(folder / "d.inter", folder / "d.inter")
    return ["describe", str(folder)]


def mmrec_latin1(tmp):
    text = MMREC.replace("x_label\n", "x_label\tnote\n", 1).replace("\n0\t1\t1\t1\t0\n",
                                                                    "\n0\t1\t1\t1\t0\tcaf\xe9\n")
    return ["describe", str(mmrec(tmp, inter=text.encode("latin-1")))]


def mmrec_utf16(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC.encode("utf-16")))]


def mmrec_bom(tmp):
    return ["describe", str(mmrec(tmp, inter=b"\xef\xbb\xbf" + MMREC.encode(), text=FEAT))]


def csv_latin1(tmp):
    return ["describe", str(put(tmp / "r.csv", CSV.replace("amy,ink", "am\xe9,ink")
                                .encode("latin-1")))]


def csv_latin1_with_option(tmp):
    return csv_latin1(tmp) + ["--encoding", "latin-1"]


def csv_utf16(tmp):
    return ["describe", str(put(tmp / "r.csv", CSV.encode("utf-16")))]


def csv_utf16_with_option(tmp):
    return csv_utf16(tmp) + ["--encoding", "utf-16"]


def csv_bom(tmp):
    return ["describe", str(put(tmp / "r.csv", b"\xef\xbb\xbf" + CSV.encode()))]


def csv_folder(tmp):
    return ["describe", str(mmrec(tmp)), "--format", "csv"]


def recbole_latin1(tmp):
    return ["describe", str(recbole(tmp, RECBOLE.replace("1\t12", "\xe91\t12").encode("latin-1")))]


def recbole_bom(tmp):
    return ["describe", str(recbole(tmp, b"\xef\xbb\xbf" + RECBOLE.encode()))]


def prepare_text_latin1(tmp):
    csv = put(tmp / "r.csv", CSV)
    text = put(tmp / "items.tsv", "item\ttext\npen\ta pen\ncup\ta caf\xe9 cup\n".encode("latin-1"))
    return ["prepare", str(csv), "--text", str(text), "--out", str(tmp / "out"), "--no-progress"]


def prepare_utf16(tmp):
    csv = put(tmp / "r.csv", CSV.encode("utf-16"))
    return ["prepare", str(csv), "--out", str(tmp / "out"), "--no-progress"]


def prepare_directory(tmp):
    return ["prepare", str(mmrec(tmp)), "--out", str(tmp / "out"), "--no-progress"]


def mmrec_huge_id(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + f"{2 ** 40}\t0\t1\t0\t0\n"))]


def mmrec_beyond_int64(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + f"0\t{2 ** 70}\t1\t0\t0\n"))]


def mmrec_uint64(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + f"{2 ** 64 - 1}\t0\t1\t0\t0\n"))]


def mmrec_giant_id(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + "9" * 1_000_000 + "\t0\t1\t0\t0\n"))]


def mmrec_giant_text_id(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + "x" * 1_000_000 + "\t0\t1\t0\t0\n"))]


def csv_huge_ids(tmp):
    text = CSV.replace("amy", str(2 ** 40)).replace("bob", str(2 ** 70)).replace("pen",
                                                                                  str(2 ** 64))
    return ["describe", str(put(tmp / "r.csv", text))]


def csv_nan_user(tmp):
    return ["describe", str(put(tmp / "r.csv", CSV + "NaN,pen,3,5\n"))]


def csv_empty_user(tmp):
    return ["describe", str(put(tmp / "r.csv", CSV + ",pen,3,5\n"))]


def recbole_huge_ids(tmp):
    return ["describe", str(recbole(tmp, RECBOLE.replace("\n1\t", f"\n{2 ** 70}\t")))]


def recbole_nan_user(tmp):
    return ["describe", str(recbole(tmp, RECBOLE + "nan\t10\t3\t5\n"))]


def feat_zero_columns(tmp):
    return ["describe", str(mmrec(tmp, text=np.zeros((4, 0), dtype=np.float32)))]


def feat_all_zero(tmp):
    return ["describe", str(mmrec(tmp, text=np.zeros((4, 3), dtype=np.float32)))]


def feat_constant(tmp):
    return ["describe", str(mmrec(tmp, image=np.full((4, 3), 0.5, dtype=np.float32)))]


def feat_some_zero_rows(tmp):
    x = FEAT.copy()
    x[2] = 0
    return ["describe", str(mmrec(tmp, text=x))]


def feat_duplicate_rows(tmp):
    x = FEAT.copy()
    x[3] = x[1]
    return ["describe", str(mmrec(tmp, text=x))]


def detect_empty(tmp):
    return ["describe", str(mmrec(tmp, inter=""))]


def detect_no_label(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC.replace("\tx_label", "\tsplit")))]


def detect_commas(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC.replace("\t", ",")))]


def detect_commas_explicit(tmp):
    return detect_commas(tmp) + ["--format", "mmrec"]


def detect_recbole_untyped(tmp):
    return ["describe", str(recbole(tmp, RECBOLE.replace(":token", "").replace(":float", "")))]


def detect_recbole_untyped_explicit(tmp):
    return detect_recbole_untyped(tmp) + ["--format", "recbole"]


def detect_no_inter(tmp):
    folder = tmp / "empty"
    folder.mkdir()
    return ["describe", str(folder)]


def mmrec_duplicates(tmp):
    return ["describe", str(mmrec(tmp, inter=MMREC + "0\t0\t1\t9\t0\n", text=FEAT))]


# ---------------------------------------------------------------- the table
# (case, builder, exit code, pattern the stderr line must match)
REFUSED = [
    # class 2: files that are not what their name says
    ("feature .npy empty", feat_empty, r"text_feat\.npy: empty file \(0 bytes\)"),
    ("feature .npz", feat_npz, r"text_feat\.npy: an \.npz archive"),
    ("feature directory", feat_directory, r"text_feat\.npy: is a directory"),
    ("feature symlink loop", feat_symlink_loop, r"text_feat\.npy: symbolic link loop"),
    ("feature unreadable", feat_unreadable, r"text_feat\.npy: cannot read the file: permission"),
    ("feature complex", feat_complex, r"text_feat\.npy: 'text' features are complex-valued"),
    ("feature not .npy", feat_not_npy, r"text_feat\.npy: not a \.npy file"),
    ("feature pickled objects", feat_pickled,
     r"text_feat\.npy: not a readable \.npy array \(Object arrays cannot be loaded"),
    (".inter directory", inter_directory, r"d\.inter: is a directory"),
    (".inter symlink loop", inter_symlink_loop, r"d\.inter: symbolic link loop"),
    ("mmrec latin-1", mmrec_latin1, r"d\.inter, line 3: not valid utf-8 at byte \d+"),
    ("mmrec utf-16", mmrec_utf16, r"d\.inter, line 1: the file is UTF-16"),
    ("csv latin-1", csv_latin1,
     r"r\.csv, line 4: not valid utf-8 at byte \d+ .*encoding='latin-1' \(dataset\.encoding"),
    ("csv utf-16", csv_utf16, r"r\.csv, line 1: the file is UTF-16.*encoding='utf-16'"),
    ("csv folder", csv_folder, r"d: is a folder; the csv format reads one table file"),
    ("recbole latin-1", recbole_latin1, r"rb\.inter, line 4: not valid utf-8 at byte"),
    ("prepare item text latin-1", prepare_text_latin1,
     r"items\.tsv, line 3: not valid utf-8 at byte \d+ .*--encoding"),
    ("prepare utf-16", prepare_utf16, r"r\.csv, line 1: the file is UTF-16"),
    ("prepare folder", prepare_directory, r"d: is a folder; prepare reads one"),
    # class 3: ids that cannot index memory
    ("mmrec id 2^40", mmrec_huge_id,
     r"d\.inter, line 10: column 'userID': id 1099511627776 is out of range .*below the number "
     r"of interaction rows \(9\)"),
    ("mmrec id 2^70", mmrec_beyond_int64,
     r"d\.inter, line 10: column 'itemID': '1180591620717411303424' is too large for an id"),
    ("mmrec id 2^64-1", mmrec_uint64, r"d\.inter, line 10: column 'userID': "
                                      r"'18446744073709551615' is too large for an id"),
    ("mmrec 1 MB id", mmrec_giant_id,
     r"d\.inter, line 10: column 'userID': '9{40}'\.\.\. \(1,000,000 characters\) is too large"),
    ("mmrec 1 MB text id", mmrec_giant_text_id,
     r"d\.inter, line 10: column 'userID': 'x{40}'\.\.\. \(1,000,000 characters\) is not an "
     r"integer id"),
    ("csv NaN user", csv_nan_user, r"r\.csv, line 10: column 'user': missing id 'NaN'"),
    ("csv empty user", csv_empty_user, r"r\.csv, line 10: column 'user': missing id ''"),
    ("recbole nan user", recbole_nan_user, r"rb\.inter, line 10: column 'user': missing id 'nan'"),
    # class 4: features that cannot carry information
    ("feature 0 columns", feat_zero_columns, r"text_feat\.npy: 'text' features have 0 columns"),
    ("feature all zero", feat_all_zero, r"text_feat\.npy: 'text' features are all zero"),
    ("feature constant", feat_constant,
     r"image_feat\.npy: 'image' features are the same row for every item"),
    # class 5: format detection that hides the real problem
    ("detect empty .inter", detect_empty,
     r"d\.inter, line 1: neither an MMRec nor a RecBole \.inter file\. MMRec: the file is empty"),
    ("detect no x_label", detect_no_label, r"d\.inter, line 1: neither .*MMRec: the header has no "
                                           r"'x_label' column.*RecBole: header field 'userID'"),
    ("detect commas", detect_commas,
     r"d\.inter, line 1: neither .*MMRec: the header .* is separated by ','"),
    ("mmrec commas, --format mmrec", detect_commas_explicit,
     r"d\.inter, line 1: not an MMRec \.inter file: the header .* is separated by ','"),
    ("detect recbole without :type", detect_recbole_untyped,
     r"rb\.inter, line 1: neither .*RecBole: header field 'user_id' is not 'name:type'"),
    ("recbole without :type, --format recbole", detect_recbole_untyped_explicit,
     r"rb\.inter, line 1: header field 'user_id' is not 'name:type'"),
    ("detect folder without .inter", detect_no_inter, r"empty: no '\*\.inter' file in this folder"),
]

ACCEPTED = [
    # (case, builder, pattern of a 'note:' line or None, pattern of stdout)
    ("mmrec UTF-8 BOM", mmrec_bom, None, r"users +2\b"),
    ("csv UTF-8 BOM", csv_bom, None, r"users +2\b"),
    ("recbole UTF-8 BOM", recbole_bom, None, r"users +2\b"),
    ("csv latin-1 with --encoding", csv_latin1_with_option, None, r"users +3\b"),
    ("csv utf-16 with --encoding", csv_utf16_with_option, None, r"users +2\b"),
    ("csv ids beyond int64 (remapped)", csv_huge_ids, None, r"users +2\b[\s\S]*items +4\b"),
    ("recbole ids beyond int64 (remapped)", recbole_huge_ids, None, r"users +2\b"),
    ("feature rows all zero", feat_some_zero_rows,
     r"note: \S*text_feat\.npy: 'text' features: 1 of 4 rows are all zero \(first: row 2\)",
     r"feature text +4 x 2"),
    ("feature rows repeated", feat_duplicate_rows,
     r"note: \S*text_feat\.npy: 'text' features: 1 of 4 rows repeat an earlier row",
     r"feature text +4 x 2"),
    ("duplicated interactions", mmrec_duplicates,
     r"note: \S*d\.inter: merged 1 duplicated \(user, item\) interaction", r"interactions +8\b"),
]


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case,build,pattern", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case, build, pattern, tmp_path, capsys):
    if build is feat_unreadable and os.geteuid() == 0:
        pytest.skip("root reads files without read permission")
    argv = build(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"stair-pyg {argv[0]}: error: ")
    assert len(lines[0]) < 600
    import re
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("case,build,note,out", ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(case, build, note, out, tmp_path, capsys):
    import re
    code, stdout, err = run_cli(build(tmp_path), capsys)
    assert code == 0, err
    assert re.search(out, stdout), stdout
    assert "Traceback" not in err and "Warning" not in err and "warn(" not in err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert len(notes) == len(err.splitlines()), err  # every stderr line is a plain note
    if note is not None:
        assert any(re.search(note, line) for line in notes), err


def test_no_previously_valid_csv_refused(tmp_path, capsys):
    r"""Integer ids within int64 keep their numeric order; '1.0'-style ids are integers."""
    from stair_pyg.data import load_csv

    path = put(tmp_path / "r.csv", "user,item\n10,2.0\n10,3\n10,1\n9,1\n9,2\n9,3\n")
    data, splits = load_csv(path)
    assert data["user"].num_nodes == 2 and data["item"].num_nodes == 3


def test_notice_display_is_restored(tmp_path, capsys):
    import warnings

    before = warnings.showwarning
    run_cli(mmrec_duplicates(tmp_path), capsys)
    assert warnings.showwarning is before


def test_describe_subprocess_prints_plain_notes(tmp_path):
    r"""A real process, as a person runs it: the notice is one line, no source line."""
    folder = Path(mmrec_duplicates(tmp_path)[1])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "stair_pyg.cli", "describe", str(folder)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert err and all(line.startswith("note: ") for line in err), proc.stderr
    assert any("merged 1 duplicated" in line for line in err)
    assert "dataset_from_labels" not in proc.stderr and "UserWarning" not in proc.stderr


def test_train_prints_plain_notes(tmp_path, capsys):
    r"""``stair-pyg train`` on a dataset with a notice: the note line, no warning display."""
    folder = Path(mmrec_duplicates(tmp_path)[1])
    cfg = {"dataset": {"format": "mmrec", "path": str(folder)},
           "model": {"name": "bpr", "embedding_dim": 8},
           "train": {"epochs": 1, "batch_size": 64, "device": "cpu", "ks": [2],
                     "metric": "NDCG@2", "eval_every": 1}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "run"),
                            "--no-progress"], capsys)
    assert code == 0, err
    assert "note: " in err and "merged 1 duplicated" in err, err
    assert "UserWarning" not in err and "dataset_from_labels" not in err, err


def test_train_data_error_is_one_line(tmp_path, capsys):
    folder = Path(feat_all_zero(tmp_path)[1])
    cfg = {"dataset": {"format": "mmrec", "path": str(folder)}, "model": {"name": "bpr"},
           "train": {"epochs": 1, "device": "cpu"}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli(["train", "--config", str(config), "--out", str(tmp_path / "run"),
                            "--no-progress"], capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "text_feat.npy: 'text' features are all zero" in err


def test_options_errors_name_the_key(tmp_path):
    from stair_pyg.data import DataError, InteractionOptions, load_csv

    path = put(tmp_path / "r.csv", CSV)
    with pytest.raises(DataError, match=r"'split' must be one of \['random', 'loo', 'column'\], "
                                        r"got 'rand'"):
        load_csv(path, split="rand")
    with pytest.raises(DataError, match=r"'ratios' must be three non-negative numbers"):
        InteractionOptions(ratios=(1, 2))
    with pytest.raises(DataError, match=r"'min_user_interactions' must be a non-negative"):
        load_csv(path, options=InteractionOptions(min_user_interactions=-1))
    with pytest.raises(DataError, match=r"'encoding' must be an encoding name"):
        load_csv(path, encoding="klingon")
    # the object and the keywords are the same options; keywords override the object's fields
    a = load_csv(path, options=InteractionOptions(split="loo"), seed=3)
    b = load_csv(path, split="loo", seed=3)
    assert all(x.equal(y) for x, y in zip(a.splits, b.splits))


def test_recbole_item_file_problems(tmp_path):
    from stair_pyg.data import DataError, load_recbole

    folder = recbole(tmp_path)
    put(folder / "rb.item", "item_id:token\tclass:token_seq\n10\ta\n11\tb\n12\tc\n13\tcaf\xe9\n"
        .encode("latin-1"))
    with pytest.raises(DataError, match=r"rb\.item, line 5: not valid utf-8 at byte \d+"):
        load_recbole(folder, item_features=["class"])
    ds = load_recbole(folder, item_features=["class"], encoding="latin-1")
    assert ds.data["item"].class_feat.shape == (4, 4)
    put(folder / "rb.item", "item_id:token\tclass:token\n10\ta\n11\ta\n12\ta\n13\ta\n")
    with pytest.raises(DataError, match=r"rb\.item: 'class' features are the same row"):
        load_recbole(folder, item_features=["class"])


def test_unreadable_file_message(tmp_path, monkeypatch, capsys):
    r"""Permission denied, simulated (the tests may run as root, who reads anything)."""
    import builtins

    from stair_pyg.data import files

    folder = Path(mmrec_bom(tmp_path)[1])
    real_open = builtins.open

    def deny(path, *args, **kwargs):
        if str(path).endswith("text_feat.npy"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(files, "open", deny, raising=False)
    code, _, err = run_cli(["describe", str(folder)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "text_feat.npy: cannot read the file: permission denied" in err


def test_npy_header_larger_than_file(tmp_path, capsys):
    r"""A .npy whose header claims 2^40 rows is refused before numpy allocates them."""
    folder = mmrec(tmp_path, text=FEAT)
    raw = (folder / "text_feat.npy").read_bytes()
    put(folder / "text_feat.npy", raw.replace(b"(4, 2)", b"(1099511627776, 2)".ljust(6)))
    header = np.lib.format.read_array_header_1_0
    with open(folder / "text_feat.npy", "rb") as f:
        np.lib.format.read_magic(f)
        assert header(f)[0] == (2 ** 40, 2)
    code, _, err = run_cli(["describe", str(folder)], capsys)
    assert code == 2 and "Traceback" not in err
    assert "text_feat.npy: the .npy header says shape (1099511627776, 2)" in err
    put(folder / "text_feat.npy", raw[:-4])
    code, _, err = run_cli(["describe", str(folder)], capsys)
    assert code == 2 and "(truncated or corrupt)" in err
