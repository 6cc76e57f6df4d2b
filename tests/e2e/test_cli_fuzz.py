"""Hostile command lines: every one ends in a clear line and exit 0, 1 or 2, never a traceback or an
``internal error``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from stagebus.cli import app

SCRIPT = Path(sys.executable).parent / "stagebus"


def console(*args: str | bytes, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([os.fsencode(SCRIPT), *(a if isinstance(a, bytes) else a.encode() for a in args)],
                          capture_output=True, text=True, errors="backslashreplace", cwd=cwd, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})})


def assert_clear_error(done: subprocess.CompletedProcess[str], *, names: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), done.stderr
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr
    assert names in lines[0], lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "raises.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    return tmp_path


PUBLISH = ("publish", "--dataset", "d", "--partition", "p", "--file", "data.csv")


@pytest.mark.parametrize(("args", "env", "names"), [
    ((b"--home", b"h", b"publish", b"--dataset", b"d\xff", b"--partition", b"p", b"--file", b"data.csv"), {},
     "not valid UTF-8"),
    ((b"--home", b"h\xfe", b"state", b"inspect"), {}, "not valid UTF-8"),
    (("--home", "afile", *PUBLISH), {}, "afile"),
    (("--home", "afile", "state", "inspect"), {}, "afile"),
    (("--home", "h", "run", "--log-file", "adir"), {}, "adir"),
    (("--home", "h", *PUBLISH), {"STAGEBUS_PIPELINES": "raises:pipeline"}, "raises:pipeline"),
    (("--home", "h", "run"), {"STAGEBUS_PIPELINES": "raises:pipeline"}, "raises:pipeline"),
    (("--home", "h", "run"), {"STAGEBUS_PIPELINES": "exits:pipeline"}, "exits:pipeline"),
    (("--home", "h", "--store", "redis://[::1", "state", "inspect"), {}, "--store"),
    (("--home", "h", "--store", "rediss://:secret@[zz/0", *PUBLISH), {}, "--store"),
    (("--home", "h", "worker"), {"STAGEBUS_BROKER": "redis://:secret@[zz"}, "STAGEBUS_BROKER"),
    (("--home", "h", "relay"), {"STAGEBUS_BROKER": "redis://:secret@[zz"}, "STAGEBUS_BROKER"),
    (("--home", "h", "state", "inspect", "--status", "bogus"), {}, "bogus"),
])
def test_hostile_input_is_one_clear_line_with_exit_2(workdir: Path, args: tuple[str | bytes, ...],
                                                     env: dict[str, str], names: str) -> None:
    # Given a command line the reliability probe found ending in "internal error"
    done = console(*args, cwd=workdir, env=env)
    # Then it is one line naming the input, exit 2, and no password is echoed
    assert_clear_error(done, names=names)
    assert "secret" not in done.stderr
    # And nothing was stored
    assert not (workdir / "h" / "log.db").exists() or args[-1] in ("inspect", "bogus")


# Each command with its options, every value drawn from hostile words; extra words after it.
TEMPLATES = [
    ["publish", "--dataset", None, "--partition", None, "--file", None],
    ["publish", "--dataset", None, "--dir", None, "--seal"],
    ["run", "--log-file", None, "--stages", None],
    ["state", "inspect", "--status", None, "--format", None],
    ["query", None, "--limit", None],
    ["log", "tail", "-n", None],
]
OPTIONS = ["--dataset", "--partition", "--file", "--dir", "--run-id", "--seal", "--status", "--format",
           "--limit", "--home", "--store", "--meta"]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
surrogate = st.binary(min_size=1, max_size=4).map(lambda b: os.fsdecode(b"x" + b))
word = text | surrogate | st.sampled_from(
    ["afile", "adir", "data.csv", "redis://[", "sqlite://", "bogus", "-1", "0", ".", "json"])
globals_ = st.sampled_from([[], ["--home", "afile"], ["--store", "redis://[::1"], ["--store", "sqlite://"]])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(TEMPLATES), values=st.lists(word, min_size=4, max_size=4),
       before=globals_, rest=st.lists(st.sampled_from(OPTIONS) | word, max_size=2))
def test_fuzzed_command_lines_never_end_in_an_internal_error(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                             template: list[str | None], values: list[str],
                                                             before: list[str], rest: list[str]) -> None:
    # Given a command line of one of a few commands, its values hostile, run beside odd files
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("STAGEBUS_PIPELINES", raising=False)
    fill = iter(values)
    args = ["--home", "home", *before, *(next(fill) if a is None else a for a in template), *rest]
    result = CliRunner().invoke(app, args)
    # Then it exits 0, 1 or 2 with no traceback and no internal error
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "internal error" not in result.output, (args, result.output)
    assert "Traceback" not in result.output
