// Scenarios of events.js against a real nginx, the same code in Node
// (client-node.mjs) and in Chromium (client-browser.js).  Each reports
// by say(object), one JSON line each, for the Perl test to read.
//
//   follow  states, resets and every event as it comes, until an event
//           of type test.end; the test reloads and restarts nginx
//           meanwhile
//   watch   writers on one entity, watch() started among them; reports
//           what it delivered and what REST holds for the entity
//   denied  a stream the server refuses: the error and the state

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

function client(C, a) {
    let used = 0;
    const tokens = a.tokens;

    return new C({
        api: a.base + '/events',
        stream: a.base + '/events/stream',
        // a list: the next one each time the client asks
        token: tokens ? async () => tokens[Math.min(used++, tokens.length - 1)]
                      : a.token || null,
        headers: a.headers || {},
        transport: a.transport || 'auto',
        lastEventId: a.lastEventId || null,
        filter: a.filter || null,
        backoff: { max: 2000, jitter: 0.5 }
    });
}

async function follow(C, a, say) {
    const c = client(C, a);
    let done;
    const end = new Promise((ok) => { done = ok; });

    c.onConnectionChange((state) => say({ state }));
    c.onReset((r) => say({ reset: r.reason, resync: r.resync }));
    c.onReady((r) => say({ ready: r.replayed }));
    c.onReauth((r) => say({ reauth: r.exp }));
    c.onError((e) => say({ error: String(e), status: e.status || 0,
                           code: e.code || null }));
    c.onAny((ev) => {
        say({ seq: ev.seq, id: ev.id, type: ev.type });
        if (ev.type === 'test.end') {
            done();
        }
    });

    await end;
    say({ done: true, lastEventId: c.lastEventId });
    c.close();
}

async function watch(C, a, say) {
    const c = client(C, a);
    const sel = a.types ? { types: a.types }
                        : { resourceType: 'ticket', resourceId: a.resourceId };
    let stop = false;
    let written = 0;

    const writer = async (k) => {
        while (!stop) {
            const batch = [];
            for (let i = 0; i < 1 + k; i++) {
                batch.push({ type: 'ticket.updated', resourceId: a.resourceId,
                             payload: { data: { k, n: written } } });
                // noise the watch must not see
                batch.push({ type: 'other.updated', resourceId: a.resourceId });
            }
            await c.publish(batch);
            written += batch.length / 2;
        }
    };
    const writers = [0, 1, 2, 3].map(writer);

    while (written < a.before) {
        await sleep(2);
    }

    const got = [];
    // small pages: the writers add to the history while it is read
    const w = c.watch(sel, (ev) => got.push(ev), { limit: a.limit });
    await w.ready;
    const atLive = written;

    while (written < atLive + a.after) {
        await sleep(2);
    }
    stop = true;
    await Promise.all(writers);

    const end = await c.publish({ type: 'ticket.closed',
                                  resourceId: a.resourceId });
    for (let i = 0; i < 1000; i++) {
        if (got.length && got[got.length - 1].id === end.id) {
            break;
        }
        await sleep(10);
    }

    const q = Object.assign({ limit: 1000 }, a.types ? { types: a.types }
                            : { resourceType: 'ticket',
                                resourceId: a.resourceId });
    const all = [];
    for await (const page of c.list(q)) {
        all.push(...page.data);
    }

    w.close();
    c.close();
    say({ got: got.map((e) => e.seq), want: all.map((e) => e.seq),
          atWatch: a.before, atLive, written });
}

async function denied(C, a, say) {
    const c = client(C, a);
    let closed;
    const end = new Promise((ok) => { closed = ok; });

    c.onError((e) => say({ error: e.code || String(e), status: e.status }));
    c.onConnectionChange((s) => {
        say({ state: s });
        if (s === 'closed') {
            closed();
        }
    });
    c.onAny(() => say({ unexpected: true }));
    await Promise.race([end, sleep(5000)]);
    c.close();
}

export async function run(C, name, args, say) {
    const f = { follow, watch, denied }[name];

    try {
        await f(C, args, say);
    } catch (e) {
        say({ failed: String(e && e.stack || e) });
    }
}
