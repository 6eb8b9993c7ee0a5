/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* dns_policy.h: blocking mode's DNS stage, tail-called for each DNS message
 * on a connection to port 53 (CA_BLOCK=1).
 *
 * Egress, a query: its question name must be one the policy allows, or the
 * query never leaves: a plain UDP query is answered NXDOMAIN on the spot,
 * anything else is dropped (anything to port 53 that is not such a query
 * too: a tunnel gets no way around the name check).
 * Ingress, a response: if its question name is allowed, every A and AAAA
 * record of the answer section (CNAME targets included) becomes an allowed
 * address for the answer's TTL, with the ports the name's rules allow.
 *
 * Only the question name is judged because a recursive resolver passes only
 * the name on; and DNS reaches only allowed resolvers (policy.h).
 */
#ifndef CA_DNS_POLICY_H
#define CA_DNS_POLICY_H

#define CA_DNS_HEADER_LEN 12
#define CA_NAME_HASH_SPAN 128        /* bytes hashed from a name's end: a policy name is at most 127 */
#define CA_DNS_NAME_HOPS 8           /* labels walked in an uncompressed answer owner name */
#define CA_DNS_ANSWERS_MAX 16        /* answer records read per response */

/* Defined in capture.bpf.c. */
static __always_inline struct ca_conn *ca_conn_find(struct ca_conn_key *key);
static __always_inline struct ca_scratch *ca_scratch_get(void);
static __always_inline void ca_tail_call(struct __sk_buff *skb, __u32 stage);

/* Copy the question name at off into n->dotted, label by label (a per-byte
 * parse is more than the verifier will follow); ca_hash_qname() then checks
 * its bytes. Returns 0, or -1 for a name that is not plain (compression, too
 * many labels, cut short): such a name is never allowed. */
static __always_inline int ca_copy_qname(struct __sk_buff *skb, __u32 off, __u32 avail, struct ca_dns_name *n)
{
	__u32 pos = 0, woff = 0, labels = 0;
	int terminated = 0;

	n->len = 0;
	n->suffixes = 0;
	n->dotted[0] = 0;
	for (__u32 l = 0; l < CA_NAME_LABELS_MAX; l++) {
		__u8 len;
		if (woff >= avail || bpf_skb_load_bytes(skb, off + woff, &len, 1) < 0)
			return -1;
		if (len == 0) {
			terminated = 1;
			break;
		}
		if (len > 63 || woff + 1 + len > avail || pos + 1 + len > CA_NAME_MAX - 3)
			return -1;
		if (l)
			n->dotted[ca_bounded(pos++, CA_NAME_MAX - 1)] = '.';
		n->label_start[l] = pos;
		if (bpf_skb_load_bytes(skb, off + woff + 1, &n->dotted[ca_bounded(pos, CA_NAME_MAX - 1)],
				       ca_bounded(len - 1, 63) + 1) < 0)
			return -1;
		pos += len;
		woff += 1 + len;
		labels++;
	}
	if (!terminated)
		return -1;
	n->wire_len = woff + 1;
	n->len = pos;
	n->labels = labels;
	*(__u64 *)&n->dotted[ca_bounded(pos, CA_NAME_MAX - 1)] = 0;
	return 0;
}

/* Case folding and the '.' test as arithmetic, not compares. BPF has no
 * set-on-condition instruction: every compare clang emits is a branch, and
 * the verifiers of 5.10 and 6.1 (no range-vs-range reasoning) fork a state at
 * each one, per byte, until "The sequence of 8193 jumps is too complex".
 * ca_opaque() (packet.h) hides a value's range from clang, which would
 * otherwise see that the shifts below are compares and emit them as such. */
#define CA_HASH_CHUNK 8              /* bytes hashed between two length checks */

/* The running state of ca_hash_qname(), in registers. */
struct ca_hash_state {
	__u64 h;
	__u32 dots;                  /* '.'s hashed so far: the suffixes closed */
};

/* Byte k from the end of the name of length pos. With check, a byte before
 * the name's start (k >= pos) changes nothing; without, k < pos is known. */
static __always_inline void ca_hash_byte(struct ca_dns_name *n, struct ca_hash_state *st, __u32 k, __u32 pos,
					 int check)
{
	__u32 i = ca_bounded(pos - 1 - k, CA_NAME_MAX - 1);
	__u32 c = n->dotted[i], valid = 1, dot, upper, at;

	ca_opaque(c);
	if (check) {
		valid = (k - pos) >> 31;                        /* k < pos (both below 2^31) */
		ca_opaque(valid);
	}
	dot = (((c ^ '.') - 1) >> 31) & valid;
	upper = (((__u32)('A' - 1) - c) >> 31) & ((c - (__u32)('Z' + 1)) >> 31) & valid;
	/* the slot after the last closed suffix is scratch until a '.' keeps it */
	at = ca_bounded(st->dots, CA_NAME_LABELS_MAX - 1);
	n->suffix_hash[at] = st->h;
	n->suffix_start[at] = i + 1;
	st->dots += dot;
	c |= upper << 5;
	n->dotted[i] = c;
	if (check) {
		__u64 keep = (__u64)valid - 1;                  /* all ones for a byte outside */
		st->h = (((st->h ^ c) * CA_FNV_PRIME) & ~keep) | (st->h & keep);
	} else {
		st->h = (st->h ^ c) * CA_FNV_PRIME;
	}
}

/* The '.'s between labels within the last CA_NAME_HASH_SPAN bytes of the name. */
static __always_inline __u32 ca_separators_hashed(const struct ca_dns_name *n, __u32 pos)
{
	__u32 from = pos - CA_NAME_HASH_SPAN, seps = 0;

	if (pos <= CA_NAME_HASH_SPAN)
		return n->labels - 1;
	for (__u32 l = 1; l < CA_NAME_LABELS_MAX; l++) {
		__u32 in_name = (l - n->labels) >> 31;                       /* l < labels */
		__u32 in_span = ((n->label_start[l] - 1 - from) >> 31) ^ 1;  /* its '.' at or after from */
		ca_opaque(in_name);
		seps += in_name & in_span;
	}
	return seps;
}

/* From the last byte back: fold case, hash every suffix (see struct
 * ca_name_rule), and let each '.' close the suffix to its right. -1 for a
 * '.' inside a label (more '.'s than separators) or too many labels.
 *
 * No byte takes a branch (ca_hash_byte); the length is checked once per
 * CA_HASH_CHUNK bytes, so the verifier follows CA_NAME_HASH_SPAN /
 * CA_HASH_CHUNK paths through the loop whatever the name, and a name's last
 * chunk hashes at most CA_HASH_CHUNK - 1 bytes for nothing. */
static __always_inline int ca_hash_qname(struct ca_dns_name *n)
{
	struct ca_hash_state st = {.h = CA_FNV_OFFSET, .dots = 0};
	__u32 pos = n->len;

	for (__u32 chunk = 0; chunk < CA_NAME_HASH_SPAN / CA_HASH_CHUNK; chunk++) {
		__u32 base = chunk * CA_HASH_CHUNK;
		if (base >= pos)
			break;
		if (base + CA_HASH_CHUNK <= pos) {
			for (__u32 j = 0; j < CA_HASH_CHUNK; j++)
				ca_hash_byte(n, &st, base + j, pos, 0);
		} else {
			for (__u32 j = 0; j < CA_HASH_CHUNK; j++)
				ca_hash_byte(n, &st, base + j, pos, 1);
			break;
		}
	}
	n->suffixes = st.dots;
	if (st.dots != ca_separators_hashed(n, pos))
		return -1;              /* a '.' inside a label */
	if (pos > CA_NAME_HASH_SPAN)
		return 0;               /* only "*." rules reach names this long */
	if (st.dots >= CA_NAME_LABELS_MAX - 1)
		return -1;
	n->suffix_hash[ca_bounded(st.dots, CA_NAME_LABELS_MAX - 1)] = st.h;
	n->suffix_start[ca_bounded(st.dots, CA_NAME_LABELS_MAX - 1)] = 0;
	n->suffixes = st.dots + 1;
	return 0;
}

/* rule->name and the suffix at start, both zero-padded, 8 bytes at a time. */
static __always_inline int ca_name_equal(const struct ca_name_rule *r, const struct ca_dns_name *n, __u32 start)
{
	for (__u32 w = 0; w < CA_NAME_MAX / 8; w++) {
		if (w * 8 >= r->len)
			return 1;
		if (*(const __u64 *)&r->name[w * 8] !=
		    *(const __u64 *)&n->dotted[ca_bounded(start + w * 8, CA_NAME_MAX - 1)])
			return 0;
	}
	return 1;
}

/* Does a rule allow the name? The most specific rule decides: the name's own
 * entry, else the nearest parent with a "*." rule. User space folds every
 * broader rule's ports into the narrower entries (recorder/kernel/block_tables.py),
 * so the first real match holds every port the policy allows; it goes to
 * n->ports. Hashes pick candidates; candidates are compared in full. */
static __always_inline int ca_name_allowed(struct ca_dns_name *n, __u32 job)
{
	struct ca_name_key key = { .job = job };
	__u32 found = 0;

	__builtin_memset(&n->ports, 0, sizeof(n->ports));
	for (__u32 k = 0; k < CA_NAME_LABELS_MAX; k++) {
		__u32 s;
		if (k >= n->suffixes || found >= CA_NAME_CANDIDATES)
			break;
		s = n->suffixes - 1 - k;             /* the whole name first */
		key.hash = n->suffix_hash[ca_bounded(s, CA_NAME_LABELS_MAX - 1)];
		if (ca_allow_names_lookup(&key))
			n->candidate[ca_bounded(found++, CA_NAME_CANDIDATES - 1)] = s;
	}
	for (__u32 i = 0; i < CA_NAME_CANDIDATES; i++) {
		struct ca_name_rule *r;
		struct ca_port_set *ports;
		__u32 s, start;
		if (i >= found)
			break;
		s = ca_bounded(n->candidate[i], CA_NAME_LABELS_MAX - 1);
		key.hash = n->suffix_hash[s];
		start = n->suffix_start[s];
		r = ca_allow_names_lookup(&key);
		if (!r)
			continue;
		ports = start == 0 ? &r->exact : &r->under;
		if (ca_port_set_empty(ports) || r->len != n->len - start || !ca_name_equal(r, n, start))
			continue;
		__builtin_memcpy(&n->ports, ports, sizeof(n->ports));
		return 1;
	}
	return 0;
}

/* Allow the address for the answer's TTL, on each port the name's rules allow. */
static __always_inline void ca_learn_addr(struct ca_learnt_key *key, __u32 ttl, const struct ca_port_set *ports,
					  __u64 now)
{
	struct ca_learnt_addr v;

	if (ttl > CA_DNS_TTL_MAX_S)
		ttl = CA_DNS_TTL_MAX_S;
	v.expires_ns = now + (__u64)ttl * 1000000000ULL;
	if (v.expires_ns < now + CA_DNS_TTL_MIN_NS)
		v.expires_ns = now + CA_DNS_TTL_MIN_NS;
#pragma unroll
	for (int i = 0; i <= CA_POLICY_PORTS_MAX; i++) {
		struct ca_learnt_addr *old;
		if (i == CA_POLICY_PORTS_MAX) {
			if (!ports->any)
				break;
			key->port = 0;
		} else {
			if (ports->any || i >= ports->count)
				continue;
			key->port = ports->ports[i];
		}
		old = ca_allow_addrs_lookup(key);
		if (old && old->expires_ns > v.expires_ns)
			continue;       /* a longer TTL from another answer stands */
		if (ca_allow_addrs_update(key, &v) != 0)
			ca_count(CA_STAT_ALLOW_TABLE_FULL, 1);
		else if (i == 0 || i == CA_POLICY_PORTS_MAX)
			ca_count(CA_STAT_ADDRS_LEARNT, 1);
	}
}

/* The learning stage: walk the answer section the policy stage found, and
 * allow its A and AAAA records. */
static __always_inline int ca_dns_learn_stage(struct __sk_buff *skb)
{
	struct ca_scratch *s = ca_scratch_get();
	struct ca_dns_name *n = ca_dns_name_work();
	__u32 off, end;

	if (!s || !n)
		return CA_PASS;
	off = n->answers_off;
	end = n->answers_end;
	for (__u32 a = 0; a < CA_DNS_ANSWERS_MAX; a++) {
		struct ca_learnt_key key = { .job = s->pkt.job };
		__u8 rr[10];
		__u16 type, rdlen;
		__u32 ttl;
		if (a >= n->ancount)
			break;
		/* The owner name: a compression pointer, or labels (ending in one). */
		for (int hop = 0; hop < CA_DNS_NAME_HOPS; hop++) {
			__u8 l;
			if (off >= end || bpf_skb_load_bytes(skb, off, &l, 1) < 0)
				return CA_PASS;
			if ((l & 0xc0) == 0xc0) {
				off += 2;
				break;
			}
			off += 1 + l;
			if (l == 0)
				break;
		}
		if (off + sizeof(rr) > end || bpf_skb_load_bytes(skb, off, rr, sizeof(rr)) < 0)
			return CA_PASS;
		type = (rr[0] << 8) | rr[1];
		ttl = ((__u32)rr[4] << 24) | ((__u32)rr[5] << 16) | ((__u32)rr[6] << 8) | rr[7];
		rdlen = (rr[8] << 8) | rr[9];
		off += sizeof(rr);
		if (off + rdlen > end)
			return CA_PASS;
		if (type == CA_DNS_TYPE_A && rdlen == 4) {
			__u32 v4;
			if (bpf_skb_load_bytes(skb, off, &v4, 4) < 0)
				return CA_PASS;
			ca_set_v4mapped(key.addr, v4);
			ca_learn_addr(&key, ttl, &n->ports, s->pkt.ts);
		} else if (type == CA_DNS_TYPE_AAAA && rdlen == 16) {
			if (bpf_skb_load_bytes(skb, off, key.addr, 16) < 0)
				return CA_PASS;
			ca_learn_addr(&key, ttl, &n->ports, s->pkt.ts);
		}
		off += rdlen;
	}
	return CA_PASS;
}


/* DNS header flags (RFC 1035 4.1.1, RFC 4035 3.2). */
#define CA_DNS_QR     0x8000
#define CA_DNS_OPCODE 0x7800
#define CA_DNS_RD     0x0100
#define CA_DNS_RA     0x0080
#define CA_DNS_CD     0x0010
#define CA_DNS_NXDOMAIN 3

static __always_inline int ca_swap_bytes(struct __sk_buff *skb, __u32 off, __u32 half)
{
	__u8 buf[32];

	if (half > 16 || bpf_skb_load_bytes(skb, off, buf, half * 2) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, off, buf + half, half, 0) < 0 ||
	    bpf_skb_store_bytes(skb, off + half, buf, half, 0) < 0)
		return -1;
	return 0;
}

/* Answer a refused UDP query here, so the resolver library fails at once
 * instead of waiting out its timeouts: the query turns into an NXDOMAIN
 * response (question and EDNS record kept) and goes back up the stack on
 * the interface it was leaving. Swapping the addresses and the ports leaves
 * the UDP checksum's pseudo-header sum as it was; only the flags word needs
 * a checksum update. Returns the verdict: a redirect, or a drop for what
 * cannot be answered (TCP, not a plain query, headers not readable). */
static __always_inline int ca_answer_nxdomain(struct __sk_buff *skb, struct ca_packet *p)
{
	__u32 flags_off = p->payload_off + 2;
	__u16 query_flags, answer_flags;
	__u64 csum_flags = 2;

	if (p->key.ip_proto != CA_IPPROTO_UDP || p->fragment ||
	    bpf_skb_load_bytes(skb, flags_off, &query_flags, 2) < 0)
		return CA_DROP;
	query_flags = bpf_ntohs(query_flags);
	if ((query_flags & CA_DNS_QR) || (query_flags & CA_DNS_OPCODE))
		return CA_DROP;
	answer_flags = bpf_htons(CA_DNS_QR | (query_flags & (CA_DNS_RD | CA_DNS_CD)) | CA_DNS_RA | CA_DNS_NXDOMAIN);
	query_flags = bpf_htons(query_flags);
	if (p->ip_version == 4)
		csum_flags |= BPF_F_MARK_MANGLED_0;   /* IPv4 UDP may carry no checksum: keep it 0 */
	if (ca_swap_bytes(skb, 0, ETH_ALEN) < 0 ||
	    ca_swap_bytes(skb, p->l3_off + (p->ip_version == 4 ? 12 : 8), p->ip_version == 4 ? 4 : 16) < 0 ||
	    ca_swap_bytes(skb, p->l4_off, 2) < 0 ||
	    bpf_l4_csum_replace(skb, p->l4_off + 6, query_flags, answer_flags, csum_flags) < 0 ||
	    bpf_skb_store_bytes(skb, flags_off, &answer_flags, 2, 0) < 0)
		return CA_DROP;
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

static __always_inline int ca_refuse_query(struct __sk_buff *skb, struct ca_packet *p, struct ca_dns_name *n)
{
	struct ca_conn *c = ca_conn_find(&p->key);

	ca_count(CA_STAT_BLOCKED_DNS, 1);
	ca_count(CA_STAT_BLOCKED_PACKETS, p->segs);
	if (c)
		c->flags |= CA_CONN_DNS_BLOCKED;
	ca_emit_blocked(&p->key, p->src_slot, c ? c->id : 0, c ? &c->proc : 0, CA_BLOCKED_DNS_NAME,
			CA_BLOCK_AT_TC, p->ts, n);
	return ca_answer_nxdomain(skb, p);
}

/* First DNS stage: the header and the question name's bytes. A message
 * that cannot be judged is refused on the way out and ignored on the way in. */
static __always_inline int ca_dns_policy_stage(struct __sk_buff *skb)
{
	struct ca_scratch *s = ca_scratch_get();
	struct ca_dns_name *n = ca_dns_name_work();
	struct ca_packet *p;
	__u8 hdr[CA_DNS_HEADER_LEN];
	__u32 off, end;

	if (!s || !n)
		return CA_DROP;
	p = &s->pkt;
	n->len = 0;
	n->dotted[0] = 0;
	off = p->payload_off;
	end = p->payload_off + p->payload_len;
	if (p->key.ip_proto == CA_IPPROTO_TCP)
		off += 2;                    /* the message length prefix */
	if (off + CA_DNS_HEADER_LEN > end || bpf_skb_load_bytes(skb, off, hdr, sizeof(hdr)) < 0)
		return p->egress ? ca_refuse_query(skb, p, n) : CA_PASS;
	/* One question (QDCOUNT 1; UPDATE's zone count too), in a query going
	 * out or a response coming in. */
	if (!(hdr[2] & 0x80) != !!p->egress || hdr[4] != 0 || hdr[5] != 1 ||
	    ca_copy_qname(skb, off + CA_DNS_HEADER_LEN, end - off - CA_DNS_HEADER_LEN, n) < 0)
		return p->egress ? ca_refuse_query(skb, p, n) : CA_PASS;
	n->answers_off = off + CA_DNS_HEADER_LEN + n->wire_len + 4;
	n->answers_end = end;
	n->ancount = (hdr[6] << 8) | hdr[7];
	ca_tail_call(skb, CA_STAGE_DNS_NAME);
	return p->egress ? CA_DROP : CA_PASS;   /* the stage could not run: fail closed */
}

/* Second DNS stage: judge the name; refuse the query, or learn the answer. */
static __always_inline int ca_dns_name_stage(struct __sk_buff *skb)
{
	struct ca_scratch *s = ca_scratch_get();
	struct ca_dns_name *n = ca_dns_name_work();
	struct ca_packet *p;

	if (!s || !n)
		return CA_DROP;
	p = &s->pkt;
	if (ca_hash_qname(n) < 0 || !ca_name_allowed(n, p->job))
		return p->egress ? ca_refuse_query(skb, p, n) : CA_PASS;
	if (!p->egress)
		ca_tail_call(skb, CA_STAGE_DNS_LEARN);
	return CA_PASS;
}

#endif /* CA_DNS_POLICY_H */
