// Mrezhen and SUP in one direct conversation (SPEC §5, §7.4): the pair's conversation is the
// one REST and every Socket.IO dialect use; Mrezhen `content` is SUP `encryptedContent`, and
// presence crosses dialects.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, api, call, waitFor, closeAll } from './helpers.js';
import { online } from './mrezhen_client.js';

const mz = (user) => token(user, { shape: 'mrezhen' });

for (const backend of backends()) {
  describe(`mrezhen and sup together on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { RATE_LIMIT_MESSAGES: '100000' } }); });
    after(async () => { await srv.stop(); });

    it('share the direct conversation of the pair, both ways', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(alice, { shape: 'sup' }) } });
      const b = await online(srv.url, mz(bob));
      const atSup = waitFor(sup, 'message:new');
      const ack = await b.request({ type: 'direct_message', to: alice, content: 'from mrezhen' }, 'message_ack');
      assert.equal(ack.status, 'delivered');
      const got = await atSup;
      assert.deepEqual(
        { id: got.id, chatId: got.chatId, senderId: got.senderId, encryptedContent: got.encryptedContent, seq: got.seq },
        { id: ack.messageId, chatId: ack.conversationId, senderId: bob, encryptedContent: 'from mrezhen', seq: ack.seq },
      );
      // REST opens the same conversation for the pair.
      const rest = await api(srv.url, token(alice), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] });
      assert.equal(rest.body.data.id, ack.conversationId);

      const s = await call(sup, 'message:new', { chatId: ack.conversationId, encryptedContent: 'from sup', messageType: 'text' });
      const back = await b.next('direct_message');
      assert.deepEqual(back.message, { id: s.id, from: alice, content: 'from sup', timestamp: Date.parse(s.createdAt) });
      const h = await b.request({ type: 'get_history', with: alice }, 'message_history');
      assert.deepEqual(h.messages.map((m) => [m.from, m.content]), [[bob, 'from mrezhen'], [alice, 'from sup']]);
      closeAll(sup);
      await b.close();
    });

    it('queues SUP messages for an offline Mrezhen user and hears SUP users arrive', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = (await api(srv.url, token(alice), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] })).body.data.id;
      const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(alice) } });
      const m = await call(sup, 'message:new', { chatId: chat, encryptedContent: 'while you were out', messageType: 'text' });
      // Group messages have no place in Mrezhen's protocol; they are not shown as direct ones.
      const group = (await api(srv.url, token(alice), 'POST', '/api/conversations', { type: 'group', name: 'g', participantIds: [bob] })).body.data.id;
      await call(sup, 'message:new', { chatId: group, encryptedContent: 'to the group', messageType: 'text' });
      const b = await online(srv.url, mz(bob));
      const queued = b.frames.filter((f) => f.type === 'direct_message');
      assert.deepEqual(queued.map((f) => [f.message.id, f.message.content, f.queued]), [[m.id, 'while you were out', true]]);
      closeAll(sup);
      const offline = await b.next('presence', (f) => f.userId === alice && f.status === 'offline');
      assert.ok(!offline.onlineUsers.includes(alice));
      const again = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
      const back = await b.next('presence', (f) => f.userId === alice && f.status === 'online');
      assert.ok(back.onlineUsers.includes(alice) && back.onlineUsers.includes(bob));
      closeAll(again);
      await b.close();
    });
  });
}
