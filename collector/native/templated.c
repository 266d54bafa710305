/*
 * NetFlow v9 / IPFIX data records of one template to flow records in one pass (collector/decode/templates.py).
 *
 * The numpy path gathers every record of a template into a structured array, derives the per-record sampling rate
 * (`sampling_of`) and converts columns one by one (`to_flows`): a dozen passes over the batch and a copy of every
 * record. Here each record is read once, straight from the receive buffer, and its flow record written whole. The
 * rules are those of the numpy path, resolved by the caller into a field map (which column sits where, fallbacks
 * such as bytes -> bytes_total already applied, the address family and the sampling source already chosen), so the
 * tests can hold both paths to byte-identical output:
 *
 *   - integers are big-endian of any width 1..8 (reduced-size encoding), as `Template.column` reads them;
 *   - IPv4 addresses become IPv4-mapped (::ffff:a.b.c.d), IPv6 ones set the ipv6 flag;
 *   - counters are multiplied by the rate with uint64 wraparound, and the rate is stored truncated to 32 bits,
 *     as numpy's multiply and its assignment into the uint32 `sampling` column do;
 *   - tcp_flags keeps its low byte (2-byte encodings), frag is set by a non-zero fragment offset (low 13 bits) or
 *     the IPFIX more-fragments flag;
 *   - a record whose forwardingStatus says dropped or consumed is no flow: it is written to a second output instead
 *     (`not_delivered`), from which the collector keeps the rates the network dropped per destination host.
 *
 * Input is hostile: every record of every run must lie inside [0, buf_len) and every field inside the record, or
 * nothing is written and an error is returned (the caller then takes the numpy path, which decides).
 */
#include <stdint.h>
#include <string.h>

#include "sluice_native.h"

/* Slots of the field map: (offset within the record, width) pairs, offset -1 when the template lacks the field.
 * Mirrored by NATIVE_FIELDS in collector/decode/templates.py. */
enum {
    F_SRC4,
    F_DST4,
    F_SRC6,
    F_DST6,
    F_BYTES,
    F_PACKETS,
    F_PROTO,
    F_TCP_FLAGS,
    F_SPORT,
    F_DPORT,
    F_FRAGMENT_OFFSET,
    F_FRAGMENT_FLAGS,
    F_SAMPLING_INTERVAL,
    F_PACKET_INTERVAL,
    F_PACKET_SPACE,
    F_SAMPLER_ID,
    F_FORWARDING_STATUS,
    FIELDS
};

#define IPFIX_MORE_FRAGMENTS 0x20
/* forwardingStatus (IPFIX element 89; see FORWARDING_STATUS_* in templates.py for what the registry says): an
 * unsigned32 of any reduced size whose least significant byte holds the status in its top two bits. */
#define FORWARDING_STATUS_SHIFT 6
#define FORWARDING_STATUS_DROPPED 2
#define ERROR_BOUNDS (-1)
#define ERROR_FIELDS (-2)
#define ERROR_CAPACITY (-3)

typedef struct {
    int64_t offset;
    int64_t width;
} field;

/* Big-endian unsigned integer of `width` (1..8) bytes; the machine is little-endian (the caller checks). */
static inline uint64_t be_uint(const uint8_t *p, int64_t width) {
    switch (width) {
    case 1:
        return p[0];
    case 2:
        return ((uint64_t)p[0] << 8) | p[1];
    case 4: {
        uint32_t word;
        memcpy(&word, p, sizeof word);
        return __builtin_bswap32(word);
    }
    case 8: {
        uint64_t word;
        memcpy(&word, p, sizeof word);
        return __builtin_bswap64(word);
    }
    default: {
        uint64_t value = 0;
        for (int64_t k = 0; k < width; k++) value = (value << 8) | p[k];
        return value;
    }
    }
}

static inline int present(const field *f) { return f->offset >= 0; }

/* The field's value, 0 when absent. */
static inline uint64_t value_of(const uint8_t *record, const field *f) {
    return present(f) ? be_uint(record + f->offset, f->width) : 0;
}

/* Widths each slot may have: the same as KNOWN_FIELDS accepts, so a map the caller got wrong is refused. */
static int width_ok(int slot, int64_t width) {
    switch (slot) {
    case F_SRC4:
    case F_DST4:
        return width == 4;
    case F_SRC6:
    case F_DST6:
        return width == 16;
    case F_BYTES:
    case F_PACKETS:
    case F_SAMPLER_ID:
        return width >= 1 && width <= 8;
    case F_PROTO:
    case F_FRAGMENT_FLAGS:
        return width == 1;
    case F_TCP_FLAGS:
        return width == 1 || width == 2;
    case F_SPORT:
    case F_DPORT:
    case F_FRAGMENT_OFFSET:
        return width == 2;
    default: /* sampling interval, packet interval and space, forwarding status */
        return width >= 1 && width <= 4;
    }
}

/* Whether every present field lies inside a record of `stride` bytes with a width its slot allows. */
static int fields_ok(const field *fields, int64_t stride) {
    for (int slot = 0; slot < FIELDS; slot++) {
        const field *f = &fields[slot];
        if (f->offset < -1 || (present(f) && (!width_ok(slot, f->width) || f->offset > stride - f->width))) {
            return 0;
        }
    }
    return 1;
}

/* The domain's announced sampler rates (ids sorted), with the last lookup remembered: records of a batch mostly
 * name one or two samplers, so the search is rarely needed. */
typedef struct {
    const uint64_t *ids, *rates;
    int64_t count;
    uint64_t fallback;
    int cached;
    uint64_t cached_id, cached_rate;
} sampler_table;

/* The rate announced for sampler `id`, or the table's fallback when it has none. */
static uint64_t sampler_rate(sampler_table *table, uint64_t id) {
    if (table->cached && table->cached_id == id) {
        return table->cached_rate;
    }
    int64_t lo = 0, hi = table->count;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (table->ids[mid] < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    table->cached = 1;
    table->cached_id = id;
    table->cached_rate = lo < table->count && table->ids[lo] == id ? table->rates[lo] : table->fallback;
    return table->cached_rate;
}

/* `sampling_of` for one record: its own interval, else its sampler's rate, else the domain's default. */
static uint64_t rate_of(const uint8_t *record, const field *fields, sampler_table *table) {
    if (present(&fields[F_SAMPLING_INTERVAL])) {
        const uint64_t own = value_of(record, &fields[F_SAMPLING_INTERVAL]);
        return own > 0 ? own : table->fallback;
    }
    if (present(&fields[F_PACKET_INTERVAL])) {
        const uint64_t interval = value_of(record, &fields[F_PACKET_INTERVAL]);
        const uint64_t space = value_of(record, &fields[F_PACKET_SPACE]);
        return interval > 0 ? (interval + space) / interval : table->fallback;
    }
    if (present(&fields[F_SAMPLER_ID]) && table->count > 0) {
        return sampler_rate(table, value_of(record, &fields[F_SAMPLER_ID]));
    }
    return table->fallback;
}

/* Whether the exporter says the record reached its destination: unknown or forwarded (a dropped or consumed record
 * never did). Only called for templates that carry a status. */
static inline int delivered(const uint8_t *record, const field *status) {
    return ((be_uint(record + status->offset, status->width) & 0xFF) >> FORWARDING_STATUS_SHIFT) <
           FORWARDING_STATUS_DROPPED;
}

/* Every field of `out` is written (the output is not zeroed first), straight to the output: assembling the record
 * on the stack and copying it whole stalls on narrow stores read back wide. */
static void convert(const uint8_t *record, const field *fields, int v6, uint64_t rate, flow_record *out) {
    if (v6) {
        const uint8_t *src = record + fields[F_SRC6].offset, *dst = record + fields[F_DST6].offset;
        out->src_hi = be_uint(src, 8);
        out->src_lo = be_uint(src + 8, 8);
        out->dst_hi = be_uint(dst, 8);
        out->dst_lo = be_uint(dst + 8, 8);
    } else {
        out->src_hi = 0;
        out->src_lo = be_uint(record + fields[F_SRC4].offset, 4) | SLUICE_V4_MAPPED;
        out->dst_hi = 0;
        out->dst_lo = be_uint(record + fields[F_DST4].offset, 4) | SLUICE_V4_MAPPED;
    }
    out->ipv6 = (uint8_t)v6;
    out->bytes = value_of(record, &fields[F_BYTES]) * rate;
    out->packets = value_of(record, &fields[F_PACKETS]) * rate;
    out->sampling = (uint32_t)rate;
    out->proto = (uint8_t)value_of(record, &fields[F_PROTO]);
    out->tcp_flags = (uint8_t)(value_of(record, &fields[F_TCP_FLAGS]) & 0xFF);
    out->sport = (uint16_t)value_of(record, &fields[F_SPORT]);
    out->dport = (uint16_t)value_of(record, &fields[F_DPORT]);
    out->frag = (value_of(record, &fields[F_FRAGMENT_OFFSET]) & 0x1FFF) != 0 ||
                (value_of(record, &fields[F_FRAGMENT_FLAGS]) & IPFIX_MORE_FRAGMENTS) != 0;
}

/*
 * Converts the records of one template: `counts[i]` records of `stride` bytes from `starts[i]`, for each of `runs`
 * runs, in order. `field_map` holds FIELDS (offset, width) pairs; `sampler_ids` (sorted) and `sampler_rates` the
 * domain's announced rates; `fallback` the rate of records with none of their own (at least 1).
 *
 * Returns the number of flows written to `out` (which holds `capacity`): every delivered record when the map has an
 * address pair, none otherwise. Records the exporter marks dropped or consumed go to `gone` instead, which must hold
 * `capacity` too when the map has a forwarding status (it is not touched otherwise); their number is stored in
 * `*gone_count`. Negative when a record or field falls outside the buffer or an output is too small or missing;
 * nothing is written then.
 */
int64_t sluice_tpl_convert(const uint8_t *buf, int64_t buf_len, const int64_t *starts, const int64_t *counts,
                           int64_t runs, int64_t stride, const int64_t *field_map, const uint64_t *sampler_ids,
                           const uint64_t *sampler_rates, int64_t samplers, uint64_t fallback, flow_record *out,
                           int64_t capacity, flow_record *gone, int64_t *gone_count) {
    const field *fields = (const field *)field_map;
    const field *status = &fields[F_FORWARDING_STATUS];
    if (buf_len < 0 || stride < 1 || runs < 0 || samplers < 0 || !fields_ok(fields, stride) || gone_count == NULL ||
        (present(status) && gone == NULL)) {
        return ERROR_FIELDS;
    }
    *gone_count = 0;
    int64_t total = 0;
    for (int64_t r = 0; r < runs; r++) {
        const int64_t start = starts[r], count = counts[r];
        if (start < 0 || count < 0 || start > buf_len || count > (buf_len - start) / stride) {
            return ERROR_BOUNDS;
        }
        if (count > capacity - total) {
            return ERROR_CAPACITY;
        }
        total += count;
    }
    const int v6 = present(&fields[F_SRC6]) && present(&fields[F_DST6]);
    if (!v6 && !(present(&fields[F_SRC4]) && present(&fields[F_DST4]))) {
        return 0;
    }
    sampler_table table = {sampler_ids, sampler_rates, samplers, fallback, 0, 0, 0};
    flow_record *flow = out;
    if (!present(status)) { /* most exporters: every record is a flow, and the loop tests nothing more */
        for (int64_t r = 0; r < runs; r++) {
            const uint8_t *record = buf + starts[r];
            for (int64_t k = 0; k < counts[r]; k++, record += stride) {
                convert(record, fields, v6, rate_of(record, fields, &table), flow++);
            }
        }
        return flow - out;
    }
    flow_record *lost = gone;
    for (int64_t r = 0; r < runs; r++) {
        const uint8_t *record = buf + starts[r];
        for (int64_t k = 0; k < counts[r]; k++, record += stride) {
            convert(record, fields, v6, rate_of(record, fields, &table), delivered(record, status) ? flow++ : lost++);
        }
    }
    *gone_count = lost - gone;
    return flow - out;
}
