// Membership events (SPEC §7.1): chat:member-joined, chat:member-left and chat:updated, pushed
// to the chat's members whichever way the change was made (here: REST).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, api, waitFor, collect, settle, createChat, closeAll,
} from './helpers.js';

// SUP events carry more fields than these (protocols/sup.md: supersets); the ones named here
// must be exactly as shown.
const fieldsOf = (got, expected) => Object.fromEntries(Object.keys(expected).map((k) => [k, got[k]]));

for (const backend of backends()) {
  describe(`membership events on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    const join = (user) => connect(srv.url, { auth: { token: token(user) } });
    const rest = (user, method, path, body) => api(srv.url, token(user), method, path, body);

    it('announces a member added through REST to every member, the newcomer included', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob], { name: 'team' });
      const a = await join(alice);
      const b = await join(bob);
      const c = await join(carol);
      const joined = [a, b, c].map((s) => waitFor(s, 'chat:member-joined'));
      const updated = [a, b, c].map((s) => waitFor(s, 'chat:updated'));
      const res = await rest(alice, 'POST', `/api/conversations/${chat}/members`, { userId: carol });
      assert.equal(res.status, 201);
      for (const j of await Promise.all(joined)) {
        const expected = { chatId: chat, userId: carol, role: 'member', addedBy: alice };
        assert.deepEqual(fieldsOf(j, expected), expected);
      }
      for (const u of await Promise.all(updated)) {
        assert.equal(u.chatId, chat);
        assert.equal(u.memberCount, 3);
        assert.equal(u.updatedBy, alice);
        assert.equal('name' in u, false, 'only what changed');
      }
      closeAll(a, b, c);
    });

    it('announces a removal to the remaining members and the removed one, who loses access', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const a = await join(alice);
      const b = await join(bob);
      const c = await join(carol);
      await call(c, 'chat:join', { chatId: chat });
      const left = [a, b, c].map((s) => waitFor(s, 'chat:member-left'));
      const updated = waitFor(b, 'chat:updated');
      const res = await rest(alice, 'DELETE', `/api/conversations/${chat}/members/${carol}`);
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.data.participants.map((p) => p.userId).sort(), [alice, bob].sort());
      for (const l of await Promise.all(left)) {
        const expected = { chatId: chat, userId: carol, removedBy: alice };
        assert.deepEqual(fieldsOf(l, expected), expected);
      }
      assert.equal((await updated).memberCount, 2);
      // Carol's socket left the chat room with her membership: no more typing from there.
      const typing = collect(c, 'message:typing');
      await call(b, 'chat:join', { chatId: chat });
      await call(b, 'message:typing', { chatId: chat });
      await settle(c);
      assert.equal(typing.length, 0);
      const refused = await ask(c, 'message:new', { chatId: chat, encryptedContent: 'still here?', messageType: 'text' });
      assert.equal(refused.error.code, 'FORBIDDEN');
      closeAll(a, b, c);
    });

    it('lets a member leave, and hands ownership on when the owner leaves', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      await rest(alice, 'POST', `/api/conversations/${chat}/members`, { userId: uid('dave'), role: 'admin' });
      const b = await join(bob);
      const left = waitFor(b, 'chat:member-left', (l) => l.userId === carol);
      assert.equal((await rest(carol, 'DELETE', `/api/conversations/${chat}/members/${carol}`)).status, 200);
      const expected = { chatId: chat, userId: carol, removedBy: carol };
      assert.deepEqual(fieldsOf(await left, expected), expected);

      const handover = waitFor(b, 'chat:updated', (u) => 'ownerId' in u);
      const res = await rest(alice, 'DELETE', `/api/conversations/${chat}/members/${alice}`);
      assert.equal(res.status, 200);
      const u = await handover;
      const admin = res.body.data.participants.find((p) => p.role === 'owner');
      assert.equal(u.ownerId, admin.userId, 'the admin became owner');
      assert.notEqual(u.ownerId, bob);
      assert.equal(u.memberCount, 2);
      b.close();
    });

    it('announces changed details with chat:updated carrying only the changes', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob], { name: 'old', description: 'keep' });
      const b = await join(bob);
      const updated = waitFor(b, 'chat:updated');
      const res = await rest(alice, 'PATCH', `/api/conversations/${chat}`, { name: 'new', avatar: null });
      assert.equal(res.status, 200);
      assert.equal(res.body.data.name, 'new');
      assert.equal(res.body.data.description, 'keep');
      const u = await updated;
      assert.equal(u.chatId, chat);
      assert.equal(u.name, 'new');
      assert.equal(u.updatedBy, alice);
      assert.equal('description' in u, false);
      assert.equal('memberCount' in u, false);
      b.close();
    });

    it('refuses membership changes that the caller\'s role does not allow', async () => {
      const [alice, bob, carol, mallory] = [uid('alice'), uid('bob'), uid('carol'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const direct = await createChat(srv.url, token(alice), 'direct', [bob]);
      const cases = [
        [bob, 'DELETE', `/api/conversations/${chat}/members/${carol}`, undefined, 403],
        [bob, 'PATCH', `/api/conversations/${chat}`, { name: 'mine' }, 403],
        [mallory, 'DELETE', `/api/conversations/${chat}/members/${mallory}`, undefined, 403],
        [alice, 'DELETE', `/api/conversations/${chat}/members/${mallory}`, undefined, 404],
        [alice, 'DELETE', `/api/conversations/${direct}/members/${bob}`, undefined, 422],
        [alice, 'PATCH', `/api/conversations/${chat}`, { name: 'x'.repeat(101) }, 422],
        [alice, 'POST', `/api/conversations/${chat}/members`, { userId: bob }, 409],
      ];
      for (const [who, method, path, body, status] of cases) {
        const res = await rest(who, method, path, body);
        assert.equal(res.status, status, `${method} ${path} as ${who}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.success, false);
      }
    });
  });
}
