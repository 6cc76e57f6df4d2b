"""``stagebus publish``: announce raw partitions (files) for a run; ``--seal`` closes the run."""

from __future__ import annotations

import shlex
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from stagebus.cli._context import get_context, resolve_plan
from stagebus.errors import InvalidInput, PermanentStageError, StoreError
from stagebus.events import PlannedStage
from stagebus.producer import PartitionFile, Producer, check_name, describe_file, new_run_id
from stagebus.settings import Settings
from stagebus.stages.parsing import EXTENSIONS, dialect_of

DIR_SUFFIXES = tuple(EXTENSIONS)  # every extension ingest reads


def publish(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset the partitions belong to.")],
    partition: Annotated[str | None, typer.Option("--partition", help="Partition name, e.g. state=CA.")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="The partition's file.")] = None,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Publish every .csv, .tsv, .jsonl, .ndjson and .json file here, one partition per file, "
                      "named by its stem; other files are listed as skipped.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Run to publish into (default: a new run).")] = None,
    pipeline: Annotated[str, typer.Option("--pipeline", help="Pipeline the run belongs to.")] = "reference",
    meta: Annotated[list[str] | None, typer.Option("--meta", help="KEY=VALUE metadata; repeatable.")] = None,
    seal: Annotated[bool, typer.Option("--seal", help="Seal the run after publishing.")] = False,
) -> None:
    """Publish partitions; prints the run id on stdout, what happened on stderr.

    Everything is checked (names, files, metadata, pipeline) before anything is stored; publishing
    the same (run, dataset, partition) again stores nothing and says so.
    """
    app = get_context(ctx)
    metadata = parse_meta(meta or [])
    plan = resolve_plan(pipeline, app.settings)
    if run_id is not None:
        check_name("run id", run_id)
    parts = [describe_file(dataset, name, path, metadata) for name, path in partition_files(partition, file, directory)]
    if ingests_files(plan.plan):
        for part in parts:
            check_format(part)
    producer = Producer(app.store(), plan.name, plan.plan, plan.version, projections=app.projections())
    run_id = run_id or new_run_id()
    for part in parts:
        refuse_conflict(producer, run_id, part)
    try:
        for part in parts:
            result = producer.publish_file(part, run_id=run_id)
            report(part, result.stored, producer, run_id)
            if not result.same_content:  # a concurrent publish of other content won the key meanwhile
                refuse_conflict(producer, run_id, part)
        if seal:
            sealed = producer.seal(run_id)
            typer.echo(f"sealed run {run_id} at position {sealed.position}" if sealed.stored
                       else f"run {run_id} was already sealed (position {sealed.position}); nothing stored", err=True)
    except InvalidInput:
        raise  # refused before anything was stored
    except Exception as exc:
        account = stored_account(producer, run_id, parts, seal)
        if account is None:
            raise  # the run is not in the log: nothing was stored
        # Something is stored: say exactly what, and the command that finishes the job (every
        # append is keyed, so running it again stores only what is missing).
        typer.echo(run_id)
        finish = finish_command(app.settings, pipeline, dataset, partition, file, directory, run_id, meta, seal)
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreError(f"publish stopped after storing part of its work: {cause}. In the log: {account}. "
                         f"Fix the cause, then finish with: `{finish}`"
                         # The store URL may hold a password: name the option, never its value.
                         + (" (with the same --store)" if app.settings.store else "")) from exc
    typer.echo(run_id)


def stored_account(producer: Producer, run_id: str, parts: list[PartitionFile], seal: bool) -> str | None:
    """What the log holds of this command's work in ``run_id``, or None if it holds not even the run."""
    try:
        if producer.store.get(f"run/{run_id}") is None:
            return None
        found = producer.store.get_many([f"ingest/{run_id}/{p.dataset}/{p.partition}" for p in parts])
        sealed = producer.store.get(f"seal/{run_id}") is not None
    except Exception as exc:  # the log itself failed: the run id and the command still finish the job
        return f"run {run_id} (could not read what else: {' '.join(str(exc).split())})"
    stored = [p.ref for p in parts if f"ingest/{run_id}/{p.dataset}/{p.partition}" in found]
    missing = [p.ref for p in parts if f"ingest/{run_id}/{p.dataset}/{p.partition}" not in found]
    return (f"run {run_id}, stored: {', '.join(stored) or 'nothing'}; not stored: {', '.join(missing) or 'nothing'}; "
            f"{'sealed' if sealed else 'not sealed'}")


def finish_command(settings: Settings, pipeline: str, dataset: str, partition: str | None, file: Path | None,
                   directory: Path | None, run_id: str, meta: list[str] | None, seal: bool) -> str:
    words = ["stagebus", "--home", str(settings.home), "publish", "--pipeline", pipeline, "--dataset", dataset]
    if directory is not None:
        words += ["--dir", str(directory)]
    else:
        words += ["--partition", partition or "", "--file", str(file)]
    words += ["--run-id", run_id]
    for pair in meta or []:
        words += ["--meta", pair]
    if seal:
        words.append("--seal")
    return shlex.join(words)


def report(part: PartitionFile, stored: bool, producer: Producer, run_id: str) -> None:
    record = producer.store.get(f"ingest/{run_id}/{part.dataset}/{part.partition}")
    position = record.position if record else "?"
    if stored:
        typer.echo(f"published {part.ref} at position {position}", err=True)
        return
    typer.echo(f"{part.ref} was already published in run {run_id} (position {position}); nothing stored", err=True)


def ingests_files(plan: tuple[PlannedStage, ...]) -> bool:
    """Whether the reference ``ingest`` reads the published files (it is a first stage of the plan)."""
    return any(s.name == "ingest" and not s.after for s in plan)


def check_format(part: PartitionFile) -> None:
    """Refuse at publish a file ingest could not tell the format of (it would fail at run time)."""
    try:
        dialect_of(part.uri, part.metadata)
    except PermanentStageError as exc:
        raise InvalidInput(f"{part.ref}: {exc}") from None


def refuse_conflict(producer: Producer, run_id: str, part: PartitionFile) -> None:
    """Refuse a partition the run already holds with other content: the log keeps the first."""
    record = producer.store.get(f"ingest/{run_id}/{part.dataset}/{part.partition}")
    event = record.event() if record is not None else None
    held = getattr(event, "content_hash", part.content_hash)
    if held != part.content_hash:
        raise InvalidInput(
            f"{part.ref} is already in run {run_id} with other content (sha256 {held[:12]}…, this file "
            f"{part.content_hash[:12]}…) at position {record.position if record else '?'}; the log keeps the "
            "first: publish the new content into a new run (leave out --run-id), or under another partition name")


def partition_files(partition: str | None, file: Path | None, directory: Path | None) -> list[tuple[str, Path]]:
    """(partition name, file) pairs from either --partition/--file or --dir."""
    if directory is None:
        if partition is None or file is None:
            raise InvalidInput("give --partition and --file, or --dir")
        return [(partition, file)]
    if partition is not None or file is not None:
        raise InvalidInput("--dir names partitions after its files; do not combine it with --partition or --file")
    if not directory.is_dir():
        raise InvalidInput(f"--dir {directory} is not a directory")
    entries = sorted(directory.iterdir())
    files = [p for p in entries if p.suffix.lower() in DIR_SUFFIXES and p.is_file()]
    if not files:
        raise InvalidInput(f"--dir {directory} has no {', '.join(DIR_SUFFIXES)} files")
    skipped = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in files]
    if skipped:
        typer.echo(f"skipped {len(skipped)} file(s) in --dir {directory} that are not "
                   f"{'/'.join(DIR_SUFFIXES)}: {', '.join(skipped)}", err=True)
    clash = clashing_stems(files)
    if clash:
        raise InvalidInput(f"--dir {directory}: several files would be partition {clash[0]!r}")
    for path in files:
        try:
            check_name("partition", path.stem)
        except InvalidInput as exc:
            raise InvalidInput(f"--dir {directory}: file {path.name!r} cannot be a partition: {exc}") from None
    return [(p.stem, p) for p in files]


def clashing_stems(files: list[Path]) -> list[str]:
    """Stems shared by several files (they would be one partition)."""
    return sorted(s for s, count in Counter(p.stem for p in files).items() if count > 1)


def parse_meta(pairs: list[str]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--meta expects KEY=VALUE, got {pair!r}")
        if key in metadata:
            raise InvalidInput(f"--meta names {key!r} twice")
        metadata[key] = value
    return metadata


def register(app: typer.Typer) -> None:
    app.command("publish")(publish)
