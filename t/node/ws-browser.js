// Headless Chromium (Debian's, driven by puppeteer-core) opens PAGE_URL
// and waits until the page's window.log satisfies UNTIL (a JavaScript
// expression over `log`), then prints window.log as JSON; exits 2 if it
// does not within TIMEOUT ms (printing what it has).
// Usage: node ws-browser.js PAGE_URL UNTIL TIMEOUT
'use strict';

const puppeteer = require('puppeteer-core');

const [page_url, until, timeout] = process.argv.slice(2);

(async () => {
    const browser = await puppeteer.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
               '--no-first-run', '--disable-background-networking',
               '--disable-component-update', '--disable-sync',
               '--disable-dev-shm-usage']
    });

    let code = 0;
    let log = [];

    try {
        const page = await browser.newPage();
        await page.goto(page_url);
        try {
            await page.waitForFunction('(() => { const log = window.log; '
                                       + 'return ' + until + '; })()',
                                       { timeout: Number(timeout),
                                         polling: 50 });
        } catch (e) {
            code = 2;
        }
        log = await page.evaluate(() => window.log);
    } finally {
        await browser.close();
    }

    process.stdout.write(JSON.stringify(log) + '\n');
    process.exit(code);
})().catch((e) => {
    process.stderr.write(String(e) + '\n');
    process.exit(3);
});
