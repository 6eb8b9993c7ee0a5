/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* exec_paths.h: what each process runs, remembered past its exit (live capture only).
 *
 * User space learns a process's executable from /proc/<tgid>/exe when its
 * CA_EVENT_PROCESS arrives (process.h); a curl that posts a secret and exits
 * within a millisecond is often gone by then. These two raw tracepoints keep
 * tgid -> executable in an LRU map that outlives the process:
 *   - sched_process_exec: the binary the new image runs (linux_binprm.interp:
 *     the file for a binary, the interpreter for a script, as /proc shows it);
 *   - sched_process_fork: a new process runs its parent's binary until it
 *     execs, so it gets the parent's entry (and never a stale one of an older
 *     process that had its id); a new thread changes nothing.
 * They run once per exec and per fork on the host, never per packet. The
 * kernel fields they read are found by offset in the running kernel's BTF
 * (exec_layout, filled by user space); with no layout they do nothing.
 *
 * Needs: the maps' accessors, declared below and defined in capture.bpf.c.
 */
#ifndef CA_EXEC_PATHS_H
#define CA_EXEC_PATHS_H

#define CA_EXEC_PATHS_ENTRIES 8192

static __always_inline struct ca_exec_layout *ca_exec_layout_get(void);
static __always_inline struct ca_exec_path *ca_exec_path_lookup(__u32 *tgid);
static __always_inline void ca_exec_path_update(__u32 *tgid, struct ca_exec_path *entry);
static __always_inline void ca_exec_path_delete(__u32 *tgid);

/* bprm: the struct linux_binprm * of sched_process_exec. Runs in the task after exec. */
static __always_inline int ca_exec_hook(__u64 bprm)
{
	struct ca_exec_layout *layout = ca_exec_layout_get();
	struct ca_exec_path entry = {};
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 interp = 0;
	long n;

	if (!layout || !layout->binprm_interp)
		return 0;
	if (bpf_probe_read_kernel(&interp, sizeof(interp), (void *)(bprm + layout->binprm_interp)) || !interp)
		return 0;
	n = bpf_probe_read_kernel_str(entry.path, sizeof(entry.path), (void *)interp);
	if (n <= 1)
		return 0;
	entry.len = n - 1;
	if (n == sizeof(entry.path))
		entry.flags = CA_EXEC_PATH_CUT;     /* or exactly 255 bytes long: said as cut either way */
	ca_exec_path_update(&tgid, &entry);
	return 0;
}

/* child: the struct task_struct * of sched_process_fork. Runs in the parent. */
static __always_inline int ca_fork_hook(__u64 child)
{
	struct ca_exec_layout *layout = ca_exec_layout_get();
	struct ca_exec_path *parent_entry;
	__u32 parent = bpf_get_current_pid_tgid() >> 32;
	__u32 pid = 0, tgid = 0;

	if (!layout || !layout->task_pid || !layout->task_tgid)
		return 0;
	if (bpf_probe_read_kernel(&pid, sizeof(pid), (void *)(child + layout->task_pid)) ||
	    bpf_probe_read_kernel(&tgid, sizeof(tgid), (void *)(child + layout->task_tgid)))
		return 0;
	if (pid != tgid || tgid == parent)
		return 0;                           /* a thread of an existing process */
	parent_entry = ca_exec_path_lookup(&parent);
	if (parent_entry)
		ca_exec_path_update(&tgid, parent_entry);
	else
		ca_exec_path_delete(&tgid);
	return 0;
}

#endif /* CA_EXEC_PATHS_H */
