// How fast events.js takes a stream, beside the eventsource npm client
// (t/bench/client.pl runs it):  node client-bench.mjs STREAM_URL N
// Each client replays the same N events from "earliest" and parses every
// envelope; prints {client, events, ms, cpuMs} per client, best of 3.

import { createRequire } from 'node:module';
import { EventsClient } from '../../clients/js/events.js';

const require = createRequire(import.meta.url);
const EventSource = require('eventsource');
const [url, n] = [process.argv[2], Number(process.argv[3])];

function measure(run) {
    return new Promise((done) => {
        const t0 = performance.now();
        const c0 = process.cpuUsage();
        let got = 0;
        const stop = run(() => {
            if (++got === n) {
                const c = process.cpuUsage(c0);
                stop();
                done({ events: got, ms: Math.round(performance.now() - t0),
                       cpuMs: Math.round((c.user + c.system) / 1000) });
            }
        });
    });
}

const clients = {
    'events.js': (each) => {
        const c = new EventsClient({ stream: url, lastEventId: 'earliest' });
        c.onAny((ev) => { if (ev.seq) { each(); } });
        return () => c.close();
    },
    'eventsource': (each) => {
        const es = new EventSource(url + '?lastEventId=earliest');
        es.onmessage = (m) => { if (JSON.parse(m.data).seq) { each(); } };
        return () => es.close();
    }
};

for (const [name, run] of Object.entries(clients)) {
    let best = null;
    for (let i = 0; i < 3; i++) {
        const r = await measure(run);
        if (!best || r.ms < best.ms) {
            best = r;
        }
    }
    console.log(JSON.stringify(Object.assign({ client: name }, best)));
}
process.exit(0);
