// Reads webhook deliveries as a CloudEvents receiver does, with the
// CloudEvents SDK (npm "cloudevents", HTTP.toEvent: binary or structured
// content mode, validated against the 1.0 spec), for the Perl tests.
// Reads JSON lines from stdin:
//
//   {"headers": {"ce-id": ..., "content-type": ...}, "body_b64": "..."}
//
// and prints one JSON line per input line, in order:
//
//   {"ok": true, "event": {specversion, id, source, type, ..., data}}
//   {"ok": false, "error": "..."}

'use strict';

const readline = require('readline');
const { HTTP } = require('cloudevents');

function receive(line) {
    const m = JSON.parse(line);
    const body = Buffer.from(m.body_b64 || '', 'base64').toString('utf8');
    const ev = HTTP.toEvent({ headers: m.headers || {}, body });
    const one = Array.isArray(ev) ? ev[0] : ev;
    one.validate();
    return { ok: true, event: one.toJSON() };
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });

rl.on('line', (line) => {
    if (line.trim() === '') return;
    let out;
    try {
        out = receive(line);
    } catch (e) {
        out = { ok: false, error: String(e && (e.message || e)) +
                (e && e.errors ? ' ' + JSON.stringify(e.errors) : '') };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
});
