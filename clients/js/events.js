// events.js: the browser (and Node 18+) client of ngx_http_events_module.
//
// One ES module, no dependency.  A client follows one stream
// (/events/stream) and hands its events to handlers by type pattern, with
// the server's wildcard rules.  A stream is read with fetch() so that an
// Authorization header can be sent; where fetch cannot stream a body the
// client falls back to EventSource (a token then goes in ?token=).
//
// Delivery is exactly once and in order: every event carries its seq
// (one position, increasing across the store), so the client drops what
// it has already delivered when a resumed stream, a REST re-sync or a
// watch()'s history overlap.  It resumes from the id of the last event
// it delivered (?lastEventId=), reconnects with exponential backoff and
// jitter from the server's "retry:" hint, and when the server says its
// cursor is gone (reset: cursor_expired, epoch_changed, lagging) it reads
// what the store still holds over REST, holding the live events back
// meanwhile, instead of skipping ahead to the head.

// true when the type pattern matches the event type (server's rules):
// "*" everything; "*" as a whole inner segment, exactly one segment;
// a trailing ".*" or ".**", any non-empty rest
export function matchType(pattern, type) {
    if (pattern === '*' || pattern === '**') {
        return true;
    }

    const p = pattern.split('.');
    const t = type.split('.');
    const last = p[p.length - 1];
    const rest = (last === '*' || last === '**') && p.length > 1;
    const n = rest ? p.length - 1 : p.length;

    if (rest ? t.length <= n : t.length !== n) {
        return false;
    }

    for (let i = 0; i < n; i++) {
        if (p[i] !== '*' && p[i] !== t[i]) {
            return false;
        }
    }

    return true;
}

// the server's pattern syntax, so that a typo fails in on() at once
export function validPattern(pattern) {
    if (typeof pattern !== 'string' || pattern.length < 1
        || pattern.length > 128)
    {
        return false;
    }

    const segs = pattern.split('.');

    return segs.every((s, i) => /^[a-z0-9_]+$/.test(s) || s === '*'
                                || (s === '**' && i === segs.length - 1));
}

// the wait before reconnect number "attempt" (0 first): the server's
// retry hint doubled per failed attempt, capped, plus up to "jitter" of
// itself at random so that clients cut off together do not come back
// together
export function backoff(attempt, base, opts = {}, random = Math.random) {
    const max = opts.max ?? 30000;
    const jitter = opts.jitter ?? 0.5;
    const d = Math.min(max, base * Math.pow(2, Math.min(attempt, 16)));

    return Math.round(d + d * jitter * random());
}

// Server-Sent Events, as the HTML standard parses them: fed text in
// pieces of any size, calls onEvent({event, data, id}) per dispatched
// event, onRetry(ms) for a "retry:" field, onComment() for a comment
export class SseParser {
    constructor({ onEvent, onRetry, onComment } = {}) {
        this.onEvent = onEvent || (() => {});
        this.onRetry = onRetry || (() => {});
        this.onComment = onComment || (() => {});
        this.buf = '';
        this.first = true;
        this.lastId = '';
        this.data = null;
        this.event = '';
        this.cr = false;
    }

    push(text) {
        if (this.first && text.length) {
            this.first = false;
            if (text.charCodeAt(0) === 0xfeff) {
                text = text.slice(1);
            }
        }

        // a CR ending the previous piece already ended its line
        if (this.cr && text[0] === '\n') {
            text = text.slice(1);
        }
        this.cr = false;

        this.buf += text;

        let start = 0;

        for (;;) {
            const m = /\r\n|\r|\n/g;
            m.lastIndex = start;
            const r = m.exec(this.buf);

            if (r === null) {
                break;
            }

            if (r[0] === '\r' && r.index === this.buf.length - 1) {
                // may be the first half of a CRLF split across pieces
                this.cr = true;
            }

            this.line(this.buf.slice(start, r.index));
            start = r.index + r[0].length;
        }

        this.buf = this.buf.slice(start);
    }

    line(l) {
        if (l === '') {
            this.dispatch();
            return;
        }

        if (l[0] === ':') {
            this.onComment(l.slice(1));
            return;
        }

        const i = l.indexOf(':');
        const field = i < 0 ? l : l.slice(0, i);
        let value = i < 0 ? '' : l.slice(i + 1);

        if (value[0] === ' ') {
            value = value.slice(1);
        }

        switch (field) {
        case 'data':
            this.data = this.data === null ? value : this.data + '\n' + value;
            break;
        case 'event':
            this.event = value;
            break;
        case 'id':
            if (value.indexOf('\0') < 0) {
                this.lastId = value;
            }
            break;
        case 'retry':
            if (/^[0-9]+$/.test(value)) {
                this.onRetry(parseInt(value, 10));
            }
            break;
        }
    }

    dispatch() {
        const data = this.data;
        const event = this.event || 'message';

        this.data = null;
        this.event = '';

        if (data !== null) {
            this.onEvent({ event, data, id: this.lastId });
        }
    }
}

export class EventsError extends Error {
    constructor(status, body, message) {
        const e = body && body.error ? body.error : {};
        super(message || e.message || 'HTTP ' + status);
        this.name = 'EventsError';
        this.status = status;
        this.code = e.code || null;
        this.body = body;
    }
}

const RESYNC = { cursor_expired: 1, epoch_changed: 1, lagging: 1 };
const FATAL = { 400: 1, 403: 1, 404: 1, 405: 1 };
const FILTERS = ['types', 'resourceType', 'resourceId', 'action', 'source'];

function query(params) {
    const q = [];

    for (const k of Object.keys(params)) {
        let v = params[k];

        if (v === undefined || v === null || v === '') {
            continue;
        }

        if (Array.isArray(v)) {
            v = v.join(',');
        }

        q.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
    }

    return q.length ? '?' + q.join('&') : '';
}

function pick(o, keys) {
    const r = {};

    for (const k of keys) {
        if (o && o[k] !== undefined) {
            r[k] = o[k];
        }
    }

    return r;
}

function canStream() {
    return typeof fetch === 'function' && typeof TextDecoder === 'function'
           && typeof ReadableStream === 'function'
           && typeof AbortController === 'function';
}

// One followed stream: connection, parsing, resume, backoff, re-sync.
class Feed {
    constructor(client, opts) {
        this.client = client;
        this.filter = pick(opts.filter, FILTERS);
        this.lastId = opts.lastEventId || null;
        this.lastSeq = opts.lastSeq ?? -1;
        this.onEvent = opts.onEvent;
        this.onReady = opts.onReady || (() => {});
        this.onReset = opts.onReset || (() => {});
        this.onState = opts.onState || (() => {});
        this.retryMs = client.opts.retry;
        this.attempt = 0;
        this.state = 'idle';
        this.stopped = false;
        this.syncing = null;
        this.held = [];
        this.timer = null;
        this.idle = null;
        this.abort = null;
        this.es = null;
        this.delivered = false;
    }

    setState(s, detail) {
        if (this.state !== s) {
            this.state = s;
            this.onState(s, detail);
        }
    }

    start() {
        this.setState('connecting');
        this.connect();
    }

    stop() {
        this.stopped = true;
        clearTimeout(this.timer);
        clearTimeout(this.idle);
        if (this.abort) {
            this.abort.abort();
        }
        if (this.es) {
            this.es.close();        /* an EventSource or a WebSocket */
        }
        this.setState('closed');
    }

    url(extra) {
        const p = Object.assign({}, this.filter, extra);

        if (this.lastId) {
            p.lastEventId = this.lastId;
        }

        return this.client.opts.stream + query(p);
    }

    async connect() {
        if (this.stopped) {
            return;
        }

        this.delivered = false;
        this.opened = Date.now();

        if (this.client.opts.transport === 'websocket') {
            return this.connectWebSocket();
        }

        if (this.client.opts.transport === 'eventsource'
            || (this.client.opts.transport !== 'fetch' && !canStream()))
        {
            return this.connectEventSource();
        }

        const ac = new AbortController();
        this.abort = ac;

        let res;

        try {
            const headers = await this.client.headers(
                { Accept: 'text/event-stream' });
            res = await this.client.opts.fetch(this.url(), {
                headers, signal: ac.signal,
                credentials: this.client.opts.credentials
            });
        } catch (e) {
            return this.lost(e);
        }

        const type = res.headers.get('Content-Type') || '';

        if (res.status !== 200 || !type.startsWith('text/event-stream')) {
            let body = null;
            try {
                body = await res.json();
            } catch (e) { /* not JSON */ }

            const err = new EventsError(res.status, body);

            if (FATAL[res.status]
                || (res.status === 401
                    && typeof this.client.opts.token !== 'function'))
            {
                this.client.error(err);
                return this.stop();
            }

            const ra = parseInt(res.headers.get('Retry-After'), 10);
            return this.lost(err, ra > 0 ? ra * 1000 : 0);
        }

        this.setState('open');

        const parser = new SseParser({
            onEvent: (f) => this.frame(f),
            onRetry: (ms) => { this.retryMs = ms; },
            onComment: () => {}
        });
        const reader = res.body.getReader();
        const dec = new TextDecoder();

        try {
            for (;;) {
                this.watchdog(ac);
                const { done, value } = await reader.read();
                if (done) {
                    break;
                }
                parser.push(dec.decode(value, { stream: true }));
            }
            parser.push(dec.decode());
        } catch (e) {
            return this.lost(e);
        }

        this.lost(null);
    }

    connectEventSource() {
        const ES = this.client.opts.EventSource
                   || (typeof EventSource === 'function' ? EventSource : null);

        if (ES === null) {
            this.client.error(new Error('no fetch streaming, no EventSource'));
            return this.stop();
        }

        Promise.resolve(this.client.token()).then((token) => {
            if (this.stopped) {
                return;
            }

            const url = this.url(token ? { token } : {});
            const es = new ES(url, {
                withCredentials: this.client.opts.credentials === 'include'
            });
            let opened = false;
            this.es = es;

            const f = (name) => (m) => this.frame({
                event: name, data: m.data, id: m.lastEventId
            });

            es.onopen = () => {
                opened = true;
                this.setState('open');
            };
            es.onmessage = f('message');
            es.addEventListener('reset', f('reset'));
            es.addEventListener('ready', f('ready'));
            es.addEventListener('reauth', f('reauth'));
            // EventSource would reconnect on its own at once: ours backs off
            es.onerror = () => {
                es.close();
                this.es = null;
                if (opened) {
                    return this.lost(new Error('EventSource error'));
                }
                this.probe(url);
            };
        });
    }

    // the same stream over a WebSocket: one JSON message per event (its
    // cursor first), control messages {"control": "reset" | "ready" |
    // "reauth", ...}; the close code says nothing we need: every end is
    // a reconnect from our place, after the reset's retry when refused
    connectWebSocket() {
        const WS = this.client.opts.WebSocket
                   || (typeof WebSocket === 'function' ? WebSocket : null);

        if (WS === null) {
            this.client.error(new Error('no WebSocket'));
            return this.stop();
        }

        Promise.resolve(this.client.token()).then((token) => {
            if (this.stopped) {
                return;
            }

            const http = this.url(token ? { token } : {});
            const base = typeof location === 'object' ? location.href
                                                       : undefined;
            const url = new URL(http, base);
            url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';

            const ws = new WS(url.href);
            let opened = false;
            this.es = ws;

            ws.onopen = () => {
                opened = true;
                this.setState('open');
            };
            ws.onmessage = (m) => this.message(m.data);
            ws.onclose = () => {
                this.es = null;
                if (opened) {
                    return this.lost(null);
                }
                this.probe(new URL(http, base).href);
            };
        });
    }

    message(text) {
        let m;

        try {
            m = JSON.parse(text);
        } catch (e) {
            return this.client.error(new Error('bad message: ' + text));
        }

        if (m.control === undefined) {
            const cursor = m.cursor;
            delete m.cursor;
            return this.frame({ event: 'message', data: m, id: cursor });
        }

        if (m.control === 'reset' && m.retry > 0) {
            this.retryMs = m.retry;
        }

        const c = m.control;
        delete m.control;
        this.frame({ event: c, data: m,
                     id: c === 'reset' && m.reason !== 'overloaded'
                         ? m.head : '' });
    }

    // EventSource hides why it was refused: where fetch can at least read
    // a status, a refusal retrying cannot cure ends the stream
    async probe(url) {
        const fetch = this.client.opts.fetch;
        let err = new Error('EventSource error');

        if (fetch) {
            const ac = new AbortController();
            try {
                const res = await fetch(url, {
                    signal: ac.signal, credentials: this.client.opts.credentials
                });
                if (res.status !== 200) {
                    let body = null;
                    try {
                        body = await res.json();
                    } catch (e) { /* not JSON */ }
                    err = new EventsError(res.status, body);
                }
                ac.abort();
            } catch (e) { /* the network: retried */ }

            if (FATAL[err.status] || err.status === 401) {
                this.client.error(err);
                return this.stop();
            }
        }

        this.lost(err);
    }

    // a proxy may hold a dead connection open: heartbeats prove it alive
    watchdog(ac) {
        clearTimeout(this.idle);
        const t = this.client.opts.idleTimeout;
        if (t > 0) {
            this.idle = setTimeout(() => ac.abort(), t);
        }
    }

    lost(err, wait) {
        clearTimeout(this.idle);
        this.abort = null;

        if (this.stopped) {
            return;
        }

        if (this.delivered || Date.now() - this.opened > 10000) {
            this.attempt = 0;
        }

        const d = Math.max(wait || 0,
                           backoff(this.attempt++, this.retryMs,
                                   this.client.opts.backoff));
        this.setState('reconnecting', { error: err, delay: d });
        this.timer = setTimeout(() => this.connect(), d);
    }

    frame(f) {
        let data = f.data;

        try {
            if (typeof data === 'string') {
                data = JSON.parse(data);
            }
        } catch (e) {
            return this.client.error(new Error('bad frame: ' + f.data));
        }

        switch (f.event) {
        case 'message':
            if (this.syncing) {
                this.held.push([data, f.id]);
            } else {
                this.deliver(data, f.id);
            }
            break;

        case 'ready':
            this.delivered = true;
            this.onReady(data);
            break;

        case 'reset':
            this.reset(data, f.id);
            break;

        case 'reauth':
            this.client.emit('reauth', data);
            break;
        }
    }

    deliver(ev, id) {
        if (typeof ev.seq === 'number' && ev.seq <= this.lastSeq) {
            return;                     /* delivered already */
        }

        if (typeof ev.seq === 'number') {
            this.lastSeq = ev.seq;
        }
        if (id) {
            this.lastId = id;
        }
        this.delivered = true;

        try {
            this.onEvent(ev);
        } catch (e) {
            this.client.error(e);
        }
    }

    reset(r, id) {
        const before = this.lastId;

        // overloaded: the server could not take us; keep our place
        if (r.reason !== 'overloaded' && id) {
            this.lastId = id;
        }

        if (r.reason === 'epoch_changed') {
            this.lastSeq = -1;          /* a new store: seqs start over */
        }

        const resync = RESYNC[r.reason] && this.client.opts.resync !== false;

        try {
            this.onReset(Object.assign({ resync: !!resync }, r));
        } catch (e) {
            this.client.error(e);
        }

        if (resync && r.oldest && !this.syncing) {
            const from = r.reason === 'epoch_changed' || !before
                         || before === 'earliest' ? r.oldest : before;
            this.syncing = this.resync(from, r.oldest);
        }
    }

    // reads what the store still holds after our last event (history on
    // disk may have it when the ring has not), else after "oldest", while
    // live events wait in this.held; seq drops what both bring
    async resync(from, oldest) {
        let next = from;

        for (let attempt = 0; !this.stopped; attempt++) {
            try {
                const q = Object.assign({}, this.filter,
                                        { after: next, limit: 1000 });
                for await (const page of this.client.list(q)) {
                    for (const ev of page.data) {
                        this.deliver(ev, null);
                    }
                    next = page.next;
                }
                break;
            } catch (e) {
                if (e.status === 410 && attempt < 3) {
                    const b = e.body || {};
                    next = (b.error && b.error.oldest) || b.oldest || oldest;
                    if (e.code === 'epoch_changed') {
                        this.lastSeq = -1;
                    }
                    continue;
                }
                this.client.error(e);
                const d = backoff(attempt, this.retryMs,
                                  this.client.opts.backoff);
                await new Promise((ok) => {
                    this.timer = setTimeout(ok, d);
                });
            }
        }

        if (next && next !== from) {
            this.lastId = next;
        }

        const held = this.held;
        this.held = [];
        this.syncing = null;

        for (const [ev, id] of held) {
            this.deliver(ev, id);
        }
    }
}

export class EventsClient {
    constructor(opts = {}) {
        this.opts = Object.assign({
            api: '/events',
            stream: '/events/stream',
            token: null,
            headers: {},
            credentials: 'same-origin',
            transport: 'auto',      /* 'fetch', 'eventsource', 'websocket' */
            retry: 3000,                /* until the server says "retry:" */
            backoff: { max: 30000, jitter: 0.5 },
            idleTimeout: 45000,         /* 2 heartbeats (20 s) and some */
            resync: true,
            filter: null,               /* server-side: types, resource... */
            lastEventId: null           /* a cursor, or 'earliest' */
        }, opts);

        this.opts.fetch = opts.fetch || (typeof fetch === 'function'
                                         ? fetch.bind(globalThis) : null);
        this.handlers = [];
        this.listeners = { state: [], reset: [], error: [], reauth: [],
                           ready: [] };
        this.feed = null;
        this.watches = new Set();
        this.closed = false;
    }

    // the stream starts with the first handler
    on(pattern, fn) {
        const patterns = Array.isArray(pattern) ? pattern : [pattern];

        for (const p of patterns) {
            if (!validPattern(p)) {
                throw new TypeError('invalid type pattern "' + p + '"');
            }
        }

        const h = { patterns, fn };
        this.handlers.push(h);
        this.connect();

        return () => {
            this.handlers = this.handlers.filter((x) => x !== h);
        };
    }

    onAny(fn) {
        return this.on('*', fn);
    }

    onConnectionChange(fn) {
        return this.listen('state', fn);
    }

    onReset(fn) {
        return this.listen('reset', fn);
    }

    onError(fn) {
        return this.listen('error', fn);
    }

    onReady(fn) {
        return this.listen('ready', fn);
    }

    // the token expires soon: the stream ends at its expiry and the
    // client reconnects, asking a token function for a fresh one
    onReauth(fn) {
        return this.listen('reauth', fn);
    }

    listen(what, fn) {
        this.listeners[what].push(fn);
        return () => {
            this.listeners[what] = this.listeners[what].filter((x) => x !== fn);
        };
    }

    emit(what, ...args) {
        for (const fn of this.listeners[what].slice()) {
            try {
                fn(...args);
            } catch (e) {
                if (what !== 'error') {
                    this.error(e);
                }
            }
        }
    }

    error(e) {
        if (this.listeners.error.length) {
            this.emit('error', e);
        } else if (typeof console !== 'undefined') {
            console.error('events.js:', e);
        }
    }

    get state() {
        return this.feed ? this.feed.state : (this.closed ? 'closed' : 'idle');
    }

    get lastEventId() {
        return this.feed ? this.feed.lastId : this.opts.lastEventId;
    }

    connect() {
        if (this.feed || this.closed) {
            return;
        }

        this.feed = new Feed(this, {
            filter: this.opts.filter,
            lastEventId: this.opts.lastEventId,
            onEvent: (ev) => this.dispatch(ev),
            onReady: (r) => this.emit('ready', r),
            onReset: (r) => this.emit('reset', r),
            onState: (s, d) => this.emit('state', s, d)
        });
        this.feed.start();
    }

    dispatch(ev) {
        for (const h of this.handlers.slice()) {
            if (h.patterns.some((p) => matchType(p, ev.type))) {
                h.fn(ev);
            }
        }
    }

    // history from REST, then live from the list's head: no gap, and seq
    // drops the events both bring
    watch(selector, fn, opts = {}) {
        const filter = selector.types
            ? { types: selector.types }
            : pick(selector, ['resourceType', 'resourceId']);
        let feed = null;
        let stopped = false;
        let lastSeq = -1;
        const w = {};

        const deliver = (ev) => {
            if (ev.seq > lastSeq) {
                lastSeq = ev.seq;
                fn(ev);
            }
        };

        w.ready = (async () => {
            let head = null;
            let next = null;

            for await (const page of this.list(Object.assign(
                { limit: opts.limit || 1000 }, filter,
                pick(opts, ['since', 'action']))))
            {
                if (head === null) {
                    head = page.head;
                }
                next = page.next;
                page.data.forEach(deliver);
            }

            if (stopped) {
                return;
            }

            let live;
            const ready = new Promise((ok) => { live = ok; });

            feed = new Feed(this, {
                filter: Object.assign({}, filter,
                                      pick(opts, ['action', 'source'])),
                lastEventId: head || next || 'earliest',
                lastSeq,
                onEvent: deliver,
                onReady: live,
                onReset: (r) => this.emit('reset', r),
                onState: (s, d) => {
                    if (opts.onConnectionChange) {
                        opts.onConnectionChange(s, d);
                    }
                }
            });
            this.watches.add(feed);
            feed.start();
            await ready;
        })();

        w.close = () => {
            stopped = true;
            if (feed) {
                feed.stop();
                this.watches.delete(feed);
            }
        };

        return w;
    }

    async token() {
        const t = this.opts.token;
        return typeof t === 'function' ? await t() : t;
    }

    async headers(extra) {
        const h = Object.assign({}, this.opts.headers, extra);
        const token = await this.token();

        if (token) {
            h.Authorization = 'Bearer ' + token;
        }

        return h;
    }

    async request(method, url, body) {
        const headers = await this.headers(
            body === undefined ? {} : { 'Content-Type': 'application/json' });
        const res = await this.opts.fetch(url, {
            method, headers, credentials: this.opts.credentials,
            body: body === undefined ? undefined : JSON.stringify(body)
        });
        let json = null;

        if (res.status !== 204) {
            try {
                json = await res.json();
            } catch (e) {
                json = null;
            }
        }

        if (res.status >= 400) {
            throw new EventsError(res.status, json);
        }

        return json;
    }

    // pages of GET /events: {data, has_more, next, head, oldest}
    async *list(q = {}) {
        let params = Object.assign({}, q);

        for (;;) {
            const page = await this.request('GET',
                                            this.opts.api + query(params));
            yield page;

            if (!page.has_more || !page.next) {
                return;
            }

            params = Object.assign({}, params);
            if ((params.order || (params.before ? 'desc' : 'asc')) === 'desc') {
                delete params.after;
                params.before = page.next;
            } else {
                delete params.before;
                params.after = page.next;
            }
        }
    }

    async get(id) {
        return this.request('GET',
                            this.opts.api + '/' + encodeURIComponent(id));
    }

    async publish(events) {
        const r = await this.request('POST', this.opts.api, events);
        return Array.isArray(events) ? r.data : r;
    }

    close() {
        this.closed = true;
        if (this.feed) {
            this.feed.stop();
        }
        for (const f of this.watches) {
            f.stop();
        }
        this.watches.clear();
    }
}

export default EventsClient;
