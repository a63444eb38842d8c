// Typing, presence and chat rooms (SPEC §7.1), on every configured database.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, ask, call, waitFor, collect, createChat, closeAll } from './helpers.js';

// SUP events carry more fields than these (protocols/sup.md: supersets); the ones named here
// must be exactly as shown.
const fieldsOf = (got, expected) => Object.fromEntries(Object.keys(expected).map((k) => [k, got[k]]));

for (const backend of backends()) {
  describe(`typing, presence and rooms on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { TYPING_TIMEOUT: '600' } }); });
    after(async () => { await srv.stop(); });

    const join = (user, extra = {}) => connect(srv.url, { auth: { token: token(user, extra) } });

    it('relays typing to the other sockets in the chat room and expires it by itself', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice, { username: 'alice_a' });
      const b = await join(bob);
      await call(a, 'chat:join', { chatId: chat });
      await call(b, 'chat:join', { chatId: chat });
      const ownEcho = collect(a, 'message:typing');
      const typing = waitFor(b, 'message:typing');
      await call(a, 'message:typing', { chatId: chat });
      const expected = { chatId: chat, userId: alice, username: 'alice_a' };
      assert.deepEqual(fieldsOf(await typing, expected), expected);
      // No renewal: the server says it stopped (TYPING_TIMEOUT is 600 ms here).
      const expired = await waitFor(b, 'message:stop-typing', () => true, 5000);
      assert.equal(expired.userId, alice);
      // An explicit stop is relayed as well.
      await call(a, 'message:typing', { chatId: chat });
      const stopped = waitFor(b, 'message:stop-typing');
      await call(a, 'message:stop-typing', { chatId: chat });
      assert.equal((await stopped).chatId, chat);
      assert.equal(ownEcho.length, 0);
      closeAll(a, b);
    });

    it('lists the members active in a chat and forgets them when they leave', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const other = await createChat(srv.url, token(alice), 'group', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const joined = await call(b, 'chat:join-multiple', { chatIds: [chat, other, 'not-mine'] });
      assert.deepEqual(joined.joined.sort(), [chat, other].sort());
      assert.equal(joined.failed[0].chatId, 'not-mine');
      assert.equal(joined.failed[0].error.code, 'NOT_FOUND');
      await call(a, 'chat:join', { chatId: chat });
      let active = await call(a, 'chat:get-active-members', { chatId: chat });
      assert.deepEqual(active.members.map((m) => m.userId).sort(), [alice, bob].sort());
      await call(b, 'chat:leave', { chatId: chat });
      active = await call(a, 'chat:get-active-members', { chatId: chat });
      assert.deepEqual(active.members.map((m) => m.userId), [alice]);
      closeAll(a, b);
    });

    it('answers presence:subscribe with current presence and pushes updates to subscribers', async () => {
      const [alice, bob, ghost] = [uid('alice'), uid('bob'), uid('ghost')];
      // Presence is visible to those who share a conversation (README, Limits and hardening).
      await createChat(srv.url, token(alice), 'direct', [bob]);
      await createChat(srv.url, token(alice), 'direct', [ghost]);
      const a = await join(alice);
      const b = await join(bob);
      const current = await call(a, 'presence:subscribe', { userIds: [bob, ghost] });
      const byId = Object.fromEntries(current.presence.map((p) => [p.userId, p]));
      assert.equal(byId[bob].status, 'online');
      assert.equal(byId[ghost].status, 'offline');
      const away = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'away');
      await call(b, 'presence:update', { status: 'away', customStatus: 'lunch' });
      const p = await away;
      assert.equal(p.customStatus, 'lunch');
      assert.ok(!Number.isNaN(Date.parse(p.lastSeen)));
      const bad = await ask(b, 'presence:update', { status: 'sleeping' });
      assert.equal(bad.error.code, 'VALIDATION_FAILED');
      const offline = waitFor(a, 'presence:update', (x) => x.userId === bob && x.status === 'offline');
      b.close();
      const off = await offline;
      assert.ok(off.lastSeen);
      // After unsubscribing, updates stop: a later reconnect of bob is not announced.
      await call(a, 'presence:unsubscribe', { userIds: [bob] });
      const later = collect(a, 'presence:update');
      const b2 = await join(bob);
      await call(b2, 'presence:update', { status: 'busy' });
      const still = await call(a, 'presence:subscribe', { userIds: [ghost] });
      assert.equal(still.presence[0].userId, ghost);
      assert.equal(later.filter((x) => x.userId === bob).length, 0);
      closeAll(a, b2);
    });
  });
}
