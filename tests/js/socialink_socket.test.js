// Socialink's per-device WebSocket (protocols/socialink.md §9) with a real client (npm `ws`):
// the handshake refusals, the queue pushed on open and then live traffic exactly once (also
// for messages sent while the connection opens), re-push until acknowledged, client frames,
// and the receipt / message_deleted / prekeys_low frames and the 4001 close; SQLite and
// PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, token } from './helpers.js';
import { Sl, text } from './socialink_client.js';
import { open } from './mrezhen_client.js';

/** Refusal of an upgrade: `{ status, body }`. */
const refused = (p) => p.then(() => null, (e) => ({ status: e.status, body: e.body && JSON.parse(e.body) }));
/** Ids of the `message` frames a client got, in order. */
const pushed = (c) => c.frames.filter((f) => f.type === 'message').map((f) => f.id);
/** A round trip: every frame the server queued before it has arrived. */
const roundTrip = (c) => c.request({ type: 'ping' }, 'pong');

for (const backend of backends()) {
  describe(`socialink socket on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    it('refuses the handshake with 401, 403 and 404 in Socialink\'s error body', async () => {
      const alice = new Sl(srv.url);
      const device = await alice.register();
      const anon = await refused(open(srv.url, undefined, { path: `/ws/${alice.user}/${device.deviceId}` }));
      assert.deepEqual([anon.status, anon.body.code], [401, 'UNAUTHORIZED']);
      const expired = await refused(open(srv.url, token(alice.user, { exp: Math.floor(Date.now() / 1000) - 10 }), { path: `/ws/${alice.user}/${device.deviceId}` }));
      assert.equal(expired.status, 401);
      const forbidden = await refused(open(srv.url, token('mallory'), { path: `/ws/${alice.user}/${device.deviceId}` }));
      assert.deepEqual([forbidden.status, forbidden.body.code], [403, 'FORBIDDEN']);
      const unknown = await refused(alice.socket('no-such-device'));
      assert.deepEqual([unknown.status, unknown.body.code], [404, 'NOT_FOUND']);
      await alice.call('DELETE', `/keys/deactivate/${alice.user}/${device.deviceId}`);
      assert.equal((await refused(alice.socket(device.deviceId))).status, 404, 'deactivated');
    });

    it('pushes the queue oldest first, then live, each once; re-pushes until acknowledged', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const phone = await bob.register();
      const sent = [];
      for (const t of ['a', 'b', 'c']) sent.push((await alice.sendTo(bob.user, t)).message_id);
      const c1 = await bob.socket(phone.deviceId);
      await c1.next('message', (f) => f.id === sent[2]);
      const live = await alice.sendTo(bob.user, 'live');
      const frame = await c1.next('message', (f) => f.id === live.message_id);
      assert.equal(text(frame.ciphertext), 'live');
      assert.deepEqual([frame.sender_id, frame.recipient_id, frame.sequence_number, frame.message_type], [alice.user, bob.user, 4, 'Text']);
      await roundTrip(c1);
      assert.deepEqual(pushed(c1), [...sent, live.message_id], 'backlog in order, then live, once each');
      // Acknowledge two, one by frame and one by REST; the rest is pushed again next time.
      c1.send({ type: 'ack', message_ids: [sent[0]] });
      await roundTrip(c1);
      await bob.ack(phone.deviceId, [live.message_id]);
      await c1.close();
      const c2 = await bob.socket(phone.deviceId);
      await c2.next('message', (f) => f.id === sent[2]);
      await roundTrip(c2);
      assert.deepEqual(pushed(c2), [sent[1], sent[2]]);
      await c2.close();
    });

    it('pushes messages sent while the connection opens exactly once', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const phone = await bob.register();
      const before = await Promise.all(Array.from({ length: 10 }, (_, i) => alice.sendTo(bob.user, `early ${i}`)));
      const opening = bob.socket(phone.deviceId);
      const during = await Promise.all(Array.from({ length: 30 }, (_, i) => alice.sendTo(bob.user, `during ${i}`)));
      const c = await opening;
      const all = [...before, ...during].map((m) => m.message_id);
      for (const id of all) await c.next('message', (f) => f.id === id, 15000);
      await roundTrip(c);
      const got = pushed(c);
      assert.equal(got.length, all.length, 'nothing twice');
      assert.deepEqual(new Set(got), new Set(all), 'nothing skipped');
      const seqs = c.frames.filter((f) => f.type === 'message').map((f) => f.sequence_number);
      assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y), 'in sequence order');
      await c.close();
    });

    it('answers client frames: ping, bad JSON, unknown type, receipts to the sender\'s devices, typing', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const [alicePhone, bobPhone] = [await alice.register(), await bob.register()];
      const a = await alice.socket(alicePhone.deviceId);
      const b = await bob.socket(bobPhone.deviceId);
      const pong = await b.request({ type: 'ping' }, 'pong');
      assert.ok(pong.timestamp);
      b.send('{nope');
      assert.equal((await b.next('error')).code, 'INVALID_JSON');
      assert.equal((await b.request({ type: 'dance' }, 'pong')).code, 'UNKNOWN_TYPE');
      const m = await alice.sendTo(bob.user, 'receipt me', { device_id: alicePhone.deviceId });
      await b.next('message', (f) => f.id === m.message_id);
      b.send({ type: 'read', message_id: m.message_id });
      const receipt = await a.next('receipt', (f) => f.message_id === m.message_id);
      assert.deepEqual([receipt.conversation_id, receipt.user_id, receipt.is_read, receipt.status], [m.conversation_id, bob.user, true, 'Read']);
      assert.equal((await b.request({ type: 'read', message_id: 'nope' }, 'never')).code, 'NOT_FOUND');
      assert.equal((await b.request({ type: 'ack', message_ids: [] }, 'never')).code, 'VALIDATION_FAILED', 'the connection stays');
      b.send({ type: 'typing', conversation_id: m.conversation_id, is_typing: true });
      await roundTrip(b);
      await roundTrip(a);
      assert.ok(!pushed(a).includes(m.message_id), 'the sending device is not pushed its own message');
      await Promise.all([a.close(), b.close()]);
    });

    it('pushes message_deleted (deleted, expired within 2 s), prekeys_low, and closes a deactivated device (4001)', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const phone = await bob.register({ prekeys: 20 });
      const b = await bob.socket(phone.deviceId);
      const m = await alice.sendTo(bob.user, 'to delete');
      await b.next('message', (f) => f.id === m.message_id);
      await alice.call('DELETE', `/messages/delete/${alice.user}/${m.message_id}?for_everyone=true`);
      const deleted = await b.next('message_deleted', (f) => f.message_id === m.message_id);
      assert.deepEqual([deleted.conversation_id, deleted.reason, deleted.for_everyone], [m.conversation_id, 'deleted', true]);
      const e = await alice.sendTo(bob.user, 'ephemeral', { is_self_destructing: true, expires_in_seconds: 1 });
      const arrived = await b.next('message', (f) => f.id === e.message_id);
      const expired = await b.next('message_deleted', (f) => f.message_id === e.message_id, 10000);
      assert.equal(expired.reason, 'expired');
      assert.ok(Date.now() - Date.parse(arrived.expires_at) < 2500, 'within about 2 s of expires_at');
      await alice.call('GET', `/keys/bundle/${bob.user}?device_id=${phone.deviceId}`);
      const low = await b.next('prekeys_low');
      assert.deepEqual([low.device_id, low.unused_prekeys], [phone.deviceId, 19]);
      await bob.call('DELETE', `/keys/deactivate/${bob.user}/${phone.deviceId}`);
      const closed = await b.closed;
      assert.equal(closed.code, 4001);
    });
  });
}
