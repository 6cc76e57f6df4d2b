"""The OpenAPI spec is a tested artifact: schemathesis generates requests for every operation
from the app's own spec and checks each answer against it — no 5xx, status codes, content
types, headers and bodies as documented — with a valid key and without one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from support.api import ApiServer, create_pipeline

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
EXAMPLES = 12  # per operation and key mode: keeps the whole module well under a minute


def run_operation(operation: Any, headers: Callable[[], dict[str, str]], base_url: str,
                  statuses: list[int]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers()}
        response = case.call(base_url=base_url, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    check()


@pytest.fixture(scope="module")
def spec(api_server: ApiServer) -> Any:
    return schemathesis.openapi.from_url(f"{api_server.url}/api/v1/openapi.json")


@pytest.mark.parametrize("mode", ["valid key", "no key", "bad key"])
def test_every_operation_answers_as_its_spec_says(api_server: ApiServer, spec: Any, mode: str) -> None:
    key = api_server.create_key(f"FUZZ{mode.replace(' ', '')}")["key"]
    with api_server.client(key) as client:
        create_pipeline(client)  # something to list
    headers = {"valid key": lambda: {"X-API-Key": key}, "no key": dict,
               "bad key": lambda: {"X-API-Key": "sbk_" + "1" * 56}}[mode]
    operations = [result.ok() for result in spec.get_all_operations()]
    assert len(operations) == 12
    failures: list[str] = []
    statuses: list[int] = []
    for operation in operations:
        try:
            run_operation(operation, headers, api_server.url, statuses)
        except Exception as exc:  # collect them all: one run names every broken operation
            failures.append(f"{operation.label}: {exc}")
    assert failures == [], "\n\n".join(failures)
    # And the requests really reached the routes: accepted ones with a key, refused ones without
    assert len(statuses) > 5 * len(operations)
    if mode == "valid key":
        assert {200, 201, 400, 404} <= set(statuses)
    else:
        assert set(statuses) == {200, 401}  # the health check, and everything else refused
