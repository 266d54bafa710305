/*
 * The functions the collector's compiled helper exports, as Python calls them. Every C file includes this header,
 * so the compiler holds each definition to it; build.py declares the same text to cffi, so the Python side's
 * calls are compiled against it too. Arrays are passed as pointers to contiguous data, lengths as counts.
 */
#ifndef SLUICE_NATIVE_H
#define SLUICE_NATIVE_H

#include <stdint.h>

#include "flow_record.h"

/* NetFlow v5: expand `n` datagrams' records into `out`; the number written, or -1 past `capacity`. */
int64_t sluice_nf5_records(const uint8_t *buf, int64_t buf_len, const int64_t *offsets, const int64_t *counts,
                           const uint64_t *sampling, int64_t n, flow_record *out, int64_t capacity);

/* sFlow v5: decode `n` datagrams into `out`, counting what was skipped in `counters`. */
int64_t sluice_sflow_decode(const uint8_t *buf, int64_t buf_len, const int64_t *offsets, const int64_t *lengths,
                            int64_t n, flow_record *out, int64_t capacity, int64_t *counters);

/* NetFlow v9 / IPFIX: convert runs of template records straight from the receive buffer; records the network
 * dropped or consumed go to `gone`. */
int64_t sluice_tpl_convert(const uint8_t *buf, int64_t buf_len, const int64_t *starts, const int64_t *counts,
                           int64_t runs, int64_t stride, const int64_t *field_map, const uint64_t *sampler_ids,
                           const uint64_t *sampler_rates, int64_t samplers, uint64_t fallback, flow_record *out,
                           int64_t capacity, flow_record *gone, int64_t *gone_count);

/* Aggregation: host x class cells, their sums, per-field breakdowns and the top rows per prefix. */
long sluice_agg_hosts(const flow_record *flows, const int64_t *local, long n, const int64_t *base_by_proto,
                      const int64_t *base_by_flags, const int64_t *base_by_port, long combos, int64_t *hash,
                      long slots, int64_t *group_prefix, uint64_t *group_hi, uint64_t *group_lo, long capacity,
                      int64_t *cell);
void sluice_agg_cells(const flow_record *flows, const int64_t *cell, long n, uint64_t cap, uint64_t *table_b,
                      uint64_t *table_p);
long sluice_agg_breakdown(const flow_record *flows, const int64_t *local, long n, int field, long width,
                          uint64_t cap, int64_t *hash, long slots, int64_t *keys, uint64_t *sum_b, uint64_t *sum_p,
                          long capacity);
void sluice_agg_top(const int64_t *keys, const uint64_t *weight, long rows, long width, long prefixes, long limit,
                    int64_t *best);

#endif
