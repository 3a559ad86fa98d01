// The console (events_console) in headless Chromium, used as a person
// would: keyboard and clicks.  Prints one JSON line per check
// ({check, ok, ...}) and {done: true} for t/37-console.t.
//   node console-browser.js BASE TOKEN_BASE
// BASE serves /console/ with X-Tenant tenancy and webhooks; TOKEN_BASE
// serves it under events_auth (key "s3cret-one").
'use strict';

const crypto = require('crypto');
const puppeteer = require('puppeteer-core');

const [base, tbase] = process.argv.slice(2);
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
        await tokenConsole(browser);
    } catch (e) {
        check('ran without exception', false, { error: String(e.stack || e) });
    } finally {
        await browser.close();
        say({ done: true });
    }
})();
