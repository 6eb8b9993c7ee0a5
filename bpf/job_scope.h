/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* job_scope.h: blocking mode judges the job, and only the job.
 *
 * The job is a cgroup v2 subtree (struct ca_job_scope, filled by user space:
 * the cgroup made for `record -- CMD`, or --cgroup). A runner agent, the
 * host's daemons and other jobs share the interfaces and often the network
 * namespace with it; their traffic is recorded but never judged.
 *
 * Where the kernel tells who is who:
 *   - socket hooks run in the calling task: its cgroup's ancestor at the
 *     job's level is the job, or not (ca_current_in_job); the answer travels
 *     with the owner (CA_PROC_IN_JOB) into sock_owner and flow_owner;
 *   - at TC a new connection is the job's when its owner is, or when the
 *     skb's socket sits in the job's subtree (ca_conn_in_job); a packet
 *     with neither (forwarded from a namespace whose processes never
 *     connected, an inbound connection to a local server) is not.
 * An all-zero scope (job_only 0) makes the whole host the job: what
 * --block-host asks for, and what a pcap replay of the blocking program
 * tests.
 *
 * Needs: struct ca_packet, struct ca_conn; ca_job_scope_get() is defined in
 * capture.bpf.c with the map.
 */
#ifndef CA_JOB_SCOPE_H
#define CA_JOB_SCOPE_H

static __always_inline struct ca_job_scope *ca_job_scope_get(void);

/* Socket hooks: is the calling task in the job? */
static __always_inline int ca_current_in_job(void)
{
	struct ca_job_scope *scope = ca_job_scope_get();

	if (!scope || !scope->job_only)
		return 1;
	return bpf_get_current_ancestor_cgroup_id(scope->level) == scope->cgroup_id;
}

/* TC, once per new connection (its owner already copied in): is it the job's? */
static __always_inline int ca_conn_in_job(struct __sk_buff *skb, const struct ca_conn *c)
{
	struct ca_job_scope *scope = ca_job_scope_get();

	if (!scope || !scope->job_only)
		return 1;
	if (c && (c->proc.flags & CA_PROC_IN_JOB))
		return 1;
	/* A socket the hooks never saw (opened before the recorder started, or
	 * raw): its cgroup decides. 0 without a full socket. */
	return bpf_skb_ancestor_cgroup_id(skb, scope->level) == scope->cgroup_id;
}

#endif /* CA_JOB_SCOPE_H */
