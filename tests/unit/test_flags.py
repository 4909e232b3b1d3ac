"""Every scenario field has its flag, derived from the schema, with its kind and default in --help."""

from click.testing import CliRunner

from tcpstress import scenario as sc
from tcpstress.cli import cli
from tcpstress.flags import FLAGS, run_flags


def test_every_schema_field_has_exactly_one_flag():
    fields = {f"{section}.{key}" if section else key for section, keys in sc.SCHEMA.items() for key in keys}
    assert set(FLAGS) == fields
    names = [decl for decls, _ in FLAGS.values() for decl in decls]
    assert len(names) == len(set(names)), "two fields share a flag name"


def test_help_shows_every_flag_with_its_default():
    for command in ("run", "compare"):
        text = CliRunner().invoke(cli, [command, "--help"], terminal_width=200).output
        for flag in run_flags():
            assert flag.name in text, f"{command} --help lacks {flag.name}"
        assert "-d, --duration DURATION" in text and "[default: 10s]" in text
        assert "--protocol [http|https|echo]" in text and "--close [client|server|reset]" in text


def test_a_bad_flag_value_is_named_by_its_flag(tmp_path):
    for args, needle in ((["--server-delay", "soon"], "--server-delay: 'soon' is not a duration"),
                         (["--fault-rate", "0"], "--fault-rate = 0.0 is not allowed"),
                         (["--so-keepalive", "--lab"], "lab = true")):
        result = CliRunner().invoke(cli, ["run", "--target", "127.0.0.1:9", *args, "--out", str(tmp_path / "x")])
        assert result.exit_code == 2, result.output
        assert needle in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "x").exists()
