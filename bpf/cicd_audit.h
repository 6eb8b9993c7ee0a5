/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* cicd_audit.h: every struct and constant shared by the kernel program and Python.
 *
 * Python mirrors this file in exactly one module (recorder/kernel/abi.py); the test
 * tests/test_abi_layout.py compiles a probe against this header and fails on any
 * drift in size or offset. Padding is explicit so both sides agree without
 * relying on compiler defaults. Integers are host byte order unless the name
 * says otherwise; addresses are raw network-order bytes.
 */
#ifndef CICD_AUDIT_H
#define CICD_AUDIT_H

#include <linux/types.h>

#define CA_HISTORY_MAX 64          /* power of two: history index is masked */
#define CA_DNS_PAYLOAD_MAX 4096    /* power of two: copy length is masked */
#define CA_SWEEP_KEYS_MAX 32       /* connection keys per sweep request */
#define CA_SWEEP_UNFINISHED 100    /* ca_sweep's verdict when its tail calls stopped short */
#define CA_COMM_LEN 16             /* the kernel's TASK_COMM_LEN */
#define CA_NAME_MAX 256            /* a dotted DNS name and its terminating zero */
#define CA_POLICY_PORTS_MAX 6      /* ports one policy entry can list before it means "any" */
#define CA_DNS_PORT 53             /* DNS's port: blocking judges what goes to it by name */
#define CA_JOB_SLOTS 8             /* jobs blocking mode judges at once, each by its own policy */
/* An IP tunnel is named by its address pair, whatever carries it (IP-in-IP,
 * GRE, GRE over UDP): tunnel ids with this bit never come from the
 * connection counter (bpf/tunnel.h). */
#define CA_PAIR_TUNNEL_ID (1ULL << 63)
#define CA_FRAGMENT_MAX 16384      /* power of two: bytes of a fragment's frame sent up (jumbo frames fit) */
#define CA_MARK_PADDED (1U << 31)  /* pcap replay: the mark holds a frame's length, padded to what a test run takes */

enum ca_event_type {
	CA_EVENT_CONN_END = 1,     /* a connection ended; carries its final state */
	CA_EVENT_DNS = 2,          /* one DNS message (UDP) or TCP segment of port 53-like traffic */
	CA_EVENT_WEIRD = 3,        /* a malformed or unexpected packet */
	CA_EVENT_PROCESS = 4,      /* a socket hook saw a process for the first time */
	CA_EVENT_BLOCKED = 5,      /* blocking mode refused a connection or a DNS query */
	CA_EVENT_FRAGMENT = 6,     /* an IP fragment, whole: user space reassembles (recorder/logs/fragments.py) */
	CA_EVENT_TUNNEL = 7,       /* a first connection was made inside a tunnel (tunnel.log's DISCOVER) */
	CA_EVENT_CONN_START = 8,   /* pcap mode: a connection entered the table (a replay's sweeps send its key) */
};

/* Tail-call stages: the slot of each program in the stages array, which user
 * space fills (recorder/kernel/bpf_program.py: abi.Stage -> function). */
enum ca_stage {
	CA_STAGE_PACKET = 1,       /* ca_packet itself: parse again after pulling headers */
	CA_STAGE_TCP = 2,          /* ca_tcp: the connection and Zeek's TCP state machine */
	CA_STAGE_EGRESS = 3,       /* ca_egress itself, likewise */
	CA_STAGE_DNS_POLICY = 4,   /* blocking mode: judge a DNS message */
	CA_STAGE_DNS_NAME = 5,     /* blocking mode: judge a DNS question name */
	CA_STAGE_DNS_LEARN = 6,    /* blocking mode: allow the addresses of an answer */
	CA_STAGE_DECAP = 7,        /* a tunnel's packet: find the inner one (tunnel.h) */
	CA_STAGE_SWEEP = 8,        /* ca_sweep itself: the next key of a sweep request */
};
#define CA_STAGE_MAX 9

/* Zeek's Tunnel::Type, as far as decapsulated here (bpf/tunnel.h). */
enum ca_tunnel_type {
	CA_TUNNEL_IP = 1,          /* IP-in-IP, 6in4, 4in6 */
	CA_TUNNEL_GRE = 2,
	CA_TUNNEL_VXLAN = 3,
	CA_TUNNEL_GENEVE = 4,
	CA_TUNNEL_GTPV1 = 5,
	CA_TUNNEL_AYIYA = 6,
	CA_TUNNEL_TEREDO = 7,
};

/* Why a connection ended. */
enum ca_end_reason {
	CA_END_TIMEOUT = 1,        /* a Zeek timer (inactivity, attempt, close delay) expired */
	CA_END_REUSED = 2,         /* expired when a new packet for the same key arrived */
	CA_END_DRAIN = 3,          /* end of capture */
};

/* Zeek's endpoint states: TCP_INACTIVE .. TCP_RESET; UDP and others use INACTIVE/ACTIVE. */
enum ca_endpoint_state {
	CA_TCP_INACTIVE = 0,
	CA_TCP_SYN_SENT = 1,
	CA_TCP_SYN_ACK_SENT = 2,
	CA_TCP_PARTIAL = 3,
	CA_TCP_ESTABLISHED = 4,
	CA_TCP_CLOSED = 5,
	CA_TCP_RESET = 6,
	CA_UDP_INACTIVE = 0,
	CA_UDP_ACTIVE = 1,
};

/* Weird codes; recorder/logs/weirds.py maps each to Zeek's weird name. */
enum ca_weird_code {
	CA_WEIRD_TRUNCATED_IP = 1,
	CA_WEIRD_BAD_IP_CHECKSUM = 2,
	CA_WEIRD_TRUNCATED_HEADER = 3,     /* transport header does not fit */
	CA_WEIRD_BAD_TCP_CHECKSUM = 4,
	CA_WEIRD_BAD_UDP_CHECKSUM = 5,
	CA_WEIRD_BAD_ICMP_CHECKSUM = 6,
	CA_WEIRD_IP_FRAGMENT = 7,          /* a fragment could not be sent up for reassembly */
	CA_WEIRD_UNKNOWN_IP_VERSION = 8,
	CA_WEIRD_TOO_MANY_EXT_HEADERS = 9,
	CA_WEIRD_DNS_TRUNCATED = 10,       /* DNS payload larger than CA_DNS_PAYLOAD_MAX */
	CA_WEIRD_IP_HDR_LEN_ZERO = 11,     /* IPv4 total length 0 (offloaded segmentation), checksums checked */
	CA_WEIRD_TUNNEL_MAX_DEPTH = 12,    /* a tunnel deeper than Tunnel::max_depth */
	CA_WEIRD_TRUNCATED_GRE = 13,
	CA_WEIRD_GRE_UNSUPPORTED = 14,     /* GRE version, flags or payload Zeek does not decapsulate */
	CA_WEIRD_TUNNEL_MAX_CHANGES = 15,  /* Tunnel::max_changes_per_connection reached */
	CA_WEIRD_BAD_TCP_HEADER_LEN = 16,  /* a TCP data offset under 20 bytes */
	CA_WEIRD_TEREDO_BUBBLE_WITH_PAYLOAD = 17, /* a Teredo bubble with bytes after its IPv6 header */
	CA_WEIRD_INVALID_IP_HEADER_SIZE = 18, /* the IP header (IPv6: with its chain) past the IP length */
	CA_WEIRD_IPV4_MIN_HEADER_SIZE = 19,   /* an IPv4 header length under 20 bytes */
	CA_WEIRD_VXLAN_EMPTY_PACKET = 20,     /* a VXLAN header and nothing after it */
	CA_WEIRD_GENEVE_EMPTY_PACKET = 21,    /* a Geneve header (with its options) and nothing after it */
	CA_WEIRD_GENEVE_INVALID_VERSION = 22, /* detail: the version */
	CA_WEIRD_TRUNCATED_802_11_HEADER = 23,     /* 23-27: Zeek's 802.11 analyzer's, inside Aruba's GRE */
	CA_WEIRD_TRUNCATED_802_11_LLC_HEADER = 24,
	CA_WEIRD_TRUNCATED_802_11_AMSDU_HEADER = 25,
	CA_WEIRD_TRUNCATED_802_11_AMSDU_PACKET = 26,
	CA_WEIRD_INVALID_802_11_AMSDU_INNER_PACKET = 27,
	CA_WEIRD_AMSDU_REST_UNREAD = 28,    /* A-MSDU subframes left unread (tunnel.h); detail: their bytes */
	CA_WEIRD_TRUNCATED_ETHERNET_FRAME = 29, /* 16 bytes or less */
	CA_WEIRD_UNDEFINED_ETHER_TYPE = 30,     /* between 1500 and 1536: neither a length nor a type */
	CA_WEIRD_TRUNCATED_VLAN_HEADER = 31,
	CA_WEIRD_UNDEFINED_VLAN_PROTOCOL = 32,
	CA_WEIRD_TRIPLE_TAGGED_VLAN = 33,       /* a third VLAN tag (or more): the packet goes on */
	CA_WEIRD_TRUNCATED_IP_LEN = 34,         /* pcap input: the IP length runs past the record's wire length */
	CA_WEIRD_TRUNCATED_INNER_IP = 35,       /* 35-37: an IP-in-IP packet whose inner header does not fit */
	CA_WEIRD_INNER_IP_PAYLOAD_LENGTH_MISMATCH = 36,
	CA_WEIRD_INVALID_INNER_IP_VERSION = 37,
	CA_WEIRD_INTERNALLY_TRUNCATED_HEADER = 38,    /* a transport header the IP length holds, the capture not */
	CA_WEIRD_IP_INTERNALLY_TRUNCATED_HEADER = 39, /* the same of the IP header (its options) */
	CA_WEIRD_MAX = 40,
};

/* Per-CPU counters (map "stats"); recorder/kernel/abi.py names them. */
enum ca_stat {
	CA_STAT_PACKETS = 0,           /* wire packets outside any connection (GSO per segment); */
	CA_STAT_IP_BYTES = 1,          /* user space adds the packets and bytes of every connection */
	CA_STAT_NON_IP = 2,            /* ARP and other non-IP frames, ignored */
	CA_STAT_PARSE_ERRORS = 3,      /* packets that could not be parsed */
	CA_STAT_CONN_TABLE_FULL = 4,   /* new connections refused: map full */
	CA_STAT_RB_DROP_CONN = 5,      /* ring buffer full: connection-end event lost */
	CA_STAT_RB_DROP_DNS = 6,       /* ring buffer full: DNS message lost */
	CA_STAT_RB_DROP_WEIRD = 7,     /* ring buffer full: weird lost */
	CA_STAT_WEIRDS_SUPPRESSED = 8, /* weirds counted but not sent (rate limit) */
	CA_STAT_CONNS_CREATED = 9,
	CA_STAT_DNS_MESSAGES = 10,
	CA_STAT_BAD_CHECKSUMS = 11,    /* packets dropped for a bad transport checksum */
	CA_STAT_BLOCKED_CONNECTS = 12, /* blocking: connect()/sendmsg() refused with EPERM */
	CA_STAT_BLOCKED_PACKETS = 13,  /* blocking: packets dropped at TC (GSO per segment) */
	CA_STAT_BLOCKED_DNS = 14,      /* blocking: DNS queries dropped for their name */
	CA_STAT_ADDRS_LEARNT = 15,     /* blocking: addresses allowed by a DNS answer */
	CA_STAT_RB_DROP_BLOCKED = 16,  /* ring buffer full: blocked-attempt event lost */
	CA_STAT_RB_DROP_PROCESS = 17,  /* ring buffer full: process event lost */
	CA_STAT_ALLOW_TABLE_FULL = 18, /* blocking: a learnt address found no room (fails closed) */
	CA_STAT_RB_DROP_FRAGMENT = 19, /* ring buffer full: a fragment lost (its datagram is never reassembled) */
	CA_STAT_FRAGMENTS = 20,        /* IP fragments sent up for reassembly */
	CA_STAT_RB_DROP_TUNNEL = 21,   /* ring buffer full: a tunnel's discovery lost (no tunnel.log row) */
	CA_STAT_CONNS6_CREATED = 22,   /* of CONNS_CREATED, IPv6: until one is, a sweep need not list conns6 */
	CA_STAT_RB_DROP_CONN_START = 23, /* ring buffer full: a connection's start lost (sweeps list the tables again) */
	CA_STAT_TCP_HOLES_MERGED = 24, /* TCP data held above more holes than tcp_blocks.h lists: holes counted as received */
	CA_STAT_MAX = 25,
};

struct ca_event_header {
	__u32 type;                /* enum ca_event_type */
	__u32 size;                /* bytes of the whole event */
	__u64 ts_ns;               /* packet time: epoch ns (pcap) or CLOCK_MONOTONIC ns (live) */
};

/* Connection key in canonical order (lower address/port first), so both
 * directions of a connection find the same map entry. IPv4 addresses are
 * stored IPv4-mapped (::ffff:a.b.c.d). Ports are host order; for ICMP they
 * hold Zeek's type/counterpart-type pair. */
struct ca_conn_key {
	__u8 addr[2][16];
	__u16 port[2];
	__u8 ip_proto;
	__u8 pad[3];
};

/* The map key of an IPv4 connection: ca_conn_key's endpoints without the
 * IPv4-mapped prefix. The per-packet hash lookup then hashes and compares
 * 16 bytes instead of 40 (IPv4 and IPv6 connections live in two maps). */
struct ca_conn_key4 {
	__u32 addr[2];             /* network order: the last word of each ca_conn_key address */
	__u16 port[2];
	__u8 ip_proto;
	__u8 pad[3];
};

struct ca_endpoint {
	__u64 pkts;                /* wire packets */
	__u64 ip_bytes;            /* IP total lengths */
	__u64 payload_bytes;       /* UDP/ICMP/other payload; TCP uses sequence numbers */
	__u64 gap_bytes;           /* TCP: bytes acknowledged by the peer that were never seen */
	__u32 start_seq;           /* TCP: sequence number before the first byte (the SYN's) */
	__u32 last_seq;            /* TCP: highest sequence number reached (seq + len, + SYN/FIN) */
	__u32 seq_wraps;           /* TCP: times last_seq wrapped past 2^32 */
	__u32 ack_seq;             /* TCP: highest ACK the peer sent for this endpoint's data */
	__u32 ack_wraps;           /* TCP: times ack_seq wrapped past 2^32 */
	__u32 hist_last_syn;       /* TCP: relative sequence of the last SYN/FIN/RST, so repeats */
	__u32 hist_last_fin;       /*      of the same segment add no new history letter */
	__u32 hist_last_rst;
	__u32 fin_seq;             /* TCP: relative sequence just past the FIN (Zeek's FIN_seq) */
	/* Zeek's reassembler bookkeeping for content gaps, all relative to start_seq:
	 * data is delivered up to reassem_seq, acknowledged up to trim_seq, and what
	 * is held above a hole spans [ooo_seq, ooo_upper) (its blocks: tcp_blocks.h). */
	__u32 reassem_seq;
	__u32 trim_seq;
	__u32 ooo_seq;
	__u32 ooo_upper;
	__u32 checksum_errors;     /* packets dropped for a bad transport checksum */
	__u32 rexmits;             /* TCP retransmissions */
	__u32 zero_windows;        /* TCP zero-window advertisements */
	__u32 gaps;                /* TCP content gaps */
	__u16 flags;               /* CA_EP_* */
	__u8 state;                /* enum ca_endpoint_state */
	__u8 prev_state;           /* state before the last change (Zeek's prev_state) */
};

#define CA_EP_SEQ_VALID   (1 << 0)  /* start_seq/last_seq hold a value */
#define CA_EP_SAW_SYN     (1 << 1)
#define CA_EP_SAW_FIN     (1 << 2)
#define CA_EP_SAW_RST     (1 << 3)
#define CA_EP_SAW_DATA    (1 << 4)
#define CA_EP_SAW_ACK     (1 << 5)
#define CA_EP_DID_CLOSE   (1 << 6)  /* Zeek's did_close: this side's close was reported */
#define CA_EP_FIRST_SEEN  (1 << 7)  /* Zeek's first_packet_seen for this side */
#define CA_EP_SKIP        (1 << 8)  /* reassembler gave up (Zeek's skip_deliveries) */
#define CA_EP_DID_EOF     (1 << 9)  /* all of this side's data was delivered after its close */
#define CA_EP_BLOCKS      (1 << 10) /* data held above more than one hole: listed in tcp_blocks */
#define CA_EP_BLOCKS_TAG1 (1 << 11) /* ... under tag 1 of the connection's id (tcp_blocks.h) */

/* The process behind a socket, as the cgroup socket hooks saw it. */
struct ca_process {
	__u32 tgid;                /* process id; 0: unknown */
	__u32 pid;                 /* thread id */
	__u64 cgroup_id;           /* cgroup v2 id: the inode number of the cgroup's directory */
	__u32 flags;               /* reserved, 0 */
	__u32 job;                 /* blocking mode: its job's slot in job_scope + 1; 0: no job's (job_scope.h) */
	char comm[CA_COMM_LEN];    /* task name, NUL-padded */
};

struct ca_conn {
	__u64 id;                  /* unique per capture; Python derives the uid from it */
	__u64 first_ns;
	__u64 last_ns;
	/* Zeek's per-connection timers, as absolute deadlines in packet time (0 = unarmed). */
	__u64 attempt_deadline;    /* tcp_attempt_delay after the first SYN */
	__u64 close_deadline;      /* tcp_close_delay after both sides closed (or a RST) */
	__u64 expire_deadline;     /* tcp_session_timer checks after one side closed */
	struct ca_endpoint ep[2];  /* [0] originator, [1] responder */
	__u64 history_seen;        /* bit per history letter already recorded */
	__u8 orig_slot;            /* which key slot (0/1) holds the originator */
	__u8 history_len;
	__u8 tunnel_current;       /* the tunnel of its last packet: 0 none, 1 or 2 tunnel_parents[0 or 1] */
	__u8 tunnel_changes;       /* Zeek's tunnel_changed events so far */
	__u32 flags;               /* CA_CONN_* */
	char history[CA_HISTORY_MAX];
	struct ca_process proc;    /* live capture: the local process that opened it, if known */
	/* Ids of the tunnels that carried it (tunnel.h), innermost layer only, 0 = none:
	 * the first, and the latest when it changed (Zeek's tunnel_changed). Last:
	 * the fields every packet touches keep their cache lines. */
	__u64 tunnel_parents[2];
};

#define CA_CONN_DNS        (1 << 0)  /* carried at least one DNS message */
#define CA_CONN_FLIPPED    (1 << 1)  /* roles were flipped ('^') */
#define CA_CONN_PARTIAL    (1 << 2)  /* Zeek's is_partial: did not start with a SYN */
#define CA_CONN_FINISHED   (1 << 3)  /* TCP finished or reset (Zeek's is_active cleared) */
#define CA_CONN_DNS_SEEN   (1 << 4)  /* the DNS analyzer has seen its first message */
#define CA_CONN_CLOSE_DEFERRED (1 << 5)  /* a close waits for undelivered data (Zeek's close_deferred) */
#define CA_CONN_DEFERRED_GEN   (1 << 6)  /* ... and would have generated an event */
#define CA_CONN_ESTABLISHED_TIMEOUT (1 << 7)  /* TCP left the handshake: tcp_inactivity_timeout */
#define CA_CONN_PORT_TIMEOUT   (1 << 8)  /* an interactive port: Conn::port_inactivity_timeouts */
#define CA_CONN_NTP        (1 << 9)  /* the NTP analyzer is attached (responder port 123/udp) */
#define CA_CONN_NTP_FLIPPED (1 << 10) /* the NTP analyzer has flipped the roles (once only) */
#define CA_CONN_BLOCKED    (1 << 11) /* blocking mode drops every packet of it */
#define CA_CONN_DNS_BLOCKED (1 << 12) /* blocking mode dropped at least one of its DNS queries */
#define CA_CONN_IN_JOB     (1 << 13) /* blocking mode: a job's (proc.job says which), so its packets are judged */
#define CA_CONN_TUNNEL     (1 << 14) /* a connection was made inside it: inner rows name its uid */
#define CA_CONN_IP_TUNNEL  (1 << 15) /* an IP tunnel (GRE, IP-in-IP): a tunnel, not a connection */
#define CA_CONN_UDP_TUNNEL (1 << 16) /* its responder port is a UDP tunnel's (VXLAN, Geneve, ...) */
#define CA_CONN_TEREDO     (1 << 17) /* Teredo found by its content on another port (tunnel.h) */
#define CA_CONN_AYIYA      (1 << 18) /* AYIYA found by its content on another port */

struct ca_conn_end_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;
	struct ca_conn conn;
	__u32 reason;              /* enum ca_end_reason */
	__u32 pad;
};

struct ca_dns_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;
	__u64 conn_id;
	__u64 owner_cgroup_id;     /* the connection's process's cgroup (ca_process), 0 if unknown:
				    * an agent with several jobs open files the message by it */
	__u8 orig_slot;            /* orientation when the message was seen */
	__u8 from_orig;            /* 1 if the originator sent it */
	__u8 history_len;          /* the connection's history letters by then: where an 'X' for a limit
				    * the DNS parser (user space) finds in this message goes */
	__u8 pad;
	__u32 tcp_seq;             /* TCP: sequence number of the first payload byte */
	__u32 payload_len;         /* message bytes on the wire */
	__u32 captured_len;        /* bytes in payload[] (<= CA_DNS_PAYLOAD_MAX) */
	__u8 payload[CA_DNS_PAYLOAD_MAX];
};

/* pcap mode only: a replay follows the table's keys from these and the
 * CONN_END events instead of listing its buckets at every sweep
 * (recorder/kernel/conn_keys.py). */
struct ca_conn_start_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;
	__u64 due_ns;              /* no sweep can end it before this packet time (timers.h ca_min_lifetime) */
};

/* A tunnel a first connection was made inside (tunnel.log's DISCOVER). key is
 * the outer packet's (canonical) key: a UDP tunnel's connection, or, for an IP
 * tunnel, its address pair. */
struct ca_tunnel_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;
	__u64 tunnel_id;           /* what inner connections name in tunnel_parents */
	__u8 orig_slot;            /* key slot of the tunnel's originator */
	__u8 type;                 /* enum ca_tunnel_type */
	__u8 pad[6];
};

struct ca_weird_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;    /* as far as it could be parsed; zero otherwise */
	__u64 conn_id;             /* 0 when no connection is known */
	__u64 owner_cgroup_id;     /* its connection's process's cgroup, as in ca_dns_event; 0 if unknown */
	__u16 code;                /* enum ca_weird_code */
	__u8 orig_slot;            /* key slot of the connection's originator; with no connection, the sender's */
	__u8 depth;                /* tunnels around the packet (0: none) */
	__u32 detail;              /* code-specific number (e.g. a length; the tunnel's type for TUNNEL_MAX_DEPTH) */
};

/* One IP fragment as it was seen, from the frame's first byte: user space
 * reassembles its datagram as Zeek does and runs that through the same
 * program (BPF_PROG_TEST_RUN), so one parser judges every packet. */
struct ca_fragment_event {
	struct ca_event_header hdr;
	__u32 l3_off;              /* where the IP header starts in frame[] */
	__u32 captured_len;        /* bytes in frame[] (<= CA_FRAGMENT_MAX) */
	__u8 egress;               /* 1: seen leaving the interface (run it through ca_egress) */
	__u8 pad[7];
	__u64 sock_cookie;         /* egress: the sending socket's cookie (its owner goes to the datagram); else 0 */
	__u8 frame[CA_FRAGMENT_MAX];
};

/* First sight of a process in a socket hook; user space reads /proc/<tgid> then. */
struct ca_process_event {
	struct ca_event_header hdr;
	struct ca_process proc;
};

/* What a process runs, kept by the exec hooks (exec_paths.h) past its exit:
 * a short-lived process may be gone before user space reads /proc/<tgid>/exe. */
#define CA_EXEC_PATH_MAX 256
#define CA_EXEC_PATH_CUT (1 << 0)  /* the path was longer than path[] holds */

struct ca_exec_path {
	__u32 len;                 /* bytes in path[], the NUL excluded */
	__u32 flags;               /* CA_EXEC_PATH_* */
	char path[CA_EXEC_PATH_MAX];   /* the binary exec ran (the interpreter, for a script) */
};

/* Byte offsets of the kernel fields the exec hooks read, from the running
 * kernel's BTF (recorder/kernel/kernel_btf.py); 0: unknown, the hooks do nothing. */
struct ca_exec_layout {
	__u32 binprm_interp;       /* offsetof(struct linux_binprm, interp) */
	__u32 task_pid;            /* offsetof(struct task_struct, pid) */
	__u32 task_tgid;           /* offsetof(struct task_struct, tgid) */
	__u32 pad;
};

/* Byte offsets of the socket fields the connected-UDP connect hook reads, from
 * the running kernel's BTF; 0: unknown, the hook does nothing. */
struct ca_sock_layout {
	__u32 sock_cookie;         /* offsetof(struct sock_common, skc_cookie): struct sock starts with it */
	__u32 sock_protocol;       /* offsetof(struct sock, sk_protocol), a __u16 since 5.6 */
	__u32 inet_sport;          /* offsetof(struct inet_sock, inet_sport), network order */
	__u32 pad;
};

enum ca_block_reason {
	CA_BLOCKED_ADDRESS = 1,      /* destination address, or its port, not allowed */
	CA_BLOCKED_DNS_NAME = 2,     /* DNS query for a name the policy does not allow */
};

enum ca_block_where {
	CA_BLOCK_AT_CONNECT = 1,   /* cgroup hook: connect()/sendmsg() failed with EPERM */
	CA_BLOCK_AT_TC = 2,        /* TC: the packet was dropped */
};

/* One blocked attempt. key holds what is known: at connect time the local
 * address and port may still be zero. */
struct ca_blocked_event {
	struct ca_event_header hdr;
	struct ca_conn_key key;
	__u64 conn_id;             /* TC: the connection; 0 for a refused connect() */
	struct ca_process proc;    /* tgid 0: unknown */
	__u32 reason;              /* enum ca_block_reason */
	__u8 where;                /* enum ca_block_where */
	__u8 src_slot;             /* key slot of the side that tried to send */
	__u16 name_len;            /* bytes in name[], without the NUL */
	char name[CA_NAME_MAX];    /* CA_BLOCKED_DNS_NAME: the query name, dotted, lower case */
};

/* Blocking-mode policy maps, filled by user space (recorder/kernel/block_tables.py). */

/* Destination ports: every port, or a short list; neither means "none". */
struct ca_port_set {
	__u8 any;
	__u8 count;                /* entries of ports[] in use */
	__u16 ports[CA_POLICY_PORTS_MAX];   /* host order */
};

/* Every policy entry belongs to one job (its slot + 1, as in ca_process.job):
 * one job's policy allows nothing to another job. */

/* allow_cidrs (LPM trie) key: the job, then the address (IPv4 as IPv4-mapped
 * IPv6); prefixlen counts the job's 8 bits, so it is the address's + 8 (an
 * IPv4 prefix's + 104). */
struct ca_cidr_key {
	__u32 prefixlen;
	__u8 job;
	__u8 addr[16];
	__u8 pad[3];
};

/* allow_names key: ca_name_hash() of the name (FNV-1a 64 over the dotted
 * lower-case name read from its last byte to its first), and the job. */
struct ca_name_key {
	__u64 hash;
	__u32 job;
	__u32 pad;
};

/* allow_names value. name[] is compared in full after the hash matches, so a
 * collision allows nothing. */
struct ca_name_rule {
	struct ca_port_set exact;  /* ports allowed for the name itself */
	struct ca_port_set under;  /* ports allowed for names under it ("*.name") */
	__u16 len;                 /* bytes of name[] */
	__u16 pad;
	char name[CA_NAME_MAX];
};

/* allow_addrs key: an address a DNS answer for an allowed name carried, and
 * a port the name's rules allow (0: every port). One entry per port keeps
 * the kernel from merging port sets. */
struct ca_learnt_key {
	__u8 addr[16];
	__u16 port;
	__u8 job;                  /* the job whose query the answer came back to */
	__u8 pad;
};

/* allow_addrs value. */
struct ca_learnt_addr {
	__u64 expires_ns;          /* CLOCK_MONOTONIC; the answer's TTL (at least CA_DNS_TTL_MIN_NS) */
};

/* flow_owner key: a socket's flow without its local address, which NAT rewrites. */
struct ca_flow_key {
	__u8 daddr[16];
	__u16 dport;
	__u16 sport;
	__u8 ip_proto;
	__u8 pad[3];
};

/* Blocking mode's jobs (job_scope.h): job_scope holds CA_JOB_SLOTS of these,
 * filled by user space (recorder/attach/job_scope.py). All zero: no job. */
enum ca_scope_mode {
	CA_SCOPE_EMPTY = 0,        /* a free slot: nothing is this job's */
	CA_SCOPE_CGROUP = 1,       /* the job is a cgroup v2 subtree */
	CA_SCOPE_HOST = 2,         /* the job is the whole host (--block-host) */
};

struct ca_job_scope {
	__u64 cgroup_id;           /* the job's cgroup v2 id */
	__u32 level;               /* its depth below the cgroup v2 root (the root is 0) */
	__u32 mode;                /* enum ca_scope_mode */
};

/* Blocking mode: the job's DNS to a local stub resolver (systemd-resolved's
 * 127.0.0.53, say) goes to an upstream resolver instead (process.h). */
struct ca_dns_endpoint {
	__u8 addr[16];             /* IPv4-mapped for IPv4 */
	__u16 port;                /* host order */
	__u16 pad;
};

/* A job socket whose DNS was sent elsewhere: replies from upstream read as the stub's. */
struct ca_dns_redirect {
	struct ca_dns_endpoint stub;
	struct ca_dns_endpoint upstream;
};

/* A sweep request: the payload of a BPF_PROG_TEST_RUN call to ca_sweep.
 * Its keys are of one address family, so the verifier follows one
 * connection map instead of both. ca_sweep takes one key a run and moves
 * the cursor on (user space sends 0); CA_SWEEP_UNFINISHED says the chain of
 * runs stopped short, and user space sends the keys again, in halves. */
struct ca_sweep_request {
	__u32 count;               /* keys that follow */
	__u32 drain;               /* 1: end every listed connection (end of capture) */
	__u32 v4;                  /* 1: IPv4 keys (conns4); 0: IPv6 keys (conns6) */
	__u32 cursor;              /* the key this run takes */
	struct ca_conn_key keys[CA_SWEEP_KEYS_MAX];
};

#endif /* CICD_AUDIT_H */
