// Unit tests of events.js with node:test: patterns, SSE parsing, backoff,
// and the stream logic against a scripted fetch (resume, dedupe, reset
// re-sync, errors).  The tests against a real nginx are in t/36..t/39.

import test from 'node:test';
import assert from 'node:assert/strict';

import { matchType, validPattern, backoff, SseParser, EventsClient }
    from '../events.js';

test('patterns: the server\'s rules', () => {
    const yes = [
        ['*', 'a'], ['*', 'a.b.c'], ['ticket.created', 'ticket.created'],
        ['ticket.*', 'ticket.created'], ['ticket.*', 'ticket.a.b'],
        ['ticket.**', 'ticket.a.b'], ['ticket.*.closed', 'ticket.x.closed'],
        ['*.created', 'ticket.created'], ['a.*.c.*', 'a.b.c.d.e']
    ];
    const no = [
        ['ticket.*', 'ticket'], ['ticket.created', 'ticket.created.x'],
        ['ticket.*.closed', 'ticket.closed'], ['ticket.*.closed', 'ticket.x.y.closed'],
        ['*.created', 'created'], ['*.created', 'a.b.created'],
        ['ticket', 'tickets'], ['session.*', 'sessions.a']
    ];

    for (const [p, t] of yes) {
        assert.equal(matchType(p, t), true, p + ' matches ' + t);
    }
    for (const [p, t] of no) {
        assert.equal(matchType(p, t), false, p + ' does not match ' + t);
    }

    for (const p of ['*', 'a', 'a.b_1', 'a.*', 'a.**', '*.b', 'a.*.c']) {
        assert.equal(validPattern(p), true, p);
    }
    for (const p of ['', 'A', 'a..b', 'a.', '.a', 'a.**.b', 'a*', 'a.b-c',
                     'x'.repeat(129)])
    {
        assert.equal(validPattern(p), false, JSON.stringify(p));
    }

    const c = new EventsClient({ fetch: () => new Promise(() => {}) });
    assert.throws(() => c.on('Ticket.*', () => {}), /invalid type pattern/);
    c.close();
});

function parse(pieces) {
    const out = [];
    const retry = [];
    let comments = 0;
    const p = new SseParser({
        onEvent: (e) => out.push(e), onRetry: (ms) => retry.push(ms),
        onComment: () => comments++
    });
    for (const s of pieces) {
        p.push(s);
    }
    return { out, retry, comments };
}

test('SSE: fields, ids, retry, comments', () => {
    const text = '\ufeffretry: 3000\n\n: heartbeat\n\n'
        + 'id: c1\ndata: {"a":1}\n\n'
        + 'event: reset\nid: c9\ndata: {"reason":"lagging"}\n\n'
        + 'data:x\ndata: y\n\n'
        + 'id: bad\0id\nretry: 1x\nfoo: bar\ndata\n\n'
        + 'event: ready\n\n'
        + 'data: tail';
    const { out, retry, comments } = parse([text]);

    assert.deepEqual(retry, [3000]);
    assert.equal(comments, 1);
    assert.deepEqual(out, [
        { event: 'message', data: '{"a":1}', id: 'c1' },
        { event: 'reset', data: '{"reason":"lagging"}', id: 'c9' },
        { event: 'message', data: 'x\ny', id: 'c9' },
        { event: 'message', data: '', id: 'c9' }
    ], 'an id with NUL is ignored, an event with no data is not sent, '
       + 'an unfinished one waits');
});

test('SSE: any split, CRLF and CR line ends', () => {
    const text = 'id: c1\r\ndata: {"a":1}\r\n\r\nid: c2\rdata: é\r\r'
        + 'data: z\n\n';
    const want = parse([text]).out;

    assert.equal(want.length, 3);
    assert.deepEqual(want[1], { event: 'message', data: 'é', id: 'c2' });

    for (let i = 0; i <= text.length; i++) {
        for (let j = i; j <= text.length; j += 7) {
            const got = parse([text.slice(0, i), text.slice(i, j),
                               text.slice(j)]).out;
            assert.deepEqual(got, want, 'split at ' + i + ', ' + j);
        }
    }
});

test('backoff: doubles, capped, jittered, never under the hint', () => {
    const lo = () => 0;
    const hi = () => 0.999999;

    assert.equal(backoff(0, 3000, {}, lo), 3000);
    assert.equal(backoff(1, 3000, {}, lo), 6000);
    assert.equal(backoff(3, 3000, {}, lo), 24000);
    assert.equal(backoff(4, 3000, {}, lo), 30000, 'capped at max');
    assert.equal(backoff(40, 3000, {}, lo), 30000, 'no overflow');
    assert.equal(backoff(0, 3000, {}, hi), 4500, 'jitter up to half');
    assert.equal(backoff(2, 100, { max: 1000, jitter: 1 }, hi), 800);

    const seen = new Set();
    for (let i = 0; i < 200; i++) {
        const d = backoff(0, 1000);
        assert.ok(d >= 1000 && d <= 1500, String(d));
        seen.add(d);
    }
    assert.ok(seen.size > 50, 'spread: ' + seen.size + ' values');
});

// a fetch that answers from a script: each stream request takes the next
// step; REST requests are answered by rest(url)
// Response.json() came after Node 18.0
function json(body, status = 200) {
    return new Response(JSON.stringify(body), {
        status, headers: { 'Content-Type': 'application/json' }
    });
}

function scripted(steps, rest) {
    const calls = [];
    const f = async (url, init) => {
        calls.push({ url, init });

        if (!url.startsWith('/events/stream')) {
            const r = rest(url);
            return Array.isArray(r) ? json(r[1], r[0]) : json(r);
        }

        const step = steps.shift();
        if (!step) {
            return new Promise(() => {});       /* hangs: the test ends */
        }
        if (step.status) {
            return new Response(JSON.stringify(step.body || {}), {
                status: step.status, headers: step.headers || {}
            });
        }

        const enc = new TextEncoder();
        const body = new ReadableStream({
            async start(ctl) {
                for (const chunk of step.chunks) {
                    await new Promise((ok) => setTimeout(ok, 1));
                    ctl.enqueue(enc.encode(chunk));
                }
                if (step.hold) {
                    return;
                }
                ctl.close();
            }
        });
        return new Response(body, {
            status: 200, headers: { 'Content-Type': 'text/event-stream' }
        });
    };
    f.calls = calls;
    return f;
}

const ev = (seq, type = 't.created') => 'id: c' + seq + '\ndata: '
    + JSON.stringify({ id: 'e' + seq, seq, type }) + '\n\n';

function until(cond, ms = 3000) {
    return new Promise((ok, fail) => {
        const t0 = Date.now();
        const tick = () => {
            if (cond()) {
                return ok();
            }
            if (Date.now() - t0 > ms) {
                return fail(new Error('timeout'));
            }
            setTimeout(tick, 5);
        };
        tick();
    });
}

test('stream: resume from the last id, drop repeats, states', async () => {
    const f = scripted([
        { chunks: ['retry: 5\n\n', ev(1), ev(2, 'u.x')] },
        { status: 503, headers: { 'Retry-After': '0' } },
        { chunks: [ev(2), ev(3) + ev(4)], hold: true }
    ]);
    const c = new EventsClient({ fetch: f, token: 'tok',
                                 headers: { 'X-Tenant': 'acme' },
                                 backoff: { max: 20, jitter: 0 } });
    const got = [];
    const t = [];
    const states = [];

    c.onConnectionChange((s) => states.push(s));
    c.on('t.*', (e) => t.push(e.seq));
    c.onAny((e) => got.push(e.seq));

    await until(() => got.length === 4);
    assert.deepEqual(got, [1, 2, 3, 4], 'each once, in order');
    assert.deepEqual(t, [1, 3, 4], 'by pattern');
    assert.equal(f.calls[0].url, '/events/stream');
    assert.equal(f.calls[0].init.headers.Authorization, 'Bearer tok');
    assert.equal(f.calls[0].init.headers['X-Tenant'], 'acme');
    assert.equal(f.calls[1].url, '/events/stream?lastEventId=c2');
    assert.equal(f.calls[2].url, '/events/stream?lastEventId=c2');
    assert.deepEqual(states, ['connecting', 'open', 'reconnecting', 'open']);
    assert.equal(c.lastEventId, 'c4');

    c.close();
    assert.equal(c.state, 'closed');
});

test('stream: cursor_expired re-syncs from REST, live events wait', async () => {
    const urls = [];
    const rest = (url) => {
        urls.push(url);
        if (urls.length === 1) {
            return [410, { error: { status: 410, code: 'cursor_expired',
                                    oldest: 'old', head: 'c6' } }];
        }
        return { data: [{ id: 'e5', seq: 5, type: 't.a' },
                        { id: 'e6', seq: 6, type: 't.a' },
                        { id: 'e7', seq: 7, type: 't.a' }],
                 has_more: false, next: 'c7', head: 'c7' };
    };
    const f = scripted([
        { chunks: ['event: reset\nid: c6\ndata: {"reason":"cursor_expired",'
                   + '"oldest":"old","head":"c6"}\n\n', ev(7, 't.a'),
                   ev(8, 't.a')],
          hold: true }
    ], rest);
    const c = new EventsClient({ fetch: f, lastEventId: 'c1',
                                 filter: { types: ['t.*'] } });
    const got = [];
    const resets = [];

    c.onReset((r) => resets.push(r));
    c.onAny((e) => got.push(e.seq));

    await until(() => got.length === 4);
    assert.equal(f.calls[0].url, '/events/stream?types=t.*&lastEventId=c1');
    assert.deepEqual(got, [5, 6, 7, 8], 'nothing lost, nothing twice');
    assert.deepEqual(urls, ['/events?types=t.*&after=c1&limit=1000',
                            '/events?types=t.*&after=old&limit=1000'],
                     'from our place first, then from the oldest');
    assert.equal(resets[0].reason, 'cursor_expired');
    assert.equal(resets[0].resync, true);
    assert.equal(c.lastEventId, 'c8');
    c.close();
});

test('stream: overloaded keeps the place; 400 and 401 end it', async () => {
    const f = scripted([
        { chunks: [ev(1), 'retry: 3\nevent: reset\nid: head\n'
                   + 'data: {"reason":"overloaded"}\n\n'] },
        { chunks: [ev(2)], hold: true }
    ]);
    const c = new EventsClient({ fetch: f, backoff: { max: 10 } });
    const got = [];
    c.onAny((e) => got.push(e.seq));
    await until(() => got.length === 2);
    assert.equal(f.calls[1].url, '/events/stream?lastEventId=c1');
    c.close();

    for (const status of [400, 401]) {
        const g = scripted([{ status, body: { error: { code: 'x' } } }]);
        const d = new EventsClient({ fetch: g });
        const errors = [];
        d.onError((e) => errors.push(e));
        d.onAny(() => {});
        await until(() => d.state === 'closed');
        assert.equal(errors[0].status, status);
        assert.equal(errors[0].code, 'x');
        assert.equal(g.calls.length, 1, status + ': not retried');
    }

    // a token function: 401 is retried with a fresh token
    let n = 0;
    const h = scripted([{ status: 401 }, { chunks: [ev(1)], hold: true }]);
    const e = new EventsClient({ fetch: h, token: async () => 'tok' + ++n,
                                 retry: 1 });
    const seen = [];
    e.onAny((x) => seen.push(x.seq));
    await until(() => seen.length === 1);
    assert.equal(h.calls[1].init.headers.Authorization, 'Bearer tok2');
    e.close();
});

test('list, publish: pages and errors', async () => {
    const pages = {
        '/events?types=a.*&limit=2': { data: [{ seq: 1 }, { seq: 2 }],
                                        has_more: true, next: 'n2' },
        '/events?types=a.*&limit=2&after=n2': { data: [{ seq: 3 }],
                                                 has_more: false, next: 'n3' },
        '/events?order=desc&limit=1': { data: [{ seq: 9 }], has_more: true,
                                         next: 'p9' },
        '/events?order=desc&limit=1&before=p9': { data: [{ seq: 8 }],
                                                   has_more: false,
                                                   next: null }
    };
    const calls = [];
    const f = async (url, init) => {
        calls.push([url, init]);
        if (init.method === 'POST') {
            const body = JSON.parse(init.body);
            if (body.type === 'bad') {
                return json({ error: { status: 400, code: 'invalid_field',
                                       field: 'type' } }, 400);
            }
            return json(Array.isArray(body) ? { data: body } : body, 201);
        }
        return json(pages[url]);
    };
    const c = new EventsClient({ fetch: f });
    const seqs = [];

    for await (const page of c.list({ types: ['a.*'], limit: 2 })) {
        seqs.push(...page.data.map((e) => e.seq));
    }
    for await (const page of c.list({ order: 'desc', limit: 1 })) {
        seqs.push(...page.data.map((e) => e.seq));
    }
    assert.deepEqual(seqs, [1, 2, 3, 9, 8]);

    assert.deepEqual(await c.publish({ type: 'a.b' }), { type: 'a.b' });
    assert.deepEqual(await c.publish([{ type: 'a.b' }]), [{ type: 'a.b' }]);
    assert.equal(calls[4][1].headers['Content-Type'], 'application/json');
    await assert.rejects(c.publish({ type: 'bad' }),
                         { name: 'EventsError', status: 400,
                           code: 'invalid_field' });
});

test('websocket: events, controls, resume, overloaded', async () => {
    const urls = [];
    const scripts = [
        [{ cursor: 'c1', id: 'e1', seq: 1, type: 'a.b' },
         { control: 'ready', replayed: 1, head: 'c1' },
         { control: 'reset', reason: 'overloaded', retry: 5 }],
        [{ cursor: 'c2', id: 'e2', seq: 2, type: 'a.b' },
         { cursor: 'c1', id: 'e1', seq: 1, type: 'a.b' },
         { control: 'reset', reason: 'lagging', oldest: 'o', head: 'h9' }],
        [{ cursor: 'c3', id: 'e3', seq: 3, type: 'a.c' }]
    ];
    class FakeWS {
        constructor(url) {
            urls.push(url);
            const script = scripts.shift();
            setTimeout(() => {
                this.onopen();
                for (const m of script) {
                    this.onmessage({ data: JSON.stringify(m) });
                }
                if (scripts.length) {
                    this.onclose({ code: 1000 });
                }
            }, 1);
        }
        close() {}
    }
    const f = async () => json({ data: [], has_more: false, next: 'c2' });
    const c = new EventsClient({ transport: 'websocket', WebSocket: FakeWS,
                                 fetch: f, stream: 'https://h.example/s',
                                 token: 't', backoff: { max: 10 } });
    const got = [];
    const ready = [];
    const resets = [];
    c.onReady((r) => ready.push(r.replayed));
    c.onReset((r) => resets.push(r.reason));
    c.onAny((e) => got.push(e));
    await until(() => got.length === 3);
    assert.deepEqual(got.map((e) => e.seq), [1, 2, 3]);
    assert.equal(got[0].cursor, undefined, 'the cursor is not the event\'s');
    assert.deepEqual(urls, ['wss://h.example/s?token=t',
                            'wss://h.example/s?token=t&lastEventId=c1',
                            'wss://h.example/s?token=t&lastEventId=h9']);
    assert.deepEqual(ready, [1]);
    assert.deepEqual(resets, ['overloaded', 'lagging']);
    c.close();
});
