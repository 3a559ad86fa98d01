// The console (events_console) in headless Chromium, used as a person
// would: keyboard and clicks.  Prints one JSON line per check
// ({check, ok, ...}) and {done: true} for t/37-console.t.
//   node console-browser.js BASE TOKEN_BASE VERIFY_BASE
// BASE serves /console/ with X-Tenant tenancy and webhooks; TOKEN_BASE
// serves it under events_auth (key "s3cret-one"); VERIFY_BASE a zone
// whose handshakes are retried after a minute (a pending one stays so).
'use strict';

const crypto = require('crypto');
const http = require('http');
const puppeteer = require('puppeteer-core');
const { Webhook } = require('standardwebhooks');

const [base, tbase, vbase] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const check = (name, ok, extra) => say(Object.assign({ check: name, ok: !!ok },
                                                     extra || {}));
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function publish(ev, b = base, headers = { 'X-Tenant': 'acme' }) {
    const r = await fetch(b + '/events', {
        method: 'POST', body: JSON.stringify(ev),
        headers: Object.assign({ 'Content-Type': 'application/json' }, headers)
    });
    return r.json();
}

function jwt(claims) {
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const h = enc({ alg: 'HS256', typ: 'JWT' });
    const p = enc(Object.assign({ exp: Math.floor(Date.now() / 1000) + 600 },
                                claims));
    const s = crypto.createHmac('sha256', 's3cret-one').update(h + '.' + p)
                    .digest('base64url');
    return h + '.' + p + '.' + s;
}

async function waitFor(page, fn, arg, ms = 8000) {
    try {
        await page.waitForFunction(fn, { timeout: ms, polling: 50 }, arg);
        return true;
    } catch (e) {
        return false;
    }
}

const rows = (page, sel) => page.$$eval(sel + ' tbody tr',
    (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));

async function tenantConsole(browser) {
    const page = await browser.newPage();
    const problems = [];
    page.on('console', (m) => {
        if (m.type() === 'error') {
            problems.push(m.text());
        }
    });
    page.on('pageerror', (e) => problems.push(String(e)));

    await page.goto(base + '/console/');
    await page.type('#tenant', 'acme');
    await page.click('#auth button');

    check('the stream opens', await waitFor(page,
        () => document.querySelector('#conn').textContent === 'open'));

    // live
    const a = await publish({ type: 'ticket.created', resourceId: 'live-1' });
    check('a live event appears', await waitFor(page, (id) =>
        [...document.querySelectorAll('#live-rows tbody tr')]
            .some((tr) => tr.dataset.id === id), a.id));

    await page.click('#live-form input[name="types"]', { clickCount: 3 });
    await page.type('#live-form input[name="types"]', 'session.*');
    await page.keyboard.press('Enter');
    await waitFor(page, () => document.querySelector('#conn').textContent === 'open');
    await sleep(300);
    await publish({ type: 'ticket.created', resourceId: 'live-2' });
    const s = await publish({ type: 'session.started', resourceId: 'live-2' });
    await waitFor(page, (id) => [...document.querySelectorAll('#live-rows tbody tr')]
                                    .some((tr) => tr.dataset.id === id), s.id);
    let r = await rows(page, '#live-rows');
    check('the type filter', r.length === 1 && r[0][1] === 'session.started',
          { rows: r });

    await page.click('#pause');
    const p = await publish({ type: 'session.started', resourceId: 'live-3' });
    check('pause holds events back', await waitFor(page, () =>
        /Paused: 1 new/.test(document.querySelector('#live-info').textContent))
        && (await rows(page, '#live-rows')).length === 1);
    await page.click('#pause');
    check('resume shows them', await waitFor(page, (id) =>
        document.querySelector('#live-rows tbody tr').dataset.id === id, p.id));

    // detail by keyboard
    await page.focus('#live-rows tbody tr');
    await page.keyboard.press('Enter');
    const detail = await page.$eval('#detail-json', (e) => e.textContent);
    const shown = JSON.parse(detail);
    check('Enter on a row shows its JSON', shown.id === p.id
          && detail.includes('\n  "type": "session.started"'));
    await page.keyboard.press('Escape');
    check('Escape closes it, focus back on the row', await page.evaluate(() =>
        document.querySelector('#detail').hidden
        && document.activeElement.dataset.id !== undefined));

    // history, reached by the keyboard
    await page.focus('#tab-live');
    await page.keyboard.press('ArrowRight');
    check('ArrowRight selects History', await page.evaluate(() =>
        !document.querySelector('#history').hidden
        && document.activeElement.id === 'tab-history'));
    await page.select('#history-form select[name="order"]', 'asc');
    await page.$eval('#history-form input[name="limit"]', (x) => { x.value = ''; });
    await page.type('#history-form input[name="limit"]', '10');
    await page.click('#history-form button[type="submit"]');
    await waitFor(page, () => document.querySelectorAll('#history-rows tbody tr').length === 10);
    const first = await rows(page, '#history-rows');
    if (first.length !== 10) {
        check('history: a first page', false, {
            msg: await page.$eval('#msg', (x) => x.textContent),
            info: await page.$eval('#history-info', (x) => x.textContent),
            rows: first });
        first.push([0, 0, 0, 0]);
    }
    await page.click('#history-next');
    await waitFor(page, (id) => document.querySelector('#history-rows tbody tr')
                                && document.querySelector('#history-rows tbody tr')
                                       .cells[3].textContent !== id, first[0][3]);
    const second = await rows(page, '#history-rows');
    check('history pages', first.length === 10 && second.length === 10
          && !second.some((x) => first.some((y) => y[3] === x[3])),
          { first: first.length, second: second.length });

    await page.evaluate(() => {
        document.querySelector('#history-form input[name="since"]').value =
            '2099-01-01T00:00:00';
    });
    await page.click('#history-form button[type="submit"]');
    check('a time range', await waitFor(page, () =>
        document.querySelectorAll('#history-rows tbody tr').length === 0
        && /^0 event/.test(document.querySelector('#history-info').textContent)));

    // entity: history then live
    await page.click('#tab-entity');
    await page.type('#entity-form input[name="resourceType"]', 'ticket');
    await page.type('#entity-form input[name="resourceId"]', 'tk-1');
    await page.click('#entity-form button');
    const hist = await waitFor(page, () => /live now/.test(
        document.querySelector('#entity-info').textContent));
    const before = (await rows(page, '#entity-rows')).length;
    const e = await publish({ type: 'ticket.updated', resourceId: 'tk-1' });
    check('entity: history, then live', hist && before === 6 && await waitFor(page,
        (id) => [...document.querySelectorAll('#entity-rows tbody tr')]
                    .pop().dataset.id === id, e.id), { before });

    // types
    await page.click('#tab-types');
    await waitFor(page, () => document.querySelectorAll('#types-rows tbody tr').length >= 2);
    r = await rows(page, '#types-rows');
    const tc = r.find((x) => x[0] === 'ticket.created');
    check('types with counts', tc && Number(tc[1]) >= 20, { rows: r });

    // webhooks: the endpoint, its attempts, the actions
    await page.click('#tab-webhooks');
    await waitFor(page, () => document.querySelectorAll('#webhooks-rows tbody tr').length === 1);
    r = await rows(page, '#webhooks-rows');
    check('webhook endpoints', r.length === 1 && /\/hook$/.test(r[0][0])
          && r[0][1] === 'enabled', { rows: r });
    await page.click('#webhooks-rows tbody button');
    check('the attempt log', await waitFor(page, () =>
        [...document.querySelectorAll('#attempts-rows tbody tr')]
            .some((tr) => tr.cells[4].textContent === 'succeeded')));

    await page.click('#endpoint-test');
    check('send a test event', await waitFor(page, () =>
        /test event sent/.test(document.querySelector('#endpoint-title').textContent)));

    await page.evaluate(() => {
        document.querySelector('#replay-form input[name="since"]').value =
            new Date(Date.now() - 3600e3).toISOString().slice(0, 19);
    });
    await page.click('#replay-form button');
    check('replay', await waitFor(page, () =>
        /replay all \(\d+ queued\)/.test(
            document.querySelector('#endpoint-title').textContent)),
          { title: await page.$eval('#endpoint-title', (x) => x.textContent) });

    await page.click('#attempts-rows tbody button');
    check('resend', await waitFor(page, () =>
        /Resent /.test(document.querySelector('#endpoint-title').textContent)));

    // status and its chart
    await page.click('#tab-status');
    const st = await waitFor(page, () =>
        document.querySelector('#chart polyline')
        && document.querySelector('#chart polyline').getAttribute('points')
               .split(' ').length >= 2, null, 10000);
    const counters = await page.$$eval('#counters dt', (x) => x.map((d) => d.textContent));
    check('status: counters and events/s', st && counters.includes('events')
          && /\/s$/.test(await page.$eval('#rate', (x) => x.textContent)),
          { counters });

    // on a phone
    await page.setViewport({ width: 375, height: 700, isMobile: true,
                             hasTouch: true });
    await page.click('#tab-live');
    await sleep(100);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check('a phone: nothing wider than the screen', wide <= 375, { wide });

    // every control has a name
    const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, button')]
            .filter((x) => !x.closest('label') && !x.textContent.trim()
                           && !x.getAttribute('aria-label'))
            .map((x) => x.outerHTML));
    check('every control has a label', unnamed.length === 0, { unnamed });

    check('no error in the page (CSP included)', problems.length === 0,
          { problems });
    await page.close();
}

// a receiver: answers the CloudEvents handshake, keeps every request
function receiver() {
    const got = [];
    const srv = http.createServer((req, res) => {
        let body = '';
        req.on('data', (c) => { body += c; });
        req.on('end', () => {
            got.push({ method: req.method, url: req.url,
                       headers: req.headers, body });
            res.writeHead(200, { 'WebHook-Allowed-Origin': '*' });
            res.end();
        });
    });
    return new Promise((ok) => srv.listen(0, '127.0.0.1', () =>
        ok({ srv, got, url: 'http://127.0.0.1:' + srv.address().port })));
}

async function api(method, path, body, b = base,
                   headers = { 'X-Tenant': 'acme' })
{
    const r = await fetch(b + path, {
        method, body: body === undefined ? undefined : JSON.stringify(body),
        headers: Object.assign({ 'Content-Type': 'application/json' }, headers)
    });
    return { status: r.status, json: r.status === 204 ? null : await r.json() };
}

// what the form shows for an error: the server's body, as it came
const shown = (j, status) => status + ' ' + j.error.code + ': '
    + j.error.message + (j.error.field ? ' (field: ' + j.error.field + ')'
                                        : '');

const text = (page, sel) => page.$eval(sel, (x) => x.textContent);

async function until(fn, ms = 10000) {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) {
        const v = await fn();
        if (v) {
            return v;
        }
    }
    return null;
}

async function manageWebhooks(browser) {
    const rx = await receiver();
    const page = await browser.newPage();
    const problems = [];
    const sent = [];
    page.on('console', (m) => {
        if (m.type() === 'error') {
            problems.push(m.text());
        }
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('request', (q) => {
        if (/\/webhooks/.test(q.url()) && q.method() !== 'GET') {
            sent.push({ method: q.method(), url: q.url(),
                        body: q.postData() });
        }
    });
    await browser.defaultBrowserContext().overridePermissions(base,
        ['clipboard-read', 'clipboard-write', 'clipboard-sanitized-write']);

    await page.goto(base + '/console/#webhooks');
    await page.type('#tenant', 'acme');
    await page.click('#auth button');
    await waitFor(page, () => document.querySelectorAll('#webhooks-rows tbody tr').length >= 1);

    // create: a bad url first, the server's 400 beside the form
    await page.click('#wh-new');
    check('manage: "New endpoint" opens the form, focus on the url',
          await page.evaluate(() => !document.querySelector('#wh-form').hidden
                              && document.activeElement.name === 'url'));
    await page.type('#wh-form [name="url"]', 'ftp://nope.example/x');
    await page.type('#wh-form [name="events"]', 'ticket.*');
    await page.click('#wh-save');
    const bad = await api('POST', '/webhooks',
                          { url: 'ftp://nope.example/x', events: ['ticket.*'],
                            format: 'envelope', ordered: false,
                            enabled: true });
    const want = shown(bad.json, bad.status);
    check('manage: a bad url shows the server\'s 400 in the form',
          bad.status === 400 && /field: url/.test(want)
          && await waitFor(page, (w) =>
              document.querySelector('#wh-form-error').textContent === w, want)
          && await page.$eval('#wh-form [name="url"]',
                              (x) => x.getAttribute('aria-invalid')) === 'true',
          { want, got: await text(page, '#wh-form-error') });

    // then every field
    const f = (n) => '#wh-form [name="' + n + '"]';
    await page.$eval(f('url'), (x) => { x.value = ''; });
    await page.type(f('url'), rx.url + '/hook-a');
    await page.$eval(f('events'), (x) => { x.value = ''; });
    await page.type(f('events'), 'ticket.*, session.started');
    await page.type(f('description'), 'Main hook');
    await page.select(f('format'), 'cloudevents');
    await page.type(f('rateLimit'), '5');
    await page.type(f('maxInFlight'), '3');
    await page.select(f('verify'), 'cloudevents');
    await page.click(f('ordered'));
    await page.type(f('headers'), 'X-Api-Key: k1\nX-Team: ops');
    await page.type(f('metadata'), 'region=eu');
    sent.length = 0;
    await page.click('#wh-save');
    const made = await waitFor(page, () =>
        !document.querySelector('#secret').hidden
        && /^whsec_/.test(document.querySelector('#secret-value').value));
    const secret1 = await page.$eval('#secret-value', (x) => x.value);
    const id = (/\((wh_[^)]+)\)/.exec(await text(page, '#endpoint-title'))
                || [])[1];
    check('manage: create sends every field as typed', made && id
          && sent.length === 1 && sent[0].method === 'POST'
          && sent[0].body === JSON.stringify({
              url: rx.url + '/hook-a', events: ['ticket.*', 'session.started'],
              description: 'Main hook', format: 'cloudevents', rateLimit: 5,
              maxInFlight: 3, verify: 'cloudevents', ordered: true,
              enabled: true, metadata: { region: 'eu' },
              headers: { 'X-Api-Key': 'k1', 'X-Team': 'ops' } }),
          { sent, id });
    check('manage: the secret is shown once, with the warning',
          /not shown again/.test(await text(page, '#secret'))
          && await page.$eval('#wh-form', (x) => x.hidden));

    const list = await api('GET', '/webhooks');
    const w = list.json.data.find((x) => x.id === id) || {};
    check('manage: GET /webhooks has it with exactly those fields',
          w.url === rx.url + '/hook-a'
          && JSON.stringify(w.events) === '["ticket.*","session.started"]'
          && w.description === 'Main hook' && w.format === 'cloudevents'
          && w.rateLimit === 5 && w.maxInFlight === 3
          && w.verify === 'cloudevents' && w.verification
          && /^(pending|verified)$/.test(w.verification.state)
          && w.ordered === true
          && w.status === 'enabled'
          && JSON.stringify(w.headers) === '{"X-Api-Key":"(set)","X-Team":"(set)"}'
          && JSON.stringify(w.metadata) === '{"region":"eu"}'
          && w.secret === undefined
          && w.secretHint.slice(-4) === secret1.slice(-4),
          { w });
    check('manage: the list shows it', await waitFor(page, (i) =>
        !!document.querySelector('#webhooks-rows tr[data-id="' + i + '"]'), id));

    // copy, then Done: gone from the page
    await page.click('#secret-copy');
    const clip = await page.evaluate(() => navigator.clipboard.readText()
                                              .catch((e) => String(e)));
    check('manage: Copy puts the secret on the clipboard', clip === secret1
          && /Copied/.test(await text(page, '#secret-info')), { clip });
    await page.click('#secret-done');
    check('manage: Done takes the secret off the page', await page.evaluate(
        (s) => document.querySelector('#secret').hidden
               && document.querySelector('#secret-value').value === ''
               && !document.documentElement.outerHTML.includes(s), secret1));

    // an event: the handshake, then its delivery
    await publish({ type: 'ticket.created', resourceId: 'wh-a',
                    metadata: { region: 'eu' } });
    const verified = await until(async () => {
        const x = (await api('GET', '/webhooks/' + id)).json;
        return x.verification && x.verification.state === 'verified'
               && x.stats.ok === 1 && x;
    });
    check('manage: the receiver passes the handshake, gets the event',
          verified && rx.got[0].method === 'OPTIONS'
          && rx.got[0].headers['x-api-key'] === 'k1',
          { got: rx.got.map((x) => x.method + ' ' + x.url) });

    // edit: the form prefilled; PATCH has only the changed field
    await page.click('#endpoint-edit');
    const pre = await page.evaluate(() => {
        const g = document.querySelector('#wh-form').elements;
        return [g.url.value, g.events.value, g.description.value,
                g.format.value, g.rateLimit.value, g.maxInFlight.value,
                g.verify.value, g.ordered.checked, g.enabled.checked,
                g.metadata.value, g.headers.value,
                document.querySelector('#wh-headers-now').textContent];
    });
    check('manage: Edit prefills the form', JSON.stringify(pre.slice(0, 11))
          === JSON.stringify([rx.url + '/hook-a', 'ticket.*, session.started',
                              'Main hook', 'cloudevents', '5', '3',
                              'cloudevents', true, true, 'region=eu', ''])
          && /X-Api-Key, X-Team/.test(pre[11]), { pre });
    sent.length = 0;
    await page.click('#wh-save');
    check('manage: nothing changed, nothing sent', await waitFor(page, () =>
        document.querySelector('#wh-form-error').textContent
            === 'Nothing changed.') && sent.length === 0);
    await page.$eval(f('description'), (x) => { x.value = ''; });
    await page.type(f('description'), 'Edited hook');
    await page.click('#wh-save');
    await waitFor(page, () => document.querySelector('#wh-form').hidden);
    check('manage: saved, the focus is on "Edit"', await page.evaluate(() =>
        document.activeElement.id === 'endpoint-edit'));
    const after = (await api('GET', '/webhooks/' + id)).json;
    const same = (a, b) => JSON.stringify(Object.assign({}, a, {
        description: 0, updatedAt: 0, stats: 0, verification: 0 }))
        === JSON.stringify(Object.assign({}, b, {
        description: 0, updatedAt: 0, stats: 0, verification: 0 }));
    check('manage: Edit sends PATCH with only that field, and only it '
          + 'changes', sent.length === 1 && sent[0].method === 'PATCH'
          && sent[0].url.endsWith('/webhooks/' + id)
          && sent[0].body === '{"description":"Edited hook"}'
          && after.description === 'Edited hook' && same(after, verified),
          { sent, after });

    // headers: written, they replace them all; "Remove the headers"
    const edit = async (fill) => {
        await page.click('#endpoint-edit');
        await fill();
        sent.length = 0;
        await page.click('#wh-save');
        await waitFor(page, () => document.querySelector('#wh-form').hidden);
        return [sent.map((x) => x.body),
                (await api('GET', '/webhooks/' + id)).json.headers];
    };
    let h = await edit(() => page.type(f('headers'), 'X-New: v2'));
    check('manage: headers written replace them all', JSON.stringify(h)
          === '[["{\\"headers\\":{\\"X-New\\":\\"v2\\"}}"],'
              + '{"X-New":"(set)"}]', { h });
    h = await edit(() => page.click(f('clearHeaders')));
    check('manage: "Remove the headers" sends {}', JSON.stringify(h)
          === '[["{\\"headers\\":{}}"],{}]', { h });

    // disable, enable
    sent.length = 0;
    await page.click('#endpoint-toggle');
    const off = await until(async () => {
        const x = (await api('GET', '/webhooks/' + id)).json;
        return x.status === 'disabled' && x;
    }, 5000);
    check('manage: Disable', off && off.disabledReason === 'manual'
          && sent[0].body === '{"enabled":false}'
          && await waitFor(page, () => document.querySelector(
              '#endpoint-toggle').textContent === 'Enable'), { off });
    await page.click('#endpoint-toggle');
    const on = await until(async () => {
        const x = (await api('GET', '/webhooks/' + id)).json;
        return x.status === 'enabled' && x;
    }, 5000);
    check('manage: Enable', on && sent[1].body === '{"enabled":true}'
          && await waitFor(page, () => document.querySelector(
              '#endpoint-toggle').textContent === 'Disable'));

    // rotate with no grace: the new secret signs, the old one no longer
    await page.type('#rotate-grace', '0');
    await page.click('#endpoint-rotate');
    await waitFor(page, (s) => !document.querySelector('#secret').hidden
        && /^whsec_/.test(document.querySelector('#secret-value').value)
        && document.querySelector('#secret-value').value !== s, secret1);
    const secret2 = await page.$eval('#secret-value', (x) => x.value);
    const rot = (await api('GET', '/webhooks/' + id)).json;
    check('manage: Rotate shows a new secret once; the API has rotated',
          secret2 !== secret1 && /^whsec_/.test(secret2)
          && rot.secretHint.slice(-4) === secret2.slice(-4)
          && rot.previousSecretExpiresAt === null
          && sent[2].body === '{"graceSeconds":0}'
          && /no longer works/.test(await text(page, '#secret-info'))
          && /not shown again/.test(await text(page, '#secret')),
          { rot, info: await text(page, '#secret-info') });

    const n = rx.got.length;
    await page.click('#endpoint-test');
    const ping = await until(() => rx.got.length > n
                                   && rx.got[rx.got.length - 1]);
    let ok2 = false;
    let ok1 = false;
    try {
        ok2 = !!new Webhook(secret2).verify(ping.body, ping.headers);
        ok1 = !!new Webhook(secret1).verify(ping.body, ping.headers);
    } catch (e) {
        /* ok1 stays false */
    }
    check('manage: a delivery after the rotation verifies with the new '
          + 'secret, not the old', ping && ok2 && !ok1,
          { ok1, ok2, headers: ping && ping.headers });

    // delete: a confirm step on the page; Keep keeps it
    await page.click('#endpoint-delete');
    check('manage: Delete asks first, focus on "Keep it"', await page.evaluate(
        () => !document.querySelector('#delete-confirm').hidden
              && document.activeElement.id === 'delete-no'
              && /queued deliveries/.test(
                  document.querySelector('#delete-q').textContent)));
    await page.click('#delete-no');
    await sleep(200);
    check('manage: "Keep it" keeps it',
          (await api('GET', '/webhooks/' + id)).status === 200
          && !sent.some((x) => x.method === 'DELETE'));
    await page.click('#endpoint-delete');
    await page.click('#delete-yes');
    const gone = await until(async () =>
        (await api('GET', '/webhooks/' + id)).status === 404, 5000);
    check('manage: Delete removes it (GET is 404), and from the list',
          gone && await waitFor(page, (i) =>
              !document.querySelector('#webhooks-rows tr[data-id="' + i + '"]')
              && document.querySelector('#endpoint').hidden
              && /^Deleted /.test(
                  document.querySelector('#webhooks-info').textContent), id));

    // on a phone (the page reloads): the form fits
    await page.setViewport({ width: 375, height: 700, isMobile: true,
                             hasTouch: true });
    await waitFor(page, () => !document.querySelector('#webhooks').hidden);
    await page.click('#wh-new');
    await sleep(100);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    check('manage: a phone: the form fits', wide <= 375
          && await page.$eval('#wh-form', (x) => !x.hidden), { wide });

    const unnamed = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, button, textarea')]
            .filter((x) => !x.closest('label') && !x.textContent.trim()
                           && !x.getAttribute('aria-label'))
            .map((x) => x.outerHTML));
    check('manage: every control has a label', unnamed.length === 0,
          { unnamed });
    // Chromium logs each answer >= 400 as an error: the one 400 is ours
    const others = problems.filter((x) => !/status of 400 /.test(x));
    check('manage: no error in the page but the bad url\'s 400',
          others.length === 0 && problems.length === 1, { problems });
    await page.close();
    rx.srv.close();
}

// under events_auth: the token's grant bounds what it may create (403),
// a bad token is 401; both shown in the form, the view goes on.  There
// is no read-only scope for webhooks to test: any valid token of the
// tenant manages the endpoints its "subscribe" grant covers.
async function tokenWebhooks(browser) {
    const page = await browser.newPage();
    const token = jwt({ tenant: 'acme', subscribe: ['ticket.*'] });
    await page.goto(tbase + '/wconsole/#webhooks');
    await page.type('#token', token);
    await page.click('#auth button');
    await waitFor(page, () => document.querySelector('#conn').textContent === 'open');

    const body = { url: 'http://127.0.0.1:9/x', events: ['session.*'],
                   format: 'envelope', ordered: false, enabled: true };
    const r = await api('POST', '/webhooks', body, tbase,
                        { Authorization: 'Bearer ' + token });
    const want = shown(r.json, r.status);
    await page.click('#wh-new');
    await page.type('#wh-form [name="url"]', body.url);
    await page.type('#wh-form [name="events"]', 'session.*');
    await page.click('#wh-save');
    check('manage, token: a pattern outside the grant shows the 403',
          r.status === 403 && await waitFor(page, (x) =>
              document.querySelector('#wh-form-error').textContent === x, want),
          { want, got: await text(page, '#wh-form-error') });

    await page.$eval('#token', (x) => { x.value = 'not.a.token'; });
    await page.click('#auth button');
    await page.click('#wh-new');
    await page.type('#wh-form [name="url"]', body.url);
    await page.type('#wh-form [name="events"]', 'ticket.*');
    await page.click('#wh-save');
    check('manage, token: a bad token shows the 401, the view stays',
          await waitFor(page, () => /^401 invalid_token: .*Enter a token above\.$/
              .test(document.querySelector('#wh-form-error').textContent))
          && await page.evaluate(() => !document.querySelector('#webhooks')
                                        .hidden),
          { got: await text(page, '#wh-form-error') });
    const left = await api('GET', '/webhooks', undefined, tbase,
                           { Authorization: 'Bearer ' + token });
    check('manage, token: nothing was created', left.status === 200
          && !left.json.data.some((x) => x.url === body.url));
    await page.close();
}

async function tokenConsole(browser) {
    const page = await browser.newPage();
    await page.goto(tbase + '/console/');

    check('no token: the page says 401', await waitFor(page, () =>
        /^401 missing_token/.test(document.querySelector('#msg').textContent)));
    check('no token: no status or webhooks tab', await page.evaluate(() =>
        !document.querySelector('#tab-status')
        && !document.querySelector('#tab-webhooks')));

    const token = jwt({ tenant: 'acme', subscribe: ['ticket.*'] });
    await page.type('#token', token);
    await page.click('#auth button');
    check('a token: the stream opens', await waitFor(page, () =>
        document.querySelector('#conn').textContent === 'open'));
    await publish({ type: 'session.started' });
    const t = await publish({ type: 'ticket.closed' });
    await waitFor(page, (id) => [...document.querySelectorAll('#live-rows tbody tr')]
                                    .some((tr) => tr.dataset.id === id), t.id);
    const r = await rows(page, '#live-rows');
    check('a token: only what it grants', r.length === 1
          && r[0][1] === 'ticket.closed', { rows: r });
    check('the token stays in the tab, not in localStorage',
          await page.evaluate(() => localStorage.length === 0
                              && sessionStorage.getItem('events.token').length > 20));
    await page.close();
}

// the CloudEvents handshake in the endpoint view: one receiver allows
// it (and a rate), one refuses it (403), one answers with markup in
// WebHook-Allowed-Origin, which the server quotes in the detail; the
// form turns "verify" on and off.  Everything compared with the API.
async function verifyWebhooks(browser) {
    const got = [];
    const srv = http.createServer((req, res) => {
        got.push(req.method + ' ' + req.url);
        req.resume();
        req.on('end', () => {
            const h = req.method !== 'OPTIONS' ? {}
                : req.url === '/ok' ? { 'WebHook-Allowed-Origin': '*',
                                        'WebHook-Allowed-Rate': '120' }
                : req.url === '/evil'
                  ? { 'WebHook-Allowed-Origin': '<img src=x onerror=alert(1)>' }
                : req.url === '/later' ? { 'WebHook-Allowed-Origin': '*' }
                : null;
            res.writeHead(h ? 200 : 403, h || {});
            res.end();
        });
    });
    const rurl = await new Promise((ok) => srv.listen(0, '127.0.0.1', () =>
        ok('http://127.0.0.1:' + srv.address().port)));
    const none = {};
    const make = async (path, verify) => {
        const r = await api('POST', '/webhooks',
            Object.assign({ url: rurl + path, events: ['v.*'] },
                          verify ? { verify } : {}), vbase, none);
        if (r.status !== 201) {
            check('verify: POST ' + path, false, r);
        }
        return r.json.id;
    };
    const ok = await make('/ok', 'cloudevents');
    const no = await make('/no', 'cloudevents');
    const evil = await make('/evil', 'cloudevents');
    const later = await make('/later');
    const ep = async (id) => (await api('GET', '/webhooks/' + id, undefined,
                                        vbase, none)).json;
    await publish({ type: 'v.one' }, vbase, {});
    const settled = await until(async () => {
        const a = await ep(ok);
        const b = await ep(no);
        const c = await ep(evil);
        return a.verification.state === 'verified' && a.stats.ok === 1
               && b.verification.attempts === 1 && c.verification.error
               && (await ep(later)).stats.ok === 1;
    }, 15000);
    check('verify: the handshakes were made', settled, { got });

    const page = await browser.newPage();
    const problems = [];
    const sent = [];
    page.on('console', (m) => {
        if (m.type() === 'error') {
            problems.push(m.text());
        }
    });
    page.on('pageerror', (e) => problems.push(String(e)));
    page.on('dialog', (d) => {
        problems.push('dialog: ' + d.message());
        d.dismiss();
    });
    page.on('request', (q) => {
        if (/\/webhooks/.test(q.url()) && q.method() !== 'GET') {
            sent.push(q.method() + ' ' + q.postData());
        }
    });
    await page.goto(vbase + '/console/#webhooks');
    await waitFor(page, () =>
        document.querySelectorAll('#webhooks-rows tbody tr').length === 4);

    const view = async (id) => {
        await page.click('#webhooks-rows tr[data-id="' + id + '"] button');
        await waitFor(page, (i) => document.querySelector('#endpoint-title')
                                       .textContent.includes(i), id);
        return page.$$eval('#endpoint-fields dt', (dts) =>
            Object.fromEntries(dts.map((d) => [d.textContent,
                                               d.nextElementSibling
                                                .textContent])));
    };
    const local = (ts) => page.evaluate((x) => new Date(x).toLocaleString(),
                                        ts);
    const pick = (o, keys) => JSON.stringify(keys.map((k) => o[k]));

    let w = await ep(ok);
    let d = await view(ok);
    check('verify: a verified endpoint shows its handshake and stats',
          pick(d, ['verify', 'handshake', 'handshakes', 'verified at',
                   'allowed rate', 'handshake error', 'next handshake',
                   'delivered', 'failed', 'pending', 'last success',
                   'last error'])
          === JSON.stringify(['cloudevents', 'verified', '1',
                              await local(w.verification.at),
                              '120 a minute (WebHook-Allowed-Rate)',
                              undefined, undefined, '1', '0', '0',
                              await local(w.stats.lastSuccessAt), undefined])
          && w.verification.allowedRate === 120, { d, w });

    w = await ep(no);
    d = await view(no);
    check('verify: a refused handshake shows pending, attempts, the error '
          + 'and the next one',
          pick(d, ['handshake', 'handshakes', 'last handshake',
                   'next handshake', 'handshake error', 'delivered',
                   'pending'])
          === JSON.stringify(['pending', '1', await local(w.verification.at),
                              await local(w.verification.nextAttemptAt),
                              'E_HTTP (HTTP 403): the endpoint answered 403',
                              '0', '1'])
          && w.verification.detail === 'the endpoint answered 403'
          && w.verification.nextAttemptAt && /^\d+(\.\d+)? s$/.test(
              d['oldest pending']), { d, w });

    await page.click('#endpoint-toggle');
    const offd = await waitFor(page, () => /status\s*disabled \(manual\)/
        .test(document.querySelector('#endpoint-fields').textContent));
    d = await page.$$eval('#endpoint-fields dt', (dts) =>
        Object.fromEntries(dts.map((x) => [x.textContent,
                                           x.nextElementSibling.textContent])));
    w = await ep(no);
    check('verify: disabled, the next handshake is "when enabled"', offd
          && d['next handshake'] === 'when enabled'
          && w.verification.state === 'pending'
          && w.verification.nextAttemptAt === null, { d, w });

    w = await ep(evil);
    d = await view(evil);
    const markup = await page.evaluate(() => document.querySelectorAll(
        '#endpoint img, #endpoint-fields dd *').length);
    check('verify: markup in the receiver\'s answer is shown as text',
          w.verification.detail.includes('"<img src=x onerror=alert(1)>"')
          && d['handshake error'] === 'E_HTTP (HTTP 200): '
                                      + w.verification.detail
          && markup === 0, { d, w, markup });

    // the form: verify on (PATCH of it alone), then off (null)
    const edit = async (value) => {
        await page.click('#webhooks-rows tr[data-id="' + later + '"] button');
        await page.click('#endpoint-edit');
        await page.select('#wh-form [name="verify"]', value);
        sent.length = 0;
        await page.click('#wh-save');
        await waitFor(page, () => document.querySelector('#wh-form').hidden);
        return sent.slice();
    };
    const before = await ep(later);
    let s = await edit('cloudevents');
    await publish({ type: 'v.two' }, vbase, {});
    w = await until(async () => {
        const x = await ep(later);
        return x.verification && x.verification.state === 'verified'
               && x.stats.ok === 2 && x;
    });
    check('verify: the form turns it on with a PATCH of verify alone',
          before.verify === null && before.verification === null
          && JSON.stringify(s) === '["PATCH {\\"verify\\":\\"cloudevents\\"}"]'
          && w && w.verify === 'cloudevents'
          && got.filter((x) => x === 'OPTIONS /later').length === 1,
          { s, w, got });
    await page.click('#webhooks-refresh');
    check('verify: ... and the view shows it verified', await waitFor(page,
        () => /handshake\s*verified/.test(
            document.querySelector('#endpoint-fields').textContent)));

    s = await edit('');
    w = await ep(later);
    d = await page.$$eval('#endpoint-fields dt', (x) =>
        x.map((e) => e.textContent));
    check('verify: the form turns it off with {"verify": null}',
          JSON.stringify(s) === '["PATCH {\\"verify\\":null}"]'
          && w.verify === null && w.verification === null
          && !d.includes('verify') && !d.includes('handshake')
          && d.includes('delivered'), { s, w, d });

    check('verify: no error in the page', problems.length === 0,
          { problems });
    await page.close();
    srv.close();
}

(async () => {
    const browser = await puppeteer.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage']
    });

    try {
        await tenantConsole(browser);
        await manageWebhooks(browser);
        await tokenConsole(browser);
        await tokenWebhooks(browser);
        await verifyWebhooks(browser);
    } catch (e) {
        check('ran without exception', false, { error: String(e.stack || e) });
    } finally {
        await browser.close();
        say({ done: true });
    }
})();
