// The authorization matrix (issue #17): for every REST route and every socket event of sup,
// spark and mrezhen, someone who may not do it is refused, and nothing changes (the state is
// read back after each refusal). Three kinds of intruder:
//
//   stranger   – mallory, who is in none of the conversations;
//   member     – bob, a plain member of the group, for what needs a role (owner/admin) or
//                being the author (edits, deleting for everyone);
//   device     – mallory again, acting on a device of alice's (verifying it, taking its key).
//
// Table-driven: a row is { dialect, op, who, act(ctx) → answer, refused: codes or statuses,
// check?(ctx) }. Another dialect (e2e, socialink) adds its rows to ROWS (and, if its state
// lives elsewhere, a reader to `snapshot`). Every row runs on every configured database.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, collect, createChat, closeAll, api, upload,
} from './helpers.js';
import { online } from './mrezhen_client.js';
import { png } from './png.js';

/** Refused over Socket.IO: an error ack with one of `codes`. */
const sio = (socket, event, payload) => ask(socket, event, payload);
/** Refused over REST: a status among those given, in the envelope. */
const rest = (ctx, who, method, path, body) => api(ctx.url, ctx.tok[who], method, path, body);

const FORBIDDEN_OR_NOT_FOUND = ['FORBIDDEN', 'NOT_FOUND'];

/**
 * Every row. `act` returns the answer: a Socket.IO ack, a REST `{ status, body }`, or a Mrezhen
 * frame. `refused` lists the accepted error codes (every answer must be an error with one).
 */
const ROWS = [
  // ---- REST (Spark's API) ----
  { dialect: 'rest', op: 'GET /api/conversations/{id}', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/conversations/${c.group}`) },
  { dialect: 'rest', op: 'PATCH /api/conversations/{id}', who: 'stranger', act: (c) => rest(c, 'mallory', 'PATCH', `/api/conversations/${c.group}`, { name: 'pwned' }) },
  { dialect: 'rest', op: 'PATCH /api/conversations/{id}', who: 'member', act: (c) => rest(c, 'bob', 'PATCH', `/api/conversations/${c.group}`, { name: 'pwned' }) },
  { dialect: 'rest', op: 'PUT /api/conversations/{id}', who: 'member', act: (c) => rest(c, 'bob', 'PUT', `/api/conversations/${c.group}`, { name: 'pwned' }) },
  { dialect: 'rest', op: 'DELETE /api/conversations/{id}', who: 'stranger', act: (c) => rest(c, 'mallory', 'DELETE', `/api/conversations/${c.group}`) },
  { dialect: 'rest', op: 'POST /api/conversations/{id}/members', who: 'stranger', act: (c) => rest(c, 'mallory', 'POST', `/api/conversations/${c.group}/members`, { userId: c.ids.mallory }) },
  { dialect: 'rest', op: 'POST /api/conversations/{id}/members', who: 'member', act: (c) => rest(c, 'bob', 'POST', `/api/conversations/${c.group}/members`, { userId: c.ids.mallory }) },
  { dialect: 'rest', op: 'DELETE /api/conversations/{id}/members/{userId}', who: 'stranger', act: (c) => rest(c, 'mallory', 'DELETE', `/api/conversations/${c.group}/members/${c.ids.bob}`) },
  { dialect: 'rest', op: 'DELETE /api/conversations/{id}/members/{userId}', who: 'member', act: (c) => rest(c, 'bob', 'DELETE', `/api/conversations/${c.group}/members/${c.ids.carol}`) },
  { dialect: 'rest', op: 'GET /api/conversations/{id}/messages', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/conversations/${c.group}/messages`) },
  { dialect: 'rest', op: 'POST /api/conversations/{id}/messages', who: 'stranger', act: (c) => rest(c, 'mallory', 'POST', `/api/conversations/${c.group}/messages`, { content: 'intrusion' }) },
  { dialect: 'rest', op: 'PUT /api/messages/{id}', who: 'stranger', act: (c) => rest(c, 'mallory', 'PUT', `/api/messages/${c.message}`, { content: 'pwned' }) },
  { dialect: 'rest', op: 'PUT /api/messages/{id}', who: 'member', act: (c) => rest(c, 'bob', 'PUT', `/api/messages/${c.message}`, { content: 'pwned' }) },
  { dialect: 'rest', op: 'GET /api/messages/{id}/edits', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/messages/${c.message}/edits`) },
  { dialect: 'rest', op: 'DELETE /api/messages/{id}?deleteFor=everyone', who: 'stranger', act: (c) => rest(c, 'mallory', 'DELETE', `/api/messages/${c.message}?deleteFor=everyone`) },
  { dialect: 'rest', op: 'DELETE /api/messages/{id}?deleteFor=everyone', who: 'member', act: (c) => rest(c, 'bob', 'DELETE', `/api/messages/${c.message}?deleteFor=everyone`) },
  { dialect: 'rest', op: 'DELETE /api/messages/{id}?deleteFor=self', who: 'stranger', act: (c) => rest(c, 'mallory', 'DELETE', `/api/messages/${c.message}?deleteFor=self`) },
  { dialect: 'rest', op: 'POST /api/messages/{id}/reactions', who: 'stranger', act: (c) => rest(c, 'mallory', 'POST', `/api/messages/${c.message}/reactions`, { emoji: '🙈' }) },
  { dialect: 'rest', op: 'DELETE /api/messages/{id}/reactions/{emoji}', who: 'stranger', act: (c) => rest(c, 'mallory', 'DELETE', `/api/messages/${c.message}/reactions/${encodeURIComponent('👍')}`) },
  { dialect: 'rest', op: 'GET /api/attachments/{id}', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/attachments/${c.attachment}`) },
  { dialect: 'rest', op: 'GET /api/attachments/{id}/thumbnail', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/attachments/${c.attachment}/thumbnail`) },
  { dialect: 'rest', op: 'GET /api/encryption/keys/{userId}', who: 'stranger', act: (c) => rest(c, 'mallory', 'GET', `/api/encryption/keys/${c.ids.alice}`) },
  { dialect: 'rest', op: 'POST /api/encryption/verify', who: 'device', act: (c) => rest(c, 'mallory', 'POST', '/api/encryption/verify', { deviceId: c.device, verificationCode: c.code }) },
  // A key uploaded under another user's device id is the uploader's own device: alice's stays.
  { dialect: 'rest', op: 'POST /api/encryption/keys', who: 'device', allowed: true, act: (c) => rest(c, 'mallory', 'POST', '/api/encryption/keys', { deviceId: c.device, publicKey: 'mallory-key-'.padEnd(40, 'x') }) },
  { dialect: 'rest', op: 'GET /api/conversations', who: 'stranger', allowed: true, act: (c) => rest(c, 'mallory', 'GET', '/api/conversations'),
    check: (c, res) => assert.ok(!res.body.data.conversations.some((x) => x.id === c.group), 'not listed to a stranger') },

  // ---- sup (Socket.IO) ----
  ...[
    ['message:new', (c) => ({ chatId: c.group, encryptedContent: 'intrusion', messageType: 'text' })],
    ['message:delivered', (c) => ({ chatId: c.group, messageId: c.message })],
    ['message:read', (c) => ({ chatId: c.group, messageId: c.message })],
    ['message:typing', (c) => ({ chatId: c.group })],
    ['message:stop-typing', (c) => ({ chatId: c.group })],
    ['chat:member-typing', (c) => ({ chatId: c.group, isTyping: true })],
    ['message:sync', (c) => ({ chatId: c.group, afterSeq: 0 })],
    ['chat:join', (c) => ({ chatId: c.group })],
    ['chat:get-active-members', (c) => ({ chatId: c.group })],
    ['call:initiate', (c) => ({ chatId: c.group, callType: 'audio' })],
    ['call:answer', (c) => ({ callId: c.call, answer: { sdp: 'x' } })],
    ['call:reject', (c) => ({ callId: c.call })],
    ['call:end', (c) => ({ callId: c.call })],
    ['call:ice-candidate', (c) => ({ callId: c.call, candidate: { candidate: 'x' } })],
    ['call:history', (c) => ({ chatId: c.direct })],
    ['reaction:new', (c) => ({ messageId: c.message, emoji: '🙈' })],
    ['reaction:remove', (c) => ({ messageId: c.message, emoji: '👍' })],
    ['reaction:get', (c) => ({ messageId: c.message })],
    ['notification:read', (c) => ({ notificationId: c.notification })],
    ['notification:clear', (c) => ({ notificationId: c.notification })],
  ].map(([event, payload]) => ({ dialect: 'sup', op: event, who: 'stranger', act: (c) => sio(c.sup.mallory, event, payload(c)) })),
  { dialect: 'sup', op: 'chat:join-multiple', who: 'stranger', allowed: true,
    act: (c) => sio(c.sup.mallory, 'chat:join-multiple', { chatIds: [c.group, c.direct] }),
    check: (_c, res) => assert.deepEqual([res.data.joined, res.data.failed.map((f) => f.error.code)], [[], ['FORBIDDEN', 'FORBIDDEN']]) },
  { dialect: 'sup', op: 'presence:subscribe', who: 'stranger', allowed: true,
    act: (c) => sio(c.sup.mallory, 'presence:subscribe', { userIds: [c.ids.alice, c.ids.bob] }),
    check: (c, res) => assert.deepEqual([res.data.presence, res.data.hidden.sort()], [[], [c.ids.alice, c.ids.bob].sort()]) },
  // Clearing all is one's own only: bob's notification stays (read back by the snapshot).
  { dialect: 'sup', op: 'notification:clear-all', who: 'stranger', allowed: true, act: (c) => sio(c.sup.mallory, 'notification:clear-all', {}) },
  // A call's callee who is a member, but not this call's: carol did not pick up and is no party.
  { dialect: 'sup', op: 'call:answer', who: 'member', act: (c) => sio(c.sup.carol, 'call:answer', { callId: c.call, answer: {} }) },
  { dialect: 'sup', op: 'call:ice-candidate', who: 'member', act: (c) => sio(c.sup.carol, 'call:ice-candidate', { callId: c.call, candidate: {} }) },

  // ---- spark (Socket.IO) ----
  ...[
    ['send_message', (c) => ({ conversationId: c.group, content: 'intrusion' })],
    ['typing_start', (c) => ({ conversationId: c.group })],
    ['typing_stop', (c) => ({ conversationId: c.group })],
    ['mark_read', (c) => ({ conversationId: c.group, messageId: c.message })],
    ['mark_delivered', (c) => ({ conversationId: c.group, messageId: c.message })],
    ['edit_message', (c) => ({ messageId: c.message, content: 'pwned' })],
    ['delete_message', (c) => ({ messageId: c.message, deleteFor: 'everyone' })],
    ['add_reaction', (c) => ({ messageId: c.message, emoji: '🙈' })],
    ['remove_reaction', (c) => ({ messageId: c.message, emoji: '👍' })],
  ].map(([event, payload]) => ({ dialect: 'spark', op: event, who: 'stranger', act: (c) => sio(c.spark.mallory, event, payload(c)) })),
  { dialect: 'spark', op: 'edit_message', who: 'member', act: (c) => sio(c.spark.bob, 'edit_message', { messageId: c.message, content: 'pwned' }) },
  { dialect: 'spark', op: 'delete_message', who: 'member', act: (c) => sio(c.spark.bob, 'delete_message', { messageId: c.message, deleteFor: 'everyone' }) },

  // ---- mrezhen (raw WebSocket) ----
  // A history is the caller's own pair's: mallory asking for bob's never sees alice and bob's.
  { dialect: 'mrezhen', op: 'get_history', who: 'stranger', allowed: true,
    act: (c) => c.mz.mallory.request({ type: 'get_history', with: c.ids.bob }, 'message_history'),
    check: (_c, res) => assert.deepEqual([res.type, res.messages], ['message_history', []]) },
  { dialect: 'mrezhen', op: 'get_online_users', who: 'stranger', allowed: true,
    act: (c) => c.mz.mallory.request({ type: 'get_online_users' }, 'online_users'),
    check: (c, res) => assert.deepEqual(res.users, [c.ids.mallory]) },
];

/** What a refusal must leave as it was, read back through the owners' own eyes. */
async function snapshot(c) {
  const conv = await rest(c, 'alice', 'GET', `/api/conversations/${c.group}`);
  const page = await rest(c, 'alice', 'GET', `/api/conversations/${c.group}/messages`);
  const direct = await rest(c, 'alice', 'GET', `/api/conversations/${c.direct}`);
  const keys = await rest(c, 'alice', 'GET', `/api/encryption/keys/${c.ids.alice}`);
  const pending = await call(c.sup.bob, 'notification:get-pending', {});
  const calls = await call(c.sup.alice, 'call:history', { chatId: c.direct });
  const active = await call(c.sup.alice, 'chat:get-active-members', { chatId: c.group });
  const file = await fetch(`${c.url}/api/attachments/${c.attachment}`, { headers: { authorization: `Bearer ${c.tok.alice}` } });
  return {
    conversation: (({ name, description, avatar, lastSeq, participants }) => ({
      name, description, avatar, lastSeq, participants: participants.map((p) => [p.userId, p.role]),
    }))(conv.body.data),
    messages: page.body.data.messages.map((m) => ({ id: m.id, content: m.content, deleted: m.deleted, edited: m.edited, reactions: m.reactions })),
    directSeq: direct.body.data.lastSeq,
    keys: keys.body.data.keys.map((k) => [k.deviceId, k.fingerprint, k.verified]),
    bobsNotifications: pending.notifications.map((n) => [n.id, n.read]),
    calls: calls.calls.map((x) => [x.callId, x.status]),
    activeMembers: active.activeMembers.sort(),
    attachment: file.status,
  };
}

/** The error code of an answer, whatever carried it; null for a success. */
function codeOf(res) {
  if (res && typeof res.status === 'number' && 'body' in res) return res.body?.success === false ? { status: res.status, code: res.body.error?.code } : null;
  if (res?.type === 'error') return { code: res.code };
  if (res && res.success === false) return { code: res.error?.code };
  return null;
}

for (const backend of backends()) {
  describe(`authorization matrix on ${backend}`, () => {
    let srv;
    const c = {};
    before(async () => {
      srv = await startServer({ backend, env: { CALL_RING_TIMEOUT: '600000' } });
      c.url = srv.url;
      c.ids = { alice: uid('alice'), bob: uid('bob'), carol: uid('carol'), mallory: uid('mallory') };
      c.tok = Object.fromEntries(Object.entries(c.ids).map(([k, id]) => [k, token(id, { username: k })]));
      // A group: alice owns it, carol is an admin, bob a plain member; mallory is in nothing.
      c.group = await createChat(c.url, c.tok.alice, 'group', [c.ids.bob], { name: 'team' });
      await api(c.url, c.tok.alice, 'POST', `/api/conversations/${c.group}/members`, { userId: c.ids.carol, role: 'admin' });
      c.direct = await createChat(c.url, c.tok.alice, 'direct', [c.ids.bob]);
      c.sup = {};
      c.spark = {};
      for (const who of ['alice', 'bob', 'carol', 'mallory']) {
        c.sup[who] = await connect(c.url, { namespace: '/sup', auth: { token: c.tok[who] } });
        c.spark[who] = await connect(c.url, { namespace: '/spark', auth: { token: c.tok[who] } });
      }
      await call(c.sup.alice, 'chat:join', { chatId: c.group });
      // A message of alice's, mentioning bob (a notification of his), with alice's reaction and a file.
      const pic = await upload(c.url, c.tok.alice, png(16, 16), { contentType: 'image/png', name: 'p.png' });
      c.attachment = pic.body.data.id;
      const sent = await rest(c, 'alice', 'POST', `/api/conversations/${c.group}/messages`,
        { content: 'hello team', attachments: [c.attachment], metadata: { mentions: [c.ids.bob] } });
      c.message = sent.body.data.id;
      await call(c.sup.alice, 'reaction:new', { messageId: c.message, emoji: '👍' });
      c.notification = (await call(c.sup.bob, 'notification:get-pending', {})).notifications[0]?.id;
      assert.ok(c.notification, 'bob has a notification to protect');
      // A device of alice's with a key, unverified (her second device), and its code.
      await rest(c, 'alice', 'POST', '/api/encryption/keys', { deviceId: 'laptop', publicKey: 'alice-laptop-key-'.padEnd(40, 'k') });
      const second = await rest(c, 'alice', 'POST', '/api/encryption/keys', { deviceId: 'phone', publicKey: 'alice-phone-key-'.padEnd(40, 'p') });
      c.device = 'phone';
      const fp = second.body.data.fingerprint;
      c.code = String(parseInt(fp.slice(0, 8), 16) % 1000000).padStart(6, '0');
      // A ringing call between alice and bob.
      c.call = (await call(c.sup.alice, 'call:initiate', { chatId: c.direct, callType: 'audio' })).callId;
      c.mz = { mallory: await online(c.url, token(c.ids.mallory, { shape: 'mrezhen' })) };
      c.seen = { alice: collect(c.sup.alice, 'message:typing'), aliceReceipts: collect(c.sup.alice, 'message:read') };
    });
    after(async () => {
      for (const s of Object.values(c.sup ?? {})) closeAll(s);
      for (const s of Object.values(c.spark ?? {})) closeAll(s);
      await c.mz?.mallory.close();
      await srv.stop();
    });

    it('covers every dialect that exists here', () => {
      assert.deepEqual([...new Set(ROWS.map((r) => r.dialect))].sort(), ['mrezhen', 'rest', 'spark', 'sup']);
    });

    for (const row of ROWS) {
      it(`${row.dialect} ${row.op}: ${row.who} ${row.allowed ? 'gets only their own' : 'is refused'}, nothing changes`, async () => {
        const before = await snapshot(c);
        const res = await row.act(c);
        const refusal = codeOf(res);
        if (row.allowed) {
          assert.equal(refusal, null, `answered: ${JSON.stringify(res?.body ?? res)}`);
        } else {
          assert.ok(refusal, `not refused: ${JSON.stringify(res?.body ?? res).slice(0, 300)}`);
          const codes = row.refused ?? FORBIDDEN_OR_NOT_FOUND;
          assert.ok(codes.includes(refusal.code), `refused with ${JSON.stringify(refusal)}`);
          if (refusal.status !== undefined) assert.ok([403, 404].includes(refusal.status), `status ${refusal.status}`);
        }
        await row.check?.(c, res);
        assert.deepEqual(await snapshot(c), before, 'the state is as it was');
        // Nothing reached alice's sockets on the intruder's behalf.
        assert.deepEqual([c.seen.alice.length, c.seen.aliceReceipts.length], [0, 0]);
      });
    }
  });
}
