// events.js (over fetch) beside Chromium's own EventSource, in headless
// Chromium (t/bench/client.pl runs it):  node client-bench-browser.js BASE N
// BASE serves /blank (a page), /console/events.js and /events/stream.
// Each replays the same N events from "earliest", parsing every envelope;
// prints {client, events, ms}, best of 3.
'use strict';

const puppeteer = require('puppeteer-core');

const [base, n] = [process.argv[2], Number(process.argv[3])];

(async () => {
    const browser = await puppeteer.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
    });
    const page = await browser.newPage();
    await page.goto(base + '/blank');
    const out = await page.evaluate(async (n) => {
        const { EventsClient } = await import('/console/events.js');
        const clients = {
            'events.js (Chromium)': (each) => {
                const c = new EventsClient({ lastEventId: 'earliest' });
                c.onAny((ev) => { if (ev.seq) { each(); } });
                return () => c.close();
            },
            'EventSource (Chromium)': (each) => {
                const es = new EventSource('/events/stream?lastEventId=earliest');
                es.onmessage = (m) => { if (JSON.parse(m.data).seq) { each(); } };
                return () => es.close();
            }
        };
        const res = [];
        for (const [name, run] of Object.entries(clients)) {
            let best = null;
            for (let i = 0; i < 3; i++) {
                const r = await new Promise((done) => {
                    const t0 = performance.now();
                    let got = 0;
                    const stop = run(() => {
                        if (++got === n) {
                            stop();
                            done({ events: got,
                                   ms: Math.round(performance.now() - t0) });
                        }
                    });
                });
                if (!best || r.ms < best.ms) {
                    best = r;
                }
            }
            res.push(Object.assign({ client: name }, best));
        }
        return res;
    }, n);
    for (const r of out) {
        console.log(JSON.stringify(r));
    }
    await browser.close();
})();
