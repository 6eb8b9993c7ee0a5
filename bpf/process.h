/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* process.h: which process opened a connection (live capture only).
 *
 * TC sees packets, not processes. The cgroup socket hooks here run in the
 * calling process when it connects or sends, and remember it:
 *   - by socket cookie (sock_owner), for every connect() and sendmsg();
 *   - by flow (flow_owner), where the local port is already known: TCP at
 *     the moment it sends its SYN (sock_ops), unconnected UDP at sendmsg(),
 *     connected UDP once per connect(), by an fentry hook on the kernel's
 *     datagram connect (its port is bound only after the connect hook ran);
 *     where the kernel cannot run that hook, at its first packet to each
 *     destination (cgroup_skb egress, one storage lookup per packet).
 * When TC creates a connection from an egress packet it looks the owner up
 * once, by the skb's socket cookie (a process in the recorded namespace),
 * else by flow (a container with its own namespace: its packets reach the
 * host's interfaces without a socket). The flow key has no local address, so
 * the join holds where TC sees the destination and source port the socket
 * used: routed or bridged traffic; NAT that rewrites the port breaks it.
 *
 * The first hook call of each process sends a CA_EVENT_PROCESS, so user
 * space can read /proc/<tgid> while the (often short-lived) process runs.
 *
 * Needs: ca_count(), and in blocking mode policy.h and job_scope.h; the maps' accessors are
 * declared below and defined in capture.bpf.c, which holds the entry points.
 */
#ifndef CA_PROCESS_H
#define CA_PROCESS_H

#define CA_OWNER_ENTRIES 65536
#define CA_AF_INET 2
#define CA_AF_INET6 10
#define CA_SOCK_STREAM 1
#define CA_SOCK_OPS_TCP_CONNECT 3   /* BPF_SOCK_OPS_TCP_CONNECT_CB */
#define CA_DNS_STUBS_MAX 8

/* The maps, defined in capture.bpf.c (bcc rewrites map operations only there). */
static __always_inline struct ca_process *ca_sock_owner_lookup(__u64 *cookie);
static __always_inline void ca_sock_owner_update(__u64 *cookie, struct ca_process *proc);
static __always_inline struct ca_process *ca_flow_owner_lookup(struct ca_flow_key *flow);
static __always_inline void ca_flow_owner_update(struct ca_flow_key *flow, struct ca_process *proc);
static __always_inline int ca_first_sight(__u32 *tgid);
static __always_inline void ca_forget_sight(__u32 *tgid);
static __always_inline struct ca_flow_key *ca_udp_filed(struct bpf_sock *sk, int create);
static __always_inline struct ca_sock_layout *ca_sock_layout_get(void);
#if CA_BLOCK
static __always_inline struct ca_dns_endpoint *ca_dns_stub_lookup(struct ca_dns_endpoint *stub);
static __always_inline void ca_dns_redirected_update(__u64 *cookie, struct ca_dns_redirect *r);
static __always_inline struct ca_dns_redirect *ca_dns_redirected_lookup(__u64 *cookie);
#endif

static __always_inline void ca_current_process(struct ca_process *proc)
{
	__u64 id = bpf_get_current_pid_tgid();

	proc->tgid = id >> 32;
	proc->pid = (__u32)id;
	proc->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(proc->comm, sizeof(proc->comm));
}

/* Remember the socket's owner; announce a process the first time it shows up. */
static __always_inline void ca_note_owner(__u64 cookie, struct ca_process *proc, __u64 now)
{
	struct ca_process_event *ev;

	ca_sock_owner_update(&cookie, proc);
	if (!ca_first_sight(&proc->tgid))
		return;
	ev = ca_event_new(CA_EVENT_PROCESS, sizeof(*ev), now, CA_STAT_RB_DROP_PROCESS);
	if (!ev) {
		ca_forget_sight(&proc->tgid);     /* try again on its next socket */
		return;
	}
	__builtin_memcpy(&ev->proc, proc, sizeof(*proc));
	ca_event_submit_now(ev);
}

/* A sock_addr hook's destination as a key address (IPv4-mapped) and host-order port.
 * is_v6 is a constant: the verifier lets a hook read only its own family's fields. */
static __always_inline void ca_sock_addr_dest(struct bpf_sock_addr *ctx, __u8 *addr, __u16 *port, const int is_v6)
{
	__u32 *w = (__u32 *)addr;

	if (!is_v6) {
		ca_set_v4mapped(addr, ctx->user_ip4);
	} else {
		w[0] = ctx->user_ip6[0];
		w[1] = ctx->user_ip6[1];
		w[2] = ctx->user_ip6[2];
		w[3] = ctx->user_ip6[3];
	}
	*port = bpf_ntohs((__u16)ctx->user_port);
}

/* Point a sock_addr call at addr (key form) and a host-order port. */
static __always_inline void ca_sock_addr_set(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port, const int is_v6)
{
	const __u32 *w = (const __u32 *)addr;

	if (!is_v6) {
		ctx->user_ip4 = w[3];
	} else {
		ctx->user_ip6[0] = w[0];
		ctx->user_ip6[1] = w[1];
		ctx->user_ip6[2] = w[2];
		ctx->user_ip6[3] = w[3];
	}
	ctx->user_port = bpf_htons(port);
}

static __always_inline int ca_same_endpoint(const __u8 *addr, __u16 port, const struct ca_dns_endpoint *e)
{
	const __u32 *a = (const __u32 *)addr, *b = (const __u32 *)e->addr;

	return port == e->port && a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

#if CA_BLOCK
/* The job's DNS to a local stub resolver goes to the stub's upstream instead,
 * from the job's own socket: TC judges its names and learns its answers, and
 * the stub, which serves the whole host, never carries the job's queries.
 * The socket is remembered, so its replies read as the stub's (recvmsg). */
static __always_inline void ca_redirect_dns(struct bpf_sock_addr *ctx, __u64 cookie, struct ca_flow_key *flow,
					    const int is_v6)
{
	struct ca_dns_endpoint stub = {};
	struct ca_dns_redirect sent = {};
	struct ca_dns_endpoint *upstream;

	__builtin_memcpy(stub.addr, flow->daddr, 16);
	stub.port = flow->dport;
	upstream = ca_dns_stub_lookup(&stub);
	if (!upstream)
		return;
	__builtin_memcpy(&sent.stub, &stub, sizeof(stub));
	__builtin_memcpy(&sent.upstream, upstream, sizeof(*upstream));
	ca_dns_redirected_update(&cookie, &sent);
	ca_sock_addr_set(ctx, sent.upstream.addr, sent.upstream.port, is_v6);
	__builtin_memcpy(flow->daddr, sent.upstream.addr, 16);
	flow->dport = sent.upstream.port;
}

/* recvmsg() on a redirected socket: a reply from the upstream reads as the stub's
 * (resolvers check that the answer came from the server they asked). Returns 1. */
static __always_inline int ca_recvmsg_hook(struct bpf_sock_addr *ctx, const int is_v6)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct ca_dns_redirect *sent = ca_dns_redirected_lookup(&cookie);
	__u8 from[16] __attribute__((aligned(4)));
	__u16 port;

	if (!sent)
		return 1;
	ca_sock_addr_dest(ctx, from, &port, is_v6);
	if (ca_same_endpoint(from, port, &sent->upstream))
		ca_sock_addr_set(ctx, sent->stub.addr, sent->stub.port, is_v6);
	return 1;
}
#endif

static __always_inline int ca_is_loopback(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;

	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff))
		return addr[12] == 127 || w[3] == 0;             /* 127/8, 0.0.0.0 */
	return w[0] == 0 && w[1] == 0 && w[2] == 0 &&
	       (w[3] == bpf_htonl(1) || w[3] == 0);           /* ::1, :: */
}

/* connect() and sendmsg(): note the owner; in blocking mode refuse the job
 * an address the policy does not allow (the caller gets EPERM). Returns 1 to let
 * the call go on, 0 to refuse it. */
static __always_inline int ca_sock_addr_hook(struct bpf_sock_addr *ctx, const int is_sendmsg, const int is_v6)
{
	struct ca_process proc = {};
	struct ca_flow_key flow = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct bpf_sock *sk = ctx->sk;
	__u8 ip_proto = ctx->type == CA_SOCK_STREAM ? CA_IPPROTO_TCP : CA_IPPROTO_UDP;

	if (ctx->type != CA_SOCK_STREAM && ctx->type != 2 /* SOCK_DGRAM */)
		return 1;
	ca_current_process(&proc);
#if CA_BLOCK
	proc.job = ca_current_job();
#endif
	ca_note_owner(cookie, &proc, now);
	ca_sock_addr_dest(ctx, flow.daddr, &flow.dport, is_v6);
	flow.ip_proto = ip_proto;
#if CA_BLOCK
	if (proc.job && flow.dport == CA_DNS_PORT)
		ca_redirect_dns(ctx, cookie, &flow, is_v6);
#endif
	/* sendmsg() on an unconnected UDP socket runs after its port was bound. */
	if (is_sendmsg && sk && sk->src_port) {
		flow.sport = sk->src_port;
		ca_flow_owner_update(&flow, &proc);
	}
#if CA_BLOCK
	if (proc.job && !ca_is_loopback(flow.daddr) &&
	    !ca_dest_allowed(proc.job, flow.daddr, flow.dport, ip_proto, now)) {
		struct ca_conn_key key = {};
		if (!is_v6)
			ca_set_v4mapped(key.addr[0], sk ? sk->src_ip4 : 0);
		__builtin_memcpy(key.addr[1], flow.daddr, 16);
		if (sk && sk->src_port)
			key.port[0] = sk->src_port;
		key.port[1] = flow.dport;
		key.ip_proto = ip_proto;
		ca_count(CA_STAT_BLOCKED_CONNECTS, 1);
		ca_emit_blocked(&key, 0, 0, &proc, CA_BLOCKED_ADDRESS, CA_BLOCK_AT_CONNECT, now, 0);
		return 0;
	}
#endif
	return 1;
}

/* TCP is about to send its SYN: the local port is known now, so the owner
 * noted at connect() can be filed under the flow too. */
static __always_inline int ca_sock_ops_hook(struct bpf_sock_ops *skops)
{
	struct ca_flow_key flow = {};
	struct ca_process *owner;
	__u64 cookie;

	if (skops->op != CA_SOCK_OPS_TCP_CONNECT)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	owner = ca_sock_owner_lookup(&cookie);
	if (!owner)
		return 1;
	if (skops->family == CA_AF_INET) {
		ca_set_v4mapped(flow.daddr, skops->remote_ip4);
	} else {
		__u32 *w = (__u32 *)flow.daddr;
		w[0] = skops->remote_ip6[0];
		w[1] = skops->remote_ip6[1];
		w[2] = skops->remote_ip6[2];
		w[3] = skops->remote_ip6[3];
	}
	/* remote_port holds the network-order port in its upper 16 bits on little-endian
	 * hosts (the kernel shifts it there), in its lower 16 on big-endian ones:
	 * ntohl gives the host-order port on both. */
	flow.dport = bpf_ntohl(skops->remote_port);
	flow.sport = skops->local_port;
	flow.ip_proto = CA_IPPROTO_TCP;
	ca_flow_owner_update(&flow, owner);
	return 1;
}

/* A connected socket's flow, from the socket itself (dst_port is network
 * order in its low 16 bits, src_port host order; an IPv6 socket's IPv4 peer
 * is v4-mapped already, as in conn keys). */
static __always_inline void ca_sock_flow(struct bpf_sock *sk, struct ca_flow_key *flow, __u8 ip_proto)
{
	__u32 *w = (__u32 *)flow->daddr;

	if (sk->family == CA_AF_INET) {
		ca_set_v4mapped(flow->daddr, sk->dst_ip4);
	} else {
		w[0] = sk->dst_ip6[0];
		w[1] = sk->dst_ip6[1];
		w[2] = sk->dst_ip6[2];
		w[3] = sk->dst_ip6[3];
	}
	flow->dport = bpf_ntohs((__u16)sk->dst_port);
	flow->sport = sk->src_port;
	flow->ip_proto = ip_proto;
}

static __always_inline int ca_same_flow(const struct ca_flow_key *a, const struct ca_flow_key *b)
{
	const __u64 *x = (const __u64 *)a, *y = (const __u64 *)b;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2];
}

/* cgroup_skb sees the packet from its IP header on. Reading the protocol there is
 * cheaper than reaching into the socket (measured: +8 ns vs +31 ns per TCP packet
 * above a no-op). UDP behind IPv6 extension headers is missed, and stays unfiled. */
static __always_inline int ca_skb_is_udp(struct __sk_buff *skb)
{
	__u8 *ip = (__u8 *)(long)skb->data;

	if ((void *)(ip + 10) > (void *)(long)skb->data_end)
		return 0;
	return (ip[0] >> 4 == 4 ? ip[9] : ip[6]) == CA_IPPROTO_UDP;
}

/* cgroup_skb egress: a connected UDP socket's flow, filed under its owner the
 * first time it sends to a destination; its socket storage remembers what was
 * filed, so any later packet costs one storage lookup and no map update. TCP
 * and everything else leave after the protocol check (sock_ops files TCP), and
 * unconnected UDP after the port check (sendmsg files it; dst_port is 0).
 * The kernel runs this hook for full sockets only. Never drops: returns 1. */
static __always_inline int ca_udp_egress_hook(struct __sk_buff *skb)
{
	struct ca_flow_key flow __attribute__((aligned(8))) = {};
	struct ca_flow_key *filed;
	struct ca_process *owner;
	struct bpf_sock *sk;
	__u64 cookie;

	if (!ca_skb_is_udp(skb))
		return 1;
	sk = skb->sk;
	if (!sk || !sk->dst_port)
		return 1;
	ca_sock_flow(sk, &flow, CA_IPPROTO_UDP);
	filed = ca_udp_filed(sk, 0);
	if (filed && ca_same_flow(filed, &flow))
		return 1;
	cookie = bpf_get_socket_cookie(skb);
	owner = ca_sock_owner_lookup(&cookie);
	if (owner)
		ca_flow_owner_update(&flow, owner);
	/* Filed even without an owner: a socket the connect hook missed stays unknown. */
	filed = ca_udp_filed(sk, 1);
	if (filed)
		__builtin_memcpy(filed, &flow, sizeof(flow));
	return 1;
}

/* fentry on __ip4_datagram_connect / __ip6_datagram_connect(struct sock *sk,
 * struct sockaddr *uaddr, int addr_len): a UDP socket's connect(), after
 * inet_dgram_connect ran the cgroup connect hook (which may have rewritten
 * uaddr, the kernel's copy) and bound the source port. Files the flow under
 * the owner that hook remembered; a socket it never saw has no cookie or no
 * owner and costs two reads. Once per connect on the whole host, never per
 * packet. The fields come by offset from the running kernel's BTF
 * (sock_layout, filled by user space); with no layout it does nothing. */
static __always_inline int ca_udp_connect_hook(__u64 sk, __u64 uaddr)
{
	struct ca_flow_key flow __attribute__((aligned(8))) = {};
	struct ca_sock_layout *layout = ca_sock_layout_get();
	struct ca_process *owner;
	__u16 family = 0, protocol = 0;
	__u64 cookie = 0;
	__u32 v4 = 0;

	if (!layout || !layout->sock_cookie)
		return 0;
	if (bpf_probe_read_kernel(&cookie, sizeof(cookie), (void *)(sk + layout->sock_cookie)) || !cookie)
		return 0;                     /* no cookie yet: no hook of ours has seen the socket */
	owner = ca_sock_owner_lookup(&cookie);
	if (!owner)
		return 0;
	if (bpf_probe_read_kernel(&protocol, sizeof(protocol), (void *)(sk + layout->sock_protocol)) ||
	    protocol != CA_IPPROTO_UDP)
		return 0;                     /* ping and raw sockets connect through here too */
	if (bpf_probe_read_kernel(&flow.sport, sizeof(flow.sport), (void *)(sk + layout->inet_sport)) ||
	    bpf_probe_read_kernel(&family, sizeof(family), (void *)uaddr) ||
	    bpf_probe_read_kernel(&flow.dport, sizeof(flow.dport), (void *)(uaddr + 2)))
		return 0;
	/* sockaddr_in: port at 2, address at 4; sockaddr_in6: port at 2, address at 8
	 * (an IPv6 socket may connect with either; a v4-mapped address stays as it is) */
	if (family == CA_AF_INET) {
		if (bpf_probe_read_kernel(&v4, sizeof(v4), (void *)(uaddr + 4)))
			return 0;
		ca_set_v4mapped(flow.daddr, v4);
	} else if (family != CA_AF_INET6 ||
		   bpf_probe_read_kernel(flow.daddr, sizeof(flow.daddr), (void *)(uaddr + 8))) {
		return 0;
	}
	flow.sport = bpf_ntohs(flow.sport);
	flow.dport = bpf_ntohs(flow.dport);
	if (!flow.dport || !flow.sport)
		return 0;
	flow.ip_proto = CA_IPPROTO_UDP;
	ca_flow_owner_update(&flow, owner);
	return 0;
}

static __always_inline int ca_skb_has_inet_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	/* The test-run skb's dummy socket takes the packet's family but has no port. */
	return sk && (sk->family == CA_AF_INET || sk->family == CA_AF_INET6) && sk->src_port != 0;
}

/* TC, once per new connection: copy its owner in, if a hook saw it. Also for
 * a connection opened by an ingress packet: on the host's end of a container's
 * veth (or its bridge) the container's packets arrive as ingress, without a
 * socket, so the flow decides (an inbound connection to a local server has no
 * flow entry: server sockets do not connect). */
static __always_inline void ca_attribute(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c)
{
	struct ca_process *owner = 0;
	struct ca_flow_key flow = {};
	__u64 cookie;
	int dst = !p->src_slot;

	cookie = bpf_get_socket_cookie(skb);
	if (cookie)
		owner = ca_sock_owner_lookup(&cookie);
	/* The flow only for a packet without a local socket (forwarded from a
	 * container, or a reassembled datagram run with BPF_PROG_TEST_RUN, whose
	 * skb holds a dummy socket bound to no port): a local socket the hooks never
	 * saw (a process outside the watched cgroup) must not inherit the owner of
	 * another socket that happened to use the same destination and source port. */
	if (!owner && !ca_skb_has_inet_socket(skb) &&
	    (p->key.ip_proto == CA_IPPROTO_TCP || p->key.ip_proto == CA_IPPROTO_UDP)) {
		__builtin_memcpy(flow.daddr, ca_key_addr(&p->key, dst), 16);
		flow.dport = ca_key_port(&p->key, dst);
		flow.sport = ca_key_port(&p->key, !dst);
		flow.ip_proto = p->key.ip_proto;
		owner = ca_flow_owner_lookup(&flow);
	}
	if (owner)
		__builtin_memcpy(&c->proc, owner, sizeof(c->proc));
}

#endif /* CA_PROCESS_H */
