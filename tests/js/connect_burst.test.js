// An event emitted the moment `connect` fires must never be lost (socketioxide sends CONNECT
// before an async connect handler runs; Switchboard sets everything up before CONNECT).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { backends, startServer, token, uid, createChat, eventually } from './helpers.js';

for (const backend of backends()) {
  describe(`connect burst on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    for (const transports of [['websocket'], ['polling', 'websocket']]) {
      it(`answers every first event of 100 clients that emit on connect (${transports.join('+')})`, async () => {
        const owner = uid('owner');
        const users = Array.from({ length: 100 }, () => uid('c'));
        const chat = await createChat(srv.url, token(owner), 'group', users);
        const acks = [];
        const errors = [];
        const sockets = users.map((u, i) => {
          const s = io(srv.url, { auth: { token: token(u) }, transports, forceNew: true, reconnection: false });
          s.on('connect', () => {
            s.emit('message:new', { chatId: chat, encryptedContent: `hello ${i}`, messageType: 'text', tempId: `burst-${i}` }, (r) => acks.push(r));
          });
          s.on('connect_error', (e) => errors.push(e.message));
          return s;
        });
        try {
          await eventually(() => acks.length === users.length || errors.length > 0, 60000, 'all acks');
          assert.deepEqual(errors, [], `server said: ${srv.logs.filter((l) => /WARN|ERROR/.test(l)).slice(-10).join('\n')}`);
          assert.ok(acks.every((r) => r.success), JSON.stringify(acks.find((r) => !r.success)));
          const seqs = acks.map((r) => r.data.seq).sort((a, b) => a - b);
          assert.deepEqual(seqs, Array.from({ length: users.length }, (_, i) => i + 1));
        } finally {
          sockets.forEach((s) => s.close());
        }
      });
    }
  });
}
