"""Attach the exec hooks (bpf/exec_paths.h): a process's executable stays known after it exits.

/proc/<tgid>/exe is read when a socket hook first sees a process, but a
short-lived one (a curl that posts a secret and exits) may be gone by then,
above all on a busy runner. The hooks keep tgid -> executable in a kernel
map from exec and fork on; ProcessTable asks it when /proc no longer can.

Where they cannot run (no kernel BTF to find the fields they read, a kernel
that refuses raw tracepoints) the recording goes on: the caller says so in
one line and short-lived processes may lack proc.exe, as before.

API::

    ExecHooks(program)      # a context manager; raises EnvironmentProblem when unavailable
    attach_exec_hooks(stack, program, processes, who)   # or say in one line why not
"""

from __future__ import annotations

import contextlib

from cicd_audit import notices
from cicd_audit.errors import EnvironmentProblem
from cicd_audit.recorder.attach.held_links import HeldLinks
from cicd_audit.recorder.kernel import abi, bpf_syscall, kernel_btf

# The kernel fields bpf/exec_paths.h reads, as struct ca_exec_layout names them.
KERNEL_FIELDS = {"binprm_interp": ("linux_binprm", "interp"),
                 "task_pid": ("task_struct", "pid"),
                 "task_tgid": ("task_struct", "tgid")}


def exec_layout() -> abi.ExecLayout:
    """The running kernel's offsets of those fields; EnvironmentProblem when unknown."""
    try:
        return abi.ExecLayout(**kernel_btf.cached_field_offsets(KERNEL_FIELDS))
    except kernel_btf.BtfUnavailable as exc:
        raise EnvironmentProblem(str(exc)) from None


class ExecHooks:
    """Fill the program's exec_layout and attach its exec hooks until exit."""

    def __init__(self, program):
        self.program = program
        self._links = HeldLinks()

    def __enter__(self) -> ExecHooks:
        if not self.program.exec_programs:
            raise EnvironmentProblem("the program was built without exec hooks")
        self.program.maps["exec_layout"].update(0, bytes(exec_layout()))
        try:
            for tracepoint, prog_fd in self.program.exec_programs.items():
                self._links.hold(bpf_syscall.raw_tracepoint_open(tracepoint, prog_fd), None, tracepoint)
        except bpf_syscall.BpfError as exc:
            self._links.release(failed=True)
            raise EnvironmentProblem(f"the kernel refused the exec hooks ({exc})") from None
        return self

    def __exit__(self, *exc) -> None:
        self._links.release(failed=False)


def attach_exec_hooks(stack: contextlib.ExitStack, program, processes, who: str) -> None:
    """Attach the hooks for as long as ``stack`` lasts and point ``processes`` (a
    ProcessTable) at their map; where they cannot run, say so in one line (``who``: the
    command's name) and go on."""
    try:
        stack.enter_context(ExecHooks(program))
    except EnvironmentProblem as exc:
        notices.say(f"{who}: a process that exits before /proc/<pid> is read will have no proc.exe: {exc}")
        return
    processes.exec_paths = program.exec_path
