// The few pieces of the Actions toolkit the entry points need, with Node's standard library only.
'use strict';
const fs = require('fs');
const { spawnSync } = require('child_process');

// An input as the runner passes it: INPUT_<NAME> (upper case, spaces as _; dashes kept).
function input(name) {
  return (process.env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '').trim();
}

function appendTo(fileVariable, text) {
  const file = process.env[fileVariable];
  if (file) fs.appendFileSync(file, text);
}

function saveState(name, value) { appendTo('GITHUB_STATE', `${name}=${value}\n`); }
function setOutput(name, value) { appendTo('GITHUB_OUTPUT', `${name}=${value}\n`); }

// Workflow commands take their message on one line: escape what would end or forge one.
function escapeCommand(text) {
  return String(text).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}
function warning(text) { process.stdout.write(`::warning::${escapeCommand(text)}\n`); }
function error(text) { process.stdout.write(`::error::${escapeCommand(text)}\n`); }

// Run argv (as root through sudo unless already root); its status and output.
function run(argv, { capture = false } = {}) {
  const full = process.getuid && process.getuid() !== 0 ? ['sudo', '-E', ...argv] : argv;
  const done = spawnSync(full[0], full.slice(1), { stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
                                                   encoding: 'utf8' });
  if (done.error) return { status: 127, stdout: '', error: done.error.message };
  return { status: done.status === null ? 128 : done.status, stdout: done.stdout || '' };
}

function onPath(command) {
  return (process.env.PATH || '').split(':').some((dir) => dir && fs.existsSync(`${dir}/${command}`));
}

module.exports = { input, saveState, setOutput, warning, error, run, onPath };
