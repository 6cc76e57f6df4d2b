"""The HTTP service's small parts on their own: key format, cursors, percentiles, the error
mapping of every exception kind, processor loading, and the publish-only (fleet) mode."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from stagebus.api import keys
from stagebus.api.app import create_app, is_embedded, rate_storage_url
from stagebus.api.errors import ApiError, install_handlers
from stagebus.api.processors import load_processors, processor
from stagebus.api.ratelimit import RateLimits
from stagebus.api.service import decode_cursor, encode_cursor, percentile_ms
from stagebus.api.settings import ApiSettings
from stagebus.errors import InvalidInput, StagebusError, StoreUnavailable
from stagebus.settings import Settings


def test_keys_are_random_prefixed_checksummed_and_only_hashed() -> None:
    a, b = keys.new_key(), keys.new_key()
    assert a != b and a.startswith("sbk_") and keys.well_formed(a)
    typo = a[:-1] + ("0" if a[-1] != "0" else "1")
    assert not keys.well_formed(typo) and not keys.well_formed("sbk_short")
    assert keys.matches(a, keys.hash_key(a)) and not keys.matches(b, keys.hash_key(a))
    assert keys.hash_key(a) != a and len(keys.hash_key(a)) == 64
    assert keys.redact(f"GET /x?k={a} 200") == "GET /x?k=sbk_*** 200"
    assert keys.shown(a).endswith("…") and len(keys.shown(a)) == keys.SHOWN + 1


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor(123)) == 123 and decode_cursor(None) == 0
    for bad in ("x", "MTIz", "!!!", "é", "cHg"):  # junk, "123" without its tag, non-ASCII, "px"
        with pytest.raises(ApiError) as caught:
            decode_cursor(bad)
        assert caught.value.code == "INVALID_CURSOR"


def test_percentiles_use_nearest_rank() -> None:
    assert percentile_ms([], 0.5) is None
    assert percentile_ms([1000, 2000, 3000, 4000], 0.5) == 2.0
    assert percentile_ms([1000, 2000, 3000, 4000], 0.95) == 4.0
    assert percentile_ms([5000], 0.95) == 5.0


def _app_raising(exc: BaseException) -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise exc

    return app


@pytest.mark.parametrize(("exc", "status", "code"), [
    (InvalidInput("bad name"), 400, "VALIDATION_ERROR"),
    (StoreUnavailable("redis://user:secret@host down"), 503, "UNAVAILABLE"),
    (StagebusError("broken"), 500, "INTERNAL_ERROR"),
    (RuntimeError("secret sbk_abc in a message"), 500, "INTERNAL_ERROR"),
    (ApiError("RATE_LIMITED", "slow down", headers={"Retry-After": "3"}), 429, "RATE_LIMITED"),
])
def test_every_exception_becomes_the_one_error_body(exc: BaseException, status: int, code: str) -> None:
    import anyio

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app_raising(exc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get("/boom")

    answer = anyio.run(call)
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert "secret" not in answer.text  # never the exception's own message for a 5xx
    if code == "RATE_LIMITED":
        assert answer.headers["Retry-After"] == "3"


def test_processor_loading_says_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "procs_ok.py").write_text(
        "from stagebus.api.processors import processor\n"
        "@processor('upper')\ndef upper(record, config):\n    return {k: str(v).upper() for k, v in record.items()}\n"
        "not_a_processor = 3\n")
    (tmp_path / "procs_raise.py").write_text("raise RuntimeError('at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_processors("procs_ok")
    assert "upper" in registry.names() and registry.get("upper").compile({})({"a": "b"}) == {"a": "B"}
    assert load_processors("procs_ok:upper").get("upper") is not None
    for spec, message in (("procs_ok:not_a_processor", "is not a processor"), ("procs_ok:missing", "cannot load"),
                          ("procs_raise", "importing it raised RuntimeError"), ("no_such_mod", "cannot load")):
        with pytest.raises(InvalidInput, match=message):
            load_processors(spec)
    with pytest.raises(InvalidInput, match="processor name"):
        processor("Bad Name")
    assert registry.validate("upper", {"x": 1})[0]["loc"][0] == "config"  # no config model: extra refused
    sys.modules.pop("procs_ok", None)


def test_rate_storage_and_mode_follow_the_broker(tmp_path: Path) -> None:
    api = ApiSettings()
    assert rate_storage_url(Settings(home=tmp_path), api) == "memory://"
    assert rate_storage_url(Settings(home=tmp_path, broker="redis://h:6379/0"), api) == "redis://h:6379/0"
    assert rate_storage_url(Settings(home=tmp_path, broker="unix:///s.sock"), api) == "redis+unix:///s.sock"
    assert rate_storage_url(Settings(home=tmp_path), ApiSettings(rate_storage="memory://x")) == "memory://x"
    assert is_embedded(Settings(home=tmp_path), api)
    assert not is_embedded(Settings(home=tmp_path, broker="amqp://h"), api)
    assert RateLimits("redis://user:hunter2@h:1/0").describe() == "redis://user:***@h:1/0"


def test_with_a_fleet_broker_the_app_only_publishes(tmp_path: Path) -> None:
    # Given an app whose broker is a fleet's: it runs no stage runner of its own
    app = create_app(Settings(home=tmp_path, broker="redis://127.0.0.1:1/0"), ApiSettings(rate_storage="memory://"))
    assert app.state.runner is None
