// The `mrezhen` dialect over a real WebSocket client (npm `ws`): every frame type and error
// code of seeds/mrezhen-direct-ws.md and every row of protocols/mrezhen.md, with Mrezhen-shaped
// tokens (`{ userId, name, iss: "mrezhen" }`), on SQLite and PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, token, uid, api, connect, call, closeAll } from './helpers.js';
import { open, online } from './mrezhen_client.js';

const mz = (user, opts = {}) => token(user, { shape: 'mrezhen', ...opts });
const body = (m) => ({ from: m.from, content: m.content });

for (const backend of backends()) {
  describe(`mrezhen on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { RATE_LIMIT_MESSAGES: '100000' } }); });
    after(async () => { await srv.stop(); });

    it('refuses the upgrade with 401 and the running service\'s reasons', async () => {
      const refused = async (tok, opts) => {
        const err = await open(srv.url, tok, opts).then(() => null, (e) => e);
        assert.ok(err, 'the upgrade must be refused');
        return [err.status, err.body];
      };
      assert.deepEqual(await refused(undefined), [401, 'Unauthorized']);
      assert.deepEqual(await refused(mz(uid(), { exp: Math.floor(Date.now() / 1000) - 3600 })), [401, 'Token expired']);
      assert.deepEqual(await refused(mz(uid(), { secret: 'not-the-secret' })), [401, 'Invalid token']);
      assert.deepEqual(await refused('not.a.jwt'), [401, 'Invalid token']);
      assert.deepEqual(await refused(token(undefined, { shape: 'mrezhen' })), [401, 'Missing userId in token']);
      assert.deepEqual(await refused(undefined, { path: '/' }), [401, 'Unauthorized']);
      assert.deepEqual(await refused(mz(uid(), { secret: 'nope' }), { protocol: true }), [401, 'Invalid token']);
    });

    it('serves /ws and upgrades on /, with the token in ?token= or the access_token subprotocol', async () => {
      const user = uid('u');
      const a = await online(srv.url, mz(user));
      const b = await online(srv.url, mz(user), { path: '/' });
      const c = await online(srv.url, mz(user), { path: '/', protocol: true });
      assert.equal(c.ws.protocol, 'access_token', 'the 101 selects access_token');
      assert.equal(a.ws.protocol, '');
      for (const x of [a, b, c]) assert.equal((await x.request({ type: 'ping' }, 'pong')).type, 'pong');
      // A plain GET / is still the demo page; Socket.IO still answers at /socket.io/.
      const page = await fetch(srv.url + '/');
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<html/i);
      const sio = await connect(srv.url, { namespace: '/sup', auth: { token: mz(uid()) } });
      closeAll(sio);
      await Promise.all([a.close(), b.close(), c.close()]);
    });

    it('on connect: presence to everyone who may see it, queued messages once and oldest first, then online_users', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      // Presence is visible to those who share a conversation (README, Limits and hardening):
      // carol and bob have one; alice and bob get theirs with alice's first message.
      await api(srv.url, mz(carol), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] });
      const a = await online(srv.url, mz(alice));
      const c = await online(srv.url, mz(carol));
      const first = await a.request({ type: 'direct_message', to: bob, content: 'one' }, 'message_ack');
      const second = await a.request({ type: 'direct_message', to: bob, content: 'two' }, 'message_ack');
      assert.equal(first.status, 'queued');
      assert.equal(second.status, 'queued');

      const b = await open(srv.url, mz(bob));
      await b.next('online_users');
      const greeting = b.frames.map((f) => f.type);
      assert.deepEqual(greeting, ['presence', 'direct_message', 'direct_message', 'online_users']);
      const [presence, m1, m2, users] = b.frames;
      assert.equal(presence.userId, bob);
      assert.equal(presence.status, 'online');
      for (const u of [alice, bob, carol]) assert.ok(presence.onlineUsers.includes(u), `${u} in onlineUsers`);
      assert.deepEqual([m1.queued, m2.queued], [true, true]);
      assert.deepEqual([body(m1.message), body(m2.message)], [{ from: alice, content: 'one' }, { from: alice, content: 'two' }]);
      assert.deepEqual([m1.message.id, m2.message.id], [first.messageId, second.messageId]);
      assert.equal(typeof m1.message.timestamp, 'number');
      assert.equal(m1.message.to, undefined);
      for (const u of [alice, bob, carol]) assert.ok(users.users.includes(u), `${u} in online_users`);
      // Everyone connected heard bob arrive, once.
      for (const x of [a, c]) {
        const p = await x.next('presence', (f) => f.userId === bob);
        assert.equal(p.status, 'online');
        assert.ok(p.onlineUsers.includes(bob));
      }

      // A second tab: not a first connection, so no presence; the queue was drained.
      const b2 = await open(srv.url, mz(bob));
      await b2.next('online_users');
      assert.deepEqual(b2.frames.map((f) => f.type), ['online_users']);
      await a.request({ type: 'ping' }, 'pong');
      await c.request({ type: 'ping' }, 'pong');
      assert.equal(a.frames.filter((f) => f.type === 'presence' && f.userId === bob).length, 1);

      // Offline presence only when the user's last connection closes.
      await b2.close();
      await b.request({ type: 'ping' }, 'pong');
      await c.request({ type: 'ping' }, 'pong');
      // Only bob's presence counts: users of earlier tests on this server may still be leaving.
      assert.equal(c.frames.filter((f) => f.type === 'presence' && f.userId === bob && f.status === 'offline').length, 0);
      await b.close();
      const gone = await c.next('presence', (f) => f.userId === bob && f.status === 'offline');
      assert.ok(!gone.onlineUsers.includes(bob));
      await Promise.all([a.close(), c.close()]);
    });

    it('delivers to every connection of the recipient and acks delivered', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a = await online(srv.url, mz(alice));
      const a2 = await online(srv.url, mz(alice));
      const b1 = await online(srv.url, mz(bob));
      const b2 = await online(srv.url, mz(bob), { path: '/' });
      const ack = await a.request({ type: 'direct_message', to: bob, content: 'hello' }, 'message_ack');
      assert.deepEqual(
        { type: ack.type, to: ack.to, status: ack.status, ts: typeof ack.timestamp, id: typeof ack.messageId },
        { type: 'message_ack', to: bob, status: 'delivered', ts: 'number', id: 'string' },
      );
      for (const b of [b1, b2]) {
        const got = await b.next('direct_message');
        assert.deepEqual(got.message, { id: ack.messageId, from: alice, content: 'hello', timestamp: ack.timestamp });
        assert.equal(got.queued, undefined, 'a live message is not marked queued');
      }
      // The sender's other tab has no frame for its own message.
      await a2.request({ type: 'ping' }, 'pong');
      assert.equal(a2.frames.filter((f) => f.type === 'direct_message').length, 0);
      // A resend with the same tempId is the same message, stored once.
      const t1 = await a.request({ type: 'direct_message', to: bob, content: 'once', tempId: 't-1' }, 'message_ack');
      const t2 = await a.request({ type: 'direct_message', to: bob, content: 'once', tempId: 't-1' }, 'message_ack');
      assert.equal(t2.messageId, t1.messageId);
      assert.equal(t2.tempId, 't-1');
      const h = await b1.request({ type: 'get_history', with: alice }, 'message_history');
      assert.deepEqual(h.messages.map((m) => m.content), ['hello', 'once']);
      await Promise.all([a, a2, b1, b2].map((x) => x.close()));
    });

    it('validates in the running service\'s order, trims, and keeps the connection open', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a = await online(srv.url, mz(alice));
      const code = async (frame) => {
        const res = await a.request(frame, 'message_ack');
        return res.type === 'error' ? res.code : res.status;
      };
      assert.equal(await code('{not json'), 'INVALID_JSON');
      assert.equal(await code('[1,2]'), 'INVALID_FORMAT');
      assert.equal(await code('"text"'), 'INVALID_FORMAT');
      assert.equal(await code({ to: bob, content: 'x' }), 'MISSING_TYPE');
      assert.equal(await code({ type: 'teleport' }), 'UNKNOWN_TYPE');
      assert.equal(await code({ type: 'direct_message', content: 'x' }), 'MISSING_RECIPIENT');
      assert.equal(await code({ type: 'direct_message', to: '   ', content: 'x' }), 'MISSING_RECIPIENT');
      assert.equal(await code({ type: 'direct_message', to: bob }), 'EMPTY_CONTENT');
      assert.equal(await code({ type: 'direct_message', to: bob, content: '   ' }), 'EMPTY_CONTENT');
      assert.equal(await code({ type: 'direct_message', to: bob, content: 'x'.repeat(5001) }), 'CONTENT_TOO_LONG');
      assert.equal(await code({ type: 'direct_message', to: bob, content: 'x'.repeat(5000) }), 'queued');
      // Validation before the self check.
      assert.equal(await code({ type: 'direct_message', to: alice, content: '' }), 'EMPTY_CONTENT');
      assert.equal(await code({ type: 'direct_message', to: ` ${alice} `, content: 'me' }), 'SELF_MESSAGE');
      const err = await a.request({ type: 'nope' }, 'message_ack');
      assert.deepEqual(Object.keys(err).sort(), ['code', 'message', 'type']);
      // Trimmed `to` and `content`.
      const ack = await a.request({ type: 'direct_message', to: `  ${bob}\t`, content: '  padded  ' }, 'message_ack');
      assert.equal(ack.to, bob);
      const h = await a.request({ type: 'get_history', with: bob }, 'message_history');
      assert.equal(h.messages.at(-1).content, 'padded');
      // Still open.
      const pong = await a.request({ type: 'ping' }, 'pong');
      assert.equal(typeof pong.timestamp, 'number');
      await a.close();
    });

    it('answers get_history with the last messages of the pair, limits clamped, and MISSING_USER', async () => {
      const [alice, bob, stranger] = [uid('alice'), uid('bob'), uid('x')];
      const a = await online(srv.url, mz(alice));
      const b = await online(srv.url, mz(bob));
      for (let i = 0; i < 205; i++) {
        const who = i % 2 ? b : a;
        a.send({ type: 'direct_message', to: bob, content: `m${i}` });
        b.send({ type: 'direct_message', to: alice, content: `r${i}` });
        void who;
      }
      for (let i = 0; i < 205; i++) { await a.next('message_ack'); await b.next('message_ack'); }
      const hist = (frame) => a.request({ type: 'get_history', ...frame }, 'message_history');
      const all = await hist({ with: bob, limit: 200 });
      assert.equal(all.type, 'message_history');
      assert.equal(all.with, bob);
      assert.equal(all.messages.length, 200);
      const ts = all.messages.map((m) => m.timestamp);
      assert.deepEqual(ts, [...ts].sort((x, y) => x - y), 'in time order');
      assert.deepEqual(Object.keys(all.messages[0]).sort(), ['content', 'from', 'id', 'timestamp']);
      assert.equal((await hist({ with: bob })).messages.length, 50);
      assert.equal((await hist({ with: bob, limit: 0 })).messages.length, 50);
      assert.equal((await hist({ with: bob, limit: -3 })).messages.length, 50);
      assert.equal((await hist({ with: bob, limit: 'ten' })).messages.length, 50);
      assert.equal((await hist({ with: bob, limit: 1000 })).messages.length, 200);
      const last3 = await hist({ with: bob, limit: 3 });
      assert.deepEqual(last3.messages, all.messages.slice(-3));
      assert.deepEqual((await hist({ with: stranger })).messages, []);
      const missing = await a.request({ type: 'get_history' }, 'message_history');
      assert.deepEqual([missing.type, missing.code], ['error', 'MISSING_USER']);
      await Promise.all([a.close(), b.close()]);
    });

    it('answers get_online_users and ping', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await api(srv.url, mz(alice), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] });
      const a = await online(srv.url, mz(alice));
      const b = await online(srv.url, mz(bob));
      const users = await a.request({ type: 'get_online_users' }, 'online_users');
      assert.ok(users.users.includes(alice) && users.users.includes(bob));
      await b.close();
      await a.next('presence', (f) => f.userId === bob && f.status === 'offline');
      const after = await a.request({ type: 'get_online_users' }, 'online_users');
      assert.ok(!after.users.includes(bob));
      const before = Date.now();
      const pong = await a.request({ type: 'ping' }, 'pong');
      assert.ok(pong.timestamp >= before - 1000 && pong.timestamp <= Date.now() + 1000);
      await a.close();
    });

    it('closes a connection whose frame exceeds 64 KiB with 1009, and only that one', async () => {
      const user = uid('big');
      const victim = await online(srv.url, mz(user));
      const other = await online(srv.url, mz(user));
      // Just under the limit is a frame like any other.
      const ok = await victim.request({ type: 'ping', pad: 'x'.repeat(60 * 1024) }, 'pong');
      assert.equal(ok.type, 'pong');
      victim.send({ type: 'ping', pad: 'x'.repeat(64 * 1024) });
      const closed = await victim.closed;
      assert.equal(closed.code, 1009);
      assert.equal((await other.request({ type: 'ping' }, 'pong')).type, 'pong');
      await other.close();
    });

    it('survives a slow reader: it is caught up, not closed, and loses nothing', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      // Large messages, so that the kernel's socket buffers fill and the send queue with them.
      const slow = await startServer({ backend, env: { WS_SEND_QUEUE: '2', RATE_LIMIT_MESSAGES: '100000', MAX_MESSAGE_LENGTH: '60000' } });
      try {
        const b = await online(slow.url, mz(bob));
        const sender = await connect(slow.url, { namespace: '/sup', auth: { token: mz(alice) } });
        const chat = (await api(slow.url, mz(alice), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] })).body.data.id;
        b.ws._socket.pause();
        const n = 300;
        const text = 'y'.repeat(59000);
        const sent = [];
        for (let i = 0; i < n; i++) {
          sent.push((await call(sender, 'message:new', { chatId: chat, encryptedContent: `${i}:${text}`, messageType: 'text' })).id);
        }
        const metrics = await (await fetch(slow.url + '/metrics')).text();
        const resyncs = Number((metrics.match(/^\w*slow_consumer_resyncs\w* (\d+)/m) || [])[1]);
        assert.ok(resyncs > 0, `the reader fell behind (slow_consumer_resyncs=${resyncs})`);
        b.ws._socket.resume();
        const got = [];
        for (let i = 0; i < n; i++) got.push((await b.next('direct_message', () => true, 30000)).message.id);
        assert.deepEqual(got, sent, 'every message, once, in order');
        assert.equal((await b.request({ type: 'ping' }, 'pong')).type, 'pong', 'still open');
        closeAll(sender);
        await b.close();
      } finally {
        await slow.stop();
      }
    });
  });
}

describe('mrezhen limits and liveness', () => {
  it('limits every frame per user (RATE_LIMIT_MESSAGES / RATE_LIMIT_WINDOW_MS), checked before validation', async () => {
    const srv = await startServer({ env: { RATE_LIMIT_MESSAGES: '5', RATE_LIMIT_WINDOW_MS: '60000' } });
    try {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a1 = await online(srv.url, mz(alice));
      const a2 = await online(srv.url, mz(alice));
      const b = await online(srv.url, mz(bob));
      assert.equal((await a1.request({ type: 'ping' }, 'pong')).type, 'pong');
      assert.equal((await a1.request('{bad', 'pong')).code, 'INVALID_JSON');
      assert.equal((await a2.request({ type: 'ping' }, 'pong')).type, 'pong');
      assert.equal((await a2.request({ type: 'get_online_users' }, 'online_users')).type, 'online_users');
      assert.equal((await a1.request({ type: 'direct_message', to: bob, content: 'x' }, 'message_ack')).type, 'message_ack');
      // Five frames of this user, on two connections: the sixth is refused, whatever it is.
      const limited = await a2.request('{bad', 'pong');
      assert.deepEqual([limited.type, limited.code], ['error', 'RATE_LIMITED']);
      assert.equal((await a1.request({ type: 'ping' }, 'pong')).code, 'RATE_LIMITED');
      // Another user is not affected, and the connection stays open.
      assert.equal((await b.request({ type: 'ping' }, 'pong')).type, 'pong');
      assert.equal(a1.ws.readyState, 1);
      await Promise.all([a1.close(), a2.close(), b.close()]);
    } finally {
      await srv.stop();
    }
  });

  it('frees the window as it slides', async () => {
    const srv = await startServer({ env: { RATE_LIMIT_MESSAGES: '2', RATE_LIMIT_WINDOW_MS: '700' } });
    try {
      const a = await online(srv.url, mz(uid('alice')));
      assert.equal((await a.request({ type: 'ping' }, 'pong')).type, 'pong');
      assert.equal((await a.request({ type: 'ping' }, 'pong')).type, 'pong');
      const refused = await a.request({ type: 'ping' }, 'pong');
      assert.equal(refused.code, 'RATE_LIMITED');
      const wait = Number(refused.message.match(/retry in (\d+) ms/)[1]);
      assert.ok(wait > 0 && wait <= 700, `retry in ${wait} ms`);
      // Retry when the server says the slot frees (a deadline it gave, not a guess).
      await new Promise((r) => setTimeout(r, wait + 50));
      assert.equal((await a.request({ type: 'ping' }, 'pong')).type, 'pong');
      await a.close();
    } finally {
      await srv.stop();
    }
  });

  it('draws direct_message on the message:new bucket every dialect shares', async () => {
    const srv = await startServer({ env: { RATE_LIMIT_MESSAGES: '1000', RATE_LIMIT_MESSAGE_NEW: '3/60s' } });
    try {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a = await online(srv.url, mz(alice));
      for (let i = 0; i < 2; i++) {
        assert.equal((await a.request({ type: 'direct_message', to: bob, content: `m${i}` }, 'message_ack')).type, 'message_ack');
      }
      const ack = await a.request({ type: 'direct_message', to: bob, content: 'm2' }, 'message_ack');
      const sup = await connect(srv.url, { namespace: '/sup', auth: { token: mz(alice) } });
      const res = await sup.timeout(10000).emitWithAck('message:new', { chatId: ack.conversationId, encryptedContent: 'over', messageType: 'text' });
      assert.equal(res.error?.code, 'RATE_LIMITED', 'the SUP message after three Mrezhen ones is refused');
      const over = await a.request({ type: 'direct_message', to: bob, content: 'm3' }, 'message_ack');
      assert.deepEqual([over.type, over.code], ['error', 'RATE_LIMITED']);
      // Pings draw only on the frame limit.
      assert.equal((await a.request({ type: 'ping' }, 'pong')).type, 'pong');
      closeAll(sup);
      await a.close();
    } finally {
      await srv.stop();
    }
  });

  it('pings at the WebSocket level and closes a connection that missed a pong', async () => {
    const srv = await startServer({ env: { WS_PING_INTERVAL: '300' } });
    try {
      const user = uid('p');
      const healthy = await online(srv.url, mz(user));
      const deaf = await online(srv.url, mz(user), { autoPong: false });
      const closed = await deaf.closed;
      assert.equal(closed.code, 1001);
      assert.ok(deaf.pings >= 1, 'it was pinged first');
      await healthy.pinged(3);
      assert.equal(healthy.ws.readyState, 1, 'a client that answers pings stays');
      assert.equal((await healthy.request({ type: 'ping' }, 'pong')).type, 'pong');
      await healthy.close();
    } finally {
      await srv.stop();
    }
  });

  it('asks for a pong soon after a message is written: a connection dropped seconds later is not pushed it again', async () => {
    // The heartbeat pings every 30 s; without the receipt ping, everything of a connection
    // that lived less than that was unconfirmed and pushed again by the next one.
    const srv = await startServer({ env: { RATE_LIMIT_MESSAGES: '100000' } });
    try {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a = await online(srv.url, mz(alice));
      const b = await online(srv.url, mz(bob));
      const one = await a.request({ type: 'direct_message', to: bob, content: 'one' }, 'message_ack');
      await b.next('direct_message', (f) => f.message.content === 'one');
      await b.pinged(1);
      // Frames are read in order: once this is answered, the pong before it was read.
      assert.equal((await b.request({ type: 'ping' }, 'pong')).type, 'pong');
      b.ws.terminate();
      await b.closed;
      const again = await online(srv.url, mz(bob));
      await a.request({ type: 'direct_message', to: bob, content: 'two' }, 'message_ack');
      // Live messages wait for the catch-up: once 'two' arrived, 'one' would have come first.
      await again.next('direct_message', (f) => f.message.content === 'two');
      const repushed = again.frames.filter((f) => f.type === 'direct_message' && f.message.id === one.messageId);
      assert.deepEqual(repushed, [], 'the confirmed message is not pushed again');
      await Promise.all([a.close(), again.close()]);
    } finally {
      await srv.stop();
    }
  });

  it('closes connections with a close frame at a graceful stop, and exits 0', async () => {
    const srv = await startServer();
    const c = await online(srv.url, mz(uid('s')));
    const stopping = srv.stop('SIGTERM');
    const closed = await c.closed;
    assert.equal(closed.code, 1001);
    assert.equal(await stopping, 0);
  });
});
