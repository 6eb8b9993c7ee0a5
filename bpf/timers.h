/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* timers.h: when a connection ends, by Zeek's timers, evaluated lazily.
 *
 * Zeek fires timers as packet time advances. Between two packets of a
 * connection its state cannot change, so evaluating the armed timers in
 * deadline order when the next packet arrives (or when user space sweeps)
 * reaches the same verdict Zeek's timer queue would. The one function below
 * is used by both paths, so there is one implementation of "has it ended".
 */
#ifndef CA_TIMERS_H
#define CA_TIMERS_H

#ifndef CA_TCP_SYN_TIMEOUT_NS
#define CA_TCP_SYN_TIMEOUT_NS 5000000000ULL          /* tcp_SYN_timeout */
#endif
#ifndef CA_IP_TUNNEL_TIMEOUT_NS
#define CA_IP_TUNNEL_TIMEOUT_NS 86400000000000ULL    /* Tunnel::ip_tunnel_timeout */
#endif
#ifndef CA_TCP_PORT_INACTIVITY_NS
#define CA_TCP_PORT_INACTIVITY_NS 3600000000000ULL   /* Conn::port_inactivity_timeouts */
#endif

static __always_inline __u64 ca_inactivity_timeout(struct ca_conn *c, __u8 proto)
{
	switch (proto) {
	case CA_IPPROTO_TCP:
		/* udp_inactivity_timeout until the handshake is left (Zeek sets it
		 * when the TCP adapter is made), then tcp_inactivity_timeout, or
		 * an interactive port's Conn::port_inactivity_timeouts. */
		if (c->flags & CA_CONN_PORT_TIMEOUT)
			return CA_TCP_PORT_INACTIVITY_NS;
		if (c->flags & CA_CONN_ESTABLISHED_TIMEOUT)
			return CA_TCP_INACTIVITY_NS;
		return CA_UDP_INACTIVITY_NS;
	case CA_IPPROTO_UDP: return CA_UDP_INACTIVITY_NS;
	case CA_IPPROTO_ICMP:
	case CA_IPPROTO_ICMPV6: return CA_ICMP_INACTIVITY_NS;
	}
	return (c->flags & CA_CONN_IP_TUNNEL) ? CA_IP_TUNNEL_TIMEOUT_NS : CA_UNKNOWN_IP_INACTIVITY_NS;
}

/* First firing of the DNS analyzer's periodic expiry check (every
 * dns_session_timeout from the first packet) that comes at least
 * dns_session_timeout - 1 s after the last packet. */
static __always_inline __u64 ca_dns_expiry(struct ca_conn *c)
{
	__u64 due = c->last_ns + CA_DNS_SESSION_TIMEOUT_NS - 1000000000ULL;
	__u64 k;

	if (due <= c->first_ns)
		return c->first_ns + CA_DNS_SESSION_TIMEOUT_NS;
	k = (due - c->first_ns + CA_DNS_SESSION_TIMEOUT_NS - 1) / CA_DNS_SESSION_TIMEOUT_NS;
	if (k == 0)
		k = 1;
	return c->first_ns + k * CA_DNS_SESSION_TIMEOUT_NS;
}

static __always_inline int ca_expire_check_ends(struct ca_conn *c)
{
	struct ca_endpoint *o = &c->ep[0], *r = &c->ep[1];
	int o_closed = o->flags & CA_EP_DID_CLOSE, r_closed = r->flags & CA_EP_DID_CLOSE;

	if ((o_closed || r_closed) &&
	    ((o_closed && r_closed) || o->state == CA_TCP_RESET || r->state == CA_TCP_RESET ||
	     o->state == CA_TCP_INACTIVE || r->state == CA_TCP_INACTIVE))
		return 1;
	return o->state == CA_TCP_INACTIVE && r->state == CA_TCP_INACTIVE;
}

static __always_inline __u64 ca_min_deadline(__u64 best, __u64 t)
{
	return t && t < best ? t : best;
}

/* Zeek's ExpireTimer: a check every tcp_session_timer that ends the
 * connection once it has been quiet for tcp_connection_linger and one side
 * has closed (or nothing valid was ever seen). One chain starts
 * tcp_SYN_timeout after the connection's creation, another after a side
 * closes while its peer is still open. Returns when the chain starting at
 * d ends the connection, assuming each check runs on time. */
static __always_inline __u64 ca_expire_chain_end(struct ca_conn *c, __u64 d)
{
	__u64 quiet = c->last_ns + CA_TCP_CONNECTION_LINGER_NS;

	if (!d)
		return 0;
	if (d > quiet)
		return d;
	return d + ((quiet - d) / CA_TCP_SESSION_TIMER_NS + 1) * CA_TCP_SESSION_TIMER_NS;
}

static __always_inline __u64 ca_expire_kill_time(struct ca_conn *c)
{
	__u64 end = ~0ULL;

	if (c->flags & CA_CONN_FINISHED)
		return 0;
	/* Cheap first: a connection with both sides active is never ended here. */
	if (!((c->ep[0].flags | c->ep[1].flags) & CA_EP_DID_CLOSE) &&
	    (c->ep[0].state != CA_TCP_INACTIVE || c->ep[1].state != CA_TCP_INACTIVE))
		return 0;
	if (!ca_expire_check_ends(c))
		return 0;
	/* A complete close cancels the analyzer timers, the creation chain too. */
	if (!c->close_deadline)
		end = ca_min_deadline(end, ca_expire_chain_end(c, c->first_ns + CA_TCP_SYN_TIMEOUT_NS));
	end = ca_min_deadline(end, ca_expire_chain_end(c, c->expire_deadline));
	return end == ~0ULL ? 0 : end;
}

static __always_inline __u64 ca_min_u64(__u64 a, __u64 b)
{
	return a < b ? a : b;
}

/* No connection of proto ends sooner than this after its first packet: every
 * deadline above is a packet's time (the first or a later one) plus one of
 * these. A replay's sweeps send a connection's key from then on only
 * (recorder/kernel/conn_keys.py): a DNS lookup's connection, over in 10 s,
 * is looked at once instead of at every sweep of the 10. */
static __always_inline __u64 ca_min_lifetime(__u8 proto)
{
	switch (proto) {
	case CA_IPPROTO_TCP:
		return ca_min_u64(ca_min_u64(ca_min_u64(CA_UDP_INACTIVITY_NS, CA_TCP_INACTIVITY_NS),
					     ca_min_u64(CA_TCP_PORT_INACTIVITY_NS, CA_TCP_CLOSE_DELAY_NS)),
				  ca_min_u64(ca_min_u64(CA_TCP_ATTEMPT_DELAY_NS, CA_TCP_SYN_TIMEOUT_NS),
					     CA_TCP_SESSION_TIMER_NS));
	case CA_IPPROTO_UDP:
		return ca_min_u64(CA_UDP_INACTIVITY_NS, CA_DNS_SESSION_TIMEOUT_NS);
	case CA_IPPROTO_ICMP:
	case CA_IPPROTO_ICMPV6:
		return CA_ICMP_INACTIVITY_NS;
	}
	return ca_min_u64(CA_UNKNOWN_IP_INACTIVITY_NS, CA_IP_TUNNEL_TIMEOUT_NS);
}

/* Returns the packet time at which the connection ended, or 0 if it is
 * still alive at now. Each timer either ends the connection when it fires
 * or leaves every other timer's verdict unchanged, so the connection ends
 * at the earliest of the per-timer end times. */
static __always_inline __u64 ca_conn_ended(struct ca_conn *c, __u8 proto, __u64 now)
{
	__u64 end = c->last_ns + ca_inactivity_timeout(c, proto);

	if ((c->flags & CA_CONN_DNS) && proto == CA_IPPROTO_UDP)
		end = ca_min_deadline(end, ca_dns_expiry(c));
	if (proto == CA_IPPROTO_TCP) {
		end = ca_min_deadline(end, c->close_deadline);
		/* The attempt and expire timers do nothing once Zeek's is_active is cleared. */
		if (!(c->flags & CA_CONN_FINISHED)) {
			/* attempt: still only a SYN with no answer when it fires */
			if ((c->ep[0].state == CA_TCP_SYN_SENT || c->ep[0].state == CA_TCP_SYN_ACK_SENT) &&
			    c->ep[1].state == CA_TCP_INACTIVE)
				end = ca_min_deadline(end, c->attempt_deadline);
			end = ca_min_deadline(end, ca_expire_kill_time(c));
		}
	}
	return end <= now ? end : 0;
}

#endif /* CA_TIMERS_H */
