/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The baseline for bench/record_bench.py: a TC classifier that does nothing.
 * Its run time per packet is the cost of merely having a BPF program attached
 * (call overhead, plus the bpf_stats timing itself); ours is compared to it. */
#include <uapi/linux/pkt_cls.h>

int noop(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
