// Verifies webhook messages with the reference Standard Webhooks library
// (npm "standardwebhooks"), for the Perl tests (EventsTest::Webhook's
// node_verify).  Reads JSON lines from stdin:
//
//   {"secret": "whsec_...", "headers": {"webhook-id": ..., ...},
//    "body": "..." | "body_b64": "...", "now": 1614265330}
//
// and prints one JSON line per input line, in order:
//
//   {"ok": true}   or   {"ok": false, "error": "No matching signature found"}
//
// body_b64 gives the exact body bytes (passed as a Buffer); "now" (unix
// seconds, optional) fixes the clock the library checks the timestamp
// against (for published test vectors).

'use strict';

const readline = require('readline');
const { Webhook } = require('standardwebhooks');

const realNow = Date.now;

function verify(line) {
    const m = JSON.parse(line);
    const body = m.body_b64 !== undefined
        ? Buffer.from(m.body_b64, 'base64') : m.body;
    if (m.now !== undefined) Date.now = () => Number(m.now) * 1000;
    try {
        new Webhook(m.secret).verify(body, m.headers || {});
        return { ok: true };
    } finally {
        Date.now = realNow;
    }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });

rl.on('line', (line) => {
    if (line.trim() === '') return;
    let out;
    try {
        out = verify(line);
    } catch (e) {
        out = { ok: false, error: String(e && e.message || e) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
});
