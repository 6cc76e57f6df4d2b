"""compose.yaml runs only commands the CLI has, with flags it accepts, and the fleet it promises:
a durable Redis, a relay, a scalable worker, a one-shot inspector, one shared home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from stagebus.cli import app

COMPOSE = Path(__file__).resolve().parents[2] / "compose.yaml"


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def stagebus_commands() -> list[tuple[str, list[str]]]:
    """(service, argv after "stagebus") for every stagebus command compose.yaml runs."""
    found = []
    for name, service in services().items():
        command = service.get("command")
        if isinstance(command, str):
            command = command.split()
        if command and command[0] == "stagebus":
            found.append((name, [str(arg) for arg in command[1:]]))
    return found


def documented_commands() -> list[list[str]]:
    """argv after "stagebus" of every ``docker compose run … stagebus …`` the header comments show."""
    found = []
    for line in COMPOSE.read_text().splitlines():
        words = line.lstrip("# ").split()
        if line.startswith("#") and "stagebus" in words and words[:2] == ["docker", "compose"]:
            found.append(words[words.index("stagebus") + 1:])
    return found


def parse(argv: list[str]) -> list[str]:
    """Parse ``argv`` the way ``stagebus`` would, down to the leaf command, without running it:
    unknown commands, unknown flags and invalid values raise click's usage errors. Returns the
    command path."""
    command: Any = typer.main.get_command(app)
    ctx = command.make_context("stagebus", list(argv))
    path: list[str] = []
    while hasattr(command, "resolve_command"):
        rest = [*ctx._protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        path.append(name)
        ctx = command.make_context(name, rest, parent=ctx)
    return path


def test_compose_runs_stagebus_in_every_fleet_role() -> None:
    names = {service: " ".join(parse(argv)) for service, argv in stagebus_commands()}
    assert {"relay", "worker", "state inspect"} <= set(names.values()), names


@pytest.mark.parametrize(("service", "argv"), stagebus_commands())
def test_every_compose_command_exists_with_its_flags(service: str, argv: list[str]) -> None:
    path = parse(argv)  # raises on an unknown command, an unknown flag or a bad value
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, f"{service}: stagebus {' '.join(path)} --help: {result.output}"
    flags = [arg.split("=", 1)[0] for arg in argv if arg.startswith("--")]
    assert all(flag in result.output for flag in flags), f"{service}: {flags} not all in the help"


@pytest.mark.parametrize("argv", documented_commands())
def test_every_command_the_header_documents_parses(argv: list[str]) -> None:
    parse(argv)  # raises on an unknown command or flag (the header once said --directory)


def test_unknown_flags_would_be_caught() -> None:
    with pytest.raises(Exception, match="No such option"):
        parse(["worker", "--no-such-flag"])
    with pytest.raises(Exception, match="greater than or equal to 1"):
        parse(["worker", "--processes", "0"])


def test_redis_keeps_the_log_durable() -> None:
    command = services()["redis"]["command"]
    args = dict(zip(command[1::2], command[2::2], strict=False))
    assert args["--appendonly"] == "yes"
    assert args["--appendfsync"] in ("everysec", "always")
    assert args["--maxmemory-policy"] == "noeviction"  # an evicted log entry would be a lost fact


def test_fleet_services_share_one_home_and_use_redis() -> None:
    for service, _ in stagebus_commands():
        spec = services()[service]
        env = spec["environment"]
        home = env["STAGEBUS_HOME"]
        assert any(str(volume).endswith(f":{home}") for volume in spec["volumes"]), service
        assert env["STAGEBUS_STORE"].startswith("redis://") and env["STAGEBUS_BROKER"].startswith("redis://")
        assert env["STAGEBUS_STORE"] != env["STAGEBUS_BROKER"]  # flushing the broker must spare the log


def test_the_worker_scales_and_the_inspector_runs_once() -> None:
    worker, inspector = services()["worker"], services()["inspector"]
    assert "container_name" not in worker and "ports" not in worker  # both would pin it to one replica
    assert inspector.get("restart") == "no"
    assert "stagebus" in (COMPOSE.parent / "Dockerfile").read_text()


# --- compose.s3.yaml: artifacts in object storage, no shared volume for them ----------------------

COMPOSE_S3 = COMPOSE.with_name("compose.s3.yaml")


def s3_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE_S3.read_text())["services"]  # type: ignore[no-any-return]


def s3_stagebus_services() -> list[tuple[str, list[str]]]:
    return [(name, [str(a) for a in spec["command"][1:]]) for name, spec in s3_services().items()
            if spec.get("command") and spec["command"][0] == "stagebus"]


@pytest.mark.parametrize(("service", "argv"), s3_stagebus_services())
def test_every_s3_compose_command_exists(service: str, argv: list[str]) -> None:
    parse(argv)


def test_every_command_the_s3_header_documents_parses() -> None:
    documented = [line.lstrip("# ").split() for line in COMPOSE_S3.read_text().splitlines()
                  if line.startswith("#") and "docker compose" in line and " stagebus " in line]
    assert documented
    for words in documented:
        parse(words[words.index("stagebus") + 1:])


def test_s3_fleet_keeps_artifacts_in_the_bucket_and_shares_no_home() -> None:
    services = s3_services()
    names = [name for name, _ in s3_stagebus_services()]
    assert {"relay", "worker", "inspector"} <= set(names)
    for name in names:
        env = services[name]["environment"]
        assert env["STAGEBUS_ARTIFACTS"].startswith("s3://"), name
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000", name
        # the secret comes from the operator's environment, never from the file
        assert env["AWS_SECRET_ACCESS_KEY"].startswith("${"), name
        home = env["STAGEBUS_HOME"]
        mounted = [str(v).split(":")[0] for v in services[name].get("volumes", []) if str(v).split(":")[1] == home]
        assert name == "relay" or mounted == [], f"{name} mounts a volume at its home: {mounted}"
        assert services[name]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    # the workers share only the producer's inbox, and read-only
    assert all(str(v).endswith(":ro") for v in services["worker"]["volumes"])
    assert "minio" in services and "healthcheck" in services["minio"]
    assert "s3" in (COMPOSE.parent / "Dockerfile").read_text()
