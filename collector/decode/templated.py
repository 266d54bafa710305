"""NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export packets: template state per exporter and domain.

Set headers are walked in Python (a few per packet); data records are gathered per template across the whole
batch and converted in one go (by the compiled helper straight from the buffer where it is available). Templates live per (exporter, observation domain / source id, version); a template
that arrives again replaces the old one (refresh), an IPFIX template record with no fields withdraws it. Data that
arrives before its template is kept for a short while (bounded) and decoded when the template shows up.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from collector.decode.common import ByteArray, DecodeStats, IntArray, expand_runs, gather_view
from collector.decode.setwalk import (
    BatchPlan,
    BoolArray,
    DomainKey,
    KnownOptions,
    KnownSet,
    SetWalk,
    TemplateKey,
    plan_batch,
    sequence_gaps,
    walk_sets,
)
from collector.decode.templates import (
    FieldSpec,
    Template,
    not_delivered,
    sampling_of,
    to_flows,
    to_flows_compiled,
)
from collector.records import FlowArray, select_flows

V9_HEADER = struct.Struct(">HHIIII")
IPFIX_HEADER = struct.Struct(">HHIII")
SET_HEADER = struct.Struct(">HH")
TWO_SHORTS = struct.Struct(">HH")
THREE_SHORTS = struct.Struct(">HHH")
U32 = struct.Struct(">I")
U16 = struct.Struct(">H")


PENDING_SETS_PER_TEMPLATE = 32
PENDING_TEMPLATES = 1024
MAX_TEMPLATES = 65536
# Per exporter: a router exports a few dozen templates in a few observation domains. Forged template sets (UDP
# sources are easy to spoof) fill only their exporter's share; the oldest entries of that exporter make room.
MAX_TEMPLATES_PER_EXPORTER = 2048
MAX_DOMAINS_PER_EXPORTER = 64
MAX_REPLANS = 4


class Malformed(ValueError):
    """A packet whose structure contradicts itself; the packet is counted and dropped."""


@dataclass
class _Group:
    """Data records of one template waiting in the batch buffer to be gathered together."""

    template: Template
    domain: DomainKey
    starts: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)


@dataclass
class _DomainState:
    """What an exporter's observation domain told us: sampler rates, default rate, sequence expectations."""

    sampler_rates: dict[int, int] = field(default_factory=dict)
    default_rate: int = 0
    next_sequence: int | None = None
    last_seen: float = 0.0


class TemplatedDecoder:
    """Stateful v9/IPFIX decoder; `decode_packet` queues data, `flush` returns the batch's flows."""

    def __init__(
        self,
        stats: DecodeStats,
        default_sampling: Callable[[str], int],
        clock: Callable[[], float],
        pending_seconds: float = 10.0,
    ) -> None:
        self.stats = stats
        self.default_sampling = default_sampling
        self.clock = clock
        self.pending_seconds = pending_seconds
        self.templates: dict[TemplateKey, Template] = {}
        self.domains: dict[DomainKey, _DomainState] = {}
        self.pending: dict[TemplateKey, deque[tuple[float, bytes]]] = {}
        # Per exporter, its templates and domains in the order they were installed (the eviction order).
        self._exporter_templates: dict[str, dict[TemplateKey, None]] = {}
        self._exporter_domains: dict[str, dict[DomainKey, None]] = {}
        self._groups: dict[int, _Group] = {}
        self._extra: list[FlowArray] = []
        # Flows of records the network dropped or consumed, queued with the batch's data (see `flush`).
        self._gone: list[FlowArray] = []
        # Exporters repeat the same template set every few packets; its bytes identify what it installed last time.
        self._known_sets: dict[tuple[DomainKey, int], KnownSet] = {}
        # The last options data set each domain applied: the same bytes again leave the sampling state as it is.
        self._known_options: dict[DomainKey, KnownOptions] = {}
        # Tests turn the compiled conversion off to compare it with the numpy path on the same input.
        self.use_compiled = True

    def decode_packet(self, buf: memoryview, offset: int, length: int, exporter: str) -> None:
        """Walk one export packet; malformed packets raise `Malformed` before any of their data is queued."""
        state, version, sequence, data_records = self._decode_one(buf, offset, length, exporter)
        self._track_sequence(state, version, sequence, data_records)

    def decode_batch(
        self, u8: ByteArray, buf: memoryview, offsets: IntArray, lengths: IntArray, exporters: Sequence[str],
        replans: int = MAX_REPLANS,
    ) -> None:
        """Queue the data of many packets, walked together with numpy when the batch changes no template state.

        A batch whose template sets only repeat what is installed, whose options data repeat what was applied and
        whose data sets all have fixed-length templates gives the same result whatever order its packets are
        handled in, so its plain data packets are queued in bulk (see `setwalk`). Anything else (new or withdrawn
        templates, data before its template, variable-length records) is decoded packet by packet in arrival order.
        Malformed packets are counted in `stats` either way.
        """
        walk = walk_sets(u8, offsets, lengths)
        plan = plan_batch(
            buf, walk, exporters, self.domains.keys(), self.templates, self._known_sets, self._known_options
        )
        if plan is not None:
            self._apply(buf, walk, plan, offsets.tolist(), lengths.tolist(), exporters)
            return
        # Per packet up to the first one that may change state (new templates, often the batch's first packet),
        # then the rest is planned again: one template change must not cost the whole batch its bulk path.
        control = ~walk.walked
        control[walk.set_owner[walk.set_id < 256]] = True
        firsts = np.flatnonzero(control)
        cut = int(firsts[0]) + 1 if firsts.size and replans > 0 else offsets.size
        self._decode_each(buf, offsets[:cut].tolist(), lengths[:cut].tolist(), exporters[:cut])
        if cut < offsets.size:
            self.decode_batch(u8, buf, offsets[cut:], lengths[cut:], exporters[cut:], replans - 1)

    def _decode_each(self, buf: memoryview, offsets: list[int], lengths: list[int], exporters: Sequence[str]) -> None:
        for offset, length, exporter in zip(offsets, lengths, exporters, strict=True):
            try:
                self.decode_packet(buf, offset, length, exporter)
            except (Malformed, IndexError, ValueError, OverflowError):
                self.stats["malformed"] += 1

    def _apply(
        self, buf: memoryview, walk: SetWalk, plan: BatchPlan, offsets: list[int], lengths: list[int],
        exporters: Sequence[str],
    ) -> None:
        """Decode the planned batch: data in bulk, then sequence numbers; malformed packets raise and are counted.

        Template and options sets of the batch are known repeats, so all that is left of them is their counters.
        """
        n = len(offsets)
        for i in np.flatnonzero(~walk.walked).tolist():
            try:
                self._decode_one(buf, offsets[i], lengths[i], exporters[i])
            except (Malformed, IndexError, ValueError, OverflowError):
                self.stats["malformed"] += 1
        if plan.refreshes:
            self.stats["template_refreshes"] += plan.refreshes
        if plan.learned:
            self.stats["sampling_options"] += plan.learned
        plain = walk.walked
        counts = (plan.end - plan.start) // np.maximum(plan.record_length, 1)
        records = np.bincount(plan.owner, weights=counts, minlength=n).astype(np.int64) + plan.option_records
        tracked = plain
        v9_packets = int((plain & (walk.version == 9)).sum())
        if v9_packets:
            self.stats["netflow9_packets"] += v9_packets
        if int(plain.sum()) > v9_packets:
            self.stats["ipfix_packets"] += int(plain.sum()) - v9_packets
        self._queue_plain(plan, counts)
        self._track_batch(walk, plan, tracked, records)

    def _queue_plain(self, plan: BatchPlan, counts: IntArray) -> None:
        """Add the plain packets' data sets to their templates' groups."""
        present = counts > 0
        for j in np.unique(plan.template_index[present]).tolist():
            chosen = present & (plan.template_index == j)
            template, dkey = plan.templates[j]
            group = self._groups.get(id(template))
            if group is None:
                group = self._groups[id(template)] = _Group(template, dkey)
            group.starts.extend(plan.start[chosen].tolist())
            group.counts.extend(counts[chosen].tolist())

    def _track_batch(self, walk: SetWalk, plan: BatchPlan, tracked: BoolArray, records: IntArray) -> None:
        """Sequence tracking for every packet decoded in the batch, in arrival order, as `_track_sequence` does."""
        index = np.flatnonzero(tracked)
        codes = plan.code[index]
        expected: dict[int, int] = {}
        for c in np.unique(codes).tolist():
            following = self.domains[plan.dkeys[c]].next_sequence
            if following is not None:
                expected[c] = following
        gaps, after = sequence_gaps(codes, walk.version[index], walk.sequence[index], records[index], expected)
        if gaps:
            self.stats["sequence_gaps"] += gaps
        now = self.clock()
        for c in np.unique(codes).tolist():
            self.domains[plan.dkeys[c]].last_seen = now
        for c, following in after.items():
            self.domains[plan.dkeys[c]].next_sequence = None if following < 0 else following

    def _decode_one(
        self, buf: memoryview, offset: int, length: int, exporter: str
    ) -> tuple[_DomainState, int, int, int | None]:
        """Decode one packet but leave sequence tracking to the caller: (domain state, version, sequence, records)."""
        if length < 4:
            raise Malformed("short header")
        version = TWO_SHORTS.unpack_from(buf, offset)[0]
        if version == 9:
            if length < V9_HEADER.size:
                raise Malformed("short v9 header")
            _, _, _, _, sequence, domain = V9_HEADER.unpack_from(buf, offset)
            start, end = offset + V9_HEADER.size, offset + length
        else:
            if length < IPFIX_HEADER.size:
                raise Malformed("short IPFIX header")
            _, message_length, _, sequence, domain = IPFIX_HEADER.unpack_from(buf, offset)
            if message_length < IPFIX_HEADER.size or message_length > length:
                raise Malformed("IPFIX length")
            start, end = offset + IPFIX_HEADER.size, offset + message_length
        sets = self._split_sets(buf, start, end)
        self.stats[f"{'netflow9' if version == 9 else 'ipfix'}_packets"] += 1
        dkey = (exporter, domain, version)
        state = self.domains.get(dkey)
        if state is None:
            if len(self.domains) >= MAX_TEMPLATES:
                raise Malformed("too many domains")
            state = self._add_domain(dkey)
        state.last_seen = self.clock()
        data_records = 0
        known_counts = True
        for set_id, body_start, body_end in sets:
            if set_id >= 256:
                counted = self._data_set(buf, dkey, state, set_id, body_start, body_end)
                known_counts &= counted is not None
                data_records += counted or 0
            else:
                self._template_set(buf, dkey, set_id, body_start, body_end)
        return state, version, sequence, data_records if known_counts else None

    def _split_sets(self, buf: memoryview, start: int, end: int) -> list[tuple[int, int, int]]:
        sets = []
        pos = start
        while pos + 4 <= end:
            set_id, set_length = SET_HEADER.unpack_from(buf, pos)
            if set_length < 4 or pos + set_length > end:
                raise Malformed("set length")
            if set_id in (0, 1, 2, 3) or set_id >= 256:
                sets.append((set_id, pos + 4, pos + set_length))
            pos += set_length
        return sets

    def _track_sequence(self, state: _DomainState, version: int, sequence: int, data_records: int | None) -> None:
        """v9 sequence numbers count packets, IPFIX ones count data records; a mismatch is a gap (or reorder)."""
        if state.next_sequence is not None and sequence != state.next_sequence:
            self.stats["sequence_gaps"] += 1
        if version == 9:
            state.next_sequence = (sequence + 1) & 0xFFFF_FFFF
        elif data_records is not None:
            state.next_sequence = (sequence + data_records) & 0xFFFF_FFFF
        else:
            state.next_sequence = None

    def _template_set(self, buf: memoryview, dkey: DomainKey, set_id: int, pos: int, end: int) -> None:
        """Install a template set's templates, or only count a refresh when the same bytes installed them already."""
        raw = bytes(buf[pos:end])
        known = self._known_sets.get((dkey, set_id))
        if known is not None and known[0] == raw and all(self.templates.get(k) is t for k, t in known[1]):
            self.stats["template_refreshes"] += len(known[1])
            return
        installed = self._parse_template_set(buf, dkey, set_id, pos, end)
        if installed:
            if len(self._known_sets) >= MAX_TEMPLATES:
                self._known_sets.clear()
            self._known_sets[(dkey, set_id)] = (raw, tuple((k, self.templates[k]) for k in installed))

    def _parse_template_set(self, buf: memoryview, dkey: DomainKey, set_id: int, pos: int, end: int) -> list[
        TemplateKey
    ] | None:
        """Parse and install every template of a set; returns the keys of the templates it holds.

        None when the set also withdraws templates: replaying it is not a no-op, so it must never be skipped.
        """
        version = dkey[2]
        installed: list[TemplateKey] = []
        withdraws = False
        options = set_id in (1, 3)
        while end - pos >= 4:
            if version == 9 and options:
                if end - pos < 6:
                    break
                template_id, scope_len, option_len = THREE_SHORTS.unpack_from(buf, pos)
                pos += 6
                if template_id < 256 or scope_len % 4 or option_len % 4 or pos + scope_len + option_len > end:
                    break
                specs = self._v9_fields(buf, pos, scope_len // 4, scope=True)
                specs += self._v9_fields(buf, pos + scope_len, option_len // 4, scope=False)
                pos += scope_len + option_len
            else:
                template_id, field_count = TWO_SHORTS.unpack_from(buf, pos)
                pos += 4
                scope_count = 0
                if options and field_count:
                    if end - pos < 2:
                        raise Malformed("options template header")
                    scope_count = U16.unpack_from(buf, pos)[0]
                    pos += 2
                if field_count == 0 and version == 10:
                    self._withdraw(dkey, template_id, options)
                    withdraws = True
                    continue
                if template_id < 256:
                    if version == 9 and template_id == 0 and field_count == 0:
                        break
                    raise Malformed("template id")
                specs, pos = self._ipfix_fields(buf, pos, end, field_count, scope_count, version)
            installed.append((*dkey, template_id))
            current = self.templates.get((*dkey, template_id))
            if current is not None and current.specs == tuple(specs) and current.is_options == options:
                self.stats["template_refreshes"] += 1
                continue
            self._install(dkey, Template(template_id, tuple(specs), options, version))
        return None if withdraws else installed

    @staticmethod
    def _v9_fields(buf: memoryview, pos: int, count: int, *, scope: bool) -> list[FieldSpec]:
        pairs = (TWO_SHORTS.unpack_from(buf, pos + 4 * i) for i in range(count))
        return [FieldSpec(element, length, scope=scope) for element, length in pairs]

    @staticmethod
    def _ipfix_fields(
        buf: memoryview, pos: int, end: int, count: int, scope_count: int, version: int
    ) -> tuple[list[FieldSpec], int]:
        specs = []
        for i in range(count):
            if pos + 4 > end:
                raise Malformed("template fields")
            element, length = TWO_SHORTS.unpack_from(buf, pos)
            pos += 4
            enterprise = 0
            if version == 10 and element & 0x8000:
                if pos + 4 > end:
                    raise Malformed("enterprise number")
                enterprise = U32.unpack_from(buf, pos)[0]
                element &= 0x7FFF
                pos += 4
            if length == 0:
                raise Malformed("zero-length field")
            specs.append(FieldSpec(element, length, enterprise, scope=i < scope_count))
        return specs, pos

    def _withdraw(self, dkey: DomainKey, template_id: int, options: bool) -> None:
        """IPFIX withdrawal: one template, or all (options) templates of the domain for id 2 (3)."""
        exporter, domain, version = dkey
        if template_id in (2, 3):
            doomed = [
                k
                for k, t in self.templates.items()
                if k[:3] == (exporter, domain, version) and t.is_options == (template_id == 3)
            ]
        else:
            doomed = [(exporter, domain, version, template_id)]
        for key in doomed:
            if self.templates.pop(key, None) is not None:
                self._exporter_templates.get(exporter, {}).pop(key, None)
                self.stats["templates_withdrawn"] += 1

    def _add_domain(self, dkey: DomainKey) -> _DomainState:
        """A new domain of an exporter; its least recently seen domain goes when the exporter has too many."""
        mine = self._exporter_domains.setdefault(dkey[0], {})
        if len(mine) >= MAX_DOMAINS_PER_EXPORTER:
            stalest = min(mine, key=lambda known: self.domains[known].last_seen)
            self._drop_domain(stalest)
            self.stats["domains_evicted"] += 1
        mine[dkey] = None
        state = self.domains[dkey] = _DomainState(last_seen=self.clock())
        return state

    def _drop_domain(self, dkey: DomainKey) -> None:
        """Forget a domain and everything learned from it: templates, sampling, known sets, held data."""
        self.domains.pop(dkey, None)
        self._exporter_domains.get(dkey[0], {}).pop(dkey, None)
        templates = self._exporter_templates.get(dkey[0], {})
        for key in [key for key in templates if key[:3] == dkey]:
            del templates[key]
            self.templates.pop(key, None)
        for set_id in range(4):
            self._known_sets.pop((dkey, set_id), None)
        self._known_options.pop(dkey, None)
        for key in [key for key in self.pending if key[:3] == dkey]:
            del self.pending[key]

    def _install(self, dkey: DomainKey, template: Template) -> None:
        key = (*dkey, template.template_id)
        mine = self._exporter_templates.setdefault(dkey[0], {})
        if key not in self.templates:
            if len(mine) >= MAX_TEMPLATES_PER_EXPORTER:
                oldest = next(iter(mine))
                del mine[oldest]
                self.templates.pop(oldest, None)
                self.stats["templates_evicted"] += 1
            if len(self.templates) >= MAX_TEMPLATES:
                raise Malformed("too many templates")
        mine[key] = None
        self.templates[key] = template
        self.stats["templates"] += 1
        waiting = self.pending.pop(key, None)
        if not waiting:
            return
        horizon = self.clock() - self.pending_seconds
        state = self.domains[dkey]
        for arrived, body in waiting:
            if arrived < horizon:
                self.stats["data_without_template_expired"] += 1
                continue
            self.stats["data_replayed_after_template"] += 1
            self._decode_detached(template, dkey, state, body)

    def _data_set(
        self, buf: memoryview, dkey: DomainKey, state: _DomainState, set_id: int, start: int, end: int
    ) -> int | None:
        """Queue a data set for its template's group; returns the record count, None when the template is unknown."""
        key = (*dkey, set_id)
        template = self.templates.get(key)
        if template is None:
            self._hold(key, bytes(buf[start:end]))
            return None
        if template.is_options:
            return self._options_set(template, dkey, state, set_id, bytes(buf[start:end]))
        if not template.fixed:
            return self._decode_detached(template, dkey, state, bytes(buf[start:end]))
        if template.record_length == 0:
            return 0
        count = (end - start) // template.record_length
        if count:
            group = self._groups.get(id(template))
            if group is None:
                group = self._groups[id(template)] = _Group(template, dkey)
            group.starts.append(start)
            group.counts.append(count)
        return count

    def _options_set(self, template: Template, dkey: DomainKey, state: _DomainState, set_id: int, body: bytes) -> int:
        """Apply options data, unless it repeats the domain's last options data: applying that again changes nothing."""
        known = self._known_options.get(dkey)
        if known is not None and known[0] == set_id and known[2] is template and known[1] == body:
            if known[4]:
                self.stats["sampling_options"] += 1
            return known[3]
        learned_before = self.stats["sampling_options"]
        count = self._decode_detached(template, dkey, state, body)
        if len(self._known_options) >= MAX_TEMPLATES:
            self._known_options.clear()
        self._known_options[dkey] = (set_id, body, template, count, self.stats["sampling_options"] != learned_before)
        return count

    def _hold(self, key: TemplateKey, body: bytes) -> None:
        """Keep data that came before its template, within bounds; what does not fit is counted as lost."""
        self.stats["data_without_template"] += 1
        queue = self.pending.get(key)
        if queue is None:
            if len(self.pending) >= PENDING_TEMPLATES:
                self.stats["data_without_template_dropped"] += 1
                return
            queue = self.pending[key] = deque(maxlen=PENDING_SETS_PER_TEMPLATE)
        if len(queue) == queue.maxlen:
            self.stats["data_without_template_dropped"] += 1
        queue.append((self.clock(), body))

    def _decode_detached(self, template: Template, dkey: DomainKey, state: _DomainState, body: bytes) -> int:
        """Decode a data set held outside the batch buffer (options data, variable-length or replayed sets)."""
        if not template.fixed:
            body, count = template.compact(body)
        else:
            count = len(body) // template.record_length if template.record_length else 0
        if count == 0:
            return 0
        records = np.frombuffer(body, dtype=template.dtype, count=count)
        if template.is_options:
            self._learn_sampling(template, records, dkey, state)
        else:
            self._extra.append(self._convert(template, records, dkey, state))
        return count

    def _learn_sampling(self, template: Template, records: np.ndarray, dkey: DomainKey, state: _DomainState) -> None:
        """Options data announcing sampler rates: per sampler id, or for the whole domain when no id is given."""
        rates: np.ndarray | None = None
        if template.has("sampling_interval"):
            rates = template.column(records, "sampling_interval")
        elif template.has("sampler_random_interval"):
            rates = template.column(records, "sampler_random_interval")
        elif template.has("sampling_packet_interval"):
            interval = template.column(records, "sampling_packet_interval")
            space = template.column(records, "sampling_packet_space") if template.has("sampling_packet_space") else 0
            rates = (interval + space) // np.maximum(interval, 1)
        if rates is None:
            return
        ids: np.ndarray | None = None
        for column in ("sampler_id", "selector_id"):
            if template.has(column):
                ids = template.column(records, column)
                break
        for i, rate in enumerate(rates.tolist()):
            if rate <= 0:
                continue
            if ids is None:
                state.default_rate = int(rate)
            else:
                if len(state.sampler_rates) < 4096:
                    state.sampler_rates[int(ids[i])] = int(rate)
                state.default_rate = state.default_rate or int(rate)
        self.stats["sampling_options"] += 1

    def _convert(self, template: Template, records: np.ndarray, dkey: DomainKey, state: _DomainState) -> FlowArray:
        """Records to flows, leaving out (and counting, and keeping apart) those the network dropped or consumed."""
        default = state.default_rate or self.default_sampling(dkey[0])
        sampling = sampling_of(template, records, state.sampler_rates, default)
        self.stats["records"] += int(records.size)
        flows = to_flows(template, records, sampling)
        gone = not_delivered(template, records) if flows.size else None
        if gone is None or not gone.any():
            return flows
        self.stats["records_dropped_by_network"] += int(gone.sum())
        self._gone.append(select_flows(flows, gone))
        return select_flows(flows, ~gone)

    def _convert_in_place(
        self, group: _Group, u8: ByteArray, starts: IntArray, counts: IntArray, state: _DomainState
    ) -> FlowArray | None:
        """`_convert` of a group's records read where they lie in the batch buffer (compiled); None: use numpy."""
        default = state.default_rate or self.default_sampling(group.domain[0])
        converted = to_flows_compiled(group.template, u8, starts, counts, state.sampler_rates, default)
        if converted is None:
            return None
        flows, gone = converted
        self.stats["records"] += int(counts.sum())
        if gone.size:
            self.stats["records_dropped_by_network"] += int(gone.size)
            self._gone.append(gone)
        return flows

    def take_not_delivered(self) -> list[FlowArray]:
        """The flows of the records marked dropped or consumed in the batch just flushed (`discard` forgets them)."""
        gone, self._gone = self._gone, []
        return gone

    def flush(self, u8: ByteArray) -> list[FlowArray]:
        """Gather and convert every queued data set of the batch; the buffer must still hold the batch.

        A batch decoded partly packet by packet and partly in bulk may queue a group's sets out of arrival order;
        sorting by offset restores it, so the output does not depend on which path queued them. Groups are
        converted in place by the compiled helper where it is available (and `use_compiled`), else gathered and
        converted with numpy; both give the same flows and counters.
        """
        out = self._extra
        runs = []
        for group in self._groups.values():
            starts = np.asarray(group.starts, dtype=np.int64)
            counts = np.asarray(group.counts, dtype=np.int64)
            if starts.size > 1 and (starts[1:] < starts[:-1]).any():
                order = np.argsort(starts, kind="stable")
                starts, counts = starts[order], counts[order]
            runs.append((starts, counts, group))
        runs.sort(key=lambda run: int(run[0][0]))
        for starts, counts, group in runs:
            state = self.domains.get(group.domain) or _DomainState()
            flows = self._convert_in_place(group, u8, starts, counts, state) if self.use_compiled else None
            if flows is None:
                offsets = expand_runs(starts, counts, group.template.record_length)
                records = gather_view(u8, offsets, group.template.dtype)
                flows = self._convert(group.template, records, group.domain, state)
            out.append(flows)
        self._groups = {}
        self._extra = []
        return out

    def discard(self) -> None:
        """Forget queued data of a batch whose decoding failed, so it is not decoded twice."""
        self._groups = {}
        self._extra = []
        self._gone = []

    def expire(self, idle_seconds: float) -> None:
        """Forget domains silent for `idle_seconds` (their templates with them) and data held too long.

        Exporters resend templates every few seconds to minutes, so a live domain never idles this long; forged
        domains that were used once go within `idle_seconds`.
        """
        horizon = self.clock() - idle_seconds
        for dkey in [dkey for dkey, state in self.domains.items() if state.last_seen < horizon]:
            self._drop_domain(dkey)
            self.stats["domains_expired"] += 1
        for exporter in [name for name, domains in self._exporter_domains.items() if not domains]:
            del self._exporter_domains[exporter]
            self._exporter_templates.pop(exporter, None)
        self.expire_pending()

    def forget_exporters(self, keep: Collection[str]) -> None:
        """Drop the state of exporters no longer listed."""
        for dkey in [dkey for dkey in self.domains if dkey[0] not in keep]:
            self._drop_domain(dkey)

    def table_sizes(self) -> dict[str, int]:
        return {"templates": len(self.templates), "domains": len(self.domains), "pending": len(self.pending),
                "known_sets": len(self._known_sets), "known_options": len(self._known_options)}

    def expire_pending(self) -> None:
        """Drop data that waited too long for its template."""
        horizon = self.clock() - self.pending_seconds
        for key in list(self.pending):
            queue = self.pending[key]
            while queue and queue[0][0] < horizon:
                queue.popleft()
                self.stats["data_without_template_expired"] += 1
            if not queue:
                del self.pending[key]
