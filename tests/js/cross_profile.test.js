// One hub for every dialect (SPEC §5, §7.2): a Spark client on /spark and a SUP client on
// /sup in one conversation see each other's messages, edits, deletions, reactions, receipts,
// typing and presence, each in its own event names and shapes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, api, call, waitFor, createChat, closeAll } from './helpers.js';

// SUP events carry more fields than these (protocols/sup.md: supersets); the ones named here
// must be exactly as shown.
const fieldsOf = (got, expected) => Object.fromEntries(Object.keys(expected).map((k) => [k, got[k]]));

for (const backend of backends()) {
  describe(`spark and sup together on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    async function pair() {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const spark = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice, { username: 'alice' }) } });
      const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob, { username: 'bob' }) } });
      await call(sup, 'chat:join', { chatId: chat });
      return { alice, bob, chat, spark, sup };
    }

    it('delivers messages both ways', async () => {
      const { alice, bob, chat, spark, sup } = await pair();
      const atSup = waitFor(sup, 'message:new');
      const m = await call(spark, 'send_message', { conversationId: chat, content: 'from spark', tempId: 's-1' });
      const got = await atSup;
      assert.deepEqual(
        { id: got.id, chatId: got.chatId, senderId: got.senderId, encryptedContent: got.encryptedContent, messageType: got.messageType, seq: got.seq, tempId: got.tempId },
        { id: m.id, chatId: chat, senderId: alice, encryptedContent: 'from spark', messageType: 'text', seq: m.seq, tempId: 's-1' },
      );
      const atSpark = waitFor(spark, 'new_message');
      const s = await call(sup, 'message:new', { chatId: chat, encryptedContent: 'from sup', messageType: 'text' });
      const back = await atSpark;
      assert.equal(back.id, s.id);
      assert.equal(back.conversationId, chat);
      assert.equal(back.senderId, bob);
      assert.equal(back.content, 'from sup');
      assert.equal(back.seq, m.seq + 1);
      closeAll(spark, sup);
    });

    it('announces edits and deletions to both dialects', async () => {
      const { alice, bob, chat, spark, sup } = await pair();
      const m = await call(spark, 'send_message', { conversationId: chat, content: 'draft' });
      const updated = waitFor(sup, 'message:updated');
      await call(spark, 'edit_message', { messageId: m.id, content: 'final' });
      const u = await updated;
      assert.equal(u.id, m.id);
      assert.equal(u.encryptedContent, 'final');
      assert.ok(u.editedAt);

      // Bob edits his own message over REST; the Spark client hears message_updated.
      const s = await call(sup, 'message:new', { chatId: chat, encryptedContent: 'teh', messageType: 'text' });
      const sparkUpdated = waitFor(spark, 'message_updated');
      await api(srv.url, token(bob), 'PUT', `/api/messages/${s.id}`, { content: 'the' });
      const su = await sparkUpdated;
      assert.equal(su.content, 'the');
      assert.equal(su.edited, true);

      const deleted = waitFor(sup, 'message:deleted');
      await call(spark, 'delete_message', { messageId: m.id, deleteFor: 'everyone' });
      assert.deepEqual(
        (({ chatId, messageId, seq, deletedBy, forEveryone }) => ({ chatId, messageId, seq, deletedBy, forEveryone }))(await deleted),
        { chatId: chat, messageId: m.id, seq: m.seq, deletedBy: alice, forEveryone: true },
      );
      const sparkDeleted = waitFor(spark, 'message_deleted');
      await api(srv.url, token(bob), 'DELETE', `/api/messages/${s.id}?deleteFor=everyone`);
      assert.equal((await sparkDeleted).messageId, s.id);

      // SUP's history shows what happened.
      const { messages } = await call(sup, 'message:sync', { chatId: chat, afterSeq: 0 });
      assert.deepEqual(messages.map((x) => [x.encryptedContent, x.deleted === true]), [['', true], ['', true]]);
      closeAll(spark, sup);
    });

    it('relays reactions and receipts across dialects', async () => {
      const { alice, bob, chat, spark, sup } = await pair();
      const m = await call(spark, 'send_message', { conversationId: chat, content: 'react' });
      const added = waitFor(spark, 'reaction_added');
      await call(sup, 'reaction:new', { messageId: m.id, emoji: '🎉' });
      assert.deepEqual(
        (({ messageId, conversationId, userId, emoji }) => ({ messageId, conversationId, userId, emoji }))(await added),
        { messageId: m.id, conversationId: chat, userId: bob, emoji: '🎉' },
      );
      const supReaction = waitFor(sup, 'reaction:new');
      await call(spark, 'add_reaction', { messageId: m.id, emoji: '👍' });
      assert.equal((await supReaction).userId, alice);
      const removed = waitFor(sup, 'reaction:remove');
      await api(srv.url, token(alice), 'DELETE', `/api/messages/${m.id}/reactions/${encodeURIComponent('👍')}`);
      assert.equal((await removed).emoji, '👍');

      const read = waitFor(spark, 'message_read');
      await call(sup, 'message:read', { chatId: chat, messageId: m.id });
      assert.equal((await read).userId, bob);
      const s = await call(sup, 'message:new', { chatId: chat, encryptedContent: 'read this', messageType: 'text' });
      const supRead = waitFor(sup, 'message:read');
      await call(spark, 'mark_read', { conversationId: chat, messageId: s.id });
      const r = await supRead;
      assert.equal(r.userId, alice);
      assert.equal(r.messageId, s.id);
      closeAll(spark, sup);
    });

    it('relays typing and presence across dialects', async () => {
      const { alice, bob, chat, spark, sup } = await pair();
      const sparkTyping = waitFor(spark, 'user_typing', (t) => t.isTyping);
      await call(sup, 'message:typing', { chatId: chat });
      assert.deepEqual(await sparkTyping, { conversationId: chat, userId: bob, username: 'bob', isTyping: true });
      const sparkStopped = waitFor(spark, 'user_typing', (t) => !t.isTyping);
      await call(sup, 'message:stop-typing', { chatId: chat });
      assert.equal((await sparkStopped).userId, bob);

      const supTyping = waitFor(sup, 'message:typing');
      await call(spark, 'typing_start', { conversationId: chat });
      const expected = { chatId: chat, userId: alice, username: 'alice' };
      assert.deepEqual(fieldsOf(await supTyping, expected), expected);
      const supStopped = waitFor(sup, 'message:stop-typing');
      await call(spark, 'typing_stop', { conversationId: chat });
      assert.equal((await supStopped).userId, alice);

      const away = waitFor(spark, 'presence_update', (p) => p.userId === bob && p.status === 'away');
      await call(sup, 'presence:update', { status: 'away', customStatus: 'lunch' });
      assert.equal((await away).customStatus, 'lunch');
      await call(sup, 'presence:subscribe', { userIds: [alice] });
      const gone = waitFor(sup, 'presence:update', (p) => p.userId === alice && p.status === 'offline');
      spark.close();
      await gone;
      sup.close();
    });
  });
}
