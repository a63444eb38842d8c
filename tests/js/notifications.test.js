// Notifications (SPEC §7.1): mentions, being added to a chat, read / clear / clear-all /
// get-pending, and nobody touching anyone else's.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, api, waitFor, collect, settle, createChat, closeAll,
} from './helpers.js';

for (const backend of backends()) {
  describe(`notifications on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    const join = (user) => connect(srv.url, { auth: { token: token(user) } });

    it('notifies mentioned members, but not the sender, outsiders or members not mentioned', async () => {
      const [alice, bob, carol, mallory] = [uid('alice'), uid('bob'), uid('carol'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const a = await join(alice);
      const b = await join(bob);
      const c = await join(carol);
      const m = await join(mallory);
      const noise = [a, c, m].map((s) => collect(s, 'notification:new'));
      const mention = waitFor(b, 'notification:new');
      const msg = await call(a, 'message:new', {
        chatId: chat, encryptedContent: 'hey @bob', messageType: 'text',
        metadata: { mentions: [bob, alice, mallory, 42] },
      });
      const n = await mention;
      assert.equal(n.type, 'mention');
      assert.deepEqual(n.data, { chatId: chat, messageId: msg.id, senderId: alice });
      assert.equal(n.read, false);
      assert.ok(n.id && !Number.isNaN(Date.parse(n.createdAt)));
      await settle(a, c, m);
      for (const seen of noise) assert.equal(seen.length, 0);
      // A resend of the same tempId is the same message: no second notification.
      const again = collect(b, 'notification:new');
      const payload = { chatId: chat, encryptedContent: 'once', messageType: 'text', tempId: 'mention-1', metadata: { mentions: [bob] } };
      await call(a, 'message:new', payload);
      await call(a, 'message:new', payload);
      await settle(b);
      assert.equal(again.length, 1);
      closeAll(a, b, c, m);
    });

    it('notifies members of a new group, except its creator, and a member added later', async () => {
      const [alice, bob, carol, dave] = [uid('alice'), uid('bob'), uid('carol'), uid('dave')];
      const a = await join(alice);
      const b = await join(bob);
      const d = await join(dave);
      const own = collect(a, 'notification:new');
      const addedB = waitFor(b, 'notification:new');
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol], { name: 'g' });
      const nb = await addedB;
      assert.equal(nb.type, 'added_to_chat');
      assert.deepEqual(nb.data, { chatId: chat, addedBy: alice, role: 'member' });
      const addedD = waitFor(d, 'notification:new');
      const res = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/members`, { userId: dave, role: 'admin' });
      assert.equal(res.status, 201);
      assert.deepEqual((await addedD).data, { chatId: chat, addedBy: alice, role: 'admin' });
      // Carol was offline: it waits for her.
      const c = await join(carol);
      const pending = await call(c, 'notification:get-pending', {});
      assert.equal(pending.notifications.length, 1);
      assert.equal(pending.notifications[0].type, 'added_to_chat');
      await settle(a);
      assert.equal(own.length, 0);
      closeAll(a, b, c, d);
    });

    it('reads, clears and lists only the caller\'s own notifications', async () => {
      const [alice, bob, eve] = [uid('alice'), uid('bob'), uid('eve')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, eve]);
      const a = await join(alice);
      const b = await join(bob);
      const e = await join(eve);
      for (let i = 0; i < 3; i++) {
        await call(a, 'message:new', { chatId: chat, encryptedContent: `@bob ${i}`, messageType: 'text', metadata: { mentions: [bob] } });
      }
      let pending = (await call(b, 'notification:get-pending', {})).notifications;
      // The group's added_to_chat plus three mentions, newest first.
      assert.equal(pending.length, 4);
      assert.equal(pending[3].type, 'added_to_chat');
      const times = pending.map((n) => Date.parse(n.createdAt));
      assert.deepEqual(times, [...times].sort((x, y) => y - x));
      assert.equal((await call(b, 'notification:get-pending', { limit: 2 })).notifications.length, 2);
      const [first, second] = pending;

      const read = await call(b, 'notification:read', { notificationId: first.id });
      assert.equal(read.id, first.id);
      assert.equal(read.read, true);
      pending = (await call(b, 'notification:get-pending', {})).notifications;
      assert.equal(pending.some((n) => n.id === first.id), false, 'read ones are not pending');

      // Eve may neither read nor clear Bob's notification, and it stays as it was.
      for (const event of ['notification:read', 'notification:clear']) {
        const res = await ask(e, event, { notificationId: second.id });
        assert.equal(res.success, false);
        assert.equal(res.error.code, 'NOT_FOUND', event);
      }
      pending = (await call(b, 'notification:get-pending', {})).notifications;
      assert.ok(pending.some((n) => n.id === second.id && n.read === false));
      // Eve's clear-all clears only her own.
      const evePending = (await call(e, 'notification:get-pending', {})).notifications.length;
      assert.equal((await call(e, 'notification:clear-all', {})).cleared, evePending);
      assert.equal((await call(b, 'notification:get-pending', {})).notifications.length, pending.length);

      assert.deepEqual(await call(b, 'notification:clear', { notificationId: second.id }), { notificationId: second.id });
      const twice = await ask(b, 'notification:clear', { notificationId: second.id });
      assert.equal(twice.error.code, 'NOT_FOUND');
      const missing = await ask(b, 'notification:read', {});
      assert.equal(missing.error.code, 'VALIDATION_FAILED');

      // clear-all without any payload, as a client naturally emits it.
      const all = await b.timeout(10000).emitWithAck('notification:clear-all');
      assert.equal(all.success, true);
      assert.equal(all.data.cleared, 3, 'the read one and the two still pending');
      assert.deepEqual((await call(b, 'notification:get-pending', {})).notifications, []);
      closeAll(a, b, e);
    });
  });
}
