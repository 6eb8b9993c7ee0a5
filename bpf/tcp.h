/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* tcp.h: Zeek's TCP endpoint model, per packet, in the kernel.
 *
 * Mirrors the behaviour of Zeek's TCP session adapter (TCPSessionAdapter.cc,
 * TCP_Endpoint.cc): endpoint states, sequence tracking for payload sizes,
 * history letters, the close/attempt timers, and the part of the reassembler
 * that shows in conn.log: content gaps (acknowledged bytes that were never
 * seen: 'G', missed_bytes) and closes deferred while data is undelivered.
 *
 * The reassembler keeps no payload, only sequence intervals: what has been
 * delivered in order (reassem_seq), what the peer has acknowledged
 * (trim_seq), and what was received above a hole: the span of it in the
 * endpoint, and, when a second hole opens inside that span, the blocks
 * themselves in a list of their own (tcp_blocks.h).
 *
 * Sequence numbers relative to an endpoint's start are 32-bit, compared by
 * signed difference, so gaps are exact for the first 2 GB of a direction.
 */
#ifndef CA_TCP_H
#define CA_TCP_H

#define CA_TOO_LARGE_SEQ_DELTA 1048576
#define CA_MAX_INITIAL_WINDOW 16384             /* tcp_max_initial_window */
#define CA_MAX_ABOVE_HOLE_WITHOUT_ACKS 16384    /* tcp_max_above_hole_without_any_acks */
#define CA_EXCESSIVE_DATA_WITHOUT_ACKS (10 * 1024 * 1024)  /* tcp_excessive_data_without_further_acks */

static __always_inline __s32 ca_seq_delta(__u32 a, __u32 b)
{
	return (__s32)(a - b);
}

#include "tcp_blocks.h"

static __always_inline int ca_is_handshake(__u8 state)
{
	return state <= CA_TCP_SYN_ACK_SENT;
}

/* Zeek's TCP_Endpoint::SetState: prev_state changes only with the state, and
 * the first step out of the handshake switches to tcp_inactivity_timeout. */
static __always_inline void ca_set_state(struct ca_conn *c, struct ca_endpoint *e, struct ca_endpoint *peer,
					 __u8 state)
{
	if (state == e->state)
		return;
	if (!ca_is_handshake(state) && ca_is_handshake(e->state) && ca_is_handshake(peer->state))
		c->flags |= CA_CONN_ESTABLISHED_TIMEOUT;
	e->prev_state = e->state;
	e->state = state;
}

static __always_inline void ca_init_seqs(struct ca_endpoint *e, __u32 start, __u32 last)
{
	e->start_seq = start;
	e->ack_seq = start;
	e->last_seq = last;           /* the wrap counters are kept, as in Zeek */
	e->flags |= CA_EP_SEQ_VALID;
}

/* Sequence-number bookkeeping when an endpoint's segment arrives. */
static __always_inline void ca_tcp_init_endpoint(struct ca_endpoint *e, __u8 flags, __u32 seq, __u32 seq_end)
{
	int syn = flags & CA_TH_SYN;

	switch (e->state) {
	case CA_TCP_INACTIVE:
		if (syn)
			ca_init_seqs(e, seq, seq_end);
		else
			/* Partial connection: number bytes as if a SYN had been seen. */
			ca_init_seqs(e, seq - 1, seq);
		break;
	case CA_TCP_SYN_SENT:
	case CA_TCP_SYN_ACK_SENT:
		if (syn && seq != e->start_seq)
			ca_init_seqs(e, seq, seq_end);
		break;
	case CA_TCP_ESTABLISHED:
	case CA_TCP_PARTIAL:
		if (syn)
			ca_init_seqs(e, seq, seq_end);
		break;
	case CA_TCP_RESET:
		if (syn && e->prev_state == CA_TCP_INACTIVE)
			ca_init_seqs(e, seq, seq_end);
		break;
	}
}

/* rel_seq is relative to the sender's start: Zeek compares the repeats of
 * SYN/FIN/RST in that space, so a SYN that restarts the numbering adds no
 * second letter. */
static __always_inline void ca_tcp_history(struct ca_conn *c, int from_orig, struct ca_endpoint *e,
					   __u8 flags, __u32 rel_seq, __u32 len)
{
	int bits = !!(flags & CA_TH_SYN) + !!(flags & CA_TH_FIN) + !!(flags & CA_TH_RST);

	if (bits > 1) {
		if ((flags & CA_TH_FIN) && (flags & CA_TH_RST))
			ca_hist_once(c, from_orig, CA_HIST_FIN_RST, 'I');
		else
			ca_hist_once(c, from_orig, CA_HIST_MULTI, 'Q');
	} else if (bits == 1) {
		if (flags & CA_TH_SYN) {
			char code = (flags & CA_TH_ACK) ? 'H' : 'S';
			/* A SYN at a new relative sequence is a new attempt: repeat the letter. */
			if (ca_hist_once(c, from_orig, CA_HIST_SYN, code) && rel_seq != e->hist_last_syn)
				ca_hist_append(c, ca_hist_case(from_orig, code));
			e->hist_last_syn = rel_seq;
		}
		if (flags & CA_TH_FIN) {
			if (ca_hist_once(c, from_orig, CA_HIST_FIN, 'F') && rel_seq + len != e->hist_last_fin)
				ca_hist_append(c, ca_hist_case(from_orig, 'F'));
			e->hist_last_fin = rel_seq + len;
		}
		if (flags & CA_TH_RST) {
			if (ca_hist_once(c, from_orig, CA_HIST_RST, 'R') && rel_seq != e->hist_last_rst)
				ca_hist_append(c, ca_hist_case(from_orig, 'R'));
			e->hist_last_rst = rel_seq;
		}
	} else if (len) {
		ca_hist_once(c, from_orig, CA_HIST_DATA, 'D');
	} else if (flags & CA_TH_ACK) {
		ca_hist_once(c, from_orig, CA_HIST_ACK, 'A');
	}
}

/* Returns the signed advance of the endpoint's last sequence number. */
static __always_inline __s32 ca_tcp_update_last_seq(struct ca_conn *c, int from_orig, struct ca_endpoint *e,
						    __u8 flags, __u32 seq_end, __u32 len)
{
	__s32 delta = ca_seq_delta(seq_end, e->last_seq);

	if ((flags & (CA_TH_SYN | CA_TH_RST)) &&
	    (delta > CA_TOO_LARGE_SEQ_DELTA || delta < -CA_TOO_LARGE_SEQ_DELTA))
		return delta;  /* do not trust outlandish SYN/RST sequence numbers */
	if ((flags & CA_TH_FIN) && e->last_seq == e->start_seq + 1) {
		/* Only SYN and FIN seen: trust the FIN even for > 2 GB transfers. */
		if (seq_end < e->last_seq)
			e->seq_wraps++;
		e->last_seq = seq_end;
	} else if (e->state == CA_TCP_RESET) {
		;              /* no later sequence number is trusted */
	} else if (delta > 0) {
		if (seq_end < e->last_seq)
			e->seq_wraps++;
		e->last_seq = seq_end;
	} else if (len > 0) {
		ca_hist_scaled(c, from_orig, 'T', &e->rexmits);
	}
	return delta;
}

/* The peer has never sent anything: start its numbering from this ACK. */
static __always_inline void ca_tcp_init_peer(struct ca_endpoint *peer, __u32 ack)
{
	ca_init_seqs(peer, ack - 1, ack - 1);
}

/* Zeek's update_ack_seq: the highest ACK the peer has sent for e's data. */
static __always_inline void ca_tcp_update_ack_seq(struct ca_endpoint *e, __u32 ack)
{
	__s32 delta = ca_seq_delta(ack, e->ack_seq);

	if (ack == 0 && delta > CA_TOO_LARGE_SEQ_DELTA)
		return;        /* more likely a broken ACK than a wrap landing on 0 */
	if (delta > 0) {
		if (ack < e->ack_seq)
			e->ack_wraps++;
		e->ack_seq = ack;
	}
}

/* -- the reassembler's sequence bookkeeping -------------------------------- */

static __always_inline int ca_tcp_clean(const struct ca_endpoint *e)
{
	return e->state == CA_TCP_ESTABLISHED ||
	       (e->state == CA_TCP_CLOSED && e->prev_state == CA_TCP_ESTABLISHED);
}

/* Data delivered but not yet acknowledged, or held above a hole. */
static __always_inline int ca_tcp_has_blocks(const struct ca_endpoint *e)
{
	return ca_seq_delta(e->reassem_seq, e->trim_seq) > 0 || e->ooo_upper != e->ooo_seq;
}

/* Zeek's NoDataAcked: the peer has acknowledged nothing beyond the SYN. */
static __always_inline int ca_tcp_no_data_acked(const struct ca_endpoint *e)
{
	__u32 rel_ack = e->ack_seq - e->start_seq;
	return e->ack_wraps == 0 && rel_ack <= 1;
}

/* Zeek's TCP_Reassembler::DataPending for the closing endpoint e. */
static __always_inline int ca_tcp_data_pending(const struct ca_endpoint *e, const struct ca_endpoint *peer)
{
	__s32 d;

	if (e->flags & CA_EP_SKIP)
		return 0;
	d = ca_seq_delta(e->last_seq - e->start_seq, e->reassem_seq);
	if (d < 0)
		return 0;
	if (d != 0 && d != 1)
		return 1;      /* not all of e's data up to its FIN/RST was delivered */
	return e->state != CA_TCP_RESET && ca_tcp_has_blocks(peer);
}

/* A content gap of n bytes in x's data, reported only while both sides are
 * established or cleanly closing (Zeek's established_or_cleanly_closing). */
static __always_inline void ca_tcp_gap(struct ca_conn *c, int x_orig, struct ca_endpoint *x,
				       const struct ca_endpoint *other, __u32 n)
{
	if (ca_tcp_clean(x) && ca_tcp_clean(other)) {
		ca_hist_scaled(c, x_orig, 'G', &x->gaps);
		x->gap_bytes += n;
	}
}

/* Zeek's ConnectionClosed: mark this side closed and arm the timers that
 * will end the connection, unless data is still pending delivery. */
static __always_inline void ca_tcp_closed(struct ca_conn *c, struct ca_endpoint *e, struct ca_endpoint *peer,
					  int gen_event)
{
	int complete;

	if (ca_tcp_data_pending(e, peer)) {
		c->flags |= CA_CONN_CLOSE_DEFERRED;
		if (gen_event)
			c->flags |= CA_CONN_DEFERRED_GEN;
		return;
	}
	c->flags &= ~CA_CONN_CLOSE_DEFERRED;
	if (e->flags & CA_EP_DID_CLOSE)
		return;
	e->flags |= CA_EP_DID_CLOSE;
	complete = e->state == CA_TCP_RESET || (peer->flags & CA_EP_DID_CLOSE) ||
		   peer->state == CA_TCP_INACTIVE;
	if (complete) {
		if (e->prev_state != CA_TCP_INACTIVE || peer->state != CA_TCP_INACTIVE) {
			if (c->flags & CA_CONN_DEFERRED_GEN) {
				gen_event = 1;
				c->flags &= ~CA_CONN_DEFERRED_GEN;
			}
			if (gen_event)
				c->flags |= CA_CONN_FINISHED;
		}
		c->attempt_deadline = 0;
		c->expire_deadline = 0;
		c->close_deadline = c->last_ns + CA_TCP_CLOSE_DELAY_NS;
	} else if (e->prev_state != CA_TCP_INACTIVE) {
		c->expire_deadline = c->last_ns + CA_TCP_SESSION_TIMER_NS;
	}
}

/* Zeek's CheckEOF: once a closed side's data is all delivered, a deferred
 * close goes ahead (for this side: Zeek's EndpointEOF). */
static __always_inline void ca_tcp_check_eof(struct ca_conn *c, struct ca_endpoint *x, struct ca_endpoint *other)
{
	if ((x->flags & CA_EP_DID_EOF) ||
	    !((x->flags & CA_EP_SAW_FIN) || x->state == CA_TCP_CLOSED || x->state == CA_TCP_RESET))
		return;
	if (ca_tcp_data_pending(x, other))
		return;
	x->flags |= CA_EP_DID_EOF;
	if (c->flags & CA_CONN_CLOSE_DEFERRED) {
		ca_tcp_closed(c, x, other, !!(c->flags & CA_CONN_DEFERRED_GEN));
		c->flags &= ~CA_CONN_CLOSE_DEFERRED;
	}
}

/* Deliver the held data if it now continues the in-order data. */
static __always_inline void ca_tcp_deliver_held(const struct ca_conn *c, struct ca_endpoint *x)
{
	if (x->ooo_upper != x->ooo_seq && ca_seq_delta(x->ooo_seq, x->reassem_seq) <= 0) {
		if (ca_unlikely(ca_blocks_listed(x)) && ca_blocks_deliver(c, x))
			return;
		if (ca_seq_delta(x->ooo_upper, x->reassem_seq) > 0)
			x->reassem_seq = x->ooo_upper;
		x->ooo_seq = x->ooo_upper = 0;
	}
}

/* Zeek's DataSent + NewBlock + BlockInserted for len bytes at relative seq. */
static __always_inline void ca_tcp_data_sent(const struct ca_conn *c, struct ca_endpoint *x,
					     const struct ca_endpoint *peer, __u32 seq, __u32 len)
{
	__u32 upper = seq + len;
	__u32 ack;

	/* Nothing beyond what was delivered (a retransmission): no change. */
	if (ca_seq_delta(upper, x->reassem_seq) <= 0 || (x->flags & CA_EP_SKIP))
		return;
	ack = x->ack_seq - x->start_seq;
	if (ca_seq_delta(seq, ack) < 0)
		seq = ack;             /* the acknowledged part was delivered already */
	if (ca_seq_delta(seq, x->trim_seq) < 0)
		seq = x->trim_seq;
	if (ca_seq_delta(seq, x->reassem_seq) <= 0) {
		x->reassem_seq = upper;
		ca_tcp_deliver_held(c, x);
		/* Much sent, nothing acknowledged: the peer's ACKs are not
		 * being seen, so Zeek stops holding the delivered data. */
		if (ca_tcp_no_data_acked(x) && x->last_seq - x->start_seq > CA_MAX_INITIAL_WINDOW + 1)
			x->trim_seq = x->reassem_seq;
	} else {
		/* Above a hole: hold it. Within or next to a single held block, that
		 * block grows; apart from it, the blocks are listed (tcp_blocks.h). */
		if (x->ooo_upper == x->ooo_seq) {
			x->ooo_seq = seq;
			x->ooo_upper = upper;
		} else if (!ca_blocks_listed(x) && ca_seq_delta(seq, x->ooo_upper) <= 0 &&
			   ca_seq_delta(upper, x->ooo_seq) >= 0) {
			ca_span_extend(x, seq, upper);
		} else {
			ca_blocks_hold(c, x, peer, seq, upper);
		}
		if (ca_tcp_no_data_acked(x) &&
		    ca_seq_delta(x->ooo_upper, x->reassem_seq) > CA_MAX_ABOVE_HOLE_WITHOUT_ACKS) {
			x->flags |= CA_EP_SKIP;
			ca_blocks_clear(c, x);
			x->trim_seq = x->reassem_seq;
			return;
		}
	}
	if ((__u32)ca_seq_delta(x->reassem_seq, x->trim_seq) + ca_blocks_held(c, x) >
	    CA_EXCESSIVE_DATA_WITHOUT_ACKS) {
		x->flags |= CA_EP_SKIP;
		ca_blocks_clear(c, x);
		x->trim_seq = x->reassem_seq;
	}
}

/* Zeek's Undelivered, up to relative seq s, for data held as one block: if
 * it starts below s, it is delivered after the gap before it. */
static __always_inline void ca_tcp_undelivered_block(struct ca_conn *c, int x_orig, struct ca_endpoint *x,
						     struct ca_endpoint *other, __u32 s)
{
	if (x->ooo_upper != x->ooo_seq && ca_seq_delta(x->ooo_seq, x->reassem_seq) >= 0 &&
	    ca_seq_delta(x->ooo_seq, s) < 0) {
		ca_tcp_gap(c, x_orig, x, other, x->ooo_seq - x->reassem_seq);
		x->reassem_seq = x->ooo_upper;
		x->ooo_seq = x->ooo_upper = 0;
	}
}

/* The same for held data in several blocks: each block below s is delivered
 * after the gap before it (tcp_blocks.h). */
static __always_inline void ca_tcp_undelivered_blocks(struct ca_conn *c, int x_orig, struct ca_endpoint *x,
						      struct ca_endpoint *other, __u32 s)
{
	struct ca_tcp_blocks *b = ca_blocks_undelivered(c, x, s);

	if (!b) {
		ca_blocks_lost(x);
		ca_tcp_undelivered_block(c, x_orig, x, other, s);
		return;
	}
	if (b->count && ca_tcp_clean(x) && ca_tcp_clean(other)) {
		ca_hist_scaled_by(c, x_orig, 'G', &x->gaps, b->count);
		x->gap_bytes += b->bytes;
	}
	ca_blocks_settle(c, x, b);
}

/* Zeek's AckReceived + TrimToSeq + Undelivered: the peer acknowledged x's
 * data up to relative seq s; acknowledged bytes never seen are a gap. */
static __always_inline void ca_tcp_ack_received(struct ca_conn *c, int x_orig, struct ca_endpoint *x,
						struct ca_endpoint *other, __u32 s)
{
	if ((x->flags & CA_EP_SAW_FIN) && ca_seq_delta(s, x->fin_seq) >= 0)
		s = x->fin_seq - 1;        /* the FIN's octet is never missing */
	if (ca_seq_delta(s, x->trim_seq) <= 0)
		return;
	if (ca_seq_delta(s, x->reassem_seq) > 0 && !(s <= 2 && (c->flags & CA_CONN_PARTIAL))) {
		if (!(x->flags & CA_EP_SKIP)) {
			if (ca_unlikely(ca_blocks_listed(x)))
				ca_tcp_undelivered_blocks(c, x_orig, x, other, s);
			else
				ca_tcp_undelivered_block(c, x_orig, x, other, s);
			if (ca_seq_delta(s, x->reassem_seq) > 0)
				ca_tcp_gap(c, x_orig, x, other, s - x->reassem_seq);
		}
		if (ca_seq_delta(s, x->reassem_seq) > 0)
			x->reassem_seq = s;
	}
	if (x->ooo_upper != x->ooo_seq && ca_seq_delta(x->ooo_upper, s) <= 0)
		ca_blocks_clear(c, x);
	ca_tcp_deliver_held(c, x);
	x->trim_seq = s;
	ca_tcp_check_eof(c, x, other);
}

/* -- the state machine ------------------------------------------------------ */

/* e/peer are the sender and its peer; is_orig is the sender's role when the
 * packet arrived (Zeek passes that value on even after a flip). */
static __always_inline void ca_tcp_state_machine(struct ca_conn *c, struct ca_endpoint *e, struct ca_endpoint *peer,
						 int is_orig, struct ca_packet *p, __u32 len)
{
	__u8 flags = p->tcp_flags;

	switch (e->state) {
	case CA_TCP_INACTIVE:
		if (flags & CA_TH_SYN) {
			if (is_orig) {
				ca_set_state(c, e, peer, (flags & CA_TH_ACK) ? CA_TCP_SYN_ACK_SENT : CA_TCP_SYN_SENT);
				c->attempt_deadline = p->ts + CA_TCP_ATTEMPT_DELAY_NS;
			} else {
				if (!(flags & CA_TH_ACK) && peer->state == CA_TCP_SYN_ACK_SENT &&
				    p->seq == e->start_seq) {
					/* SYN/SYN-ACK reversal: the SYN-ACK's sender is the responder.
					 * The endpoints swap slots with the roles; e/peer keep
					 * pointing at the same hosts. */
					ca_flip_roles(c);
					e = &c->ep[0];
					peer = &c->ep[1];
					ca_set_state(c, peer, e, CA_TCP_ESTABLISHED);
					e->flags |= CA_EP_FIRST_SEEN;
				}
				if (peer->state == CA_TCP_SYN_SENT)
					ca_set_state(c, peer, e, CA_TCP_ESTABLISHED);
				ca_set_state(c, e, peer, CA_TCP_ESTABLISHED);
				/* connection_established: Conn::port_inactivity_timeouts */
				if (peer->state != CA_TCP_PARTIAL)
					c->flags |= CA_CONN_PORT_TIMEOUT;
			}
		}
		if (flags & CA_TH_FIN) {
			ca_set_state(c, e, peer, CA_TCP_CLOSED);
			p->tcp_do_close = p->tcp_gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			int reject = is_orig ? peer->state == CA_TCP_ESTABLISHED
					     : (peer->state == CA_TCP_SYN_SENT || peer->state == CA_TCP_SYN_ACK_SENT);
			ca_set_state(c, e, peer, CA_TCP_RESET);
			p->tcp_do_close = 1;
			p->tcp_gen_event = !reject;
		}
		if (e->state == CA_TCP_INACTIVE) {
			if (!is_orig && len == 0 && c->ep[0].state == CA_TCP_SYN_SENT) {
				;      /* an ACK of the SYN before the SYN-ACK: not a partial connection */
			} else if ((flags & CA_TH_ACK) && peer->state == CA_TCP_ESTABLISHED) {
				/* Missed the initial SYN but saw the SYN-ACK: established. */
				ca_set_state(c, e, peer, CA_TCP_ESTABLISHED);
				c->flags &= ~CA_CONN_PARTIAL;
				c->ep[(is_orig ^ 1) & 1].flags |= CA_EP_FIRST_SEEN;
			} else {
				ca_set_state(c, e, peer, CA_TCP_PARTIAL);
			}
		}
		break;
	case CA_TCP_SYN_SENT:
	case CA_TCP_SYN_ACK_SENT:
		if (flags & CA_TH_FIN) {
			ca_set_state(c, e, peer, CA_TCP_CLOSED);
			p->tcp_do_close = p->tcp_gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			ca_set_state(c, e, peer, CA_TCP_RESET);
			c->flags |= CA_CONN_FINISHED;
			p->tcp_do_close = 1;
		}
		break;
	case CA_TCP_ESTABLISHED:
	case CA_TCP_PARTIAL:
		if ((flags & CA_TH_SYN) && e->state == CA_TCP_PARTIAL && peer->state == CA_TCP_INACTIVE &&
		    !(flags & CA_TH_ACK))
			ca_set_state(c, e, peer, CA_TCP_SYN_SENT);
		if ((flags & CA_TH_FIN) && !(flags & CA_TH_RST)) {
			ca_set_state(c, e, peer, CA_TCP_CLOSED);
			/* FIN after the peer's FIN+RST is a normal close. */
			if (peer->state == CA_TCP_RESET && peer->prev_state == CA_TCP_CLOSED)
				ca_set_state(c, peer, e, CA_TCP_CLOSED);
			p->tcp_do_close = p->tcp_gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			ca_set_state(c, e, peer, CA_TCP_RESET);
			p->tcp_do_close = 1;
			if (peer->state != CA_TCP_RESET || peer->prev_state != CA_TCP_ESTABLISHED)
				c->flags |= CA_CONN_FINISHED;
		}
		break;
	case CA_TCP_CLOSED:
		if ((flags & CA_TH_RST) && peer->state != CA_TCP_CLOSED) {
			ca_set_state(c, e, peer, CA_TCP_RESET);
			if (!(e->flags & CA_EP_DID_CLOSE))
				p->tcp_do_close = 1;
			/* Zeek's ResetTimer runs only with a connection_reset handler,
			 * which no default script has: the ExpireTimer ends it. */
		}
		break;
	case CA_TCP_RESET:
		break;
	}
}

/* One TCP segment of an existing connection (Zeek's TCPSessionAdapter::Process),
 * up to its state machine. */
static __always_inline void ca_tcp_packet(struct ca_conn *c, struct ca_packet *p)
{
	/* Slots by index, not by branch: one verifier state whichever side sent. */
	__u32 idx = (p->src_slot ^ c->orig_slot) & 1;   /* the sender's slot on arrival */
	int is_orig = !idx;                             /* the role on arrival */
	int from_orig = is_orig;                        /* the role after any flip */
	struct ca_endpoint *e = &c->ep[idx];
	struct ca_endpoint *peer = &c->ep[idx ^ 1];
	__u8 flags = p->tcp_flags;
	__u32 len = p->payload_len;
	__u32 seg_len = len + !!(flags & CA_TH_SYN) + !!(flags & CA_TH_FIN);
	__u32 seq_end, rel_seq;

	if (flags & CA_TH_RST)
		seg_len -= len;    /* data on a RST is not part of the stream */
	seq_end = p->seq + seg_len;
	p->tcp_is_orig = is_orig;     /* (the tcp_* fields start zeroed: ca_packet clears p) */

	/* Zeek's SetPartialStatus: did each side's first packet look like a handshake? */
	if (!(e->flags & CA_EP_FIRST_SEEN)) {
		if (is_orig) {
			if (!(flags & CA_TH_SYN) || (flags & CA_TH_ACK))
				c->flags |= CA_CONN_PARTIAL;
			else
				c->flags &= ~CA_CONN_PARTIAL;
		} else if (!(c->flags & CA_CONN_PARTIAL) && !(flags & CA_TH_SYN)) {
			c->flags |= CA_CONN_PARTIAL;
		}
	}

	ca_tcp_init_endpoint(e, flags, p->seq, seq_end);
	rel_seq = p->seq - e->start_seq;
	p->tcp_rel_seq = rel_seq;
	p->tcp_seq_underflow = e->seq_wraps == 0 && (__s32)rel_seq < 0;

	/* A SYN-ACK opened this connection and productive traffic follows (a
	 * pure ACK or data, no SYN/FIN/RST): the SYN-ACK's sender was the
	 * responder after all. Zeek rewrites the history to "^h". */
	if (!(flags & (CA_TH_SYN | CA_TH_FIN | CA_TH_RST)) && (len || (flags & CA_TH_ACK)) &&
	    c->history_len == 1 && c->history[0] == 'H') {
		ca_flip_roles(c);
		c->history[0] = '^';
		c->history[1] = 'h';
		c->history_len = 2;
		c->ep[0].flags |= CA_EP_FIRST_SEEN;
		from_orig = !from_orig;
		idx ^= 1;
		e = &c->ep[idx];
		peer = &c->ep[idx ^ 1];
	}

	ca_tcp_history(c, from_orig, e, flags, rel_seq, len);

	if (p->window == 0 && !(flags & CA_TH_RST) && peer->state != CA_TCP_CLOSED && e->state != CA_TCP_RESET)
		ca_hist_scaled(c, from_orig, 'W', &e->zero_windows);

	if (!(c->ep[0].flags & CA_EP_DID_CLOSE) || !(c->ep[1].flags & CA_EP_DID_CLOSE))
		ca_touch(c, p);

	if (flags & CA_TH_FIN) {
		e->flags |= CA_EP_SAW_FIN;  /* Zeek's FIN_cnt > 0: the FIN octet is not payload */
		e->fin_seq = rel_seq + seg_len;
	}

	if (flags & CA_TH_ACK) {
		if (peer->state == CA_TCP_INACTIVE) {
			p->tcp_rel_ack = 1;
			ca_tcp_init_peer(peer, p->ack);
		} else {
			__u32 rel_ack = p->ack - peer->start_seq;
			if (peer->ack_wraps == 0 && (__s32)rel_ack < 0) {
				rel_ack = 0;           /* before the peer's start: not trusted */
			} else if (!(flags & CA_TH_RST)) {
				ca_tcp_update_ack_seq(peer, p->ack);
			}
			p->tcp_rel_ack = rel_ack;
		}
	}

	ca_tcp_update_last_seq(c, from_orig, e, flags, seq_end, len);
	ca_tcp_state_machine(c, e, peer, is_orig, p, len);
}

/* The rest of Process: the reassembler's view of the ACK and the data, then
 * the close. Everything comes from memory (the connection and the packet
 * scratch), so this part is verified once, not once per state-machine path. */
static __always_inline void ca_tcp_packet_finish(struct ca_conn *c, struct ca_packet *p)
{
	__u32 idx = (p->src_slot ^ c->orig_slot) & 1;   /* the sender's slot after any flip */
	struct ca_endpoint *e = &c->ep[idx];
	struct ca_endpoint *peer = &c->ep[idx ^ 1];
	__u8 flags = p->tcp_flags;
	__u32 len = p->payload_len;

	/* After the state machine, so the states say whether a gap is clean. */
	if (flags & CA_TH_ACK)
		ca_tcp_ack_received(c, idx, peer, e, p->tcp_rel_ack);
	if (len > 0 && p->caplen >= p->ip_len && !(flags & CA_TH_RST) && !p->tcp_seq_underflow)
		ca_tcp_data_sent(c, e, peer, p->tcp_rel_seq + !!(flags & CA_TH_SYN), len);
	ca_tcp_check_eof(c, e, peer);
	if (p->tcp_do_close)
		ca_tcp_closed(c, e, peer, p->tcp_gen_event);
	c->ep[(p->tcp_is_orig ^ 1) & 1].flags |= CA_EP_FIRST_SEEN;
}

/* Zeek's IsReuse: does this SYN start a new connection on the same key? */
static __always_inline int ca_tcp_is_reuse(struct ca_conn *c, struct ca_packet *p)
{
	struct ca_endpoint *orig = &c->ep[0], *resp = &c->ep[1], *co = orig;
	__u8 flags = p->tcp_flags;

	if (!(flags & CA_TH_SYN))
		return 0;
	if (flags & CA_TH_ACK) {
		if (orig->state != CA_TCP_INACTIVE)
			return 0;
		co = resp;
	}
	if (!(orig->flags & CA_EP_DID_CLOSE) && !(resp->flags & CA_EP_DID_CLOSE)) {
		if (p->seq == co->start_seq)
			return 0;
		if (!(flags & CA_TH_ACK) && co->state == CA_TCP_SYN_ACK_SENT && resp->state == CA_TCP_INACTIVE &&
		    p->seq == resp->start_seq)
			return 0;      /* the SYN/SYN-ACK reversal, handled by the state machine */
		return 1;          /* a SYN with a new initial sequence number */
	}
	return 1;                  /* any SYN after either side closed */
}

#endif /* CA_TCP_H */
