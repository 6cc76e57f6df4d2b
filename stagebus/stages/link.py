"""link (run-level): one graph over the entities of every partition of the sealed run.

Entities with the same value become one node. A mention resolves to the node of that value when
some record defines it; with ``resolve_suffixes`` a dotted mention that matches no definition
exactly resolves to the one definition it is a dotted suffix of (``JSONDecoder.decode`` ->
``json.decoder.JSONDecoder.decode``); several candidates make it ambiguous. A resolved mention
becomes an edge from what the mentioning record defines to the mentioned node. What nothing
defines is counted as unresolved and still kept as a node, with no definitions.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict

from pydantic import BaseModel, ConfigDict

from stagebus.pipeline.context import StageContext
from stagebus.pipeline.contract import stage
from stagebus.stages.link_spill import SpilledEntityGraph
from stagebus.stages.records import Edge, LinkCounts, Node, RecordLinks, record_ref

RecordKey = tuple[str, int]  # (partition ref, record index)
# Above this many bytes of extract.entities the run's graph is held on disk (link_spill), not in
# memory. In memory it takes ~40x the entities' bytes (305 MB for 100k airports rows); on disk its
# peak is bounded by SQLite's cache (65 MB there, 135 MB at 4x) and it built faster: 1.2 s vs 2.2 s.
SPILL_BYTES = 4 * 1024 * 1024


class LinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    resolve_suffixes: bool = True


@stage("link", after=["extract"], reads=["extract.entities"], scope="run", config=LinkConfig,
       outputs={"nodes": Node, "edges": Edge, "record_links": RecordLinks, "counts": LinkCounts})
def link(ctx: StageContext) -> None:
    partitions = sorted(ctx.partitions)
    resolve_suffixes = ctx.config.resolve_suffixes  # type: ignore[attr-defined]
    entity_bytes = sum(ctx.upstream_artifact("extract", "entities", ref).bytes for ref in partitions)
    with contextlib.ExitStack() as stack:
        # A large run's graph goes to disk: memory stays bounded whatever the run's size.
        graph: EntityGraph | SpilledEntityGraph = (
            stack.enter_context(SpilledEntityGraph(ctx.scratch_file(), resolve_suffixes))
            if entity_bytes > SPILL_BYTES else EntityGraph(resolve_suffixes))
        for ref in partitions:
            for entity in ctx.read("extract", "entities", partition=ref):
                graph.add(ref, entity["value"], entity["role"], entity["kind"], entity["records"])
        graph.resolve()
        for node in graph.nodes():
            ctx.emit("nodes", node)
        edges = cross = 0
        for edge in graph.edges():
            ctx.emit("edges", edge)
            edges, cross = edges + 1, cross + edge.cross_partition
        for links in graph.record_links():
            ctx.emit("record_links", links)
        ctx.emit("counts", graph.counts(len(partitions), edges, cross))


class EntityGraph:
    """The run's entity graph in memory: the reference :class:`SpilledEntityGraph` must agree with."""

    def __init__(self, resolve_suffixes: bool = True) -> None:
        self.resolve_suffixes = resolve_suffixes
        self.defined_by: dict[str, set[RecordKey]] = defaultdict(set)
        self.defines_of: dict[RecordKey, set[str]] = defaultdict(set)
        self.kinds: dict[str, set[str]] = defaultdict(set)
        self._mentions: dict[tuple[RecordKey, str], set[str]] = defaultdict(set)  # -> kinds
        self.resolved: set[tuple[RecordKey, str]] = set()  # (mentioning record, target)
        self.unresolved: set[tuple[RecordKey, str]] = set()  # (mentioning record, value)
        self.ambiguous: set[tuple[RecordKey, str]] = set()  # a subset of unresolved

    def add(self, ref: str, value: str, role: str, kind: str, records: list[int]) -> None:
        for index in records:
            key = (ref, index)
            if role == "defines":
                self.defined_by[value].add(key)
                self.defines_of[key].add(value)
                self.kinds[value].add(kind)
            else:
                self._mentions[(key, value)].add(kind)

    def resolve(self) -> None:
        suffixes = self._suffix_index() if self.resolve_suffixes else {}
        for (key, value), kinds in sorted(self._mentions.items()):
            if value in self.defined_by:
                target: str | None = value
            else:
                candidates = suffixes.get(value, set()) if "." in value else set()
                target = min(candidates) if len(candidates) == 1 else None
                if len(candidates) > 1:
                    self.ambiguous.add((key, value))
            if target is None:
                self.unresolved.add((key, value))
                self.kinds[value].update(kinds)
            else:
                self.resolved.add((key, target))
                self.kinds[target].update(kinds)

    def _suffix_index(self) -> dict[str, set[str]]:
        index: dict[str, set[str]] = defaultdict(set)
        for value in self.defined_by:
            parts = value.split(".")
            for start in range(1, len(parts) - 1):  # proper suffixes of two parts or more
                index[".".join(parts[start:])].add(value)
        return index

    def nodes(self) -> list[Node]:
        mentioned_by: dict[str, set[RecordKey]] = defaultdict(set)
        for key, target in [*self.resolved, *self.unresolved]:
            mentioned_by[target].add(key)
        values = sorted(set(self.defined_by) | set(mentioned_by))
        return [
            Node(value=v, kinds=sorted(self.kinds[v]),
                 defined_in=[record_ref(*k) for k in sorted(self.defined_by.get(v, ()))],
                 mentioned_by=len(mentioned_by.get(v, ())),
                 partitions=sorted({k[0] for k in self.defined_by.get(v, set()) | mentioned_by.get(v, set())}))
            for v in values
        ]

    def edges(self) -> list[Edge]:
        weight: dict[tuple[str, str], int] = defaultdict(int)
        cross: dict[tuple[str, str], bool] = defaultdict(bool)
        for key, target in self.resolved:
            home = {k[0] for k in self.defined_by[target]}
            for source in self.defines_of.get(key, ()):
                if source != target:
                    weight[(source, target)] += 1
                    cross[(source, target)] |= key[0] not in home
        return [Edge(source=s, target=t, weight=w, cross_partition=cross[(s, t)])
                for (s, t), w in sorted(weight.items())]

    def record_links(self) -> list[RecordLinks]:
        links_in: dict[RecordKey, int] = defaultdict(int)
        links_out: dict[RecordKey, int] = defaultdict(int)
        for key, target in self.resolved:
            others = self.defined_by[target] - {key}
            if others:
                links_out[key] += 1
            for definer in others:
                links_in[definer] += 1
        keys = sorted(set(links_in) | set(links_out))
        return [RecordLinks(partition=k[0], index=k[1], links_in=links_in.get(k, 0), links_out=links_out.get(k, 0))
                for k in keys]

    def counts(self, partitions: int, edges: int, cross_partition_edges: int) -> LinkCounts:
        undefined = {value for _, value in self.unresolved}
        nodes = set(self.defined_by) | undefined
        return LinkCounts(
            partitions=partitions, nodes=len(nodes), edges=edges, cross_partition_edges=cross_partition_edges,
            definitions=sum(len(v) for v in self.defined_by.values()),
            references=len(self.resolved) + len(self.unresolved),
            resolved_references=len(self.resolved), ambiguous_references=len(self.ambiguous),
            unresolved_references=len(self.unresolved) - len(self.ambiguous),
            unresolved_entities=len(undefined - {value for _, value in self.ambiguous}),
        )
