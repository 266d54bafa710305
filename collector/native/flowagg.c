/*
 * Per-record loops of the collector's per-second aggregation (collector/aggregate.py), in one pass each.
 *
 * numpy needs several passes and a sort or a dense table per grouping; these loops group records with one
 * open-addressing hash table sized by the caller and add into caller-owned arrays. Python keeps everything that
 * is per group rather than per record (ordering, ranking, naming), so both paths give the same increments.
 *
 * Every function trusts only what the caller sized: `n` records, a hash table of `slots` entries (a power of two,
 * at least twice the most keys there can be) and output arrays of `capacity` entries.
 */
#include <string.h>

#include "sluice_native.h"

#define PROTO_TCP 6
#define PROTO_UDP 17
#define EMPTY (-1)

static inline uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t capped(uint64_t value, uint64_t cap) { return value < cap ? value : cap; }

/*
 * Groups records by destination host within their prefix and gives each record its cell in a (group x combo)
 * table: cell = group * combos + combo. A record's combo is 2 * base class + fragment bit, the base class coming
 * from the protocol, the TCP flags or (unfragmented UDP) the source port, exactly as `collector.aggregate.combos`.
 *
 * local[i]: the record's prefix number within the batch. Outputs: group_prefix/hi/lo (one row per group, in order
 * of first appearance) and cell[i]. Returns the group count, or -1 when more groups than `capacity` appear
 * (cannot happen with capacity >= n).
 */
long sluice_agg_hosts(const flow_record *flows, const int64_t *local, long n, const int64_t *base_by_proto,
                      const int64_t *base_by_flags, const int64_t *base_by_port, long combos, int64_t *hash,
                      long slots, int64_t *group_prefix, uint64_t *group_hi, uint64_t *group_lo, long capacity,
                      int64_t *cell) {
    const uint64_t mask = (uint64_t)slots - 1;
    long groups = 0;
    for (long s = 0; s < slots; s++) hash[s] = EMPTY;
    for (long i = 0; i < n; i++) {
        const flow_record *r = &flows[i];
        const int64_t prefix = local[i];
        uint64_t h = mix(r->dst_lo ^ mix(r->dst_hi ^ mix((uint64_t)prefix))) & mask;
        int64_t group;
        for (;;) {
            group = hash[h];
            if (group == EMPTY) {
                if (groups >= capacity) return -1;
                group = groups++;
                hash[h] = group;
                group_prefix[group] = prefix;
                group_hi[group] = r->dst_hi;
                group_lo[group] = r->dst_lo;
                break;
            }
            if (group_lo[group] == r->dst_lo && group_hi[group] == r->dst_hi && group_prefix[group] == prefix) break;
            h = (h + 1) & mask;
        }
        const int frag = r->frag != 0;
        int64_t base = base_by_proto[r->proto];
        if (r->proto == PROTO_TCP) base = base_by_flags[r->tcp_flags];
        if (r->proto == PROTO_UDP && !frag) base = base_by_port[r->sport];
        cell[i] = group * combos + base * 2 + frag;
    }
    return groups;
}

/* Adds every record's bytes and packets (each capped at `cap`) into its cell of two zeroed tables. */
void sluice_agg_cells(const flow_record *flows, const int64_t *cell, long n, uint64_t cap, uint64_t *table_b,
                      uint64_t *table_p) {
    for (long i = 0; i < n; i++) {
        table_b[cell[i]] += capped(flows[i].bytes, cap);
        table_p[cell[i]] += capped(flows[i].packets, cap);
    }
}

/*
 * Bytes and packets per (prefix, value of one header field), the key being local * width + value, for the
 * field named by `field`: 0 protocol, 1 TCP flags, 2 source port, 3 destination port.
 * Outputs one row per distinct key in order of first appearance; returns the key count, -1 past `capacity`,
 * -2 for an unknown field.
 */
long sluice_agg_breakdown(const flow_record *flows, const int64_t *local, long n, int field, long width,
                          uint64_t cap, int64_t *hash, long slots, int64_t *keys, uint64_t *sum_b, uint64_t *sum_p,
                          long capacity) {
    if (field < 0 || field > 3) return -2;
    const uint64_t mask = (uint64_t)slots - 1;
    long found = 0;
    for (long s = 0; s < slots; s++) hash[s] = EMPTY;
    for (long i = 0; i < n; i++) {
        const flow_record *r = &flows[i];
        int64_t value;
        switch (field) {
            case 0: value = r->proto; break;
            case 1: value = r->tcp_flags; break;
            case 2: value = r->sport; break;
            default: value = r->dport; break;
        }
        const int64_t key = local[i] * width + value;
        uint64_t h = mix((uint64_t)key) & mask;
        int64_t row;
        for (;;) {
            row = hash[h];
            if (row == EMPTY) {
                if (found >= capacity) return -1;
                row = found++;
                hash[h] = row;
                keys[row] = key;
                sum_b[row] = 0;
                sum_p[row] = 0;
                break;
            }
            if (keys[row] == key) break;
            h = (h + 1) & mask;
        }
        sum_b[row] += capped(r->bytes, cap);
        sum_p[row] += capped(r->packets, cap);
    }
    return found;
}

/*
 * The heaviest `limit` rows of each prefix among breakdown rows (prefix = keys[r] / width), heavier first and, on
 * equal weight, smaller key first: the same choice as `collector.aggregate._top_per_prefix`. `best` holds
 * prefixes x limit row numbers, -1 where a prefix has fewer rows; each prefix's list is kept sorted while rows
 * stream by, so the cost is rows x (a few comparisons) instead of a sort of every row.
 */
void sluice_agg_top(const int64_t *keys, const uint64_t *weight, long rows, long width, long prefixes, long limit,
                    int64_t *best) {
    for (long s = 0; s < prefixes * limit; s++) best[s] = EMPTY;
    for (long r = 0; r < rows; r++) {
        const int64_t prefix = keys[r] / width;
        if (prefix < 0 || prefix >= prefixes) continue;
        int64_t *list = best + prefix * limit;
        long at = limit;  /* where row r goes; limit = nowhere */
        while (at > 0) {
            const int64_t other = list[at - 1];
            if (other != EMPTY && (weight[other] > weight[r] || (weight[other] == weight[r] && keys[other] < keys[r])))
                break;
            at--;
        }
        if (at == limit) continue;
        memmove(list + at + 1, list + at, (size_t)(limit - at - 1) * sizeof(int64_t));
        list[at] = r;
    }
}
