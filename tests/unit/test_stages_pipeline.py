"""The whole reference pipeline on a user's CSV: rejects kept and counted, the rest searchable."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagebus.errors import ContractError, InvalidInput
from stagebus.events import ManifestWritten
from stagebus.stages import REFERENCE_STAGES, build_reference_pipeline, query, reference_pipeline
from support.reference import ReferenceRun

# A user's export: a short row, broken quoting, bad UTF-8, and an age that is not a number.
USER_CSV = (
    b"customer_id,name,city,age,notes\n"
    b"C1,Ann Berg,Oslo,34,likes green tea\n"
    b"C2,Bob Stone,Rome\n"
    b'C3,"Cy Moss,Lima,29,x\n'
    b"C4,Dee \xff\xfe,Kyiv,41,hi\n"
    b"C5,Eve Lund,Bergen,forty,reads about tea gardens\n"
    b'C6,"Finn, Jr.",Turku,52,"prefers ""strong"" coffee"\n'
)
CONFIG = {"normalize": {"processors": [{"op": "whitespace"}, {"op": "cast", "fields": {"age": "int"}}]}}


def user_run(root: Path, source_dir: Path, run_id: str = "run-1") -> ReferenceRun:
    source = source_dir / "customers.csv"
    source.write_bytes(USER_CSV)
    run = ReferenceRun(root, config=CONFIG, run_id=run_id).open()
    run.publish("customers", "2024-06", source)
    run.run_all()
    return run


def test_reference_pipeline_is_the_six_stage_chain() -> None:
    # Then the stages run in the documented order, fan-in from link on
    assert [s.name for s in reference_pipeline.stages] == ["ingest", "normalize", "extract", "link", "index", "serve"]
    assert [s.contract.scope for s in REFERENCE_STAGES] == ["partition"] * 3 + ["run"] * 3


def test_bad_rows_are_counted_in_manifests_and_readable(tmp_path: Path) -> None:
    # Given a user CSV with three malformed rows and one bad age, run end to end
    run = user_run(tmp_path / "art", tmp_path)
    # Then ingest counts three rejects, normalize one, and their rejects say why
    assert run.manifest("ingest", "customers/2024-06").metrics.records_rejected == 3
    assert run.manifest("normalize", "customers/2024-06").metrics.records_rejected == 1
    errors = [r["error"] for r in run.records("ingest", "rejects", "customers/2024-06")]
    assert errors == ["line 3: 3 fields, the header has 5", "line 4: broken quoting (a quoted field is never closed)",
                      "line 5: text is not valid utf-8"]
    assert run.records("normalize", "rejects", "customers/2024-06")[0]["index"] == 6


def test_good_rows_are_indexed_and_searchable(tmp_path: Path) -> None:
    # Given the user CSV run end to end
    run = user_run(tmp_path / "art", tmp_path)
    # When searching the served view
    hits = query.search(run.artifacts.root, "coffee")
    # Then the good rows are there with their cleaned values, the rejected ones are not
    assert [(h.index, h.record["name"], h.record["age"]) for h in hits] == [(7, "Finn, Jr.", 52)]
    assert query.search(run.artifacts.root, "Bergen") == []
    assert run.records("serve", "switch")[0]["records"] == 2


def test_rerun_in_a_fresh_directory_gives_byte_identical_artifacts(tmp_path: Path) -> None:
    # Given the same input run twice, by different runs, into different artifact roots
    first = user_run(tmp_path / "one", tmp_path, run_id="run-a")
    second = user_run(tmp_path / "two", tmp_path, run_id="run-b")

    def artifacts(run: ReferenceRun) -> dict[tuple[str, str, str], str]:
        return {(e.stage, e.partition, a.name): a.sha256
                for e in (r.event() for r in run.store.read()) if isinstance(e, ManifestWritten)
                for a in e.manifest.artifacts}

    # Then every artifact of every stage has the same sha256
    assert artifacts(first) == artifacts(second)
    assert len(artifacts(first)) == 18


def test_config_for_an_unknown_stage_is_refused() -> None:
    # Given config naming a stage the pipeline does not have
    with pytest.raises(ContractError, match=r"config for unknown stage\(s\) \['normalise'\]"):
        build_reference_pipeline({"normalise": {}})


def test_unknown_option_of_a_stage_is_refused() -> None:
    # Given a misspelled top-level option
    with pytest.raises(InvalidInput, match="stage 'link' config: resolve_suffix: Extra inputs are not permitted"):
        build_reference_pipeline({"link": {"resolve_suffix": False}})


def test_a_misspelt_config_key_is_refused_not_ignored() -> None:
    from pydantic import BaseModel

    from stagebus import InvalidInput, Pipeline, stage

    class PricesConfig(BaseModel):  # a user's model, pydantic's default: extra keys ignored
        currency: str = "EUR"

    @stage("prices", config=PricesConfig)
    def prices(ctx) -> None:  # type: ignore[no-untyped-def]
        pass

    # Given a config with `curency` for `currency` / When the pipeline is defined
    with pytest.raises(InvalidInput, match=r"stage 'prices' config: unknown key\(s\) 'curency' \(known: currency\)"):
        Pipeline("shop", [prices], config={"prices": {"curency": "USD"}})
    # Then a correct key still works
    assert Pipeline("shop", [prices], config={"prices": {"currency": "USD"}}).configs["prices"].currency == "USD"
