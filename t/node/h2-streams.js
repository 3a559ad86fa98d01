// Many streams over one HTTP/2 connection, as a browser holds them: opens
// N requests to URL on a single session (certificate not checked: the
// test makes its own), writes one JSON line per stream with its status,
// content type and the SSE body it read, and exits once every stream has
// WANT "data:" lines or ended (or after TIMEOUT ms, with code 2).

'use strict';

const http2 = require('http2');

const [url, n, want, timeout] = process.argv.slice(2);
const u = new URL(url);
const session = http2.connect(u.origin, { rejectUnauthorized: false });
const results = [];
let left = Number(n);

function done() {
    if (--left > 0) {
        return;
    }
    for (const r of results) {
        process.stdout.write(JSON.stringify(r) + '\n');
    }
    session.close();
    process.exit(0);
}

session.on('error', (e) => { console.error(String(e)); process.exit(3); });

for (let i = 0; i < Number(n); i++) {
    const r = { stream: i, body: '' };
    results.push(r);

    const req = session.request({ ':path': u.pathname + u.search,
                                  accept: 'text/event-stream' });
    let finished = false;
    const finish = () => { if (!finished) { finished = true; done(); } };

    req.setEncoding('utf8');
    req.on('response', (h) => {
        r.status = h[':status'];
        r.type = h['content-type'];
    });
    req.on('data', (chunk) => {
        r.body += chunk;
        if ((r.body.match(/^data: /mg) || []).length >= Number(want)) {
            req.close();
            finish();
        }
    });
    req.on('end', finish);
    req.on('error', finish);
}

setTimeout(() => process.exit(2), Number(timeout));
