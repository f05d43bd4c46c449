"""`tava calibrate-router`, `tava diagnose` and `tava evaluate --router`: options from the configs,
bad budgets refused before anything runs."""
from __future__ import annotations

from click.testing import CliRunner


def test_calibrate_router_options_come_from_the_config():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--student", "--dataset", "--reference", "--teacher-budget", "--target-agreement",
                   "--settings-signals", "--settings-vector-components", "--calibration-texts"):
        assert option in result.output


def test_calibrate_router_refuses_a_budget_outside_0_1():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--student", "s", "--dataset", "d", "--teacher-budget", "1.5"])
    assert result.exit_code != 0
    assert "--teacher-budget" in result.output and "less than or equal to 1" in result.output


def test_diagnose_and_evaluate_router_options():
    from flows.commands.diagnose import cli as diagnose_cli
    from flows.commands.evaluate import cli as evaluate_cli

    result = CliRunner().invoke(diagnose_cli, ["--help"])
    assert result.exit_code == 0 and "--tangent-dim" in result.output and "--student" in result.output
    result = CliRunner().invoke(evaluate_cli, ["--help"])
    assert result.exit_code == 0 and "--router" in result.output


def test_unknown_signal_is_refused():
    from flows.commands.route import cli

    result = CliRunner().invoke(cli, ["--student", "s", "--dataset", "d", "--settings-signals", "vibes"])
    assert result.exit_code != 0 and "unknown signals" in result.output
