// After the job's last step: stop, analyze, report, and fail on findings at or above fail-on.
'use strict';
const fs = require('fs');
const { input, setOutput, warning, error, run } = require('./lib');

const SEVERITIES = ['info', 'low', 'medium', 'high'];

function main() {
  const out = process.env.STATE_out;
  if (!out) return;                       // the pre step did not start a recorder (it said why)
  const stopped = run(['cicd-audit', 'stop', out]);
  if (stopped.status !== 0) warning(`the recording is incomplete (cicd-audit stop exited ${stopped.status}); see ${out}/recorder.status`);
  setOutput('session', out);
  const failOn = input('fail-on');
  if (failOn && !SEVERITIES.includes(failOn)) {
    error(`fail-on: ${failOn} is not one of ${SEVERITIES.join(', ')}`);
    process.exitCode = 1;
    return;
  }
  const analyze = ['cicd-audit', 'analyze', out, '--format', 'markdown'];
  if (input('policy')) analyze.push('--policy', input('policy'));
  if (failOn) analyze.push('--fail-on', failOn);
  const report = run(analyze, { capture: true });
  if (process.env.GITHUB_STEP_SUMMARY) fs.appendFileSync(process.env.GITHUB_STEP_SUMMARY, report.stdout);
  if (report.status === 1) {
    error(`cicd-audit: findings at or above ${failOn}: see the job summary`);
    process.exitCode = 1;
  } else if (report.status !== 0) {
    warning(`cicd-audit analyze failed (exit ${report.status})`);
  }
}

main();
