// Before the job's first step: start recording in the background.
'use strict';
const path = require('path');
const { input, saveState, warning, run, onPath } = require('./lib');

function main() {
  const out = path.join(process.env.RUNNER_TEMP || '/tmp', `cicd-audit-${process.env.GITHUB_JOB || 'job'}`);
  if (!onPath('cicd-audit') && input('install') !== 'false') {
    const here = process.env.GITHUB_ACTION_PATH || path.join(__dirname, '..');
    if (run(['bash', path.join(here, 'scripts', 'install.sh')]).status !== 0) {
      warning('cicd-audit could not be installed: this job is not recorded');
      return;
    }
  }
  const argv = ['cicd-audit', 'record', '--out', out, '--background', '--format', input('format') || 'tsv'];
  for (const iface of input('interfaces').split(',').map((s) => s.trim()).filter(Boolean)) argv.push('--iface', iface);
  if (input('cgroup')) argv.push('--cgroup', input('cgroup'));
  if (input('block') === 'true') {
    if (!input('policy')) {
      warning('block: true needs a policy: recording without blocking');
    } else {
      argv.push('--block-host', '--policy', input('policy'));
    }
  }
  const started = run(argv);
  if (started.status !== 0) {
    warning(`cicd-audit did not start (exit ${started.status}): this job is not recorded`);
    return;
  }
  saveState('out', out);
}

main();
