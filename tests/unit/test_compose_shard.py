"""`--shard compose`: the shard index from the replica number in the container's DNS name.

The name comes from a real DNS exchange (dnspython's wire format, over UDP on
loopback) with a stand-in for Docker's embedded server; the lab test
(tests/lab/test_compose_commands.py) runs whole loaders that way in their own
namespaces.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpstress.scenario import ScenarioError
from tcpstress.sharding import (
    DOCKER_DNS,
    ShardChoice,
    compose_shard,
    container_name,
    parse_shard,
    shard_run_dir,
    source_address,
)
from tests.fake_docker_dns import FakeDockerDns


def _named(name, why="no reply"):
    return lambda: (name, why)


@pytest.mark.parametrize(("name", "expected"), [
    ("tcpstress-loader-1", 0),
    ("tcpstress-loader-4", 3),
    ("tcpstress_loader_2", 1),       # docker-compose v1 names
    ("my-app-2-loader-3", 2),        # digits and dashes in the project name
])
def test_index_is_the_replica_number_less_one(name, expected):
    assert compose_shard(4, _named(name)) == ShardChoice(expected, 4, name)


@given(st.integers(1, 10_000), st.data())
def test_every_replica_up_to_the_count_gets_its_own_shard(count, data):
    number = data.draw(st.integers(1, count))
    choice = compose_shard(count, _named(f"proj-loader-{number}"))
    assert choice.pair == (number - 1, count)


def test_a_replica_beyond_the_count_is_refused_with_both_numbers():
    with pytest.raises(ScenarioError, match=r"tcpstress-loader-5, replica 5, but TCPSTRESS_SHARDS=4: set LOADERS"):
        compose_shard(4, _named("tcpstress-loader-5"))
    # Scaled without LOADERS: replica 1 runs everything, the others refuse.
    assert compose_shard(1, _named("tcpstress-loader-1")).pair == (0, 1)
    with pytest.raises(ScenarioError, match="replica 2, but TCPSTRESS_SHARDS=1"):
        compose_shard(1, _named("tcpstress-loader-2"))


def test_without_a_name_only_a_single_loader_runs():
    assert compose_shard(1, _named(None)) == ShardChoice(0, 1, None)
    assert compose_shard(1, _named("a-container")) == ShardChoice(0, 1, None)
    with pytest.raises(ScenarioError, match=r"cannot learn this container's name \(no DNS server at 127.0.0.11"):
        compose_shard(3, _named(None, "no DNS server at 127.0.0.11: Connection refused"))
    with pytest.raises(ScenarioError, match="'loader', which does not end in a replica number .* container_name: cannot be scaled"):
        compose_shard(3, _named("loader"))


def test_the_count_comes_from_the_environment():
    assert parse_shard("compose", {"TCPSTRESS_SHARDS": "3"}, own_name=_named("p-loader-3")) == ShardChoice(2, 3, "p-loader-3")
    with pytest.raises(ScenarioError, match="needs TCPSTRESS_SHARDS"):
        parse_shard("compose", {}, own_name=_named("p-loader-3"))
    for bad in ("0", "x", "-2", "10001"):
        with pytest.raises(ScenarioError, match=f"TCPSTRESS_SHARDS='{bad}'"):
            parse_shard("compose", {"TCPSTRESS_SHARDS": bad}, own_name=_named("p-loader-1"))


def test_the_name_is_read_from_a_dns_reply_for_the_own_address():
    own = source_address("127.0.0.1")
    assert own == "127.0.0.1"
    with FakeDockerDns({own: "tcpstress-loader-3"}) as server:
        assert container_name("127.0.0.1", server.address) == ("tcpstress-loader-3", "")
        # The question was the reverse name of the address facing the target.
        assert server.questions == ["1.0.0.127.in-addr.arpa."]


def test_no_name_no_server_and_a_stray_reply_say_why(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1\tlocalhost\n")
    with FakeDockerDns({}) as server:
        name, why = container_name("127.0.0.1", server.address, hosts)
        assert name is None
        assert why == (f"{server.address[0]} has no name for 127.0.0.1, "
                       f"and {hosts} names no replica (-1, -2 ...) for 127.0.0.1")
    name, why = container_name("127.0.0.1", _closed_udp_port(), hosts)
    assert name is None and why.startswith("no DNS server at 127.0.0.1:")
    assert DOCKER_DNS == ("127.0.0.11", 53)


def _closed_udp_port():
    # Nothing listens on the port: refused at once (connected UDP), not a timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()


def test_without_docker_dns_the_name_comes_from_podmans_hosts_line(tmp_path):
    hosts = tmp_path / "hosts"
    # What podman 4.3 writes into a compose loader (the ID, then the name).
    hosts.write_text("127.0.0.1\tlocalhost\n198.18.200.1\thost.containers.internal\n"
                     "127.0.0.1 758b86689400 tcpstress_loader_9\n")
    assert container_name("127.0.0.1", _closed_udp_port(), hosts) == ("tcpstress_loader_9", "")
    # Docker's DNS, where it answers, comes first.
    with FakeDockerDns({"127.0.0.1": "tcpstress-loader-3"}) as server:
        assert container_name("127.0.0.1", server.address, hosts) == ("tcpstress-loader-3", "")


@pytest.mark.parametrize(("line", "expected"), [
    ("198.18.200.130\t758b86689400 tcpstress-loader-2", "tcpstress-loader-2"),
    ("198.18.200.130\t3f2a9c1b0d12", None),                     # Docker: the container ID only
    ("198.18.200.131\t758b86689400 tcpstress-loader-2", None),   # another container's line
    ("# 198.18.200.130 tcpstress-loader-2", None),
    ("198.18.200.130 loader", None),
])
def test_only_a_replica_name_on_the_own_address_counts(tmp_path, line, expected):
    from tcpstress.sharding import replica_name_in_hosts

    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{line}\n")
    assert replica_name_in_hosts("198.18.200.130", hosts) == expected
    assert replica_name_in_hosts("198.18.200.130", tmp_path / "missing") is None


def test_a_shard_folder_is_named_by_the_common_start(tmp_path):
    from tcpstress.scenario import build

    s = build({"name": "tw", "target": {"host": "127.0.0.1", "port": 80}})
    start = datetime(2026, 11, 18, 8, 26, 40, tzinfo=UTC).timestamp()
    assert shard_run_dir(s, (2, 4), start, tmp_path) == tmp_path / "20261118T082640Z-tw" / "shard-2"
    assert shard_run_dir(s, (0, 4), start, tmp_path).parent == shard_run_dir(s, (3, 4), start, tmp_path).parent


def test_the_command_line_refuses_a_bad_count_in_one_line(tmp_path):
    import os

    from tests.conftest import run_cli

    done = run_cli("run", "--target", "127.0.0.1:9", "--shard", "compose", "--out", tmp_path / "run",
                   env={**os.environ, "TCPSTRESS_SHARDS": "four"})
    assert done.returncode == 2
    assert done.stderr.strip() == ("tcpstress: error: TCPSTRESS_SHARDS='four': expected a whole number "
                                   "from 1 to 10000")
    assert not (tmp_path / "run").exists()
