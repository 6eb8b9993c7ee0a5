/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* policy.h: blocking mode: the allowlist, enforced in the kernel (CA_BLOCK=1).
 *
 * A destination is allowed when
 *   - an allow_cidrs prefix holds its address and its port set holds the port
 *     (user space merged the port sets, so the longest prefix decides), or
 *   - a DNS answer to a query for an allowed name carried its address, and
 *     that answer's TTL has not run out (allow_addrs).
 * DNS answers are read at TC ingress, before the socket can see them, so an
 * application's first connect() to a freshly resolved name already passes.
 * DNS queries are judged by name at TC egress; a query for a name the policy
 * does not list is dropped, so a tunnel through an unlisted domain carries
 * nothing. DNS itself only flows to allowed addresses (the policy's, plus the
 * resolvers user space adds on port 53), so a forged answer cannot allow
 * anything either.
 *
 * Names are matched without trusting a hash: allow_names is keyed by a hash
 * of each candidate suffix, and a hit is confirmed by comparing the name.
 *
 * Each job (job_scope.h) has a policy of its own: every entry of the three
 * maps names its job, and every lookup asks for the job being judged.
 *
 * Needs: ca_count() and struct ca_packet; the maps' accessors are declared
 * below and defined in capture.bpf.c.
 */
#ifndef CA_POLICY_H
#define CA_POLICY_H

#ifndef CA_DNS_TTL_MIN_NS
#define CA_DNS_TTL_MIN_NS 10000000000ULL     /* answers with TTL 0 stay usable for 10 s */
#endif
#define CA_DNS_TTL_MAX_S 86400
#define CA_NAME_LABELS_MAX 32                 /* suffixes tried per name; longer names are refused */
#define CA_NAME_CANDIDATES 4                  /* suffixes whose hash matched, compared in full */
#define CA_FNV_OFFSET 0xcbf29ce484222325ULL
#define CA_FNV_PRIME 0x100000001b3ULL
#define CA_DNS_TYPE_A 1
#define CA_DNS_TYPE_AAAA 28

#ifndef CA_ALLOW_CIDRS_MAX
#define CA_ALLOW_CIDRS_MAX 4096
#endif
#ifndef CA_ALLOW_NAMES_MAX
#define CA_ALLOW_NAMES_MAX 4096
#endif
#ifndef CA_ALLOW_ADDRS_MAX
#define CA_ALLOW_ADDRS_MAX 65536               /* learnt addresses; the oldest go first (LRU) */
#endif

/* Per-CPU work area for one DNS message's question name. */
struct ca_dns_name {
	char dotted[CA_NAME_MAX + 64];  /* dotted, lower case, zero-padded: labels land whole,
					 * and it is compared 8 bytes at a time */
	__u16 label_start[CA_NAME_LABELS_MAX];
	__u64 suffix_hash[CA_NAME_LABELS_MAX];
	__u16 suffix_start[CA_NAME_LABELS_MAX];
	__u32 len;                      /* bytes of dotted[] */
	__u32 suffixes;
	__u32 wire_len;                 /* bytes of the name on the wire, the terminating zero included */
	__u32 labels;
	__u16 candidate[CA_NAME_CANDIDATES];  /* suffix indexes whose hash matched a rule */
	struct ca_port_set ports;       /* what the matching rules allow */
	__u16 pad;
	/* A response to learn from, handed to the learning stage. */
	__u32 answers_off;
	__u32 answers_end;
	__u32 ancount;
	__u32 pad2;
};

/* The maps, defined in capture.bpf.c (bcc rewrites map operations only there). */
static __always_inline void *ca_event_new(__u32 type, __u32 size, __u64 ts, __u32 drop_stat);
static __always_inline void ca_event_submit(void *ev);
static __always_inline struct ca_port_set *ca_allow_cidrs_lookup(struct ca_cidr_key *k);
static __always_inline struct ca_name_rule *ca_allow_names_lookup(struct ca_name_key *key);
static __always_inline struct ca_learnt_addr *ca_allow_addrs_lookup(struct ca_learnt_key *key);
static __always_inline int ca_allow_addrs_update(struct ca_learnt_key *key, struct ca_learnt_addr *v);
static __always_inline struct ca_dns_name *ca_dns_name_work(void);

static __always_inline int ca_port_in(const struct ca_port_set *s, __u16 port)
{
	if (s->any)
		return 1;
#pragma unroll
	for (int i = 0; i < CA_POLICY_PORTS_MAX; i++)
		if (i < s->count && s->ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int ca_port_set_empty(const struct ca_port_set *s)
{
	return !s->any && s->count == 0;
}

/* v & mask, in a form the compiler cannot drop: after a bounds check the
 * verifier may track a different copy of v than the one used as an index
 * (dns_policy.h indexes its work buffers with it). */
static __always_inline __u32 ca_bounded(__u32 v, __u32 mask)
{
	asm volatile("%0 &= %1" : "+r"(v) : "i"(mask));
	return v;
}

enum ca_port_match {
	CA_MATCH_PORT = 0,       /* the set holds this port */
	CA_MATCH_ANY = 1,        /* the set holds every port (protocols without ports) */
	CA_MATCH_SOME = 2,       /* the set holds some port (a peer that spoke first) */
};

static __always_inline int ca_ports_match(const struct ca_port_set *s, __u16 port, int how)
{
	if (how == CA_MATCH_ANY)
		return s->any;
	if (how == CA_MATCH_SOME)
		return !ca_port_set_empty(s);
	return ca_port_in(s, port);
}

static __always_inline int ca_learnt(struct ca_learnt_key *key, __u16 port, __u64 now)
{
	struct ca_learnt_addr *v;

	key->port = port;
	v = ca_allow_addrs_lookup(key);
	return v && v->expires_ns > now;
}

/* Does the job's policy allow addr, by a CIDR or by a learnt answer that has
 * not expired? (CA_MATCH_SOME cannot see a learnt port other than the one
 * asked about: a peer that spoke first is judged by CIDRs and every-port
 * answers.) */
static __always_inline int ca_addr_allowed(__u32 job, const __u8 *addr, __u16 port, int how, __u64 now)
{
	struct ca_cidr_key key = { .prefixlen = 8 + 128, .job = job };
	struct ca_learnt_key learnt = { .job = job };
	struct ca_port_set *cidr;

	__builtin_memcpy(key.addr, addr, 16);
	cidr = ca_allow_cidrs_lookup(&key);
	if (cidr && ca_ports_match(cidr, port, how))
		return 1;
	__builtin_memcpy(learnt.addr, addr, 16);
	if (ca_learnt(&learnt, 0, now))
		return 1;
	return how == CA_MATCH_PORT && port != 0 && ca_learnt(&learnt, port, now);
}

/* A destination of a local process. Ports mean something for TCP and UDP;
 * other protocols need a rule that allows every port. */
static __always_inline int ca_dest_allowed(__u32 job, const __u8 *addr, __u16 port, __u8 ip_proto, __u64 now)
{
	int how = ip_proto == CA_IPPROTO_TCP || ip_proto == CA_IPPROTO_UDP ? CA_MATCH_PORT : CA_MATCH_ANY;
	return ca_addr_allowed(job, addr, port, how, now);
}

static __always_inline void ca_emit_blocked(struct ca_conn_key *key, __u8 src_slot, __u64 conn_id,
					    struct ca_process *proc, __u32 reason, __u8 where, __u64 now,
					    struct ca_dns_name *name)
{
	struct ca_blocked_event *ev = ca_event_new(CA_EVENT_BLOCKED, sizeof(*ev), now, CA_STAT_RB_DROP_BLOCKED);

	if (!ev)
		return;
	__builtin_memcpy(&ev->key, key, sizeof(*key));
	ev->conn_id = conn_id;
	if (proc)
		__builtin_memcpy(&ev->proc, proc, sizeof(*proc));
	else
		__builtin_memset(&ev->proc, 0, sizeof(ev->proc));
	ev->reason = reason;
	ev->where = where;
	ev->src_slot = src_slot;
	if (name) {
		ev->name_len = name->len;
		__builtin_memcpy(ev->name, name->dotted, sizeof(ev->name));
	} else {
		ev->name_len = 0;
		__builtin_memset(ev->name, 0, sizeof(ev->name));
	}
	ca_event_submit(ev);
}

/* Traffic the network itself needs, allowed whatever the policy says:
 * ICMP errors (path MTU discovery among them), IPv6 neighbour discovery and
 * multicast listener messages, and DHCP. */
static __always_inline int ca_infrastructure(struct ca_packet *p)
{
	__u8 t = p->icmp_type;
	__u16 a = p->key.port[0], b = p->key.port[1];

	if (p->key.ip_proto == CA_IPPROTO_ICMP)
		return t == 3 || t == 11 || t == 12;
	if (p->key.ip_proto == CA_IPPROTO_ICMPV6)
		return (t >= 1 && t <= 4) || (t >= 130 && t <= 137) || t == 143;
	if (p->key.ip_proto == CA_IPPROTO_UDP)
		return (a == 67 && b == 68) || (a == 68 && b == 67) || (a == 546 && b == 547) || (a == 547 && b == 546);
	return 0;
}

/* The verdict on a new connection, judged by its remote end: the receiver of
 * an outgoing first packet (address and port), or the sender of an incoming
 * one (address only). A TCP connection first seen mid-stream began before
 * the recorder did, or was judged when it began: the local stack sends no
 * such packet otherwise. */
static __always_inline int ca_conn_allowed(struct ca_packet *p, __u32 job)
{
	int remote = p->egress ? !p->src_slot : p->src_slot;
	const __u8 *addr = p->key.addr[remote & 1];

	if (ca_infrastructure(p))
		return 1;
	if (p->key.ip_proto == CA_IPPROTO_TCP && !(p->tcp_flags & CA_TH_SYN))
		return 1;
	if (p->egress)
		return ca_dest_allowed(job, addr, p->key.port[remote & 1], p->key.ip_proto, p->ts);
	return ca_addr_allowed(job, addr, 0, CA_MATCH_SOME, p->ts);
}

#endif /* CA_POLICY_H */
