// A real EventSource client for the tests: connects, writes one JSON line
// per open, message and named control event to OUT, and exits once it has
// WANT messages (or after TIMEOUT ms, with code 2).  Reconnecting with
// Last-Event-ID after the server ends the stream is the library's job.

'use strict';

const fs = require('fs');
const EventSource = require('eventsource');

const [url, out, want, timeout] = process.argv.slice(2);
const log = (o) => fs.appendFileSync(out, JSON.stringify(o) + '\n');

const es = new EventSource(url);
let messages = 0;

es.onopen = () => log({ open: true });
es.onerror = (e) => log({ error: e && e.status ? e.status : 'closed' });

es.onmessage = (e) => {
    log({ id: e.lastEventId, seq: JSON.parse(e.data).seq });

    if (++messages >= Number(want)) {
        es.close();
        process.exit(0);
    }
};

for (const name of ['reset', 'ready']) {
    es.addEventListener(name, (e) => log({ event: name, data: e.data }));
}

setTimeout(() => { es.close(); process.exit(2); }, Number(timeout));
