"""Warehouse URLs and table names, checked before anything is contacted; driver messages masked."""

from __future__ import annotations

import pytest

from stagebus.errors import InvalidInput
from stagebus.warehouse.targets import check_target, scrub, split_table


@pytest.mark.parametrize(("url", "table"), [
    ("postgresql://u:pw@h/db", "airports"), ("postgres://h/db", "staging.airports"), ("sqlite:///w.db", "airports"),
])
def test_good_urls_and_table_names_pass(url: str, table: str) -> None:
    check_target(url, table)


@pytest.mark.parametrize(("url", "table", "says"), [
    ("mysql://u:pw@h/db", "t", "unknown warehouse URL 'mysql://u:***@h/db'"),
    ("sqlite:///", "t", "unknown warehouse URL"),
    ("postgresql://u:pw@h:x/db", "t", "malformed warehouse URL 'postgresql://u:***@h:x/db'"),
    ("sqlite:///w.db", "staging.t", "is not NAME"),  # SQLite has no schemas
    ("postgresql://h/db", "a.b.c", "is not NAME or SCHEMA.NAME"),
    ("postgresql://h/db", "1abc", "is not NAME or SCHEMA.NAME"),
    ("postgresql://h/db", "stagebus_loads", "the loads' own tracking table"),
])
def test_bad_urls_and_table_names_are_one_clear_line_without_the_password(url: str, table: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_target(url, table)
    assert says in str(caught.value) and "pw@" not in str(caught.value)


def test_a_driver_message_loses_the_url_password_and_line_breaks() -> None:
    url = "postgresql://loader:s3cr%40t@db/w"
    message = f"could not connect to {url}\nDETAIL: password=s3cr@t rejected"
    assert scrub(message, url) == "could not connect to postgresql://loader:***@db/w DETAIL: password=*** rejected"


def test_split_table_gives_the_schema_and_the_name() -> None:
    assert split_table("staging.t", schemas=True) == ("staging", "t")
    assert split_table("t", schemas=False) == (None, "t")
