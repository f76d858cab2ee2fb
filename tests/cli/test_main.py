"""The ``dcf`` command, run as a user would: a real subprocess of the installed entry point."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_dcf


def test_help_lists_commands_and_examples() -> None:
    result = run_dcf("--help")
    assert result.returncode == 0
    assert "models" in result.stdout and "examples:" in result.stdout


def test_models_table_shows_paper_figures() -> None:
    result = run_dcf("models", "x3d_s", "x3d_s_dcf", "r2plus1d_r50_dcf")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith(("x3d", "r2"))}
    assert "3.33M" in lines["x3d_s"] and "1.96" in lines["x3d_s"] and "3.3M 2.0G" in lines["x3d_s"]
    assert "2.15" in lines["x3d_s_dcf"] and "+0.19 GMACs" in lines["x3d_s_dcf"]
    assert "24.61M" in lines["r2plus1d_r50_dcf"] and "35.92" in lines["r2plus1d_r50_dcf"]


def test_models_json() -> None:
    result = run_dcf("models", "--json", "--frames", "8", "--size", "112", "x3d_m")
    rows = json.loads(result.stdout)
    assert rows[0]["name"] == "x3d_m" and rows[0]["frames"] == 8 and rows[0]["crop_size"] == 112
    assert 0 < rows[0]["macs"] < 4.73e9 / 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("models", "x3d_q"), "dcf models: error: unknown model 'x3d_q'"),
        (("models", "--frames", "many"), "argument --frames: invalid int value: 'many'"),
        (("nonsense",), "invalid choice: 'nonsense'"),
    ],
)
def test_bad_input_is_one_clear_line(args: tuple[str, ...], message: str) -> None:
    result = run_dcf(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
