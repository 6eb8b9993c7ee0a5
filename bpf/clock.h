/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* clock.h: packet time.
 *
 * pcap input: the capture time the driver put in skb->tstamp, always.
 * Live capture: reading the exact clock (bpf_ktime_get_ns) costs ~25-30 ns
 * on a VM, as much as the rest of a packet's tracking. So each CPU keeps
 * the exact time of its first packet in the current jiffy, and later
 * packets of that jiffy reuse it (a jiffies read the verifier inlines): a
 * stamp never ahead of the packet and at most one tick (4 ms at HZ=250)
 * behind, on the same clock as the exact one. A packet whose time can reach
 * the logs exactly (ca_time_matters()) reads the exact clock itself.
 */
#ifndef CA_CLOCK_H
#define CA_CLOCK_H

/* The exact time, for the timer sweep. */
static __always_inline __u64 ca_now(struct __sk_buff *skb)
{
#if CA_PCAP_MODE
	return skb->tstamp;
#else
	return bpf_ktime_get_ns();
#endif
}

/* Stamp a packet as it enters: exact for pcap input; live, the CPU's
 * time of this jiffy (exact when it is the jiffy's first packet). */
static __always_inline void ca_packet_clock(struct __sk_buff *skb, struct ca_clock *clock, struct ca_packet *p)
{
#if CA_PCAP_MODE
	p->ts = skb->tstamp;
#else
	__u64 jiffies = bpf_jiffies64();

	if (jiffies != clock->jiffies) {
		clock->jiffies = jiffies;
		clock->ns = bpf_ktime_get_ns();
		p->ts_exact = 1;
	}
	p->ts = clock->ns;
#endif
}

static __always_inline void ca_exact_time(struct ca_packet *p)
{
#if !CA_PCAP_MODE
	if (!p->ts_exact) {
		p->ts = bpf_ktime_get_ns();
		p->ts_exact = 1;
	}
#endif
}

/* A live packet stamped with its jiffy's time may read earlier than an
 * exact one before it: last_ns only moves forward. pcap input keeps Zeek's
 * rule (the last packet's time, as captured). */
static __always_inline void ca_touch(struct ca_conn *c, struct ca_packet *p)
{
#if CA_PCAP_MODE
	c->last_ns = p->ts;
#else
	if (p->ts > c->last_ns)
		c->last_ns = p->ts;
#endif
}

/* Whether a packet's time can reach the logs exactly: the first one in
 * each direction (start, and the reply that ends a request/response flow),
 * TCP's SYN/FIN/RST and everything after a side closed (handshake and
 * close times, and a duration that ends on the last ACK), and DNS messages
 * (dns.log ts and rtt). The bulk of a long flow only moves last_ns, by less
 * than a tick. */
static __always_inline int ca_time_matters(struct ca_packet *p, struct ca_conn *c, int from_orig, __u8 proto)
{
	if (!c->ep[from_orig ? 0 : 1].pkts)
		return 1;
	if (proto == CA_IPPROTO_TCP &&
	    ((p->tcp_flags & (CA_TH_SYN | CA_TH_FIN | CA_TH_RST)) ||
	     ((c->ep[0].flags | c->ep[1].flags) & (CA_EP_SAW_FIN | CA_EP_SAW_RST))))
		return 1;
	return (c->flags & CA_CONN_DNS) && p->payload_len > 0;
}

#endif /* CA_CLOCK_H */
