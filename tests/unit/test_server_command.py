"""server.command is split before {host} {port} {dir} are filled in (issue #17 item 14).

The witness is the program that runs: printf prints one line per argument it
received, so a --out with a space, quotes or shell syntax shows up as extra
lines (or a created file) if it ever changes the argument list.
"""

from __future__ import annotations

import subprocess

import pytest

from tcpstress.runner import server_argv
from tcpstress.scenario import ScenarioError, build


def scenario(command: str):
    return build({"name": "cmd", "lab": True, "target": {"host": "198.18.0.2", "port": 8080},
                  "server": {"command": command}}, "cmd.toml")


@pytest.mark.parametrize("out", ["run with space", "a'b", 'q"uote', "x; touch PWNED", "$(touch PWNED)", "{port}"])
def test_a_hostile_out_folder_stays_one_argument(tmp_path, out):
    run_dir = tmp_path / out
    argv = server_argv(scenario("printf '%s\\n' --conf={dir}/nginx.conf {host}:{port}"), "198.18.0.2", run_dir)
    assert argv == ["printf", "%s\\n", f"--conf={run_dir}/nginx.conf", "198.18.0.2:8080"]
    printed = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    assert printed.splitlines() == [f"--conf={run_dir}/nginx.conf", "198.18.0.2:8080"]
    assert not (tmp_path / "PWNED").exists()


def test_a_quoted_argument_of_the_command_keeps_its_spaces(tmp_path):
    argv = server_argv(scenario("sh -c 'exec nginx -p {dir}' x"), "198.18.0.2", tmp_path / "a b")
    assert argv == ["sh", "-c", f"exec nginx -p {tmp_path / 'a b'}", "x"]


@pytest.mark.parametrize("command, words", [("nginx {nope}", "nope"), ("nginx 'unclosed", "quotation")])
def test_bad_command_is_one_line(tmp_path, command, words):
    with pytest.raises(ScenarioError, match=words) as e:
        server_argv(scenario(command), "198.18.0.2", tmp_path)
    assert "\n" not in str(e.value)
