// Issue #17's socket findings, with real clients (npm socket.io-client and ws), on every
// configured database: subscriptions bounded per connection and rated per user, presence only
// for those who share a conversation (SUP, Spark, Mrezhen), connections closed when their
// token expires, and payloads that are objects only. The HTTP-only findings are in
// tests/hardening_http.rs.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, waitFor, collect, settle, createChat, closeAll, api,
} from './helpers.js';
import { open, online } from './mrezhen_client.js';

const CAP = 3;
const RATE = 12;
const now = () => Math.floor(Date.now() / 1000);
/** A token already past its `exp` by `late` s, still inside the server's 5 s leeway. */
const expiring = (user, late = 3, extra = {}) => token(user, { exp: now() - late, ...extra });

for (const backend of backends()) {
  describe(`hardening on ${backend}`, () => {
    let srv;
    before(async () => {
      srv = await startServer({
        backend,
        env: { MAX_SUBSCRIPTIONS_PER_CONNECTION: String(CAP), RATE_LIMIT_SUBSCRIPTIONS: `${RATE}/60s` },
      });
    });
    after(async () => { await srv.stop(); });

    const sup = (user, extra = {}) => connect(srv.url, { namespace: '/sup', auth: { token: token(user, extra) } });

    it('presence:subscribe follows only users who share a conversation; strangers come back hidden', async () => {
      const [alice, bob, stranger] = [uid('alice'), uid('bob'), uid('stranger')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      const s = await sup(stranger);
      const b = await sup(bob);
      const a = await sup(alice);
      const seenByStranger = collect(s, 'presence:update');
      const res = await call(s, 'presence:subscribe', { userIds: [alice, bob] });
      assert.deepEqual(res.presence, [], 'nothing about people the stranger shares nothing with');
      assert.deepEqual(res.hidden.sort(), [alice, bob].sort());
      const ok = await call(a, 'presence:subscribe', { userIds: [bob, stranger] });
      assert.deepEqual(ok.presence.map((p) => [p.userId, p.status]), [[bob, 'online']]);
      assert.deepEqual(ok.hidden, [stranger]);
      // Bob's changes reach alice, never the stranger.
      const away = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'away');
      await call(b, 'presence:update', { status: 'away' });
      await away;
      await settle(s);
      assert.equal(seenByStranger.filter((p) => p.userId === bob || p.userId === alice).length, 0);
      closeAll(a, b, s);
    });

    it('bounds the presence and rooms of one connection (MAX_SUBSCRIPTIONS_PER_CONNECTION)', async () => {
      const alice = uid('alice');
      const friends = [uid('f'), uid('f'), uid('f'), uid('f')];
      // Connected first, so that nothing is followed at connect; the chats come after.
      const a = await sup(alice);
      const chats = [];
      for (const f of friends) chats.push(await createChat(srv.url, token(alice), 'direct', [f]));
      await call(a, 'presence:subscribe', { userIds: friends.slice(0, CAP) });
      const over = await ask(a, 'presence:subscribe', { userIds: [friends[CAP]] });
      assert.equal(over.error.code, 'VALIDATION_FAILED');
      assert.match(over.error.message, /MAX_SUBSCRIPTIONS_PER_CONNECTION/);
      // Room for one more once one is dropped; following one already followed costs no room.
      await call(a, 'presence:unsubscribe', { userIds: [friends[0]] });
      await call(a, 'presence:subscribe', { userIds: [friends[CAP], friends[1]] });

      const joined = await call(a, 'chat:join-multiple', { chatIds: chats });
      assert.equal(joined.joined.length, CAP);
      assert.deepEqual(joined.failed.map((f) => f.error.code), ['VALIDATION_FAILED']);
      // The refused room was not joined: alice is not listed as active in it.
      const refused = joined.failed[0].chatId;
      const active = await call(a, 'chat:get-active-members', { chatId: refused });
      assert.deepEqual(active.activeMembers, []);
      closeAll(a);
    });

    it('rates the ids named in subscription-like requests per user, and one request never exceeds the bucket', async () => {
      const carol = uid('carol');
      const c = await sup(carol);
      const unknown = (n) => Array.from({ length: n }, () => uid('nochat'));
      const first = await call(c, 'chat:join-multiple', { chatIds: unknown(RATE - 2) });
      assert.deepEqual([first.joined.length, new Set(first.failed.map((f) => f.error.code))], [0, new Set(['NOT_FOUND'])]);
      const limited = await ask(c, 'chat:join-multiple', { chatIds: unknown(5) });
      assert.equal(limited.error.code, 'RATE_LIMITED');
      assert.match(limited.error.message, /subscriptions, retry in \d+ ms/);
      // Presence subscriptions draw on the same bucket.
      assert.equal((await ask(c, 'presence:subscribe', { userIds: unknown(5) })).error.code, 'RATE_LIMITED');
      // More ids than the whole bucket, or than one call takes, can never pass: refused as such.
      assert.equal((await ask(c, 'chat:join-multiple', { chatIds: unknown(RATE + 1) })).error.code, 'VALIDATION_FAILED');
      assert.equal((await ask(c, 'chat:join-multiple', { chatIds: unknown(600) })).error.code, 'VALIDATION_FAILED');
      assert.ok(c.connected, 'refusals leave the connection open');
      closeAll(c);
    });

    it('Spark sockets and Mrezhen connections see the presence of those who share a conversation only', async () => {
      const [alice, bob, stranger] = [uid('alice'), uid('bob'), uid('stranger')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      const mz = (u) => token(u, { shape: 'mrezhen' });
      const spark = await connect(srv.url, { namespace: '/spark', auth: { token: token(stranger) } });
      const sparkSeen = collect(spark, 'presence_update');
      const s = await online(srv.url, mz(stranger));
      const a = await online(srv.url, mz(alice));
      const b = await online(srv.url, mz(bob));
      // Alice hears bob arrive; the stranger hears nobody but themselves.
      const arrived = await a.next('presence', (f) => f.userId === bob && f.status === 'online');
      assert.ok(arrived.onlineUsers.includes(alice) && arrived.onlineUsers.includes(bob));
      assert.ok(!arrived.onlineUsers.includes(stranger), 'a stranger is not listed');
      const list = await s.request({ type: 'get_online_users' }, 'online_users');
      assert.deepEqual(list.users, [stranger]);
      await b.close();
      await a.next('presence', (f) => f.userId === bob && f.status === 'offline');
      await s.request({ type: 'ping' }, 'pong');
      assert.equal(s.frames.filter((f) => f.type === 'presence' && [alice, bob].includes(f.userId)).length, 0);
      await ask(spark, 'round-trip', {}); // any answer: what was pushed before it has arrived
      assert.equal(sparkSeen.filter((p) => [alice, bob].includes(p.userId)).length, 0);
      // A first message makes them share a conversation: from then on they see each other.
      await s.request({ type: 'direct_message', to: alice, content: 'hello' }, 'message_ack');
      await a.next('direct_message', (f) => f.message.from === stranger);
      const both = await s.request({ type: 'get_online_users' }, 'online_users');
      assert.deepEqual(both.users.sort(), [alice, stranger].sort());
      await Promise.all([a.close(), s.close()]);
      closeAll(spark);
    });

    for (const namespace of ['/sup', '/spark']) {
      it(`closes a ${namespace} socket when its token expires, with TOKEN_EXPIRED first, and takes nothing after`, async () => {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        const socket = await connect(srv.url, { namespace, auth: { token: expiring(alice) } });
        const expired = waitFor(socket, 'error', (e) => e.code === 'TOKEN_EXPIRED', 15000);
        const closed = new Promise((resolve) => socket.once('disconnect', resolve));
        // Send one message after another until the server stops taking them.
        const event = namespace === '/sup' ? 'message:new' : 'send_message';
        const acks = [];
        // The send whose answer never came: taken just before the deadline, its ack lost with
        // the socket the sweep closed meanwhile (a client resends it under the same tempId).
        let unanswered = null;
        for (let i = 0; socket.connected && i < 10000; i++) {
          const payload = namespace === '/sup'
            ? { chatId: chat, encryptedContent: `m${i}`, messageType: 'text', tempId: `t${i}` }
            : { conversationId: chat, content: `m${i}`, tempId: `t${i}` };
          try { acks.push(await socket.timeout(5000).emitWithAck(event, payload)); } catch { unanswered = `t${i}`; break; }
        }
        const error = await expired;
        assert.match(error.message, /token expired/);
        assert.equal(await closed, 'io server disconnect', 'a DISCONNECT: the client must not reconnect with the same token');
        assert.ok(acks.some((r) => r.success), 'the socket worked until its token expired');
        // Once refused, refused: nothing this socket sent afterwards was taken.
        const firstRefusal = acks.findIndex((r) => !r.success);
        if (firstRefusal >= 0) {
          const after = acks.slice(firstRefusal);
          assert.ok(after.every((r) => r.error?.code === 'TOKEN_EXPIRED'), JSON.stringify(after.slice(0, 3)));
        }
        // Read back what was stored: what was acknowledged, and at most the one send whose
        // answer the close cut off; nothing refused.
        const acked = acks.filter((r) => r.success).length;
        const conv = await api(srv.url, token(bob), 'GET', `/api/conversations/${chat}`);
        const stored = conv.body.data.lastSeq;
        if (stored !== acked) {
          assert.equal(stored, acked + 1, `stored ${stored}, acknowledged ${acked}`);
          const newest = await api(srv.url, token(bob), 'GET', `/api/conversations/${chat}/messages?limit=1`);
          assert.equal(newest.body.data.messages[0].tempId, unanswered, 'the extra one is the unanswered send');
        }
      });
    }

    it('closes a Mrezhen connection with 4001 when its token expires', async () => {
      const alice = uid('alice');
      const c = await online(srv.url, expiring(alice, 3, { shape: 'mrezhen' }));
      const { code, reason } = await c.closed;
      assert.deepEqual([code, reason], [4001, 'token expired']);
    });

    it('reads payloads as objects only: an array is refused and stores nothing', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await sup(alice);
      const byPosition = await ask(a, 'message:new', [chat, 'by position', 'text']);
      assert.equal(byPosition.error.code, 'VALIDATION_FAILED');
      const spark = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
      const nested = await ask(spark, 'send_message', { conversationId: chat, type: 'location', location: [48.8, 2.3] });
      assert.equal(nested.error.code, 'VALIDATION_FAILED');
      const m = await open(srv.url, token(alice, { shape: 'mrezhen' }));
      const frame = await m.request(['direct_message', bob, 'hi'], 'message_ack');
      assert.deepEqual([frame.type, frame.code], ['error', 'INVALID_FORMAT']);
      const page = await api(srv.url, token(bob), 'GET', `/api/conversations/${chat}/messages`);
      assert.deepEqual(page.body.data.messages, []);
      assert.ok(a.connected && spark.connected);
      await m.close();
      closeAll(a, spark);
    });

    it('refuses a device id that is not a printable subject id at connect', async () => {
      for (const deviceId of ['phone\u202Eenohp', ' phone', 'a\nb']) {
        await assert.rejects(
          connect(srv.url, { namespace: '/sup', auth: { token: token(uid('dev')), deviceId } }),
          /auth\.deviceId/,
        );
      }
    });
  });
}
