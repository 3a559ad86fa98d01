// Runs a scenario of client-scenario.mjs in headless Chromium, with the
// events.js that events_console serves:
//   node client-browser.js PAGE_URL NAME 'JSON ARGS'
// PAGE_URL is a page of the origin under test whose folder also serves
// client-scenario.mjs; args.client is the URL of events.js.  Prints one
// JSON line per report, as client-node.mjs does.
'use strict';

const puppeteer = require('puppeteer-core');

const [pageUrl, name, args] = process.argv.slice(2);
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

(async () => {
    const browser = await puppeteer.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        protocolTimeout: 300000,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage']
    });

    try {
        const page = await browser.newPage();
        page.on('pageerror', (e) => say({ pageerror: String(e) }));
        await page.exposeFunction('say', say);
        await page.goto(pageUrl);
        await page.evaluate(async (name, a) => {
            const { EventsClient } = await import(a.client);
            const { run } = await import('./client-scenario.mjs');
            await run(EventsClient, name, a, (o) => window.say(o));
        }, name, JSON.parse(args));
    } catch (e) {
        say({ failed: String(e.stack || e) });
    } finally {
        await browser.close();
    }
})();
