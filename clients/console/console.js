// The events console: what the API shows the caller, on one page.
// Everything goes through events.js with the caller's token or tenant,
// so the console sees no more than its user may.  No framework: the DOM
// is built with textContent only (nothing an event holds is parsed as
// HTML), and the page runs under a strict Content-Security-Policy.

import { EventsClient, validPattern } from './events.js';

const $ = (s) => document.querySelector(s);
const conf = JSON.parse($('meta[name="events-config"]').content);
const MAX_ROWS = 500;
const cred = {
    token: sessionStorage.getItem('events.token') || '',
    tenant: sessionStorage.getItem('events.tenant') || ''
};

let rest = client();
let live = null;
let paused = false;
let held = [];
let entityWatch = null;

function client(filter) {
    return new EventsClient({
        api: conf.api, stream: conf.stream, token: cred.token || null,
        headers: cred.tenant ? { 'X-Tenant': cred.tenant } : {},
        filter: filter || null
    });
}

function say(text) {
    $('#msg').textContent = text || '';
}

function fail(e) {
    if (e && e.status === 401) {
        say('401 ' + (e.code || '') + ': enter a token above.');
    } else {
        say(e && e.status ? e.status + ' ' + (e.code || '') + ': ' + e.message
                          : String(e && e.message || e));
    }
}

function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) {
        e.textContent = String(text);
    }
    if (cls) {
        e.className = cls;
    }
    return e;
}

function when(ts) {
    if (!ts) {
        return '';
    }
    const d = new Date(ts);
    return isNaN(d) ? ts : d.toLocaleString();
}

function isoOf(local) {
    return local ? new Date(local).toISOString() : undefined;
}

function formQuery(form) {
    const q = {};
    for (const [k, v] of new FormData(form)) {
        if (v !== '') {
            q[k] = v;
        }
    }
    return q;
}

function patterns(s) {
    const list = (s || '').split(',').map((x) => x.trim()).filter(Boolean);
    const bad = list.filter((p) => !validPattern(p));
    if (bad.length) {
        throw new Error('not a type pattern: ' + bad.join(', '));
    }
    return list;
}

// tabs: arrows move between them, as the ARIA pattern says

const tabs = [...document.querySelectorAll('[role="tab"]')];

function select(tab, focus) {
    for (const t of tabs) {
        const on = t === tab;
        t.setAttribute('aria-selected', on ? 'true' : 'false');
        t.tabIndex = on ? 0 : -1;
        $('#' + t.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) {
        tab.focus();
    }
    const id = tab.getAttribute('aria-controls');
    history.replaceState(null, '', '#' + id);
    onShow[id] && onShow[id]();
}

for (const t of tabs) {
    t.addEventListener('click', () => select(t));
    t.addEventListener('keydown', (e) => {
        const i = tabs.indexOf(t);
        const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0,
                     End: tabs.length - 1 }[e.key];
        if (to !== undefined) {
            e.preventDefault();
            select(tabs[(to + tabs.length) % tabs.length], true);
        }
    });
}

// event rows and the detail panel

let lastRow = null;

function row(ev) {
    const tr = el('tr');
    tr.tabIndex = 0;
    tr.dataset.id = ev.id;
    tr.append(el('td', when(ev.timestamp)), el('td', ev.type),
              el('td', ev.resourceType && ev.resourceId
                       ? ev.resourceType + '/' + ev.resourceId : ''),
              el('td', ev.id, 'id'));
    const open = () => detail(ev, tr);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
            e.preventDefault();
            open();
        }
    });
    return tr;
}

function detail(ev, tr) {
    if (lastRow) {
        lastRow.removeAttribute('aria-selected');
    }
    lastRow = tr;
    tr.setAttribute('aria-selected', 'true');
    $('#detail-title').textContent = ev.type;
    $('#detail-json').textContent = JSON.stringify(ev, null, 2);
    $('#detail').hidden = false;
    $('#detail-title').focus();
}

function closeDetail() {
    $('#detail').hidden = true;
    if (lastRow) {
        lastRow.focus();
    }
}

$('#detail-close').addEventListener('click', closeDetail);
document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !$('#detail').hidden) {
        closeDetail();
    }
});

function addRows(tbody, events, top) {
    const f = document.createDocumentFragment();
    for (const ev of events) {
        f.append(row(ev));
    }
    if (top) {
        tbody.prepend(f);
        while (tbody.rows.length > MAX_ROWS) {
            tbody.deleteRow(-1);
        }
    } else {
        tbody.append(f);
    }
}

// live tail

function startLive() {
    if (live) {
        live.close();
    }
    let q;
    try {
        q = formQuery($('#live-form'));
        q.types = patterns(q.types);
    } catch (e) {
        return fail(e);
    }
    const filter = {};
    if (q.types.length) {
        filter.types = q.types;
    }
    if (q.resourceType) {
        filter.resourceType = q.resourceType;
    }
    if (q.resourceId) {
        filter.resourceId = q.resourceId;
    }
    live = client(filter);
    live.onConnectionChange((s, d) => {
        const c = $('#conn');
        c.textContent = s + (d && d.delay ? ' in ' + Math.round(d.delay / 1000)
                                              + ' s' : '');
        c.className = 'state ' + s;
        if (s === 'open') {
            say('');
        }
    });
    live.onError(fail);
    live.onReset((r) => {
        $('#live-info').textContent = 'The server reset the stream ('
            + r.reason + ')' + (r.resync ? '; re-read from history.' : '.');
    });
    live.onAny((ev) => {
        if (paused) {
            held.push(ev);
            if (held.length > MAX_ROWS) {
                held.shift();
            }
            $('#live-info').textContent = 'Paused: ' + held.length + ' new.';
            return;
        }
        addRows($('#live-rows tbody'), [ev], true);
    });
}

$('#live-form').addEventListener('submit', (e) => {
    e.preventDefault();
    $('#live-rows tbody').replaceChildren();
    startLive();
});

$('#pause').addEventListener('click', () => {
    paused = !paused;
    $('#pause').setAttribute('aria-pressed', String(paused));
    $('#pause').textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
        addRows($('#live-rows tbody'), held, true);
        held = [];
        $('#live-info').textContent = '';
    } else {
        $('#live-info').textContent = 'Paused.';
    }
});

$('#clear').addEventListener('click', () => {
    $('#live-rows tbody').replaceChildren();
    held = [];
});

// history: pages of GET /events

let pages = null;

async function historyPage(first) {
    const form = $('#history-form');
    let q;
    try {
        q = formQuery(form);
        const t = patterns(q.types);
        q.types = t.length ? t : undefined;
    } catch (e) {
        return fail(e);
    }
    q.since = isoOf(q.since);
    q.until = isoOf(q.until);

    if (first || !pages) {
        pages = rest.list(q);
        $('#history-rows tbody').replaceChildren();
    }
    try {
        const { value, done } = await pages.next();
        if (done) {
            $('#history-next').disabled = true;
            return;
        }
        $('#history-rows tbody').replaceChildren();
        addRows($('#history-rows tbody'), value.data, false);
        $('#history-info').textContent = value.data.length + ' event(s)'
            + (value.has_more ? ', more on the next page.' : ', no more.');
        $('#history-next').disabled = !value.has_more;
        $('#history-first').disabled = false;
        say('');
    } catch (e) {
        fail(e);
    }
}

$('#history-form').addEventListener('submit', (e) => {
    e.preventDefault();
    historyPage(true);
});
$('#history-next').addEventListener('click', () => historyPage(false));
$('#history-first').addEventListener('click', () => historyPage(true));

// entity: its history, then live (watch)

$('#entity-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = formQuery(e.target);
    if (entityWatch) {
        entityWatch.close();
    }
    const tbody = $('#entity-rows tbody');
    tbody.replaceChildren();
    $('#entity-info').textContent = 'Reading history...';
    entityWatch = rest.watch({ resourceType: q.resourceType,
                               resourceId: q.resourceId },
                             (ev) => addRows(tbody, [ev], false));
    entityWatch.ready.then(() => {
        $('#entity-info').textContent = tbody.rows.length
            + ' event(s); live now.';
    }, fail);
});

// types catalog

async function loadTypes() {
    try {
        const r = await rest.request('GET', conf.api + '/types');
        const tbody = $('#types-rows tbody');
        tbody.replaceChildren();
        for (const t of r.data) {
            const tr = el('tr');
            const b = el('button', 'Tail');
            b.type = 'button';
            b.setAttribute('aria-label', 'Tail ' + t.type);
            b.addEventListener('click', () => {
                $('#live-form').types.value = t.type;
                $('#live-rows tbody').replaceChildren();
                startLive();
                select($('#tab-live'), true);
            });
            const td = el('td');
            td.append(b);
            tr.append(el('td', t.type), el('td', t.count, 'num'),
                      el('td', when(t.lastTimestamp)), td);
            tbody.append(tr);
        }
        say('');
    } catch (e) {
        fail(e);
    }
}

$('#types-refresh').addEventListener('click', loadTypes);

// webhooks: endpoints, attempts, actions; create, edit, delete, rotate.
// The form checks nothing the server checks: what it sends is what was
// typed, and the server's error (status, code, message, field) is shown
// beside the form as it comes back.

let endpoint = null;
let attemptsNext = null;

const whUrl = (w) => conf.webhooks + '/' + encodeURIComponent(w.id);

function errText(e) {
    const b = (e && e.body && e.body.error) || {};
    if (!e || !e.status) {
        return String(e && e.message || e);
    }
    return e.status + ' ' + (e.code || '') + ': ' + e.message
        + (b.field ? ' (field: ' + b.field + ')' : '')
        + (e.status === 401 ? ' Enter a token above.' : '');
}

async function loadEndpoints() {
    try {
        const r = await rest.request('GET', conf.webhooks);
        const tbody = $('#webhooks-rows tbody');
        tbody.replaceChildren();
        for (const w of r.data) {
            const tr = el('tr');
            const b = el('button', w.url || w.location);
            b.type = 'button';
            b.addEventListener('click', () => openEndpoint(w));
            const td = el('td');
            td.append(b);
            const s = w.stats || {};
            tr.dataset.id = w.id;
            if (endpoint && endpoint.id === w.id) {
                endpoint = w;           /* its status, its handshake */
                showEndpoint();
            }
            tr.append(td, el('td', w.status),
                      el('td', (w.events || []).join(', ')),
                      el('td', s.ok ?? '', 'num'),
                      el('td', s.failed ?? '', 'num'),
                      el('td', s.pending ?? '', 'num'));
            tbody.append(tr);
        }
        say('');
    } catch (e) {
        fail(e);
    }
}

function openEndpoint(w, keepSecret) {
    endpoint = w;
    $('#endpoint').hidden = false;
    $('#delete-confirm').hidden = true;
    $('#endpoint-error').textContent = '';
    if (!keepSecret) {
        hideSecret();
    }
    showEndpoint();
    $('#attempts-rows tbody').replaceChildren();
    attemptsNext = null;
    loadAttempts();
}

function showEndpoint() {
    const w = endpoint;
    const v = w.verification || {};
    const s = w.stats || {};
    const now = v.state === 'pending' && !v.nextAttemptAt;
    $('#endpoint-title').textContent = (w.url || w.location) + ' (' + w.id
                                       + ')';
    $('#endpoint-toggle').textContent = w.status === 'enabled' ? 'Disable'
                                                               : 'Enable';
    const dl = $('#endpoint-fields');
    dl.replaceChildren();
    /* the handshake's detail may quote the receiver: text, as all here */
    for (const [k, x] of [
        ['status', w.status + (w.disabledReason ? ' (' + w.disabledReason
                                                  + ')' : '')],
        ['description', w.description], ['format', w.format],
        ['ordered', w.ordered], ['rateLimit', w.rateLimit],
        ['maxInFlight', w.maxInFlight], ['verify', w.verify],
        ['handshake', v.state],
        ['handshakes', v.attempts],
        [v.state === 'verified' ? 'verified at' : 'last handshake',
         when(v.at)],
        ['next handshake', when(v.nextAttemptAt)
         || (now ? (w.status === 'enabled' ? 'due now' : 'when enabled')
                 : null)],
        ['handshake error', v.error && v.error
         + (v.httpStatus ? ' (HTTP ' + v.httpStatus + ')' : '')
         + (v.detail ? ': ' + v.detail : '')],
        ['allowed rate', v.allowedRate && v.allowedRate
         + ' a minute (WebHook-Allowed-Rate)'],
        ['headers', Object.keys(w.headers || {}).join(', ')],
        ['metadata', Object.entries(w.metadata || {})
                         .map((m) => m.join('=')).join(', ')],
        ['secret', w.secretHint], ['static', w.static || null],
        ['delivered', s.ok], ['failed', s.failed], ['expired', s.expired],
        ['pending', s.pending], ['in flight', s.inFlight],
        ['last success', when(s.lastSuccessAt)],
        ['last failure', when(s.lastFailureAt)],
        ['last error', s.lastError],
        ['oldest pending', s.pending ? s.oldestPendingAgeMs / 1000 + ' s'
                                     : null]])
    {
        if (x !== null && x !== undefined && x !== '') {
            dl.append(el('dt', k), el('dd', x));
        }
    }
}

async function loadAttempts() {
    const base = whUrl(endpoint);
    try {
        const r = await rest.request('GET', base + '/deliveries?limit=50'
            + (attemptsNext ? '&after=' + encodeURIComponent(attemptsNext)
                            : ''));
        const tbody = $('#attempts-rows tbody');
        for (const a of r.data) {
            const tr = el('tr');
            const b = el('button', 'Resend');
            b.type = 'button';
            b.setAttribute('aria-label', 'Resend ' + a.eventId);
            b.addEventListener('click', () => action(
                base + '/deliveries/' + encodeURIComponent(a.eventId)
                     + '/retry',
                undefined, 'Resent ' + a.eventId));
            const td = el('td');
            td.append(b);
            tr.append(el('td', when(a.startedAt)), el('td', a.eventId, 'id'),
                      el('td', a.type), el('td', a.trigger), el('td', a.result),
                      el('td', a.httpStatus ?? ''), el('td', a.error ?? ''),
                      td);
            tbody.append(tr);
        }
        attemptsNext = r.nextCursor;
        $('#attempts-more').disabled = !attemptsNext;
        say('');
    } catch (e) {
        fail(e);
    }
}

async function action(url, body, done) {
    try {
        const r = await rest.request('POST', url,
                                     body === undefined ? {} : body);
        $('#endpoint-error').textContent = '';
        $('#endpoint-title').textContent = endpoint.url + ': ' + done
            + (r && r.queued !== undefined ? ' (' + r.queued + ' queued)' : '');
    } catch (e) {
        $('#endpoint-error').textContent = errText(e);
    }
}

$('#webhooks-refresh').addEventListener('click', loadEndpoints);
$('#attempts-more').addEventListener('click', loadAttempts);
$('#endpoint-test').addEventListener('click', () => action(
    whUrl(endpoint) + '/test', undefined, 'test event sent'));
$('#replay-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const q = formQuery(e.target);
    action(whUrl(endpoint) + '/replay',
           { since: isoOf(q.since), mode: q.mode }, 'replay ' + q.mode);
});

// the form: one for create and edit; an edit sends only what changed

const whForm = $('#wh-form');
let editing = null;

function num(s) {
    s = s.trim();
    return s === '' ? null : /^-?\d+$/.test(s) ? Number(s) : s;
}

function pairs(s, sep) {
    const o = {};
    for (const l of s.split('\n')) {
        const i = l.indexOf(sep);
        if (l.trim()) {
            o[(i < 0 ? l : l.slice(0, i)).trim()] =
                i < 0 ? '' : l.slice(i + 1).trim();
        }
    }
    return o;
}

function formFields(f) {
    return {
        url: f.url.value.trim(),
        events: f.events.value.split(',').map((x) => x.trim())
                                         .filter(Boolean),
        description: f.description.value,
        format: f.format.value,
        rateLimit: num(f.rateLimit.value),
        maxInFlight: num(f.maxInFlight.value),
        verify: f.verify.value || null,
        ordered: f.ordered.checked,
        enabled: f.enabled.checked,
        metadata: pairs(f.metadata.value, '=')
    };
}

function endpointFields(w) {
    return {
        url: w.url || '', events: w.events, description: w.description || '',
        format: w.format, rateLimit: w.rateLimit, maxInFlight: w.maxInFlight,
        verify: w.verify, ordered: w.ordered, enabled: w.status === 'enabled',
        metadata: w.metadata || {}
    };
}

function openForm(w) {
    const f = whForm;
    const v = w ? endpointFields(w) : null;
    editing = w || null;
    f.reset();
    if (v) {
        f.url.value = v.url;
        f.events.value = v.events.join(', ');
        f.description.value = v.description;
        f.format.value = v.format;
        f.rateLimit.value = v.rateLimit ?? '';
        f.maxInFlight.value = v.maxInFlight ?? '';
        f.verify.value = v.verify || '';
        f.ordered.checked = v.ordered;
        f.enabled.checked = v.enabled;
        f.metadata.value = Object.entries(v.metadata)
                                 .map((m) => m.join('=')).join('\n');
    }
    const names = w ? Object.keys(w.headers || {}) : [];
    $('#wh-headers-now').hidden = !names.length;
    $('#wh-headers-now').textContent = 'Headers now: ' + names.join(', ')
        + ' (values are never shown). Leave the box empty to keep them;'
        + ' what you write there replaces them all.';
    $('#wh-clear').hidden = !names.length;
    $('#wh-form-title').textContent = w ? 'Edit ' + w.id : 'New endpoint';
    $('#wh-save').textContent = w ? 'Save changes' : 'Create';
    formError(null);
    f.hidden = false;
    f.url.focus();
}

function formError(e) {
    const field = e && e.body && e.body.error && e.body.error.field;
    $('#wh-form-error').textContent = e ? errText(e) : '';
    for (const c of whForm.elements) {
        if (c.name && c.name === field) {
            c.setAttribute('aria-invalid', 'true');
        } else {
            c.removeAttribute('aria-invalid');
        }
    }
}

function formBody() {
    const f = whForm;
    const now = formFields(f);
    const headers = pairs(f.headers.value, ':');
    const body = {};
    if (!editing) {
        for (const [k, x] of Object.entries(now)) {
            if (x !== null && x !== ''
                && !(k === 'metadata' && !Object.keys(x).length))
            {
                body[k] = x;
            }
        }
        if (Object.keys(headers).length) {
            body.headers = headers;
        }
        return body;
    }
    const was = endpointFields(editing);
    for (const k of Object.keys(now)) {
        if (JSON.stringify(now[k]) !== JSON.stringify(was[k])) {
            body[k] = now[k];
        }
    }
    if (f.clearHeaders.checked) {
        body.headers = {};
    } else if (Object.keys(headers).length) {
        body.headers = headers;
    }
    return body;
}

whForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = formBody();
    if (editing && !Object.keys(body).length) {
        $('#wh-form-error').textContent = 'Nothing changed.';
        return;
    }
    try {
        const w = editing
            ? await rest.request('PATCH', whUrl(editing), body)
            : await rest.request('POST', conf.webhooks, body);
        whForm.hidden = true;
        $('#webhooks-info').textContent = (editing ? 'Saved ' : 'Created ')
                                          + w.id + '.';
        openEndpoint(w, !!editing);
        if (w.secret) {
            showSecret(w.secret, 'The secret of ' + w.id + '.');
        } else {
            $('#endpoint-edit').focus();
        }
        loadEndpoints();
    } catch (x) {
        formError(x);
    }
});

$('#wh-new').addEventListener('click', () => openForm(null));
$('#endpoint-edit').addEventListener('click', () => openForm(endpoint));
$('#wh-cancel').addEventListener('click', () => {
    whForm.hidden = true;
    (editing ? $('#endpoint-edit') : $('#wh-new')).focus();
});

// enable/disable, delete (confirmed on the page), rotate

async function patchEndpoint(body) {
    try {
        endpoint = await rest.request('PATCH', whUrl(endpoint), body);
        $('#endpoint-error').textContent = '';
        showEndpoint();
        loadEndpoints();
    } catch (e) {
        $('#endpoint-error').textContent = errText(e);
    }
}

$('#endpoint-toggle').addEventListener('click', () =>
    patchEndpoint({ enabled: endpoint.status !== 'enabled' }));

$('#endpoint-delete').addEventListener('click', () => {
    $('#delete-q').textContent = 'Delete ' + (endpoint.url || endpoint.id)
        + ' (' + endpoint.id + ') and its queued deliveries?';
    $('#delete-confirm').hidden = false;
    $('#delete-no').focus();
});

$('#delete-no').addEventListener('click', () => {
    $('#delete-confirm').hidden = true;
    $('#endpoint-delete').focus();
});

$('#delete-yes').addEventListener('click', async () => {
    try {
        await rest.request('DELETE', whUrl(endpoint));
        $('#endpoint').hidden = true;
        whForm.hidden = true;
        $('#webhooks-info').textContent = 'Deleted ' + endpoint.id + '.';
        endpoint = null;
        hideSecret();
        loadEndpoints();
        $('#wh-new').focus();
    } catch (e) {
        $('#delete-confirm').hidden = true;
        $('#endpoint-error').textContent = errText(e);
    }
});

$('#endpoint-rotate').addEventListener('click', async () => {
    const grace = num($('#rotate-grace').value);
    try {
        const r = await rest.request('POST', whUrl(endpoint) + '/rotate-secret',
                                     grace === null ? {}
                                                    : { graceSeconds: grace });
        $('#endpoint-error').textContent = '';
        showSecret(r.secret, r.previousExpiresAt
            ? 'The previous secret is accepted until '
              + when(r.previousExpiresAt) + '.'
            : 'The previous secret no longer works.');
        endpoint = await rest.request('GET', whUrl(endpoint));
        showEndpoint();
    } catch (e) {
        $('#endpoint-error').textContent = errText(e);
    }
});

// a secret is shown once, as the API gives it once

function showSecret(secret, info) {
    $('#secret-value').value = secret;
    $('#secret-info').textContent = info;
    $('#secret').hidden = false;
    $('#secret-value').focus();
    $('#secret-value').select();
}

function hideSecret() {
    $('#secret-value').value = '';
    $('#secret').hidden = true;
}

$('#secret-copy').addEventListener('click', async () => {
    const v = $('#secret-value');
    try {
        await navigator.clipboard.writeText(v.value);
    } catch (e) {
        v.select();
        document.execCommand('copy');
    }
    $('#secret-info').textContent = 'Copied. It is not shown again.';
});

$('#secret-done').addEventListener('click', () => {
    hideSecret();
    $('#endpoint-rotate').focus();
});

// status: counters, and events/s from "stored" between two polls

const samples = [];
let statusTimer = null;

async function pollStatus() {
    clearTimeout(statusTimer);
    if ($('#status').hidden) {
        return;
    }
    try {
        const s = await rest.request('GET', conf.status);
        const now = Date.now();
        const last = samples[samples.length - 1];
        const stored = s.events ? s.events.stored : 0;
        if (last) {
            const rate = Math.max(0, (stored - last.stored) * 1000
                                     / (now - last.t));
            samples.push({ t: now, stored, rate });
            $('#rate').textContent = rate.toFixed(1) + '/s';
        } else {
            samples.push({ t: now, stored, rate: 0 });
        }
        if (samples.length > 60) {
            samples.shift();
        }
        chart();
        counters(s);
        say('');
    } catch (e) {
        fail(e);
    }
    statusTimer = setTimeout(pollStatus, 2000);
}

function chart() {
    const svg = $('#chart');
    const max = Math.max(1, ...samples.map((x) => x.rate));
    const pts = samples.map((x, i) => (i * 300 / 59).toFixed(1) + ','
                            + (58 - x.rate * 56 / max).toFixed(1));
    const line = document.createElementNS('http://www.w3.org/2000/svg',
                                          'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.replaceChildren(line);
}

function counters(s) {
    const box = $('#counters');
    box.replaceChildren();
    for (const [name, v] of Object.entries(s)) {
        if (!v || typeof v !== 'object' || Array.isArray(v)) {
            continue;
        }
        const dl = el('dl');
        dl.append(el('dt', name));
        for (const [k, x] of Object.entries(v)) {
            if (typeof x === 'number' || typeof x === 'boolean'
                || typeof x === 'string')
            {
                const dd = el('dd');
                dd.append(el('span', k), el('span', x));
                dl.append(dd);
            }
        }
        box.append(dl);
    }
}

// token and tenant: kept for this tab only (sessionStorage)

$('#token').value = cred.token;
$('#tenant').value = cred.tenant;
$('#auth').addEventListener('submit', (e) => {
    e.preventDefault();
    cred.token = $('#token').value.trim();
    cred.tenant = $('#tenant').value.trim();
    sessionStorage.setItem('events.token', cred.token);
    sessionStorage.setItem('events.tenant', cred.tenant);
    rest = client();
    startLive();
    const t = tabs.find((x) => x.getAttribute('aria-selected') === 'true');
    const show = onShow[t.getAttribute('aria-controls')];
    if (show) {
        show();
    }
});

const onShow = {
    types: loadTypes,
    webhooks: loadEndpoints,
    status: pollStatus
};

for (const part of ['webhooks', 'status']) {
    if (!conf[part]) {              /* events_console ... part=off */
        const i = tabs.findIndex((t) => t.id === 'tab-' + part);
        tabs[i].remove();
        tabs.splice(i, 1);
    }
}

startLive();
const start = tabs.find((t) => '#' + t.getAttribute('aria-controls')
                               === location.hash);
if (start) {
    select(start);
}
