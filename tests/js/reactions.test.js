// Reactions (SPEC §7.1): stored once per user, message and emoji, broadcast to the members,
// and part of messages read through message:sync.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, waitFor, collect, settle, createChat, closeAll,
} from './helpers.js';

for (const backend of backends()) {
  describe(`reactions on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    const join = (user) => connect(srv.url, { auth: { token: token(user) } });

    it('broadcasts reaction:new and reaction:remove to every member\'s devices but the reacting socket', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const a = await join(alice);
      const b1 = await join(bob);
      const b2 = await join(bob);
      const c = await join(carol);
      const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'react to me', messageType: 'text' });
      const own = collect(b1, 'reaction:new');
      const seen = [a, b2, c].map((s) => waitFor(s, 'reaction:new'));
      const ack = await call(b1, 'reaction:new', { messageId: m.id, emoji: '👍' });
      assert.equal(ack.messageId, m.id);
      assert.equal(ack.chatId, chat);
      assert.equal(ack.userId, bob);
      assert.equal(ack.emoji, '👍');
      assert.ok(!Number.isNaN(Date.parse(ack.at)));
      for (const got of await Promise.all(seen)) assert.deepEqual(got, ack);
      await settle(b1);
      assert.equal(own.length, 0);

      const removed = [a, b2, c].map((s) => waitFor(s, 'reaction:remove'));
      const gone = await call(b1, 'reaction:remove', { messageId: m.id, emoji: '👍' });
      for (const got of await Promise.all(removed)) {
        assert.deepEqual(got, gone);
        assert.equal(got.emoji, '👍');
        assert.equal(got.userId, bob);
      }
      closeAll(a, b1, b2, c);
    });

    it('refuses a double reaction with CONFLICT and removing a reaction that is not there with NOT_FOUND', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'x', messageType: 'text' });
      await call(b, 'reaction:new', { messageId: m.id, emoji: '🎉' });
      const twice = await ask(b, 'reaction:new', { messageId: m.id, emoji: '🎉' });
      assert.equal(twice.success, false);
      assert.equal(twice.error.code, 'CONFLICT');
      // The same emoji from someone else, or another emoji from the same user, is fine.
      await call(a, 'reaction:new', { messageId: m.id, emoji: '🎉' });
      await call(b, 'reaction:new', { messageId: m.id, emoji: '❤️' });
      const none = await ask(a, 'reaction:remove', { messageId: m.id, emoji: '❤️' });
      assert.equal(none.error.code, 'NOT_FOUND');
      // Racing duplicates: exactly one wins.
      const race = await Promise.all([1, 2, 3].map(() => ask(a, 'reaction:new', { messageId: m.id, emoji: '🔥' })));
      assert.equal(race.filter((r) => r.success).length, 1);
      assert.equal(race.filter((r) => !r.success && r.error.code === 'CONFLICT').length, 2);
      closeAll(a, b);
    });

    it('shows reactions in message:sync, while live message:new keeps its shape', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const live = waitFor(b, 'message:new');
      const m1 = await call(a, 'message:new', { chatId: chat, encryptedContent: 'one', messageType: 'text' });
      assert.equal('reactions' in (await live), false);
      assert.equal('reactions' in m1, false);
      await call(a, 'message:new', { chatId: chat, encryptedContent: 'two', messageType: 'text' });
      await call(b, 'reaction:new', { messageId: m1.id, emoji: '👍' });
      await call(a, 'reaction:new', { messageId: m1.id, emoji: '👍' });
      await call(a, 'reaction:new', { messageId: m1.id, emoji: '😂' });
      const { messages } = await call(b, 'message:sync', { chatId: chat, afterSeq: 0 });
      assert.deepEqual(messages[0].reactions, { '👍': [bob, alice], '😂': [alice] });
      assert.deepEqual(messages[1].reactions, {});
      closeAll(a, b);
    });

    it('checks membership through the message\'s conversation and validates the payload', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const m = await join(mallory);
      const msg = await call(a, 'message:new', { chatId: chat, encryptedContent: 'private', messageType: 'text' });
      for (const event of ['reaction:new', 'reaction:remove']) {
        const res = await ask(m, event, { messageId: msg.id, emoji: '👀' });
        assert.equal(res.error.code, 'FORBIDDEN', event);
      }
      const cases = [
        [{ messageId: 'no-such-message', emoji: '👍' }, 'NOT_FOUND'],
        [{ messageId: msg.id }, 'VALIDATION_FAILED'],
        [{ messageId: msg.id, emoji: '' }, 'VALIDATION_FAILED'],
        [{ messageId: msg.id, emoji: 'a b' }, 'VALIDATION_FAILED'],
        [{ messageId: msg.id, emoji: 'x'.repeat(33) }, 'VALIDATION_FAILED'],
        [{ messageId: msg.id, emoji: 7 }, 'VALIDATION_FAILED'],
      ];
      for (const [payload, code] of cases) {
        const res = await ask(a, 'reaction:new', payload);
        assert.equal(res.error?.code, code, JSON.stringify(payload));
      }
      closeAll(a, m);
    });
  });
}
