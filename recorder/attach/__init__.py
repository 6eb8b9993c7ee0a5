"""Attaching the program and detaching it: TC (tcx or legacy), cgroup hooks, held
links, interface choice, cleanup of what a recorder left, whom blocking judges.

Imports only `kernel`.
"""
