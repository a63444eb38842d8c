// Spark's REST API (SPEC §7.2) over real HTTP: the conversation list, conversation details,
// leaving and clearing, history pages by cursor (also while messages keep arriving), edits
// with history and the edit window, deletion for oneself or everyone, reactions, replies,
// and device keys with verification.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { backends, startServer, connect, token, uid, api, createChat, call, closeAll } from './helpers.js';

/** The verification code a device shows: SHA-256 of its key, first 4 bytes, mod 10^6. */
const codeOf = (publicKey) => String(parseInt(createHash('sha256').update(publicKey.trim()).digest('hex').slice(0, 8), 16) % 1e6).padStart(6, '0');

for (const backend of backends()) {
  describe(`spark REST on ${backend}`, () => {
    let srv;
    let strict; // MESSAGE_EDIT_WINDOW_MINUTES=0, MAX_GROUP_SIZE=3, VERIFY_DEVICE_REQUIRED=false
    before(async () => {
      [srv, strict] = await Promise.all([
        startServer({ backend }),
        startServer({ backend, env: { MESSAGE_EDIT_WINDOW_MINUTES: '0', MAX_GROUP_SIZE: '3', VERIFY_DEVICE_REQUIRED: 'false' } }),
      ]);
    });
    after(async () => { await Promise.all([srv.stop(), strict.stop()]); });

    const rest = (user, method, path, body) => api(srv.url, token(user), method, path, body);
    const send = async (user, chat, body) => {
      const res = await rest(user, 'POST', `/api/conversations/${chat}/messages`, typeof body === 'string' ? { content: body } : body);
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body.data;
    };
    const page = async (user, chat, query = '') => {
      const res = await rest(user, 'GET', `/api/conversations/${chat}/messages${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.data;
    };

    it('refuses every route without a token', async () => {
      for (const [method, path] of [
        ['GET', '/api/conversations'], ['PUT', '/api/conversations/x'], ['DELETE', '/api/conversations/x'],
        ['GET', '/api/conversations/x/messages'], ['POST', '/api/conversations/x/messages'],
        ['PUT', '/api/messages/x'], ['DELETE', '/api/messages/x'], ['GET', '/api/messages/x/edits'],
        ['POST', '/api/messages/x/reactions'], ['DELETE', '/api/messages/x/reactions/y'],
        ['POST', '/api/attachments'], ['GET', '/api/attachments/x'], ['GET', '/api/attachments/x/thumbnail'],
        ['POST', '/api/encryption/keys'], ['GET', '/api/encryption/keys/x'], ['POST', '/api/encryption/verify'],
      ]) {
        const res = await api(srv.url, null, method, path, method === 'GET' || method === 'DELETE' ? undefined : {});
        assert.equal(res.status, 401, `${method} ${path}`);
        assert.equal(res.body.error.code, 'UNAUTHORIZED', `${method} ${path}`);
      }
    });

    it('describes itself in an OpenAPI document', async () => {
      const res = await api(srv.url, null, 'GET', '/api/openapi.json');
      assert.equal(res.status, 200);
      assert.equal(res.body.openapi, '3.1.0');
      assert.ok(res.body.paths['/api/conversations/{id}/messages'].get);
    });

    it('lists conversations most recent first, with participants, last message and unread count', async () => {
      const [me, ann, ben] = [uid('me'), uid('ann'), uid('ben')];
      // Profile claims are stored when a user connects.
      const s = await connect(srv.url, { namespace: '/spark', auth: { token: token(ann, { username: 'ann', avatar: 'https://a.example/ann.png' }) } });
      s.close();
      const withAnn = await createChat(srv.url, token(me), 'direct', [ann]);
      const withBen = await createChat(srv.url, token(me), 'direct', [ben]);
      const group = await createChat(srv.url, token(me), 'group', [ann, ben], { name: 'Team' });
      await send(ann, withAnn, 'hi from ann');
      await send(ann, withAnn, 'are you there?');
      await send(ben, withBen, 'hi from ben');
      await send(me, group, 'hello team');

      const { conversations, hasMore } = (await rest(me, 'GET', '/api/conversations')).body.data;
      assert.equal(hasMore, false);
      assert.deepEqual(conversations.map((c) => c.id), [group, withBen, withAnn]);
      const annChat = conversations[2];
      assert.equal(annChat.type, 'direct');
      assert.equal(annChat.unreadCount, 2);
      assert.equal(annChat.lastMessage.content, 'are you there?');
      assert.equal(annChat.lastMessage.senderId, ann);
      assert.ok(annChat.updatedAt);
      const annHere = annChat.participants.find((p) => p.userId === ann);
      assert.equal(annHere.username, 'ann');
      assert.equal(annHere.avatar, 'https://a.example/ann.png');
      assert.equal(conversations[0].unreadCount, 0, 'one\'s own message is not unread');
      assert.equal(conversations[0].name, 'Team');

      // Paging the list.
      const first = (await rest(me, 'GET', '/api/conversations?limit=2')).body.data;
      assert.equal(first.conversations.length, 2);
      assert.equal(first.hasMore, true);
      const rest2 = (await rest(me, 'GET', `/api/conversations?limit=2&cursor=${encodeURIComponent(first.nextCursor)}`)).body.data;
      assert.deepEqual([...first.conversations, ...rest2.conversations].map((c) => c.id), [group, withBen, withAnn]);
      assert.equal((await rest(me, 'GET', '/api/conversations?cursor=bogus')).body.error.code, 'VALIDATION_FAILED');
      assert.equal((await rest(me, 'GET', '/api/conversations?limit=lots')).body.error.code, 'VALIDATION_FAILED');
    });

    it('shows, updates with PUT, and leaves or clears conversations with DELETE', async () => {
      const [owner, member, stranger] = [uid('owner'), uid('member'), uid('stranger')];
      const group = await createChat(srv.url, token(owner), 'group', [member], { name: 'Old' });
      assert.equal((await rest(stranger, 'GET', `/api/conversations/${group}`)).status, 403);
      assert.equal((await rest(owner, 'GET', '/api/conversations/nope')).status, 404);
      const put = await rest(owner, 'PUT', `/api/conversations/${group}`, { name: 'Team Chat', avatar: 'https://x/y.png', description: 'Our team discussion' });
      assert.equal(put.status, 200);
      assert.equal(put.body.data.name, 'Team Chat');
      assert.equal(put.body.data.description, 'Our team discussion');
      assert.equal((await rest(member, 'PUT', `/api/conversations/${group}`, { name: 'Mine' })).status, 403);

      // Leaving a group.
      const left = await rest(member, 'DELETE', `/api/conversations/${group}`);
      assert.deepEqual(left.body, { success: true, data: { conversationId: group, action: 'left' } });
      assert.equal((await rest(member, 'GET', `/api/conversations/${group}`)).status, 403);
      const after = (await rest(owner, 'GET', `/api/conversations/${group}`)).body.data;
      assert.deepEqual(after.participants.map((p) => p.userId), [owner]);

      // Clearing a direct conversation: gone from my list and history until something new comes.
      const direct = await createChat(srv.url, token(owner), 'direct', [member]);
      await send(member, direct, 'old news');
      const cleared = await rest(owner, 'DELETE', `/api/conversations/${direct}`);
      assert.equal(cleared.body.data.action, 'cleared');
      const ids = async (u) => (await rest(u, 'GET', '/api/conversations')).body.data.conversations.map((c) => c.id);
      assert.ok(!(await ids(owner)).includes(direct));
      assert.deepEqual((await page(owner, direct)).messages, []);
      assert.equal((await page(member, direct)).messages.length, 1, 'the other side keeps its history');
      await send(member, direct, 'news');
      assert.ok((await ids(owner)).includes(direct));
      const back = (await rest(owner, 'GET', '/api/conversations')).body.data.conversations.find((c) => c.id === direct);
      assert.equal(back.unreadCount, 1);
      assert.deepEqual((await page(owner, direct)).messages.map((m) => m.content), ['news']);
      // The same pair still reuses the conversation.
      assert.equal(await createChat(srv.url, token(owner), 'direct', [member]), direct);
    });

    it('adds and removes members with roles, up to MAX_GROUP_SIZE', async () => {
      const [owner, a, b, c] = [uid('owner'), uid('a'), uid('b'), uid('c')];
      const strictApi = (u, m, p, body) => api(strict.url, token(u), m, p, body);
      const group = await createChat(strict.url, token(owner), 'group', [a]);
      const added = await strictApi(owner, 'POST', `/api/conversations/${group}/members`, { userId: b, role: 'admin' });
      assert.equal(added.status, 201);
      assert.equal(added.body.data.participants.find((p) => p.userId === b).role, 'admin');
      const full = await strictApi(owner, 'POST', `/api/conversations/${group}/members`, { userId: c });
      assert.equal(full.status, 409);
      assert.equal(full.body.error.code, 'GROUP_FULL');
      assert.equal((await strictApi(a, 'POST', `/api/conversations/${group}/members`, { userId: c })).status, 403);
      assert.equal((await strictApi(b, 'DELETE', `/api/conversations/${group}/members/${a}`)).status, 200);
      assert.equal((await strictApi(owner, 'POST', `/api/conversations/${group}/members`, { userId: c })).status, 201);
    });

    it('pages through a few hundred messages while more arrive, with no gap or duplicate', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
      const b = await connect(srv.url, { namespace: '/spark', auth: { token: token(bob) } });
      await Promise.all([a, b].map(async (s, k) => {
        for (let i = 0; i < 150; i++) await call(s, 'send_message', { conversationId: chat, content: `before ${k}-${i}` });
      }));

      // Keep both sides sending while a third party reads history page by page.
      let sending = true;
      const writers = [a, b].map(async (s) => {
        let n = 0;
        while (sending && n < 200) await call(s, 'send_message', { conversationId: chat, content: `during ${n++}` });
        return n;
      });
      const seen = [];
      let cursor;
      let top;
      let pages = 0;
      for (;;) {
        const data = await page(alice, chat, `?limit=40${cursor ? `&cursor=${cursor}` : ''}`);
        pages++;
        if (top === undefined) top = data.messages[0].seq;
        assert.ok(data.messages.length <= 40);
        seen.push(...data.messages.map((m) => m.seq));
        if (!data.hasMore) { assert.equal(data.nextCursor, null); break; }
        cursor = data.nextCursor;
      }
      sending = false;
      const during = (await Promise.all(writers)).reduce((x, y) => x + y, 0);
      assert.ok(top >= 300, `the first page starts at the newest message (${top})`);
      assert.deepEqual(seen, Array.from({ length: top }, (_, i) => top - i), 'every seq from the top down to 1, once');
      assert.ok(pages >= 8);
      // Nothing sent meanwhile was lost either: it is all above the first page.
      const fresh = await page(alice, chat, '?limit=100');
      assert.equal(fresh.messages[0].seq, 300 + during);

      // Limits: default 50, capped at 100, at least 1.
      assert.equal((await page(alice, chat)).messages.length, 50);
      assert.equal((await page(alice, chat, '?limit=1000')).messages.length, 100);
      for (const q of ['?limit=0', '?limit=ten', '?cursor=abc', '?cursor=-5']) {
        const res = await rest(alice, 'GET', `/api/conversations/${chat}/messages${q}`);
        assert.equal(res.status, 422, q);
        assert.equal(res.body.error.code, 'VALIDATION_FAILED', q);
      }
      closeAll(a, b);
    });

    it('edits within the window by the sender only, and keeps the edit history', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const m = await send(alice, chat, 'first');
      const e1 = await rest(alice, 'PUT', `/api/messages/${m.id}`, { content: 'second' });
      assert.equal(e1.status, 200);
      assert.equal(e1.body.data.content, 'second');
      assert.equal(e1.body.data.edited, true);
      await rest(alice, 'PUT', `/api/messages/${m.id}`, { content: 'third' });
      const hist = (await rest(bob, 'GET', `/api/messages/${m.id}/edits`)).body.data;
      assert.equal(hist.content, 'third');
      assert.deepEqual(hist.edits.map((e) => [e.previousContent, e.content, e.editorId]), [['first', 'second', alice], ['second', 'third', alice]]);
      assert.ok(hist.edits.every((e) => !Number.isNaN(Date.parse(e.editedAt))));
      const listed = (await page(bob, chat)).messages[0];
      assert.equal(listed.content, 'third');
      assert.equal(listed.edited, true);

      const cases = [
        [bob, { content: 'not yours' }, 403, 'FORBIDDEN'],
        [mallory, { content: 'not a member' }, 403, 'FORBIDDEN'],
        [alice, { content: '  ' }, 422, 'EMPTY_CONTENT'],
        [alice, { content: 'x'.repeat(10001) }, 422, 'CONTENT_TOO_LONG'],
        [alice, {}, 422, 'VALIDATION_FAILED'],
      ];
      for (const [who, body, status, code] of cases) {
        const res = await rest(who, 'PUT', `/api/messages/${m.id}`, body);
        assert.equal(res.status, status, JSON.stringify(body));
        assert.equal(res.body.error.code, code, JSON.stringify(body));
      }
      assert.equal((await rest(alice, 'PUT', '/api/messages/nope', { content: 'x' })).status, 404);
      assert.equal((await rest(mallory, 'GET', `/api/messages/${m.id}/edits`)).status, 403);
    });

    it('refuses edits once the edit window is over', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(strict.url, token(alice), 'direct', [bob]);
      const sent = await api(strict.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: 'set in stone' });
      const res = await api(strict.url, token(alice), 'PUT', `/api/messages/${sent.body.data.id}`, { content: 'changed' });
      assert.equal(res.status, 409);
      assert.equal(res.body.error.code, 'EDIT_WINDOW_EXPIRED');
    });

    it('deletes for oneself or for everyone', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const keep = await send(alice, chat, 'keep');
      const mine = await send(alice, chat, 'hide from bob');
      const oops = await send(alice, chat, 'oops');
      await rest(bob, 'POST', `/api/messages/${oops.id}/reactions`, { emoji: '😬' });
      await rest(alice, 'PUT', `/api/messages/${oops.id}`, { content: 'oops!' });

      const self = await rest(bob, 'DELETE', `/api/messages/${mine.id}`);
      assert.equal(self.status, 200);
      assert.equal(self.body.data.deleteFor, 'self');
      assert.deepEqual((await page(bob, chat)).messages.map((m) => m.id), [oops.id, keep.id]);
      assert.equal((await page(alice, chat)).messages.length, 3, 'only hidden for bob');
      const bobsList = (await rest(bob, 'GET', '/api/conversations')).body.data.conversations.find((c) => c.id === chat);
      assert.equal(bobsList.unreadCount, 2, 'a hidden message is not unread');

      const notYours = await rest(bob, 'DELETE', `/api/messages/${oops.id}?deleteFor=everyone`);
      assert.equal(notYours.status, 403);
      const all = await rest(alice, 'DELETE', `/api/messages/${oops.id}?deleteFor=everyone`);
      assert.equal(all.status, 200);
      assert.equal(all.body.data.deleteFor, 'everyone');
      for (const who of [alice, bob]) {
        const tomb = (await page(who, chat)).messages.find((m) => m.id === oops.id);
        assert.equal(tomb.deleted, true);
        assert.equal(tomb.content, '');
        assert.deepEqual(tomb.reactions, {});
        assert.equal(tomb.seq, oops.seq, 'the seq stays');
      }
      assert.equal((await rest(bob, 'GET', `/api/messages/${oops.id}/edits`)).status, 404, 'no history of deleted text');
      assert.equal((await rest(alice, 'PUT', `/api/messages/${oops.id}`, { content: 'back' })).status, 404);
      assert.equal((await rest(alice, 'DELETE', `/api/messages/${oops.id}?deleteFor=everyone`)).status, 200, 'deleting twice is fine');
      assert.equal((await rest(alice, 'DELETE', `/api/messages/${keep.id}?deleteFor=all`)).body.error.code, 'VALIDATION_FAILED');
      assert.equal((await rest(uid('x'), 'DELETE', `/api/messages/${keep.id}`)).status, 403);
    });

    it('adds and removes reactions over REST, shown in history as emoji → users', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const m = await send(alice, chat, 'react');
      const added = await rest(bob, 'POST', `/api/messages/${m.id}/reactions`, { emoji: '👍' });
      assert.equal(added.status, 201);
      assert.deepEqual(Object.keys(added.body.data).sort(), ['at', 'conversationId', 'emoji', 'messageId', 'userId']);
      await rest(alice, 'POST', `/api/messages/${m.id}/reactions`, { emoji: '👍' });
      await rest(alice, 'POST', `/api/messages/${m.id}/reactions`, { emoji: '❤️' });
      assert.equal((await rest(bob, 'POST', `/api/messages/${m.id}/reactions`, { emoji: '👍' })).body.error.code, 'CONFLICT');
      assert.deepEqual((await page(bob, chat)).messages[0].reactions, { '👍': [bob, alice], '❤️': [alice] });
      const removed = await rest(bob, 'DELETE', `/api/messages/${m.id}/reactions/${encodeURIComponent('👍')}`);
      assert.equal(removed.status, 200);
      assert.deepEqual((await page(bob, chat)).messages[0].reactions, { '👍': [alice], '❤️': [alice] });
      assert.equal((await rest(bob, 'DELETE', `/api/messages/${m.id}/reactions/${encodeURIComponent('👍')}`)).status, 404);
    });

    it('threads replies within a conversation only', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const other = await createChat(srv.url, token(alice), 'self', []);
      const parent = await send(alice, chat, 'question');
      const reply = await send(bob, chat, { content: 'answer', replyToId: parent.id, tempId: 'r-1' });
      assert.equal(reply.replyToId, parent.id);
      assert.equal((await send(bob, chat, { content: 'answer', replyToId: parent.id, tempId: 'r-1' })).id, reply.id, 'tempId makes REST sends idempotent too');
      const stray = await rest(alice, 'POST', `/api/conversations/${other}/messages`, { content: 'x', replyToId: parent.id });
      assert.equal(stray.body.error.code, 'VALIDATION_FAILED');
    });

    it('stores device keys, hands out verified ones, and verifies devices with their code', async () => {
      const [alice, bob, stranger] = [uid('alice'), uid('bob'), uid('stranger')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      const phone = '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEphone\n-----END PUBLIC KEY-----\n';
      const laptop = 'bGFwdG9wLWtleS1iYXNlNjQ=';

      const first = await rest(alice, 'POST', '/api/encryption/keys', { publicKey: phone, deviceId: 'phone' });
      assert.equal(first.status, 201);
      const k = first.body.data;
      assert.equal(k.userId, alice);
      assert.equal(k.deviceId, 'phone');
      assert.equal(k.verified, true, 'a first device is trusted on first use');
      assert.equal(k.fingerprint, createHash('sha256').update(phone.trim()).digest('hex'));
      assert.equal(k.rotationDue, false);
      assert.equal(Date.parse(k.rotateAfter) - Date.parse(k.createdAt), 90 * 86400 * 1000);
      assert.equal((await rest(alice, 'POST', '/api/encryption/keys', { publicKey: phone, deviceId: 'phone' })).status, 200);

      const second = await rest(alice, 'POST', '/api/encryption/keys', { publicKey: laptop, deviceId: 'laptop' });
      assert.equal(second.body.data.verified, false, 'a further device waits for verification');
      const own = (await rest(alice, 'GET', `/api/encryption/keys/${alice}`)).body.data;
      assert.deepEqual(own.keys.map((x) => [x.deviceId, x.verified]), [['phone', true], ['laptop', false]]);
      const seenByBob = (await rest(bob, 'GET', `/api/encryption/keys/${alice}`)).body.data;
      assert.deepEqual(seenByBob.keys.map((x) => x.deviceId), ['phone'], 'VERIFY_DEVICE_REQUIRED hides unverified devices');
      assert.equal((await rest(stranger, 'GET', `/api/encryption/keys/${alice}`)).status, 403);

      const wrong = await rest(alice, 'POST', '/api/encryption/verify', { deviceId: 'laptop', verificationCode: codeOf(phone) === '000000' ? '111111' : '000000' });
      assert.equal(wrong.status, 422);
      assert.equal(wrong.body.error.code, 'VALIDATION_FAILED');
      assert.equal((await rest(alice, 'POST', '/api/encryption/verify', { deviceId: 'tablet', verificationCode: '123456' })).status, 404);
      assert.equal((await rest(bob, 'POST', '/api/encryption/verify', { deviceId: 'laptop', verificationCode: codeOf(laptop) })).status, 404, 'only one\'s own devices');
      const ok = await rest(alice, 'POST', '/api/encryption/verify', { deviceId: 'laptop', verificationCode: codeOf(laptop) });
      assert.equal(ok.status, 200);
      assert.equal(ok.body.data.verified, true);
      assert.deepEqual((await rest(bob, 'GET', `/api/encryption/keys/${alice}`)).body.data.keys.map((x) => x.deviceId), ['phone', 'laptop']);

      // A new key for the device rotates it: verification starts over.
      const rotated = await rest(alice, 'POST', '/api/encryption/keys', { publicKey: 'bmV3LWxhcHRvcC1rZXk=', deviceId: 'laptop' });
      assert.equal(rotated.status, 201);
      assert.equal(rotated.body.data.verified, false);
      for (const body of [{ publicKey: '', deviceId: 'x' }, { publicKey: 'k', deviceId: '' }, { publicKey: 'k'.repeat(9000), deviceId: 'x' }, { deviceId: 'x' }]) {
        assert.equal((await rest(alice, 'POST', '/api/encryption/keys', body)).body.error.code, 'VALIDATION_FAILED', JSON.stringify(body).slice(0, 60));
      }
    });

    it('hands out unverified keys when VERIFY_DEVICE_REQUIRED is off', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await createChat(strict.url, token(alice), 'direct', [bob]);
      await api(strict.url, token(alice), 'POST', '/api/encryption/keys', { publicKey: 'a2V5LW9uZQ==', deviceId: 'one' });
      await api(strict.url, token(alice), 'POST', '/api/encryption/keys', { publicKey: 'a2V5LXR3bw==', deviceId: 'two' });
      const keys = (await api(strict.url, token(bob), 'GET', `/api/encryption/keys/${alice}`)).body.data.keys;
      assert.deepEqual(keys.map((x) => [x.deviceId, x.verified]), [['one', true], ['two', false]]);
    });
  });
}
