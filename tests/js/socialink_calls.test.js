// Socialink calls (§8) over real HTTP on the core's call state machine: Ringing → Answered →
// Ended, Declined, Missed (caller gave up, ring timeout), 409 for any other transition, ICE
// stored and listed, history newest first. A SUP client of the same conversation (real
// socket.io-client on /sup) sees the same calls, both ways.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, api, call, waitFor, eventually, createChat, closeAll } from './helpers.js';

const v1 = (srv, who, method, path, body) => api(srv.url, who === null ? null : token(who), method, '/api/v1' + path, body);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const sup = (srv, user) => connect(srv.url, { namespace: '/sup', auth: { token: token(user) } });

for (const backend of backends()) {
  describe(`socialink calls on ${backend}`, () => {
    let srv;
    let fast;
    before(async () => {
      [srv, fast] = await Promise.all([
        startServer({ backend }),
        startServer({ backend, env: { CALL_RING_TIMEOUT: '300' } }),
      ]);
    });
    after(async () => { await Promise.all([srv.stop(), fast.stop()]); });

    it('rings, answers, relays and stores ICE, ends; a SUP callee and caller see it all', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const aliceSup = await sup(srv, alice);
      const bobSup = await sup(srv, bob);
      try {
        const rung = waitFor(bobSup, 'call:incoming', (c) => c.chatId === chat);
        const res = await v1(srv, alice, 'POST', `/calls/initiate/${alice}`, { conversation_id: chat, call_type: 'video', sdp_offer: 'v=0 offer' });
        assert.equal(res.status, 201, JSON.stringify(res.body));
        const c = res.body;
        assert.match(c.id, UUID);
        assert.deepEqual(
          { ...c, created_at: null },
          {
            id: c.id, conversation_id: chat, caller_id: alice, call_type: 'Video', status: 'Ringing', sdp_offer: 'v=0 offer',
            sdp_answer: null, ice_candidates: [], started_at: null, ended_at: null, duration_seconds: null, created_at: null,
          },
        );
        assert.ok(!Number.isNaN(Date.parse(c.created_at)));
        const ring = await rung;
        assert.equal(ring.callId, c.id);
        assert.equal(ring.callerId, alice);
        assert.equal(ring.callType, 'video');
        assert.equal(ring.offer, 'v=0 offer');

        // The caller cannot answer or decline their own call; a second call in the chat waits.
        assert.equal((await v1(srv, alice, 'PUT', `/calls/${c.id}/answer/${alice}`, { sdp_answer: 'x' })).status, 409);
        assert.equal((await v1(srv, alice, 'PUT', `/calls/${c.id}/decline/${alice}`)).status, 409);
        const second = await v1(srv, bob, 'POST', `/calls/initiate/${bob}`, { conversation_id: chat, call_type: 'Audio', sdp_offer: 'o' });
        assert.equal(second.status, 409);
        assert.equal(second.body.code, 'CONFLICT');

        // Trickle ICE from the caller reaches the ringing SUP callee.
        const early = waitFor(bobSup, 'call:ice-candidate', (e) => e.callId === c.id);
        assert.deepEqual((await v1(srv, alice, 'POST', `/calls/${c.id}/ice/${alice}`, { candidate: 'candidate:a1' })).body, { success: true });
        assert.equal((await early).candidate, 'candidate:a1');

        const answered = waitFor(aliceSup, 'call:answer', (e) => e.callId === c.id);
        const ans = await v1(srv, bob, 'PUT', `/calls/${c.id}/answer/${bob}`, { sdp_answer: 'v=0 answer' });
        assert.equal(ans.status, 200);
        assert.deepEqual(ans.body, { success: true, status: 'answered' });
        const got = await answered;
        assert.equal(got.userId, bob);
        assert.equal(got.answer, 'v=0 answer');
        const twice = await v1(srv, bob, 'PUT', `/calls/${c.id}/answer/${bob}`, { sdp_answer: 'again' });
        assert.equal(twice.status, 409);
        assert.equal(twice.body.code, 'CONFLICT');

        const toAlice = waitFor(aliceSup, 'call:ice-candidate', (e) => e.callId === c.id);
        await v1(srv, bob, 'POST', `/calls/${c.id}/ice/${bob}`, { candidate: 'candidate:b1' });
        assert.equal((await toAlice).candidate, 'candidate:b1');
        await v1(srv, alice, 'POST', `/calls/${c.id}/ice/${alice}`, { candidate: 'candidate:a2' });
        const all = await v1(srv, bob, 'GET', `/calls/${c.id}/ice`);
        assert.deepEqual(all.body, { candidates: ['candidate:a1', 'candidate:b1', 'candidate:a2'], count: 3 });
        const mine = await v1(srv, bob, 'GET', `/calls/${c.id}/ice?from=${alice}`);
        assert.deepEqual(mine.body, { candidates: ['candidate:a1', 'candidate:a2'], count: 2 });

        const ended = waitFor(aliceSup, 'call:end', (e) => e.callId === c.id);
        const end = await v1(srv, bob, 'PUT', `/calls/${c.id}/end/${bob}`);
        assert.equal(end.status, 200);
        assert.deepEqual(end.body, { success: true, status: 'ended' });
        assert.equal((await ended).reason, 'hangup');
        for (const [method, path, body] of [
          ['PUT', `/calls/${c.id}/end/${alice}`, undefined],
          ['PUT', `/calls/${c.id}/answer/${bob}`, { sdp_answer: 'late' }],
          ['POST', `/calls/${c.id}/ice/${alice}`, { candidate: 'late' }],
        ]) {
          const late = await v1(srv, method === 'PUT' && path.includes('answer') ? bob : alice, method, path, body);
          assert.equal(late.status, 409, path);
        }

        const history = await v1(srv, alice, 'GET', `/calls/history/${chat}`);
        assert.equal(history.status, 200);
        assert.equal(history.body.count, 1);
        const h = history.body.calls[0];
        assert.equal(h.id, c.id);
        assert.equal(h.status, 'Ended');
        assert.equal(h.sdp_offer, 'v=0 offer');
        assert.equal(h.sdp_answer, 'v=0 answer');
        assert.ok(Number.isInteger(h.duration_seconds) && h.duration_seconds >= 0);
        assert.ok(Date.parse(h.started_at) >= Date.parse(h.created_at));
        assert.ok(Date.parse(h.ended_at) >= Date.parse(h.started_at));
      } finally {
        closeAll(aliceSup, bobSup);
      }
    });

    it('declined by the callee, missed when the caller gives up; history newest first, with a limit', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const aliceSup = await sup(srv, alice);
      try {
        const first = (await v1(srv, alice, 'POST', `/calls/initiate/${alice}`, { conversation_id: chat, call_type: 'Audio', sdp_offer: 'o1' })).body;
        const rejected = waitFor(aliceSup, 'call:reject', (e) => e.callId === first.id);
        const dec = await v1(srv, bob, 'PUT', `/calls/${first.id}/decline/${bob}`);
        assert.deepEqual(dec.body, { success: true, status: 'declined' });
        await rejected;
        assert.equal((await v1(srv, bob, 'PUT', `/calls/${first.id}/answer/${bob}`, { sdp_answer: 'a' })).status, 409);

        const second = (await v1(srv, alice, 'POST', `/calls/initiate/${alice}`, { conversation_id: chat, call_type: 'Audio', sdp_offer: 'o2' })).body;
        const gaveUp = await v1(srv, alice, 'PUT', `/calls/${second.id}/end/${alice}`);
        assert.deepEqual(gaveUp.body, { success: true, status: 'missed' });

        const third = (await v1(srv, alice, 'POST', `/calls/initiate/${alice}`, { conversation_id: chat, call_type: 'Audio', sdp_offer: 'o3' })).body;
        const hungUpRinging = await v1(srv, bob, 'PUT', `/calls/${third.id}/end/${bob}`);
        assert.deepEqual(hungUpRinging.body, { success: true, status: 'declined' }, 'a callee ending a ringing call declines it');

        const history = (await v1(srv, bob, 'GET', `/calls/history/${chat}`)).body;
        assert.deepEqual(history.calls.map((c) => [c.id, c.status]), [[third.id, 'Declined'], [second.id, 'Missed'], [first.id, 'Declined']]);
        for (const c of history.calls) {
          assert.equal(c.duration_seconds, null);
          assert.equal(c.started_at, null);
          assert.ok(c.ended_at);
        }
        const limited = (await v1(srv, bob, 'GET', `/calls/history/${chat}?limit=2`)).body;
        assert.deepEqual(limited.calls.map((c) => c.id), [third.id, second.id]);
        assert.equal(limited.count, 2);
        assert.equal((await v1(srv, bob, 'GET', `/calls/history/${chat}?limit=lots`)).status, 400);
      } finally {
        closeAll(aliceSup);
      }
    });

    it('an unanswered call becomes Missed after the ring timeout', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(fast.url, token(alice), 'direct', [bob]);
      const aliceSup = await sup(fast, alice);
      try {
        const c = (await v1(fast, alice, 'POST', `/calls/initiate/${alice}`, { conversation_id: chat, call_type: 'Video', sdp_offer: 'o' })).body;
        const missed = await waitFor(aliceSup, 'call:end', (e) => e.callId === c.id);
        assert.equal(missed.reason, 'missed');
        const h = (await v1(fast, bob, 'GET', `/calls/history/${chat}`)).body.calls[0];
        assert.equal(h.status, 'Missed');
        assert.equal(h.duration_seconds, null);
        assert.equal((await v1(fast, bob, 'PUT', `/calls/${c.id}/answer/${bob}`, { sdp_answer: 'a' })).status, 409);
      } finally {
        closeAll(aliceSup);
      }
    });

    it('a call a SUP client makes is answered over REST and listed in Socialink history', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const aliceSup = await sup(srv, alice);
      try {
        const started = await call(aliceSup, 'call:initiate', { chatId: chat, callType: 'audio', offer: { type: 'offer', sdp: 'v=0' } });
        const answered = waitFor(aliceSup, 'call:answer', (e) => e.callId === started.callId);
        const ans = await v1(srv, bob, 'PUT', `/calls/${started.callId}/answer/${bob}`, { sdp_answer: 'v=0 answer' });
        assert.equal(ans.status, 200);
        assert.equal((await answered).answer, 'v=0 answer');
        const candidate = { candidate: 'candidate:sup', sdpMid: '0' };
        await call(aliceSup, 'call:ice-candidate', { callId: started.callId, candidate });
        const listed = (await v1(srv, bob, 'GET', `/calls/${started.callId}/ice`)).body;
        assert.deepEqual(listed.candidates.map((t) => JSON.parse(t)), [candidate], "another dialect's candidate as its JSON text");
        const h = (await v1(srv, bob, 'GET', `/calls/history/${chat}`)).body.calls[0];
        assert.equal(h.id, started.callId);
        assert.equal(h.status, 'Answered');
        assert.equal(h.call_type, 'Audio');
        assert.deepEqual(JSON.parse(h.sdp_offer), { type: 'offer', sdp: 'v=0' });
        await call(aliceSup, 'call:end', { callId: started.callId });
      } finally {
        closeAll(aliceSup);
      }
    });

    it('authorizes every call endpoint: actor ids, members only, unknown ids, bodies', async () => {
      const [alice, bob, eve] = [uid('alice'), uid('bob'), uid('eve')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const start = (who, body) => v1(srv, who, 'POST', `/calls/initiate/${who}`, body);
      // Acting as someone else: 403 before the (missing) body is looked at.
      assert.equal((await v1(srv, eve, 'POST', `/calls/initiate/${alice}`, {})).status, 403);
      for (const body of [{ conversation_id: chat, call_type: 'Fax', sdp_offer: 'o' }, { conversation_id: chat, call_type: 'Audio' }, {}]) {
        const res = await start(alice, body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.code, 'VALIDATION_FAILED');
      }
      assert.equal((await start(eve, { conversation_id: chat, call_type: 'Audio', sdp_offer: 'o' })).status, 403);
      assert.equal((await start(alice, { conversation_id: uid('nochat'), call_type: 'Audio', sdp_offer: 'o' })).status, 404);

      const c = (await start(alice, { conversation_id: chat, call_type: 'audio', sdp_offer: 'o' })).body;
      for (const [method, path, body] of [
        ['PUT', `/calls/${c.id}/answer/${eve}`, { sdp_answer: 'a' }],
        ['PUT', `/calls/${c.id}/decline/${eve}`, undefined],
        ['PUT', `/calls/${c.id}/end/${eve}`, undefined],
        ['POST', `/calls/${c.id}/ice/${eve}`, { candidate: 'c' }],
        ['GET', `/calls/${c.id}/ice`, undefined],
        ['GET', `/calls/history/${chat}`, undefined],
      ]) {
        const res = await v1(srv, eve, method, path, body);
        assert.equal(res.status, 403, `${method} ${path}`);
        assert.equal(res.body.code, 'FORBIDDEN');
      }
      // Bob acting as alice.
      assert.equal((await v1(srv, bob, 'PUT', `/calls/${c.id}/end/${alice}`)).status, 403);
      const unknown = uid('nocall');
      for (const [method, path, body] of [
        ['PUT', `/calls/${unknown}/answer/${bob}`, { sdp_answer: 'a' }],
        ['PUT', `/calls/${unknown}/decline/${bob}`, undefined],
        ['PUT', `/calls/${unknown}/end/${bob}`, undefined],
        ['POST', `/calls/${unknown}/ice/${bob}`, { candidate: 'c' }],
        ['GET', `/calls/${unknown}/ice`, undefined],
        ['GET', `/calls/history/${unknown}`, undefined],
      ]) {
        const res = await v1(srv, bob, method, path, body);
        assert.equal(res.status, 404, `${method} ${path}`);
        assert.equal(res.body.code, 'NOT_FOUND');
      }
      assert.equal((await v1(srv, bob, 'PUT', `/calls/${c.id}/answer/${bob}`, {})).status, 400);
      assert.equal((await v1(srv, bob, 'POST', `/calls/${c.id}/ice/${bob}`, { candidate: 'x'.repeat(65 * 1024) })).status, 400);
      assert.equal((await v1(srv, null, 'GET', `/calls/history/${chat}`)).status, 401);
      await v1(srv, alice, 'PUT', `/calls/${c.id}/end/${alice}`);
      await eventually(async () => (await v1(srv, bob, 'GET', `/calls/history/${chat}`)).body.calls[0].status === 'Missed');
    });
  });
}
