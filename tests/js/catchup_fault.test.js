// A catch-up whose read fails: the reconnecting device is owed messages, the store cannot
// answer (its cursors table is renamed away under the running server), and the catch-up must
// neither push anything half-read nor give up: once the store answers again the device gets
// every message it is owed, once each, in order. The read is `store::devices::cursors`, the
// statement every catch-up starts with.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, token, uid, connect, call, waitFor, createChat, eventually, settle, closeAll, dbText } from './helpers.js';

for (const backend of backends()) {
  describe(`a catch-up whose read fails (${backend})`, () => {
    it('holds everything back and retries until the store answers, then delivers once each, in order', async () => {
      const srv = await startServer({ backend });
      const sockets = [];
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        const a = await connect(srv.url, { auth: { token: token(alice) } });
        sockets.push(a);
        // Bob's device is known to the server before the fault: his reconnect writes nothing.
        const first = await connect(srv.url, { auth: { token: token(bob) } });
        const offline = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'offline');
        first.close();
        await offline;

        const owed = ['f-1', 'f-2', 'f-3'];
        for (const tempId of owed) {
          await call(a, 'message:new', { chatId: chat, encryptedContent: `text ${tempId}`, messageType: 'text', tempId });
        }

        dbText(srv, 'ALTER TABLE device_cursors RENAME TO device_cursors_away');
        const received = [];
        const b = await connect(srv.url, {
          auth: { token: token(bob) },
          listen: (s) => s.on('message:new', (m) => received.push(m.tempId)),
        });
        sockets.push(b);
        await eventually(
          () => srv.logs.some((l) => /"context":"catch-up"/.test(l) && /device_cursors/.test(l)),
          10000,
          'a failed catch-up read in the log',
        );
        // A message sent meanwhile is held back too: pushed live, it would arrive before those
        // the device is still owed.
        await call(a, 'message:new', { chatId: chat, encryptedContent: 'text f-4', messageType: 'text', tempId: 'f-4' });
        owed.push('f-4');
        await settle(b);
        assert.deepEqual(received, [], 'nothing is pushed while the read fails, not even a live message');

        dbText(srv, 'ALTER TABLE device_cursors_away RENAME TO device_cursors');
        await eventually(() => received.length >= owed.length, 10000, 'the owed messages');
        await settle(b);
        assert.deepEqual(received, owed, 'every owed message, once, in order');
      } finally {
        closeAll(...sockets);
        await srv.stop();
      }
    });
  });
}
