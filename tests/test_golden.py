"""Every CLI command and HTTP route answers as recorded in `tests/golden/outputs.json`.

The record was made before the package was restructured; see `tests/golden_cases.py`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from golden_cases import GOLDEN, cli_cases, http_cases

RECORDED = json.loads(GOLDEN.read_text())


def assert_same(got: Any, want: Any, where: str) -> None:
    """Equal, but floats to 1e-6 (printing may round the last digit differently on another CPU)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-6), f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, str):
        assert isinstance(got, str), f"{where}: {got!r} is not text"
        got_lines, want_lines = got.splitlines(), want.splitlines()
        assert len(got_lines) == len(want_lines), f"{where}: {len(got_lines)} lines != {len(want_lines)}"
        for i, (g, w) in enumerate(zip(got_lines, want_lines)):
            if w.startswith("{") and _is_json(w):  # a JSON line: compare values, floats to 1e-6
                assert_same(json.loads(g), json.loads(w), f"{where} line {i}")
            else:
                assert g == w, f"{where} line {i}: {g!r} != {w!r}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def cli_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return cli_cases(Path(tmp_path_factory.mktemp("golden")))


@pytest.fixture(scope="module")
def http_answers() -> dict[str, Any]:
    return http_cases()


@pytest.mark.parametrize("case", sorted(RECORDED["cli"]))
def test_cli_answers_as_recorded(cli_answers: dict[str, Any], case: str) -> None:
    assert_same(cli_answers[case], RECORDED["cli"][case], case)


@pytest.mark.parametrize("case", sorted(RECORDED["http"]))
def test_http_answers_as_recorded(http_answers: dict[str, Any], case: str) -> None:
    assert_same(http_answers[case], RECORDED["http"][case], case)


def test_every_command_is_recorded() -> None:
    from digitrec.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(commands) == sorted(c.split()[0] for c in RECORDED["cli"] if c.endswith("--help"))
