// The Mrezhen page (examples/mrezhen/index.html) in headless Chromium: opened from disk as the
// seed's client-example.html is, it connects to ws://HOST:PORT/?token=… and two tabs chat.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { startServer, token, uid, chromiumMissing, launchChromium } from './helpers.js';

const skip = chromiumMissing;
const PAGE = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'mrezhen', 'index.html')).href;

describe('the Mrezhen page in Chromium', { skip }, () => {
  let srv;
  let browser;
  before(async () => {
    srv = await startServer();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await srv?.stop();
  });

  it('lets two people chat, with queued messages and presence', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const open = async (user, other) => {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(PAGE);
      await page.fill('#server', srv.url.replace('http', 'ws'));
      await page.fill('#token', token(user, { shape: 'mrezhen' }));
      await page.fill('#to', other);
      await page.click('#connect');
      await page.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 10000 });
      return { page, errors };
    };
    const a = await open(alice, bob);
    await a.page.fill('#text', 'before you came');
    await a.page.press('#text', 'Enter');
    await a.page.waitForSelector(`#log >> text=✓ queued to ${bob}`, { timeout: 10000 });

    const b = await open(bob, alice);
    await b.page.waitForSelector(`#log >> text=${alice}: before you came (queued)`, { timeout: 10000 });
    await a.page.waitForSelector(`#log >> text=${bob} is online`, { timeout: 10000 });
    await b.page.waitForFunction((u) => document.getElementById('online').textContent.includes(u), alice, { timeout: 10000 });

    await b.page.fill('#text', 'hello from the browser');
    await b.page.press('#text', 'Enter');
    await a.page.waitForSelector(`#log >> text=${bob}: hello from the browser`, { timeout: 10000 });
    await b.page.waitForSelector(`#log >> text=✓ delivered to ${alice}`, { timeout: 10000 });

    await a.page.click('#history');
    await a.page.waitForSelector(`#log >> text=— history with ${bob} —`, { timeout: 10000 });
    await b.page.close();
    await a.page.waitForSelector(`#log >> text=${bob} is offline`, { timeout: 10000 });
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});
