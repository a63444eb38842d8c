// SPEC §5 delivery guarantees on one instance, on every configured database.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, waitFor, collect, eventually, createChat, closeAll,
} from './helpers.js';

for (const backend of backends()) {
  describe(`messaging on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    const join = (user) => connect(srv.url, { auth: { token: token(user) } });

    it('delivers to every member and to the sender\'s other devices, not back to the sending socket', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol], { name: 'trio' });
      const a1 = await join(alice);
      const a2 = await join(alice);
      const b = await join(bob);
      const c = await join(carol);
      const echoes = collect(a1, 'message:new');
      const waits = [a2, b, c].map((s) => waitFor(s, 'message:new', (m) => m.tempId === 't-1'));
      const ack = await ask(a1, 'message:new', {
        chatId: chat, encryptedContent: 'hello all', messageType: 'text', tempId: 't-1', metadata: { k: 1 },
      });
      assert.equal(ack.success, true);
      const m = ack.data;
      assert.equal(m.chatId, chat);
      assert.equal(m.senderId, alice);
      assert.equal(m.seq, 1);
      assert.equal(m.tempId, 't-1');
      assert.ok(m.id && !Number.isNaN(Date.parse(m.createdAt)));
      for (const got of await Promise.all(waits)) {
        assert.deepEqual(got, m);
      }
      // One more message must arrive everywhere before we conclude the echo never came.
      const after = waitFor(b, 'message:new', (x) => x.tempId === 't-2');
      await call(a1, 'message:new', { chatId: chat, encryptedContent: 'again', messageType: 'text', tempId: 't-2' });
      await after;
      assert.equal(echoes.length, 0);
      closeAll(a1, a2, b, c);
    });

    it('returns the original message for a resent tempId and never stores or delivers it twice', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const seen = collect(b, 'message:new');
      const payload = { chatId: chat, encryptedContent: 'once', messageType: 'text', tempId: 'dup-1' };
      const [first, second, third] = await Promise.all([call(a, 'message:new', payload), call(a, 'message:new', payload), call(a, 'message:new', payload)]);
      assert.equal(second.id, first.id);
      assert.equal(third.id, first.id);
      assert.equal(second.seq, first.seq);
      const marker = waitFor(b, 'message:new', (m) => m.tempId === 'marker');
      await call(a, 'message:new', { chatId: chat, encryptedContent: 'marker', messageType: 'text', tempId: 'marker' });
      await marker;
      assert.equal(seen.filter((m) => m.tempId === 'dup-1').length, 1);
      const history = await call(a, 'message:sync', { chatId: chat, afterSeq: 0 });
      assert.deepEqual(history.messages.map((m) => m.seq), [1, 2]);
    });

    it('keeps seq gapless and increasing under concurrent senders, and serves exactly what was missed', async () => {
      const users = [uid('p'), uid('q'), uid('r'), uid('s')];
      const chat = await createChat(srv.url, token(users[0]), 'group', users.slice(1));
      const sockets = await Promise.all(users.map(join));
      const perSender = 25;
      const acks = await Promise.all(sockets.flatMap((s, i) => Array.from({ length: perSender }, (_, n) =>
        call(s, 'message:new', { chatId: chat, encryptedContent: `m${i}-${n}`, messageType: 'text', tempId: `g-${i}-${n}` }))));
      const seqs = acks.map((m) => m.seq).sort((x, y) => x - y);
      assert.deepEqual(seqs, Array.from({ length: users.length * perSender }, (_, i) => i + 1));
      // Each sender's own messages keep the order it sent them in.
      for (let i = 0; i < users.length; i++) {
        const mine = acks.filter((m) => m.senderId === users[i]);
        const order = mine.map((m) => Number(m.encryptedContent.split('-')[1]));
        assert.deepEqual(order, [...order].sort((x, y) => x - y));
      }
      const after40 = await call(sockets[1], 'message:sync', { chatId: chat, afterSeq: 40, limit: 200 });
      assert.deepEqual(after40.messages.map((m) => m.seq), Array.from({ length: 60 }, (_, i) => i + 41));
      assert.equal(after40.lastSeq, 100);
      closeAll(sockets);
    });

    it('pushes what an offline member missed when they reconnect, once, in order', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b1 = await join(bob);
      const arriving = waitFor(b1, 'message:new');
      await call(a, 'message:new', { chatId: chat, encryptedContent: 'while online', messageType: 'text' });
      const live = await arriving;
      // As a SUP client does; without it, a message handed to a socket in its last moments
      // may be pushed once more on reconnect (same id), never lost.
      await call(b1, 'message:delivered', { chatId: chat, messageId: live.id });
      await call(a, 'presence:subscribe', { userIds: [bob] });
      const gone = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'offline');
      b1.close();
      await gone;
      for (let i = 0; i < 5; i++) {
        await call(a, 'message:new', { chatId: chat, encryptedContent: `missed ${i}`, messageType: 'text', tempId: `off-${i}` });
      }
      const seen = [];
      const sock = await connect(srv.url, { auth: { token: token(bob) }, listen: (s) => s.on('message:new', (m) => seen.push(m)) });
      await eventually(() => seen.length >= 5, 10000, 'backlog');
      await call(a, 'message:new', { chatId: chat, encryptedContent: 'live again', messageType: 'text', tempId: 'live' });
      await eventually(() => seen.some((m) => m.tempId === 'live'), 10000, 'live message');
      const missed = seen.filter((m) => m.tempId?.startsWith('off-'));
      assert.deepEqual(missed.map((m) => m.tempId), ['off-0', 'off-1', 'off-2', 'off-3', 'off-4']);
      assert.deepEqual(missed.map((m) => m.seq), [2, 3, 4, 5, 6]);
      assert.equal(seen.filter((m) => m.encryptedContent === 'while online').length, 0);
      closeAll(a, sock);
    });

    it('sends delivered and read receipts to the sender; read covers earlier messages', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const m1 = await call(a, 'message:new', { chatId: chat, encryptedContent: 'one', messageType: 'text' });
      const m2 = await call(a, 'message:new', { chatId: chat, encryptedContent: 'two', messageType: 'text' });
      const delivered = waitFor(a, 'message:delivered');
      await call(b, 'message:delivered', { chatId: chat, messageId: m1.id });
      const d = await delivered;
      assert.equal(d.chatId, chat);
      assert.equal(d.messageId, m1.id);
      assert.equal(d.userId, bob);
      assert.ok(!Number.isNaN(Date.parse(d.at)));
      const read = waitFor(a, 'message:read');
      const ack = await call(b, 'message:read', { chatId: chat, messageId: m2.id });
      assert.equal(ack.messageId, m2.id);
      const r = await read;
      assert.equal(r.messageId, m2.id);
      assert.equal(r.userId, bob);
      // A receipt for a message of another chat is refused.
      const other = await createChat(srv.url, token(alice), 'group', [bob]);
      const wrong = await ask(b, 'message:read', { chatId: other, messageId: m1.id });
      assert.equal(wrong.error.code, 'NOT_FOUND');
      closeAll(a, b);
    });

    it('refuses non-members everywhere', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const m = await join(mallory);
      for (const [event, payload] of [
        ['message:new', { chatId: chat, encryptedContent: 'let me in', messageType: 'text' }],
        ['message:typing', { chatId: chat }],
        ['chat:join', { chatId: chat }],
        ['chat:get-active-members', { chatId: chat }],
        ['message:sync', { chatId: chat, afterSeq: 0 }],
      ]) {
        const res = await ask(m, event, payload);
        assert.equal(res.success, false, event);
        assert.equal(res.error.code, 'FORBIDDEN', event);
      }
      const missing = await ask(m, 'message:new', { chatId: 'no-such-chat', encryptedContent: 'x', messageType: 'text' });
      assert.equal(missing.error.code, 'NOT_FOUND');
      m.close();
    });

    it('answers malformed payloads with a structured error and keeps the connection working', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const cases = [
        ['a number', 42, 'VALIDATION_FAILED'],
        ['a string', 'hello', 'VALIDATION_FAILED'],
        ['an array', [1, 2], 'VALIDATION_FAILED'],
        ['null', null, 'VALIDATION_FAILED'],
        ['missing chatId', { encryptedContent: 'x', messageType: 'text' }, 'VALIDATION_FAILED'],
        ['chatId of the wrong type', { chatId: 7, encryptedContent: 'x', messageType: 'text' }, 'VALIDATION_FAILED'],
        ['content of the wrong type', { chatId: chat, encryptedContent: { a: 1 }, messageType: 'text' }, 'VALIDATION_FAILED'],
        ['an unknown messageType', { chatId: chat, encryptedContent: 'x', messageType: 'sticker-bomb' }, 'VALIDATION_FAILED'],
        ['empty content', { chatId: chat, encryptedContent: '   ', messageType: 'text' }, 'EMPTY_CONTENT'],
        ['oversize content', { chatId: chat, encryptedContent: 'x'.repeat(10001), messageType: 'text' }, 'CONTENT_TOO_LONG'],
        ['metadata that is not an object', { chatId: chat, encryptedContent: 'x', messageType: 'text', metadata: [1] }, 'VALIDATION_FAILED'],
        ['a reply to a message elsewhere', { chatId: chat, encryptedContent: 'x', messageType: 'text', replyToId: 'nope' }, 'VALIDATION_FAILED'],
        ['a huge tempId', { chatId: chat, encryptedContent: 'x', messageType: 'text', tempId: 't'.repeat(500) }, 'VALIDATION_FAILED'],
      ];
      for (const [what, payload, code] of cases) {
        const res = await ask(a, 'message:new', payload);
        assert.equal(res.success, false, what);
        assert.equal(res.error.code, code, what);
        assert.equal(typeof res.error.message, 'string', what);
      }
      // Without an ack callback, the error arrives as an `error` event naming the event.
      const err = waitFor(a, 'error');
      a.emit('message:new', { chatId: chat });
      const e = await err;
      assert.equal(e.code, 'VALIDATION_FAILED');
      assert.equal(e.event, 'message:new');
      // Unknown events are answered too.
      const unknown = await ask(a, 'no:such-event', {});
      assert.equal(unknown.error.code, 'UNKNOWN_TYPE');
      // Exactly 10,000 characters is fine, and the connection still works.
      const ok = await call(a, 'message:new', { chatId: chat, encryptedContent: 'x'.repeat(10000), messageType: 'text' });
      assert.equal(ok.seq, 1);
      assert.ok(a.connected);
      a.close();
    });
  });
}
