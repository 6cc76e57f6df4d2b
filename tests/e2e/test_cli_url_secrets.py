"""Passwords in store and broker URLs never reach output, and a network URL must name its host:
the real console script, in a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "stagebus"
PASSWORD = "S3cr3t-pw-4711"
TOKEN = "tok3n-abcdef-123456"


def stagebus(args: list[str], cwd: Path, env: dict[str, str] | None = None,
             run_for_s: float | None = None) -> tuple[int, str, str]:
    """Run the console script; a long-running one (relay, worker) is stopped after ``run_for_s``."""
    full_env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200", "STAGEBUS_HOME": str(cwd / "home"), **(env or {})}
    process = subprocess.Popen([str(SCRIPT), *args], cwd=cwd, env=full_env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=run_for_s if run_for_s is not None else 60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    return process.returncode, out, err


CASES = {
    # an unknown scheme, for the store (past the settings check) and for the broker
    "store-unknown-scheme": (["--store", f"sqlite://admin:{PASSWORD}@db/x", "log", "verify"], {}, None),
    "broker-unknown-scheme": (["worker", "--broker", f"nats://admin:{PASSWORD}@mq:4222"], {}, None),
    "broker-env-unknown-scheme": (["relay"], {"STAGEBUS_BROKER": f"zmq://admin:{PASSWORD}@mq"}, None),
    # a host that does not answer
    "store-unreachable": (["--store", f"redis://admin:{PASSWORD}@127.0.0.1:1/0", "log", "verify"], {}, None),
    "store-token-unreachable": (["--store", f"redis://{TOKEN}@127.0.0.1:1/0", "state", "inspect"], {}, None),
    "store-query-password": (["--store", f"redis://127.0.0.1:1/0?password={PASSWORD}", "log", "verify"], {}, None),
    "broker-unreachable-relay": (["relay", "--health-every", "0.2"],
                                 {"STAGEBUS_BROKER": f"redis://admin:{PASSWORD}@127.0.0.1:1/0"}, 5.0),
    "broker-unreachable-worker": (["worker", "-p", "1", "-t", "1", "--broker",
                                   f"redis://admin:{PASSWORD}@127.0.0.1:1/0"], {}, 5.0),
    # malformed
    "store-bad-port": (["--store", f"redis://admin:{PASSWORD}@host:notaport/0", "log", "verify"], {}, None),
    "broker-bad-port": (["worker", "--broker", f"amqp://admin:{PASSWORD}@host:notaport/"], {}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_password_in_output(case: str, tmp_path: Path) -> None:
    # Given a store or broker URL carrying a password (or a token as its userinfo)
    args, env, run_for_s = CASES[case]
    # When the console script fails on it (or runs against it for a while)
    code, out, err = stagebus(args, tmp_path, env, run_for_s)
    # Then it did fail or was stopped, and neither the password nor the token is anywhere in the output
    assert code != 0, (out, err)
    for secret in (PASSWORD, TOKEN):
        assert secret not in out and secret not in err, (out, err)
    if run_for_s is None:  # a command that gives up says so in one line
        assert len(err.splitlines()) == 1 and err.startswith("stagebus: error: "), err
        # the message names the input: the URL redacted, its host, or the option it came from
        assert "***" in err or "127.0.0.1:1" in err or "STAGEBUS_" in err, err


@pytest.mark.parametrize("args,env", [
    (["--store", "redis://", "log", "verify"], {}),
    (["--store", "rediss:///0", "log", "verify"], {}),
    (["log", "verify"], {"STAGEBUS_STORE": "redis://:6379/0"}),
    (["log", "verify"], {"STAGEBUS_STORE": f"redis://:{PASSWORD}@/0"}),
    (["worker", "--broker", "redis://"], {}),
    (["relay"], {"STAGEBUS_BROKER": "amqp://"}),
], ids=["store-redis", "store-rediss-db-only", "store-port-only", "store-password-only", "broker-redis",
        "broker-amqp"])
def test_a_network_url_without_a_host_is_refused(args: list[str], env: dict[str, str], tmp_path: Path) -> None:
    # Given a redis:// or amqp:// URL naming no host (it would silently mean localhost)
    # When a command opens it
    code, out, err = stagebus(args, tmp_path, env)
    # Then one line says the URL names no host, exit 2, and no home was created
    assert code == 2, (out, err)
    assert len(err.splitlines()) == 1 and "names no host" in err, err
    assert PASSWORD not in err
    assert not (tmp_path / "home" / "log.db").exists()
