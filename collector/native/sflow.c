/*
 * sFlow v5 datagrams to flow records in one pass per batch (collector/decode/sflow.py, `SflowDecoder`).
 *
 * The numpy decoder walks the sample and record chains one step at a time for every datagram at once; here every
 * datagram is walked on its own, which costs a few nanoseconds per item instead of a numpy call per step. Both
 * paths must give the same records in the same order with the same counters (the tests compare them on generated,
 * hand-made and fuzzed input), so every rule below mirrors one of the numpy decoder's, including its quirks:
 *
 *   - a datagram is dropped whole (and counted malformed) when its sample chain or the record chain of any of its
 *     flow samples overflows its length or has more than MAX_STEPS items; its flow samples still count as seen
 *     when only a record chain is at fault, because the numpy path counts them before it walks the records;
 *   - one record per flow sample: the first raw packet header, else the first sampled IPv4/IPv6 record; a chosen
 *     raw header that is not IP yields nothing (and counts as non-IP) even if an IPv4/IPv6 record follows it;
 *   - records come out ordered by the sample's position in its datagram first, then by datagram, which is the
 *     order of the numpy path's step-by-step walk (a stable counting sort on the position at the end).
 *
 * Input is hostile: nothing is read outside [offset, offset + length) of a datagram, and a datagram that does not
 * lie inside [0, buf_len) is malformed. Offsets need no alignment; words are assembled byte by byte.
 */
#include <stdlib.h>
#include <string.h>

#include "sluice_native.h"

#define MAX_STEPS 256
#define FLOW_SAMPLE 1
#define EXPANDED_FLOW_SAMPLE 3
#define RAW_HEADER 1
#define SAMPLED_IPV4 3
#define SAMPLED_IPV6 4
#define HEADER_ETHERNET 1
#define HEADER_IPV4 11
#define HEADER_IPV6 12
#define WINDOW 96


/* Indexes of the counters array the caller passes (mirrored in collector/decode/sflow.py). */
enum { COUNT_FLOW_SAMPLES, COUNT_RECORDS, COUNT_MALFORMED, COUNT_NON_IP, COUNT_RAW_CHOSEN, COUNTERS };

/* Results of `sluice_sflow_decode` other than a record count. */
#define ERROR_CAPACITY (-1)
#define ERROR_MEMORY (-2)

static inline uint32_t be16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }

static inline uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

static inline int is_vlan(uint32_t ethertype) {
    return ethertype == 0x8100 || ethertype == 0x88A8 || ethertype == 0x9100;
}

/* One item of a (format, length, body) chain, as offsets relative to the datagram. */
typedef struct {
    uint32_t format;
    int64_t body;
    int64_t length;
} chain_item;

/*
 * Walks `count` items from `cursor` up to `end` into `items`; 0 when the chain overflows `end` or is too long.
 * Item lengths need not be multiples of four: the numpy path does not ask for it either.
 */
static int walk(const uint8_t *d, int64_t cursor, int64_t end, uint32_t count, chain_item *items) {
    if (count > MAX_STEPS) {
        return 0;
    }
    for (uint32_t k = 0; k < count; k++) {
        if (cursor + 8 > end) {
            return 0;
        }
        int64_t length = be32(d + cursor + 4);
        if (cursor + 8 + length > end) {
            return 0;
        }
        items[k].format = be32(d + cursor);
        items[k].body = cursor + 8;
        items[k].length = length;
        cursor += 8 + length;
    }
    return 1;
}

/*
 * A sampled packet header: Ethernet with up to two VLAN tags (or bare IPv4/IPv6), then L3 and L4. Only the
 * captured bytes (`visible`, at most WINDOW) are read; 0 when the header is not IP or too short for its L3 header.
 */
static int raw_header(const uint8_t *b, int64_t length, flow_record *out) {
    uint32_t header_proto = be32(b);
    uint32_t frame_length = be32(b + 4);
    int64_t header_length = be32(b + 12);
    if (header_length + 16 > length || header_length <= 0) {
        return 0;
    }
    int64_t visible = header_length < WINDOW ? header_length : WINDOW;
    const uint8_t *h = b + 16;
    uint32_t ethertype;
    int64_t l3;
    if (header_proto == HEADER_ETHERNET) {
        /* Each test below only rejects headers the L3 length test would reject anyway (l3 + 20 > visible). */
        if (visible < 14) {
            return 0;
        }
        ethertype = be16(h + 12);
        l3 = 14;
        for (int tag = 0; tag < 2 && is_vlan(ethertype); tag++) {
            if (visible < l3 + 4) {
                return 0;
            }
            ethertype = be16(h + l3 + 2);
            l3 += 4;
        }
    } else if (header_proto == HEADER_IPV4) {
        ethertype = 0x0800;
        l3 = 0;
    } else if (header_proto == HEADER_IPV6) {
        ethertype = 0x86DD;
        l3 = 0;
    } else {
        return 0;
    }
    const uint8_t *ip = h + l3;
    int64_t l4;
    int later_fragment;
    uint8_t proto;
    memset(out, 0, sizeof *out);
    if (ethertype == 0x0800) {
        if (l3 + 20 > visible || (ip[0] >> 4) != 4) {
            return 0;
        }
        uint32_t frag_word = be16(ip + 6);
        proto = ip[9];
        out->frag = (frag_word & 0x3FFF) != 0;
        later_fragment = (frag_word & 0x1FFF) != 0;
        l4 = l3 + (int64_t)(ip[0] & 0x0F) * 4;
        out->src_lo = be32(ip + 12) | SLUICE_V4_MAPPED;
        out->dst_lo = be32(ip + 16) | SLUICE_V4_MAPPED;
    } else if (ethertype == 0x86DD) {
        if (l3 + 40 > visible || (ip[0] >> 4) != 6) {
            return 0;
        }
        int fragment_header = ip[6] == 44 && l3 + 48 <= visible;
        proto = fragment_header ? ip[40] : ip[6];
        out->frag = (uint8_t)fragment_header;
        later_fragment = fragment_header && (be16(ip + 42) >> 3) != 0;
        l4 = l3 + (fragment_header ? 48 : 40);
        out->src_hi = be64(ip + 8);
        out->src_lo = be64(ip + 16);
        out->dst_hi = be64(ip + 24);
        out->dst_lo = be64(ip + 32);
        out->ipv6 = 1;
    } else {
        return 0;
    }
    out->proto = proto;
    if ((proto == 6 || proto == 17) && !later_fragment && l4 + 4 <= visible) {
        out->sport = (uint16_t)be16(h + l4);
        out->dport = (uint16_t)be16(h + l4 + 2);
    }
    if (proto == 6 && !later_fragment && l4 + 14 <= visible) {
        out->tcp_flags = h[l4 + 13];
    }
    out->bytes = frame_length;
    return 1;
}

/* sFlow sampled IPv4 record: length, protocol, src, dst, ports, tcp flags, tos (32-bit words). */
static void sampled_ipv4(const uint8_t *b, flow_record *out) {
    memset(out, 0, sizeof *out);
    out->bytes = be32(b);
    out->proto = (uint8_t)be32(b + 4);
    out->src_lo = be32(b + 8) | SLUICE_V4_MAPPED;
    out->dst_lo = be32(b + 12) | SLUICE_V4_MAPPED;
    out->sport = (uint16_t)be32(b + 16);
    out->dport = (uint16_t)be32(b + 20);
    out->tcp_flags = (uint8_t)be32(b + 24);
}

/* sFlow sampled IPv6 record: length, protocol, 16-byte src and dst, ports, tcp flags, priority. */
static void sampled_ipv6(const uint8_t *b, flow_record *out) {
    memset(out, 0, sizeof *out);
    out->bytes = be32(b);
    out->proto = (uint8_t)be32(b + 4);
    out->src_hi = be64(b + 8);
    out->src_lo = be64(b + 16);
    out->dst_hi = be64(b + 24);
    out->dst_lo = be64(b + 32);
    out->sport = (uint16_t)be32(b + 40);
    out->dport = (uint16_t)be32(b + 44);
    out->tcp_flags = (uint8_t)be32(b + 48);
    out->ipv6 = 1;
}

/* The record chosen for a sample: the first usable raw header, else the first usable sampled IPv4/IPv6 record. */
static const chain_item *choose_record(const chain_item *records, uint32_t count) {
    const chain_item *sampled = NULL;
    for (uint32_t k = 0; k < count; k++) {
        const chain_item *r = &records[k];
        if (r->format == RAW_HEADER && r->length >= 16) {
            return r;
        }
        if (sampled == NULL && ((r->format == SAMPLED_IPV4 && r->length >= 32) ||
                                (r->format == SAMPLED_IPV6 && r->length >= 56))) {
            sampled = r;
        }
    }
    return sampled;
}

/* What one datagram adds; committed to the batch only when the whole datagram turns out well formed. */
typedef struct {
    int64_t records, non_ip, raw_chosen;
} datagram_counts;

/*
 * The flow samples of one datagram whose sample chain is sound, written from `out[*written]` on (at most
 * `capacity` records in all) with each record's sample position in `positions`. 0 when a record chain is
 * malformed (the caller rolls back), ERROR_CAPACITY when `out` is full, 1 otherwise.
 */
static int flow_samples(const uint8_t *d, const chain_item *samples, uint32_t count, flow_record *out,
                        uint8_t *positions, int64_t capacity, int64_t *written, datagram_counts *counts) {
    chain_item records[MAX_STEPS];
    for (uint32_t k = 0; k < count; k++) {
        const chain_item *s = &samples[k];
        int expanded = s->format == EXPANDED_FLOW_SAMPLE;
        if (!((s->format == FLOW_SAMPLE && s->length >= 32) || (expanded && s->length >= 44))) {
            continue;
        }
        uint64_t rate = be32(d + s->body + (expanded ? 12 : 8));
        uint32_t nrecords = be32(d + s->body + (expanded ? 40 : 28));
        if (!walk(d, s->body + (expanded ? 44 : 32), s->body + s->length, nrecords, records)) {
            return 0;
        }
        const chain_item *chosen = choose_record(records, nrecords);
        if (chosen == NULL) {
            continue;
        }
        if (*written >= capacity) {
            return ERROR_CAPACITY;
        }
        flow_record *flow = &out[*written];
        const uint8_t *body = d + chosen->body;
        if (chosen->format == RAW_HEADER) {
            counts->raw_chosen++;
            if (!raw_header(body, chosen->length, flow)) {
                counts->non_ip++;
                continue;
            }
        } else if (chosen->format == SAMPLED_IPV4) {
            sampled_ipv4(body, flow);
        } else {
            sampled_ipv6(body, flow);
        }
        uint64_t scale = rate > 1 ? rate : 1;
        flow->sampling = (uint32_t)scale;
        flow->packets = scale;
        flow->bytes *= scale;
        positions[*written] = (uint8_t)k;
        (*written)++;
        counts->records++;
    }
    return 1;
}

/* Reorders `out[0..n)` stably by sample position, as the numpy path's step-by-step walk emits them. */
static int order_by_position(flow_record *out, const uint8_t *positions, int64_t n) {
    int64_t first[MAX_STEPS] = {0};
    int any_later = 0;
    for (int64_t i = 0; i < n; i++) {
        first[positions[i]]++;
        any_later |= positions[i] != 0;
    }
    if (!any_later) {
        return 1;
    }
    flow_record *copy = malloc((size_t)n * sizeof *copy);
    if (copy == NULL) {
        return 0;
    }
    memcpy(copy, out, (size_t)n * sizeof *copy);
    int64_t start = 0;
    for (int k = 0; k < MAX_STEPS; k++) {
        int64_t size = first[k];
        first[k] = start;
        start += size;
    }
    for (int64_t i = 0; i < n; i++) {
        out[first[positions[i]]++] = copy[i];
    }
    free(copy);
    return 1;
}

/*
 * Decodes the `n` datagrams at `offsets` (each `lengths[i]` bytes) of `buf` into `out` (room for `capacity`
 * records) and adds to `counters` (COUNTERS entries: flow samples, records, malformed, non-IP raw headers, raw
 * headers chosen). Returns the number of records, or ERROR_CAPACITY / ERROR_MEMORY, in which case `out` and
 * `counters` hold nothing usable and the caller decodes another way.
 */
int64_t sluice_sflow_decode(const uint8_t *buf, int64_t buf_len, const int64_t *offsets, const int64_t *lengths,
                            int64_t n, flow_record *out, int64_t capacity, int64_t *counters) {
    chain_item samples[MAX_STEPS];
    int64_t local[COUNTERS] = {0};
    int64_t written = 0;
    uint8_t *positions = malloc(capacity > 0 ? (size_t)capacity : 1);
    if (positions == NULL) {
        return ERROR_MEMORY;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t offset = offsets[i], length = lengths[i];
        if (offset < 0 || length < 28 || offset > buf_len || length > buf_len - offset) {
            local[COUNT_MALFORMED]++;
            continue;
        }
        const uint8_t *d = buf + offset;
        uint32_t agent_type = be32(d + 4);
        int64_t header_length = agent_type == 2 ? 40 : 28;
        if (be32(d) != 5 || (agent_type != 1 && agent_type != 2) || length < header_length) {
            local[COUNT_MALFORMED]++;
            continue;
        }
        uint32_t count = be32(d + header_length - 4);
        if (!walk(d, header_length, length, count, samples)) {
            local[COUNT_MALFORMED]++;
            continue;
        }
        for (uint32_t k = 0; k < count; k++) {
            const chain_item *s = &samples[k];
            local[COUNT_FLOW_SAMPLES] += (s->format == FLOW_SAMPLE && s->length >= 32) ||
                                         (s->format == EXPANDED_FLOW_SAMPLE && s->length >= 44);
        }
        int64_t rollback = written;
        datagram_counts counts = {0, 0, 0};
        int result = flow_samples(d, samples, count, out, positions, capacity, &written, &counts);
        if (result == ERROR_CAPACITY) {
            free(positions);
            return ERROR_CAPACITY;
        }
        if (result == 0) {
            written = rollback;
            local[COUNT_MALFORMED]++;
            continue;
        }
        local[COUNT_RECORDS] += counts.records;
        local[COUNT_NON_IP] += counts.non_ip;
        local[COUNT_RAW_CHOSEN] += counts.raw_chosen;
    }
    int sorted = order_by_position(out, positions, written);
    free(positions);
    if (!sorted) {
        return ERROR_MEMORY;
    }
    for (int c = 0; c < COUNTERS; c++) {
        counters[c] += local[c];
    }
    return written;
}
