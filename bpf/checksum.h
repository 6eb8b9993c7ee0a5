/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* checksum.h: Internet checksums, validated only where they are known to be complete.
 *
 * Compiled in only for pcap input (CA_VALIDATE_CHECKSUMS=1), the way Zeek
 * validates unless run with -C. Live packets at TC egress often carry a
 * partial checksum the NIC fills in later (offload), so live capture never
 * judges them.
 */
#ifndef CA_CHECKSUM_H
#define CA_CHECKSUM_H

#define CA_CSUM_CHUNK 512          /* bpf_csum_diff's largest input */
#define CA_CSUM_MAX_CHUNKS 8       /* 4 KiB: the largest packet BPF_PROG_TEST_RUN accepts */

/* A per-CPU buffer from capture.bpf.c (bcc rewrites map access only in the main file). */
struct ca_csum_scratch {
	__u8 buf[CA_CSUM_CHUNK + 4];
};

static __always_inline __u16 ca_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

#if CA_VALIDATE_CHECKSUMS
/* One's-complement sum of len bytes at off, added to seed. Returns -1 if the
 * bytes are not all present. Chunks are even-sized, so only the last one can
 * be odd; it is zero-padded to a multiple of four, which leaves the sum intact. */
static __always_inline __s64 ca_csum_skb(struct __sk_buff *skb, struct ca_csum_scratch *s,
					 __u32 off, __u32 len, __u32 seed)
{
	__s64 sum = seed;

	if (!s)
		return -1;
#pragma unroll
	for (int i = 0; i < CA_CSUM_MAX_CHUNKS; i++) {
		__u32 n, words;
		if (len == 0)
			break;
		n = len > CA_CSUM_CHUNK ? CA_CSUM_CHUNK : len;
		words = (n + 3) & ~3u;
		*(__u32 *)&s->buf[(words - 4) & (CA_CSUM_CHUNK - 4)] = 0;
		/* ((x - 1) & (CHUNK - 1)) + 1 == x for 1 <= x <= CHUNK: bounded for the verifier. */
		if (bpf_skb_load_bytes(skb, off, s->buf, ((n - 1) & (CA_CSUM_CHUNK - 1)) + 1) < 0)
			return -1;
		sum = bpf_csum_diff(0, 0, (__be32 *)s->buf, ((words - 1) & (CA_CSUM_CHUNK - 1)) + 1, (__u32)sum);
		if (sum < 0)
			return -1;
		off += n;
		len -= n;
	}
	return len == 0 ? sum : -1;
}

#endif

#endif /* CA_CHECKSUM_H */
