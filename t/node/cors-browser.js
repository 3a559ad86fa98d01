// A page on one origin calls the events API on another, in headless
// Chromium: what the page could read is printed as JSON for
// t/27-cors.t.  Usage: node cors-browser.js PAGE_URL API_BASE
'use strict';

const puppeteer = require('puppeteer-core');

const [page_url, api] = process.argv.slice(2);

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
        const page = await browser.newPage();
        await page.goto(page_url);

        const out = await page.evaluate(async (api) => {
            const res = {};

            async function attempt(name, f) {
                try {
                    res[name] = await f();
                } catch (e) {
                    res[name] = { error: String(e) };
                }
            }

            // a JSON POST with a header: preflighted
            await attempt('post', async () => {
                const r = await fetch(api + '/events', {
                    method: 'POST',
                    headers: { 'Content-Type': 'application/json',
                               'X-Tenant': 'acme' },
                    body: JSON.stringify({ type: 'ticket.created',
                                           resourceId: 't-1' })
                });
                const body = await r.json();
                return { status: r.status, location: r.headers.get('Location'),
                         id: body.id };
            });

            await attempt('list', async () => {
                const r = await fetch(api + '/events?limit=1',
                                      { headers: { 'X-Tenant': 'acme' } });
                return { status: r.status,
                         head: r.headers.get('Events-Head'),
                         link: r.headers.get('Link'),
                         n: (await r.json()).data.length };
            });

            // an error answer is readable too
            await attempt('error', async () => {
                const r = await fetch(api + '/events?limit=abc');
                return { status: r.status, code: (await r.json()).error.code };
            });

            // a stream, with EventSource
            await attempt('stream', () => new Promise((resolve) => {
                const es = new EventSource(api + '/events/stream?lastEventId=earliest');
                const timer = setTimeout(() => {
                    es.close();
                    resolve({ error: 'no event in 5 s' });
                }, 5000);
                es.onmessage = (m) => {
                    clearTimeout(timer);
                    es.close();
                    resolve({ data: JSON.parse(m.data).type });
                };
            }));

            // credentials from a listed origin
            await attempt('credentials', async () => {
                const r = await fetch(api + '/events?limit=1',
                                      { credentials: 'include' });
                return { status: r.status };
            });

            return res;
        }, api);

        console.log(JSON.stringify(out));
    } finally {
        await browser.close();
    }
})().catch((e) => {
    console.error(String(e && e.stack || e));
    process.exit(1);
});
