/*
 * NetFlow v5 records into flow records. Python validates the headers of the batch (vectorised, with sequence
 * tracking and sampling); this loop only expands each packet's `count` fixed 48-byte records, which numpy does in
 * a gather plus a dozen column conversions.
 */
#include "sluice_native.h"

#define V5_HEADER 24
#define V5_RECORD 48

/*
 * For packet i at offsets[i] with counts[i] records and sampling rate sampling[i], write every record to `out`
 * (capacity entries) in packet order. Returns the records written, or -1 when a packet's records do not lie
 * inside the buffer or `out` is too small (the caller then uses its numpy path).
 */
int64_t sluice_nf5_records(const uint8_t *buf, int64_t buf_len, const int64_t *offsets, const int64_t *counts,
                           const uint64_t *sampling, int64_t n, flow_record *out, int64_t capacity) {
    int64_t written = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t count = counts[i];
        if (offsets[i] < 0 || count < 0 || offsets[i] + V5_HEADER + count * V5_RECORD > buf_len) return -1;
        if (written + count > capacity) return -1;
        const uint64_t rate = sampling[i];
        const uint8_t *record = buf + offsets[i] + V5_HEADER;
        for (int64_t j = 0; j < count; j++, record += V5_RECORD) {
            flow_record *f = &out[written++];
            f->src_hi = 0;
            f->src_lo = SLUICE_V4_MAPPED | sluice_be32(record);
            f->dst_hi = 0;
            f->dst_lo = SLUICE_V4_MAPPED | sluice_be32(record + 4);
            f->packets = (uint64_t)sluice_be32(record + 16) * rate;
            f->bytes = (uint64_t)sluice_be32(record + 20) * rate;
            f->sampling = (uint32_t)rate;
            f->sport = sluice_be16(record + 32);
            f->dport = sluice_be16(record + 34);
            f->tcp_flags = record[37];
            f->proto = record[38];
            f->frag = 0;
            f->ipv6 = 0;
        }
    }
    return written;
}
