// A reconnect that owes nothing costs no database round trip (issue 15): the user's claims are
// remembered once recorded, and a catch-up is answered from memory when no conversation of the
// user has a message the device has not had. Whatever the memory is not sure of still goes to
// the database: here, a reconnecting client gets what it missed (also in a conversation it was
// added to while away), exactly once, and a changed name or avatar is still recorded.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, call, api, waitFor, createChat, closeAll, eventually, settle,
} from './helpers.js';

const send = (socket, chatId, tempId) =>
  call(socket, 'message:new', { chatId, encryptedContent: `text ${tempId}`, messageType: 'text', tempId });

/** The catch-up counters of /metrics. */
async function catchups(url) {
  const text = await (await fetch(url + '/metrics')).text();
  const read = (name) => Number((text.match(new RegExp(`^switchboard_${name}_total (\\d+)$`, 'm')) || [])[1] ?? NaN);
  return { memory: read('catchups_from_memory'), store: read('catchups_from_store') };
}

/** Resolves once the client has answered two more pings: what it was sent before is confirmed. */
function twoPongs(socket) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    const timer = setTimeout(() => reject(new Error('no pings')), 10000);
    const onPing = () => {
      if (++seen < 2) return;
      clearTimeout(timer);
      socket.io.engine.off('ping', onPing);
      // The pong is written right after the ping event; one round trip makes sure it left.
      settle(socket).then(resolve, reject);
    };
    socket.io.engine.on('ping', onPing);
  });
}

/** Waits until the server counts `n` open connections. */
const activeIs = (url, n) => eventually(async () => {
  const health = await (await fetch(url + '/health')).json();
  return health.connections.active === n;
}, 10000, `${n} open connections`);

for (const backend of backends()) {
  describe(`reconnect memory on ${backend}`, () => {
    it('answers a reconnect that owes nothing from memory, and pushes what was missed, once', async () => {
      // Short pings: deliveries are confirmed by the client's pongs.
      const srv = await startServer({ backend, env: { SOCKETIO_PING_INTERVAL: '200' } });
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const bobAuth = { token: token(bob, { deviceId: 'phone' }) };
      const sockets = [];
      try {
        const direct = await createChat(srv.url, token(alice), 'direct', [bob]);
        const a = await connect(srv.url, { auth: { token: token(alice) } });
        sockets.push(a);

        // 1. Bob is on and gets m1 live; his client confirms it; he leaves.
        let b = await connect(srv.url, { auth: bobAuth });
        const m1 = waitFor(b, 'message:new', (m) => m.tempId === 'm1');
        await send(a, direct, 'm1');
        await m1;
        await twoPongs(b);
        b.close();
        await activeIs(srv.url, 1);

        // 2. He comes back owing nothing: no message, and no catch-up query.
        const before = await catchups(srv.url);
        let got = [];
        b = await connect(srv.url, { auth: bobAuth, listen: (s) => s.on('message:new', (m) => got.push(m.tempId)) });
        await eventually(async () => (await catchups(srv.url)).memory === before.memory + 1, 10000, 'a catch-up from memory');
        await settle(b);
        assert.deepEqual(got, [], 'nothing is pushed again');
        assert.equal((await catchups(srv.url)).store, before.store, 'the database was not asked');
        // Live delivery works as usual after a catch-up from memory.
        const m2 = waitFor(b, 'message:new', (m) => m.tempId === 'm2');
        await send(a, direct, 'm2');
        await m2;
        await twoPongs(b);
        b.close();
        await activeIs(srv.url, 1);

        // 3. While he is away: two messages in the direct chat, and a group he is added to
        // (a conversation his device never heard of) with a message in it.
        await send(a, direct, 'm3');
        await send(a, direct, 'm4');
        const group = await createChat(srv.url, token(carol), 'group', [bob], { name: 'while away' });
        const c = await connect(srv.url, { auth: { token: token(carol) } });
        sockets.push(c);
        await send(c, group, 'g1');

        // 4. He comes back: pushed what he missed, in order, once, from the database.
        const middle = await catchups(srv.url);
        got = [];
        b = await connect(srv.url, { auth: bobAuth, listen: (s) => s.on('message:new', (m) => got.push(m.tempId)) });
        sockets.push(b);
        await eventually(() => got.length >= 3, 10000, 'the backlog');
        await settle(b);
        assert.deepEqual(got.filter((t) => t !== 'g1'), ['m3', 'm4']);
        assert.deepEqual(got.filter((t) => t === 'g1'), ['g1'], 'the new conversation is caught up too');
        const after = await catchups(srv.url);
        assert.equal(after.memory, middle.memory, 'something was owed: not from memory');
        assert.ok(after.store > middle.store, 'the database was asked');
      } finally {
        closeAll(sockets);
        await srv.stop();
      }
    });

    it('still records a changed name or avatar on reconnect', async () => {
      const srv = await startServer({ backend });
      const [alice, bob] = [uid('alice'), uid('bob')];
      try {
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        const profile = async () => {
          const res = await api(srv.url, token(alice), 'GET', `/api/conversations/${chat}`);
          assert.equal(res.status, 200, JSON.stringify(res.body));
          const member = res.body.data.participants.find((m) => m.userId === bob);
          assert.ok(member, JSON.stringify(res.body.data));
          return { name: member.name, avatar: member.avatar };
        };
        const visit = async (claims) => {
          const s = await connect(srv.url, { auth: { token: token(bob, claims) } });
          s.close();
          await activeIs(srv.url, 0);
        };
        await visit({ name: 'Bob' });
        assert.deepEqual(await profile(), { name: 'Bob', avatar: null });
        await visit({ name: 'Bob' }); // the same claims: remembered, nothing written
        assert.deepEqual(await profile(), { name: 'Bob', avatar: null });
        await visit({ name: 'Robert' });
        assert.deepEqual(await profile(), { name: 'Robert', avatar: null });
        await visit({ name: 'Robert', avatar: 'https://example.com/r.png' });
        assert.deepEqual(await profile(), { name: 'Robert', avatar: 'https://example.com/r.png' });
        await visit({ name: 'Bob', avatar: 'https://example.com/r.png' }); // back to a name seen before
        assert.deepEqual(await profile(), { name: 'Bob', avatar: 'https://example.com/r.png' });
      } finally {
        await srv.stop();
      }
    });
  });
}
