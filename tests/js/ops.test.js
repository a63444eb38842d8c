// Transports, namespaces, static client, CORS, health, metrics and graceful shutdown.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, connect, token, uid, call, waitFor, createChat, eventually, closeAll } from './helpers.js';

describe('operations', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { CORS_ORIGIN: 'http://app.example' } }); });
  after(async () => { await srv.stop(); });

  it('works over long-polling only, websocket only, and polling upgraded to websocket', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const b = await connect(srv.url, { auth: { token: token(bob) }, transports: ['websocket'] });
    for (const [transports, expected] of [[['polling'], 'polling'], [['websocket'], 'websocket'], [['polling', 'websocket'], 'websocket']]) {
      const a = await connect(srv.url, { auth: { token: token(alice) }, transports });
      await eventually(() => a.io.engine.transport.name === expected, 10000, `transport ${expected}`);
      const got = waitFor(b, 'message:new', (m) => m.encryptedContent === expected + transports.length);
      await call(a, 'message:new', { chatId: chat, encryptedContent: expected + transports.length, messageType: 'text' });
      await got;
      a.close();
    }
    b.close();
  });

  it('serves the sup profile on /sup as well as on /', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = await connect(srv.url, { namespace: '/sup', auth: { token: token(alice) } });
    const b = await connect(srv.url, { auth: { token: token(bob) } });
    const got = waitFor(b, 'message:new');
    await call(a, 'message:new', { chatId: chat, encryptedContent: 'from /sup', messageType: 'text' });
    assert.equal((await got).encryptedContent, 'from /sup');
    closeAll(a, b);
  });

  it('greets with `connected` before anything else', async () => {
    const me = uid('greet');
    const first = [];
    const s = await connect(srv.url, { auth: { token: token(me) }, listen: (sock) => sock.onAny((ev, data) => first.push([ev, data])) });
    await eventually(() => first.length > 0, 5000, 'greeting');
    assert.equal(first[0][0], 'connected');
    assert.equal(first[0][1].userId, me);
    assert.equal(first[0][1].socketId, s.id);
    assert.ok(!Number.isNaN(Date.parse(first[0][1].serverTime)));
    s.close();
  });

  it('serves the Socket.IO browser client like the Node server does', async () => {
    const res = await fetch(srv.url + '/socket.io/socket.io.js');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /javascript/);
    assert.match(await res.text(), /Socket\.IO v4/);
  });

  it('answers CORS preflights that ask for the Authorization header', async () => {
    const res = await fetch(srv.url + '/api/conversations', {
      method: 'OPTIONS',
      headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' },
    });
    assert.ok(res.status < 300);
    assert.equal(res.headers.get('access-control-allow-origin'), 'http://app.example');
    assert.match(res.headers.get('access-control-allow-headers'), /authorization/i);
    const other = await fetch(srv.url + '/api/conversations', {
      method: 'OPTIONS',
      headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  });

  it('reports health and Prometheus metrics', async () => {
    const s = await connect(srv.url, { auth: { token: token(uid()) } });
    await call(s, 'presence:update', { status: 'busy' });
    const health = await (await fetch(srv.url + '/health')).json();
    assert.equal(health.status, 'healthy');
    assert.ok(health.connections.active >= 1);
    assert.ok(health.connections.total >= health.connections.active);
    assert.ok(health.connections.peak >= health.connections.active);
    assert.equal(health.database.ok, true);
    assert.equal(typeof health.uptime, 'number');
    const text = await (await fetch(srv.url + '/metrics')).text();
    assert.match(text, /switchboard_connections_active \d+/);
    assert.match(text, /switchboard_events_total\{event="presence:update"\} \d+/);
    assert.match(text, /switchboard_event_duration_seconds_bucket\{/);
    s.close();
  });
});

describe('graceful shutdown', () => {
  it('exits 0 on SIGTERM, closing transports so that clients reconnect, and keeps what was acked', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-graceful-'));
    const databaseUrl = `sqlite://${join(dir, 'keep.db')}?mode=rwc`;
    const srv = await startServer({ databaseUrl });
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = io(srv.url, { auth: { token: token(alice) }, forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
    await new Promise((r) => a.once('connect', r));
    const acked = [];
    let sending = true;
    const pump = (async () => {
      for (let i = 0; sending && i < 10000; i++) {
        try {
          const r = await a.timeout(2000).emitWithAck('message:new', { chatId: chat, encryptedContent: `n${i}`, messageType: 'text', tempId: `gs-${i}` });
          if (r.success) acked.push(r.data);
        } catch { break; }
      }
    })();
    await eventually(() => acked.length >= 20, 10000, 'some traffic');
    const reason = new Promise((r) => a.once('disconnect', r));
    const code = await srv.stop('SIGTERM');
    sending = false;
    assert.equal(code, 0);
    // Not "io server disconnect": an unchanged client reconnects (to another instance).
    assert.equal(await reason, 'transport close');
    a.close();
    await pump;
    // Every acknowledged message is in the database, once: restart on the same file and read.
    const again = await startServer({ databaseUrl });
    const b = await connect(again.url, { auth: { token: token(bob) } });
    const history = [];
    for (let after = 0; ; ) {
      const page = await call(b, 'message:sync', { chatId: chat, afterSeq: after, limit: 200 });
      history.push(...page.messages);
      if (page.messages.length === 0) break;
      after = page.lastSeq;
    }
    const ids = new Set(history.map((m) => m.id));
    assert.equal(ids.size, history.length);
    for (const m of acked) assert.ok(ids.has(m.id), `acked ${m.id} missing`);
    assert.deepEqual(history.map((m) => m.seq), history.map((_, i) => i + 1));
    b.close();
    await again.stop();
    rmSync(dir, { recursive: true, force: true });
  });
});
