r"""Bad command-line numbers, paths and devices end with a one-line ``error:`` naming the option
and a non-zero exit, before any work starts, never with a traceback."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stair_pyg.cli import main
from stair_pyg.cli import _args

REPO = Path(__file__).resolve().parents[1]
NO_CUDA = not torch.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(not NO_CUDA, reason="CUDA is available here")


@pytest.fixture
def paths(tmp_path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    inter = tmp_path / "ratings.csv"
    inter.write_text("user,item\n" + "".join(f"{u},{i}\n" for u in range(5) for i in range(4)))
    return {"FILE": str(a_file), "DIR": str(a_dir), "TMP": str(tmp_path), "INTER": str(inter),
            "CKPT": str(tmp_path / "missing.pt")}


# (argv, text the error must contain); {FILE}, {DIR}, ... are filled from the fixture.
CASES = [
    # train
    (["train", "--config", "synthetic", "--nproc", "0"], "argument --nproc: must be a positive"),
    (["train", "--config", "synthetic", "--nproc", "-2"], "argument --nproc"),
    (["train", "--config", "synthetic", "--nproc", "two"], "argument --nproc: expected an integer"),
    (["train", "--config", "synthetic", "--device", "gpu"], "argument --device: expected auto"),
    (["train", "--config", "synthetic", "--device", "cuda:x"], "argument --device"),
    (["train", "--config", "synthetic", "--out", "{FILE}"], "argument --out: '{FILE}' is a file"),
    (["train", "--config", "synthetic", "--out", "{FILE}/run"], "argument --out"),
    (["train", "--config", "nosuchconfig"], "argument --config: no file 'nosuchconfig'"),
    (["train", "--config", "{TMP}/nope.yaml"], "argument --config: no file"),
    (["train", "--config", "configs/scientific.yaml"], "ship inside the package now: --config "
                                                       "scientific"),
    (["train", "--config", "{DIR}"], "argument --config: '{DIR}' is a folder"),
    (["train", "--config", "synthetic", "--model", "nosuchmodel"], "--model nosuchmodel"),
    (["train", "--config", "scientific", "--set", "dataset.path=../nowhere"],
     "hint: a packaged config's dataset.path"),
    # evaluate
    (["evaluate", "--checkpoint", "{CKPT}", "--ks", "0"], "argument --ks"),
    (["evaluate", "--checkpoint", "{CKPT}", "--ks", "10,-5"], "argument --ks: '-5'"),
    (["evaluate", "--checkpoint", "{CKPT}", "--ks", ""], "argument --ks: expected"),
    (["evaluate", "--checkpoint", "{CKPT}", "--ks", "10,,20"], "argument --ks: empty entry"),
    (["evaluate", "--checkpoint", "{CKPT}", "--ks", "ten"], "argument --ks: 'ten'"),
    (["evaluate", "--checkpoint", "{CKPT}", "--eval-batch-users", "0"],
     "argument --eval-batch-users: must be a positive integer, got 0"),
    (["evaluate", "--checkpoint", "{CKPT}", "--eval-batch-users", "-4"],
     "argument --eval-batch-users"),
    (["evaluate", "--checkpoint", "{CKPT}", "--json", "{DIR}"], "argument --json: '{DIR}' is a "
                                                                "folder"),
    (["evaluate", "--checkpoint", "{CKPT}", "--json", "{FILE}/m.json"],
     "argument --json: '{FILE}/m.json': '{FILE}' is a file"),
    (["evaluate", "--checkpoint", "{CKPT}", "--device", "tpu"], "argument --device"),
    (["evaluate", "--checkpoint", "{CKPT}"], "missing.pt"),  # not a parse error: still clean
    # recommend
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--k", "0"], "argument --k: must be a "
                                                                   "positive integer, got 0"),
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--k", "-3"], "argument --k"),
    (["recommend", "--checkpoint", "{CKPT}", "--users", ""], "argument --users: expected"),
    (["recommend", "--checkpoint", "{CKPT}", "--users", ","], "argument --users"),
    (["recommend", "--checkpoint", "{CKPT}", "--users", " "], "argument --users"),
    (["recommend", "--checkpoint", "{CKPT}", "--users", "3,x"], "argument --users: 'x'"),
    (["recommend", "--checkpoint", "{CKPT}", "--users", "-1"], "argument --users: '-1'"),
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--batch-users", "0"],
     "argument --batch-users"),
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--output", "{DIR}"], "argument --output"),
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--output", "{FILE}/r.tsv"],
     "argument --output"),
    # prepare (argument types only; its own checks are tested in test_prepare.py)
    (["prepare", "{INTER}", "--out", "{FILE}"], "argument --out: '{FILE}' is a file"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--batch-size", "0"], "argument --batch-size"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--seed", "-1"], "argument --seed"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--ratios", "0.8", "-0.1", "0.3"],
     "argument --ratios"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--ratios", "0.8", "nan", "0.1"],
     "argument --ratios"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--ratios", "0", "0", "0"],
     "argument --ratios: the three ratios must not all be 0"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--min-user-interactions", "-1"],
     "argument --min-user-interactions"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--min-item-interactions", "x"],
     "argument --min-item-interactions"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--device", "auto"], "argument --device"),
]

CUDA_CASES = [
    (["train", "--config", "synthetic", "--device", "cuda"], "argument --device: 'cuda' was "
                                                             "requested but CUDA is not available"),
    (["train", "--config", "synthetic", "--set", "train.device=cuda"], "train.device is 'cuda'"),
    (["evaluate", "--checkpoint", "{CKPT}", "--device", "cuda"], "argument --device"),
    (["recommend", "--checkpoint", "{CKPT}", "--all", "--device", "cuda:0"], "argument --device"),
    (["prepare", "{INTER}", "--out", "{TMP}/o", "--device", "cuda"], "argument --device"),
]


def _fill(items, paths):
    return [s.format(**paths) for s in items]


def _run(argv, capsys):
    r"""``main(argv)``: its exit status (returned or raised by argparse) and stderr; any other
    exception fails the test (it would be a traceback for the user)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _check(argv, expected, paths, capsys, monkeypatch):
    monkeypatch.chdir(paths["TMP"])
    code, err = _run(_fill(argv, paths), capsys)
    expected = expected.format(**paths)
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert "error" in err and expected in err, err
    assert not (Path(paths["TMP"]) / "runs").exists()  # nothing started
    assert not (Path(paths["TMP"]) / "o").exists()


@pytest.mark.parametrize("argv,expected", CASES, ids=lambda v: " ".join(v)[:60]
                         if isinstance(v, list) else None)
def test_bad_arguments_fail_cleanly(argv, expected, paths, capsys, monkeypatch):
    _check(argv, expected, paths, capsys, monkeypatch)


@needs_no_cuda
@pytest.mark.parametrize("argv,expected", CUDA_CASES, ids=lambda v: " ".join(v)[:60]
                         if isinstance(v, list) else None)
def test_cuda_without_cuda_fails_cleanly(argv, expected, paths, capsys, monkeypatch):
    _check(argv, expected, paths, capsys, monkeypatch)


@needs_no_cuda
def test_device_cuda_console_exit_status(tmp_path):
    r"""The real command: exit status 2 and one error line, no traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "stair_pyg.cli", "train", "--config",
                           "synthetic", "--device", "cuda"], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error: argument --device" in proc.stderr.strip().splitlines()[-1]


def test_argument_types():
    assert _args.positive_int(" 3") == 3
    assert _args.non_negative_int("0") == 0
    assert _args.positive_int_list("10, 20,50") == [10, 20, 50]
    assert _args.non_negative_int_list("0") == [0]
    assert _args.non_negative_float("0.25") == 0.25
    assert _args.device("CPU") == "cpu" and _args.device("auto") == "auto"
    assert _args.encoder_device("cpu") == "cpu"


def test_output_paths_create_missing_parents(tmp_path):
    target = _args.output_file(str(tmp_path / "new" / "deeper" / "m.json"))
    assert not target.parent.exists()  # checked, not created, at parse time
    _args.make_parent(target).write_text("{}")
    assert target.is_file()
    assert _args.output_file(str(target)) == target  # an existing file is overwritten
    assert _args.output_dir(str(tmp_path / "x" / "y")) == tmp_path / "x" / "y"
    assert _args.output_dir(str(tmp_path)) == tmp_path
