"""Per-stage quality policy: a task whose rejects break it fails for good, its outputs discarded,
and nothing downstream runs for the partition. Driven through real embedded runs of the toy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from stagebus.actors.embedded import EmbeddedRunner
from stagebus.errors import ContractError, InvalidInput
from stagebus.events import StageFailed, StageStarted
from stagebus.pipeline.contract import QualityPolicy, stage
from stagebus.pipeline.definition import Pipeline, PipelineRegistry
from stagebus.projections.reader import Projections
from stagebus.store import SqliteEventStore
from support import toy


def toy_with(config: Mapping[str, Mapping[str, Any]]) -> Pipeline:
    return Pipeline("toy", [toy.load, toy.double, toy.total], version="1", config={"double": {"factor": 2}, **config})


class Home:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = SqliteEventStore(root / "log.db")
        self.projections = Projections(self.store, root / "projections")

    def run(self, pipeline: Pipeline, run_ids: list[str] | None = None) -> Any:
        with EmbeddedRunner(self.store, self.projections, self.root / "art", PipelineRegistry([pipeline]),
                            workers=2) as runner:
            return runner.run(run_ids)

    def events(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in (r.event() for r in self.store.read()) if isinstance(e, kind)]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    toy.CALLS.clear()
    h = Home(tmp_path)
    yield h
    h.projections.close()
    h.store.close()


BAD = [{"n": 1}, {"n": "x"}, {"n": "y"}, {"n": "z"}]  # load rejects 3 of 4
GOOD = [{"n": 1}, {"n": 2}]


def test_a_partition_over_max_rejected_ratio_is_invalid_final_and_blocks_downstream(home: Home) -> None:
    # Given load allows at most half its records rejected, and a partition with 3 of 4 bad
    pipeline = toy_with({"load": {"quality": {"max_rejected_ratio": 0.5}}})
    toy.publish(home.store, home.root, "r1", {"bad": BAD, "good": GOOD})
    # When it runs
    report = home.run(pipeline)
    # Then the bad partition is invalid, with the rule and the numbers in its reason
    assert not report.ok
    entry = home.projections.partition("nums", "bad")
    assert entry.status == "invalid"
    assert entry.reason == "load: QualityPolicyViolated: rejected 3 of 4 records (75%) > max_rejected_ratio 50%"
    # And the failure was final at the first attempt (never retried) and wrote no manifest
    assert len([e for e in home.events(StageStarted) if e.partition == "nums/bad"]) == 1
    (failed,) = home.events(StageFailed)
    assert failed.final and failed.error_type == "QualityPolicyViolated"
    assert home.projections.manifest("r1", "load", "nums/bad") is None
    # And nothing downstream ran for it, while the good partition went on
    assert home.projections.manifest("r1", "double", "nums/bad") is None
    assert home.projections.manifest("r1", "double", "nums/good") is not None
    assert home.projections.manifest("r1", "total", "*") is None


@pytest.mark.parametrize(("policy", "reason"), [
    ({"max_rejected": 2}, "rejected 3 of 4 records (75%) > max_rejected 2"),
    ({"min_records": 2}, "1 records accepted (rejected 3 of 4 records (75%)) < min_records 2"),
])
def test_max_rejected_and_min_records_fail_the_partition(home: Home, policy: dict[str, int], reason: str) -> None:
    # Given a policy by count, and a partition that breaks it
    toy.publish(home.store, home.root, "r1", {"bad": BAD})
    # When it runs
    home.run(toy_with({"load": {"quality": policy}}))
    # Then the partition is invalid, naming the rule and the numbers
    entry = home.projections.partition("nums", "bad")
    assert entry.status == "invalid" and entry.reason == f"load: QualityPolicyViolated: {reason}"


def test_without_a_policy_rejects_never_fail_a_partition(home: Home) -> None:
    # Given the default (no limits) and a partition with 3 of 4 records rejected
    toy.publish(home.store, home.root, "r1", {"bad": BAD})
    # When it runs, Then it is valid, its rejects counted
    assert home.run(toy_with({})).ok
    assert home.projections.partition("nums", "bad").status == "valid"
    load = home.projections.manifest("r1", "load", "nums/bad")
    assert load is not None and load.metrics.records_rejected == 3


def test_a_partition_within_its_policy_is_valid(home: Home) -> None:
    # Given a policy the partition keeps (3 of 4 rejected, 75% allowed)
    toy.publish(home.store, home.root, "r1", {"bad": BAD})
    # When it runs, Then it completes
    assert home.run(toy_with({"load": {"quality": {"max_rejected_ratio": 0.75, "max_rejected": 3}}})).ok
    assert home.projections.partition("nums", "bad").status == "valid"


def test_changing_the_policy_reruns_the_stage_instead_of_reusing_it(home: Home) -> None:
    # Given a valid run without a policy
    toy.publish(home.store, home.root, "r1", {"bad": BAD})
    assert home.run(toy_with({})).ok
    # When the same data runs again under a policy it breaks
    toy.publish(home.store, home.root, "r2", {"bad": BAD})
    home.run(toy_with({"load": {"quality": {"max_rejected": 0}}}), ["r2"])
    # Then load executed again (not reused) and failed on the policy
    assert [e.run_id for e in home.events(StageStarted) if e.stage == "load"] == ["r1", "r2"]
    assert home.projections.manifest("r2", "load", "nums/bad") is None
    assert home.projections.partition("nums", "bad").status == "invalid"


def test_the_policy_is_in_the_config_hash_only_when_set() -> None:
    # Given pipelines without a policy, with one, and with another
    plain, strict, looser = toy_with({}), toy_with({"load": {"quality": {"max_rejected": 0}}}), \
        toy_with({"load": {"quality": {"max_rejected": 5}}})
    # Then an unset policy hashes as a pipeline that never heard of policies; set ones differ
    assert plain.config_hash("load") == Pipeline("toy", [toy.load, toy.double, toy.total],
                                                 config={"double": {"factor": 2}}).config_hash("load")
    assert len({plain.config_hash("load"), strict.config_hash("load"), looser.config_hash("load")}) == 3
    assert strict.config_hash("double") == plain.config_hash("double")
    # And with_config keeps the policy
    assert strict.with_config({"double": {"factor": 2}}).quality["load"] == QualityPolicy(max_rejected=0)


@pytest.mark.parametrize(("quality", "message"), [
    ({"max_rejected_ratoi": 0.5}, "quality.max_rejected_ratoi: Extra inputs are not permitted"),
    ({"max_rejected_ratio": 1.5}, "quality.max_rejected_ratio: Input should be less than or equal to 1"),
    ({"max_rejected": -1}, "quality.max_rejected"),
    ("strict", "expected a mapping"),
])
def test_a_bad_policy_is_refused_when_the_pipeline_is_defined(quality: object, message: str) -> None:
    with pytest.raises(InvalidInput, match="stage 'load' config: ") as caught:
        toy_with({"load": {"quality": quality}})  # type: ignore[dict-item]
    assert message in str(caught.value)


def test_a_contract_default_policy_applies_and_pipeline_config_overrides_it_by_bound() -> None:
    # Given a stage whose contract sets two bounds
    @stage("strict", quality={"max_rejected": 0, "min_records": 1})
    def strict(ctx: object) -> None: ...

    # When a pipeline lifts one bound and keeps the other
    pipeline = Pipeline("p", [strict], config={"strict": {"quality": {"max_rejected": None}}})
    # Then the contract's other bound still holds
    assert pipeline.quality["strict"] == QualityPolicy(min_records=1)
    assert Pipeline("q", [strict]).quality["strict"] == QualityPolicy(max_rejected=0, min_records=1)


def test_a_config_model_may_not_have_a_field_named_quality() -> None:
    class Odd(BaseModel):
        quality: int = 1

    @stage("odd", config=Odd)
    def odd(ctx: object) -> None: ...

    with pytest.raises(ContractError, match="quality"):
        Pipeline("p", [odd])


def test_pipeline_show_describes_the_policy_and_sensitive_fields() -> None:
    from stagebus.pipeline.describe import describe

    @stage("cards", sensitive=["card_number"])
    def cards(ctx: object) -> None: ...

    pipeline = Pipeline("p", [cards], config={"cards": {"quality": {"max_rejected": 0}}})
    (described,) = describe(pipeline)["stages"]
    assert described["quality"] == {"max_rejected": 0} and described["sensitive"] == ["card_number"]


def test_a_reference_stage_breaking_its_policy_discards_its_outputs_and_blocks_normalize(tmp_path: Path) -> None:
    from stagebus.errors import QualityPolicyViolated
    from support.reference import ReferenceRun

    # Given the reference pipeline with ingest allowed to reject at most a third, and a CSV with 2 of 3 bad
    run = ReferenceRun(tmp_path / "artifacts", {"ingest": {"quality": {"max_rejected_ratio": 1 / 3}}}).open()
    source = tmp_path / "us.csv"
    source.write_text("iata,name\nSFO,San Francisco\nJFK\nLAX,a,b\n")
    ref = run.publish("airports", "us", source)
    # When ingest runs, Then it fails on the policy, final, with no manifest and no object left behind
    with pytest.raises(QualityPolicyViolated, match=r"rejected 2 of 3 records \(66.67%\) > max_rejected_ratio 33.33%"):
        run.execute("ingest", ref)
    (failed,) = run.failures()
    assert failed.final and run.store.get(f"manifest/{run.run_id}/ingest/{ref}") is None
    assert not [p for p in (tmp_path / "artifacts" / "objects").rglob("*") if p.is_file()]
    # But its rejects are kept beside the task, to show why it failed
    from stagebus.pipeline.context import failed_rejects

    kept = failed_rejects(run.artifacts, run.run_id, "ingest", ref)
    assert kept is not None and kept.records == 2
    assert b"JFK" in (tmp_path / "artifacts" / kept.path).read_bytes()
    # And normalize's gate stays closed for the partition
    from stagebus.actors.executor import Outcome

    assert run.execute("normalize", ref) is Outcome.REFUSED


def test_sensitive_fields_come_from_the_contract_and_the_output_schemas() -> None:
    from pydantic import Field, SecretStr

    class Charge(BaseModel):
        holder: str = Field(json_schema_extra={"sensitive": True})
        token: SecretStr
        cents: int

    @stage("charges", outputs={"charges": Charge}, sensitive=["card_number"])
    def charges(ctx: object) -> None: ...

    assert charges.contract.sensitive_fields() == {"card_number", "holder", "token"}
    with pytest.raises(ContractError, match="sensitive field"):
        stage("bad", sensitive=[" "])
