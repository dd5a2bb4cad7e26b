"""The command line: thin, every subcommand listed, bad input is one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

import pytest

from digitrec.cli import build_parser, main
from digitrec.commands import COMMANDS

NAMES = [module.NAME for module in COMMANDS]  # the list build_parser() iterates, in its order


def test_parser_is_built_from_the_command_list():
    (subcommands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert list(subcommands.choices) == NAMES


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    # argparse lists each subcommand at the start of a line indented by 4 (wrapped help is indented further)
    assert re.findall(r"^ {4}(\S+)", out, flags=re.MULTILINE) == NAMES


@pytest.mark.parametrize("module", COMMANDS, ids=NAMES)
def test_every_subcommand_has_its_own_help(module, capsys):
    with pytest.raises(SystemExit) as info:
        main([module.NAME, "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse rewraps the description
    assert out.startswith(f"usage: digitrec {module.NAME} ") and " ".join(module.HELP.split()) in out


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "digitrec", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("digitrec ")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "--epochs", "0"], "epochs"),
        (["train", "--batch-size", "0"], "batch size"),
        (["train", "--model", "nope"], "nope"),
        (["train", "--epochs", "two"], "epochs"),
        (["evaluate", "--model", "/no/such/file.pt"], "no such checkpoint"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        code = main(argv + (["--out", str(tmp_path / "o")] if argv[0] == "train" else []))
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert not (tmp_path / "o" / "model.pt").exists()


def test_unknown_config_key_exits_2(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("epochs = 1\nbogus = true\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "bogus" in err and len(err.strip().splitlines()) == 1


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "--limit-train", "100", "--out", str(blocker / "run")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and len(err.strip().splitlines()) == 1


def test_corrupt_data_exits_2(tmp_path, capsys):
    bad = tmp_path / "mnist"
    bad.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (bad / name).write_bytes(b"not gzip")
    assert main(["train", "--data-dir", str(bad), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "not a readable gzip" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "model.pt").exists()


def test_train_json_then_evaluate_json(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('model = "fast_ref_cnn"\nlimit_eval = 500\nbatch_size = 64\n')
    code = main(
        [
            "train",
            "--config",
            str(config),
            "--epochs",
            "1",
            "--limit-train",
            "1000",
            "--seed",
            "3",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds exactly one JSON object
    assert {"val_accuracy", "test_accuracy", "test_loss", "train_seconds", "checkpoint"} <= set(summary)
    assert "epoch   1" in captured.err
    assert main(["evaluate", "--model", summary["checkpoint"], "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == 10000 and 0.5 < evaluated["test_accuracy"] <= 1 and evaluated["test_loss"] > 0


def test_evaluate_defaults_to_shipped_model(capsys):
    assert main(["evaluate", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["test_accuracy"] > 0.99 and result["n"] == 10000


def test_parser_builds_without_side_effects():
    assert build_parser().prog == "digitrec"
