"""The one redaction function every URL in a message or log line goes through."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagebus.errors import InvalidInput
from stagebus.store.urls import redact_url, require_host

passwords = st.text(min_size=1, max_size=40)
schemes = st.sampled_from(["redis", "rediss", "amqp", "amqps", "sqlite", "nats"])


@given(scheme=schemes, password=passwords)
def test_an_encoded_password_is_replaced_and_everything_else_kept(scheme: str, password: str) -> None:
    # Given a well-formed URL whose password is percent-encoded, as URL parsers expect
    url = f"{scheme}://admin:{quote(password, safe='')}@cache.internal:6380/3"
    # Then the redacted URL is exactly the URL with "***" for the password
    assert redact_url(url) == f"{scheme}://admin:***@cache.internal:6380/3"


@given(scheme=schemes, password=passwords)
def test_a_raw_password_never_shows_whatever_it_holds(scheme: str, password: str) -> None:
    # Given a URL with the password pasted in raw ("@", "/", "?", "#", ":" and all)
    url = f"{scheme}://admin:{password}@cache.internal:6380/3"
    # Then what is shown does not depend on the password at all
    assert redact_url(url) in (f"{scheme}://admin:***@cache.internal:6380/3", f"{scheme}://***")


@given(token=st.text(min_size=1, max_size=40).filter(lambda t: "@" not in t and ":" not in t))
def test_a_userinfo_without_password_is_taken_for_a_token(token: str) -> None:
    url = f"redis://{quote(token, safe='')}@cache.internal/0"
    assert redact_url(url) == "redis://***@cache.internal/0"


@given(password=passwords)
def test_a_password_query_parameter_is_replaced(password: str) -> None:
    url = f"unix:///run/redis.sock?db=2&password={quote(password, safe='')}&x=1"
    assert redact_url(url) == "unix:///run/redis.sock?db=2&password=***&x=1"


@pytest.mark.parametrize("url", ["sqlite:///var/lib/a@b/log.db", "memory://", "redis://cache:6379/0", "memory"])
def test_a_url_without_secrets_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize("url", ["redis://", "redis://:6379/0", "rediss:///1", "amqp://", "redis://:pw@/0"])
def test_a_network_url_must_name_its_host(url: str) -> None:
    with pytest.raises(InvalidInput, match="names no host") as refused:
        require_host(url, "store")
    assert ":pw@" not in str(refused.value)


@pytest.mark.parametrize("url", ["redis://localhost", "unix:///run/redis.sock", "amqp://guest:g@mq:5672/"])
def test_a_url_with_a_host_or_a_socket_path_passes(url: str) -> None:
    require_host(url, "store")
