/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* packet.h: parse one skb into the fields connection tracking needs.
 *
 * Headers are read by direct packet access, every read bounds-checked against
 * data_end first: a helper call per header would cost more than the rest of
 * the parse. ca_packet() first makes sure the headers are in the skb's linear
 * area (bpf_skb_pull_data), which at TC they almost always already are.
 */
#ifndef CA_PACKET_H
#define CA_PACKET_H

#define CA_ETH_P_IP     0x0800
#define CA_ETH_P_IPV6   0x86DD
#define CA_ETH_P_ARP    0x0806
#define CA_ETH_P_RARP   0x8035
#define CA_ETH_P_8021Q  0x8100
#define CA_ETH_P_8021AD 0x88A8
#define CA_ETH_P_QINQ1  0x9100   /* pre-standard QinQ outer tag */
#define CA_ETH_P_MPLS   0x8847   /* MPLS unicast (RFC 3032) */
#define CA_ETH_P_PBB    0x88E7   /* IEEE 802.1ah I-TAG */
#define CA_ETH_P_PPPOES 0x8864   /* PPPoE session stage (RFC 2516) */
#define CA_ETH_P_VNTAG  0x8926   /* Cisco VN-Tag (802.1Qbh) */
#define CA_ETH_P_CFP    0x8903   /* Cisco FabricPath */
#define CA_PPP_IP       0x0021   /* PPP protocol numbers (RFC 1332, RFC 5072) */
#define CA_PPP_IPV6     0x0057

#define CA_IPPROTO_ICMP   1
#define CA_IPPROTO_IGMP   2
#define CA_IPPROTO_TCP    6
#define CA_IPPROTO_UDP    17
#define CA_IPPROTO_ICMPV6 58
#define CA_IPPROTO_NONE   59       /* IPv6 no next header */

#define CA_TH_FIN 0x01
#define CA_TH_SYN 0x02
#define CA_TH_RST 0x04
#define CA_TH_PSH 0x08
#define CA_TH_ACK 0x10

#define CA_MAX_IPV6_EXT 6
#define CA_MAX_LINK_HDRS 8       /* link-layer headers between Ethernet and IP */
#define CA_MAX_MPLS_LABELS 8

/* What the parser learnt about one packet. Addresses and ports are in the
 * sender's order (slot 0 = source) until ca_canonicalize() orders them. */
struct ca_packet {
	struct ca_conn_key key;
	__u64 ts;
	__u64 wire_ip_bytes;       /* IP bytes of every wire segment this skb stands for */
	__u32 segs;                /* wire segments (GSO) */
	__u32 l3_off;
	__u32 l4_off;
	__u32 payload_off;
	__u32 payload_len;         /* transport payload per the IP length (padding excluded) */
	__u32 ip_len;              /* IP total length of this skb (one segment unless GSO) */
	__u32 l4_len;              /* transport header + payload bytes per the IP length */
	__u32 captured;            /* bytes of the IP packet actually present */
	__u32 caplen;              /* bytes of the IP packet the capture holds (Zeek's caplen): more than
				    * captured when a pcap frame was cut to fit a test-run skb */
	__u32 seq;
	__u32 ack;
	__u16 window;
	__u8 tcp_flags;
	__u8 src_slot;             /* key slot of the sender after canonicalization */
	__u8 ip_version;
	__u8 icmp_type;
	__u8 icmp_code;
	__u8 fragment;             /* 1: a fragment (not reassembled) */
	__u8 bad_checksum;         /* 1: transport checksum failed (pcap input only) */
	__u8 icmp_one_way;         /* 1: an ICMP type without a counterpart: key not canonicalized */
	/* TCP: carried from the state machine to the reassembler step through
	 * memory, so the verifier sees one state there, not one per path. */
	__u8 tcp_is_orig;          /* the sender's role when the packet arrived */
	__u8 tcp_do_close;
	__u8 tcp_gen_event;
	__u8 tcp_seq_underflow;
	__u8 egress;               /* 1: seen leaving the interface (live capture) */
	__u8 ts_exact;             /* 1: ts is from the exact clock (live capture; see ca_packet_clock) */
	__u8 ip_len_zero;          /* 1: IPv4 total length 0 in a capture (TSO): counted as 0 IP bytes */
	__u8 depth;                /* tunnel layers around it; the innermost one's id is the scratch's
				    * tunnel_parent (tunnel.h). In padding: the struct to clear stays as it was */
	__u8 job;                  /* blocking mode: the job judging it (job_scope.h), for the DNS stages.
				    * In padding too; set before it is read */
	__u8 tcp_header_weird;     /* TCP: why Zeek's TCP analyzer cannot take the header (a weird code;
				    * 0: it can). The connection is made, the packet goes no further.
				    * The last byte of padding */
	__u32 tcp_rel_seq;
	__u32 tcp_rel_ack;
};

enum ca_parse_result {
	CA_PARSE_OK = 0,
	CA_PARSE_NOT_IP = 1,       /* ARP, LLDP, ...: not ours */
	CA_PARSE_WEIRD = 2,        /* malformed: *weird holds the code */
};

#define CA_MAX_HDR_OFF 16383        /* no header we read starts later than this (the mask below): past an
				     * A-MSDU's subframes of full-sized packets */
#define CA_LINEAR_HEADROOM 192      /* bytes of headers ca_packet() makes linear */

/* Hides a value's range from clang, so a check on it is kept and made on the
 * register the value is then used in (which older verifiers need). */
#define ca_opaque(v) asm volatile("" : "+r"(v))

/* An offset read back from memory, bounded in the very register later added
 * to a packet pointer. ca_hdr()'s bounds check may be made on a copy (or on
 * the 32-bit half), which verifiers before about 6.3 do not carry over: the
 * pointer then looks unbounded and gets no range ("offset is outside of the
 * packet"). The mask changes nothing for an offset within CA_MAX_HDR_OFF. */
static __always_inline __u32 ca_bounded_off(__u32 off)
{
	asm volatile("%0 &= 16383" : "+r"(off));
	return off;
}

/* A pointer to len bytes at off in the packet, or 0 if they are not there. */
static __always_inline void *ca_hdr(struct __sk_buff *skb, __u32 off, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	void *h;

	if (off > CA_MAX_HDR_OFF)
		return 0;
	h = data + off;
	if (h + len > end)
		return 0;
	return h;
}

static __always_inline void ca_set_v4mapped(__u8 *dst, __u32 addr_be)
{
	__u32 *w = (__u32 *)dst;
	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0x0000ffff);
	w[3] = addr_be;
}

/* ICMPv4 counterpart types (RFC 792): a request and its reply share one
 * connection, the way Zeek keys them. Returns the code for one-way types. */
static __always_inline __u16 ca_icmp4_counterpart(__u8 type, __u8 code, int *one_way)
{
	*one_way = 0;
	switch (type) {
	case 8: return 0;   /* echo request -> echo reply */
	case 0: return 8;
	case 13: return 14; /* timestamp */
	case 14: return 13;
	case 15: return 16; /* information */
	case 16: return 15;
	case 10: return 9;  /* router solicitation -> advertisement */
	case 9: return 10;
	case 17: return 18; /* address mask */
	case 18: return 17;
	}
	*one_way = 1;
	return code;
}

/* ICMPv6 counterpart types (RFC 4443, RFC 4861, RFC 2710). */
static __always_inline __u16 ca_icmp6_counterpart(__u8 type, __u8 code, int *one_way)
{
	*one_way = 0;
	switch (type) {
	case 128: return 129; /* echo request -> reply */
	case 129: return 128;
	case 133: return 134; /* router solicitation -> advertisement */
	case 134: return 133;
	case 135: return 136; /* neighbor solicitation -> advertisement */
	case 136: return 135;
	case 130: return 131; /* multicast listener query -> report */
	case 131: return 130;
	case 139: return 140; /* node information query -> response (RFC 4620) */
	case 140: return 139;
	case 144: return 145; /* home agent address discovery (RFC 6275) */
	case 145: return 144;
	}
	*one_way = 1;
	return code;
}

/* A tunnel's inner headers from off on made linear (CA_LINEAR_HEADROOM bytes
 * of them, or up to the skb's end), as ca_packet() makes the outer ones: only
 * when the skb holds bytes outside its linear area. */
static __always_inline void ca_pull_headers(struct __sk_buff *skb, __u32 off)
{
	__u32 upto = off + CA_LINEAR_HEADROOM;

	if (skb->len > skb->data_end - skb->data)
		bpf_skb_pull_data(skb, skb->len < upto ? skb->len : upto);
}

/* ca_hdr for an offset the verifier cannot bound (computed from header
 * fields, as a tunnel's are): bounded first in the register used, which
 * verifiers before about 6.3 need (see ca_bounded_off). */
static __always_inline void *ca_hdr_at(struct __sk_buff *skb, __u32 off, __u32 len)
{
	if (off > CA_MAX_HDR_OFF)
		return 0;
	return ca_hdr(skb, ca_bounded_off(off), len);
}

/* Zeek's CheckHeaderTrunc for a transport header of min bytes at hdr (0: not
 * in the skb): truncated_header when the IP length has no room for it,
 * internally_truncated_header when only the capture lacks it. */
static __always_inline int ca_l4_header_cut(const struct ca_packet *p, void *hdr, __u32 min, __u32 *weird)
{
	if (p->l4_len < min)
		*weird = CA_WEIRD_TRUNCATED_HEADER;
#if CA_PCAP_MODE
	else if (!hdr || p->caplen < p->l4_off - p->l3_off + min)
#else
	else if (!hdr)          /* live: the skb holds the whole packet, which is all there is */
#endif
		*weird = CA_WEIRD_INTERNALLY_TRUNCATED_HEADER;
	else
		return 0;
	return 1;
}

static __always_inline int ca_parse_l4(struct __sk_buff *skb, struct ca_packet *p, __u32 *weird)
{
	__u32 off = p->l4_off;
	__u32 avail = p->l4_len;

	if (p->fragment)
		return CA_PARSE_OK;

	switch (p->key.ip_proto) {
	case CA_IPPROTO_TCP: {
		struct tcphdr *th = ca_hdr(skb, off, sizeof(*th));
		__u32 doff;
		if (ca_l4_header_cut(p, th, sizeof(*th), weird) || !th)
			return CA_PARSE_WEIRD;
		p->key.port[0] = bpf_ntohs(th->source);
		p->key.port[1] = bpf_ntohs(th->dest);
		p->seq = bpf_ntohl(th->seq);
		p->ack = bpf_ntohl(th->ack_seq);
		p->window = bpf_ntohs(th->window);
		p->tcp_flags = ((__u8 *)th)[13];
		doff = th->doff * 4;
		/* Zeek makes the connection from the first 20 bytes, then its TCP
		 * analyzer refuses a data offset under 20 or past the IP length or
		 * the capture (options cut off by a short snaplen): a weird, and the
		 * packet goes no further (TCPAnalyzer::ExtractTCP_Header). */
		if (ca_unlikely(doff < sizeof(*th) || doff > avail || doff > p->caplen - (off - p->l3_off))) {
			p->tcp_header_weird = doff < sizeof(*th) ? CA_WEIRD_BAD_TCP_HEADER_LEN : CA_WEIRD_TRUNCATED_HEADER;
			doff = avail;
		}
		p->payload_off = off + doff;
		p->payload_len = avail - doff;
		break;
	}
	case CA_IPPROTO_UDP: {
		struct udphdr *uh = ca_hdr(skb, off, sizeof(*uh));
		__u32 ulen;
		if (ca_l4_header_cut(p, uh, sizeof(*uh), weird) || !uh)
			return CA_PARSE_WEIRD;
		p->key.port[0] = bpf_ntohs(uh->source);
		p->key.port[1] = bpf_ntohs(uh->dest);
		ulen = bpf_ntohs(uh->len);
		/* The UDP length may be smaller than the IP payload (padding);
		 * GSO super-packets carry the length of one segment. */
		if (p->segs > 1 || ulen < sizeof(*uh) || ulen > avail)
			ulen = avail;
		p->payload_off = off + sizeof(*uh);
		p->payload_len = ulen - sizeof(*uh);
		break;
	}
	case CA_IPPROTO_ICMP:
	case CA_IPPROTO_ICMPV6: {
		__u8 *tc = ca_hdr(skb, off, 2);
		int one_way;
		if (ca_l4_header_cut(p, tc, 8, weird) || !tc)      /* ICMP_MINLEN */
			return CA_PARSE_WEIRD;
		p->icmp_type = tc[0];
		p->icmp_code = tc[1];
		p->key.port[0] = tc[0];
		if (p->key.ip_proto == CA_IPPROTO_ICMP)
			p->key.port[1] = ca_icmp4_counterpart(tc[0], tc[1], &one_way);
		else
			p->key.port[1] = ca_icmp6_counterpart(tc[0], tc[1], &one_way);
		p->icmp_one_way = one_way;
		p->payload_off = off + 8;
		p->payload_len = avail - 8;
		break;
	}
	default:
		p->payload_off = off;
		p->payload_len = avail;
		break;
	}
	return CA_PARSE_OK;
}

#if CA_PCAP_MODE
#define CA_WIRE_LEN_UNKNOWN 65536   /* the test run's largest wire_len: a record this long or longer */

/* Zeek's IP analyzer: an IP length past the end of the packet on the wire is
 * truncated_IP_len, and the packet goes no further. The wire length is the
 * capture record's (the pcap driver passes it as the test run's wire_len);
 * a record cut short by the snaplen keeps it, so only a false IP length trips
 * this, never a short capture. */
static __always_inline int ca_ip_past_wire_len(struct __sk_buff *skb, const struct ca_packet *p, __u32 ip_len)
{
	__u32 wire = skb->wire_len;

	return wire < CA_WIRE_LEN_UNKNOWN && p->l3_off + ip_len > wire;
}
#endif

/* ip: the header, its 20 bytes already checked to be in the packet (ca_parse). */
static __always_inline int ca_parse_ipv4(struct __sk_buff *skb, struct ca_packet *p, __u32 *weird,
					 struct iphdr *ip)
{
	__u32 hlen, tot;

	if (p->captured < sizeof(*ip)) {
		*weird = CA_WEIRD_TRUNCATED_IP;
		return CA_PARSE_WEIRD;
	}
	hlen = ip->ihl * 4;
	tot = bpf_ntohs(ip->tot_len);
	/* Zeek's IP analyzer's order: the total length, then the header length. */
#if CA_PCAP_MODE
	if (tot == 0 && p->segs <= 1) {
		/* A capture taken where TCP segmentation offload zeroes the
		 * length (Zeek's IP analyzer, weird ip_hdr_len_zero): without -C
		 * Zeek drops the packet; with -C it parses the packet by its
		 * captured length, and ConnSize adds the header's length, 0. */
#if CA_VALIDATE_CHECKSUMS
		*weird = CA_WEIRD_IP_HDR_LEN_ZERO;
		return CA_PARSE_WEIRD;
#else
		p->ip_len_zero = 1;
#endif
	} else if (ca_unlikely(p->segs <= 1 && ca_ip_past_wire_len(skb, p, tot))) {
		*weird = CA_WEIRD_TRUNCATED_IP_LEN;
		return CA_PARSE_WEIRD;
	}
#endif
	/* GSO super-packets (and BIG TCP) do not carry a usable total length. */
	if (p->segs > 1 || tot == 0)
		tot = p->captured;
	if (tot < hlen) {
		*weird = CA_WEIRD_INVALID_IP_HEADER_SIZE;
		return CA_PARSE_WEIRD;
	}
#if CA_PCAP_MODE
	if (hlen > p->caplen) {         /* live, the skb holds the whole packet */
		*weird = CA_WEIRD_IP_INTERNALLY_TRUNCATED_HEADER;
		return CA_PARSE_WEIRD;
	}
#endif
	if (hlen < sizeof(*ip)) {
		*weird = CA_WEIRD_IPV4_MIN_HEADER_SIZE;
		return CA_PARSE_WEIRD;
	}
	ca_set_v4mapped(p->key.addr[0], ip->saddr);
	ca_set_v4mapped(p->key.addr[1], ip->daddr);
	p->key.ip_proto = ip->protocol;
	p->ip_version = 4;
	p->ip_len = tot;
	p->l4_off = p->l3_off + hlen;
	p->l4_len = tot - hlen;
	p->fragment = (bpf_ntohs(ip->frag_off) & 0x3fff) != 0;  /* MF or offset */
#if CA_VALIDATE_CHECKSUMS
	if (hlen <= 60) {
		__u8 hdr[60] = {};
		/* Checked again on the very value passed (clang, which knows it
		 * holds, would drop the check): verifiers before about 6.3 do not
		 * carry the earlier one over to a copy of hlen. */
		__u32 n = hlen & 0x3c;
		__s64 sum;
		ca_opaque(n);
		if (n >= sizeof(*ip) && bpf_skb_load_bytes(skb, p->l3_off, hdr, n) == 0) {
			sum = bpf_csum_diff(0, 0, (__be32 *)hdr, n, 0);
			if (sum >= 0 && ca_csum_fold((__u32)sum) != 0xffff) {
				*weird = CA_WEIRD_BAD_IP_CHECKSUM;
				return CA_PARSE_WEIRD;
			}
		}
	}
#endif
	return CA_PARSE_OK;
}

static __always_inline int ca_parse_ipv6(struct __sk_buff *skb, struct ca_packet *p, __u32 *weird)
{
	struct ipv6hdr *ip6 = ca_hdr(skb, p->l3_off, sizeof(*ip6));
	__u32 off, plen;
	__u8 next;

	if (!ip6 || p->captured < sizeof(*ip6)) {
		*weird = CA_WEIRD_TRUNCATED_IP;
		return CA_PARSE_WEIRD;
	}
	__builtin_memcpy(p->key.addr[0], &ip6->saddr, 16);
	__builtin_memcpy(p->key.addr[1], &ip6->daddr, 16);
	plen = bpf_ntohs(ip6->payload_len);
	/* Only a GSO super-packet (BIG TCP) carries no usable length. A payload
	 * length of 0 otherwise means 0, as for Zeek: what follows in the frame is
	 * link-layer padding, not IP bytes. */
	if (p->segs > 1)
		plen = p->captured - sizeof(*ip6);
#if CA_PCAP_MODE
	else if (ca_unlikely(ca_ip_past_wire_len(skb, p, plen + sizeof(*ip6)))) {
		*weird = CA_WEIRD_TRUNCATED_IP_LEN;
		return CA_PARSE_WEIRD;
	}
#endif
	p->ip_version = 6;
	p->ip_len = plen + sizeof(*ip6);
	off = p->l3_off + sizeof(*ip6);
	next = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < CA_MAX_IPV6_EXT; i++) {
		__u8 *ext;
		if (next != 0 && next != 43 && next != 60 && next != 44 && next != 51)
			break;
		ext = ca_hdr(skb, off, 8);   /* every extension header is at least 8 bytes */
		if (!ext) {
			*weird = CA_WEIRD_TRUNCATED_HEADER;
			return CA_PARSE_WEIRD;
		}
		if (next == 44) {          /* fragment header: fixed 8 bytes */
			__u8 *frag = ext;
			if (((frag[2] << 8 | frag[3]) & 0xfff9) != 0)
				p->fragment = 1;   /* offset or more-fragments set */
			next = ext[0];
			off += 8;
		} else if (next == 51) {   /* AH: length in 4-byte units, minus 2 */
			next = ext[0];
			off += (ext[1] + 2) * 4;
		} else {
			next = ext[0];
			off += (ext[1] + 1) * 8;
		}
	}
	if (next == 0 || next == 43 || next == 60 || next == 44 || next == 51) {
		*weird = CA_WEIRD_TOO_MANY_EXT_HEADERS;
		return CA_PARSE_WEIRD;
	}
	if (off - p->l3_off > p->ip_len) {
		*weird = CA_WEIRD_INVALID_IP_HEADER_SIZE;
		return CA_PARSE_WEIRD;
	}
	p->key.ip_proto = next;
	p->l4_off = off;
	p->l4_len = p->ip_len - (off - p->l3_off);
	return CA_PARSE_OK;
}

/* Link layers between Ethernet and IP, as Zeek's packet analyzers chain them
 * (scripts/base/packet-protocols/{ethernet,vlan,vntag}/main.zeek register which
 * EtherType goes where; src/packet_analysis/protocol/<name>/ read each header):
 *
 *   Ethernet  -> VLAN (0x8100, 0x88A8, 0x9100), MPLS, PBB, PPPoE, VN-Tag, IP
 *   VLAN      -> VLAN (0x8100 only), MPLS, PBB, PPPoE, VN-Tag, IP
 *   VN-Tag    -> VLAN only
 *   MPLS      -> IP, whatever the labels say (RFC 3032 does not name the payload)
 *   PPPoE     -> IP for PPP protocols 0x0021 and 0x0057
 *   PBB       -> a whole customer Ethernet frame after the 4-byte I-TAG
 *   Ethernet  -> a Cisco FabricPath header (EtherType 0x8903) is skipped
 *                (16 bytes) once, before the EtherType is read
 *
 * Only frames the plain path (Ethernet, up to two VLAN tags, IP) did not
 * recognise come here, so the common path costs nothing more. Returns the IP
 * EtherType found (network order) with *l3_off at its header, or 0 (*weird
 * then says why, if Zeek would). With an IP packet found behind three VLAN
 * tags or more, *weird is Zeek's triple_tagged_vlan_unsupported, which does
 * not stop the packet (nor is it raised for a frame that holds no IP). */
#define CA_LINK_ETHERNET 0
#define CA_LINK_VLAN     1
#define CA_LINK_VNTAG    2
static __always_inline __u16 ca_parse_link(struct __sk_buff *skb, struct ca_packet *p, __u32 base, __u32 *l3_off,
					   __u32 *weird)
{
	__u32 off = base + 12;   /* the EtherType field being read */
	int layer = CA_LINK_ETHERNET, cfp_allowed = 1, vlan_tags = 0;

	for (int i = 0; i < CA_MAX_LINK_HDRS; i++) {
		__u8 *h;
		__u16 proto;

		/* The offset goes through memory: the verifier then checks each
		 * iteration once (an offset within CA_MAX_HDR_OFF), not once per
		 * combination of the headers before it. */
		p->l3_off = off;
		off = ca_bounded_off(*(volatile __u32 *)&p->l3_off);
		if (off > CA_MAX_HDR_OFF)
			return 0;
		h = ca_hdr(skb, off, 2);
		if (!h) {
			if (layer == CA_LINK_VLAN)
				*weird = CA_WEIRD_TRUNCATED_VLAN_HEADER;
			return 0;
		}
		proto = (__u16)h[0] << 8 | h[1];
		if (proto > 1500 && proto < 1536) {
			/* Neither an 802.3 length nor an EtherType (Zeek's Ethernet and VLAN analyzers). */
			if (layer == CA_LINK_ETHERNET)
				*weird = CA_WEIRD_UNDEFINED_ETHER_TYPE;
			else if (layer == CA_LINK_VLAN)
				*weird = CA_WEIRD_UNDEFINED_VLAN_PROTOCOL;
			return 0;
		}
		if (proto == CA_ETH_P_CFP && cfp_allowed) {
			/* FabricPath: the inner Ethernet header starts 16 bytes in. */
			off += 16;
			cfp_allowed = 0;
			continue;
		}
		cfp_allowed = 0;
		if (layer == CA_LINK_VNTAG && proto != CA_ETH_P_8021Q && proto != CA_ETH_P_8021AD &&
		    proto != CA_ETH_P_QINQ1)
			return 0;
		switch (proto) {
		case CA_ETH_P_IP:
		case CA_ETH_P_IPV6:
			*l3_off = off + 2;
			if (vlan_tags > 2)
				*weird = CA_WEIRD_TRIPLE_TAGGED_VLAN;
			return bpf_htons(proto);
		case CA_ETH_P_8021AD:
		case CA_ETH_P_QINQ1:
			if (layer == CA_LINK_VLAN)
				return 0;
			/* fall through */
		case CA_ETH_P_8021Q:
			/* 802.1Q tag: TCI, then the next EtherType. */
			off += 4;
			layer = CA_LINK_VLAN;
			vlan_tags++;
			break;
		case CA_ETH_P_VNTAG:
			/* VN-Tag: 4 bytes of tag, then the next EtherType. */
			off += 6;
			layer = CA_LINK_VNTAG;
			break;
		case CA_ETH_P_PBB:
			/* 802.1ah: I-TAG (4 bytes), then C-DA, C-SA and the
			 * customer EtherType, read as a new Ethernet header. */
			off += 2 + 4 + 12;
			layer = CA_LINK_ETHERNET;
			cfp_allowed = 1;
			break;
		case CA_ETH_P_PPPOES: {
			/* RFC 2516 session header (6 bytes), then the PPP protocol. */
			__u8 *ppp = ca_hdr(skb, off + 2 + 6, 2);
			__u16 pp;
			if (!ppp)
				return 0;
			pp = (__u16)ppp[0] << 8 | ppp[1];
			*l3_off = off + 2 + 8;
			if (pp == CA_PPP_IP)
				return bpf_htons(CA_ETH_P_IP);
			if (pp == CA_PPP_IPV6)
				return bpf_htons(CA_ETH_P_IPV6);
			return 0;
		}
		case CA_ETH_P_MPLS: {
			/* RFC 3032 label stack entries (4 bytes) up to the one with
			 * the bottom-of-stack bit; the payload is taken to be IP,
			 * its version nibble says which. */
			__u32 lbl = off + 2;
			__u8 *e, *v;
			int bottom = 0;
			for (int j = 0; j < CA_MAX_MPLS_LABELS; j++) {
				e = ca_hdr(skb, lbl, 4);
				if (!e)
					return 0;
				lbl += 4;
				if (e[2] & 1) {
					bottom = 1;
					break;
				}
			}
			if (!bottom)
				return 0;
			v = ca_hdr(skb, lbl, 1);
			if (!v)
				return 0;
			*l3_off = lbl;
			if ((v[0] >> 4) == 4)
				return bpf_htons(CA_ETH_P_IP);
			if ((v[0] >> 4) == 6)
				return bpf_htons(CA_ETH_P_IPV6);
			return 0;
		}
		default:
			return 0;
		}
	}
	return 0;
}

#define CA_ETH_MIN_FRAME 16     /* Zeek's Ethernet analyzer reads nothing of a frame this long or shorter */

/* A frame the link layers gave no IP packet (slow paths only): Zeek's
 * weird for a frame too short for its Ethernet analyzer, else link_weird's
 * (0: none, as for ARP). */
static __always_inline int ca_link_refused(struct __sk_buff *skb, __u32 base, __u32 *weird, __u32 link_weird)
{
	if (skb->len - base <= CA_ETH_MIN_FRAME)
		link_weird = CA_WEIRD_TRUNCATED_ETHERNET_FRAME;
	if (!link_weird)
		return CA_PARSE_NOT_IP;
	*weird = link_weird;
	return CA_PARSE_WEIRD;
}

/* Parse Ethernet (with up to two VLAN tags inline; other link layers in
 * ca_parse_link), then IP and the transport header. inner is a compile-time
 * constant: 1 for a tunnel's inner packet, which starts at base, with IP
 * when raw_ip; 0 for the packet itself (base 0, Ethernet), whose copy of
 * this code is then what it was before tunnels. *weird: with CA_PARSE_WEIRD
 * why; with CA_PARSE_OK a weird that did not stop the packet, or 0. */
static __always_inline int ca_parse(struct __sk_buff *skb, struct ca_packet *p, __u32 *weird,
				    const int inner, __u32 base, int raw_ip)
{
	__u16 *ethertype;
	__u16 proto;
	__u32 off = base + 14;
	struct iphdr *ip4;
	__u8 version;
	int r;

	if (ca_unlikely(raw_ip)) {
		off = base;
		goto ip;
	}
	ethertype = ca_hdr(skb, base + 12, 2);
	if (!ethertype)
		return ca_link_refused(skb, base, weird, 0);
	proto = *ethertype;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(CA_ETH_P_8021Q) && proto != bpf_htons(CA_ETH_P_8021AD))
			break;
		ethertype = ca_hdr(skb, off + 2, 2);
		if (!ethertype)
			return ca_link_refused(skb, base, weird, CA_WEIRD_TRUNCATED_VLAN_HEADER);
		proto = *ethertype;
		off += 4;
	}
	if (ca_unlikely(proto != bpf_htons(CA_ETH_P_IP) && proto != bpf_htons(CA_ETH_P_IPV6))) {
		__u32 link_weird = 0;
		proto = ca_parse_link(skb, p, base, &off, &link_weird);
		if (!proto)
			return ca_link_refused(skb, base, weird, link_weird);
		*weird = link_weird;        /* not fatal: ca_entry raises it for a packet parsed whole */
		/* Re-read the offset from memory: the verifier then follows one
		 * state (an offset within CA_MAX_HDR_OFF) past this point instead
		 * of one per way through the link layers. */
		p->l3_off = off;
		off = ca_bounded_off(*(volatile __u32 *)&p->l3_off);
		if (off > CA_MAX_HDR_OFF)
			return CA_PARSE_NOT_IP;
	}
ip:
	if (inner) {
		/* Through memory, bounded: a tunnel's inner packet starts at an
		 * offset the verifier cannot follow. */
		p->l3_off = off;
		off = ca_bounded_off(*(volatile __u32 *)&p->l3_off);
		if (off > CA_MAX_HDR_OFF)
			return CA_PARSE_NOT_IP;
	}
	p->l3_off = off;
	/* Zeek's IP analyzer goes by the header's version, not by the type the
	 * link layer gave (a 0x86DD frame may hold IPv4, or junk). Both versions
	 * have at least 20 bytes of header: read once, that check is the IPv4
	 * parser's too. */
	ip4 = ca_hdr(skb, off, sizeof(*ip4));
	if (ca_likely(ip4)) {
		version = ip4->version;
	} else {
		__u8 *v = ca_hdr(skb, off, 1);
		if (!raw_ip && skb->len - base <= CA_ETH_MIN_FRAME)
			return ca_link_refused(skb, base, weird, 0);
		version = v ? v[0] >> 4 : 0;
		*weird = (v && version != 4 && version != 6) ? CA_WEIRD_UNKNOWN_IP_VERSION : CA_WEIRD_TRUNCATED_IP;
		return CA_PARSE_WEIRD;
	}
	if (ca_unlikely(version != 4 && version != 6)) {
		*weird = CA_WEIRD_UNKNOWN_IP_VERSION;
		return CA_PARSE_WEIRD;
	}
	if (p->captured > skb->len - off || p->captured == 0)
		p->captured = skb->len - off;
#if CA_PCAP_MODE
	/* The pcap driver passes the frame's captured length in the mark (a
	 * padded frame's is flagged, and the frame was cut back to it). */
	p->caplen = (skb->mark & ~CA_MARK_PADDED) > off + p->captured ? (skb->mark & ~CA_MARK_PADDED) - off
								       : p->captured;
#else
	p->caplen = p->captured;
#endif

	if (version == 4)
		r = ca_parse_ipv4(skb, p, weird, ip4);
	else
		r = ca_parse_ipv6(skb, p, weird);
	if (r != CA_PARSE_OK)
		return r;

	p->wire_ip_bytes = p->ip_len_zero ? 0 : p->ip_len;
	r = ca_parse_l4(skb, p, weird);
	if (r == CA_PARSE_OK && p->segs > 1) {
		/* Each wire segment repeats the IP and transport headers. */
		__u32 hdrs = p->payload_off - p->l3_off;
		p->wire_ip_bytes = p->ip_len + (__u64)(p->segs - 1) * hdrs;
	}
	return r;
}

/* Order the key's endpoints so both directions share one map entry. An
 * IPv4 packet's addresses are IPv4-mapped, so only their last words can
 * differ: only those are compared and swapped. Words are moved as words, as
 * the parser stored them (a wider load spanning them would stall: see
 * ca_conn_key4_of_v4). */
static __always_inline void ca_canonicalize(struct ca_packet *p)
{
	__u32 *a = (__u32 *)p->key.addr[0];
	__u32 *b = (__u32 *)p->key.addr[1];
	const int v4 = p->ip_version == 4;
	int swap = 0, decided = 0;

	if (v4) {
		if (a[3] != b[3]) {
			swap = bpf_ntohl(a[3]) > bpf_ntohl(b[3]);
			decided = 1;
		}
	} else {
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (!decided && a[i] != b[i]) {
				swap = bpf_ntohl(a[i]) > bpf_ntohl(b[i]);
				decided = 1;
			}
		}
	}
	if (!decided)
		swap = p->key.port[0] > p->key.port[1];
	p->src_slot = 0;
	/* Zeek keys one-way ICMP messages as sent: the reverse direction is
	 * a different connection. */
	if (swap && !p->icmp_one_way) {
		__u16 port = p->key.port[0];
#pragma unroll
		for (int i = 0; i < 4; i++) {
			if (v4 && i < 3)
				continue;
			__u32 t = a[i];
			a[i] = b[i];
			b[i] = t;
		}
		p->key.port[0] = p->key.port[1];
		p->key.port[1] = port;
		p->src_slot = 1;
	}
}

#if CA_VALIDATE_CHECKSUMS
/* 1: the transport checksum is valid or absent; 0: bad; -1: cannot tell
 * (truncated capture, larger than a test-run packet). */
static __always_inline int ca_l4_checksum_ok(struct __sk_buff *skb, struct ca_csum_scratch *scratch,
					     struct ca_packet *p)
{
	__u32 pseudo[10] = {};
	__u32 psize;
	__s64 sum;

	if (p->fragment || p->captured < p->ip_len)
		return -1;
	if (p->key.ip_proto == CA_IPPROTO_UDP && p->ip_version == 4) {
		__u16 uck;
		if (bpf_skb_load_bytes(skb, p->l4_off + 6, &uck, 2) < 0)
			return -1;
		if (uck == 0)
			return 1;          /* IPv4 UDP: checksum not used */
	}
	if (p->key.ip_proto == CA_IPPROTO_ICMP) {
		psize = 0;             /* ICMPv4 has no pseudo-header */
	} else if (p->ip_version == 4) {
		pseudo[0] = ((__u32 *)p->key.addr[0])[3];
		pseudo[1] = ((__u32 *)p->key.addr[1])[3];
		pseudo[2] = bpf_htonl(((__u32)p->key.ip_proto << 16) | (p->l4_len & 0xffff));
		psize = 12;
	} else {
		__builtin_memcpy(&pseudo[0], p->key.addr[0], 16);
		__builtin_memcpy(&pseudo[4], p->key.addr[1], 16);
		pseudo[8] = bpf_htonl(p->l4_len);
		pseudo[9] = bpf_htonl(p->key.ip_proto);
		psize = 40;
	}
	sum = 0;
	if (psize) {
		sum = bpf_csum_diff(0, 0, (__be32 *)pseudo, psize, 0);
		if (sum < 0)
			return -1;
	}
	sum = ca_csum_skb(skb, scratch, p->l4_off, p->l4_len, (__u32)sum);
	if (sum < 0)
		return -1;
	return ca_csum_fold((__u32)sum) == 0xffff;
}
#endif

#endif /* CA_PACKET_H */
