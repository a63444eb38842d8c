// SPEC §5 guarantee 6: a message counts as delivered only when the server knows it reached
// the client. Over WebSocket that is the client's second pong after the message (or its answer
// to a close at a graceful stop); until then a reconnect pushes the message again, same id.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, uid, call, waitFor, collect, createChat, closeAll } from './helpers.js';

const PING_MS = 400;

describe('delivery marks follow the client\'s receipts', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { SOCKETIO_PING_INTERVAL: String(PING_MS) } }); });
  after(async () => { await srv.stop(); });

  const join = (user, listen) => connect(srv.url, { auth: { token: token(user) }, transports: ['websocket'], listen });
  const pings = (socket, n) => new Promise((resolve) => {
    let seen = 0;
    const on = () => { if (++seen === n) { socket.io.engine.off('ping', on); resolve(); } };
    socket.io.engine.on('ping', on);
  });

  async function receiveThenReconnect(confirm) {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = await join(alice);
    const b = await join(bob);
    const got = waitFor(b, 'message:new', (m) => m.tempId === 't-3');
    const sent = [];
    for (const t of ['t-1', 't-2', 't-3']) sent.push(await call(a, 'message:new', { chatId: chat, encryptedContent: t, messageType: 'text', tempId: t }));
    await got;
    // Pong 2 after the messages confirms them; by ping 3 the 250 ms flush has written the mark.
    if (confirm) await pings(b, 3);
    b.close();
    let again;
    const b2 = await join(bob, (s) => { again = collect(s, 'message:new'); });
    // A message sent now reaches b2 after whatever its catch-up pushes (both in seq order).
    const marker = waitFor(b2, 'message:new', (m) => m.tempId === 't-4');
    await call(a, 'message:new', { chatId: chat, encryptedContent: 't-4', messageType: 'text', tempId: 't-4' });
    await marker;
    closeAll(a, b2);
    return { sent, again: again.filter((m) => m.tempId !== 't-4') };
  }

  it('a client that confirmed what it got is not pushed it again', async () => {
    const { again } = await receiveThenReconnect(true);
    assert.deepEqual(again, []);
  });

  it('a client that closed before confirming is pushed it again, under the same ids', async () => {
    const { sent, again } = await receiveThenReconnect(false);
    assert.deepEqual(again.map((m) => m.id), sent.map((m) => m.id));
  });
});
