/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tcp_blocks.h: the reassembler's blocks above a hole, when there are several.
 *
 * An endpoint keeps the span of what it holds above a hole in ooo_seq and
 * ooo_upper. Most of the time that span is one block: a segment was lost and
 * the ones after it wait for its retransmission or for the ACK that makes it
 * a gap. When a block arrives that neither overlaps nor touches the span (a
 * second loss in the same window), the blocks are listed here, sorted,
 * disjoint and not touching, under the connection's id and a tag the endpoint
 * carries in its flags (so the list follows it through a role flip). The span
 * still covers them all, so every per-packet check reads the endpoint alone;
 * only data above a hole and ACKs into the held data open the list.
 *
 * Zeek's block list has no bound. More blocks than CA_TCP_BLOCKS_MAX, or a
 * list the LRU map evicted, merge: the hole between the two blocks closest
 * together (or, for an evicted list, every hole in the span) then counts as
 * received. Counted in CA_STAT_TCP_HOLES_MERGED (capture_stats.log).
 *
 * The list's map (tcp_blocks) is declared with the program's other maps, in
 * capture.bpf.c, which defines the functions declared here that reach it.
 *
 * Positions are relative sequence numbers, compared by their distance above
 * the delivered data (reassem_seq): every block lies above it.
 */
#ifndef CA_TCP_BLOCKS_H
#define CA_TCP_BLOCKS_H

#define CA_TCP_BLOCK_SLOTS 8                     /* a power of two: indexes are masked */
#define CA_TCP_BLOCKS_MAX (CA_TCP_BLOCK_SLOTS - 1)   /* the last slot takes an insertion before a merge */
#define CA_TCP_BLOCK_LISTS 4096

struct ca_tcp_blocks_key {
	__u64 conn_id;
	__u32 tag;                 /* CA_EP_BLOCKS_TAG1 of the endpoint that holds them */
	__u32 pad;
};

struct ca_tcp_blocks {
	__u32 n;
	__u32 pad;
	__u32 seq[CA_TCP_BLOCK_SLOTS];
	__u32 upper[CA_TCP_BLOCK_SLOTS];
};

/* In capture.bpf.c, beside the map. */
static __always_inline struct ca_tcp_blocks *ca_tcp_blocks_lookup(struct ca_tcp_blocks_key *k);
static __always_inline int ca_tcp_blocks_update(struct ca_tcp_blocks_key *k, struct ca_tcp_blocks *b);
static __always_inline void ca_tcp_blocks_delete(struct ca_tcp_blocks_key *k);

#define CA_BLOCK_SLOT(i) ((i) & (CA_TCP_BLOCK_SLOTS - 1))

static __always_inline void ca_blocks_count_merge(void)
{
	ca_count(CA_STAT_TCP_HOLES_MERGED, 1);
}

static __always_inline void ca_blocks_key(struct ca_tcp_blocks_key *k, const struct ca_conn *c,
					  const struct ca_endpoint *x)
{
	k->conn_id = c->id;
	k->tag = !!(x->flags & CA_EP_BLOCKS_TAG1);
	k->pad = 0;
}

static __always_inline struct ca_tcp_blocks *ca_blocks_of(const struct ca_conn *c, const struct ca_endpoint *x)
{
	struct ca_tcp_blocks_key k;

	ca_blocks_key(&k, c, x);
	return ca_tcp_blocks_lookup(&k);
}

/* The endpoint holds one block again, or none: its list goes. */
static __always_inline void ca_blocks_forget(const struct ca_conn *c, struct ca_endpoint *x)
{
	struct ca_tcp_blocks_key k;

	if (!(x->flags & CA_EP_BLOCKS))
		return;
	ca_blocks_key(&k, c, x);
	ca_tcp_blocks_delete(&k);
	x->flags &= ~(CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1);
}

/* A connection that ends takes its endpoints' lists with it. */
static __always_inline void ca_blocks_forget_conn(struct ca_conn *c)
{
	if (ca_unlikely((c->ep[0].flags | c->ep[1].flags) & CA_EP_BLOCKS)) {
		ca_blocks_forget(c, &c->ep[0]);
		ca_blocks_forget(c, &c->ep[1]);
	}
}

/* Nothing held above a hole any more. */
static __always_inline void ca_blocks_clear(const struct ca_conn *c, struct ca_endpoint *x)
{
	x->ooo_seq = x->ooo_upper = 0;
	ca_blocks_forget(c, x);
}

/* The span from the list; one block left (or none) needs no list. */
static __always_inline void ca_blocks_settle(const struct ca_conn *c, struct ca_endpoint *x, struct ca_tcp_blocks *b)
{
	__u32 n = b->n;

	if (n == 0 || n > CA_TCP_BLOCK_SLOTS) {
		ca_blocks_clear(c, x);
		return;
	}
	x->ooo_seq = b->seq[0];
	x->ooo_upper = b->upper[CA_BLOCK_SLOT(n - 1)];
	if (n == 1)
		ca_blocks_forget(c, x);
}

/* Drop the list's first d blocks. */
static __always_inline void ca_blocks_shift_out(struct ca_tcp_blocks *b, __u32 d)
{
	__u32 k;

	if (d == 0)
		return;
	for (k = 0; k < CA_TCP_BLOCK_SLOTS; k++) {
		if (k + d >= b->n)
			break;
		b->seq[CA_BLOCK_SLOT(k)] = b->seq[CA_BLOCK_SLOT(k + d)];
		b->upper[CA_BLOCK_SLOT(k)] = b->upper[CA_BLOCK_SLOT(k + d)];
	}
	b->n = b->n > d ? b->n - d : 0;
}

/* A list full past CA_TCP_BLOCKS_MAX merges the two blocks closest together. */
static __always_inline void ca_blocks_merge_closest(struct ca_tcp_blocks *b)
{
	__u32 k, at = 0, hole, best = 0xffffffff;

	for (k = 0; k + 1 < CA_TCP_BLOCK_SLOTS; k++) {
		if (k + 1 >= b->n)
			break;
		hole = b->seq[CA_BLOCK_SLOT(k + 1)] - b->upper[CA_BLOCK_SLOT(k)];
		if (hole < best) {
			best = hole;
			at = k;
		}
	}
	b->upper[CA_BLOCK_SLOT(at)] = b->upper[CA_BLOCK_SLOT(at + 1)];
	for (k = 1; k < CA_TCP_BLOCK_SLOTS; k++) {
		if (at + k + 1 >= b->n)
			break;
		b->seq[CA_BLOCK_SLOT(at + k)] = b->seq[CA_BLOCK_SLOT(at + k + 1)];
		b->upper[CA_BLOCK_SLOT(at + k)] = b->upper[CA_BLOCK_SLOT(at + k + 1)];
	}
	b->n -= 1;
	ca_blocks_count_merge();
}

/* [seq, upper) into the sorted list, absorbing the blocks it overlaps or
 * touches (Zeek keeps those as separate blocks; for gaps and delivery they
 * are one). base: the delivered data's end, below every block. */
static __always_inline void ca_blocks_insert(struct ca_tcp_blocks *b, __u32 seq, __u32 upper, __u32 base)
{
	__u32 n = b->n, i, j, k, absorbed;

	if (n > CA_TCP_BLOCKS_MAX)
		return;
	/* i: the first block that does not end before seq. */
	for (i = 0; i < CA_TCP_BLOCKS_MAX; i++) {
		if (i >= n || b->upper[CA_BLOCK_SLOT(i)] - base >= seq - base)
			break;
	}
	/* j: the first block from i that starts after upper; those between are absorbed. */
	for (j = i; j < CA_TCP_BLOCKS_MAX; j++) {
		if (j >= n || b->seq[CA_BLOCK_SLOT(j)] - base > upper - base)
			break;
		if (b->seq[CA_BLOCK_SLOT(j)] - base < seq - base)
			seq = b->seq[CA_BLOCK_SLOT(j)];
		if (b->upper[CA_BLOCK_SLOT(j)] - base > upper - base)
			upper = b->upper[CA_BLOCK_SLOT(j)];
	}
	absorbed = j - i;
	if (absorbed == 0) {
		/* Room at i: the blocks from i move up one. */
		for (k = CA_TCP_BLOCKS_MAX; k > 0; k--) {
			if (k > n || k <= i)
				continue;
			b->seq[CA_BLOCK_SLOT(k)] = b->seq[CA_BLOCK_SLOT(k - 1)];
			b->upper[CA_BLOCK_SLOT(k)] = b->upper[CA_BLOCK_SLOT(k - 1)];
		}
		n += 1;
	} else {
		/* The blocks after the absorbed ones move down next to the new one. */
		for (k = 1; k < CA_TCP_BLOCK_SLOTS; k++) {
			if (j + k - 1 >= n)
				break;
			b->seq[CA_BLOCK_SLOT(i + k)] = b->seq[CA_BLOCK_SLOT(j + k - 1)];
			b->upper[CA_BLOCK_SLOT(i + k)] = b->upper[CA_BLOCK_SLOT(j + k - 1)];
		}
		n -= absorbed - 1;
	}
	b->seq[CA_BLOCK_SLOT(i)] = seq;
	b->upper[CA_BLOCK_SLOT(i)] = upper;
	b->n = n;
	if (n > CA_TCP_BLOCKS_MAX)
		ca_blocks_merge_closest(b);
}

/* Data above a hole that the span does not hold as one block. A list the map
 * cannot give merges into the span, as a full one would. */
static __always_inline void ca_blocks_hold(const struct ca_conn *c, struct ca_endpoint *x,
					   const struct ca_endpoint *peer, __u32 seq, __u32 upper)
{
	struct ca_tcp_blocks_key k;
	struct ca_tcp_blocks fresh = {}, *b;

	if (x->flags & CA_EP_BLOCKS) {
		b = ca_blocks_of(c, x);
	} else {
		/* A tag the peer's list does not use: after a flip, slots say nothing. */
		if ((peer->flags & (CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1)) == CA_EP_BLOCKS)
			x->flags |= CA_EP_BLOCKS_TAG1;
		ca_blocks_key(&k, c, x);
		fresh.n = 1;
		fresh.seq[0] = x->ooo_seq;
		fresh.upper[0] = x->ooo_upper;
		b = 0;
		if (ca_tcp_blocks_update(&k, &fresh) == 0) {
			x->flags |= CA_EP_BLOCKS;
			b = ca_tcp_blocks_lookup(&k);
		}
	}
	if (!b) {
		x->flags &= ~(CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1);
		if (ca_seq_delta(seq, x->ooo_seq) < 0)
			x->ooo_seq = seq;
		if (ca_seq_delta(upper, x->ooo_upper) > 0)
			x->ooo_upper = upper;
		ca_blocks_count_merge();
		return;
	}
	ca_blocks_insert(b, seq, upper, x->reassem_seq);
	ca_blocks_settle(c, x, b);
}

/* The delivered data reached the first blocks: they are delivered too. */
static __always_inline void ca_blocks_deliver(const struct ca_conn *c, struct ca_endpoint *x)
{
	struct ca_tcp_blocks *b = ca_blocks_of(c, x);
	__u32 k;

	if (!b) {              /* evicted: the span stands for it */
		if (ca_seq_delta(x->ooo_upper, x->reassem_seq) > 0)
			x->reassem_seq = x->ooo_upper;
		ca_blocks_clear(c, x);
		ca_blocks_count_merge();
		return;
	}
	for (k = 0; k < CA_TCP_BLOCK_SLOTS; k++) {
		if (k >= b->n || ca_seq_delta(b->seq[CA_BLOCK_SLOT(k)], x->reassem_seq) > 0)
			break;
		if (ca_seq_delta(b->upper[CA_BLOCK_SLOT(k)], x->reassem_seq) > 0)
			x->reassem_seq = b->upper[CA_BLOCK_SLOT(k)];
	}
	ca_blocks_shift_out(b, k);
	ca_blocks_settle(c, x, b);
}

/* Bytes held: Zeek's block_list.DataSize() above the delivered data. */
static __always_inline __u32 ca_blocks_held(const struct ca_conn *c, const struct ca_endpoint *x)
{
	struct ca_tcp_blocks *b;
	__u32 k, held = 0;

	if (!(x->flags & CA_EP_BLOCKS))
		return x->ooo_upper - x->ooo_seq;
	b = ca_blocks_of(c, x);
	if (!b)
		return x->ooo_upper - x->ooo_seq;
	for (k = 0; k < CA_TCP_BLOCK_SLOTS; k++) {
		if (k >= b->n)
			break;
		held += b->upper[CA_BLOCK_SLOT(k)] - b->seq[CA_BLOCK_SLOT(k)];
	}
	return held;
}

#endif /* CA_TCP_BLOCKS_H */
