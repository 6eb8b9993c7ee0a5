"""Loading the BPF program and talking to the kernel: the ABI mirror, bpf() syscalls,
the ring buffer, the compiled-program cache, BPF_PROG_TEST_RUN, the policy maps.

The lowest layer: it imports nothing from the recorder's other sub-packages.
"""
