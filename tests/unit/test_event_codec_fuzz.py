"""The event decoder on hostile payloads: an event or EventDecodeError, never another exception."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagebus.errors import EventDecodeError
from stagebus.events import RunSealed
from stagebus.events.codec import CURRENT_VERSIONS, decode, encode

TAGS = sorted(CURRENT_VERSIONS)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
event_like = st.fixed_dictionaries({"type": st.sampled_from(TAGS)},
                                   optional={"run_id": st.text(max_size=8), "event_id": st.text(max_size=8),
                                             "partitions": json_values, "stage": json_values})


def deep(depth: int) -> bytes:
    return b'{"type":"run_sealed","run_id":"r","partitions":' + b"[" * depth + b"]" * depth + b"}"


def decodes_or_refuses(payload: bytes, **kwargs: Any) -> None:
    with contextlib.suppress(EventDecodeError):
        decode(payload, **kwargs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode())
       | event_like.map(lambda v: json.dumps(v).encode()),
       type_name=st.none() | st.sampled_from([*TAGS, "bogus"]), version=st.none() | st.integers(-2, 4),
       depth=st.sampled_from([0, 0, 0, 2000, 100_000]))
def test_any_payload_decodes_or_is_refused(payload: bytes, type_name: str | None, version: int | None,
                                           depth: int) -> None:
    # Given random bytes, random JSON, event-shaped JSON or a very deep payload, under any stored type
    if depth:
        payload = deep(depth)
    # Then decoding gives an event or EventDecodeError, never another exception
    decodes_or_refuses(payload, type_name=type_name, version=version, position=7)


@pytest.mark.parametrize("version", [None, 1])
def test_very_deep_payload_is_an_event_decode_error_naming_its_position(version: int | None) -> None:
    # Given a payload nested 100,000 levels deep, stored as a run_sealed
    # Then it is refused as undecodable at its position
    with pytest.raises(EventDecodeError, match="at position 12"):
        decode(deep(100_000), type_name="run_sealed", version=version, position=12)


def test_payload_whose_tag_disagrees_with_its_stored_type_is_refused() -> None:
    # Given a valid run_sealed payload stored under the type column stage_failed
    payload = encode(RunSealed(run_id="r", partitions=("a/b",)))
    # Then it is refused, naming the position and both types
    version = CURRENT_VERSIONS["stage_failed"]
    with pytest.raises(EventDecodeError, match=r"position 3.*'stage_failed'.*'run_sealed'"):
        decode(payload, type_name="stage_failed", version=version, position=3)
    # And stored under its own type it decodes
    assert isinstance(decode(payload, type_name="run_sealed", version=CURRENT_VERSIONS["run_sealed"]), RunSealed)
