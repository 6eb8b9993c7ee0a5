/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Tunnels, decapsulated as Zeek's packet analyzers do by default
 * (src/packet_analysis/protocol/{udp,vxlan,geneve,gre,iptunnel}):
 *
 *   UDP to the connection's responder port 4789  -> VXLAN  -> Ethernet
 *                                            6081  -> Geneve -> Ethernet or IP
 *                                            2152, 2123 -> GTPv1 G-PDU -> IP
 *                                            5072  -> AYIYA (forward) -> IP
 *                                            3544  -> Teredo -> IPv6
 *                                            4754  -> GRE (as below), whose tunnel
 *                                                     is the address pair's, as for GRE over IP
 *   UDP on another port whose content is Teredo or AYIYA (Zeek's protocol
 *   detection; here on a connection's first packet) -> as on their ports
 *   IP protocol 4 or 41 (IP-in-IP, 6in4, 4in6)    -> IP
 *   IP protocol 47, GRE version 0                 -> IP; Ethernet for transparent
 *                                                    bridging and ERSPAN I/II/III
 *                   GRE version 1 (PPTP)          -> PPP -> IP
 *
 * The outer packet is tracked first: a UDP tunnel is a connection of its own;
 * an IP tunnel is tracked like one (per address pair and protocol) but is no
 * row of conn.log, and its id is its address pair's. Then a stage of its own
 * (ca_decap, tail-called only for a tunnel's packets, so nothing of this
 * weighs on any other packet) finds the inner packet and runs it through the
 * very same parser and state machines; its connection remembers the tunnel's
 * id as its tunnel parent. Up to Tunnel::max_depth layers (ca_decap calls
 * itself for a tunnel in a tunnel). */
#ifndef CA_TUNNEL_H
#define CA_TUNNEL_H

#define CA_TUNNEL_MAX_DEPTH 4      /* Tunnel::max_depth by default, and the most the program opens */
#define CA_TUNNEL_MAX_CHANGES 5    /* Tunnel::max_changes_per_connection */
#define CA_PORT_VXLAN 4789
#define CA_PORT_GENEVE 6081
#define CA_PORT_GRE_UDP 4754
#define CA_PORT_GTP_U 2152
#define CA_PORT_GTP_C 2123
#define CA_PORT_AYIYA 5072
#define CA_PORT_TEREDO 3544
#define CA_GTP_MAX_EXT_HDRS 4
#define CA_IPPROTO_IPIP 4
#define CA_IPPROTO_IPV6 41
#define CA_IPPROTO_GRE 47

/* What the inner packet starts with. */
#define CA_INNER_NONE 0
#define CA_INNER_ETHERNET 1
#define CA_INNER_IP 2
#define CA_INNER_AMSDU 3           /* an 802.11 A-MSDU's subframes, read one at a time (ca_amsdu_subframe) */

/* An A-MSDU while its subframes are read: each is a packet of its own, so
 * after one is done the decap stage runs again for the next (capture.bpf.c,
 * ca_amsdu_next). Zeek's IEEE802_11 analyzer reads them in one loop, each
 * with the encapsulation the frame had. */
struct ca_amsdu {
	__u32 next;        /* offset of the next subframe; 0: none left */
	__u32 end;         /* where the 802.11 frame ends */
	__u64 parent;      /* the tunnel around the frame (the scratch's tunnel_parent) */
	__u8 active;       /* this packet's A-MSDU is being read; cleared as each packet starts */
	__u8 resume;       /* the decap stage is to read the next subframe, not a tunnel's packet */
	__u8 drop;         /* a subframe's verdict was to drop the packet */
	__u8 depth;        /* the tunnels around the subframes' packets */
	__u8 egress;
	__u8 pad[3];
};

static __always_inline int ca_is_udp_tunnel_port(__u16 port)
{
	/* One comparison for most ports (53, 443, ephemeral ones): the range first. */
	if (port < CA_PORT_GTP_C || port > CA_PORT_GENEVE)
		return 0;
	return port == CA_PORT_VXLAN || port == CA_PORT_GENEVE || port == CA_PORT_GRE_UDP ||
	       port == CA_PORT_GTP_U || port == CA_PORT_GTP_C || port == CA_PORT_AYIYA || port == CA_PORT_TEREDO;
}

/* Zeek's IP tunnels are one per address pair (IPTunnelAnalyzer's IPPair):
 * FNV-1a of the canonical key's addresses. */
static __always_inline __u64 ca_pair_tunnel_id(const struct ca_packet *p)
{
	const __u32 *w = (const __u32 *)p->key.addr;
	__u64 h = 0xcbf29ce484222325ULL;

#pragma unroll
	for (int i = 0; i < 8; i++)
		h = (h ^ w[i]) * 0x100000001b3ULL;
	return h | CA_PAIR_TUNNEL_ID;
}

/* GTPv1-U (3GPP TS 29.281) G-PDU at off, len bytes: *inner at the user's IP packet. */
static __always_inline int ca_gtp(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner)
{
	__u8 *g = ca_hdr_at(skb, off, 12);
	__u32 hlen = 8;
	__u8 *v;

	if (!g || (g[0] >> 5) != 1 || !(g[0] & 0x10) || g[1] != 0xff)
		return CA_INNER_NONE;      /* not version 1, not GTP (GTP'), not user data */
	if (g[0] & 0x07) {
		__u8 next = g[11];         /* sequence number, N-PDU number, next extension type */
		hlen = 12;
		if (g[0] & 0x04) {
			for (int i = 0; i < CA_GTP_MAX_EXT_HDRS && next; i++) {
				__u8 *e = ca_hdr_at(skb, off + hlen, 1);
				__u8 *n;
				if (!e || !e[0])
					return CA_INNER_NONE;
				hlen += e[0] * 4;  /* length in 4-byte units, the next type last */
				if (hlen > 64)
					return CA_INNER_NONE;
				n = ca_hdr_at(skb, off + hlen - 1, 1);
				if (!n)
					return CA_INNER_NONE;
				next = n[0];
			}
			if (next)
				return CA_INNER_NONE;
		}
	}
	v = ca_hdr_at(skb, off + hlen, 1);
	if (!v || len < hlen + 20 || ((v[0] >> 4) != 4 && (v[0] >> 4) != 6))
		return CA_INNER_NONE;
	*inner = off + hlen;
	return CA_INNER_IP;
}

/* Teredo (RFC 4380) at off, len bytes: an origin indication and an
 * authentication header, each at most once (origin last), then IPv6 whose
 * length is the rest of the datagram; a bubble (no next header, no payload)
 * may have bytes after it, which Zeek decapsulates with a weird (*weird). */
static __always_inline int ca_teredo(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner, __u32 *weird)
{
	__u32 hlen = 0, plen;
	int origin = 0, auth = 0;
	__u8 *v6;

	for (int i = 0; i < 3; i++) {
		__u8 *h = ca_hdr_at(skb, off + hlen, 4);
		if (!h || len < hlen + 2)
			return CA_INNER_NONE;
		if (h[0] == 0 && h[1] == 0 && !origin) {
			hlen += 8;                          /* origin indication */
			origin = 1;
		} else if (h[0] == 0 && h[1] == 1 && !origin && !auth) {
			hlen += 4 + h[2] + h[3] + 8 + 1;    /* ids, nonce, confirmation byte */
			auth = 1;
		} else if ((h[0] >> 4) == 6) {
			break;
		} else {
			return CA_INNER_NONE;
		}
		if (hlen > 128)
			return CA_INNER_NONE;
	}
	v6 = ca_hdr_at(skb, off + hlen, 40);
	if (!v6 || (v6[0] >> 4) != 6 || len < hlen + 40)
		return CA_INNER_NONE;
	plen = (__u32)v6[4] << 8 | v6[5];
	if (len - hlen < 40 + plen)
		return CA_INNER_NONE;                    /* truncated */
	if (len - hlen > 40 + plen) {
		if (!(v6[6] == 59 && plen == 0))
			return CA_INNER_NONE;            /* a payload length that is not the datagram's */
		*weird = CA_WEIRD_TEREDO_BUBBLE_WITH_PAYLOAD;
	}
	*inner = off + hlen;
	return CA_INNER_IP;
}

/* Zeek's TeredoAnalyzer::DetectProtocol on a UDP payload at off, len bytes:
 * an IPv6 header with a Teredo address in its first 40 bytes (its pattern
 * is anchored at the start only: a bubble with bytes after it matches too),
 * or an origin indication (after an authentication header, if any) before
 * IPv6. */
static __always_inline int ca_detect_teredo(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 *d = ca_hdr_at(skb, off, 40);
	__u8 *o;
	__u32 skip = 0;

	if (!d || len < 40)
		return 0;
	if ((d[0] >> 4) != 6 && !(d[0] == 0 && (d[1] == 0 || d[1] == 1)))
		return 0;
	if ((d[0] >> 4) == 6 &&
	    ((d[8] == 0x20 && d[9] == 0x01 && d[10] == 0 && d[11] == 0) ||
	     (d[24] == 0x20 && d[25] == 0x01 && d[26] == 0 && d[27] == 0)))
		return 1;
	if (d[1] == 1) {
		skip = 13 + d[2] + d[3];       /* authentication header */
		if (len < skip + 40)
			return 0;
		o = ca_hdr_at(skb, off + skip, 2);
		if (!o || o[0] != 0 || o[1] != 0)
			return 0;
	} else if (d[1] != 0) {
		return 0;
	}
	if (len < skip + 8 + 40)
		return 0;
	o = ca_hdr_at(skb, off + skip + 8, 1);    /* after the origin indication */
	return o && (o[0] >> 4) == 6;
}

/* Zeek's AYIYAAnalyzer::DetectProtocol. */
static __always_inline int ca_detect_ayiya(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 *d = ca_hdr_at(skb, off, 3);

	return d && len >= 3 && d[1] == 0x52 && d[2] == 0x11;
}

/* AYIYA (draft-massar-v6ops-ayiya) at off, len bytes: a forwarded IP packet. */
static __always_inline int ca_ayiya(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner)
{
	__u8 *a = ca_hdr_at(skb, off, 8);
	__u32 hlen;

	if (!a)
		return CA_INNER_NONE;
	hlen = 8 + (1u << (a[0] >> 4)) + (a[1] >> 4) * 4;   /* identity, signature */
	if ((a[2] & 0x0f) != 1 || (a[3] != CA_IPPROTO_IPIP && a[3] != CA_IPPROTO_IPV6) || len <= hlen)
		return CA_INNER_NONE;
	*inner = off + hlen;
	return CA_INNER_IP;
}

/* The EtherType after an 8-byte LLC/SNAP header, or 0 when it is not
 * SNAP-encapsulated Ethernet (DSAP and SSAP SNAP, an unnumbered frame, OUI 0):
 * Zeek's HandleInnerPacket reads nothing else. */
static __always_inline __u16 ca_snap_type(const __u8 *llc)
{
	if (llc[0] != 0xaa || llc[1] != 0xaa || llc[2] != 0x03 || llc[3] || llc[4] || llc[5])
		return 0;
	return (__u16)llc[6] << 8 | llc[7];
}

/* An 802.11 frame's LLC/SNAP header at off, len bytes on (Zeek's
 * HandleInnerPacket): CA_INNER_IP with *inner past it when IP follows. */
static __always_inline int ca_llc_snap(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner, __u32 *weird)
{
	__u8 *llc = ca_hdr_at(skb, off, 8);
	__u16 type;

	if (len < 8 || !llc) {
		*weird = CA_WEIRD_TRUNCATED_802_11_LLC_HEADER;
		return CA_INNER_NONE;
	}
	type = ca_snap_type(llc);
	if (type != CA_ETH_P_IP && type != CA_ETH_P_IPV6)
		return CA_INNER_NONE;              /* not SNAP, ARP, or nothing Zeek forwards */
	*inner = off + 8;
	return CA_INNER_IP;
}

/* IEEE 802.11 at off, len bytes, as Zeek's IEEE802_11 analyzer reads it
 * (after Aruba's GRE): a data frame's LLC/SNAP payload when it is IP, with
 * *inner at the IP header; management and control frames, subtypes without
 * data and protected frames carry nothing it reads. An A-MSDU gives
 * CA_INNER_AMSDU, *inner at its first subframe. */
static __always_inline int ca_ieee802_11(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner, __u32 *weird)
{
	__u8 *f = ca_hdr_at(skb, off, 2), *b;
	__u32 hlen = 24;
	int amsdu = 0;

	if (!f || len <= hlen) {
		*weird = CA_WEIRD_TRUNCATED_802_11_HEADER;
		return CA_INNER_NONE;
	}
	if (!((f[0] >> 2) & 0x02) || ((f[0] >> 4) & 0x04))
		return CA_INNER_NONE;              /* not data, or a subtype without data */
	if ((f[1] & 0x03) == 0x03)
		hlen += 6;                         /* To DS and From DS: a fourth address */
	if (len <= hlen) {
		*weird = CA_WEIRD_TRUNCATED_802_11_HEADER;
		return CA_INNER_NONE;
	}
	if ((f[0] >> 4) & 0x08) {                  /* QoS data: 2 bytes of QoS control */
		b = ca_hdr_at(skb, off + hlen, 1);
		if (!b)
			return CA_INNER_NONE;
		amsdu = b[0] & 0x80;
		if (f[1] & 0x40)
			return CA_INNER_NONE;      /* protected: encrypted */
		hlen += 2;
		if (len <= hlen) {
			*weird = CA_WEIRD_TRUNCATED_802_11_HEADER;
			return CA_INNER_NONE;
		}
	}
	*inner = off + hlen;
	if (amsdu)
		return CA_INNER_AMSDU;
	return ca_llc_snap(skb, off + hlen, len - hlen, inner, weird);
}

/* The A-MSDU subframe at a->next (Zeek's loop in IEEE802_11Analyzer): a
 * 14-byte header (destination, source, length), then LLC/SNAP. a->next moves
 * on to the subframe after it, past the (length % 4) bytes of padding Zeek
 * skips, or to 0 when none is left or Zeek stops here. Returns the link of
 * its payload with *inner set; CA_INNER_NONE for one with nothing to read
 * (ARP), and with *weird set where Zeek stops: a subframe cut short, or one
 * whose payload it cannot forward (an LLC header cut short stops it with two
 * weirds, *weird the first; the caller adds the second). Headers the skb
 * does not hold (a replayed frame is cut at what one test run takes) stop
 * the walk too, their bytes reported. */
static __always_inline int ca_amsdu_subframe(struct __sk_buff *skb, struct ca_amsdu *a, __u32 *inner,
					     __u32 *weird, __u32 *detail)
{
	__u32 at = a->next, len = a->end > at ? a->end - at : 0, body, after, pad;
	__u8 *h, *llc;
	__u16 type;

	a->next = 0;
	if (len < 14) {
		*weird = CA_WEIRD_TRUNCATED_802_11_AMSDU_HEADER;
		return CA_INNER_NONE;
	}
	h = ca_hdr_at(skb, at + 12, 2);
	if (!h)
		goto unread;
	body = (__u32)h[0] << 8 | h[1];
	if (len < body + 14) {
		*weird = CA_WEIRD_TRUNCATED_802_11_AMSDU_PACKET;
		return CA_INNER_NONE;
	}
	if (body < 8) {
		*weird = CA_WEIRD_TRUNCATED_802_11_LLC_HEADER;
		return CA_INNER_NONE;
	}
	llc = ca_hdr_at(skb, at + 14, 8);
	if (!llc)
		goto unread;
	type = ca_snap_type(llc);
	if (type != CA_ETH_P_IP && type != CA_ETH_P_IPV6 && type != CA_ETH_P_ARP && type != CA_ETH_P_RARP) {
		*weird = CA_WEIRD_INVALID_802_11_AMSDU_INNER_PACKET;     /* not SNAP, or no analyzer for it */
		return CA_INNER_NONE;
	}
	after = 14 + body;
	pad = body % 4;
	if (len - after >= pad)
		after += pad;
	if (len > after)
		a->next = at + after;
	if (type == CA_ETH_P_ARP || type == CA_ETH_P_RARP)
		return CA_INNER_NONE;              /* Zeek's ARP analyzer's: no connection */
	*inner = at + 22;
	return CA_INNER_IP;
unread:
	*weird = CA_WEIRD_AMSDU_REST_UNREAD;
	*detail = len;
	return CA_INNER_NONE;
}

/* Aruba's GRE protocol types, as Zeek's GRE analyzer tells them: an 802.11 frame follows. */
static __always_inline int ca_gre_is_aruba(__u16 proto)
{
	return ((proto & 0x8200) == 0x8200 && (proto & 0x0f) == 0) ||
	       ((proto & 0x8300) == 0x8300 && (proto & 0x0f) == 0 && proto <= 0x8370) || proto == 0x9000;
}

static __always_inline int ca_is_ip_tunnel_proto(__u8 proto)
{
	return proto == CA_IPPROTO_IPIP || proto == CA_IPPROTO_IPV6 || proto == CA_IPPROTO_GRE;
}

/* Zeek's IPTunnel analyzer before it opens an IP-in-IP tunnel (IP::ParsePacket):
 * the inner header must be of the version the outer protocol names, and its
 * total length that of the outer payload, as much of it as was captured. A
 * weird code about the outer packet, or 0. (A capture cut by its snaplen
 * fails too, as in Zeek. Zeek calls an IPv4 inner header shorter than 20
 * bytes a wrong version.) */
static __always_inline __u32 ca_inner_ip_weird(struct __sk_buff *skb, const struct ca_packet *p)
{
	__u32 rel = p->l4_off - p->l3_off, len = p->l4_len, total;
	__u8 *h;

	if (p->caplen < rel + len)
		len = p->caplen > rel ? p->caplen - rel : 0;
	if (p->key.ip_proto == CA_IPPROTO_IPV6) {
		h = len < 40 ? 0 : ca_hdr_at(skb, p->l4_off, 6);
		if (!h)
			return CA_WEIRD_TRUNCATED_INNER_IP;
		if (h[0] >> 4 != 6)
			return CA_WEIRD_INVALID_INNER_IP_VERSION;
		total = ((__u32)h[4] << 8 | h[5]) + 40;
	} else {
		h = len < 20 ? 0 : ca_hdr_at(skb, p->l4_off, 4);
		if (!h || h[0] >> 4 != 4)
			return CA_WEIRD_INVALID_INNER_IP_VERSION;
		total = (__u32)h[2] << 8 | h[3];
	}
	if (total == len)
		return 0;
	return total > len ? CA_WEIRD_TRUNCATED_INNER_IP : CA_WEIRD_INNER_IP_PAYLOAD_LENGTH_MISMATCH;
}

/* GRE (RFC 2784, RFC 2637 for version 1) at off, len bytes: the inner link
 * type with *inner at its start, or CA_INNER_NONE; *weird is set for what
 * it refuses. */
static __always_inline int ca_gre(struct __sk_buff *skb, __u32 off, __u32 len, __u32 *inner, __u32 *weird,
				  __u32 *detail)
{
	__u8 *g = ca_hdr_at(skb, off, 4);
	__u16 flags, proto;
	__u32 hlen = 4;
	int link = CA_INNER_IP;

	if (!g || len < 4) {
		*weird = CA_WEIRD_TRUNCATED_GRE;
		return CA_INNER_NONE;
	}
	flags = (__u16)g[0] << 8 | g[1];
	proto = (__u16)g[2] << 8 | g[3];
	if (flags & 0x8000)
		hlen += 4;         /* checksum and reserved */
	if (flags & 0x2000)
		hlen += 4;         /* key */
	if (flags & 0x1000)
		hlen += 4;         /* sequence number */
	if (flags & 0x0080)
		hlen += 4;         /* acknowledgement (version 1) */
	if ((flags & 7) > 1 || (flags & 0x4000) || (flags & 0x0078)) {
		*weird = CA_WEIRD_GRE_UNSUPPORTED;   /* version, routing, reserved flags */
		return CA_INNER_NONE;
	}
	if ((flags & 7) == 1) {
		/* PPTP: PPP address, control, then the protocol. */
		__u8 *ppp = ca_hdr_at(skb, off + hlen + 2, 2);
		__u16 pp;
		if (proto != 0x880b) {
			*weird = CA_WEIRD_GRE_UNSUPPORTED;
			return CA_INNER_NONE;
		}
		if (!ppp || len < hlen + 4) {
			*weird = CA_WEIRD_TRUNCATED_GRE;
			return CA_INNER_NONE;
		}
		pp = (__u16)ppp[0] << 8 | ppp[1];
		if (pp != CA_PPP_IP && pp != CA_PPP_IPV6) {
			*weird = CA_WEIRD_GRE_UNSUPPORTED;
			return CA_INNER_NONE;
		}
		hlen += 4;
	} else if (proto == 0x6558) {
		link = CA_INNER_ETHERNET;          /* transparent Ethernet bridging */
	} else if (proto == 0x88be) {
		link = CA_INNER_ETHERNET;          /* ERSPAN I; II has a sequence number and 8 bytes */
		if (flags & 0x1000)
			hlen += 8;
	} else if (proto == 0x22eb) {
		__u8 *e = ca_hdr_at(skb, off + hlen + 11, 1);
		link = CA_INNER_ETHERNET;          /* ERSPAN III: 12 bytes, 8 more with the O flag */
		if (!e || len <= hlen + 12 + 14) {
			*weird = CA_WEIRD_TRUNCATED_GRE;
			return CA_INNER_NONE;
		}
		hlen += (e[0] & 1) ? 20 : 12;
	} else if (ca_gre_is_aruba(proto)) {
		if (len <= hlen) {
			*weird = CA_WEIRD_TRUNCATED_GRE;
			return CA_INNER_NONE;
		}
		return ca_ieee802_11(skb, off + hlen, len - hlen, inner, weird);
	}
	if (len < hlen + (link == CA_INNER_ETHERNET ? 14 : 1)) {
		*weird = CA_WEIRD_TRUNCATED_GRE;
		return CA_INNER_NONE;
	}
	*inner = off + hlen;
	return link;
}

/* The inner packet of a UDP tunnel on responder port port (payload at
 * p->payload_off): its link type with *inner set, or CA_INNER_NONE. */
static __always_inline __u8 ca_udp_tunnel_type(__u16 port)
{
	switch (port) {
	case CA_PORT_VXLAN: return CA_TUNNEL_VXLAN;
	case CA_PORT_GENEVE: return CA_TUNNEL_GENEVE;
	case CA_PORT_AYIYA: return CA_TUNNEL_AYIYA;
	case CA_PORT_GRE_UDP: return CA_TUNNEL_GRE;
	case CA_PORT_TEREDO: return CA_TUNNEL_TEREDO;
	}
	return CA_TUNNEL_GTPV1;
}

static __always_inline int ca_udp_tunnel(struct __sk_buff *skb, struct ca_packet *p, __u16 port,
					 __u32 *inner, __u32 *weird, __u32 *detail)
{
	__u32 off = p->payload_off, len = p->payload_len;
	__u8 *h = ca_hdr_at(skb, off, 8);

	if (port == CA_PORT_GRE_UDP)
		return ca_gre(skb, off, len, inner, weird, detail);
	if (port == CA_PORT_GTP_U || port == CA_PORT_GTP_C)
		return ca_gtp(skb, off, len, inner);
	if (port == CA_PORT_AYIYA)
		return ca_ayiya(skb, off, len, inner);
	if (port == CA_PORT_TEREDO)
		return ca_teredo(skb, off, len, inner, weird);
	/* A header cut short, or a VXLAN one without its I flag (a valid VNI
	 * follows), is an analyzer violation to Zeek: no weird. */
	if (!h || len < 8)
		return CA_INNER_NONE;
	if (port == CA_PORT_VXLAN) {
		if (!(h[0] & 0x08))
			return CA_INNER_NONE;
		if (len == 8) {
			*weird = CA_WEIRD_VXLAN_EMPTY_PACKET;
			return CA_INNER_NONE;
		}
		*inner = off + 8;
		return CA_INNER_ETHERNET;
	} else {
		__u32 hlen = 8 + (h[0] & 0x3f) * 4;
		__u16 next = (__u16)h[2] << 8 | h[3];
		if ((h[0] >> 6) != 0) {
			*weird = CA_WEIRD_GENEVE_INVALID_VERSION;
			*detail = h[0] >> 6;
			return CA_INNER_NONE;
		}
		if (len <= hlen) {
			if (len == hlen)
				*weird = CA_WEIRD_GENEVE_EMPTY_PACKET;
			return CA_INNER_NONE;
		}
		*inner = off + hlen;
		if (next == 0x6558)
			return CA_INNER_ETHERNET;
		if (next == CA_ETH_P_IP || next == CA_ETH_P_IPV6)
			return CA_INNER_IP;
		return CA_INNER_NONE;
	}
}

#endif /* CA_TUNNEL_H */
