// The action's own step: recording runs in the background from the pre step until the post step.
'use strict';
process.stdout.write('cicd-audit: recording this job; the report follows in the post step\n');
