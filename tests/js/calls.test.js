// Call signaling (SPEC §7.1): ringing, answer, reject, end, ICE relay, busy, missed calls and
// history, on every configured database. Ring timeouts are short on the `fast` server so
// that "missed" arrives quickly; tests wait on events, never on the clock.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, waitFor, collect, settle, createChat, closeAll,
} from './helpers.js';

// SUP events carry more fields than these (protocols/sup.md: supersets); the ones named here
// must be exactly as shown.
const fieldsOf = (got, expected) => Object.fromEntries(Object.keys(expected).map((k) => [k, got[k]]));

const offer = { type: 'offer', sdp: 'v=0 offer' };
const answer = { type: 'answer', sdp: 'v=0 answer' };
const candidate = { candidate: 'candidate:1 1 UDP 2122252543 192.0.2.1 54400 typ host', sdpMid: '0', sdpMLineIndex: 0 };

for (const backend of backends()) {
  describe(`calls on ${backend}`, () => {
    let srv;
    let fast;
    before(async () => {
      [srv, fast] = await Promise.all([
        startServer({ backend }),
        startServer({ backend, env: { CALL_RING_TIMEOUT: '300' } }),
      ]);
    });
    after(async () => { await Promise.all([srv.stop(), fast.stop()]); });

    const join = (server, user, extra = {}) => connect(server.url, { auth: { token: token(user, extra) } });

    it('rings every device of the callee but not the caller, relays answer and ICE, and ends for both', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a1 = await join(srv, alice, { name: 'Alice' });
      const a2 = await join(srv, alice);
      const b1 = await join(srv, bob);
      const b2 = await join(srv, bob);
      const callerRung = collect(a2, 'call:incoming');
      const rings = [b1, b2].map((s) => waitFor(s, 'call:incoming'));
      const started = await call(a1, 'call:initiate', { chatId: chat, callType: 'video', offer });
      assert.ok(started.callId);
      assert.equal(started.status, 'ringing');
      assert.equal(started.chatId, chat);
      assert.deepEqual(started.calleeIds, [bob]);
      for (const ring of await Promise.all(rings)) {
        assert.equal(ring.callId, started.callId);
        assert.equal(ring.callerId, alice);
        assert.equal(ring.callerName, 'Alice');
        assert.equal(ring.callType, 'video');
        assert.deepEqual(ring.offer, offer);
      }
      await settle(a2);
      assert.equal(callerRung.length, 0, "the caller's own devices do not ring");

      // The caller's ICE goes to the ringing callee (trickle ICE starts with the offer).
      const early = waitFor(b1, 'call:ice-candidate');
      await call(a1, 'call:ice-candidate', { callId: started.callId, candidate });
      assert.deepEqual((await early).candidate, candidate);

      const answered = waitFor(a1, 'call:answer');
      const elsewhere = waitFor(b2, 'call:end');
      const active = await call(b1, 'call:answer', { callId: started.callId, answer });
      assert.equal(active.status, 'active');
      assert.equal(active.answeredBy, bob);
      const got = await answered;
      const expected = { callId: started.callId, chatId: chat, userId: bob, answer };
      assert.deepEqual(fieldsOf(got, expected), expected);
      const stop = await elsewhere;
      assert.equal(stop.reason, 'answered_elsewhere');
      assert.equal(stop.answeredBy, bob);

      // ICE both ways, to the other party only.
      const toBob = waitFor(b1, 'call:ice-candidate');
      await call(a1, 'call:ice-candidate', { callId: started.callId, candidate: { ...candidate, n: 2 } });
      assert.equal((await toBob).candidate.n, 2);
      const toAlice = waitFor(a1, 'call:ice-candidate');
      const echo = collect(b1, 'call:ice-candidate');
      await call(b1, 'call:ice-candidate', { callId: started.callId, candidate: { ...candidate, n: 3 } });
      const c = await toAlice;
      assert.equal(c.userId, bob);
      assert.equal(c.candidate.n, 3);
      await settle(b1);
      assert.equal(echo.length, 0);

      const hungUp = waitFor(b1, 'call:end');
      const ended = await call(a1, 'call:end', { callId: started.callId });
      assert.equal(ended.status, 'ended');
      const end = await hungUp;
      assert.equal(end.reason, 'hangup');
      assert.equal(end.endedBy, alice);
      assert.equal(typeof end.durationMs, 'number');
      assert.ok(end.durationMs >= 0);

      const history = await call(b1, 'call:history', { chatId: chat });
      assert.equal(history.calls.length, 1);
      const h = history.calls[0];
      assert.equal(h.callId, started.callId);
      assert.equal(h.status, 'ended');
      assert.equal(h.endReason, 'hangup');
      assert.equal(h.answeredBy, bob);
      for (const t of [h.startedAt, h.answeredAt, h.endedAt]) assert.ok(!Number.isNaN(Date.parse(t)));
      // Talk time, from answer to end (timestamps are shown to the millisecond).
      assert.ok(Math.abs(h.durationMs - (Date.parse(h.endedAt) - Date.parse(h.answeredAt))) <= 1);
      closeAll(a1, a2, b1, b2);
    });

    it('has exactly one winner when two devices answer at once, or two callers ring one callee', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const ab = await createChat(srv.url, token(alice), 'direct', [bob]);
      const cb = await createChat(srv.url, token(carol), 'direct', [bob]);
      const a = await join(srv, alice);
      const b1 = await join(srv, bob);
      const b2 = await join(srv, bob);
      const c = await join(srv, carol);
      const { callId } = await call(a, 'call:initiate', { chatId: ab, callType: 'audio' });
      const answers = await Promise.all([b1, b2].map((s) => ask(s, 'call:answer', { callId, answer })));
      assert.equal(answers.filter((r) => r.success).length, 1);
      assert.equal(answers.find((r) => !r.success).error.code, 'CONFLICT');
      await call(a, 'call:end', { callId });

      const calls = await Promise.all([
        ask(a, 'call:initiate', { chatId: ab, callType: 'audio' }),
        ask(c, 'call:initiate', { chatId: cb, callType: 'audio' }),
      ]);
      assert.equal(calls.filter((r) => r.success).length, 1, 'bob rings for one of them');
      const lost = calls.find((r) => !r.success);
      assert.equal(lost.error.code, 'CONFLICT');
      assert.equal(lost.error.message, 'busy');
      const won = calls.find((r) => r.success).data;
      await call(won.callerId === alice ? a : c, 'call:end', { callId: won.callId });
      closeAll(a, b1, b2, c);
    });

    it('calls a user by calleeId through their direct chat', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(srv, alice);
      const b = await join(srv, bob);
      const ring = waitFor(b, 'call:incoming');
      const started = await call(a, 'call:initiate', { calleeId: bob, callType: 'audio' });
      assert.equal(started.chatId, chat);
      assert.equal((await ring).callType, 'audio');
      await call(a, 'call:end', { callId: started.callId });
      closeAll(a, b);
    });

    it('refuses what the state machine and membership do not allow', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(srv, alice);
      const b = await join(srv, bob);
      const m = await join(srv, mallory);
      const code = async (s, event, payload) => {
        const res = await ask(s, event, payload);
        assert.equal(res.success, false, `${event} ${JSON.stringify(payload)} should fail`);
        return res.error.code;
      };
      assert.equal(await code(m, 'call:initiate', { chatId: chat, callType: 'audio' }), 'FORBIDDEN');
      assert.equal(await code(a, 'call:initiate', { chatId: 'no-such-chat', callType: 'audio' }), 'NOT_FOUND');
      assert.equal(await code(a, 'call:initiate', { chatId: chat, callType: 'hologram' }), 'VALIDATION_FAILED');
      assert.equal(await code(a, 'call:initiate', { chatId: chat, calleeId: bob, callType: 'audio' }), 'VALIDATION_FAILED');
      assert.equal(await code(a, 'call:initiate', { callType: 'audio' }), 'VALIDATION_FAILED');
      assert.equal(await code(a, 'call:initiate', { calleeId: alice, callType: 'audio' }), 'VALIDATION_FAILED');

      const { callId } = await call(a, 'call:initiate', { chatId: chat, callType: 'audio', offer });
      assert.equal(await code(m, 'call:answer', { callId, answer }), 'FORBIDDEN', 'an outsider cannot answer');
      assert.equal(await code(a, 'call:answer', { callId, answer }), 'FORBIDDEN', 'the caller is not a callee');
      assert.equal(await code(m, 'call:ice-candidate', { callId, candidate }), 'FORBIDDEN');
      assert.equal(await code(m, 'call:end', { callId }), 'FORBIDDEN');
      assert.equal(await code(m, 'call:history', { chatId: chat }), 'FORBIDDEN');
      assert.equal(await code(b, 'call:answer', { callId: 'no-such-call', answer }), 'NOT_FOUND');
      assert.equal(await code(b, 'call:ice-candidate', { callId }), 'VALIDATION_FAILED', 'a candidate is required');

      await call(b, 'call:answer', { callId, answer });
      assert.equal(await code(b, 'call:answer', { callId, answer }), 'CONFLICT', 'answered twice');
      assert.equal(await code(b, 'call:reject', { callId }), 'CONFLICT', 'rejecting an answered call');
      await call(b, 'call:end', { callId });
      assert.equal(await code(b, 'call:answer', { callId, answer }), 'CONFLICT', 'answering an ended call');
      assert.equal(await code(a, 'call:ice-candidate', { callId, candidate }), 'CONFLICT', 'ICE to a finished call');
      assert.equal(await code(a, 'call:end', { callId }), 'CONFLICT', 'ending twice');
      assert.ok(a.connected && b.connected && m.connected);
      closeAll(a, b, m);
    });

    it('answers busy when the callee is in a call, and frees them when it ends', async () => {
      const [alice, bob, carol, dave] = [uid('alice'), uid('bob'), uid('carol'), uid('dave')];
      const ab = await createChat(srv.url, token(alice), 'direct', [bob]);
      const cb = await createChat(srv.url, token(carol), 'direct', [bob]);
      const ad = await createChat(srv.url, token(alice), 'direct', [dave]);
      const a = await join(srv, alice);
      const c = await join(srv, carol);
      const { callId } = await call(a, 'call:initiate', { chatId: ab, callType: 'audio' });
      const busy = await ask(c, 'call:initiate', { chatId: cb, callType: 'audio' });
      assert.equal(busy.success, false);
      assert.equal(busy.error.code, 'CONFLICT');
      assert.equal(busy.error.message, 'busy');
      const self = await ask(a, 'call:initiate', { chatId: ad, callType: 'audio' });
      assert.equal(self.error.code, 'CONFLICT', 'the caller is in a call too');
      const cancelled = await call(a, 'call:end', { callId });
      assert.equal(cancelled.status, 'missed');
      assert.equal(cancelled.endReason, 'cancelled');
      const now = await call(c, 'call:initiate', { chatId: cb, callType: 'audio' });
      assert.equal(now.status, 'ringing');
      await call(c, 'call:end', { callId: now.callId });
      closeAll(a, c);
    });

    it('tells the caller when the callee rejects, and stops the callee\'s other devices ringing', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(srv, alice);
      const b1 = await join(srv, bob);
      const b2 = await join(srv, bob);
      const rung = waitFor(b1, 'call:incoming');
      const { callId } = await call(a, 'call:initiate', { chatId: chat, callType: 'audio' });
      await rung;
      const rejected = waitFor(a, 'call:reject');
      const quiet = waitFor(b2, 'call:end');
      const r = await call(b1, 'call:reject', { callId, reason: 'in a meeting' });
      assert.equal(r.status, 'rejected');
      const expected = { callId, chatId: chat, userId: bob, reason: 'in a meeting', status: 'rejected' };
      assert.deepEqual(fieldsOf(await rejected, expected), expected);
      assert.equal((await quiet).reason, 'rejected_elsewhere');
      const [h] = (await call(a, 'call:history', { chatId: chat })).calls;
      assert.equal(h.status, 'rejected');
      assert.equal(h.durationMs, 0);
      closeAll(a, b1, b2);
    });

    it('rings every other member of a group and connects the first to answer', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(srv.url, token(alice), 'group', [bob, carol]);
      const a = await join(srv, alice);
      const b = await join(srv, bob);
      const c = await join(srv, carol);
      const rings = [b, c].map((s) => waitFor(s, 'call:incoming'));
      const { callId, calleeIds } = await call(a, 'call:initiate', { chatId: chat, callType: 'video' });
      assert.deepEqual([...calleeIds].sort(), [bob, carol].sort());
      await Promise.all(rings);
      const stopped = waitFor(b, 'call:end');
      await call(c, 'call:answer', { callId, answer });
      const s = await stopped;
      assert.equal(s.reason, 'answered_elsewhere');
      assert.equal(s.answeredBy, carol);
      const late = await ask(b, 'call:answer', { callId, answer });
      assert.equal(late.error.code, 'CONFLICT');
      const ice = await ask(b, 'call:ice-candidate', { callId, candidate });
      assert.equal(ice.error.code, 'FORBIDDEN', 'a member who did not pick up is not in the call');
      await call(c, 'call:end', { callId });
      closeAll(a, b, c);
    });

    it('turns an unanswered call into a missed call with a notification for the callee', async () => {
      const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
      const chat = await createChat(fast.url, token(alice), 'direct', [bob]);
      const a = await join(fast, alice);
      const b = await join(fast, bob);
      const ringing = waitFor(b, 'call:incoming');
      const notified = waitFor(b, 'notification:new', (n) => n.type === 'missed_call');
      const missedA = waitFor(a, 'call:end');
      const missedB = waitFor(b, 'call:end');
      const { callId } = await call(a, 'call:initiate', { chatId: chat, callType: 'audio' });
      await ringing;
      for (const e of await Promise.all([missedA, missedB])) {
        assert.equal(e.callId, callId);
        assert.equal(e.reason, 'missed');
      }
      const n = await notified;
      assert.deepEqual(n.data, { callId, chatId: chat, callerId: alice, callType: 'audio' });
      assert.equal(n.read, false);
      const [h] = (await call(a, 'call:history', { chatId: chat })).calls;
      assert.equal(h.status, 'missed');
      assert.equal(h.endReason, 'missed');
      const late = await ask(b, 'call:answer', { callId, answer });
      assert.equal(late.error.code, 'CONFLICT');

      // A callee with no connection at all finds the missed call among pending notifications.
      const ac = await createChat(fast.url, token(alice), 'direct', [carol]);
      const over = waitFor(a, 'call:end', (e) => e.reason === 'missed');
      const second = await call(a, 'call:initiate', { chatId: ac, callType: 'video' });
      await over;
      const c = await join(fast, carol);
      const pending = await call(c, 'notification:get-pending', {});
      assert.ok(pending.notifications.some((x) => x.type === 'missed_call' && x.data.callId === second.callId));
      closeAll(a, b, c);
    });

    it('gives the callee a missed call when the caller gives up', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await join(srv, alice);
      const b = await join(srv, bob);
      const ringing = waitFor(b, 'call:incoming');
      const { callId } = await call(a, 'call:initiate', { chatId: chat, callType: 'audio' });
      await ringing;
      const stop = waitFor(b, 'call:end');
      const notified = waitFor(b, 'notification:new', (n) => n.type === 'missed_call');
      await call(a, 'call:end', { callId });
      assert.equal((await stop).reason, 'cancelled');
      assert.equal((await notified).data.callId, callId);
      closeAll(a, b);
    });

    it('ends an active call when a participant stays without a connection', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(fast.url, token(alice), 'direct', [bob]);
      const a = await join(fast, alice);
      const b = await join(fast, bob);
      const ringing = waitFor(b, 'call:incoming');
      const { callId } = await call(a, 'call:initiate', { chatId: chat, callType: 'audio' });
      await ringing;
      await call(b, 'call:answer', { callId, answer });
      const gone = waitFor(a, 'call:end');
      b.close();
      const e = await gone;
      assert.equal(e.reason, 'disconnected');
      assert.equal(e.endedBy, bob);
      const [h] = (await call(a, 'call:history', { chatId: chat })).calls;
      assert.equal(h.status, 'ended');
      closeAll(a);
    });
  });
}
