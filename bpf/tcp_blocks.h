/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tcp_blocks.h: the reassembler's blocks above a hole, when there are several.
 *
 * An endpoint keeps the span of what it holds above a hole in ooo_seq and
 * ooo_upper. Most of the time that span is one block: a segment was lost and
 * the ones after it wait for its retransmission or for the ACK that makes it
 * a gap. When a block arrives that neither overlaps nor touches the span (a
 * second loss in the same window), the blocks are kept here, disjoint and not
 * touching, in up to CA_TCP_BLOCKS_MAX slots, under the connection's id and a
 * tag the endpoint carries in its flags (so they follow it through a role
 * flip). The span still covers them all, so every per-packet check reads the
 * endpoint alone; only data above a hole and ACKs into the held data open the
 * list.
 *
 * Zeek's block list has no bound. A block apart from all of a full list's, or
 * data held when the LRU map evicted the list, merges: with the nearest block
 * (or, evicted, into the span), and the hole between then counts as received.
 * Counted in CA_STAT_TCP_HOLES_MERGED (capture_stats.log).
 *
 * The slots are not sorted: every step is one pass over all of them whose
 * outcome does not depend on their order (blocks that neither overlap nor
 * touch are delivered, or become gaps, one at a time in any order), and the
 * passes hand their tallies over in the list itself. The verifier checks this
 * code in ca_tcp, the program of every TCP packet, at the start of every
 * recording. A first version, a sorted list of eight shifted by computed
 * indexes, with its keys and new lists built on the stack, took ca_tcp's
 * verification from 59,000 instructions to 255,000 (0.2 s more of start);
 * four unsorted slots, with keys and new lists built in a per-CPU scratch
 * (capture.bpf.c), take it to 72,000.
 *
 * The list's map (tcp_blocks) is declared with the program's other maps, in
 * capture.bpf.c, which defines the functions declared here that reach it.
 *
 * Positions are relative sequence numbers, compared by their distance above
 * the delivered data (reassem_seq): every block lies above it.
 */
#ifndef CA_TCP_BLOCKS_H
#define CA_TCP_BLOCKS_H

/* Lists are kept for captures only. Live, TC sees every segment the host sent
 * or received, so a hole above held data is filled by its retransmission and
 * never becomes a gap either way; there, data apart from a held block joins
 * it (and is counted), and the verifier is spared the lists (live, ca_tcp
 * verified 109,000 instructions with them against 80,000, and a recording's
 * start took 0.65 s against 0.56 s). */
#define CA_TCP_HOLE_LISTS CA_PCAP_MODE

#define CA_TCP_BLOCKS_MAX 4          /* a power of two: a slot index is masked by it */
#ifndef CA_TCP_BLOCK_LISTS
#define CA_TCP_BLOCK_LISTS 4096
#endif

struct ca_tcp_blocks_key {
	__u64 conn_id;
	__u32 tag;                 /* CA_EP_BLOCKS_TAG1 of the endpoint that holds them */
	__u32 pad;
};

struct ca_tcp_blocks {
	__u32 seq[CA_TCP_BLOCKS_MAX];      /* a free slot has seq == upper */
	__u32 upper[CA_TCP_BLOCKS_MAX];
	__u32 slot;                /* tallies of the step in progress (above) */
	__u32 count;
	__u32 bytes;
	__u32 pad;
};

/* In capture.bpf.c, beside the map: a list by its connection's id and tag. */
static __always_inline struct ca_tcp_blocks *ca_tcp_blocks_lookup(__u64 conn_id, __u32 tag);
static __always_inline struct ca_tcp_blocks *ca_tcp_blocks_create(__u64 conn_id, __u32 tag, __u32 seq, __u32 upper);
static __always_inline void ca_tcp_blocks_delete(__u64 conn_id, __u32 tag);

static __always_inline void ca_blocks_count_merge(void)
{
	ca_count(CA_STAT_TCP_HOLES_MERGED, 1);
}

static __always_inline __u32 ca_blocks_tag(const struct ca_endpoint *x)
{
	return !!(x->flags & CA_EP_BLOCKS_TAG1);
}

/* The endpoint's blocks are listed (a constant 0 where lists are not kept). */
static __always_inline int ca_blocks_listed(const struct ca_endpoint *x)
{
	return CA_TCP_HOLE_LISTS && (x->flags & CA_EP_BLOCKS);
}

/* [seq, upper) joins the span of what is held above a hole. */
static __always_inline void ca_span_extend(struct ca_endpoint *x, __u32 seq, __u32 upper)
{
	if (ca_seq_delta(seq, x->ooo_seq) < 0)
		x->ooo_seq = seq;
	if (ca_seq_delta(upper, x->ooo_upper) > 0)
		x->ooo_upper = upper;
}

static __always_inline struct ca_tcp_blocks *ca_blocks_of(const struct ca_conn *c, const struct ca_endpoint *x)
{
	return ca_tcp_blocks_lookup(c->id, ca_blocks_tag(x));
}

/* The endpoint holds one block again, or none: its list goes. */
static __always_inline void ca_blocks_forget(const struct ca_conn *c, struct ca_endpoint *x)
{
	if (!ca_blocks_listed(x))
		return;
	ca_tcp_blocks_delete(c->id, ca_blocks_tag(x));
	x->flags &= ~(CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1);
}

/* A connection that ends takes its endpoints' lists with it. */
static __always_inline void ca_blocks_forget_conn(struct ca_conn *c)
{
	if (CA_TCP_HOLE_LISTS && ca_unlikely((c->ep[0].flags | c->ep[1].flags) & CA_EP_BLOCKS)) {
		ca_blocks_forget(c, &c->ep[0]);
		ca_blocks_forget(c, &c->ep[1]);
	}
}

/* The endpoint's list is gone (evicted for room, or never made): its span
 * stands for its blocks, as one, and the holes inside count as received. */
static __always_inline void ca_blocks_lost(struct ca_endpoint *x)
{
	x->flags &= ~(CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1);
	ca_blocks_count_merge();
}

/* Nothing held above a hole any more. */
static __always_inline void ca_blocks_clear(const struct ca_conn *c, struct ca_endpoint *x)
{
	x->ooo_seq = x->ooo_upper = 0;
	ca_blocks_forget(c, x);
}

static __always_inline int ca_block_free(const struct ca_tcp_blocks *b, __u32 k)
{
	return b->seq[k] == b->upper[k];
}

static __always_inline void ca_block_free_up(struct ca_tcp_blocks *b, __u32 k)
{
	b->seq[k] = b->upper[k] = 0;
}

/* The span from the slots; one block left (or none) needs no list. */
static __always_inline void ca_blocks_settle(const struct ca_conn *c, struct ca_endpoint *x, struct ca_tcp_blocks *b)
{
	__u32 k;

	x->ooo_seq = x->ooo_upper = 0;
	b->count = 0;
	for (k = 0; k < CA_TCP_BLOCKS_MAX; k++) {
		if (ca_block_free(b, k))
			continue;
		b->count += 1;
		if (x->ooo_upper == x->ooo_seq) {
			x->ooo_seq = b->seq[k];
			x->ooo_upper = b->upper[k];
			continue;
		}
		if (ca_seq_delta(b->seq[k], x->ooo_seq) < 0)
			x->ooo_seq = b->seq[k];
		if (ca_seq_delta(b->upper[k], x->ooo_upper) > 0)
			x->ooo_upper = b->upper[k];
	}
	if (b->count <= 1)
		ca_blocks_forget(c, x);
}

/* [seq, upper) into the slots: it absorbs the blocks it overlaps or touches
 * (Zeek keeps those as separate blocks; for gaps and delivery they are one)
 * and takes a free slot, or, the slots full, joins the nearest block. base:
 * the delivered data's end, below every block. */
static __always_inline void ca_blocks_insert(struct ca_tcp_blocks *b, __u32 seq, __u32 upper, __u32 base)
{
	__u32 k, d, nearest = 0xffffffff;

	b->slot = CA_TCP_BLOCKS_MAX;
	for (k = 0; k < CA_TCP_BLOCKS_MAX; k++) {
		if (ca_block_free(b, k)) {
			b->slot = k;
			continue;
		}
		if (b->upper[k] - base < seq - base || b->seq[k] - base > upper - base)
			continue;                  /* apart from it */
		if (b->seq[k] - base < seq - base)
			seq = b->seq[k];
		if (b->upper[k] - base > upper - base)
			upper = b->upper[k];
		ca_block_free_up(b, k);
		b->slot = k;
	}
	if (b->slot >= CA_TCP_BLOCKS_MAX) {
		for (k = 0; k < CA_TCP_BLOCKS_MAX; k++) {
			d = b->seq[k] - base > upper - base ? b->seq[k] - upper : seq - b->upper[k];
			if (d < nearest) {
				nearest = d;
				b->slot = k;
			}
		}
		k = b->slot & (CA_TCP_BLOCKS_MAX - 1);
		if (b->seq[k] - base < seq - base)
			seq = b->seq[k];
		if (b->upper[k] - base > upper - base)
			upper = b->upper[k];
		ca_blocks_count_merge();
	}
	k = b->slot & (CA_TCP_BLOCKS_MAX - 1);
	b->seq[k] = seq;
	b->upper[k] = upper;
}

/* Data above a hole that the span does not hold as one block. Where no list
 * is kept, or the map cannot give one, it joins the span, as in a full list. */
static __always_inline void ca_blocks_hold(const struct ca_conn *c, struct ca_endpoint *x,
					   const struct ca_endpoint *peer, __u32 seq, __u32 upper)
{
	struct ca_tcp_blocks *b = 0;

	if (!CA_TCP_HOLE_LISTS) {
		;
	} else if (x->flags & CA_EP_BLOCKS) {
		b = ca_blocks_of(c, x);
	} else {
		/* A tag the peer's list does not use: after a flip, slots say nothing. */
		if ((peer->flags & (CA_EP_BLOCKS | CA_EP_BLOCKS_TAG1)) == CA_EP_BLOCKS)
			x->flags |= CA_EP_BLOCKS_TAG1;
		/* the span, its first block */
		b = ca_tcp_blocks_create(c->id, ca_blocks_tag(x), x->ooo_seq, x->ooo_upper);
		if (b)
			x->flags |= CA_EP_BLOCKS;
	}
	if (!b) {
		ca_blocks_lost(x);
		ca_span_extend(x, seq, upper);
		return;
	}
	ca_blocks_insert(b, seq, upper, x->reassem_seq);
	ca_blocks_settle(c, x, b);
}

/* The delivered data reached held blocks: they are delivered too. Blocks
 * neither overlap nor touch, so one that starts past the delivered data
 * stays past it whatever was delivered before it in the pass. Returns 0 if
 * the list was lost (ca_blocks_lost): the caller delivers the span. */
static __always_inline int ca_blocks_deliver(const struct ca_conn *c, struct ca_endpoint *x)
{
	struct ca_tcp_blocks *b = ca_blocks_of(c, x);
	__u32 k;

	if (!b) {
		ca_blocks_lost(x);
		return 0;
	}
	for (k = 0; k < CA_TCP_BLOCKS_MAX; k++) {
		if (ca_block_free(b, k) || ca_seq_delta(b->seq[k], x->reassem_seq) > 0)
			continue;
		if (ca_seq_delta(b->upper[k], x->reassem_seq) > 0)
			x->reassem_seq = b->upper[k];
		ca_block_free_up(b, k);
	}
	ca_blocks_settle(c, x, b);
	return 1;
}

/* Zeek's Undelivered up to s over held blocks: each block that starts below
 * s is delivered after the gap before it. Returns the list with b->count
 * gaps of b->bytes in all (the order of the blocks changes neither), and
 * x->reassem_seq past them; 0 if the list was evicted (nothing done). */
static __always_inline struct ca_tcp_blocks *ca_blocks_undelivered(const struct ca_conn *c, struct ca_endpoint *x,
								    __u32 s)
{
	struct ca_tcp_blocks *b = ca_blocks_of(c, x);
	__u32 k, start = x->reassem_seq;

	if (!b)
		return 0;
	b->count = b->bytes = 0;
	for (k = 0; k < CA_TCP_BLOCKS_MAX; k++) {
		if (ca_block_free(b, k) || ca_seq_delta(b->seq[k], s) >= 0)
			continue;
		b->count += 1;
		b->bytes += b->upper[k] - b->seq[k];        /* received: taken off the gaps below */
		if (ca_seq_delta(b->upper[k], x->reassem_seq) > 0)
			x->reassem_seq = b->upper[k];
		ca_block_free_up(b, k);
	}
	b->bytes = (x->reassem_seq - start) - b->bytes;
	return b;
}

/* Bytes held: Zeek's block_list.DataSize() above the delivered data. */
static __always_inline __u32 ca_blocks_held(const struct ca_conn *c, const struct ca_endpoint *x)
{
	struct ca_tcp_blocks *b;
	__u32 k;

	if (!ca_blocks_listed(x))
		return x->ooo_upper - x->ooo_seq;
	b = ca_blocks_of(c, x);
	if (!b)
		return x->ooo_upper - x->ooo_seq;
	b->bytes = 0;
	for (k = 0; k < CA_TCP_BLOCKS_MAX; k++)
		b->bytes += b->upper[k] - b->seq[k];
	return b->bytes;
}

#endif /* CA_TCP_BLOCKS_H */
