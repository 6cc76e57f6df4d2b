"""``artifacts verify``: check every object and browsable view the manifests of record reference.

Objects are checked for existence, size and sha256 (each object once, however many manifests
share it). A ``runs/.../manifest.json`` view is written on demand (``stagebus artifacts views``),
so a missing one is no damage; one that is there must hold exactly the ``ManifestWritten``
event's manifest. Views can be rebuilt from the log (``repair=True`` writes the wrong and the
missing ones); objects cannot be rebuilt from nothing, so a damaged object is reported with the
run and stage to execute again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

from stagebus.artifacts.store import ArtifactStore, manifest_json
from stagebus.events import Manifest


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["object", "view"]
    run_id: str
    stage: str
    partition: str
    path: str  # relative to the artifact root
    problem: str
    artifact: str | None = None
    repaired: bool = False
    advice: str = ""


class AuditReport(msgspec.Struct, kw_only=True):
    manifests: int = 0
    objects: int = 0
    views: int = 0
    findings: list[Finding] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing is left damaged (everything found was repaired, or nothing was found)."""
        return all(f.repaired for f in self.findings)


def audit(artifacts: ArtifactStore, manifests: Iterable[Manifest], *, repair: bool = False) -> AuditReport:
    """Check ``manifests`` (the manifests of record, from the log) against the artifact store."""
    report = AuditReport()
    seen: dict[str, str | None] = {}
    for manifest in manifests:
        report.manifests += 1
        for artifact in manifest.artifacts:
            if artifact.path not in seen:
                seen[artifact.path] = artifacts.problem(artifact)
            problem = seen[artifact.path]
            if problem is not None:
                source = manifest.reused_from or manifest.run_id
                report.findings.append(Finding(
                    kind="object", run_id=manifest.run_id, stage=manifest.stage, partition=manifest.partition,
                    artifact=artifact.name, path=artifact.path, problem=problem,
                    advice=f"run the stage again: stagebus run --run-id {source} --resume-from {manifest.stage}",
                ))
        report.views += 1
        finding = _check_view(artifacts, manifest, repair)
        if finding is not None:
            report.findings.append(finding)
    report.objects = len(seen)
    return report


def _check_view(artifacts: ArtifactStore, manifest: Manifest, repair: bool) -> Finding | None:
    path = artifacts.manifest_path(manifest.run_id, manifest.stage, manifest.partition)
    try:
        data: bytes | None = path.read_bytes()
    except FileNotFoundError:
        data = None
    if data == manifest_json(manifest):
        return None
    if data is None:
        if repair:  # asked to: written now, no damage to report (views are written on demand)
            artifacts.materialize(manifest)
        return None
    if repair:
        artifacts.materialize(manifest)
    return Finding(kind="view", run_id=manifest.run_id, stage=manifest.stage, partition=manifest.partition,
                   path=path.relative_to(artifacts.root).as_posix(), problem="differs from the ManifestWritten event",
                   repaired=repair,
                   advice="" if repair else "rebuild it from the log: stagebus artifacts verify --repair")
