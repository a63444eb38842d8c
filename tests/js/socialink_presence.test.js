// Socialink presence (§6) and typing (§7) over real HTTP: the core's presence and typing,
// shared with every dialect. Live pushes are checked on a SUP client of the same
// conversation (until part 1's WebSocket carries `presence` and `typing` frames).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, api, call, waitFor, eventually, createChat, closeAll } from './helpers.js';

const v1 = (srv, who, method, path, body) => api(srv.url, who === null ? null : token(who), method, '/api/v1' + path, body);
const presence = async (srv, asker, user) => (await v1(srv, asker, 'GET', `/presence/${user}`)).body;
const onlineCount = async (srv, asker) => (await v1(srv, asker, 'GET', '/presence/online-count')).body.online_count;

for (const backend of backends()) {
  describe(`socialink presence and typing on ${backend}`, () => {
    let srv;
    let brief;
    before(async () => {
      [srv, brief] = await Promise.all([
        startServer({ backend }),
        // REST `online` lapses after a second, typing after 300 ms.
        startServer({ backend, env: { PRESENCE_TIMEOUT_SECONDS: '1', TYPING_TIMEOUT: '300' } }),
      ]);
    });
    after(async () => { await Promise.all([srv.stop(), brief.stop()]); });

    it('online, status, offline: read back by those who share a conversation, counted, unknown users are Offline', async () => {
      const [alice, bob, nobody, stranger] = [uid('alice'), uid('bob'), uid('nobody'), uid('stranger')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      assert.deepEqual(await presence(srv, bob, nobody), { user_id: nobody, status: 'Offline', last_seen: null, custom_status: null });
      const before = await onlineCount(srv, bob);

      const on = await v1(srv, alice, 'PUT', `/presence/online/${alice}`, { device_id: 'phone' });
      assert.equal(on.status, 200);
      assert.deepEqual(on.body, { success: true, status: 'online' });
      let p = await presence(srv, bob, alice);
      assert.equal(p.status, 'Online');
      assert.ok(!Number.isNaN(Date.parse(p.last_seen)));
      assert.equal(await onlineCount(srv, bob), before + 1);
      // Someone who shares no conversation with alice sees her as an unknown user (the
      // core's visibility rule), though the count includes her.
      assert.deepEqual(await presence(srv, stranger, alice), { user_id: alice, status: 'Offline', last_seen: null, custom_status: null });

      const status = await v1(srv, alice, 'PUT', `/presence/status/${alice}`, { custom_status: 'at lunch', status: 'away' });
      assert.equal(status.status, 200);
      assert.deepEqual(status.body, { success: true });
      p = await presence(srv, bob, alice);
      assert.equal(p.status, 'Away');
      assert.equal(p.custom_status, 'at lunch');
      // Without `status` the chosen one stays; `null` clears the custom status.
      await v1(srv, alice, 'PUT', `/presence/status/${alice}`, { custom_status: null });
      p = await presence(srv, bob, alice);
      assert.equal(p.status, 'Away');
      assert.equal(p.custom_status, null);
      assert.equal((await v1(srv, alice, 'PUT', `/presence/online/${alice}`, { status: 'BUSY' })).status, 200);
      assert.equal((await presence(srv, bob, alice)).status, 'Busy');
      assert.equal((await v1(srv, alice, 'PUT', `/presence/status/${alice}`, { custom_status: 'x'.repeat(255) })).status, 200);

      for (const body of [{ custom_status: 'x'.repeat(256) }, { custom_status: 'a', status: 'Offline' }, { custom_status: 7 }, { status: 'sleeping' }]) {
        const refused = await v1(srv, alice, 'PUT', `/presence/status/${alice}`, body);
        assert.equal(refused.status, 400, JSON.stringify(body));
        assert.equal(refused.body.code, 'VALIDATION_FAILED');
      }

      const off = await v1(srv, alice, 'PUT', `/presence/offline/${alice}`);
      assert.equal(off.status, 200);
      assert.deepEqual(off.body, { success: true, status: 'offline' });
      p = await presence(srv, bob, alice);
      assert.equal(p.status, 'Offline');
      assert.ok(!Number.isNaN(Date.parse(p.last_seen)));
      assert.equal(await onlineCount(srv, bob), before);
    });

    it('refuses acting as someone else (403) and anonymous callers (401)', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      for (const [method, path, body] of [
        ['PUT', `/presence/online/${bob}`, {}],
        ['PUT', `/presence/offline/${bob}`, undefined],
        ['PUT', `/presence/status/${bob}`, { custom_status: 'x' }],
      ]) {
        const res = await v1(srv, alice, method, path, body);
        assert.equal(res.status, 403, path);
        assert.equal(res.body.code, 'FORBIDDEN');
      }
      assert.equal((await presence(srv, bob, bob)).status, 'Offline', 'nothing was written');
      for (const [method, path] of [['GET', `/presence/${bob}`], ['GET', '/presence/online-count'], ['POST', '/presence/bulk']]) {
        const res = await v1(srv, null, method, path, method === 'GET' ? undefined : []);
        assert.equal(res.status, 401, path);
        assert.equal(res.body.code, 'UNAUTHORIZED');
      }
    });

    it('bulk answers in request order, as a bare array or {user_ids}, at most 500', async () => {
      const [alice, bob, ghost, carol] = [uid('alice'), uid('bob'), uid('ghost'), uid('carol')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      await v1(srv, alice, 'PUT', `/presence/online/${alice}`);
      const bob1 = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        for (const body of [[ghost, alice, bob], { user_ids: [ghost, alice, bob] }]) {
          const res = await v1(srv, alice, 'POST', '/presence/bulk', body);
          assert.equal(res.status, 200);
          assert.equal(res.body.count, 3);
          assert.deepEqual(res.body.presences.map((p) => [p.user_id, p.status]), [[ghost, 'Offline'], [alice, 'Online'], [bob, 'Online']]);
        }
        // carol shares nothing with bob: he reads as an unknown user to her.
        const hers = await v1(srv, carol, 'POST', '/presence/bulk', [bob, carol]);
        assert.deepEqual(hers.body.presences.map((p) => [p.user_id, p.status, p.last_seen]), [[bob, 'Offline', null], [carol, 'Offline', null]]);
        const many = Array.from({ length: 501 }, (_, i) => `u${i}`);
        assert.equal((await v1(srv, alice, 'POST', '/presence/bulk', many)).status, 400);
        assert.equal((await v1(srv, alice, 'POST', '/presence/bulk', many.slice(0, 500))).body.count, 500);
        assert.equal((await v1(srv, alice, 'POST', '/presence/bulk', { users: [] })).status, 400);
        assert.equal((await v1(srv, alice, 'POST', '/presence/bulk', [1, 2])).status, 400);
      } finally {
        closeAll(bob1);
        await v1(srv, alice, 'PUT', `/presence/offline/${alice}`);
      }
    });

    it('a REST online lapses unless renewed, and users who share a conversation hear both changes', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await createChat(brief.url, token(alice), 'direct', [bob]);
      const bobSup = await connect(brief.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        const cameOnline = waitFor(bobSup, 'presence:update', (p) => p.userId === alice && p.status === 'online');
        await v1(brief, alice, 'PUT', `/presence/online/${alice}`);
        await cameOnline;
        const wentOffline = waitFor(bobSup, 'presence:update', (p) => p.userId === alice && p.status === 'offline');
        await wentOffline;
        assert.equal((await presence(brief, bob, alice)).status, 'Offline');
      } finally {
        closeAll(bobSup);
      }
    });

    it("a connection of any dialect keeps the user Online; REST offline then makes them appear offline", async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      await createChat(srv.url, token(alice), 'direct', [bob]);
      const aliceSup = await connect(srv.url, { namespace: '/sup', auth: { token: token(alice) } });
      const bobSup = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        assert.equal((await presence(srv, bob, alice)).status, 'Online');
        const hidden = waitFor(bobSup, 'presence:update', (p) => p.userId === alice && p.status === 'offline');
        await v1(srv, alice, 'PUT', `/presence/offline/${alice}`);
        await hidden;
        assert.equal((await presence(srv, bob, alice)).status, 'Offline');
        const back = waitFor(bobSup, 'presence:update', (p) => p.userId === alice && p.status === 'online');
        await v1(srv, alice, 'PUT', `/presence/online/${alice}`);
        await back;
        assert.equal((await presence(srv, bob, alice)).status, 'Online');
      } finally {
        closeAll(aliceSup, bobSup);
      }
    });

    it('typing: PUT, GET, DELETE for members; SUP members hear typing and stop-typing', async () => {
      const [alice, bob, eve] = [uid('alice'), uid('bob'), uid('eve')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const bobSup = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        await call(bobSup, 'chat:join', { chatId: chat });
        const typing = waitFor(bobSup, 'message:typing', (t) => t.chatId === chat && t.userId === alice);
        const put = await v1(srv, alice, 'PUT', `/typing/${chat}/${alice}`);
        assert.equal(put.status, 200);
        assert.deepEqual(put.body, { success: true });
        await typing;
        const listed = await v1(srv, bob, 'GET', `/typing/${chat}`);
        assert.equal(listed.status, 200);
        assert.deepEqual(listed.body, { typing_users: [alice], count: 1 });

        const stopped = waitFor(bobSup, 'message:stop-typing', (t) => t.chatId === chat && t.userId === alice);
        const del = await v1(srv, alice, 'DELETE', `/typing/${chat}/${alice}`);
        assert.equal(del.status, 200);
        await stopped;
        assert.deepEqual((await v1(srv, bob, 'GET', `/typing/${chat}`)).body, { typing_users: [], count: 0 });

        // Members only; actor ids are the caller's; unknown and malformed ids are not found.
        assert.equal((await v1(srv, eve, 'PUT', `/typing/${chat}/${eve}`)).status, 403);
        assert.equal((await v1(srv, eve, 'GET', `/typing/${chat}`)).status, 403);
        assert.equal((await v1(srv, bob, 'PUT', `/typing/${chat}/${alice}`)).status, 403);
        assert.equal((await v1(srv, bob, 'DELETE', `/typing/${chat}/${alice}`)).status, 403);
        assert.equal((await v1(srv, alice, 'PUT', `/typing/${uid('nochat')}/${alice}`)).status, 404);
        assert.equal((await v1(srv, alice, 'GET', `/typing/${'x'.repeat(200)}`)).status, 404);
        assert.equal((await v1(srv, null, 'GET', `/typing/${chat}`)).status, 401);
      } finally {
        closeAll(bobSup);
      }
    });

    it('a typing indicator lapses by itself after TYPING_TIMEOUT', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(brief.url, token(alice), 'direct', [bob]);
      const bobSup = await connect(brief.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        await call(bobSup, 'chat:join', { chatId: chat });
        const stopped = waitFor(bobSup, 'message:stop-typing', (t) => t.chatId === chat && t.userId === alice);
        await v1(brief, alice, 'PUT', `/typing/${chat}/${alice}`);
        await stopped;
        await eventually(async () => (await v1(brief, bob, 'GET', `/typing/${chat}`)).body.count === 0, 10000, 'no typers');
      } finally {
        closeAll(bobSup);
      }
    });
  });
}
