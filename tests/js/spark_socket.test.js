// The spark profile's Socket.IO events (SPEC §7.2) on /spark: sending with and without
// acks, idempotent resends, errors, typing, receipts, presence, edits, deletions, reactions,
// offline delivery, and the rate-limit bucket shared with SUP's message:new.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, waitFor, collect, createChat, closeAll, api, eventually,
} from './helpers.js';

/** One acked round trip (an unknown event is answered too), like helpers' settle for SUP. */
const settle = async (...sockets) => { for (const s of sockets) await ask(s, 'settle', {}); };

for (const backend of backends()) {
  describe(`spark socket events on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    const join = (user, opts = {}) => connect(srv.url, { namespace: '/spark', auth: { token: token(user, opts) } });

    it('acks send_message with the stored message and delivers new_message to everyone else', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a1 = await join(alice);
      const a2 = await join(alice);
      const b = await join(bob);
      const echo = collect(a1, 'new_message');
      const atBob = waitFor(b, 'new_message');
      const atOtherDevice = waitFor(a2, 'new_message');
      const res = await ask(a1, 'send_message', { conversationId: chat, content: 'Hello!', encrypted: true, tempId: 't-1' });
      assert.equal(res.success, true);
      const m = res.data;
      for (const key of ['id', 'conversationId', 'senderId', 'content', 'encrypted', 'attachments', 'reactions', 'edited', 'replyToId', 'seq', 'tempId', 'createdAt']) {
        assert.ok(key in m, `message has ${key}`);
      }
      assert.equal(m.conversationId, chat);
      assert.equal(m.senderId, alice);
      assert.equal(m.encrypted, true);
      assert.equal(m.tempId, 't-1');
      assert.equal(m.type, 'text');
      assert.deepEqual(await atBob, m);
      assert.deepEqual(await atOtherDevice, m);

      // A resend with the same tempId is the same message, delivered once.
      const again = await call(a1, 'send_message', { conversationId: chat, content: 'Hello!', tempId: 't-1' });
      assert.equal(again.id, m.id);
      assert.equal(again.seq, m.seq);
      const more = collect(b, 'new_message');
      await settle(a1, b);
      assert.equal(more.length, 0);
      assert.equal(echo.length, 0, 'the sending socket has the ack, not an echo');
      closeAll(a1, a2, b);
    });

    it('answers bad input with structured errors, through the ack or the error event', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const m = await join(mallory);
      const cases = [
        [{ content: 'no conversation' }, 'VALIDATION_FAILED'],
        [{ conversationId: chat, content: '   ' }, 'EMPTY_CONTENT'],
        [{ conversationId: chat, content: 'x'.repeat(10001) }, 'CONTENT_TOO_LONG'],
        [{ conversationId: chat, content: 'x', type: 'hologram' }, 'VALIDATION_FAILED'],
        [{ conversationId: chat, content: 7 }, 'VALIDATION_FAILED'],
        [{ conversationId: 'no-such-conversation', content: 'x' }, 'NOT_FOUND'],
        [{ conversationId: chat, content: 'x', replyToId: 'nope' }, 'VALIDATION_FAILED'],
        ['not an object', 'VALIDATION_FAILED'],
      ];
      for (const [payload, code] of cases) {
        const res = await ask(a, 'send_message', payload);
        assert.equal(res.success, false, JSON.stringify(payload));
        assert.equal(res.error.code, code, JSON.stringify(payload));
      }
      assert.equal((await ask(m, 'send_message', { conversationId: chat, content: 'let me in' })).error.code, 'FORBIDDEN');
      assert.equal((await ask(m, 'typing_start', { conversationId: chat })).error.code, 'FORBIDDEN');
      assert.equal((await ask(a, 'join_the_party', {})).error.code, 'UNKNOWN_TYPE');
      // Without an ack, the error arrives as an `error` event naming the event.
      const err = waitFor(a, 'error');
      a.emit('send_message', { conversationId: chat, content: '' });
      assert.deepEqual(await err, { code: 'EMPTY_CONTENT', message: 'message content is empty', event: 'send_message' });
      // The connection survived all of it.
      assert.equal((await ask(a, 'send_message', { conversationId: chat, content: 'still here' })).success, true);
      closeAll(a, m);
    });

    it('relays typing_start and typing_stop as user_typing with isTyping, to the other members only', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const a = await join(alice, { username: 'Alice' });
      const b = await join(bob);
      const c = await join(carol);
      const own = collect(a, 'user_typing');
      const seen = [b, c].map((s) => waitFor(s, 'user_typing', (d) => d.isTyping));
      assert.deepEqual(await call(a, 'typing_start', { conversationId: chat }), { conversationId: chat, isTyping: true });
      for (const got of await Promise.all(seen)) {
        assert.deepEqual(got, { conversationId: chat, userId: alice, username: 'Alice', isTyping: true });
      }
      const stopped = [b, c].map((s) => waitFor(s, 'user_typing', (d) => !d.isTyping));
      await call(a, 'typing_stop', { conversationId: chat });
      for (const got of await Promise.all(stopped)) assert.equal(got.userId, alice);
      await settle(a);
      assert.equal(own.length, 0);
      closeAll(a, b, c);
    });

    it('reaches a conversation created after connecting, without any join', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const a = await join(alice);
      const b = await join(bob);
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const typing = waitFor(b, 'user_typing');
      await call(a, 'typing_start', { conversationId: chat });
      assert.equal((await typing).conversationId, chat);
      closeAll(a, b);
    });

    it('sends message_read to the sender when a member marks a message read', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const m = await call(a, 'send_message', { conversationId: chat, content: 'read me' });
      const read = waitFor(a, 'message_read');
      const ack = await call(b, 'mark_read', { conversationId: chat, messageId: m.id });
      assert.equal(ack.userId, bob);
      assert.deepEqual(await read, ack);
      const delivered = waitFor(a, 'message_delivered');
      await call(b, 'mark_delivered', { conversationId: chat, messageId: m.id });
      assert.equal((await delivered).messageId, m.id);
      assert.equal((await ask(b, 'mark_read', { conversationId: chat, messageId: 'nope' })).error.code, 'NOT_FOUND');
      // Reading shows in the unread count.
      const list = await api(srv.url, token(bob), 'GET', '/api/conversations');
      assert.equal(list.body.data.conversations.find((c) => c.id === chat).unreadCount, 0);
      closeAll(a, b);
    });

    it('sends presence_update about the people one shares a conversation with', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const online = waitFor(a, 'presence_update', (p) => p.userId === bob && p.status === 'online');
      const b = await join(bob);
      const p = await online;
      assert.equal(p.customStatus, null);
      assert.ok(!Number.isNaN(Date.parse(p.lastSeen)));
      const offline = waitFor(a, 'presence_update', (x) => x.userId === bob && x.status === 'offline');
      b.close();
      await offline;
      a.close();
    });

    it('edits, deletes and reacts over the socket, and every member hears of it', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const b = await join(bob);
      const m = await call(a, 'send_message', { conversationId: chat, content: 'typo' });
      const updated = waitFor(b, 'message_updated');
      const edited = await call(a, 'edit_message', { messageId: m.id, content: 'fixed' });
      assert.equal(edited.content, 'fixed');
      assert.equal(edited.edited, true);
      assert.ok(edited.editedAt);
      assert.deepEqual(await updated, edited);
      assert.equal((await ask(b, 'edit_message', { messageId: m.id, content: 'mine now' })).error.code, 'FORBIDDEN');

      const added = waitFor(a, 'reaction_added');
      const r = await call(b, 'add_reaction', { messageId: m.id, emoji: '👍' });
      assert.deepEqual(await added, r);
      assert.deepEqual(Object.keys(r).sort(), ['at', 'conversationId', 'emoji', 'messageId', 'userId']);
      const removed = waitFor(a, 'reaction_removed');
      await call(b, 'remove_reaction', { messageId: m.id, emoji: '👍' });
      assert.equal((await removed).emoji, '👍');

      const gone = waitFor(b, 'message_deleted');
      const d = await call(a, 'delete_message', { messageId: m.id, deleteFor: 'everyone' });
      assert.equal(d.deleteFor, 'everyone');
      assert.deepEqual(await gone, d);
      assert.equal((await ask(a, 'delete_message', { messageId: m.id, deleteFor: 'nobody' })).error.code, 'VALIDATION_FAILED');
      closeAll(a, b);
    });

    it('pushes what a member missed when they connect, in order', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(alice);
      const sent = [];
      for (let i = 0; i < 5; i++) sent.push(await call(a, 'send_message', { conversationId: chat, content: `while away ${i}` }));
      const got = [];
      const b = await connect(srv.url, {
        namespace: '/spark',
        auth: { token: token(bob) },
        listen: (s) => s.on('new_message', (m) => got.push(m)),
      });
      await eventually(() => got.length >= 5, 10000, 'the backlog');
      assert.deepEqual(got.map((m) => m.id), sent.map((m) => m.id));
      closeAll(a, b);
    });
  });
}

describe('spark and sup share the message rate limit', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { RATE_LIMIT_MESSAGE_NEW: '3/60s' } }); });
  after(async () => { await srv.stop(); });

  it('refuses the fourth message in a minute, whichever dialect sent the first three', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(alice) } });
    const spark = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
    await call(sup, 'message:new', { chatId: chat, encryptedContent: 'one', messageType: 'text' });
    await call(sup, 'message:new', { chatId: chat, encryptedContent: 'two', messageType: 'text' });
    await call(spark, 'send_message', { conversationId: chat, content: 'three' });
    const refused = await ask(spark, 'send_message', { conversationId: chat, content: 'four' });
    assert.equal(refused.success, false);
    assert.equal(refused.error.code, 'RATE_LIMITED');
    assert.equal((await ask(sup, 'message:new', { chatId: chat, encryptedContent: 'five', messageType: 'text' })).error.code, 'RATE_LIMITED');
    closeAll(sup, spark);
  });
});
