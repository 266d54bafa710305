/*
 * The flow record every decoder produces: collector.records.FLOW_DTYPE, packed, in the machine's byte order
 * (numpy's "<" fields, so the Python side uses the compiled helper only on little-endian machines).
 */
#ifndef SLUICE_FLOW_RECORD_H
#define SLUICE_FLOW_RECORD_H

#include <stdint.h>

typedef struct __attribute__((packed)) {
    uint64_t src_hi, src_lo, dst_hi, dst_lo, bytes, packets;
    uint32_t sampling;
    uint16_t sport, dport;
    uint8_t proto, tcp_flags, frag, ipv6;
} flow_record;

_Static_assert(sizeof(flow_record) == 60, "flow_record must match collector.records.FLOW_DTYPE");

/* Low half of an IPv4-mapped IPv6 address (::ffff:a.b.c.d) before the IPv4 address is OR-ed in. */
#define SLUICE_V4_MAPPED 0xFFFF00000000ULL

static inline uint32_t sluice_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint16_t sluice_be16(const uint8_t *p) { return (uint16_t)(((unsigned)p[0] << 8) | p[1]); }

#endif
