// Socialink messages and per-device queues (protocols/socialink.md §4, §10) over real HTTP:
// sends (direct by nil conversation id, note-to-self, resends), validation, history pages,
// receipts, deletes, the queue contract (every active device of every member but the sending
// one, acknowledged per id), self-destruct, and the same conversation seen from SUP; on SQLite
// and PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, token, connect, call, waitFor, closeAll, eventually } from './helpers.js';
import { Sl, NIL, b64, text } from './socialink_client.js';

for (const backend of backends()) {
  describe(`socialink messages on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend }); });
    after(async () => { await srv.stop(); });

    it('sends into the pair\'s one direct conversation either way round (201, gapless sequence numbers)', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const first = await alice.sendTo(bob.user, 'hello');
      assert.match(first.message_id, /^[0-9a-f-]{36}$/);
      assert.deepEqual([first.sequence_number, first.status], [1, 'Sent']);
      assert.ok(first.timestamp && first.conversation_id);
      const back = await bob.send({ recipient_id: alice.user, ciphertext: b64(Buffer.from('hi')) });
      assert.equal(back.conversation_id, first.conversation_id, 'the same direct conversation');
      assert.equal(back.sequence_number, 2);
      const byId = await alice.send({ conversation_id: first.conversation_id, ciphertext: [1, 2, 3] });
      assert.equal(byId.sequence_number, 3);
      const page = await alice.call('GET', `/messages/conversation/${alice.user}?conversation_id=${first.conversation_id}`);
      assert.equal(page.status, 200);
      assert.equal(page.body.count, 3);
      const [newest, middle, oldest] = page.body.messages;
      assert.deepEqual([newest.sequence_number, middle.sequence_number, oldest.sequence_number], [3, 2, 1]);
      assert.equal(newest.ciphertext, b64([1, 2, 3]), 'bytes round-trip exactly');
      assert.equal(text(oldest.ciphertext), 'hello');
      assert.deepEqual([oldest.sender_id, oldest.recipient_id, oldest.message_type, oldest.is_group, oldest.group_epoch, oldest.is_self_destructing, oldest.expires_at],
        [alice.user, bob.user, 'Text', false, null, false, null]);
      for (const f of ['id', 'conversation_id', 'sender_device_id', 'ephemeral_key', 'timestamp', 'status', 'delivered_at', 'read_at', 'is_edited', 'edited_at', 'created_at', 'client_message_id']) assert.ok(f in oldest, f);
    });

    it('writes notes to self into one self conversation, reused', async () => {
      const alice = new Sl(srv.url);
      const a = await alice.sendTo(alice.user, 'note 1');
      const b = await alice.send({ conversation_id: NIL, recipient_id: alice.user, ciphertext: b64(Buffer.from('note 2')) });
      assert.equal(a.conversation_id, b.conversation_id);
      const page = await alice.call('GET', `/messages/conversation/${alice.user}?conversation_id=${a.conversation_id}`);
      assert.equal(page.body.messages[0].recipient_id, alice.user);
      const spark = await fetch(`${srv.url}/api/conversations/${a.conversation_id}`, { headers: { authorization: `Bearer ${alice.tok}` } });
      assert.equal((await spark.json()).data.type, 'self', 'a self conversation to Spark');
    });

    it('answers a resend of client_message_id with the original, storing nothing twice', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const device = await bob.register();
      const once = await alice.sendTo(bob.user, 'once', { client_message_id: 'c-1' });
      const twice = await alice.sendTo(bob.user, 'once', { client_message_id: 'c-1' });
      assert.deepEqual([twice.message_id, twice.sequence_number], [once.message_id, once.sequence_number]);
      const queue = await bob.queue(device.deviceId);
      assert.equal(queue.body.count, 1);
      assert.equal(queue.body.messages[0].client_message_id, 'c-1');
    });

    it('validates sends: 400 for empty, too long, System, bad timers, no recipient; 403/404 conversations', async () => {
      const [alice, bob, carol] = [new Sl(srv.url), new Sl(srv.url), new Sl(srv.url)];
      const conv = (await alice.sendTo(bob.user, 'x')).conversation_id;
      const cases = [
        [{ recipient_id: bob.user, ciphertext: '' }, 'EMPTY_CONTENT'],
        [{ recipient_id: bob.user, ciphertext: b64(Buffer.alloc(65537)) }, 'CONTENT_TOO_LONG'],
        [{ recipient_id: bob.user, ciphertext: 'AA==', message_type: 'System' }, 'VALIDATION_FAILED'],
        [{ recipient_id: bob.user, ciphertext: 'AA==', message_type: 'Nope' }, 'VALIDATION_FAILED'],
        [{ recipient_id: bob.user, ciphertext: 'AA==', is_self_destructing: true }, 'VALIDATION_FAILED'],
        [{ recipient_id: bob.user, ciphertext: 'AA==', is_self_destructing: true, expires_in_seconds: 2592001 }, 'VALIDATION_FAILED'],
        [{ ciphertext: 'AA==' }, 'VALIDATION_FAILED'],
        [{ recipient_id: bob.user }, 'VALIDATION_FAILED'],
      ];
      for (const [body, code] of cases) {
        const res = await alice.call('POST', `/messages/send/${alice.user}`, body);
        assert.deepEqual([res.status, res.body.code], [400, code], JSON.stringify(body).slice(0, 100));
      }
      const ok = await alice.call('POST', `/messages/send/${alice.user}`, { recipient_id: bob.user, ciphertext: b64(Buffer.alloc(65536)), message_type: 'media' });
      assert.equal(ok.status, 201, 'exactly 65,536 bytes; types case-insensitive');
      const notMember = await carol.call('POST', `/messages/send/${carol.user}`, { conversation_id: conv, ciphertext: 'AA==' });
      assert.deepEqual([notMember.status, notMember.body.code], [403, 'FORBIDDEN']);
      const unknown = await carol.call('POST', `/messages/send/${carol.user}`, { conversation_id: '0193e000-0000-7000-8000-000000000000', ciphertext: 'AA==' });
      assert.equal(unknown.status, 404);
      const actor = await carol.call('POST', `/messages/send/${alice.user}`, '{not json');
      assert.deepEqual([actor.status, actor.body.code], [403, 'FORBIDDEN'], 'the actor check comes before the body');
      const history = await carol.call('GET', `/messages/conversation/${carol.user}?conversation_id=${conv}`);
      assert.equal(history.status, 403, 'history is for members only');
      assert.equal((await carol.call('GET', `/messages/conversation/${alice.user}?conversation_id=${conv}`)).status, 403);
    });

    it('pages history back with before_sequence and forward with after_sequence', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      let conv;
      for (let i = 1; i <= 7; i++) conv = (await alice.sendTo(bob.user, `m${i}`)).conversation_id;
      const q = (s) => alice.call('GET', `/messages/conversation/${alice.user}?conversation_id=${conv}${s}`);
      const seqs = (res) => res.body.messages.map((m) => m.sequence_number);
      assert.deepEqual(seqs(await q('&limit=3')), [7, 6, 5]);
      assert.deepEqual(seqs(await q('&limit=3&before_sequence=5')), [4, 3, 2]);
      assert.deepEqual(seqs(await q('&limit=3&after_sequence=2')), [3, 4, 5]);
      assert.equal((await q('&limit=abc')).status, 400);
      assert.equal((await alice.call('GET', `/messages/conversation/${alice.user}`)).status, 400);
    });

    it('queues for every active device of every member except the sending device; acknowledged per id', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const [phone, laptop] = [await alice.register(), await alice.register()];
      const [bobPhone, bobOld] = [await bob.register(), await bob.register()];
      await bob.call('DELETE', `/keys/deactivate/${bob.user}/${bobOld.deviceId}`);
      const m1 = await alice.sendTo(bob.user, 'one', { device_id: phone.deviceId });
      const m2 = await alice.sendTo(bob.user, 'two', { device_id: phone.deviceId });
      const ids = (res) => res.body.messages.map((m) => m.id);
      assert.deepEqual(ids(await bob.queue(bobPhone.deviceId)), [m1.message_id, m2.message_id], 'oldest first');
      assert.deepEqual(ids(await alice.queue(laptop.deviceId)), [m1.message_id, m2.message_id], 'the sender\'s other device');
      assert.deepEqual(ids(await alice.queue(phone.deviceId)), [], 'not the sending device');
      assert.equal((await bob.queue(bobOld.deviceId)).status, 404, 'a deactivated device has no queue');
      const late = await bob.register();
      assert.equal((await bob.queue(late.deviceId)).body.count, 0, 'a device registered later gets nothing older');
      assert.deepEqual(ids(await bob.queue(bobPhone.deviceId)), [m1.message_id, m2.message_id], 'reading does not acknowledge');
      const acked = await bob.ack(bobPhone.deviceId, [m2.message_id, 'not-a-queued-id']);
      assert.deepEqual([acked.status, acked.body.success, acked.body.acknowledged, acked.body.remaining], [200, true, 1, 1]);
      assert.deepEqual(ids(await bob.queue(bobPhone.deviceId)), [m1.message_id], 'out of order, exactly the listed id');
      const wrapped = await bob.ack(bobPhone.deviceId, { message_ids: [m1.message_id] });
      assert.deepEqual([wrapped.body.acknowledged, wrapped.body.remaining], [1, 0]);
      assert.equal((await bob.ack(bobPhone.deviceId, [])).status, 400, 'no acknowledge-all');
      assert.equal((await alice.queue(bobPhone.deviceId)).status, 404, 'the device must be the caller\'s');
      assert.equal((await alice.call('GET', `/messages/queue/${bob.user}/${bobPhone.deviceId}`)).status, 403);
      assert.equal((await alice.call('DELETE', `/messages/queue/${bob.user}/${bobPhone.deviceId}`, [m1.message_id])).status, 403);
      assert.deepEqual(ids(await alice.queue(laptop.deviceId)), [m1.message_id, m2.message_id], 'acks are per device');
      const queued = (await alice.queue(laptop.deviceId, '?limit=1')).body;
      assert.equal(queued.count, 1);
    });

    it('receipts: delivered and read show in the sender\'s status; members only', async () => {
      const [alice, bob, carol] = [new Sl(srv.url), new Sl(srv.url), new Sl(srv.url)];
      const m = await alice.sendTo(bob.user, 'r');
      const status = async () => (await alice.call('GET', `/messages/conversation/${alice.user}?conversation_id=${m.conversation_id}`)).body.messages[0].status;
      assert.equal(await status(), 'Sent');
      assert.deepEqual((await bob.call('PUT', `/messages/delivered/${bob.user}/${m.message_id}`)).body, { success: true });
      assert.equal(await status(), 'Delivered');
      assert.equal((await bob.call('PUT', `/messages/read/${bob.user}/${m.message_id}`)).status, 200);
      assert.equal(await status(), 'Read');
      assert.equal((await alice.call('PUT', `/messages/read/${alice.user}/${m.message_id}`)).status, 200, 'the sender\'s own: accepted, ignored');
      assert.equal((await carol.call('PUT', `/messages/read/${carol.user}/${m.message_id}`)).status, 403);
      assert.equal((await bob.call('PUT', `/messages/read/${bob.user}/nope`)).status, 404);
      assert.equal((await carol.call('PUT', `/messages/read/${bob.user}/${m.message_id}`)).status, 403);
    });

    it('deletes for the caller (their history and queues) or for everyone (sender only)', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const [bobPhone, alicePhone] = [await bob.register(), await alice.register()];
      const m1 = await alice.sendTo(bob.user, 'keep for alice');
      const m2 = await alice.sendTo(bob.user, 'gone for all');
      const mine = await bob.call('DELETE', `/messages/delete/${bob.user}/${m1.message_id}`);
      assert.deepEqual([mine.status, mine.body.success], [200, true]);
      const hist = async (who) => (await who.call('GET', `/messages/conversation/${who.user}?conversation_id=${m1.conversation_id}`)).body.messages.map((m) => m.id);
      assert.deepEqual(await hist(bob), [m2.message_id]);
      assert.deepEqual(await hist(alice), [m2.message_id, m1.message_id]);
      assert.deepEqual((await bob.queue(bobPhone.deviceId)).body.messages.map((m) => m.id), [m2.message_id]);
      assert.equal((await bob.call('DELETE', `/messages/delete/${bob.user}/${m2.message_id}?for_everyone=true`)).status, 403, 'only the sender');
      assert.equal((await alice.call('DELETE', `/messages/delete/${alice.user}/${m2.message_id}?for_everyone=true`)).status, 200);
      assert.deepEqual(await hist(bob), []);
      assert.deepEqual(await hist(alice), [m1.message_id]);
      assert.equal((await bob.queue(bobPhone.deviceId)).body.count, 0);
      assert.deepEqual((await alice.queue(alicePhone.deviceId)).body.messages.map((m) => m.id), [m1.message_id],
        'the sender\'s device (no device_id sent) keeps only what was not deleted for everyone');
      assert.equal((await alice.call('DELETE', `/messages/delete/${alice.user}/${m2.message_id}`)).status, 404);
    });

    it('self-destructs: gone from history and queues after expires_at', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const phone = await bob.register();
      const m = await alice.sendTo(bob.user, 'soon gone', { is_self_destructing: true, expires_in_seconds: 1 });
      const first = (await bob.call('GET', `/messages/conversation/${bob.user}?conversation_id=${m.conversation_id}`)).body.messages[0];
      assert.equal(first.is_self_destructing, true);
      assert.ok(Date.parse(first.expires_at) - Date.parse(first.timestamp) >= 999);
      assert.equal((await bob.queue(phone.deviceId)).body.count, 1);
      await eventually(async () => (await bob.queue(phone.deviceId)).body.count === 0, 10000, 'the queue to drop it');
      const after = await bob.call('GET', `/messages/conversation/${bob.user}?conversation_id=${m.conversation_id}`);
      assert.equal(after.body.count, 0);
      assert.equal((await bob.call('PUT', `/messages/read/${bob.user}/${m.message_id}`)).status, 404);
    });

    it('is the same conversation to SUP: base64 as encryptedContent, SUP text as UTF-8 ciphertext', async () => {
      const [alice, bob] = [new Sl(srv.url), new Sl(srv.url)];
      const phone = await alice.register();
      const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob.user) } });
      try {
        const bytes = Buffer.from([0, 255, 1, 254, 2]);
        const got = waitFor(sup, 'message:new', (d) => d.senderId === alice.user);
        const sent = await alice.send({ recipient_id: bob.user, ciphertext: bytes.toString('base64url'), client_message_id: 'x-1' });
        const live = await got;
        assert.equal(live.encryptedContent, bytes.toString('base64'), 'standard padded base64');
        assert.deepEqual([live.chatId, live.id, live.seq, live.tempId], [sent.conversation_id, sent.message_id, sent.sequence_number, 'x-1']);
        const reply = await call(sup, 'message:new', { chatId: sent.conversation_id, encryptedContent: 'héllo from SUP', tempId: 's-1' });
        const queued = (await alice.queue(phone.deviceId)).body.messages.find((m) => m.id === reply.id);
        assert.ok(queued, 'a SUP message is queued for the Socialink device');
        assert.equal(text(queued.ciphertext), 'héllo from SUP');
        assert.deepEqual([queued.ephemeral_key, queued.message_type, queued.sequence_number], ['', 'Text', sent.sequence_number + 1]);
      } finally {
        closeAll(sup);
      }
    });
  });
}
