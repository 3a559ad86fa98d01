// Runs a scenario of client-scenario.mjs with events.js in Node:
//   node client-node.mjs NAME 'JSON ARGS'
// prints one JSON line per report.

import { EventsClient } from '../../clients/js/events.js';
import { run } from './client-scenario.mjs';

const [name, args] = process.argv.slice(2);

await run(EventsClient, name, JSON.parse(args),
          (o) => process.stdout.write(JSON.stringify(o) + '\n'));
process.exit(0);
