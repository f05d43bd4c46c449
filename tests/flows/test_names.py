"""One spelling per concept: flow names are kebab-case, the README's command table names real
flows, and each deployment is named after the `tava` command that runs the same flow (`<command>-rollback`
for the flow its `--rollback` runs)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
KEBAB = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
FLOW_DECORATOR = re.compile(r'@flow\(\s*name="([^"]+)"')
FLOW_FUNCTION = re.compile(r'@flow\(\s*name="([^"]+)"[^\n]*\)\s*\ndef (\w+)')


def _flow_names() -> dict[str, str]:
    """flow name -> 'flows/x.py:function', read from the sources (no Prefect import needed)."""
    names = {}
    for path in sorted((PROJECT / "flows").glob("*.py")):
        for name, function in FLOW_FUNCTION.findall(path.read_text()):
            names[name] = f"flows/{path.name}:{function}"
    return names


def test_every_flow_name_is_kebab_case():
    declared = [name for path in (PROJECT / "flows").glob("*.py") for name in FLOW_DECORATOR.findall(path.read_text())]
    assert len(declared) >= 10
    assert [name for name in declared if not KEBAB.match(name)] == []
    assert len(declared) == len(set(declared)), "two flows share a name"


def test_readme_command_table_names_the_real_flows():
    flows = _flow_names()
    rows = [line for line in (PROJECT / "README.md").read_text().splitlines() if line.startswith("| `tava ")]
    named = [re.findall(r"`([^`]+)`", row.split(" | ")[1]) for row in rows]
    named = [cell[0] for cell in named if cell]
    assert len(named) >= 10
    assert [name for name in named if name not in flows] == []


def test_deployments_are_named_after_the_command_running_their_flow():
    from flows.cli import COMMANDS

    flows = _flow_names()
    by_entrypoint = {entry: name for name, entry in flows.items()}
    deployments = yaml.safe_load((PROJECT / "prefect.yaml").read_text())["deployments"]
    for deployment in deployments:
        entry = deployment["entrypoint"]
        assert entry in by_entrypoint, f"{deployment['name']}: {entry} is not a flow"
        if deployment.get("schedules"):
            assert deployment["name"] == by_entrypoint[entry], "a scheduled deployment carries its flow's name"
        else:
            # `tava index` runs flows/index.py: the deployment of that flow is `index`; `tava index --rollback`
            # runs its rollback flow: that deployment is `index-rollback`
            command = deployment["name"].removesuffix("-rollback")
            if command != deployment["name"]:
                assert by_entrypoint[entry].startswith("rollback-"), deployment
            assert command in COMMANDS, f"{deployment['name']} is not a tava command"
            command_module = COMMANDS[command][0].split(":")[0].rsplit(".", 1)[-1]
            assert Path(entry.split(":")[0]).stem == command_module, deployment
