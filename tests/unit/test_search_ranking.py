"""Search quality on an airports table (OurAirports' columns and rows): an exact name match ranks
first although plain bm25 over all the text would put a short record that mentions it elsewhere first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stagebus.stages import query
from support.reference import ReferenceRun

AIRPORTS = Path(__file__).parent.parent / "fixtures" / "airports.csv"


@pytest.fixture(scope="module")
def airports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("airports")
    run = ReferenceRun(tmp / "art").open()
    run.publish("airports", "world", Path(shutil.copy(AIRPORTS, tmp / "airports.csv")))
    run.run_all()
    return tmp / "art"


def test_heathrow_finds_london_heathrow_first(airports: Path) -> None:
    # When searching one word that a closed aerodrome, a helipad and a heliport also mention
    hits = query.search(airports, "heathrow")
    # Then the airport named for it comes first
    assert hits[0].record["ident"] == "EGLL", [h.record["name"] for h in hits]
    assert len(hits) == 5


def test_san_francisco_finds_the_international_airport_first(airports: Path) -> None:
    # When searching a city that heliports, a seaplane base and nearby airports also mention
    hits = query.search(airports, "san francisco")
    # Then San Francisco International comes first
    assert hits[0].record["name"] == "San Francisco International Airport", [h.record["name"] for h in hits]


def test_a_whole_name_ranks_first(airports: Path) -> None:
    # When searching a name exactly, Then that record comes first
    assert query.search(airports, "london city airport")[0].record["ident"] == "EGLC"
    assert query.search(airports, "San Francisco Seaplane Base")[0].record["ident"] == "CA95"


def test_snippets_name_their_fields_and_mark_the_match(airports: Path) -> None:
    # When searching heathrow, Then the snippet shows the name and the matching fields by name
    hit = query.search(airports, "heathrow")[0]
    assert hit.snippet.startswith("name: London [Heathrow] Airport · home_link: https://www.[heathrow].com/")


def test_a_phrase_is_marked_as_one(airports: Path) -> None:
    hit = query.search(airports, "san francisco")[0]
    assert hit.snippet.startswith("name: [San Francisco] International Airport · municipality: [San Francisco]")


def test_csv_values_are_served_as_normalize_outputs_them(airports: Path) -> None:
    # CSV carries no types: without a cast in normalize, every value is served as the string it was
    hit = query.search(airports, "heathrow")[0]
    assert hit.record["elevation_ft"] == "83" and hit.record["latitude_deg"] == "51.4706"
