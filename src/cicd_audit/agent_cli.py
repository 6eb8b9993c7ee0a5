"""`cicd-audit agent` and `cicd-audit job start|end|status` (recorder/agent/agent.py, recorder/agent/control.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cicd_audit import job_client
from cicd_audit.control_protocol import DEFAULT_SOCKET
from cicd_audit.errors import CicdAuditError
from cicd_audit.quantities import Quantity
from cicd_audit.recorder.drivers.cpu_priority import DEFAULT_NICE_INCREMENT
from cicd_audit.redef_option import REDEF_OPTION, parse_redef_option

SOCKET_OPTION = click.option("--socket", "socket_path", type=click.Path(dir_okay=False, path_type=Path),
                             default=Path(DEFAULT_SOCKET), show_default=True, help="The agent's control socket.")


def _fail(exc: CicdAuditError) -> None:
    click.echo(f"cicd-audit: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the sessions: one subdirectory per job. Keep it where jobs cannot write.")
@click.option("--iface", "interfaces", multiple=True, help="Interface to record (repeatable). Default: every one up.")
@click.option("--cgroup", type=click.Path(file_okay=False, path_type=Path),
              help="cgroup v2 directory whose processes' sockets are named. Default: the whole host.")
@click.option("--format", "fmt", type=click.Choice(["tsv", "json"]), default="tsv", show_default=True)
@SOCKET_OPTION
@click.option("--socket-group", help="Group allowed to use the socket besides root (the runner's hooks' group).")
@click.option("--process-args", is_flag=True, help="Fill conn.log's proc.cmdline column (command lines can carry secrets).")
@click.option("--no-analysis", is_flag=True, help="Do not run `cicd-audit analyze` into each session at its end.")
@click.option("--policy-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Block each job by its policy: DIR/repos/OWNER/REPO.yml, else DIR/default.yml (read at every job "
                   "start). The job is the process `job start --join` names and what it starts.")
@click.option("--resolver", "resolvers", multiple=True, metavar="ADDR",
              help="With --policy-dir: a DNS resolver queries may go to (repeatable). Default: the system's.")
@click.option("--runner-endpoints", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --policy-dir: the runner's own endpoints, allowed in every job (its worker is in the job). "
                   "Default: the shipped GitHub/GitLab list.")
@click.option("--repository-policies", type=click.Choice(["ignore", "narrow", "extend"]), default="ignore",
              show_default=True,
              help="With --policy-dir: what a policy a job sends (`job start --repo-policy FILE`) does to the admin's: "
                   "narrow (only what both allow), extend (what either allows; a pull request can change the file).")
@click.option("--retain", type=click.IntRange(min=1), metavar="N",
              help="Keep the newest N finished sessions; older ones are removed at each job end. Default: all.")
@click.option("--rotate-interval", type=Quantity("duration"), metavar="DURATION",
              help="Within a job's session, rotate each log after this long (e.g. 30m, 1h), as Zeek does: "
                   "conn.<open time>.log beside conn.log.")
@click.option("--rotate-size", type=Quantity("size"), metavar="SIZE",
              help="Within a job's session, rotate each log once it holds this much (e.g. 100M, 1G).")
@click.option("--nice", type=click.IntRange(0, 19), default=DEFAULT_NICE_INCREMENT, show_default=True, metavar="N",
              help="Once recording, the agent's nice value goes N above its own, so busy jobs keep their CPUs and "
                   "the agent catches up from memory (0: same priority).")
@REDEF_OPTION
def agent(out_dir, interfaces, cgroup, fmt, socket_path, socket_group, process_args, no_analysis, policy_dir,
          resolvers, runner_endpoints, repository_policies, retain, rotate_interval, rotate_size, nice, redefs):
    """Record continuously, one session per CI job; jobs begin and end with `cicd-audit job`.

    \b
      cicd-audit agent --out /var/lib/cicd-audit/sessions --socket-group runner
      cicd-audit job start --label repository=org/app    # in the runner's job-started hook
      cicd-audit job end                                  # in its job-completed hook
    """
    from cicd_audit.recorder.agent.agent import Agent
    from cicd_audit.recorder.logs.session import Rotation
    try:
        blocking = _agent_blocking(policy_dir, resolvers, runner_endpoints, repository_policies)
        rotation = Rotation(rotate_interval, rotate_size) if rotate_interval or rotate_size else None
        zeek = parse_redef_option(redefs)
        runner = Agent(out_dir, interfaces, cgroup, fmt, socket_path, socket_group, process_args,
                       analyze=not no_analysis, blocking=blocking, retain=retain, rotation=rotation, nice=nice,
                       dns_options=zeek.dns, tunnel_max_depth=zeek.tunnel_max_depth)
        sys.exit(runner.run())
    except CicdAuditError as exc:
        _fail(exc)


def _agent_blocking(policy_dir, resolvers, runner_endpoints, repository_policies="ignore"):
    if policy_dir is None:
        if resolvers or runner_endpoints or repository_policies != "ignore":
            raise _usage("--resolver, --runner-endpoints and --repository-policies go with --policy-dir")
        return None
    import ipaddress

    from cicd_audit.recorder.agent.agent import AgentBlocking
    from cicd_audit.recorder.agent.agent_policy import PolicyDirectory
    from cicd_audit.recorder.attach.dns_stubs import stub_redirects
    from cicd_audit.recorder.kernel.block_tables import detect_resolvers, system_nameservers
    try:
        addresses = [ipaddress.ip_address(r) for r in resolvers] if resolvers else detect_resolvers()
    except ValueError as exc:
        raise _usage(f"--resolver: {exc}") from None
    return AgentBlocking(PolicyDirectory(policy_dir, repository_policies), addresses, runner_endpoints,
                         stub_redirects(system_nameservers(), addresses))


def _usage(message: str) -> CicdAuditError:
    from cicd_audit.errors import UsageError
    return UsageError(message)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def job():
    """Mark a CI job's start and end for the running agent (from the CI platform's job hooks)."""


@job.command("start")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Part of the job's identity (repeatable); GitHub's and GitLab's own variables are read too.")
@click.option("--join", type=int, metavar="PID",
              help="With an agent that blocks: the process that starts the job's steps (an ancestor of this "
                   "command, e.g. the hook's $PPID); it and its children become the job.")
@click.option("--repo-policy", type=click.Path(dir_okay=False), metavar="FILE",
              help="The repository's own policy file (e.g. .github/egress.yml in the checkout), combined with the "
                   "admin's as the agent's --repository-policies says.")
@SOCKET_OPTION
def job_start(labels, join, repo_policy, socket_path):
    """Begin a job's session; prints its directory."""
    extra = [f"--join={join}"] if join is not None else []
    extra += [f"--repo-policy={repo_policy}"] if repo_policy is not None else []
    sys.exit(job_client.main(["start", "--socket", str(socket_path), *extra, *(f"--label={x}" for x in labels)]))


RUNNER_LABEL = click.option(
    "--label", "labels", multiple=True, metavar="runner=NAME",
    help="Which runner's job, where several runners share the agent (RUNNER_NAME and GitLab's "
         "CI_RUNNER_DESCRIPTION are read too).")


@job.command("end")
@RUNNER_LABEL
@SOCKET_OPTION
def job_end(labels, socket_path):
    """End this runner's job: its logs are closed and analyzed; prints the session's directory."""
    sys.exit(job_client.main(["end", "--socket", str(socket_path), *(f"--label={x}" for x in labels)]))


@job.command("status")
@RUNNER_LABEL
@SOCKET_OPTION
def job_status(labels, socket_path):
    """The agent's open jobs (this runner's as "job") and counters, as JSON."""
    sys.exit(job_client.main(["status", "--socket", str(socket_path), *(f"--label={x}" for x in labels)]))


HOOK_VARIABLES = {"ACTIONS_RUNNER_HOOK_JOB_STARTED": "job-started.sh",
                  "ACTIONS_RUNNER_HOOK_JOB_COMPLETED": "job-completed.sh"}
HOOK_CLIENT = "cicd-audit-job"      # beside the scripts: `cicd-audit job` without site-packages (job_client.py)


@job.command("install-hooks")
@click.argument("platform", type=click.Choice(["github"]))
@click.argument("runner_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@SOCKET_OPTION
def install_hooks(platform, runner_dir, socket_path):
    """Install the job hooks into a self-hosted runner's directory: the scripts under
    RUNNER_DIR/cicd-audit-hooks/ and their variables in RUNNER_DIR/.env (other lines kept).
    Restart the runner afterwards. (GitLab: see the snippet in docs/agent.md.)"""
    from importlib import resources
    hooks = runner_dir / "cicd-audit-hooks"
    hooks.mkdir(exist_ok=True)
    client = hooks / HOOK_CLIENT
    client.write_text(job_client.hook_client_script())
    client.chmod(0o755)
    settings = {}
    for variable, script in HOOK_VARIABLES.items():
        text = resources.files("cicd_audit.integrations").joinpath(platform, script).read_text()
        target = hooks / script
        target.write_text(text)
        target.chmod(0o755)
        settings[variable] = str(target.resolve())
    if socket_path != Path(DEFAULT_SOCKET):
        settings["CICD_AUDIT_SOCKET"] = str(socket_path)
    env_file = runner_dir / ".env"
    kept = [line for line in (env_file.read_text().splitlines() if env_file.exists() else [])
            if line.partition("=")[0].strip() not in settings]
    env_file.write_text("\n".join([*kept, *(f"{k}={v}" for k, v in settings.items())]) + "\n")
    click.echo(f"cicd-audit: hooks installed in {hooks} and {env_file}; restart the runner, and make sure its user "
               f"may use {socket_path} (the agent's --socket-group)", err=True)
