/* tcp.h: Zeek's TCP endpoint model, per packet, in the kernel.
 *
 * Mirrors the behaviour of Zeek's TCP session adapter: endpoint states,
 * sequence tracking for payload sizes, history letters and the close/attempt
 * timers. Everything that depends on reassembled content (analyzers, content
 * gaps seen by the reassembler) is out of scope here.
 */
#ifndef CA_TCP_H
#define CA_TCP_H

#define CA_TOO_LARGE_SEQ_DELTA 1048576

static __always_inline __s32 ca_seq_delta(__u32 a, __u32 b)
{
	return (__s32)(a - b);
}

static __always_inline void ca_set_state(struct ca_endpoint *e, __u8 state)
{
	e->prev_state = e->state;
	e->state = state;
}

static __always_inline void ca_init_seqs(struct ca_endpoint *e, __u32 start, __u32 last)
{
	e->start_seq = start;
	e->ack_seq = start;
	e->last_seq = last;
	e->seq_wraps = 0;
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

static __always_inline void ca_tcp_history(struct ca_conn *c, int from_orig, struct ca_endpoint *e,
					   __u8 flags, __u32 seq, __u32 len)
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
			/* A SYN with a new sequence number is a new attempt: repeat the letter. */
			if (ca_hist_once(c, from_orig, CA_HIST_SYN, code) && seq != e->hist_last_syn)
				ca_hist_append(c, ca_hist_case(from_orig, code));
			e->hist_last_syn = seq;
		}
		if (flags & CA_TH_FIN) {
			if (ca_hist_once(c, from_orig, CA_HIST_FIN, 'F') && seq + len != e->hist_last_fin)
				ca_hist_append(c, ca_hist_case(from_orig, 'F'));
			e->hist_last_fin = seq + len;
		}
		if (flags & CA_TH_RST) {
			if (ca_hist_once(c, from_orig, CA_HIST_RST, 'R') && seq != e->hist_last_rst)
				ca_hist_append(c, ca_hist_case(from_orig, 'R'));
			e->hist_last_rst = seq;
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

/* Zeek's ConnectionClosed: mark this side closed and arm the timers that
 * will end the connection. */
static __always_inline void ca_tcp_closed(struct ca_conn *c, struct ca_endpoint *e, struct ca_endpoint *peer,
					  int gen_event)
{
	int complete;

	if (e->flags & CA_EP_DID_CLOSE)
		return;
	e->flags |= CA_EP_DID_CLOSE;
	complete = e->state == CA_TCP_RESET || (peer->flags & CA_EP_DID_CLOSE) ||
		   peer->state == CA_TCP_INACTIVE;
	if (complete) {
		if (gen_event && (e->prev_state != CA_TCP_INACTIVE || peer->state != CA_TCP_INACTIVE))
			c->flags |= CA_CONN_FINISHED;
		c->attempt_deadline = 0;
		c->expire_deadline = 0;
		c->reset_deadline = 0;
		c->close_deadline = c->last_ns + CA_TCP_CLOSE_DELAY_NS;
	} else if (e->prev_state != CA_TCP_INACTIVE) {
		c->expire_deadline = c->last_ns + CA_TCP_SESSION_TIMER_NS;
	}
}

static __always_inline void ca_tcp_state_machine(struct ca_conn *c, int from_orig, struct ca_packet *p,
						 __u32 len, __s32 delta_last)
{
	struct ca_endpoint *e = &c->ep[from_orig ? 0 : 1];
	struct ca_endpoint *peer = &c->ep[from_orig ? 1 : 0];
	__u8 flags = p->tcp_flags;
	int do_close = 0, gen_event = 0;

	switch (e->state) {
	case CA_TCP_INACTIVE:
		if (flags & CA_TH_SYN) {
			if (from_orig) {
				ca_set_state(e, (flags & CA_TH_ACK) ? CA_TCP_SYN_ACK_SENT : CA_TCP_SYN_SENT);
				c->attempt_deadline = p->ts + CA_TCP_ATTEMPT_DELAY_NS;
			} else {
				if (!(flags & CA_TH_ACK) && peer->state == CA_TCP_SYN_ACK_SENT &&
				    p->seq == e->start_seq) {
					/* SYN/SYN-ACK reversal: the SYN-ACK's sender is the responder. */
					ca_flip_roles(c);
					/* After the flip this endpoint is the originator: e/peer swapped slots. */
					e = &c->ep[0];
					peer = &c->ep[1];
					from_orig = 1;
					ca_set_state(peer, CA_TCP_ESTABLISHED);
					e->flags |= CA_EP_FIRST_SEEN;
				}
				if (peer->state == CA_TCP_SYN_SENT)
					ca_set_state(peer, CA_TCP_ESTABLISHED);
				ca_set_state(e, CA_TCP_ESTABLISHED);
			}
		}
		if (flags & CA_TH_FIN) {
			ca_set_state(e, CA_TCP_CLOSED);
			do_close = gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			int reject = from_orig ? peer->state == CA_TCP_ESTABLISHED
					       : (peer->state == CA_TCP_SYN_SENT || peer->state == CA_TCP_SYN_ACK_SENT);
			ca_set_state(e, CA_TCP_RESET);
			do_close = 1;
			gen_event = !reject;
		}
		if (e->state == CA_TCP_INACTIVE) {
			if (!from_orig && len == 0 && c->ep[0].state == CA_TCP_SYN_SENT) {
				;      /* an ACK of the SYN before the SYN-ACK: not a partial connection */
			} else if ((flags & CA_TH_ACK) && peer->state == CA_TCP_ESTABLISHED) {
				/* Missed the initial SYN but saw the SYN-ACK: established. */
				ca_set_state(e, CA_TCP_ESTABLISHED);
				c->flags &= ~CA_CONN_PARTIAL;
			} else {
				ca_set_state(e, CA_TCP_PARTIAL);
			}
		}
		break;
	case CA_TCP_SYN_SENT:
	case CA_TCP_SYN_ACK_SENT:
		if (flags & CA_TH_FIN) {
			ca_set_state(e, CA_TCP_CLOSED);
			do_close = gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			ca_set_state(e, CA_TCP_RESET);
			c->flags |= CA_CONN_FINISHED;
			do_close = 1;
		}
		break;
	case CA_TCP_ESTABLISHED:
	case CA_TCP_PARTIAL:
		if ((flags & CA_TH_SYN) && e->state == CA_TCP_PARTIAL && peer->state == CA_TCP_INACTIVE &&
		    !(flags & CA_TH_ACK))
			ca_set_state(e, CA_TCP_SYN_SENT);
		if ((flags & CA_TH_FIN) && !(flags & CA_TH_RST)) {
			ca_set_state(e, CA_TCP_CLOSED);
			/* FIN after the peer's FIN+RST is a normal close. */
			if (peer->state == CA_TCP_RESET && peer->prev_state == CA_TCP_CLOSED)
				ca_set_state(peer, CA_TCP_CLOSED);
			do_close = gen_event = 1;
		}
		if (flags & CA_TH_RST) {
			ca_set_state(e, CA_TCP_RESET);
			do_close = 1;
			if (peer->state != CA_TCP_RESET || peer->prev_state != CA_TCP_ESTABLISHED)
				c->flags |= CA_CONN_FINISHED;
		}
		break;
	case CA_TCP_CLOSED:
		if ((flags & CA_TH_RST) && peer->state != CA_TCP_CLOSED) {
			ca_set_state(e, CA_TCP_RESET);
			if (!(e->flags & CA_EP_DID_CLOSE))
				do_close = 1;
			c->reset_deadline = p->ts + CA_TCP_RESET_DELAY_NS;
		}
		break;
	case CA_TCP_RESET:
		break;
	}

	if (do_close)
		ca_tcp_closed(c, e, peer, gen_event);
}

/* One TCP segment of an existing connection. */
static __always_inline void ca_tcp_packet(struct ca_conn *c, struct ca_packet *p)
{
	int from_orig = p->src_slot == c->orig_slot;
	struct ca_endpoint *e = &c->ep[from_orig ? 0 : 1];
	struct ca_endpoint *peer = &c->ep[from_orig ? 1 : 0];
	__u8 flags = p->tcp_flags;
	__u32 len = p->payload_len;
	__u32 seg_len = len + !!(flags & CA_TH_SYN) + !!(flags & CA_TH_FIN);
	__u32 seq_end;
	__s32 delta_last;

	if (flags & CA_TH_RST)
		seg_len -= len;    /* data on a RST is not part of the stream */
	seq_end = p->seq + seg_len;

	ca_tcp_init_endpoint(e, flags, p->seq, seq_end);

	/* A SYN-ACK opened this connection and productive traffic follows:
	 * the SYN-ACK's sender was the responder after all. */
	if ((len || ((flags & CA_TH_ACK) && !(flags & (CA_TH_SYN | CA_TH_FIN | CA_TH_RST)))) &&
	    c->history_len == 1 && c->history[0] == 'H') {
		ca_flip_roles(c);
		c->history[0] = '^';
		c->history[1] = 'h';
		c->history_len = 2;
		c->ep[0].flags |= CA_EP_FIRST_SEEN;
		from_orig = p->src_slot == c->orig_slot;
		e = &c->ep[from_orig ? 0 : 1];
		peer = &c->ep[from_orig ? 1 : 0];
	}

	ca_tcp_history(c, from_orig, e, flags, p->seq, len);
	if (flags & CA_TH_FIN)
		e->flags |= CA_EP_SAW_FIN;  /* Zeek's FIN_cnt > 0: the FIN octet is not payload */

	if (p->window == 0 && !(flags & CA_TH_RST) && peer->state != CA_TCP_CLOSED && e->state != CA_TCP_RESET)
		ca_hist_scaled(c, from_orig, 'W', &e->zero_windows);

	if (!(c->ep[0].flags & CA_EP_DID_CLOSE) || !(c->ep[1].flags & CA_EP_DID_CLOSE))
		c->last_ns = p->ts;

	if (flags & CA_TH_ACK) {
		if (peer->state == CA_TCP_INACTIVE) {
			ca_tcp_init_peer(peer, p->ack);
		} else if (!(flags & CA_TH_RST) && ca_seq_delta(p->ack, peer->ack_seq) > 0) {
			peer->ack_seq = p->ack;
		}
	}

	delta_last = ca_tcp_update_last_seq(c, from_orig, e, flags, seq_end, len);
	ca_tcp_state_machine(c, from_orig, p, len, delta_last);
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
