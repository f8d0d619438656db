"""`jingzhun measure …` on the portrayed demo: each command prints what the Python API returns."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from jingzhun.cli import app
from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.measure import read_kpis

RUNNER = CliRunner()


def _run(*args: str) -> str:
    result = RUNNER.invoke(app, list(args), env={"JINGZHUN_LANG": "en"})
    assert result.exit_code == 0, result.output
    return result.output


def test_measure_commands(portrayed: Workspace, demo: Workspace) -> None:
    where = ("--workspace", str(portrayed.root))
    kpis = json.loads(_run("measure", "kpis", "--by", "channel,arm", "--format", "json", *where))
    with open_engine(portrayed, read_only=True) as engine:
        expected = read_kpis(engine, by=("channel", "arm")).frame
    assert [(r["channel"], r["arm"], r["clicked"]) for r in kpis] == list(
        zip(expected.channel, expected.arm, expected.clicked.astype(int), strict=True))
    assert "SELECT" in _run("measure", "kpis", "--sql", *where)
    lift = _run("measure", "lift", "--pool", *where)
    assert "(pooled)" in lift and "Works:" in lift
    assert "treatment" in _run("measure", "plan", "--baseline", "0.03", "--lift", "0.2")
    markov = json.loads(_run("measure", "attribution", "--model", "markov", "--format", "json", *where))
    assert {r["model"] for r in markov} == {"markov"} and any(r["touch_channel"].startswith("ad:") for r in markov)
    budget = _run("measure", "budget", "--bootstrap", "3", "--format", "csv", *where)
    assert "xiaohongshu" in budget and "marginal_roi_recommended" in budget
    assert "expected" in _run("measure", "budget", "--bootstrap", "0", *where)
    assert "alert_id" in _run("measure", "alerts", "--workspace", str(demo.root))


def test_a_bad_option_is_one_message(portrayed: Workspace) -> None:
    result = RUNNER.invoke(app, ["measure", "kpis", "--by", "person_id", "--workspace", str(portrayed.root)],
                           env={"JINGZHUN_LANG": "en"})
    assert result.exit_code != 0 and "group KPIs by" in str(result.exception or result.output)
