#!/bin/sh
# GitHub Actions self-hosted runner: ACTIONS_RUNNER_HOOK_JOB_STARTED.
# Opens this job's session in the cicd-audit agent; the job's identity
# (GITHUB_REPOSITORY, GITHUB_WORKFLOW, GITHUB_RUN_ID, GITHUB_JOB, RUNNER_NAME)
# is read from the environment the runner gives this hook.
# Installed by `cicd-audit job install-hooks github RUNNER_DIR`.
set -eu
# The client install-hooks wrote beside this script (no site-packages: a fifth of the
# start-up time), else the command on PATH.
client="$(dirname "$0")/cicd-audit-job"
job() {
    if [ -x "$client" ]; then "$client" "$@"; else cicd-audit job "$@"; fi
}
# --join "$PPID": the runner's worker, which starts every step of this job, becomes
# the job (what an agent with --policy-dir blocks).
session=$(job start --join "$PPID" --socket "${CICD_AUDIT_SOCKET:-/run/cicd-audit/agent.sock}") || {
    echo "cicd-audit: this job is not being recorded (is the agent running?)" >&2
    exit 0          # a recorder problem must not fail the job; the agent's own log says why
}
echo "cicd-audit: recording this job's network activity into $session"
