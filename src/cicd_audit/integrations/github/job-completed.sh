#!/bin/sh
# GitHub Actions self-hosted runner: ACTIONS_RUNNER_HOOK_JOB_COMPLETED.
# Ends this job's session; the agent analyzes it and the summary is added to
# the job's step summary when the runner provides one.
# Installed by `cicd-audit job install-hooks github RUNNER_DIR`.
set -eu
# The client install-hooks wrote beside this script (no site-packages: a fifth of the
# start-up time), else the command on PATH.
client="$(dirname "$0")/cicd-audit-job"
job() {
    if [ -x "$client" ]; then "$client" "$@"; else cicd-audit job "$@"; fi
}
session=$(job end --socket "${CICD_AUDIT_SOCKET:-/run/cicd-audit/agent.sock}") || exit 0
echo "cicd-audit: this job's session: $session"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ] && [ -r "$session/summary.md" ]; then
    cat "$session/summary.md" >> "$GITHUB_STEP_SUMMARY"
fi
