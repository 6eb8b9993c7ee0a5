/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* job_scope.h: blocking mode judges the jobs, and only the jobs.
 *
 * A job is a cgroup v2 subtree (struct ca_job_scope, filled by user space:
 * the cgroup made for `record -- CMD`, --cgroup, or one per blocked job of a
 * runner agent). job_scope holds CA_JOB_SLOTS of them, so the jobs of
 * several runners on one host are judged at once, each by its own policy
 * (every policy entry names its job). A runner agent, the host's daemons and
 * the jobs not blocked share the interfaces and often the network namespace
 * with them; their traffic is recorded but never judged.
 *
 * A job is named by its slot + 1; 0 is nobody's. Where the kernel tells
 * whose is what:
 *   - socket hooks run in the calling task: the job whose cgroup is an
 *     ancestor of the task's (ca_current_job); the answer travels with the
 *     owner (ca_process.job) into sock_owner and flow_owner;
 *   - at TC a new connection is its owner's job's, or, for a socket the
 *     hooks never saw, the job whose subtree holds the skb's socket
 *     (ca_conn_job); a packet with neither (forwarded from a namespace whose
 *     processes never connected, an inbound connection to a local server)
 *     is nobody's.
 * Job cgroups do not nest in practice; if they do, the deepest decides.
 * CA_SCOPE_HOST makes the whole host one job: what --block-host asks for,
 * and what a test run of the blocking program uses.
 *
 * Needs: struct ca_packet, struct ca_conn; ca_job_scope_get() is defined in
 * capture.bpf.c with the map.
 */
#ifndef CA_JOB_SCOPE_H
#define CA_JOB_SCOPE_H

static __always_inline struct ca_job_scope *ca_job_scope_get(__u32 slot);

/* The job (slot + 1) whose scope holds a cgroup, or 0. ancestor(level) is
 * the cgroup's ancestor at that depth: the task's or the skb's socket's. */
#define CA_FIND_JOB(ancestor)                                                   \
	({                                                                      \
		__u32 job_ = 0, level_ = 0;                                     \
		for (__u32 i_ = 0; i_ < CA_JOB_SLOTS; i_++) {                   \
			struct ca_job_scope *s_ = ca_job_scope_get(i_);         \
			if (!s_ || s_->mode == CA_SCOPE_EMPTY || (job_ && s_->level <= level_)) \
				continue;                                       \
			if (s_->mode == CA_SCOPE_HOST || ancestor(s_->level) == s_->cgroup_id) { \
				job_ = i_ + 1;                                  \
				level_ = s_->level;                             \
			}                                                       \
		}                                                               \
		job_;                                                           \
	})

/* Socket hooks: the calling task's job. */
static __always_inline __u32 ca_current_job(void)
{
	return CA_FIND_JOB(bpf_get_current_ancestor_cgroup_id);
}

/* TC, once per new connection (its owner already copied in): its job. */
static __always_inline __u32 ca_conn_job(struct __sk_buff *skb, const struct ca_conn *c)
{
	if (c && c->proc.job)
		return c->proc.job;
	/* A socket the hooks never saw (opened before the recorder started, or
	 * raw): its cgroup decides. The ancestor is 0 without a full socket,
	 * and no job's cgroup id is 0. */
#define CA_SKB_ANCESTOR(level) bpf_skb_ancestor_cgroup_id(skb, level)
	return CA_FIND_JOB(CA_SKB_ANCESTOR);
#undef CA_SKB_ANCESTOR
}

#endif /* CA_JOB_SCOPE_H */
