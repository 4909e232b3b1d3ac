"""Every command the README's command table lists is a real command, and the other way round."""

from __future__ import annotations

import re
from pathlib import Path

from tcpstress.cli import cli

README = Path(__file__).resolve().parents[2] / "README.md"


def _documented() -> set[str]:
    text = README.read_text()
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    return {" ".join(m.group(1).split()[:2]) if m.group(1).startswith("lab") else m.group(1).split()[0]
            for m in re.finditer(r"^\| `tcpstress ([a-z]+(?: [a-z]+)?)", table, flags=re.MULTILINE)}


def _commands() -> set[str]:
    names = set()
    for name, command in cli.commands.items():
        subcommands = getattr(command, "commands", None)
        names |= {f"{name} {sub}" for sub in subcommands} if subcommands else {name}
    return names


def test_the_command_table_and_the_cli_agree():
    assert _documented() == _commands()
