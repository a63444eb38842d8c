// The demo page at `/`, driven in headless Chromium: it loads the Socket.IO client the
// server serves, connects with a token, creates a chat over REST and chats with a second tab.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, token, uid, chromiumMissing, launchChromium } from './helpers.js';

const skip = chromiumMissing;

describe('the demo page in Chromium', { skip }, () => {
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

  it('lets two people chat', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const open = async (user) => {
      const page = await browser.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(srv.url + '/');
      await page.fill('#token', token(user));
      await page.click('#connect');
      await page.waitForFunction(() => document.getElementById('status').textContent === 'connected', null, { timeout: 10000 });
      return { page, errors };
    };
    const a = await open(alice);
    await a.page.fill('#other', bob);
    await a.page.click('#create');
    await a.page.waitForFunction(() => document.getElementById('chat').value.length > 0, null, { timeout: 10000 });
    const chat = await a.page.inputValue('#chat');
    await a.page.click('#join');
    await a.page.waitForSelector('#log >> text=joined');

    const b = await open(bob);
    await b.page.fill('#chat', chat);
    await b.page.click('#join');
    await b.page.waitForSelector('#log >> text=joined');

    await a.page.fill('#text', 'hello from the browser');
    await a.page.press('#text', 'Enter');
    await b.page.waitForSelector(`#log >> text=${alice}: hello from the browser`, { timeout: 10000 });
    await a.page.waitForSelector(`#log >> text=${alice}: hello from the browser`);
    if (process.env.DEMO_SCREENSHOT) await b.page.screenshot({ path: process.env.DEMO_SCREENSHOT });
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});
