"""The installed ``stagebus`` console script in a real process: output, exit codes, one-line errors,
and the same commands against a real Redis log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "stagebus"


def stagebus(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def assert_one_error_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stagebus: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "CA.csv"
    path.write_text("iata\nSFO\n")
    return path


def test_publish_then_inspect_through_the_console_script(tmp_path: Path, csv: Path) -> None:
    # Given an empty working directory (the home defaults to ./.stagebus)
    # When publishing a partition and inspecting the ledger in separate processes
    published = stagebus("publish", "--dataset", "airports", "--partition", "CA", "--file", str(csv),
                         "--run-id", "r1", cwd=tmp_path)
    inspected = stagebus("state", "inspect", "--format", "json", cwd=tmp_path)
    # Then the run id is printed, the home is ./.stagebus, and the ledger shows the pending partition
    assert (published.returncode, published.stdout) == (0, "r1\n"), published.stderr
    assert (tmp_path / ".stagebus" / "log.db").is_file()
    assert json.loads(inspected.stdout)[0]["status"] == "pending"


def test_a_usage_error_is_one_line_with_exit_2(tmp_path: Path) -> None:
    # Given the console script
    # When an unknown option is given
    done = stagebus("state", "inspect", "--colour", "red", cwd=tmp_path)
    # Then one line on stderr, exit 2, no usage box
    assert "--colour" in assert_one_error_line(done, 2)


def test_a_missing_required_option_is_one_line_with_exit_2(tmp_path: Path) -> None:
    # Given the console script
    # When publish lacks --dataset
    done = stagebus("publish", "--partition", "p", cwd=tmp_path)
    # Then one line names the option, exit 2
    assert "--dataset" in assert_one_error_line(done, 2)


def test_an_unreachable_redis_store_is_one_line_and_stores_nothing(tmp_path: Path, csv: Path) -> None:
    # Given a Redis URL nobody listens on
    # When publishing to it
    done = stagebus("--home", "home", "--store", "redis://127.0.0.1:1/0", "publish", "--dataset", "a",
                    "--partition", "p", "--file", str(csv), cwd=tmp_path)
    # Then one line says so, exit 1, and not even the home was created
    assert "redis" in assert_one_error_line(done, 1)
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(("option", "value"), [("--store", "ftp://example"), ("--log-level", "LOUD")])
def test_bad_global_options_are_one_line_with_exit_2(tmp_path: Path, option: str, value: str) -> None:
    # Given the console script
    # When a global option has a bad value
    done = stagebus(option, value, "state", "inspect", cwd=tmp_path)
    # Then one line, exit 2
    assert_one_error_line(done, 2)


@pytest.mark.redis
def test_the_cli_works_against_a_real_redis_log(tmp_path: Path, csv: Path, redis_url: str) -> None:
    # Given a real redis-server holding the log, and a local home for projections
    store = ("--home", "home", "--store", redis_url)
    # When publishing twice (a retry), sealing, inspecting, verifying, tailing and replaying
    first = stagebus(*store, "publish", "--dataset", "airports", "--partition", "CA", "--file", str(csv),
                     "--run-id", "r1", cwd=tmp_path)
    retry = stagebus(*store, "publish", "--dataset", "airports", "--partition", "CA", "--file", str(csv),
                     "--run-id", "r1", "--seal", cwd=tmp_path)
    inspected = stagebus(*store, "state", "inspect", "--format", "json", cwd=tmp_path)
    verified = stagebus(*store, "log", "verify", cwd=tmp_path)
    tail = stagebus(*store, "log", "tail", "--format", "json", cwd=tmp_path)
    replayed = stagebus(*store, "replay", "--verify", cwd=tmp_path)
    # Then everything succeeds, the retry stored nothing, and the log holds open, ingest and seal
    assert [d.returncode for d in (first, retry, inspected, verified, tail, replayed)] == [0] * 6, retry.stderr
    assert "nothing stored" in retry.stderr
    assert [r["partition"] for r in json.loads(inspected.stdout)] == ["CA"]
    assert verified.stdout.strip() == "ok: 3 event(s), hash chain intact, checkpoint 3 held"
    assert [json.loads(line)["type"] for line in tail.stdout.splitlines()] == [
        "run_opened", "partition_ingested", "run_sealed"]
    assert (tmp_path / "home" / "projections" / "CURRENT").is_file()


def test_version_and_short_help(tmp_path: Path) -> None:
    from stagebus import __version__

    # Given --version / Then the version, exit 0, and nothing created
    done = stagebus("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"stagebus {__version__}"
    # And -h works like --help, on the root and on a command
    assert stagebus("-h", cwd=tmp_path).stdout == stagebus("--help", cwd=tmp_path).stdout
    run_help = stagebus("run", "-h", cwd=tmp_path)
    assert run_help.returncode == 0 and "--resume-from" in run_help.stdout
    assert list(tmp_path.iterdir()) == []


def test_amqp_broker_without_the_extra_names_the_extra(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pika") is not None:
        pytest.skip("the amqp extra is installed here")
    # Given a RabbitMQ URL with a password and no pika installed
    done = subprocess.run([str(SCRIPT), "--home", str(tmp_path), "worker"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "STAGEBUS_BROKER": "amqp://u:s3cret@127.0.0.1/"})
    # Then one line names the extra to install, and the password is not in it
    line = assert_one_error_line(done, 2)
    assert "stagebus[amqp]" in line and "s3cret" not in line
