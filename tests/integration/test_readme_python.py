"""README's "Use from Python" example, run as written (loopback only, about 3 seconds of load)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    namespace = {"OUT": tmp_path}
    exec(compile(readme_example(), "README.md (Use from Python)", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    result = namespace["result"]
    assert result.summary["requests"] > 0 and (tmp_path / "churn" / "result.json").is_file()
    assert float(printed[0].split()[0]) == result.summary["requests_per_s"]
    assert printed[1] == "['keepalive']"
    assert (tmp_path / "compare" / "keepalive" / "result.json").is_file()
