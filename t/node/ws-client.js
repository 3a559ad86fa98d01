// A real WebSocket client (the ws npm package) for the tests.
//
//   node ws-client.js follow URL OUT WANT TIMEOUT [reconnect]
//     writes one JSON line per open (with the extensions agreed), event
//     ({cursor, seq, type, sha1 of the message as received, inflated}),
//     control message, ping and close to OUT;
//     exits 0 once it has WANT events, 2 at TIMEOUT ms.  With "reconnect"
//     it comes back after a close, as a browser page would, with
//     ?lastEventId= its last cursor.  It offers permessage-deflate, as ws
//     does by default, unless WS_DEFLATE=0.
//
//   node ws-client.js count URL N WANT TIMEOUT
//     for t/bench/ws-deflate.pl: N connections (deflate unless
//     WS_DEFLATE=0); prints {"open":N} once all are open, then, once
//     each has WANT events, one line: events, bytes read off the sockets
//     (their 101s too), the extensions agreed; exits 2 at TIMEOUT ms.
//
//   node ws-client.js proto URL API
//     runs the protocol checks (pings both ways, a fragmented message, a
//     binary one, the close handshake, oversize and invalid UTF-8
//     messages; those without deflate, then compressed messages of a
//     client with it) and prints their results as one JSON object; API
//     is the events_api URL it posts to.

'use strict';

const fs = require('fs');
const WebSocket = require('ws');

const [mode, url, ...rest] = process.argv.slice(2);
const deflate = process.env.WS_DEFLATE !== '0';

function follow(out, want, timeout, reconnect) {
    const log = (o) => fs.appendFileSync(out, JSON.stringify(o) + '\n');
    let events = 0;
    let cursor = null;

    function connect() {
        const u = new URL(url);
        if (cursor) {
            u.searchParams.set('lastEventId', cursor);
        }
        const ws = new WebSocket(u.href, { perMessageDeflate: deflate });

        let ext = null;

        ws.on('upgrade', (res) =>
            (ext = res.headers['sec-websocket-extensions'] || null));
        ws.on('open', () => log({ open: true, extensions: ext }));
        ws.on('ping', () => log({ ping: true }));
        ws.on('error', (e) => log({ error: String(e.message || e) }));
        ws.on('message', (data, binary) => {
            const m = JSON.parse(String(data));
            if (binary) {
                log({ binary: true });
            }
            if (m.control) {
                log(m);
                return;
            }
            cursor = m.cursor;
            log({ cursor: m.cursor, seq: m.seq, type: m.type,
                  tenantId: m.tenantId, sha1: require('crypto')
                      .createHash('sha1').update(data).digest('hex') });
            if (++events >= want) {
                ws.close(1000);
                setTimeout(() => process.exit(0), 100);
            }
        });
        ws.on('close', (code, reason) => {
            log({ close: code, reason: String(reason) });
            if (reconnect && events < want) {
                setTimeout(connect, 200);
            }
        });
    }

    connect();
    setTimeout(() => process.exit(2), timeout);
}

function open(u, deflate) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(u || url,
            { perMessageDeflate: deflate ? { threshold: 0 } : false });
        ws.on('upgrade', (res) =>
            (ws.answered = res.headers['sec-websocket-extensions'] || null));
        ws.closed = new Promise((r) => ws.on('close',
            (code, reason) => r({ code, reason: String(reason) })));
        ws.messages = [];
        ws.on('message', (d) => ws.messages.push(JSON.parse(String(d))));
        ws.on('open', () => resolve(ws));
        ws.on('error', reject);
    });
}

const wait = (ms) => new Promise((r) => setTimeout(r, ms));

function within(p, ms, what) {
    return Promise.race([p, wait(ms).then(() => ({ timeout: what }))]);
}

async function post(api, type) {
    const r = await fetch(api, { method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type }) });
    return (await r.json()).seq;
}

async function arrives(ws, seq, ms) {
    for (let t = 0; t < ms; t += 20) {
        if (ws.messages.some((m) => m.seq === seq)) {
            return true;
        }
        await wait(20);
    }
    return false;
}

async function proto(api) {
    const res = {};
    let ws = await open();

    const pong = within(new Promise((r) =>
        ws.once('pong', (d) => r(String(d)))), 2000, 'pong');
    ws.ping('hello');
    res.pong = await pong;

    res.serverPing = await within(new Promise((r) =>
        ws.once('ping', () => r(true))), 3000, 'ping');

    ws.send('{"a":', { fin: false });
    ws.send('1}', { fin: true });
    res.fragmented = await arrives(ws, await post(api, 'proto.frag'), 2000);

    ws.send(Buffer.from([1, 2, 3]), { binary: true });
    res.binary = await arrives(ws, await post(api, 'proto.bin'), 2000);

    ws.close(1000, 'bye');
    res.close = await within(ws.closed, 3000, 'close');

    ws = await open();
    ws.send('x'.repeat(5000));
    res.oversize = await within(ws.closed, 3000, 'oversize');

    ws = await open();
    ws.send('y'.repeat(3000), { fin: false });
    ws.send('y'.repeat(3000), { fin: true });
    res.oversizeFragmented = await within(ws.closed, 3000, 'fragments');

    ws = await open();
    ws.send(Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), { binary: false });
    res.badUtf8 = await within(ws.closed, 3000, 'utf8');

    // with permessage-deflate: what was agreed, and compressed messages
    // taken (not inflated, dropped); their limit counts compressed bytes
    ws = await open(undefined, true);
    res.deflate = ws.answered;
    ws.send('{"a":' + 'x'.repeat(5000) + '}', { compress: true });
    res.compressed = await arrives(ws, await post(api, 'proto.zip'), 2000);
    ws.send(require('crypto').randomBytes(6000).toString('base64'),
        { compress: true });
    res.compressedOversize = await within(ws.closed, 3000, 'zipped');

    process.stdout.write(JSON.stringify(res) + '\n');
    process.exit(0);
}

function count(n, want, timeout) {
    let open = 0;
    let done = 0;
    let events = 0;
    let bytes = 0;
    let ext = null;

    for (let i = 0; i < n; i++) {
        const ws = new WebSocket(url, { perMessageDeflate: deflate });
        let got = 0;

        ws.on('upgrade', (res) =>
            (ext = res.headers['sec-websocket-extensions'] || null));
        ws.on('open', () => {
            if (++open === n) {
                process.stdout.write(JSON.stringify({ open }) + '\n');
            }
        });
        ws.on('message', (data) => {
            if (JSON.parse(String(data)).control) {
                return;
            }
            events++;
            if (++got === want) {
                bytes += ws._socket.bytesRead;
                ws.terminate();
                if (++done === n) {
                    process.stdout.write(JSON.stringify({ events, bytes,
                        extensions: ext }) + '\n');
                    process.exit(0);
                }
            }
        });
    }

    setTimeout(() => process.exit(2), timeout);
}

if (mode === 'follow') {
    follow(rest[0], Number(rest[1]), Number(rest[2]), rest[3] === 'reconnect');
} else if (mode === 'count') {
    count(Number(rest[0]), Number(rest[1]), Number(rest[2]));
} else if (mode === 'proto') {
    proto(rest[0]).catch((e) => {
        process.stdout.write(JSON.stringify({ error: String(e) }) + '\n');
        process.exit(3);
    });
} else {
    process.stderr.write('usage: ws-client.js follow|proto URL ...\n');
    process.exit(64);
}
