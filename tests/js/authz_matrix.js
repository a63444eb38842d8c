// The authorization matrix (issue #17), run by authz_matrix.test.js and
// authz_matrix_socialink_e2e.test.js: for every REST route and every socket event of sup,
// spark and mrezhen, someone who may not do it is refused, and nothing changes (the state is
// read back after each refusal). Three kinds of intruder:
//
//   stranger   – mallory, who is in none of the conversations;
//   member     – bob, a plain member of the group, for what needs a role (owner/admin) or
//                being the author (edits, deleting for everyone);
//   device     – mallory again, acting on a device of alice's (verifying it, taking its key).
//
// Socialink (protocols/socialink.md §2) adds "actor id ≠ token subject" (403 before anything)
// and, for devices, mallory naming alice's device under her own user id (404: not hers). e2e
// (anonymous sessions) has no tokens: its intruders are sockets — one joined as member A acting
// as B, one joined to another session, a visitor with a wrong key — and callers of the admin
// list without the admin token.
//
// Table-driven: a row is { dialect, op, who, act(ctx) → answer, refused?: codes,
// statuses?: HTTP statuses, check?(ctx) }. A new dialect adds its rows to ROWS and, if its
// state lives elsewhere, a reader to `snapshot`. Every row runs on every configured database.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, collect, createChat, closeAll, api, upload,
} from './helpers.js';
import { online, open } from './mrezhen_client.js';
import { png } from './png.js';
import { Sl, makeDevice, b64, NIL } from './socialink_client.js';
import { visitor, join, record, roundTrip, pk } from './e2e_client.js';

/** Refused over Socket.IO: an error ack with one of `codes`. */
const sio = (socket, event, payload) => ask(socket, event, payload);
/** Refused over REST: a status among those given, in the envelope. */
const rest = (ctx, who, method, path, body) => api(ctx.url, ctx.tok[who], method, path, body);

const FORBIDDEN_OR_NOT_FOUND = ['FORBIDDEN', 'NOT_FOUND'];

/** Socialink REST as `who`, under /api/v1. */
const sl = (c, who, method, path, body) => c.sl[who].call(method, path, body);
const ct = (text) => b64(Buffer.from(text));
/** A Socialink WebSocket upgrade: the refusal as `{ status, body }`, or an opened socket (closed again). */
const slUpgrade = (c, tok, path) => open(c.url, tok, { path }).then(
  async (socket) => { await socket.close(); return { opened: true }; },
  (e) => ({ status: e.status, body: e.body && JSON.parse(e.body) }));
/**
 * A frame on mallory's Socialink WebSocket, then a `ping`: the frame's `error`, or `{}` when
 * the `pong` comes first (frames of one connection are handled in order).
 */
async function slFrame(c, frame) {
  const socket = c.slSock.mallory;
  socket.send(frame);
  socket.send({ type: 'ping' });
  const answer = await socket.take((f) => f.type === 'error' || f.type === 'pong', 10000, 'error or pong');
  if (answer.type === 'pong') return {};
  await socket.next('pong');
  return answer;
}
/** An e2e emit on the socket `who` (`a`, `m`, `lurker`), answered by its ack. */
const e2e = (c, who, event, payload) => ask(c.e2e[who], event, payload);
/** An e2e `join-session` by a fresh visitor, which leaves again. */
async function e2eJoin(c, payload) {
  const v = await visitor(c.url);
  try { return await ask(v, 'join-session', payload); } finally { closeAll(v); }
}
const ADMIN = 'admin-' + uid('token');

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

  // ---- socialink (REST under /api/v1, §2's table) ----
  // Keys: an actor id of another user is 403; alice's device named under mallory's own id is
  // not mallory's device (404).
  { dialect: 'socialink', op: 'POST /keys/register/{user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/keys/register/${c.ids.alice}`, makeDevice().registration()) },
  ...['rotate', 'prekeys', 'deactivate', 'stats'].flatMap((verb) => {
    const [method, body] = {
      rotate: ['PUT', () => makeDevice().signed()],
      prekeys: ['POST', () => makeDevice().onetime(2)],
      deactivate: ['DELETE', () => undefined],
      stats: ['GET', () => undefined],
    }[verb];
    return [
      { dialect: 'socialink', op: `${method} /keys/${verb}/{user_id}/{device_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', method, `/keys/${verb}/${c.ids.alice}/${c.dev.alice}`, body()) },
      { dialect: 'socialink', op: `${method} /keys/${verb}/{own user_id}/{another's device_id}`, who: 'device', act: (c) => sl(c, 'mallory', method, `/keys/${verb}/${c.ids.mallory}/${c.dev.alice}`, body()) },
    ];
  }),
  // Messages.
  { dialect: 'socialink', op: 'POST /messages/send/{sender_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/messages/send/${c.ids.alice}`, { conversation_id: NIL, recipient_id: c.ids.bob, ciphertext: ct('as alice') }) },
  { dialect: 'socialink', op: 'POST /messages/send/{sender_id} into a group', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/messages/send/${c.ids.mallory}`, { conversation_id: c.slGroup, ciphertext: ct('intrusion') }) },
  { dialect: 'socialink', op: 'POST /messages/send/{sender_id} into a direct', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/messages/send/${c.ids.mallory}`, { conversation_id: c.slDirect, ciphertext: ct('intrusion') }) },
  { dialect: 'socialink', op: 'GET /messages/conversation/{user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/messages/conversation/${c.ids.alice}?conversation_id=${c.slDirect}`) },
  { dialect: 'socialink', op: 'GET /messages/conversation/{own user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/messages/conversation/${c.ids.mallory}?conversation_id=${c.slGroup}`) },
  ...['delivered', 'read'].flatMap((verb) => [
    { dialect: 'socialink', op: `PUT /messages/${verb}/{user_id}/{message_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', 'PUT', `/messages/${verb}/${c.ids.bob}/${c.slMessage}`) },
    { dialect: 'socialink', op: `PUT /messages/${verb}/{own user_id}/{message_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', 'PUT', `/messages/${verb}/${c.ids.mallory}/${c.slMessage}`) },
  ]),
  { dialect: 'socialink', op: 'DELETE /messages/delete/{user_id}/{message_id}?for_everyone=true', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/messages/delete/${c.ids.alice}/${c.slMessage}?for_everyone=true`) },
  { dialect: 'socialink', op: 'DELETE /messages/delete/{own user_id}/{message_id}?for_everyone=true', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/messages/delete/${c.ids.mallory}/${c.slMessage}?for_everyone=true`) },
  { dialect: 'socialink', op: 'DELETE /messages/delete/{own user_id}/{message_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/messages/delete/${c.ids.mallory}/${c.slGroupMessage}`) },
  { dialect: 'socialink', op: 'DELETE /messages/delete/{user_id}/{message_id}?for_everyone=true', who: 'member', act: (c) => sl(c, 'bob', 'DELETE', `/messages/delete/${c.ids.bob}/${c.slMessage}?for_everyone=true`) },
  { dialect: 'socialink', op: 'GET /messages/queue/{user_id}/{device_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/messages/queue/${c.ids.bob}/${c.dev.bob}`) },
  { dialect: 'socialink', op: 'GET /messages/queue/{own user_id}/{another\'s device_id}', who: 'device', act: (c) => sl(c, 'mallory', 'GET', `/messages/queue/${c.ids.mallory}/${c.dev.bob}`) },
  { dialect: 'socialink', op: 'DELETE /messages/queue/{user_id}/{device_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/messages/queue/${c.ids.bob}/${c.dev.bob}`, [c.slMessage, c.slGroupMessage]) },
  { dialect: 'socialink', op: 'DELETE /messages/queue/{own user_id}/{another\'s device_id}', who: 'device', act: (c) => sl(c, 'mallory', 'DELETE', `/messages/queue/${c.ids.mallory}/${c.dev.bob}`, [c.slMessage, c.slGroupMessage]) },
  // Groups: add and remove need Owner/Admin (bob is a plain member); the owner stays.
  { dialect: 'socialink', op: 'POST /groups/create/{creator_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/groups/create/${c.ids.alice}`, { name: 'forged', member_ids: [c.ids.mallory] }) },
  { dialect: 'socialink', op: 'POST /groups/{group_id}/members/{added_by}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/groups/${c.slGroup}/members/${c.ids.alice}`, { user_id: c.ids.mallory }) },
  { dialect: 'socialink', op: 'POST /groups/{group_id}/members/{own added_by}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/groups/${c.slGroup}/members/${c.ids.mallory}`, { user_id: c.ids.mallory }) },
  { dialect: 'socialink', op: 'POST /groups/{group_id}/members/{added_by}', who: 'member', act: (c) => sl(c, 'bob', 'POST', `/groups/${c.slGroup}/members/${c.ids.bob}`, { user_id: c.ids.mallory }) },
  { dialect: 'socialink', op: 'DELETE /groups/{group_id}/members/{user_id}/{removed_by}', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/groups/${c.slGroup}/members/${c.ids.bob}/${c.ids.alice}`) },
  { dialect: 'socialink', op: 'DELETE /groups/{group_id}/members/{user_id}/{own removed_by}', who: 'stranger', act: (c) => sl(c, 'mallory', 'DELETE', `/groups/${c.slGroup}/members/${c.ids.bob}/${c.ids.mallory}`) },
  { dialect: 'socialink', op: 'DELETE /groups/{group_id}/members/{another member}/{removed_by}', who: 'member', act: (c) => sl(c, 'bob', 'DELETE', `/groups/${c.slGroup}/members/${c.ids.carol}/${c.ids.bob}`) },
  { dialect: 'socialink', op: 'DELETE /groups/{group_id}/members/{owner}/{removed_by}', who: 'member', act: (c) => sl(c, 'bob', 'DELETE', `/groups/${c.slGroup}/members/${c.ids.alice}/${c.ids.bob}`) },
  { dialect: 'socialink', op: 'POST /groups/{group_id}/send/{sender_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/groups/${c.slGroup}/send/${c.ids.alice}`, { ciphertext: ct('as alice') }) },
  { dialect: 'socialink', op: 'POST /groups/{group_id}/send/{own sender_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/groups/${c.slGroup}/send/${c.ids.mallory}`, { ciphertext: ct('intrusion') }) },
  { dialect: 'socialink', op: 'GET /groups/{group_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/groups/${c.slGroup}`) },
  { dialect: 'socialink', op: 'GET /groups/{group_id}/members', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/groups/${c.slGroup}/members`) },
  // Presence: writes are the user's own; reads show a stranger nothing (no shared conversation).
  { dialect: 'socialink', op: 'PUT /presence/online/{user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'PUT', `/presence/online/${c.ids.alice}`, { status: 'Busy' }) },
  { dialect: 'socialink', op: 'PUT /presence/offline/{user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'PUT', `/presence/offline/${c.ids.alice}`) },
  { dialect: 'socialink', op: 'PUT /presence/status/{user_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'PUT', `/presence/status/${c.ids.alice}`, { custom_status: 'pwned', status: 'Away' }) },
  { dialect: 'socialink', op: 'GET /presence/{user_id}', who: 'stranger', allowed: true, act: (c) => sl(c, 'mallory', 'GET', `/presence/${c.ids.alice}`),
    check: (c, res) => assert.deepEqual([res.body.user_id, res.body.status, res.body.custom_status], [c.ids.alice, 'Offline', null]) },
  { dialect: 'socialink', op: 'POST /presence/bulk', who: 'stranger', allowed: true, act: (c) => sl(c, 'mallory', 'POST', '/presence/bulk', [c.ids.alice, c.ids.bob]),
    check: (c, res) => assert.deepEqual(res.body.presences.map((p) => [p.user_id, p.status]), [[c.ids.alice, 'Offline'], [c.ids.bob, 'Offline']]) },
  // Typing.
  ...['PUT', 'DELETE'].flatMap((method) => [
    { dialect: 'socialink', op: `${method} /typing/{conversation_id}/{user_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', method, `/typing/${c.slGroup}/${c.ids.alice}`) },
    { dialect: 'socialink', op: `${method} /typing/{conversation_id}/{own user_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', method, `/typing/${c.slGroup}/${c.ids.mallory}`) },
  ]),
  { dialect: 'socialink', op: 'GET /typing/{conversation_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/typing/${c.slGroup}`) },
  // Calls: carol's call ringing dave in their group.
  { dialect: 'socialink', op: 'POST /calls/initiate/{caller_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/calls/initiate/${c.ids.alice}`, { conversation_id: c.slDirect, call_type: 'Audio', sdp_offer: 'x' }) },
  { dialect: 'socialink', op: 'POST /calls/initiate/{own caller_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'POST', `/calls/initiate/${c.ids.mallory}`, { conversation_id: c.slCallGroup, call_type: 'Video', sdp_offer: 'x' }) },
  ...[['PUT', 'answer', { sdp_answer: 'x' }], ['PUT', 'decline'], ['PUT', 'end'], ['POST', 'ice', { candidate: 'x' }]].flatMap(([method, verb, body]) => [
    { dialect: 'socialink', op: `${method} /calls/{call_id}/${verb}/{user_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', method, `/calls/${c.slCall}/${verb}/${['end', 'ice'].includes(verb) ? c.ids.carol : c.ids.dave}`, body) },
    { dialect: 'socialink', op: `${method} /calls/{call_id}/${verb}/{own user_id}`, who: 'stranger', act: (c) => sl(c, 'mallory', method, `/calls/${c.slCall}/${verb}/${c.ids.mallory}`, body) },
  ]),
  { dialect: 'socialink', op: 'GET /calls/{call_id}/ice', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/calls/${c.slCall}/ice`) },
  { dialect: 'socialink', op: 'GET /calls/history/{conversation_id}', who: 'stranger', act: (c) => sl(c, 'mallory', 'GET', `/calls/history/${c.slCallGroup}`) },
  // The WebSocket: the path's user must be the caller, the device the caller's.
  { dialect: 'socialink', op: 'WS /ws/{user_id}/{device_id}', who: 'stranger', act: (c) => slUpgrade(c, c.tok.mallory, `/ws/${c.ids.alice}/${c.dev.alice}`) },
  { dialect: 'socialink', op: 'WS /ws/{own user_id}/{another\'s device_id}', who: 'device', act: (c) => slUpgrade(c, c.tok.mallory, `/ws/${c.ids.mallory}/${c.dev.alice}`) },
  // Frames on mallory's own connection, about others' conversations.
  { dialect: 'socialink', op: 'WS frame delivered', who: 'stranger', act: (c) => slFrame(c, { type: 'delivered', message_id: c.slMessage }) },
  { dialect: 'socialink', op: 'WS frame read', who: 'stranger', act: (c) => slFrame(c, { type: 'read', message_id: c.slGroupMessage }) },
  { dialect: 'socialink', op: 'WS frame typing', who: 'stranger', act: (c) => slFrame(c, { type: 'typing', conversation_id: c.slGroup, is_typing: true }) },
  // An ack is for the connection's own device: bob's queue keeps what mallory names.
  { dialect: 'socialink', op: 'WS frame ack', who: 'device', allowed: true, act: (c) => slFrame(c, { type: 'ack', message_ids: [c.slMessage, c.slGroupMessage] }) },

  // ---- e2e (anonymous sessions over Socket.IO /e2e) ----
  // Socket `a` joined session s1 as member A (B is the other member): it acts as A only.
  ...[
    ['send-message', (c) => ({ sessionId: c.e2e.s1, from: c.e2e.B, to: c.e2e.A, encrypted: 'forged', type: 'text' })],
    ['save-public-key', (c) => ({ sessionId: c.e2e.s1, userId: c.e2e.B, publicKey: pk('forged'), displayName: 'B?' })],
    ['get-public-keys', (c) => ({ sessionId: c.e2e.s1, userId: c.e2e.B })],
    ['typing', (c) => ({ sessionId: c.e2e.s1, userId: c.e2e.B, displayName: 'B' })],
    ['stopped-typing', (c) => ({ sessionId: c.e2e.s1, userId: c.e2e.B, displayName: 'B' })],
    ['file-downloaded', (c) => ({ sessionId: c.e2e.s1, downloadedBy: c.e2e.B, senderId: c.e2e.A, fileName: 'f.bin' })],
    ['leave-session', (c) => ({ sessionId: c.e2e.s1, userId: c.e2e.B })],
  ].map(([event, payload]) => ({ dialect: 'e2e', op: `${event} as another member`, who: 'member', refused: ['FORBIDDEN'], act: (c) => e2e(c, 'a', event, payload(c)) })),
  // Socket `m` joined another session (s2); `lurker` joined none: s1 is not theirs.
  ...['m', 'lurker'].flatMap((who) => [
    ['send-message', (c) => ({ sessionId: c.e2e.s1, to: 'all', encrypted: 'intrusion', type: 'text' })],
    ['save-public-key', (c) => ({ sessionId: c.e2e.s1, publicKey: pk('m') })],
    ['get-public-keys', (c) => ({ sessionId: c.e2e.s1 })],
    ['set-session-key', (c) => ({ sessionId: c.e2e.s1, encryptedKeys: { [c.e2e.A]: 'forged', [c.e2e.B]: 'forged' } })],
    ['typing', (c) => ({ sessionId: c.e2e.s1 })],
    ['file-downloaded', (c) => ({ sessionId: c.e2e.s1, senderId: c.e2e.A, fileName: 'f.bin' })],
    ['leave-session', (c) => ({ sessionId: c.e2e.s1 })],
  ].map(([event, payload]) => ({ dialect: 'e2e', op: `${event} in a session not joined (${who === 'm' ? 'joined elsewhere' : 'joined nowhere'})`, who: 'stranger', refused: ['FORBIDDEN'], act: (c) => e2e(c, who, event, payload(c)) }))),
  // The member `to` names is one of the sender's session: m cannot reach s1's members.
  { dialect: 'e2e', op: 'send-message to a member of another session', who: 'stranger', refused: ['NOT_FOUND', 'FORBIDDEN', 'VALIDATION_FAILED'],
    act: (c) => e2e(c, 'm', 'send-message', { sessionId: c.e2e.s2, to: c.e2e.A, encrypted: 'intrusion', type: 'text' }) },
  // A wrong or missing key cannot join (as a new member, nor as B).
  ...[
    ['a wrong authKey', (c) => ({ sessionId: c.e2e.s1, authKey: 'wrong', userId: uid('x'), displayName: 'X' })],
    ['a wrong key in the id', (c) => ({ sessionId: `${c.e2e.s1}:wrong`, userId: uid('x'), displayName: 'X' })],
    ['no key', (c) => ({ sessionId: c.e2e.s1, userId: uid('x'), displayName: 'X' })],
    ['a wrong key, as member B', (c) => ({ sessionId: c.e2e.s1, authKey: 'wrong', userId: c.e2e.B, displayName: 'B', publicKey: pk('forged') })],
    ['a wrong key, claiming to create it', (c) => ({ sessionId: c.e2e.s1, authKey: 'wrong', userId: uid('x'), isCreator: true })],
  ].map(([how, payload]) => ({ dialect: 'e2e', op: `join-session with ${how}`, who: 'stranger', refused: ['INVALID_KEY'], act: (c) => e2eJoin(c, payload(c)) })),
  // Reserving an existing session does not re-key it.
  { dialect: 'e2e', op: 'POST /api/reserve-session of an existing session', who: 'stranger', refused: ['CONFLICT'], statuses: [409],
    act: (c) => api(c.url, undefined, 'POST', '/api/reserve-session', { sessionId: c.e2e.s1, authKey: 'mine' }),
    check: async (c) => assert.equal((await e2eJoin(c, { sessionId: c.e2e.s1, authKey: 'mine', userId: uid('x') })).error?.code, 'INVALID_KEY') },
  // The admin list.
  ...[
    ['no token', (c) => api(c.url, undefined, 'GET', '/sessions')],
    ['a wrong token', (c) => api(c.url, 'not-' + ADMIN, 'GET', '/sessions')],
    ['a wrong ?token=', (c) => api(c.url, undefined, 'GET', `/sessions?token=not-${ADMIN}`)],
    ['a user\'s JWT', (c) => api(c.url, c.tok.alice, 'GET', '/sessions')],
  ].map(([how, act]) => ({ dialect: 'e2e', op: `GET /sessions with ${how}`, who: 'stranger', refused: ['UNAUTHORIZED'], statuses: [401], act })),
];

/** Socialink's state, read back by its owners: the group, histories, bob's queue, alice's keys, the call, presence, typing. */
async function slSnapshot(c) {
  const history = async (who, chat) => (await sl(c, who, 'GET', `/messages/conversation/${c.ids[who]}?conversation_id=${chat}`))
    .body.messages.map((m) => [m.id, m.sequence_number, m.status, m.ciphertext]);
  const body = async (who, path) => (await sl(c, who, 'GET', path)).body;
  // Reads only: all at once.
  const [group, members, groupHistory, directHistory, bobsDirectHistory, queue, devices, mallorys, prekeys, calls, ice, presence, typing, conversations] = await Promise.all([
    body('alice', `/groups/${c.slGroup}`),
    body('alice', `/groups/${c.slGroup}/members`),
    history('alice', c.slGroup),
    history('alice', c.slDirect),
    history('bob', c.slDirect),
    body('bob', `/messages/queue/${c.ids.bob}/${c.dev.bob}`),
    body('alice', `/keys/devices/${c.ids.alice}`),
    body('mallory', `/keys/devices/${c.ids.mallory}`),
    body('alice', `/keys/stats/${c.ids.alice}/${c.dev.alice}`),
    body('carol', `/calls/history/${c.slCallGroup}`),
    body('carol', `/calls/${c.slCall}/ice`),
    body('bob', `/presence/${c.ids.alice}`),
    body('alice', `/typing/${c.slGroup}`),
    rest(c, 'mallory', 'GET', '/api/conversations'),
  ]);
  return {
    group: [group.name, group.description, group.member_count, group.current_epoch],
    members: members.members.map((m) => [m.user_id, m.role]),
    groupHistory,
    directHistory,
    bobsDirectHistory,
    bobsQueue: queue.messages.map((m) => m.id),
    alicesDevices: devices.devices.map((d) => [d.device_id, d.is_active, d.identity_key]),
    mallorysDevices: mallorys.devices.map((d) => d.device_id),
    alicesPrekeys: prekeys,
    calls: calls.calls.map((x) => [x.id, x.status, x.sdp_answer]),
    ice: ice.candidates,
    alicesPresence: [presence.status, presence.custom_status],
    typing: typing.typing_users,
    mallorysConversations: conversations.body.data.conversations.map((x) => x.id),
  };
}

/** e2e's state, through the admin list: each session's members, their keys, its messages. */
async function e2eSnapshot(c) {
  const list = await api(c.url, ADMIN, 'GET', '/sessions');
  assert.equal(list.status, 200, 'the admin reads the session list');
  return list.body.sessions.filter((x) => [c.e2e.s1, c.e2e.s2].includes(x.sessionId)).map((x) => ({
    sessionId: x.sessionId, active: x.active, keyed: x.keyed, members: x.members, messages: x.messages, publicKeys: x.publicKeys,
    memberList: x.memberList.map((m) => [m.userId, m.displayName, m.hasPublicKey]),
  }));
}

/** Frames and events that only an action in someone's conversation or session makes. */
const SL_WATCHED = ['typing', 'receipt', 'message_deleted', 'group_member', 'call_initiated', 'call_answered', 'call_declined', 'call_ended', 'call_missed', 'ice_candidate'];
const E2E_WATCHED = ['new-message', 'message-sent', 'user-typing', 'user-stopped-typing', 'session-key-available', 'download-notification', 'user-left', 'user-joined', 'public-keys-updated'];
/** What the members' sockets heard: counted by kind. */
function heard(c) {
  const sockets = Object.fromEntries(Object.entries(c.slSock).filter(([who]) => who !== 'mallory')
    .map(([who, s]) => [`sl:${who}`, s.frames.filter((f) => SL_WATCHED.includes(f.type)).map((f) => f.type)]));
  for (const [who, seen] of Object.entries(c.e2eSeen)) sockets[`e2e:${who}`] = seen.filter(([name]) => E2E_WATCHED.includes(name)).map(([name]) => name);
  return sockets;
}

/** What a refusal must leave as it was, read back through the owners' own eyes. */
async function snapshot(c, row) {
  // Socialink's rows name its own group and the direct conversation it shares with SUP and
  // Spark, whose history and queue slSnapshot reads.
  if (row?.dialect === 'socialink') return slSnapshot(c);
  if (row?.dialect === 'e2e') return { e2e: await e2eSnapshot(c) };
  return coreSnapshot(c);
}

/** The state the sup, spark and mrezhen rows protect. */
async function coreSnapshot(c) {
  // Reads only: all at once.
  const [conv, page, direct, keys, pending, calls, active, file] = await Promise.all([
    rest(c, 'alice', 'GET', `/api/conversations/${c.group}`),
    rest(c, 'alice', 'GET', `/api/conversations/${c.group}/messages`),
    rest(c, 'alice', 'GET', `/api/conversations/${c.direct}`),
    rest(c, 'alice', 'GET', `/api/encryption/keys/${c.ids.alice}`),
    call(c.sup.bob, 'notification:get-pending', {}),
    call(c.sup.alice, 'call:history', { chatId: c.direct }),
    call(c.sup.alice, 'chat:get-active-members', { chatId: c.group }),
    fetch(`${c.url}/api/attachments/${c.attachment}`, { headers: { authorization: `Bearer ${c.tok.alice}` } }),
  ]);
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
  if (res && typeof res.status === 'number' && 'body' in res) {
    // SPEC §6's envelope ({success: false, error: {code}}) or Socialink's ({error, code}).
    return res.status >= 400 ? { status: res.status, code: res.body?.error?.code ?? res.body?.code } : null;
  }
  if (res?.type === 'error') return { code: res.code };
  if (res && res.success === false) return { code: res.error?.code };
  return null;
}

/** Every dialect the matrix has rows for. */
export const DIALECTS = ['e2e', 'mrezhen', 'rest', 'socialink', 'spark', 'sup'];

/**
 * Runs the rows of `dialects` on every configured database. The rows are split over two test
 * files (authz_matrix.test.js, authz_matrix_socialink_e2e.test.js), each with the whole
 * fixture, so that each file stays within the suite's per-file time budget on a busy machine.
 */
export function matrix(dialects) {
  for (const backend of backends()) {
    describe(`authorization matrix (${dialects.join(', ')}) on ${backend}`, () => {
      let srv;
      const c = {};
      before(async () => {
        srv = await startServer({ backend, env: { CALL_RING_TIMEOUT: '600000', ADMIN_TOKEN: ADMIN, RATE_LIMIT_SESSION_JOIN: '100000/60s' } });
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

        // Socialink: everyone has a device; a group alice owns (bob and carol plain members);
        // alice's message to bob (their direct conversation), one to the group, and a call
        // ringing in carol's group with dave, with a candidate of carol's. Each socket is open.
        c.sl = {};
        c.dev = {};
        for (const who of ['alice', 'bob', 'carol', 'mallory']) {
          c.sl[who] = new Sl(c.url, c.ids[who]);
          c.dev[who] = (await c.sl[who].register({ deviceId: uid(`${who}-phone`), prekeys: 3 })).deviceId;
        }
        const made = await sl(c, 'alice', 'POST', `/groups/create/${c.ids.alice}`, { name: 'sl team', member_ids: [c.ids.bob, c.ids.carol] });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        c.slGroup = made.body.id;
        const direct = await c.sl.alice.sendTo(c.ids.bob, 'hi bob', { device_id: c.dev.alice });
        [c.slDirect, c.slMessage] = [direct.conversation_id, direct.message_id];
        const grouped = await sl(c, 'alice', 'POST', `/groups/${c.slGroup}/send/${c.ids.alice}`, { ciphertext: ct('hi team'), device_id: c.dev.alice });
        assert.equal(grouped.status, 201, JSON.stringify(grouped.body));
        c.slGroupMessage = grouped.body.message_id;
        // The call rings in a group of its own: alice and bob are busy in the SUP call.
        c.ids.dave = uid('dave');
        c.sl.dave = new Sl(c.url, c.ids.dave);
        const callGroup = await sl(c, 'carol', 'POST', `/groups/create/${c.ids.carol}`, { name: 'sl call', member_ids: [c.ids.dave] });
        c.slCallGroup = callGroup.body.id;
        const ringing = await sl(c, 'carol', 'POST', `/calls/initiate/${c.ids.carol}`, { conversation_id: c.slCallGroup, call_type: 'Audio', sdp_offer: 'offer' });
        assert.equal(ringing.status, 201, JSON.stringify(ringing.body));
        c.slCall = ringing.body.id;
        assert.equal((await sl(c, 'carol', 'POST', `/calls/${c.slCall}/ice/${c.ids.carol}`, { candidate: 'carol-candidate' })).status, 200);
        c.slSock = {};
        for (const who of ['alice', 'bob', 'carol', 'mallory']) {
          c.slSock[who] = await c.sl[who].socket(c.dev[who]);
          c.slSock[who].send({ type: 'ping' });
          await c.slSock[who].next('pong');
        }
        assert.ok((await slSnapshot(c)).bobsQueue.length >= 2, 'bob has queued messages to protect');

        // e2e: session s1 (keyed) with members A and B, one message; m created s2; lurker joined nothing.
        c.e2e = { s1: uid('s1'), s2: uid('s2'), A: uid('ea'), B: uid('eb'), M: uid('em') };
        c.e2e.a = await visitor(c.url);
        await join(c.e2e.a, { sessionId: `${c.e2e.s1}:k1`, userId: c.e2e.A, displayName: 'A', publicKey: pk('a'), isCreator: true });
        c.e2e.b = await visitor(c.url);
        await join(c.e2e.b, { sessionId: c.e2e.s1, authKey: 'k1', userId: c.e2e.B, displayName: 'B', publicKey: pk('b') });
        c.e2e.m = await visitor(c.url);
        await join(c.e2e.m, { sessionId: `${c.e2e.s2}:k2`, userId: c.e2e.M, displayName: 'M', publicKey: pk('m'), isCreator: true });
        c.e2e.lurker = await visitor(c.url);
        await call(c.e2e.a, 'send-message', { sessionId: c.e2e.s1, from: c.e2e.A, to: 'all', encrypted: 'hello', type: 'text', clientMessageId: uid('m') });
        c.e2eSeen = { a: record(c.e2e.a), b: record(c.e2e.b), m: record(c.e2e.m) };
        for (const s of [c.e2e.a, c.e2e.b, c.e2e.m]) await roundTrip(s);
        const sessions = Object.fromEntries((await e2eSnapshot(c)).map((x) => [x.sessionId, [x.members, x.messages]]));
        assert.deepEqual(sessions, { [c.e2e.s1]: [2, 1], [c.e2e.s2]: [1, 0] }, 'sessions to protect');
        c.heard = heard(c);
        c.seen = { alice: collect(c.sup.alice, 'message:typing'), aliceReceipts: collect(c.sup.alice, 'message:read') };
      });
      after(async () => {
        for (const s of Object.values(c.sup ?? {})) closeAll(s);
        for (const s of Object.values(c.spark ?? {})) closeAll(s);
        await c.mz?.mallory.close();
        for (const s of Object.values(c.slSock ?? {})) await s.close();
        for (const s of ['a', 'b', 'm', 'lurker']) if (c.e2e?.[s]) closeAll(c.e2e[s]);
        await srv.stop();
      });

      it('covers every dialect that exists here', () => {
        assert.deepEqual([...new Set(ROWS.map((r) => r.dialect))].sort(), DIALECTS);
      });

      for (const row of ROWS.filter((r) => dialects.includes(r.dialect))) {
        it(`${row.dialect} ${row.op}: ${row.who} ${row.allowed ? 'gets only their own' : 'is refused'}, nothing changes`, async () => {
          const before = await snapshot(c, row);
          const res = await row.act(c);
          const refusal = codeOf(res);
          if (row.allowed) {
            assert.equal(refusal, null, `answered: ${JSON.stringify(res?.body ?? res)}`);
          } else {
            assert.ok(refusal, `not refused: ${JSON.stringify(res?.body ?? res).slice(0, 300)}`);
            const codes = row.refused ?? FORBIDDEN_OR_NOT_FOUND;
            assert.ok(codes.includes(refusal.code), `refused with ${JSON.stringify(refusal)}`);
            if (refusal.status !== undefined) assert.ok((row.statuses ?? [403, 404]).includes(refusal.status), `status ${refusal.status}`);
          }
          await row.check?.(c, res);
          assert.deepEqual(await snapshot(c, row), before, 'the state is as it was');
          // Nothing reached the members' sockets on the intruder's behalf (a round trip first:
          // what the refused act pushed has arrived by then).
          if (row.dialect === 'socialink') await Promise.all(Object.values(c.slSock).map((s) => { s.send({ type: 'ping' }); return s.next('pong'); }));
          if (row.dialect === 'e2e') await Promise.all([c.e2e.a, c.e2e.b, c.e2e.m].map(roundTrip));
          assert.deepEqual([c.seen.alice.length, c.seen.aliceReceipts.length], [0, 0]);
          assert.deepEqual(heard(c), c.heard);
        });
      }
    });
  }
}
