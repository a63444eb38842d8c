// A Mrezhen client for the tests: the npm `ws` WebSocket with promise helpers that always time
// out instead of hanging. Every frame is recorded from the moment the socket exists, so frames
// sent right after the upgrade (presence, queued messages, online_users) are never missed.
import WebSocket from 'ws';

export const wsUrl = (httpUrl, path = '/ws') => httpUrl.replace(/^http/, 'ws') + path;

export class Client {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.taken = new Set();
    this.waiters = [];
    this.pings = 0;
    ws.on('message', (data) => {
      let frame;
      try { frame = JSON.parse(String(data)); } catch { frame = { unparsable: String(data) }; }
      this.frames.push(frame);
      this.wake();
    });
    ws.on('ping', () => { this.pings += 1; this.wake(); });
    this.closed = new Promise((resolve) => ws.once('close', (code, reason) => { resolve({ code, reason: String(reason) }); this.wake(); }));
  }

  wake() { for (const w of [...this.waiters]) w(); }

  send(frame) { this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)); }

  /** Takes the first frame not taken yet that matches `pred`, waiting up to `timeout`. */
  take(pred, timeout = 10000, what = 'frame') {
    return new Promise((resolve, reject) => {
      const check = () => {
        const i = this.frames.findIndex((f, k) => !this.taken.has(k) && pred(f));
        if (i < 0) return false;
        this.taken.add(i);
        done();
        resolve(this.frames[i]);
        return true;
      };
      const done = () => { clearTimeout(timer); this.waiters = this.waiters.filter((w) => w !== waiter); };
      const waiter = () => { check(); };
      const timer = setTimeout(() => { done(); reject(new Error(`timed out waiting for ${what}; frames: ${JSON.stringify(this.frames).slice(0, 2000)}`)); }, timeout);
      this.waiters.push(waiter);
      check();
    });
  }

  /** The next untaken frame of `type`. */
  next(type, pred = () => true, timeout = 10000) {
    return this.take((f) => f.type === type && pred(f), timeout, type);
  }

  /** Sends a frame and resolves with its answer: the next `type` or `error` frame. */
  request(frame, type) {
    this.send(frame);
    return this.take((f) => f.type === type || f.type === 'error', 10000, `${type} or error`);
  }

  /** Resolves once `n` server pings arrived. */
  async pinged(n, timeout = 10000) {
    const deadline = Date.now() + timeout;
    while (this.pings < n) {
      if (Date.now() > deadline) throw new Error(`only ${this.pings} pings`);
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, 200); });
    }
  }

  close() { this.ws.close(); return this.closed; }
}

/**
 * Opens a Mrezhen connection. The token goes in `?token=` (as the browser client does), or in
 * the subprotocol pair `access_token, <jwt>` with `{ protocol: true }`. Rejects with
 * `{ status, body }` when the server refuses the upgrade.
 */
export function open(url, tok, { path = '/ws', protocol = false, query, ...options } = {}) {
  let target = wsUrl(url, path);
  const params = new URLSearchParams(query);
  if (tok !== undefined && !protocol) params.set('token', tok);
  if ([...params].length) target += '?' + params;
  const ws = new WebSocket(target, protocol ? ['access_token', tok] : undefined, options);
  const client = new Client(ws);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('open timed out')); }, 10000);
    ws.once('open', () => { clearTimeout(timer); resolve(client); });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => {
        clearTimeout(timer);
        reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${body}`), { status: res.statusCode, body }));
      });
    });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** Opens a connection and waits for its greeting to end (`online_users`). */
export async function online(url, tok, opts) {
  const c = await open(url, tok, opts);
  await c.next('online_users');
  return c;
}
