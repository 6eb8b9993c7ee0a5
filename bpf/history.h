/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* history.h: Zeek's connection history string, built in the kernel.
 *
 * Upper-case letters are the originator's, lower-case the responder's. Most
 * letters are recorded once per side (a bit in history_seen); C, T, W and G
 * repeat at 1, 10, 100, ... occurrences, as Zeek's scaled history entries do.
 */
#ifndef CA_HISTORY_H
#define CA_HISTORY_H

/* Bits of history_seen for the originator; the responder's are << 16. */
#define CA_HIST_SYN       (1u << 0)
#define CA_HIST_FIN       (1u << 1)
#define CA_HIST_RST       (1u << 2)
#define CA_HIST_FIN_RST   (1u << 3)
#define CA_HIST_DATA      (1u << 4)
#define CA_HIST_ACK       (1u << 5)
#define CA_HIST_MULTI     (1u << 6)
#define CA_HIST_ANALYZER_LIMIT (1u << 10)   /* 'X': connection-level, always upper case */

static __always_inline void ca_hist_append(struct ca_conn *c, char code)
{
	__u8 n = c->history_len;
	if (n < CA_HISTORY_MAX) {
		c->history[n & (CA_HISTORY_MAX - 1)] = code;
		c->history_len = n + 1;
	}
}

static __always_inline char ca_hist_case(int from_orig, char code)
{
	return from_orig ? code : code + ('a' - 'A');
}

/* Record code for this side unless already recorded. Returns 1 if it had
 * been recorded before (Zeek's CheckHistory), 0 if it was added now. */
static __always_inline int ca_hist_once(struct ca_conn *c, int from_orig, __u32 bit, char code)
{
	__u64 mask = from_orig ? bit : (__u64)bit << 16;
	if (c->history_seen & mask)
		return 1;
	c->history_seen |= mask;
	ca_hist_append(c, ca_hist_case(from_orig, code));
	return 0;
}

/* Count one more occurrence; add the letter at 1, 10, 100, ... */
static __always_inline void ca_hist_scaled(struct ca_conn *c, int from_orig, char code, __u32 *counter)
{
	__u32 n = ++*counter;
	if (n == 1 || n == 10 || n == 100 || n == 1000 || n == 10000 || n == 100000 ||
	    n == 1000000 || n == 10000000 || n == 100000000 || n == 1000000000)
		ca_hist_append(c, ca_hist_case(from_orig, code));
}

/* ca_hist_scaled for count events at once: count is below 10, so at most one
 * of the thresholds is passed. */
static __always_inline void ca_hist_scaled_by(struct ca_conn *c, int from_orig, char code, __u32 *counter,
					      __u32 count)
{
	__u32 before = *counter, n = before + count, t = 1, i;

	*counter = n;
	for (i = 0; i < 10; i++) {
		if (before < t && n >= t) {
			ca_hist_append(c, ca_hist_case(from_orig, code));
			return;
		}
		t *= 10;
	}
}

/* Zeek's FlipRoles: the responder becomes the originator, '^' marks it.
 * The endpoints (state, sequence numbers, packet counts) follow their hosts. */
static __always_inline void ca_flip_roles(struct ca_conn *c)
{
	struct ca_endpoint tmp;

	__builtin_memcpy(&tmp, &c->ep[0], sizeof(tmp));
	__builtin_memcpy(&c->ep[0], &c->ep[1], sizeof(tmp));
	__builtin_memcpy(&c->ep[1], &tmp, sizeof(tmp));
	c->orig_slot ^= 1;
	/* Like Zeek, the once-only letter bits stay with the role, not the endpoint. */
	c->flags ^= CA_CONN_FLIPPED;
	c->flags &= ~CA_CONN_PARTIAL;      /* TCP: is_partial is reset by a flip */
	ca_hist_append(c, '^');
}

/* A UDP flip (DNS or NTP analyzer): only the packet counters (Zeek's
 * ConnSize) follow the hosts; the payload lengths, their ACTIVE states and
 * the checksum counters stay with the role, as in Zeek's UDP adapter. */
static __always_inline void ca_flip_roles_udp(struct ca_conn *c)
{
	__u64 pkts = c->ep[0].pkts, ip_bytes = c->ep[0].ip_bytes;

	c->ep[0].pkts = c->ep[1].pkts;
	c->ep[0].ip_bytes = c->ep[1].ip_bytes;
	c->ep[1].pkts = pkts;
	c->ep[1].ip_bytes = ip_bytes;
	c->orig_slot ^= 1;
	c->flags ^= CA_CONN_FLIPPED;
	ca_hist_append(c, '^');
}

#endif /* CA_HISTORY_H */
