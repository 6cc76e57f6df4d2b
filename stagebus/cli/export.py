"""``stagebus export``: a dataset's valid records, from one log position, into one file.

The file and its manifest (``PATH.manifest.json``: partitions, their runs and record counts, the
file's sha256, the log position) are each written to a temp file beside the target, fsynced and
renamed into place, the file first: a reader that finds a manifest finds the file it describes.
Bad input (format, ``--out``, ``--as-of``, dataset, a missing parquet extra) is refused before
anything is written.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import msgspec
import typer

from stagebus.cli._context import check_choice, get_context
from stagebus.cli._render import stdout
from stagebus.consumer import Snapshot, read
from stagebus.errors import InvalidInput, StagebusError
from stagebus.store.files import fsync_dir

FORMATS = ("jsonl", "csv", "parquet")
_JSON = msgspec.json.Encoder()
_MANIFEST = msgspec.json.Encoder(order="deterministic")


def export(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="The dataset to export.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write; its manifest goes to PATH.manifest.json.")],
    output_format: Annotated[str, typer.Option("--format", help="jsonl, csv or parquet.")] = "jsonl",
    as_of: Annotated[int | None, typer.Option(
        "--as-of", metavar="POSITION", help="Export the dataset as the ledger had it at this log position.")] = None,
) -> None:
    """Export the records of a dataset's valid partitions, at their authoritative runs, atomically."""
    check_choice("format", output_format, FORMATS)
    _check_out(out)
    if output_format == "parquet":
        _require_pyarrow()
    settings = get_context(ctx).settings
    with read(dataset, as_of=as_of, home=settings.home, store=settings.store or None) as snapshot:
        if not snapshot.partitions:
            raise StagebusError(f"dataset {dataset!r} has no valid partition as of position {snapshot.position}: "
                                "nothing to export")
        counts: dict[str, int] = {}
        writer = {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[output_format]
        sha256, size = _atomic(out, lambda fh: writer(fh, _rows(snapshot, counts)))
        manifest = {
            "dataset": dataset, "format": output_format, "file": out.name, "sha256": sha256, "bytes": size,
            "records": sum(counts.values()), "position": snapshot.position, "as_of": as_of,
            "output": f"{snapshot.stage}.{snapshot.output}",
            "partitions": [{"partition": e.partition, "run_id": e.run_id, "records": counts.get(e.partition, 0),
                            "sha256": snapshot.artifact(e).sha256} for e in snapshot.partitions],
        }
        _atomic(Path(f"{out}.manifest.json"),
                lambda fh: fh.write(msgspec.json.format(_MANIFEST.encode(manifest), indent=2) + b"\n"))
    stdout().print(f"exported {manifest['records']} record(s) of {len(snapshot.partitions)} partition(s) of "
                   f"{dataset} at log position {snapshot.position} to {out} (manifest {out}.manifest.json)")


def _check_out(out: Path) -> None:
    if out.is_dir():
        raise InvalidInput(f"--out {out} is a directory: give a file path")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidInput(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"--out {out}: directory {parent} is not writable")


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise InvalidInput("parquet export needs pyarrow: pip install 'stagebus[parquet]'") from None


def _rows(snapshot: Snapshot, counts: dict[str, int]) -> Iterator[dict[str, Any]]:
    """Flat rows: an indexed record (``{"index", "record"}``) becomes its fields after
    ``_partition`` and ``_index``; any other record its own fields after ``_partition``."""
    for entry in snapshot.partitions:
        counts[entry.partition] = 0
        for line in snapshot.records(entry):
            counts[entry.partition] += 1
            if set(line) == {"index", "record"} and isinstance(line["record"], dict):
                yield {"_partition": entry.partition, "_index": line["index"], **line["record"]}
            else:
                yield {"_partition": entry.partition, **line}


def _write_jsonl(fh: IO[bytes], rows: Iterator[dict[str, Any]]) -> None:
    for row in rows:
        fh.write(_JSON.encode(row) + b"\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return _JSON.encode(value).decode()
    return str(value)


def _write_csv(fh: IO[bytes], rows: Iterator[dict[str, Any]]) -> None:
    """Columns are the union of keys in first-seen order, so the rows go through twice: once to
    learn the columns into a spool file (bounded memory), once to write them."""
    columns: dict[str, None] = {}
    with _spool(fh) as spool:
        for row in rows:
            columns.update(dict.fromkeys(row))
            spool.write(_JSON.encode(row) + b"\n")
        spool.seek(0)
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        writer = csv.writer(text)
        writer.writerow(list(columns))
        for line in spool:
            row = msgspec.json.decode(line)
            writer.writerow([_cell(row.get(c)) for c in columns])
        text.flush()
        text.detach()


def _spool(fh: IO[bytes]) -> IO[bytes]:
    path = Path(f"{fh.name}.spool")
    spool = path.open("w+b")
    path.unlink()  # gone with the handle, whatever happens
    return spool


def _write_parquet(fh: IO[bytes], rows: Iterator[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [{k: _JSON.encode(v).decode() if isinstance(v, (dict, list)) else v for k, v in row.items()}
               for row in rows]
    try:
        table = pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column of mixed types: keep it as text
        table = pa.Table.from_pylist([{k: None if v is None else str(v) for k, v in r.items()} for r in records])
    pq.write_table(table, fh)


def _atomic(target: Path, write: Any) -> tuple[str, int]:
    """Write through ``write(handle)`` to a temp file beside ``target``, fsync, rename; returns
    the sha256 and size of what was written."""
    tmp = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with tmp.open("w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        digest, size = _sha256(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return digest, size


def _sha256(path: Path) -> tuple[str, int]:
    import hashlib

    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            sha.update(block)
            size += len(block)
    return sha.hexdigest(), size


def register(app: typer.Typer) -> None:
    app.command("export")(export)
