/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* capture.bpf.c: cicd-audit's TC program: Zeek-style connection tracking in the kernel.
 *
 * Attached to clsact ingress and egress of the recorded interfaces (live), or
 * run once per packet through BPF_PROG_TEST_RUN (pcap input): the same code
 * either way. Per-packet work stays here: each connection lives in the
 * "conns4" or "conns6" map, and only rare events cross the ring buffer to user space:
 * a connection's end (with its final state), DNS messages, and weirds.
 *
 * Settings arrive as -D flags from recorder/kernel/bpf_program.py:
 *   CA_PCAP_MODE            1: packet time is skb->tstamp (set per packet by the
 *                           pcap driver), and ctx mark carries the captured length
 *   CA_VALIDATE_CHECKSUMS   1: drop packets with bad checksums, as Zeek without -C
 *   CA_ATTRIBUTION          1: cgroup socket hooks record which process owns a
 *                           connection (process.h); live capture only
 *   CA_BLOCK                1: enforce the allowlist (policy.h, dns_policy.h)
 *   CA_MAX_CONNS, CA_RINGBUF_PAGES, CA_WEIRD_SEND_MAX
 *   CA_*_NS                 Zeek's timeouts
 *
 * Overhead: one hash lookup and a few header loads per packet; see
 * docs/benchmarks.md for the measured cost.
 */
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/ipv6.h>
#include <uapi/linux/tcp.h>
#include <uapi/linux/udp.h>
#include <uapi/linux/pkt_cls.h>

#include "cicd_audit.h"

/* Verdicts. Passing is TC_ACT_UNSPEC, not TC_ACT_OK: under tcx (and a
 * clsact filter chain) it lets the programs after this one see the packet,
 * where TC_ACT_OK would end the chain. */
#define CA_PASS TC_ACT_UNSPEC
#define CA_DROP TC_ACT_SHOT

/* What ca_sweep holds of a request in its scratch: the head and one key. */
struct ca_sweep_step {
	__u32 count, drain, v4, cursor;    /* as struct ca_sweep_request's */
	struct ca_conn_key key;
};
#define CA_SWEEP_HEAD offsetof(struct ca_sweep_request, keys)

/* Branch hints: clang then lays the rare paths (new connections, weirds,
 * errors) out of the way, so the code a packet of a known connection runs
 * sits together in few instruction cache lines. */
#define ca_likely(x) __builtin_expect(!!(x), 1)
#define ca_unlikely(x) __builtin_expect(!!(x), 0)

#ifndef CA_PCAP_MODE
#define CA_PCAP_MODE 0
#endif
#ifndef CA_VALIDATE_CHECKSUMS
#define CA_VALIDATE_CHECKSUMS 0
#endif
#ifndef CA_ATTRIBUTION
#define CA_ATTRIBUTION 0
#endif
#ifndef CA_BLOCK
#define CA_BLOCK 0
#endif
#ifndef CA_MAX_CONNS
#define CA_MAX_CONNS 262144
#endif
#ifndef CA_RINGBUF_PAGES
#define CA_RINGBUF_PAGES 4096
#endif
/* A live event wakes the reader once in this many on its CPU (ca_wake_flags).
 * A DNS event is at most 4 KiB: at most 256 KiB a CPU waits unannounced. */
#define CA_WAKE_EVERY 64
#ifndef CA_WEIRD_SEND_MAX
#define CA_WEIRD_SEND_MAX 1000
#endif

/* Connections by address family (struct ca_conn_key4): IPv4 preallocated,
 * IPv6 allocated as it comes, so a job that uses no IPv6 reserves no memory for it.
 * A replay allocates IPv4's as they come too: preallocating 262,144 entries
 * took 25 ms of every start, a tenth of a short capture's replay. */
#if CA_PCAP_MODE
BPF_F_TABLE("hash", struct ca_conn_key4, struct ca_conn, conns4, CA_MAX_CONNS, BPF_F_NO_PREALLOC);
#else
BPF_HASH(conns4, struct ca_conn_key4, struct ca_conn, CA_MAX_CONNS);
#endif
BPF_F_TABLE("hash", struct ca_conn_key, struct ca_conn, conns6, CA_MAX_CONNS, BPF_F_NO_PREALLOC);
BPF_RINGBUF_OUTPUT(events, CA_RINGBUF_PAGES);
BPF_PERCPU_ARRAY(stats, __u64, CA_STAT_MAX);
BPF_ARRAY(weird_counts, __u64, CA_WEIRD_MAX);
/* Ports Zeek treats as likely servers when choosing the originator (key: port | proto << 16;
 * value 1: likely, 0: not, as if absent). */
BPF_HASH(likely_server_ports, __u32, __u8, 1024);
BPF_PERCPU_ARRAY(id_counter, __u64, 1);
/* Zeek's Tunnel::max_depth when redefined (1 to CA_TUNNEL_MAX_DEPTH); 0: the default, CA_TUNNEL_MAX_DEPTH. */
BPF_ARRAY(tunnel_max_depth, __u32, 1);
/* Events committed on this CPU since the last one that woke the reader. */
BPF_PERCPU_ARRAY(events_since_wake, __u32, 1);

#include "checksum.h"
#include "packet.h"
#include "tunnel.h"

#define CA_GSO_MIN_LEN 1600        /* smaller skbs are single wire packets */
BPF_PROG_ARRAY(stages, CA_STAGE_MAX);      /* enum ca_stage, filled by recorder/kernel/bpf_program.py */

/* Live capture's per-CPU clock (clock.h). */
struct ca_clock {
	__u64 jiffies;             /* the jiffy of ns */
	__u64 ns;                  /* exact time of the CPU's first packet in that jiffy */
};

struct ca_scratch {
	struct ca_packet pkt;      /* the packet being processed, passed between stages */
	struct ca_clock clock;
	struct ca_conn conn;
	struct ca_dns_event dns;
	struct ca_fragment_event frag;
	struct ca_sweep_step sweep;
	struct ca_csum_scratch csum;
	__u64 tunnel_parent;       /* the innermost tunnel of pkt when pkt.depth > 0 (tunnel.h) */
	/* The tunnels around pkt, by depth, that no connection has been made in yet (a bit each in
	 * tunnels_unannounced): announced when one is (ca_announce_tunnels). */
	struct ca_tunnel_event tunnels[CA_TUNNEL_MAX_DEPTH];
	__u32 tunnels_unannounced;
	__u32 pulled;              /* ca_packet already made the headers linear for this skb */
	struct ca_amsdu amsdu;     /* the A-MSDU whose subframes are being read (tunnel.h) */
};
BPF_PERCPU_ARRAY(scratch, struct ca_scratch, 1);
#include "clock.h"
#include "history.h"

static __always_inline void ca_count(__u32 stat, __u64 n)
{
	__u64 *v = stats.lookup(&stat);
	if (v)
		*v += n;
}

#include "tcp.h"

/* TCP data held above several holes (tcp_blocks.h): a list per endpoint that
 * has them, while it has them. tcp_blocks.h declares the functions that reach
 * it, which take the key and a new list from a per-CPU scratch rather than the
 * stack: stack bytes written on a path cost the verifier more than the lists'
 * logic, in the program every TCP packet runs. */
BPF_TABLE("lru_hash", struct ca_tcp_blocks_key, struct ca_tcp_blocks, tcp_blocks, CA_TCP_BLOCK_LISTS);

struct ca_tcp_blocks_scratch {
	struct ca_tcp_blocks_key key;
	struct ca_tcp_blocks list;
};
BPF_PERCPU_ARRAY(tcp_blocks_scratch, struct ca_tcp_blocks_scratch, 1);

/* This CPU's scratch, its key set to the list of conn_id and tag. */
static __always_inline struct ca_tcp_blocks_scratch *ca_tcp_blocks_scratch(__u64 conn_id, __u32 tag)
{
	__u32 zero = 0;
	struct ca_tcp_blocks_scratch *s = tcp_blocks_scratch.lookup(&zero);

	if (!s)
		return 0;
	s->key.conn_id = conn_id;
	s->key.tag = tag;
	s->key.pad = 0;
	return s;
}

static __always_inline struct ca_tcp_blocks *ca_tcp_blocks_lookup(__u64 conn_id, __u32 tag)
{
	struct ca_tcp_blocks_scratch *s = ca_tcp_blocks_scratch(conn_id, tag);

	return s ? tcp_blocks.lookup(&s->key) : 0;
}

static __always_inline struct ca_tcp_blocks *ca_tcp_blocks_create(__u64 conn_id, __u32 tag, __u32 seq, __u32 upper)
{
	struct ca_tcp_blocks_scratch *s = ca_tcp_blocks_scratch(conn_id, tag);

	if (!s)
		return 0;
	__builtin_memset(&s->list, 0, sizeof(s->list));
	s->list.seq[0] = seq;
	s->list.upper[0] = upper;
	if (tcp_blocks.update(&s->key, &s->list))
		return 0;
	return tcp_blocks.lookup(&s->key);
}

static __always_inline void ca_tcp_blocks_delete(__u64 conn_id, __u32 tag)
{
	struct ca_tcp_blocks_scratch *s = ca_tcp_blocks_scratch(conn_id, tag);

	if (s)
		tcp_blocks.delete(&s->key);
}

#include "timers.h"

/* The conns4 key of a key known to be IPv4 (both addresses IPv4-mapped).
 * Written as two 64-bit words, not field by field: the hash lookup reads the
 * key right away in words, and a word load spanning several narrower stores
 * cannot be forwarded from them, so it stalls until they reach the cache
 * (about 2 % of a UDP packet's time in bench/test_run_cost.py). */
static __always_inline void ca_conn_key4_of_v4(const struct ca_conn_key *key, struct ca_conn_key4 *k4)
{
	__u64 *w = (__u64 *)k4;
	__u64 a0 = ((const __u32 *)key->addr[0])[3], a1 = ((const __u32 *)key->addr[1])[3];
	__u64 p0 = key->port[0], p1 = key->port[1], proto = key->ip_proto;

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	w[0] = a0 | a1 << 32;
	w[1] = p0 | p1 << 16 | proto << 32;          /* pad: 0 */
#else
	w[0] = a0 << 32 | a1;
	w[1] = p0 << 48 | p1 << 32 | proto << 24;
#endif
}

/* IPv4 (both addresses IPv4-mapped): its conns4 key in k4, and 1; else 0. */
static __always_inline int ca_conn_key4(const struct ca_conn_key *key, struct ca_conn_key4 *k4)
{
	const __u32 *a = (const __u32 *)key->addr[0];
	const __u32 *b = (const __u32 *)key->addr[1];

	if ((a[0] | a[1] | b[0] | b[1]) != 0 || a[2] != bpf_htonl(0xffff) || b[2] != bpf_htonl(0xffff))
		return 0;
	ca_conn_key4_of_v4(key, k4);
	return 1;
}

/* Where a packet's connection lives, decided once per key: the verifier then
 * follows one map through a function instead of every mix of the two
 * (deciding in each accessor multiplied the sweep loop's work tenfold). */
struct ca_conn_ref {
	struct ca_conn_key4 k4;    /* conns4's key, when v4 */
	__u64 v4;                  /* 1: conns4 under k4; 0: conns6 under the full key */
};

static __always_inline void ca_conn_ref(const struct ca_conn_key *key, struct ca_conn_ref *ref)
{
	ref->v4 = ca_conn_key4(key, &ref->k4);
}

/* Each map operation below stays a call of its own: merged by clang into one
 * call on either map, it could no longer be inlined or called directly by
 * the verifier (an indirect call through the map's ops, ~30 ns a packet). */
#define ca_own_call(v) asm volatile("" : "+r"(v))

static __always_inline struct ca_conn *ca_conn_lookup(struct ca_conn_key *key, struct ca_conn_ref *ref)
{
	struct ca_conn *c;

	if (ref->v4) {
		c = conns4.lookup(&ref->k4);
		ca_own_call(c);
		return c;
	}
	return conns6.lookup(key);
}

static __always_inline int ca_conn_insert(struct ca_conn_key *key, struct ca_conn_ref *ref, struct ca_conn *c)
{
	int r;

	if (ref->v4) {
		r = conns4.update(&ref->k4, c);
		ca_own_call(r);
		return r;
	}
	return conns6.update(key, c);
}

static __always_inline void ca_conn_delete(struct ca_conn_key *key, struct ca_conn_ref *ref)
{
	long r;

	if (ref->v4) {
		r = conns4.delete(&ref->k4);
		ca_own_call(r);
	} else {
		conns6.delete(key);
	}
}

/* Slot accessors: the verifier rejects variable offsets into the stack, so
 * pick a slot with a branch rather than an index. */
static __always_inline __u16 ca_key_port(const struct ca_conn_key *k, int slot)
{
	if (slot)
		return k->port[1];
	return k->port[0];
}

static __always_inline const __u8 *ca_key_addr(const struct ca_conn_key *k, int slot)
{
	if (slot)
		return k->addr[1];
	return k->addr[0];
}

/* Maps of the optional parts, and the accessors their headers use: bcc
 * rewrites map operations only in this file. */

/* A ring-buffer event with its header filled in, or NULL with drop_stat
 * counted when the buffer is full. Every event begins with its header. */
static __always_inline void *ca_event_new(__u32 type, __u32 size, __u64 ts, __u32 drop_stat)
{
	struct ca_event_header *hdr = events.ringbuf_reserve(size);

	if (!hdr) {
		ca_count(drop_stat, 1);
		return NULL;
	}
	hdr->type = type;
	hdr->size = size;
	hdr->ts_ns = ts;
	return hdr;
}

/* Whether committing an event wakes the reader. A wake-up costs an irq_work
 * on the CPU that made the event (a job's, live) and a context switch for the
 * reader; in a replay it doubled the test run of a frame with an event
 * (docs/benchmarks.md). The reader polls on a timer anyway (every 100 ms live,
 * after every frame in a replay), so a live event wakes it only once in
 * CA_WAKE_EVERY on its CPU, which bounds what waits unannounced, and a
 * replayed one never. */
static __always_inline __u64 ca_wake_flags(void)
{
#if CA_PCAP_MODE
	return BPF_RB_NO_WAKEUP;
#else
	__u32 zero = 0;
	__u32 *unwoken = events_since_wake.lookup(&zero);

	if (!unwoken)
		return BPF_RB_FORCE_WAKEUP;
	if (++*unwoken < CA_WAKE_EVERY)
		return BPF_RB_NO_WAKEUP;
	*unwoken = 0;
	return BPF_RB_FORCE_WAKEUP;
#endif
}

static __always_inline void ca_event_submit(void *ev)
{
	events.ringbuf_submit(ev, ca_wake_flags());
}

/* Commit an event the reader needs at once: a process is read from /proc while it runs. */
static __always_inline void ca_event_submit_now(void *ev)
{
	events.ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

/* Copy n bytes of an event into the ring; non-zero if the ring is full. */
static __always_inline long ca_event_output(void *ev, __u32 n)
{
	return events.ringbuf_output(ev, n, ca_wake_flags());
}

static __always_inline void ca_tail_call(struct __sk_buff *skb, __u32 stage)
{
	stages.call(skb, stage);
}

#if CA_BLOCK
#include "policy.h"
#include "job_scope.h"
BPF_ARRAY(job_scope, struct ca_job_scope, CA_JOB_SLOTS);
BPF_LPM_TRIE(allow_cidrs, struct ca_cidr_key, struct ca_port_set, CA_ALLOW_CIDRS_MAX);
BPF_HASH(allow_names, struct ca_name_key, struct ca_name_rule, CA_ALLOW_NAMES_MAX);
BPF_TABLE("lru_hash", struct ca_learnt_key, struct ca_learnt_addr, allow_addrs, CA_ALLOW_ADDRS_MAX);
BPF_PERCPU_ARRAY(dns_name_scratch, struct ca_dns_name, 1);

static __always_inline struct ca_port_set *ca_allow_cidrs_lookup(struct ca_cidr_key *k)
{
	return allow_cidrs.lookup(k);
}

static __always_inline struct ca_name_rule *ca_allow_names_lookup(struct ca_name_key *key)
{
	return allow_names.lookup(key);
}

static __always_inline struct ca_learnt_addr *ca_allow_addrs_lookup(struct ca_learnt_key *key)
{
	return allow_addrs.lookup(key);
}

static __always_inline int ca_allow_addrs_update(struct ca_learnt_key *key, struct ca_learnt_addr *v)
{
	return allow_addrs.update(key, v);
}

static __always_inline struct ca_dns_name *ca_dns_name_work(void)
{
	__u32 zero = 0;
	return dns_name_scratch.lookup(&zero);
}

static __always_inline struct ca_job_scope *ca_job_scope_get(__u32 slot)
{
	return job_scope.lookup(&slot);
}
#endif

#if CA_ATTRIBUTION
#include "process.h"
#include "exec_paths.h"
BPF_TABLE("lru_hash", __u64, struct ca_process, sock_owner, CA_OWNER_ENTRIES);
BPF_TABLE("lru_hash", struct ca_flow_key, struct ca_process, flow_owner, CA_OWNER_ENTRIES);
BPF_TABLE("lru_hash", __u32, __u8, seen_tgids, CA_OWNER_ENTRIES / 4);
/* Per connected UDP socket: the flow ca_udp_egress last filed for it. */
BPF_SK_STORAGE(udp_filed, struct ca_flow_key);
#if CA_BLOCK
/* Local stub resolver -> the upstream the job's DNS goes to instead (user space fills it). */
BPF_HASH(dns_stubs, struct ca_dns_endpoint, struct ca_dns_endpoint, CA_DNS_STUBS_MAX);
/* Socket cookie -> where its DNS was sent instead (cookies are never reused; LRU forgets). */
BPF_TABLE("lru_hash", __u64, struct ca_dns_redirect, dns_redirected, CA_OWNER_ENTRIES / 4);

static __always_inline struct ca_dns_endpoint *ca_dns_stub_lookup(struct ca_dns_endpoint *stub)
{
	return dns_stubs.lookup(stub);
}

static __always_inline void ca_dns_redirected_update(__u64 *cookie, struct ca_dns_redirect *r)
{
	dns_redirected.update(cookie, r);
}

static __always_inline struct ca_dns_redirect *ca_dns_redirected_lookup(__u64 *cookie)
{
	return dns_redirected.lookup(cookie);
}
#endif

static __always_inline struct ca_process *ca_sock_owner_lookup(__u64 *cookie)
{
	return sock_owner.lookup(cookie);
}

static __always_inline void ca_sock_owner_update(__u64 *cookie, struct ca_process *proc)
{
	sock_owner.update(cookie, proc);
}

static __always_inline struct ca_process *ca_flow_owner_lookup(struct ca_flow_key *flow)
{
	return flow_owner.lookup(flow);
}

static __always_inline void ca_flow_owner_update(struct ca_flow_key *flow, struct ca_process *proc)
{
	flow_owner.update(flow, proc);
}

/* 1 if tgid was not seen before (and is now). */
static __always_inline int ca_first_sight(__u32 *tgid)
{
	__u8 one = 1;
	return seen_tgids.insert(tgid, &one) == 0;
}

static __always_inline void ca_forget_sight(__u32 *tgid)
{
	seen_tgids.delete(tgid);
}

static __always_inline struct ca_flow_key *ca_udp_filed(struct bpf_sock *sk, int create)
{
	return udp_filed.sk_storage_get(sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

int ca_connect4(struct bpf_sock_addr *ctx)
{
	return ca_sock_addr_hook(ctx, 0, 0);
}

int ca_connect6(struct bpf_sock_addr *ctx)
{
	return ca_sock_addr_hook(ctx, 0, 1);
}

int ca_sendmsg4(struct bpf_sock_addr *ctx)
{
	return ca_sock_addr_hook(ctx, 1, 0);
}

int ca_sendmsg6(struct bpf_sock_addr *ctx)
{
	return ca_sock_addr_hook(ctx, 1, 1);
}

#if CA_BLOCK
int ca_recvmsg4(struct bpf_sock_addr *ctx)
{
	return ca_recvmsg_hook(ctx, 0);
}

int ca_recvmsg6(struct bpf_sock_addr *ctx)
{
	return ca_recvmsg_hook(ctx, 1);
}
#endif

int ca_sockops(struct bpf_sock_ops *skops)
{
	return ca_sock_ops_hook(skops);
}

int ca_udp_egress(struct __sk_buff *skb)
{
	return ca_udp_egress_hook(skb);
}

BPF_ARRAY(sock_layout, struct ca_sock_layout, 1);

static __always_inline struct ca_sock_layout *ca_sock_layout_get(void)
{
	__u32 zero = 0;
	return sock_layout.lookup(&zero);
}

/* fentry on __ip4_datagram_connect and __ip6_datagram_connect (loaded once for each):
 * ctx holds the traced function's arguments, sk and uaddr first. */
int ca_udp_connect(__u64 *ctx)
{
	return ca_udp_connect_hook(ctx[0], ctx[1]);
}

/* tgid -> the binary it runs, kept past the process's exit (exec_paths.h). */
BPF_TABLE("lru_hash", __u32, struct ca_exec_path, exec_paths, CA_EXEC_PATHS_ENTRIES);
BPF_ARRAY(exec_layout, struct ca_exec_layout, 1);

static __always_inline struct ca_exec_layout *ca_exec_layout_get(void)
{
	__u32 zero = 0;
	return exec_layout.lookup(&zero);
}

static __always_inline struct ca_exec_path *ca_exec_path_lookup(__u32 *tgid)
{
	return exec_paths.lookup(tgid);
}

static __always_inline void ca_exec_path_update(__u32 *tgid, struct ca_exec_path *entry)
{
	exec_paths.update(tgid, entry);
}

static __always_inline void ca_exec_path_delete(__u32 *tgid)
{
	exec_paths.delete(tgid);
}

/* raw tracepoint sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) */
int ca_exec(struct bpf_raw_tracepoint_args *ctx)
{
	return ca_exec_hook(ctx->args[2]);
}

/* raw tracepoint sched_process_fork(struct task_struct *parent, struct task_struct *child) */
int ca_fork(struct bpf_raw_tracepoint_args *ctx)
{
	return ca_fork_hook(ctx->args[1]);
}
#endif

/* c: the packet's connection, or 0 when none is known. */
static __always_inline void ca_emit_weird(struct ca_packet *p, struct ca_conn *c, __u32 code, __u32 detail)
{
	__u32 idx = code;
	__u64 *sent = weird_counts.lookup(&idx);
	struct ca_weird_event *ev;

	/* Read, then add without fetching: a used __sync_fetch_and_add() result is
	 * BPF_ATOMIC|BPF_FETCH, which verifiers before 5.12 refuse ("BPF_STX uses
	 * reserved fields"); a plain add is BPF_XADD, there since 4.x. CPUs racing
	 * past the cap send at most one weird each beyond it. */
	if (!sent || *sent >= CA_WEIRD_SEND_MAX) {
		ca_count(CA_STAT_WEIRDS_SUPPRESSED, 1);
		return;
	}
	__sync_fetch_and_add(sent, 1);
	ca_exact_time(p);
	ev = ca_event_new(CA_EVENT_WEIRD, sizeof(*ev), p->ts, CA_STAT_RB_DROP_WEIRD);
	if (!ev)
		return;
	__builtin_memcpy(&ev->key, &p->key, sizeof(ev->key));
	ev->conn_id = c ? c->id : 0;
	ev->owner_cgroup_id = c ? c->proc.cgroup_id : 0;
	ev->code = code;
	ev->orig_slot = c ? c->orig_slot : p->src_slot;
	ev->depth = p->depth;
	ev->detail = detail;
	ca_event_submit(ev);
}

static __always_inline void ca_emit_end(struct ca_conn_key *key, struct ca_conn *c, __u64 ts, __u32 reason)
{
	struct ca_conn_end_event *ev = ca_event_new(CA_EVENT_CONN_END, sizeof(*ev), ts, CA_STAT_RB_DROP_CONN);

	if (!ev)
		return;
	__builtin_memcpy(&ev->key, key, sizeof(*key));
	__builtin_memcpy(&ev->conn, c, sizeof(*c));
	ev->reason = reason;
	ev->pad = 0;
	ca_event_submit(ev);
}

#if CA_PCAP_MODE
/* A replay sweeps the keys these name (with the CONN_ENDs, the table's
 * keys) instead of walking every bucket of conns4 and conns6 once a second
 * of packet time. Live sweeps list the tables: once a second of real time. */
static __always_inline void ca_emit_start(struct ca_conn_key *key, __u64 ts)
{
	struct ca_conn_start_event *ev = ca_event_new(CA_EVENT_CONN_START, sizeof(*ev), ts,
						      CA_STAT_RB_DROP_CONN_START);

	if (!ev)
		return;
	__builtin_memcpy(&ev->key, key, sizeof(*key));
	ev->due_ns = ts + ca_min_lifetime(key->ip_proto);
	ca_event_submit(ev);
}
#endif

static __always_inline int ca_likely_server(__u16 port, __u8 proto)
{
	__u32 k = port | ((__u32)proto << 16);
	__u8 *v = likely_server_ports.lookup(&k);
	return v && *v;             /* user space clears a port by setting 0 */
}

static __always_inline int ca_is_dns_port(__u16 port)
{
	return port == CA_DNS_PORT || port == 5353 || port == 5355 || port == 137;
}

static __always_inline int ca_is_broadcast(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;
	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff) && w[3] == 0xffffffff;
}

static __always_inline int ca_is_multicast(const __u8 *addr)
{
	const __u32 *w = (const __u32 *)addr;
	/* Zeek's IPAddr::IsMulticast: 224.x.x.x only (not all of 224/4), or ff00::/8. */
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff))
		return addr[12] == 224;
	return addr[0] == 0xff;
}

/* Zeek's choice of originator for a new connection: the sender, unless the
 * ports say the sender is the server (likely_server_ports). */
static __always_inline int ca_should_flip(struct ca_packet *p)
{
	__u8 proto = p->key.ip_proto;
	__u16 sport = ca_key_port(&p->key, p->src_slot);
	__u16 dport = ca_key_port(&p->key, !p->src_slot);

	if (ca_is_broadcast(ca_key_addr(&p->key, !p->src_slot)))
		return 0;
	if (proto == CA_IPPROTO_UDP)
		return ca_likely_server(sport, proto) && !ca_likely_server(dport, proto);
	if (proto == CA_IPPROTO_TCP) {
		__u8 f = p->tcp_flags;
		if ((f & CA_TH_SYN) && !(f & CA_TH_ACK))
			return 0;  /* a plain SYN names its originator */
		if (!ca_likely_server(sport, proto))
			return 0;
		if (ca_likely_server(dport, proto))
			return !(f & CA_TH_SYN) && sport < dport;
		return 1;
	}
	return 0;
}

/* tunnel.log's DISCOVER, as Zeek's tunnels framework writes it: when a
 * connection is first made inside a tunnel (new_connection, or tunnel_changed
 * for one that moves into it), for each tunnel around it not announced yet.
 * A tunnel whose packets make no connection (ARP in VXLAN, Teredo bubbles)
 * gets no row. Its outer connection (or IP tunnel) is marked announced, which
 * also keeps its uid for the connections it carried (CA_CONN_TUNNEL). */
static __always_inline void ca_announce_tunnels(struct ca_scratch *s, struct ca_packet *p)
{
#pragma unroll
	for (int d = 0; d < CA_TUNNEL_MAX_DEPTH; d++) {
		struct ca_tunnel_event *t = &s->tunnels[d], *ev;
		struct ca_conn_ref ref;
		struct ca_conn *outer;

		if (d >= p->depth || !(s->tunnels_unannounced & (1u << d)))
			continue;
		s->tunnels_unannounced &= ~(1u << d);
		ca_conn_ref(&t->key, &ref);
		outer = ca_conn_lookup(&t->key, &ref);
		if (outer)
			outer->flags |= CA_CONN_TUNNEL;
		ev = ca_event_new(CA_EVENT_TUNNEL, sizeof(*ev), p->ts, CA_STAT_RB_DROP_TUNNEL);
		if (!ev)
			continue;
		__builtin_memcpy(&ev->key, &t->key, sizeof(ev->key));
		ev->tunnel_id = t->tunnel_id;
		ev->orig_slot = t->orig_slot;
		ev->type = t->type;
		__builtin_memset(ev->pad, 0, sizeof(ev->pad));
		ca_event_submit(ev);
	}
}

static __always_inline struct ca_conn *ca_new_conn(struct __sk_buff *skb, struct ca_packet *p,
						   struct ca_conn_ref *ref)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	__u64 *ctr = id_counter.lookup(&zero);
	struct ca_conn *c;
	int r;

	if (!s || !ctr)
		return 0;
	ca_exact_time(p);
	c = &s->conn;
	__builtin_memset(c, 0, sizeof(*c));
	*ctr += 1;
	c->id = (*ctr << 8) | (bpf_get_smp_processor_id() & 0xff);
	c->first_ns = p->ts;
	c->last_ns = p->ts;
	c->orig_slot = p->src_slot;
	if (ca_unlikely(p->depth)) {
		c->tunnel_parents[0] = s->tunnel_parent;
		c->tunnel_current = 1;
		ca_announce_tunnels(s, p);
	}
	if (ca_unlikely(ca_is_ip_tunnel_proto(p->key.ip_proto)))
		c->flags |= CA_CONN_IP_TUNNEL;
	/* Zeek's reassembler starts at relative sequence 1 in both directions. */
	c->ep[0].reassem_seq = c->ep[0].trim_seq = 1;
	c->ep[1].reassem_seq = c->ep[1].trim_seq = 1;
	if (ca_should_flip(p))
		ca_flip_roles(c);
	/* Analyzers attach by the responder's port, after the creation flip. */
	if ((p->key.ip_proto == CA_IPPROTO_UDP || p->key.ip_proto == CA_IPPROTO_TCP) &&
	    ca_is_dns_port(ca_key_port(&p->key, !c->orig_slot)))
		c->flags |= CA_CONN_DNS;
	if (p->key.ip_proto == CA_IPPROTO_UDP && ca_key_port(&p->key, !c->orig_slot) == 123)
		c->flags |= CA_CONN_NTP;
	if (p->key.ip_proto == CA_IPPROTO_UDP) {
		if (ca_is_udp_tunnel_port(ca_key_port(&p->key, !c->orig_slot)))
			c->flags |= CA_CONN_UDP_TUNNEL;
		else if (ca_detect_teredo(skb, p->payload_off, p->payload_len))
			c->flags |= CA_CONN_UDP_TUNNEL | CA_CONN_TEREDO;
		else if (ca_detect_ayiya(skb, p->payload_off, p->payload_len))
			c->flags |= CA_CONN_UDP_TUNNEL | CA_CONN_AYIYA;
	}
#if CA_ATTRIBUTION
	ca_attribute(skb, p, c);
#endif
#if CA_BLOCK
	c->proc.job = ca_conn_job(skb, c);
	if (c->proc.job) {
		c->flags |= CA_CONN_IN_JOB;
		if (!ca_conn_allowed(p, c->proc.job))
			c->flags |= CA_CONN_BLOCKED;
	}
#endif

	r = ca_conn_insert(&p->key, ref, c);
	if (r != 0) {
		ca_count(CA_STAT_CONN_TABLE_FULL, 1);
		return 0;
	}
	ca_count(CA_STAT_CONNS_CREATED, 1);
	if (!ref->v4)
		ca_count(CA_STAT_CONNS6_CREATED, 1);
#if CA_PCAP_MODE
	ca_emit_start(&p->key, p->ts);
#endif
#if CA_BLOCK
	if (c->flags & CA_CONN_BLOCKED)
		ca_emit_blocked(&p->key, p->src_slot, c->id, &c->proc, CA_BLOCKED_ADDRESS, CA_BLOCK_AT_TC, p->ts, 0);
#endif
	return ca_conn_lookup(&p->key, ref);
}

/* Zeek's Connection::CheckEncapsulation for a tunnelled packet whose
 * innermost tunnel is not its connection's last one: a tunnel_changed event
 * adds the new tunnel to the parents, up to Tunnel::max_changes_per_connection,
 * then 'X'. Two parents are kept: the first and the latest. A packet of a
 * tunnelled connection that comes without its tunnel is a change too. */
static __always_inline void ca_tunnel_check(struct ca_packet *p, struct ca_conn *c)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	__u64 now, last = c->tunnel_current ? c->tunnel_parents[(c->tunnel_current - 1) & 1] : 0;

	if (!s)
		return;
	now = p->depth ? s->tunnel_parent : 0;
	if (now == last)
		return;
	if (c->tunnel_changes >= CA_TUNNEL_MAX_CHANGES) {
		if (!ca_hist_once(c, 1, CA_HIST_ANALYZER_LIMIT, 'X'))
			ca_emit_weird(p, c, CA_WEIRD_TUNNEL_MAX_CHANGES, CA_TUNNEL_MAX_CHANGES);
		if (now && now != c->tunnel_parents[0] && now != c->tunnel_parents[1])
			return;        /* not added to the parents: its change is not followed */
	} else {
		c->tunnel_changes++;
	}
	if (!now) {
		c->tunnel_current = 0;     /* out of its tunnel: a change, and no parent */
		return;
	}
	ca_announce_tunnels(s, p);
	if (now == c->tunnel_parents[0] || !c->tunnel_parents[0]) {
		c->tunnel_parents[0] = now;
		c->tunnel_current = 1;
	} else {
		c->tunnel_parents[1] = now;
		c->tunnel_current = 2;
	}
}

/* Find the packet's connection, ending it first if its timers have run out.
 * proto is the packet's, read once by the caller (who may know it is not
 * TCP); may_be_inner is 0 where the packet is known to be no tunnel's. */
static __always_inline struct ca_conn *ca_lookup_conn(struct __sk_buff *skb, struct ca_packet *p, __u8 proto,
						      const int may_be_inner)
{
	struct ca_conn_ref ref;
	struct ca_conn *c;
	__u64 ended;

	/* An IPv4 packet's key is IPv4-mapped by construction: not checked again. */
	if (p->ip_version == 4) {
		ca_conn_key4_of_v4(&p->key, &ref.k4);
		ref.v4 = 1;
	} else {
		ca_conn_ref(&p->key, &ref);
	}
	c = ca_conn_lookup(&p->key, &ref);
	if (ca_likely(c)) {
		ended = ca_conn_ended(c, proto, p->ts);
		if (!ended && proto == CA_IPPROTO_TCP && ca_tcp_is_reuse(c, p))
			ended = c->last_ns;
		if (ca_likely(!ended)) {
			if (ca_unlikely((may_be_inner ? p->depth : 0) | c->tunnel_current))
				ca_tunnel_check(p, c);
			return c;
		}
		ca_emit_end(&p->key, c, ended, CA_END_REUSED);
		ca_blocks_forget_conn(c);
		ca_conn_delete(&p->key, &ref);
	}
	return ca_new_conn(skb, p, &ref);
}

static __always_inline void ca_emit_dns(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c, int from_orig)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	struct ca_dns_event *ev;
	__u32 len = p->payload_len;
	__u32 avail, n;

	if (!s || len == 0)
		return;
	ev = &s->dns;
	avail = p->captured + p->l3_off > p->payload_off ? p->captured + p->l3_off - p->payload_off : 0;
	n = len < avail ? len : avail;
	if (n > CA_DNS_PAYLOAD_MAX) {
		ca_emit_weird(p, c, CA_WEIRD_DNS_TRUNCATED, len);
		n = CA_DNS_PAYLOAD_MAX;
	}
	ev->hdr.type = CA_EVENT_DNS;
	ev->hdr.ts_ns = p->ts;
	__builtin_memcpy(&ev->key, &p->key, sizeof(ev->key));
	ev->conn_id = c->id;
	ev->owner_cgroup_id = c->proc.cgroup_id;
	ev->orig_slot = c->orig_slot;
	ev->from_orig = from_orig;
	ev->history_len = c->history_len;
	ev->tcp_seq = p->seq;
	ev->payload_len = len;
	ev->captured_len = 0;
	/* ((n - 1) & (MAX - 1)) + 1 == n for 1 <= n <= MAX, in a form the verifier can bound. */
	if (n > 0 && bpf_skb_load_bytes(skb, p->payload_off, ev->payload,
					((n - 1) & (CA_DNS_PAYLOAD_MAX - 1)) + 1) == 0)
		ev->captured_len = n;
	/* Only the captured bytes go up: most DNS messages are far below the maximum. */
	n = offsetof(struct ca_dns_event, payload) + (ev->captured_len & (2 * CA_DNS_PAYLOAD_MAX - 1));
	if (n > sizeof(*ev))
		n = sizeof(*ev);
	ev->hdr.size = n;
	if (ca_event_output(ev, n) != 0)
		ca_count(CA_STAT_RB_DROP_DNS, 1);
	else
		ca_count(CA_STAT_DNS_MESSAGES, 1);
}

/* Send a fragment up whole, frame and all, for user space to reassemble
 * (recorder/logs/fragments.py); the datagram then comes back through this program.
 * Fragments are rare, so the copy costs nothing on the common path. */
static __always_inline void ca_emit_fragment(struct __sk_buff *skb, struct ca_scratch *s, struct ca_packet *p)
{
	struct ca_fragment_event *ev = &s->frag;
	__u32 n = skb->len;

	if (n > CA_FRAGMENT_MAX)
		n = CA_FRAGMENT_MAX;
	ev->hdr.type = CA_EVENT_FRAGMENT;
	ev->hdr.ts_ns = p->ts;
	ev->l3_off = p->l3_off;
	ev->egress = p->egress;
	/* The datagram runs later without a socket: its owner is found through this. */
	ev->sock_cookie = p->egress ? bpf_get_socket_cookie(skb) : 0;
	ev->captured_len = 0;
	if (n > 0 && bpf_skb_load_bytes(skb, 0, ev->frame, ((n - 1) & (CA_FRAGMENT_MAX - 1)) + 1) == 0)
		ev->captured_len = n;
	n = offsetof(struct ca_fragment_event, frame) + (ev->captured_len & (2 * CA_FRAGMENT_MAX - 1));
	if (n > sizeof(*ev))
		n = sizeof(*ev);
	ev->hdr.size = n;
	if (ca_event_output(ev, n) != 0) {
		ca_count(CA_STAT_RB_DROP_FRAGMENT, 1);
		ca_emit_weird(p, 0, CA_WEIRD_IP_FRAGMENT, p->ip_len);
	} else {
		ca_count(CA_STAT_FRAGMENTS, 1);
	}
}

/* Zeek's DNS analyzer on one message (for TCP: the connection's first
 * payload segment, which starts with the message), as far as the kernel
 * needs it: the first message it analyses, if it is a reply sent by the
 * originator, flips the roles unless the responder is multicast. An opcode
 * it does not analyse leaves the first message still to come (its 'X', like
 * every DNS limit's, user space adds where the event's history_len says).
 * Returns 1 if the roles must flip. */
static __always_inline int ca_dns_message(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c, int is_orig)
{
	__u32 off = p->payload_off, min_len = 12;
	__u8 hdr[3], opcode;

	if (p->key.ip_proto == CA_IPPROTO_TCP) {
		if (c->flags & CA_CONN_DNS_SEEN)
			return 0;
		off += 2;              /* the message length prefix */
		min_len += 2;
	}
	if (p->payload_len < min_len || bpf_skb_load_bytes(skb, off, hdr, 3) < 0)
		return 0;
	opcode = (hdr[2] >> 3) & 0xf;
	/* QUERY, NOTIFY, UPDATE; NetBIOS (port 137) uses others too. */
	if ((opcode != 0 && opcode != 4 && opcode != 5 && p->key.port[0] != 137 && p->key.port[1] != 137) ||
	    (c->flags & CA_CONN_DNS_SEEN))
		return 0;
	c->flags |= CA_CONN_DNS_SEEN;
	return (hdr[2] & 0x80) && is_orig && !ca_is_multicast(ca_key_addr(&p->key, !c->orig_slot));
}

/* Zeek's NTP analyzer flips once, on a server-mode message from the
 * originator or a client-mode message from the responder. */
static __always_inline int ca_ntp_message(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c, int is_orig)
{
	__u8 mode;

	if ((c->flags & CA_CONN_NTP_FLIPPED) || p->payload_len < 48 ||
	    bpf_skb_load_bytes(skb, p->payload_off, &mode, 1) < 0)
		return 0;
	mode &= 7;
	if ((mode == 4 && is_orig) || (mode == 3 && !is_orig)) {
		c->flags |= CA_CONN_NTP_FLIPPED;
		return 1;
	}
	return 0;
}

/* Last step for every accepted packet: count it for the role Zeek's ConnSize
 * sees (after a TCP flip the new one; after a UDP analyzer's flip the stale
 * one, which is the other host's new slot) and pass DNS payloads up. */
static __always_inline void ca_finish_packet(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c,
					     int count_orig)
{
	struct ca_endpoint *e = &c->ep[count_orig ? 0 : 1];

	e->pkts += p->segs;
	e->ip_bytes += p->wire_ip_bytes;
	if ((c->flags & CA_CONN_DNS) && p->payload_len > 0)
		ca_emit_dns(skb, p, c, p->src_slot == c->orig_slot);
}

/* Conn::port_inactivity_timeouts, applied on connection_established: the
 * responder's port, or the originator's if only that one is a likely server
 * and the originator has sent nothing. */
static __always_inline void ca_established_timeout(struct ca_packet *p, struct ca_conn *c)
{
	__u16 port = ca_key_port(&p->key, !c->orig_slot);
	__u16 oport = ca_key_port(&p->key, c->orig_slot);

	if (c->ep[0].state == CA_TCP_INACTIVE && !ca_likely_server(port, CA_IPPROTO_TCP) &&
	    ca_likely_server(oport, CA_IPPROTO_TCP))
		port = oport;
	if (port != 21 && port != 22 && port != 23 && port != 513)
		c->flags &= ~CA_CONN_PORT_TIMEOUT;
}

/* Blocking mode's word on an accepted packet of the job (anything else
 * passes): drop everything of a blocked connection; hand DNS messages to
 * port 53 to the DNS stage, whose return value then decides. */
static __always_inline int ca_verdict(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c)
{
#if CA_BLOCK
	if (c && !(c->flags & CA_CONN_IN_JOB))
		return CA_PASS;
	p->job = c ? c->proc.job : ca_conn_job(skb, 0);   /* the DNS stages judge by its policy */
	if (!p->job)
		return CA_PASS;
	if (c && (c->flags & CA_CONN_BLOCKED)) {
		ca_count(CA_STAT_BLOCKED_PACKETS, p->segs);
		return CA_DROP;
	}
	if (!c && !ca_conn_allowed(p, p->job)) {        /* table full: judged without state */
		ca_count(CA_STAT_BLOCKED_PACKETS, p->segs);
		return CA_DROP;
	}
	if (p->payload_len > 0 && (p->key.ip_proto == CA_IPPROTO_UDP || p->key.ip_proto == CA_IPPROTO_TCP) &&
	    ca_key_port(&p->key, c ? !c->orig_slot : (p->egress ? !p->src_slot : p->src_slot)) == CA_DNS_PORT) {
		ca_exact_time(p);     /* answers are learnt with their TTL from now */
		stages.call(skb, CA_STAGE_DNS_POLICY);
		return p->egress ? CA_DROP : CA_PASS;   /* the stage could not run: fail closed */
	}
#endif
	return CA_PASS;
}

/* The tunnel (outer connection c) at p's depth, for ca_announce_tunnels: kept
 * in the scratch until a connection is made inside it, unless it already was. */
static __always_inline void ca_note_tunnel(struct ca_scratch *s, struct ca_packet *p, struct ca_conn *c,
					   __u64 tunnel_id, __u8 type)
{
	__u32 d = p->depth & (CA_TUNNEL_MAX_DEPTH - 1);
	struct ca_tunnel_event *t = &s->tunnels[d];

	s->tunnels_unannounced &= (1u << d) - 1;       /* deeper levels were another packet's */
	if (c->flags & CA_CONN_TUNNEL)
		return;
	__builtin_memcpy(&t->key, &p->key, sizeof(t->key));
	t->tunnel_id = tunnel_id;
	t->orig_slot = c->orig_slot;
	t->type = type;
	s->tunnels_unannounced |= 1u << d;
}

/* Zeek's check, which each tunnel analyzer makes before it opens a tunnel:
 * a packet inside Tunnel::max_depth tunnels opens no more. The outermost
 * packet always may (Zeek checks an encapsulation it does not have). */
static __always_inline int ca_too_deep(const struct ca_packet *p)
{
	__u32 idx = 0, *max = tunnel_max_depth.lookup(&idx);

	return p->depth >= CA_TUNNEL_MAX_DEPTH || (p->depth && max && *max && p->depth >= *max);
}

/* Whether the inner packet (of link type link) is opened: not when the
 * packet is too deep (ca_too_deep, which the caller read once). Its tunnel is
 * left in the scratch for the connection the inner packet makes. */
static __always_inline int ca_decapsulate(struct ca_scratch *s, struct ca_packet *p, struct ca_conn *c,
					  __u64 tunnel_id, __u8 type, int link, int too_deep)
{
	if (too_deep) {
		/* The analyzers of VXLAN, Geneve, AYIYA and Teredo mark their
		 * connection; GTP's and IPTunnel's (GRE over UDP) do not. */
		if (type == CA_TUNNEL_VXLAN || type == CA_TUNNEL_GENEVE || type == CA_TUNNEL_AYIYA ||
		    type == CA_TUNNEL_TEREDO)
			ca_hist_once(c, 1, CA_HIST_ANALYZER_LIMIT, 'X');
		/* Zeek's tunnel analyzers raise it about the packet, not its connection. */
		ca_emit_weird(p, 0, CA_WEIRD_TUNNEL_MAX_DEPTH, type);
		return CA_INNER_NONE;
	}
	if (link == CA_INNER_NONE)
		return CA_INNER_NONE;
	ca_note_tunnel(s, p, c, tunnel_id, type);
	s->tunnel_parent = tunnel_id;
	return link;
}

/* A UDP connection whose responder port is a tunnel's: its payload. */
static __always_inline int ca_udp_decapsulate(struct __sk_buff *skb, struct ca_scratch *s, struct ca_packet *p,
					      struct ca_conn *c, __u32 *inner)
{
	__u32 weird = 0, detail = 0;
	__u16 port = (c->flags & CA_CONN_TEREDO) ? CA_PORT_TEREDO :
		     (c->flags & CA_CONN_AYIYA) ? CA_PORT_AYIYA : ca_key_port(&p->key, !c->orig_slot);
	int link = ca_udp_tunnel(skb, p, port, inner, &weird, &detail);
	int too_deep = ca_too_deep(p);

	/* A weird with an inner packet (a Teredo bubble with payload) is
	 * raised, and the packet decapsulated all the same. Only the Teredo
	 * analyzer's is about the connection; the others, the packet's. */
	if (weird && !too_deep) {
		ca_emit_weird(p, weird == CA_WEIRD_TEREDO_BUBBLE_WITH_PAYLOAD ? c : 0, weird, detail);
		if (link == CA_INNER_NONE)
			return CA_INNER_NONE;
	}
	return ca_decapsulate(s, p, c, port == CA_PORT_GRE_UDP ? ca_pair_tunnel_id(p) : c->id,
			      ca_udp_tunnel_type(port), link, too_deep);
}

/* An IP tunnel (IP-in-IP, GRE): the packet after its IP header. */
static __always_inline int ca_ip_decapsulate(struct __sk_buff *skb, struct ca_scratch *s, struct ca_packet *p,
					     struct ca_conn *c, __u32 *inner)
{
	__u32 weird = 0, detail = 0;
	int link = CA_INNER_IP, too_deep = ca_too_deep(p);

	*inner = p->l4_off;
	if (p->key.ip_proto == CA_IPPROTO_GRE && !too_deep) {
		link = ca_gre(skb, p->l4_off, p->l4_len, inner, &weird, &detail);
		if (weird)      /* about the packet: a GRE tunnel is no connection */
			ca_emit_weird(p, 0, weird, detail);
		if (link == CA_INNER_NONE)
			return CA_INNER_NONE;
	} else if (!too_deep && p->segs <= 1) {     /* a GSO skb's lengths are one segment's */
		weird = ca_inner_ip_weird(skb, p);
		if (weird) {
			ca_emit_weird(p, 0, weird, 0);
			return CA_INNER_NONE;
		}
	}
	return ca_decapsulate(s, p, c, ca_pair_tunnel_id(p),
			      p->key.ip_proto == CA_IPPROTO_GRE ? CA_TUNNEL_GRE : CA_TUNNEL_IP, link, too_deep);
}

/* A tunnel's packet, its connection updated: the inner packet is found in a
 * stage of its own (ca_decap), whose code then weighs nothing on every other
 * packet's path. The stage's verdict is the inner packet's, so with blocking
 * it may only add to the outer one's: a blocked connection's packets go
 * nowhere, and a DNS message of the job's is judged by its name, never read
 * as a tunnel (content that looks like AYIYA or Teredo must not carry a query
 * past the policy). Returns only if the stage did not run. */
static __always_inline void ca_decap_stage(struct __sk_buff *skb, struct ca_packet *p, struct ca_conn *c)
{
#if CA_BLOCK
	if ((c->flags & CA_CONN_BLOCKED) ||
	    ((c->flags & CA_CONN_IN_JOB) && ca_key_port(&p->key, !c->orig_slot) == CA_DNS_PORT))
		return;
#endif
	stages.call(skb, CA_STAGE_DECAP);
}

/* A pcap replay's frame shorter than BPF_PROG_TEST_RUN takes (an IP header
 * after an Ethernet one, or 14 bytes) comes padded, its captured length in
 * the mark with CA_MARK_PADDED: cut back to it, so the parse sees what was
 * captured. True when it is too short for that: Zeek reads nothing of 16
 * bytes or less, nor can an skb be cut below its Ethernet header. */
static __always_inline int ca_padded_too_short(struct __sk_buff *skb)
{
#if CA_PCAP_MODE
	__u32 len;

	if (!(skb->mark & CA_MARK_PADDED))
		return 0;
	len = skb->mark & ~CA_MARK_PADDED;
	skb->mark = len;
	return len <= CA_ETH_MIN_FRAME || bpf_skb_change_tail(skb, len, 0) != 0;
#else
	return 0;
#endif
}

/* Find or create the packet's connection and update it. is_tcp is a
 * compile-time constant at each call site, so each program holds one path.
 * Returns the TC verdict. */
static __always_inline int ca_track(struct __sk_buff *skb, struct ca_packet *p, const int is_tcp,
				    const int may_be_inner)
{
	/* Read once: where the entry program tail-calls TCP away, the compiler
	 * then knows that it is not TCP, and drops the TCP tests. */
	__u8 proto = is_tcp ? CA_IPPROTO_TCP : p->key.ip_proto;
	struct ca_conn *c = ca_lookup_conn(skb, p, proto, may_be_inner);
	int from_orig;

	if (ca_unlikely(!c)) {
		ca_count(CA_STAT_PACKETS, p->segs);    /* table full: counted, not attributed */
		ca_count(CA_STAT_IP_BYTES, p->wire_ip_bytes);
		return ca_verdict(skb, p, 0);
	}
	if (is_tcp && ca_unlikely(p->tcp_header_weird)) {
		/* A header Zeek's TCP analyzer refuses (ca_parse_l4): the connection
		 * stands, the packet is counted outside it, before any checksum. */
		ca_count(CA_STAT_PACKETS, p->segs);
		ca_count(CA_STAT_IP_BYTES, p->wire_ip_bytes);
		ca_emit_weird(p, c, p->tcp_header_weird, 0);
		return ca_verdict(skb, p, c);
	}
	from_orig = p->src_slot == c->orig_slot;
	if (ca_time_matters(p, c, from_orig, proto))
		ca_exact_time(p);
	if (ca_unlikely(p->bad_checksum)) {
		struct ca_endpoint *e = &c->ep[from_orig ? 0 : 1];
		__u32 code = is_tcp ? CA_WEIRD_BAD_TCP_CHECKSUM :
			     p->key.ip_proto == CA_IPPROTO_UDP ? CA_WEIRD_BAD_UDP_CHECKSUM : CA_WEIRD_BAD_ICMP_CHECKSUM;
		if (is_tcp || p->key.ip_proto == CA_IPPROTO_UDP)
			ca_hist_scaled(c, from_orig, 'C', &e->checksum_errors);
		ca_count(CA_STAT_BAD_CHECKSUMS, 1);
		ca_count(CA_STAT_PACKETS, p->segs);
		ca_count(CA_STAT_IP_BYTES, p->wire_ip_bytes);
		ca_emit_weird(p, c, code, 0);
		return CA_PASS;
	}
	if (is_tcp) {
		__u32 had_port_timeout = c->flags & CA_CONN_PORT_TIMEOUT;
		ca_tcp_packet(c, p);
		ca_tcp_packet_finish(c, p);
		if ((c->flags & CA_CONN_PORT_TIMEOUT) && !had_port_timeout)
			ca_established_timeout(p, c);
		from_orig = p->src_slot == c->orig_slot;
		if ((c->flags & CA_CONN_DNS) && p->payload_len > 0 && ca_dns_message(skb, p, c, from_orig)) {
			ca_flip_roles(c);
			from_orig = !from_orig;
		}
		ca_finish_packet(skb, p, c, from_orig);
		return ca_verdict(skb, p, c);
	}
	if (proto == CA_IPPROTO_UDP) {
		struct ca_endpoint *e = &c->ep[from_orig ? 0 : 1];
		ca_hist_once(c, from_orig, CA_HIST_DATA, 'D');
		e->state = CA_UDP_ACTIVE;
		e->payload_bytes += p->payload_len;
		ca_touch(c, p);
		/* Most UDP connections carry no DNS, NTP or tunnel: one test for all three. */
		if (ca_likely(!(c->flags & (CA_CONN_DNS | CA_CONN_NTP | CA_CONN_UDP_TUNNEL)))) {
			e->pkts += p->segs;
			e->ip_bytes += p->wire_ip_bytes;
			return ca_verdict(skb, p, c);
		}
		/* Analyzers see the packet after the UDP adapter, then ConnSize
		 * counts it with the role it arrived in. */
		if ((c->flags & CA_CONN_DNS) && p->payload_len > 0 && ca_dns_message(skb, p, c, from_orig))
			ca_flip_roles_udp(c);
		if ((c->flags & CA_CONN_NTP) && ca_ntp_message(skb, p, c, from_orig))
			ca_flip_roles_udp(c);
		ca_finish_packet(skb, p, c, from_orig);
		if (ca_unlikely(c->flags & CA_CONN_UDP_TUNNEL))
			ca_decap_stage(skb, p, c);
		return ca_verdict(skb, p, c);
	}
	/* ICMP and unknown IP protocols: no letters, no DNS. */
	{
		struct ca_endpoint *e = &c->ep[from_orig ? 0 : 1];
		e->state = CA_UDP_ACTIVE;
		e->payload_bytes += p->payload_len;
		ca_touch(c, p);
		/* ConnSize skips an ICMP packet that was not captured in full. */
		if (p->caplen >= p->ip_len ||
		    (p->key.ip_proto != CA_IPPROTO_ICMP && p->key.ip_proto != CA_IPPROTO_ICMPV6)) {
			e->pkts += p->segs;
			e->ip_bytes += p->wire_ip_bytes;
		}
	}
	if (ca_unlikely(c->flags & CA_CONN_IP_TUNNEL))
		ca_decap_stage(skb, p, c);
	return ca_verdict(skb, p, c);
}

/* Entry point: parse and validate, then track the connection. TCP goes on in
 * a tail-called program, so the verifier checks its state machine apart from
 * the parser instead of every combination of their paths. egress is a
 * compile-time constant: ca_packet (ingress, and pcap input) and ca_egress.
 *
 * The hot path keeps no global counters: packets are counted in their
 * connection, and user space adds those up; only packets no connection
 * holds (unparsable, fragments, bad checksums, table full) are counted here. */
static __always_inline int ca_entry(struct __sk_buff *skb, const int egress, const int inner, __u32 base,
				    int raw_ip, __u8 depth)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	struct ca_packet *p;
	__u32 weird = 0;
	int r, pulled;

	if (ca_unlikely(!s))
		return CA_PASS;
	pulled = s->pulled;
	s->pulled = 0;
	if (!inner)             /* what an earlier packet's A-MSDU left is not this one's */
		s->amsdu.active = 0;
	p = &s->pkt;
	__builtin_memset(p, 0, sizeof(*p));
	ca_packet_clock(skb, &s->clock, p);
	p->egress = egress;
	if (inner)              /* else 0 already */
		p->depth = depth;
	/* Only a large skb can be a GSO/GRO super-packet; skip the shared-info read otherwise. */
	p->segs = skb->len > CA_GSO_MIN_LEN && skb->gso_segs > 1 ? skb->gso_segs : 1;
	if (ca_unlikely(!inner && ca_padded_too_short(skb))) {
		weird = CA_WEIRD_TRUNCATED_ETHERNET_FRAME;
		r = CA_PARSE_WEIRD;
	} else {
		r = ca_parse(skb, p, &weird, inner, base, raw_ip);
	}
	if (ca_unlikely(!inner && r != CA_PARSE_OK && !pulled && skb->len > skb->data_end - skb->data)) {
		/* Headers beyond the skb's linear area (rare at TC: GSO and GRO skbs
		 * keep their headers linear): pull them in and parse again. Pulling
		 * unconditionally would copy payload into every GSO skb's head.
		 * (ca_decap pulls a tunnel's inner headers itself.) */
		s->pulled = 1;
		if (bpf_skb_pull_data(skb, skb->len < CA_LINEAR_HEADROOM ? skb->len : CA_LINEAR_HEADROOM) == 0)
			stages.call(skb, egress ? CA_STAGE_EGRESS : CA_STAGE_PACKET);
		s->pulled = 0;
	}
	if (ca_unlikely(r == CA_PARSE_NOT_IP)) {
		ca_count(CA_STAT_NON_IP, 1);
		return CA_PASS;
	}
	if (ca_unlikely(r == CA_PARSE_WEIRD)) {
		if (!inner)     /* an inner packet is counted in its tunnel */
			ca_count(CA_STAT_PACKETS, p->segs);
		ca_count(CA_STAT_PARSE_ERRORS, 1);
		ca_emit_weird(p, 0, weird, 0);
		if (inner && s->amsdu.active && depth == s->amsdu.depth) {
			/* Zeek's 802.11 analyzer stops at a subframe its IP analyzer refused. */
			s->amsdu.next = 0;
			p->depth -= 1;
			ca_emit_weird(p, 0, CA_WEIRD_INVALID_802_11_AMSDU_INNER_PACKET, 0);
		}
		return CA_PASS;
	}
#if CA_PCAP_MODE
	if (ca_unlikely(p->ip_len_zero))        /* with -C Zeek raises it, then reads the packet on */
		ca_emit_weird(p, 0, CA_WEIRD_IP_HDR_LEN_ZERO, 0);
#endif
	if (ca_unlikely(weird))                 /* one the packet went on after (a third VLAN tag) */
		ca_emit_weird(p, 0, weird, 0);
	if (ca_unlikely(p->fragment)) {
		/* Counted here as wire packets; the datagram they make up comes back
		 * through this program, and user space does not count it twice. */
		if (!inner) {
			ca_count(CA_STAT_PACKETS, p->segs);
			ca_count(CA_STAT_IP_BYTES, p->wire_ip_bytes);
		}
#if CA_BLOCK
		/* A fragment leaves before its datagram is whole: only its address
		 * can be judged. Refused fragments never left: nothing to reassemble. */
		__u32 job = egress ? ca_conn_job(skb, 0) : 0;

		if (job && !ca_addr_allowed(job, p->key.addr[1], 0, CA_MATCH_SOME, p->ts)) {
			ca_count(CA_STAT_BLOCKED_PACKETS, p->segs);
			return CA_DROP;
		}
#endif
		ca_emit_fragment(skb, s, p);
		return CA_PASS;
	}
#if CA_VALIDATE_CHECKSUMS
	if (p->key.ip_proto == CA_IPPROTO_TCP || p->key.ip_proto == CA_IPPROTO_UDP ||
	    p->key.ip_proto == CA_IPPROTO_ICMP || p->key.ip_proto == CA_IPPROTO_ICMPV6)
		p->bad_checksum = ca_l4_checksum_ok(skb, &s->csum, p) == 0;
#endif
	if (ca_unlikely(p->key.ip_proto == CA_IPPROTO_IGMP || p->key.ip_proto == CA_IPPROTO_NONE)) {
		/* Zeek hands IGMP to a packet analyzer that makes no connection,
		 * and "no next header" (a Teredo bubble) to none. */
		if (!inner) {
			ca_count(CA_STAT_PACKETS, p->segs);
			ca_count(CA_STAT_IP_BYTES, p->wire_ip_bytes);
		}
		return CA_PASS;
	}
	if (p->key.ip_proto != CA_IPPROTO_TCP && p->key.ip_proto != CA_IPPROTO_UDP &&
	    p->key.ip_proto != CA_IPPROTO_ICMP && p->key.ip_proto != CA_IPPROTO_ICMPV6) {
		p->key.port[0] = 0;
		p->key.port[1] = 0;
	}
	ca_canonicalize(p);
	if (p->key.ip_proto == CA_IPPROTO_TCP) {
		stages.call(skb, CA_STAGE_TCP);
		ca_count(CA_STAT_PACKETS, p->segs);   /* only reached if the tail call failed */
		ca_count(CA_STAT_PARSE_ERRORS, 1);
		return CA_BLOCK && egress ? CA_DROP : CA_PASS;
	}
	return ca_track(skb, p, 0, inner);
}

int ca_packet(struct __sk_buff *skb)
{
	return ca_entry(skb, 0, 0, 0, 0, 0);
}

#if !CA_PCAP_MODE
int ca_egress(struct __sk_buff *skb)
{
	return ca_entry(skb, 1, 0, 0, 0, 0);
}
#endif

/* Where a packet's processing ends (every stage's last word): an A-MSDU
 * subframe's packet done, the decap stage runs again for the next. The
 * packet's verdict is its subframes' together: dropped if one was. */
static __always_inline int ca_amsdu_next(struct __sk_buff *skb, struct ca_scratch *s, int verdict)
{
	struct ca_amsdu *a = &s->amsdu;

	if (ca_likely(!a->active))
		return verdict;
	if (verdict == CA_DROP)
		a->drop = 1;
	if (a->next) {
		a->resume = 1;
		stages.call(skb, CA_STAGE_DECAP);
		/* Out of tail calls: what is left is reported, not read. */
		a->resume = 0;
		s->pkt.depth = a->depth - 1;
		ca_emit_weird(&s->pkt, 0, CA_WEIRD_AMSDU_REST_UNREAD, a->end - a->next);
	}
	a->active = 0;
	return a->drop ? CA_DROP : verdict;
}

/* TCP: the connection and Zeek's endpoint state machine. */
int ca_tcp(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);

	if (!s)
		return CA_PASS;
	return ca_amsdu_next(skb, s, ca_track(skb, &s->pkt, 1, 1));
}

static __always_inline struct ca_conn *ca_conn_find(struct ca_conn_key *key)
{
	struct ca_conn_ref ref;

	ca_conn_ref(key, &ref);
	return ca_conn_lookup(key, &ref);
}

/* The A-MSDU subframe at s->amsdu.next, its weirds raised about the frame
 * (p->depth is its GRE packet's): the link of its payload, *inner at it. */
static __always_inline int ca_amsdu_read(struct __sk_buff *skb, struct ca_scratch *s, struct ca_packet *p,
					 __u32 *inner)
{
	struct ca_amsdu *a = &s->amsdu;
	__u32 weird = 0, detail = 0;
	int link;

	ca_pull_headers(skb, a->next);
	link = ca_amsdu_subframe(skb, a, inner, &weird, &detail);
	if (weird) {
		ca_emit_weird(p, 0, weird, detail);
		if (weird == CA_WEIRD_TRUNCATED_802_11_LLC_HEADER)
			ca_emit_weird(p, 0, CA_WEIRD_INVALID_802_11_AMSDU_INNER_PACKET, 0);
	}
	return link;
}

/* A tunnel's packet, its connection (or IP tunnel) just updated by ca_track:
 * the inner packet goes through the very same parser and state machines, as
 * a packet of its own. The outer packet passes if nothing is inside (what
 * ca_track decides for a connection that is not blocked); otherwise the
 * inner packet's verdict is the packet's. An A-MSDU's subframes are inner
 * packets one after another: this stage runs again for each after the
 * first (ca_amsdu_next). */
int ca_decap(struct __sk_buff *skb)
{
	__u32 zero = 0, inner = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	struct ca_packet *p;
	struct ca_conn *c;
	int link, egress;
	__u8 depth;

	if (!s)
		return CA_PASS;
	p = &s->pkt;
	if (s->amsdu.resume) {
		/* p is the last subframe's packet: the frame's own place again. */
		s->amsdu.resume = 0;
		s->tunnel_parent = s->amsdu.parent;
		p->depth = s->amsdu.depth - 1;
		p->egress = s->amsdu.egress;
		link = ca_amsdu_read(skb, s, p, &inner);
	} else {
		c = ca_conn_find(&p->key);
		if (!c)
			return ca_amsdu_next(skb, s, CA_PASS);
		if (p->key.ip_proto == CA_IPPROTO_UDP)
			link = ca_udp_decapsulate(skb, s, p, c, &inner);
		else
			link = ca_ip_decapsulate(skb, s, p, c, &inner);
		if (ca_unlikely(link == CA_INNER_AMSDU)) {
			struct ca_amsdu *a = &s->amsdu;
			__u32 end = p->key.ip_proto == CA_IPPROTO_UDP ? p->payload_off + p->payload_len :
									  p->l4_off + p->l4_len;
			if (a->active) {
				/* An A-MSDU inside another's subframe: one is read at a time, the outer one. */
				ca_emit_weird(p, 0, CA_WEIRD_AMSDU_REST_UNREAD, end - inner);
				return ca_amsdu_next(skb, s, CA_PASS);
			}
			a->active = 1;
			a->drop = 0;
			a->next = inner;
			a->end = end;
			a->parent = s->tunnel_parent;
			a->depth = p->depth + 1;
			a->egress = p->egress;
			link = ca_amsdu_read(skb, s, p, &inner);
		}
	}
	if (link == CA_INNER_NONE)
		return ca_amsdu_next(skb, s, CA_PASS);
	egress = p->egress;
	depth = p->depth + 1;
	ca_pull_headers(skb, inner);
	return ca_amsdu_next(skb, s, ca_entry(skb, egress, 1, inner, link == CA_INNER_IP, depth));
}

#if CA_BLOCK

static __always_inline struct ca_scratch *ca_scratch_get(void)
{
	__u32 zero = 0;
	return scratch.lookup(&zero);
}
#include "dns_policy.h"

/* Blocking mode's DNS stages, tail-called in turn: header and name bytes,
 * then the name's verdict, then (answers) learning. */
int ca_dns_policy(struct __sk_buff *skb)
{
	int verdict = ca_dns_policy_stage(skb);
	struct ca_scratch *s = ca_scratch_get();

	return s ? ca_amsdu_next(skb, s, verdict) : verdict;
}

int ca_dns_name(struct __sk_buff *skb)
{
	int verdict = ca_dns_name_stage(skb);
	struct ca_scratch *s = ca_scratch_get();

	return s ? ca_amsdu_next(skb, s, verdict) : verdict;
}

int ca_dns_learn(struct __sk_buff *skb)
{
	int verdict = ca_dns_learn_stage(skb);
	struct ca_scratch *s = ca_scratch_get();

	return s ? ca_amsdu_next(skb, s, verdict) : verdict;
}
#endif

/* One key of a sweep request, of the family v4 says (a constant, so the
 * verifier follows one map): reported and removed when its timers have run
 * out, or when draining. IPv4 keys are taken as such (user space lists them
 * from conns4), without ca_conn_key4()'s check. */
static __always_inline void ca_sweep_key(struct ca_conn_key *key, __u32 drain, __u64 now, const int v4)
{
	struct ca_conn_ref ref;
	struct ca_conn *c;
	__u64 ended;

	if (v4)
		ca_conn_key4_of_v4(key, &ref.k4);
	ref.v4 = v4;
	c = ca_conn_lookup(key, &ref);
	if (!c)
		return;
	/* 0 means "not ended" for the timers; a drain ends everything, even at
	 * time 0 (a capture whose packets all carry no timestamp). */
	ended = drain ? now : ca_conn_ended(c, key->ip_proto, now);
	if (!ended && !drain)
		return;
	ca_emit_end(key, c, ended, drain ? CA_END_DRAIN : CA_END_TIMEOUT);
	ca_blocks_forget_conn(c);
	ca_conn_delete(key, &ref);
}

/* User space's timer tick: the packet body is a ca_sweep_request listing
 * connection keys of one family; each one whose timers have run out (or
 * every one, when draining at the end of capture) is reported and removed.
 * One key a run: the program tail-calls itself for the next, the request's
 * cursor moved on in the packet, so the verifier checks one key's work
 * rather than a loop of CA_SWEEP_KEYS_MAX (it was the longest verification
 * of the program). A request the tail calls could not finish returns
 * CA_SWEEP_UNFINISHED, and user space sends its keys again in halves: a key
 * already ended is not found twice. */
int ca_sweep(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ca_scratch *s = scratch.lookup(&zero);
	struct ca_sweep_step *step;
	__u32 at;

	if (!s)
		return CA_PASS;
	step = &s->sweep;
	if (bpf_skb_load_bytes(skb, ETH_HLEN, step, CA_SWEEP_HEAD) < 0)
		return CA_DROP;
	at = step->cursor;
	if (at >= step->count || at >= CA_SWEEP_KEYS_MAX)
		return CA_PASS;
	if (bpf_skb_load_bytes(skb, ETH_HLEN + CA_SWEEP_HEAD + at * sizeof(struct ca_conn_key), &step->key,
			       sizeof(step->key)) < 0)
		return CA_DROP;
	if (step->v4)
		ca_sweep_key(&step->key, step->drain, ca_now(skb), 1);
	else
		ca_sweep_key(&step->key, step->drain, ca_now(skb), 0);
	if (++at >= step->count)
		return CA_PASS;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + offsetof(struct ca_sweep_request, cursor), &at, sizeof(at), 0) < 0)
		return CA_SWEEP_UNFINISHED;
	stages.call(skb, CA_STAGE_SWEEP);
	return CA_SWEEP_UNFINISHED;        /* the tail call did not happen */
}
