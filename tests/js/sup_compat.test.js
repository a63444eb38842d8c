// SUP Messenger's *running* contract (shared/protocols/sup.md): existing SUP clients were
// written against the running service, not its README. Every test here reads events the way
// those clients do (`data.message.id`, `data.sender.username`, `response.callId`, …), with
// the tokens the real issuers hand out (SUP: `userId`, `deviceId`, `type: 'access'`, no `sub`;
// Mrezhen: `userId`, `name`, issuer `mrezhen`), over `/sup` and over `/` (DEFAULT_PROFILE=sup,
// the default), on every configured database.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, ask, call, api, waitFor, collect, settle, createChat, closeAll,
} from './helpers.js';

/** JavaScript's `toISOString()` form, which the running service's readers parse. */
const isIso = (v) => typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(v);

/** Resolves with the `connect_error` of a connection that must be refused. */
function refusal(url, opts) {
  return connect(url, opts).then(
    (s) => { s.close(); throw new Error('connected, but the token should have been refused'); },
    (err) => err,
  );
}

for (const backend of backends()) {
  describe(`SUP's running contract on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { TYPING_TIMEOUT: '60000' } }); });
    after(async () => { await srv.stop(); });

    // A real SUP access token (plus optional profile claims), and a real Mrezhen token.
    const sup = (user, extra = {}) => token(user, { shape: 'sup', deviceId: `device-${user}`, ...extra });
    const mrezhen = (user, name) => token(user, { shape: 'mrezhen', name });

    it('refuses a token that names no user, over Socket.IO and REST, with the reason', async () => {
      const noUser = token(undefined, { shape: 'sup', deviceId: 'd-1' });
      for (const namespace of ['/sup', '/']) {
        const err = await refusal(srv.url, { namespace, auth: { token: noUser } });
        assert.equal(err.message, 'invalid token payload: no user id');
      }
      const res = await api(srv.url, noUser, 'GET', '/api/conversations');
      assert.equal(res.status, 401);
      assert.equal(res.body.success, false);
      assert.equal(res.body.error.code, 'UNAUTHORIZED');
      assert.equal(res.body.error.message, 'invalid token payload: no user id');
    });

    it('takes the user from userId on REST, for SUP and Mrezhen tokens alike', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const viaSup = await api(srv.url, sup(alice), 'POST', '/api/conversations', { type: 'direct', participantIds: [bob] });
      assert.equal(viaSup.status, 201);
      const chat = viaSup.body.data.id;
      const viaMrezhen = await api(srv.url, mrezhen(bob, 'Bob'), 'GET', `/api/conversations/${chat}`);
      assert.equal(viaMrezhen.status, 200);
      assert.deepEqual(viaMrezhen.body.data.participants.map((p) => p.userId).sort(), [alice, bob].sort());
    });

    for (const namespace of ['/sup', '/']) {
      describe(`over ${namespace}`, () => {
        const join = (tok, opts = {}) => connect(srv.url, { namespace, auth: { token: tok }, ...opts });
        /** Alice (SUP token with a username and avatar) and Bob (Mrezhen token) in a direct chat. */
        async function pair() {
          const [alice, bob] = [uid('alice'), uid('bob')];
          const aliceToken = sup(alice, { username: 'alice_sup', avatar: 'https://img.example/alice.png' });
          const chat = await createChat(srv.url, aliceToken, 'direct', [bob]);
          const a = await join(aliceToken);
          const b = await join(mrezhen(bob, 'Bob'));
          return { alice, bob, chat, a, b };
        }

        it('greets SUP- and Mrezhen-token users with connected { userId, socketId }', async () => {
          const [alice, bob] = [uid('alice'), uid('bob')];
          let greetA;
          let greetB;
          const a = await join(sup(alice), { listen: (s) => { greetA = waitFor(s, 'connected'); } });
          const b = await join(mrezhen(bob, 'Bob'), { listen: (s) => { greetB = waitFor(s, 'connected'); } });
          const [ga, gb] = await Promise.all([greetA, greetB]);
          assert.equal(ga.userId, alice);
          assert.equal(ga.socketId, a.id);
          assert.equal(gb.userId, bob);
          assert.equal(gb.socketId, b.id);
          closeAll(a, b);
        });

        it('sends message:new with message {…} and sender {…} beside the flat fields, and acks as the running service', async () => {
          const { alice, bob, chat, a, b } = await pair();
          const got = waitFor(b, 'message:new', (d) => d.tempId === 'sup-1');
          const res = await ask(a, 'message:new', { chatId: chat, encryptedContent: 'Hello, World!', messageType: 'text', tempId: 'sup-1' });
          // The ack: SPEC's { success, data } and the running service's { success, message: { message, sender } }.
          assert.equal(res.success, true);
          assert.equal(res.data.chatId, chat);
          assert.equal(res.data.seq, 1);
          assert.equal(res.data.tempId, 'sup-1');
          assert.equal(res.message.message.id, res.data.id);
          assert.equal(res.message.message.tempId, 'sup-1');
          assert.equal(res.message.message.status, 'sent');
          assert.equal(res.message.sender.id, alice);
          assert.equal(res.message.sender.username, 'alice_sup');
          // The event, read as the SUP test client reads it.
          const data = await got;
          assert.equal(data.message.id, res.data.id);
          assert.equal(data.sender.id, alice);
          assert.equal(data.sender.username, 'alice_sup');
          assert.equal(data.sender.avatar, 'https://img.example/alice.png');
          assert.equal(data.message.encryptedContent.substring(0, 5), 'Hello');
          assert.equal(data.message.chatId, chat);
          assert.equal(data.message.senderId, alice);
          assert.equal(data.message.messageType, 'text');
          assert.equal(data.message.replyToId, null);
          assert.equal(data.message.status, 'sent');
          assert.equal(data.message.tempId, 'sup-1');
          assert.ok(isIso(data.message.createdAt));
          // … and the flat SPEC fields are still there.
          assert.equal(data.id, res.data.id);
          assert.equal(data.seq, 1);
          assert.equal(data.encryptedContent, 'Hello, World!');
          assert.equal(data.createdAt, data.message.createdAt);

          // A reply from the Mrezhen-token user carries the token's name as the username.
          const back = waitFor(a, 'message:new', (d) => d.tempId === 'mz-1');
          const reply = await call(b, 'message:new', { chatId: chat, encryptedContent: 'hi', messageType: 'text', replyToId: res.data.id, tempId: 'mz-1' });
          const r = await back;
          assert.equal(r.message.replyToId, res.data.id);
          assert.deepEqual(r.sender, { id: bob, username: 'Bob', avatar: null });
          assert.equal(r.message.id, reply.id);
          closeAll(a, b);
        });

        it('pushes missed messages on reconnect in the same shape, sender included', async () => {
          const { alice, bob, chat, a, b } = await pair();
          b.close();
          await call(a, 'message:new', { chatId: chat, encryptedContent: 'while you were away', messageType: 'text', tempId: 'away-1' });
          let missed;
          const b2 = await join(mrezhen(bob, 'Bob'), { listen: (s) => { missed = waitFor(s, 'message:new', (d) => d.tempId === 'away-1'); } });
          const data = await missed;
          assert.equal(data.message.encryptedContent, 'while you were away');
          assert.equal(data.sender.id, alice);
          assert.equal(data.sender.username, 'alice_sup');
          assert.equal(data.sender.avatar, 'https://img.example/alice.png');
          closeAll(a, b2);
        });

        it('ignores deliveredAt / readAt from the client and sends them back from the server clock', async () => {
          const { bob, chat, a, b } = await pair();
          const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'receipt me', messageType: 'text' });
          const long_ago = '2001-01-01T00:00:00.000Z';
          const delivered = waitFor(a, 'message:delivered', (d) => d.messageId === m.id);
          await call(b, 'message:delivered', { messageId: m.id, chatId: chat, deliveredAt: long_ago });
          const d = await delivered;
          assert.equal(d.userId, bob);
          assert.ok(isIso(d.deliveredAt));
          assert.notEqual(d.deliveredAt, long_ago);
          assert.equal(d.deliveredAt, d.at);
          assert.ok(Date.parse(d.deliveredAt) >= Date.parse(m.createdAt));
          const read = waitFor(a, 'message:read', (x) => x.messageId === m.id);
          const ack = await call(b, 'message:read', { messageId: m.id, chatId: chat, readAt: long_ago });
          const r = await read;
          assert.equal(r.userId, bob);
          assert.ok(isIso(r.readAt));
          assert.notEqual(r.readAt, long_ago);
          assert.equal(ack.readAt, r.readAt);
          closeAll(a, b);
        });

        it('sends userName beside username on typing, and chat:user-typing for chat:member-typing', async () => {
          const { alice, bob, chat, a, b } = await pair();
          await call(a, 'chat:join', { chatId: chat });
          await call(b, 'chat:join', { chatId: chat });
          const own = collect(a, 'chat:user-typing');
          const typing = waitFor(b, 'message:typing');
          await call(a, 'message:typing', { chatId: chat });
          const t = await typing;
          assert.equal(t.userName, 'alice_sup');
          assert.equal(t.username, 'alice_sup');
          assert.equal(t.userId, alice);
          const stop = waitFor(b, 'message:stop-typing');
          await call(a, 'message:stop-typing', { chatId: chat });
          assert.equal((await stop).userId, alice);

          // The running service's one typing event, and its two answers.
          const started = waitFor(a, 'chat:user-typing');
          const alsoLegacy = waitFor(a, 'message:typing');
          const ack = await call(b, 'chat:member-typing', { chatId: chat, isTyping: true });
          assert.deepEqual(ack, { chatId: chat, isTyping: true });
          const s = await started;
          assert.equal(s.chatId, chat);
          assert.equal(s.userId, bob);
          assert.ok(isIso(s.timestamp));
          assert.equal((await alsoLegacy).userName, 'Bob');
          const stopped = waitFor(a, 'chat:user-stopped-typing');
          await call(b, 'chat:member-typing', { chatId: chat, isTyping: false });
          const x = await stopped;
          assert.equal(x.chatId, chat);
          assert.equal(x.userId, bob);
          assert.ok(isIso(x.timestamp));
          // Not echoed to the typist's own socket; a non-member is refused.
          await settle(a);
          assert.equal(own.filter((e) => e.userId === alice).length, 0);
          const outsider = await join(sup(uid('mallory')));
          const refused = await ask(outsider, 'chat:member-typing', { chatId: chat, isTyping: true });
          assert.equal(refused.error.code, 'FORBIDDEN');
          closeAll(a, b, outsider);
        });

        it('accepts pong with any payload and ignores it', async () => {
          const s = await join(sup(uid('pinger')));
          const errors = collect(s, 'error');
          s.emit('pong');
          s.emit('pong', Date.now());
          s.emit('pong', { timestamp: Date.now() });
          const res = await ask(s, 'pong', 'anything');
          assert.equal(res.success, true);
          await settle(s);
          assert.deepEqual(errors, []);
          assert.ok(s.connected);
          s.close();
        });

        it('sends presence:update to users who share a conversation, without a subscription, and not to strangers', async () => {
          const [alice, bob, stranger] = [uid('alice'), uid('bob'), uid('stranger')];
          await createChat(srv.url, sup(alice), 'direct', [bob]);
          const a = await join(sup(alice));
          const c = await join(sup(stranger));
          const strangerSaw = collect(c, 'presence:update');
          const online = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'online');
          const b = await join(mrezhen(bob, 'Bob'));
          assert.ok(!Number.isNaN(new Date((await online).lastSeen).getTime()));
          const away = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'away');
          await call(b, 'presence:update', { status: 'away', customStatus: 'lunch' });
          const p = await away;
          assert.equal(p.customStatus, 'lunch');
          assert.ok(!Number.isNaN(new Date(p.lastSeen).getTime()));
          const offline = waitFor(a, 'presence:update', (x) => x.userId === bob && x.status === 'offline');
          b.close();
          await offline;
          await settle(c);
          assert.deepEqual(strangerSaw.filter((x) => x.userId === bob), []);
          closeAll(a, c);
        });

        it('takes targetUserId and a client-chosen callId, and sends the caller fields and status on every call event', async () => {
          const { alice, bob, a, b } = await pair();
          const callId = `call_${Date.now()}_${uid('c')}`;
          const offer = { type: 'offer', sdp: 'offer_sdp_string' };
          const incoming = waitFor(b, 'call:incoming');
          const res = await ask(a, 'call:initiate', { callId, targetUserId: bob, callType: 'video', offer });
          assert.equal(res.success, true);
          assert.equal(res.callId, callId, 'the ack says which id the call has');
          assert.equal(res.data.callId, callId);
          const inc = await incoming;
          assert.equal(inc.callId, callId);
          assert.equal(inc.callerId, alice);
          assert.equal(inc.callerName, 'alice_sup');
          assert.equal(inc.callerAvatar, 'https://img.example/alice.png');
          assert.equal(inc.callType, 'video');
          assert.deepEqual(inc.offer, offer);
          assert.equal(inc.status, 'incoming');

          const answered = waitFor(a, 'call:answer');
          const answer = { type: 'answer', sdp: 'answer_sdp_string' };
          await call(b, 'call:answer', { callId, answer });
          const ans = await answered;
          assert.equal(ans.callId, callId);
          assert.equal(ans.callerId, alice);
          assert.equal(ans.callerName, 'alice_sup');
          assert.equal(ans.callerAvatar, 'https://img.example/alice.png');
          assert.equal(ans.callType, 'video');
          assert.deepEqual(ans.answer, answer);
          assert.equal(ans.status, 'answered');
          assert.equal(ans.userId, bob);

          const ended = waitFor(b, 'call:end');
          await call(a, 'call:end', { callId });
          const end = await ended;
          assert.equal(end.callId, callId);
          assert.equal(end.status, 'ended');
          assert.equal(end.callerId, alice);
          assert.equal(end.callerName, 'alice_sup');
          assert.equal(end.callType, 'video');

          // An id that is taken (or malformed) is replaced by the server's, and the ack says so.
          const again = await ask(a, 'call:initiate', { callId, targetUserId: bob, callType: 'audio' });
          assert.equal(again.success, true);
          assert.notEqual(again.callId, callId);
          assert.equal(again.data.callId, again.callId);
          const rejected = waitFor(a, 'call:reject');
          await call(b, 'call:reject', { callId: again.callId, reason: 'busy' });
          const rej = await rejected;
          assert.equal(rej.callId, again.callId);
          assert.equal(rej.status, 'rejected');
          assert.equal(rej.callerId, alice);
          assert.equal(rej.callerName, 'alice_sup');
          assert.equal(rej.callType, 'audio');

          const bad = await ask(a, 'call:initiate', { callId: 'x'.repeat(200), targetUserId: bob, callType: 'audio' });
          assert.equal(bad.success, true);
          assert.ok(bad.callId && bad.callId.length <= 128);
          const cancelled = waitFor(b, 'call:end', (e) => e.callId === bad.callId);
          await call(a, 'call:end', { callId: bad.callId });
          const miss = await cancelled;
          assert.equal(miss.status, 'missed');
          assert.equal(miss.callerId, alice);
          closeAll(a, b);
        });

        it('takes reaction for emoji, sends the reaction fields, and answers reaction:get', async () => {
          const { alice, bob, chat, a, b } = await pair();
          const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'react', messageType: 'text' });
          const added = waitFor(a, 'reaction:new');
          const ack = await call(b, 'reaction:new', { messageId: m.id, chatId: chat, reaction: '❤️' });
          const r = await added;
          assert.equal(r.messageId, m.id);
          assert.equal(r.chatId, chat);
          assert.equal(r.userId, bob);
          assert.equal(r.userName, 'Bob');
          assert.equal(r.reaction, '❤️');
          assert.equal(r.emoji, '❤️');
          assert.equal(r.action, 'add');
          assert.ok(isIso(r.timestamp));
          assert.equal(ack.action, 'add');
          await call(a, 'reaction:new', { messageId: m.id, emoji: '❤️' });

          const got = await ask(a, 'reaction:get', { messageId: m.id });
          assert.equal(got.success, true);
          assert.deepEqual(got.reactions.map((g) => [g.reaction, g.users, g.count]), [['❤️', [bob, alice], 2]]);
          assert.deepEqual(got.data.reactions, got.reactions);
          const stranger = await join(sup(uid('mallory')));
          assert.equal((await ask(stranger, 'reaction:get', { messageId: m.id })).error.code, 'FORBIDDEN');
          assert.equal((await ask(a, 'reaction:get', { messageId: 'no-such-message' })).error.code, 'NOT_FOUND');

          const removed = waitFor(a, 'reaction:remove');
          await call(b, 'reaction:remove', { messageId: m.id, chatId: chat, reaction: '❤️' });
          const gone = await removed;
          assert.equal(gone.action, 'remove');
          assert.equal(gone.reaction, '❤️');
          assert.equal(gone.userName, 'Bob');
          assert.ok(isIso(gone.timestamp));
          const after = await ask(a, 'reaction:get', { messageId: m.id });
          assert.deepEqual(after.reactions.map((g) => g.users), [[alice]]);
          closeAll(a, b, stranger);
        });

        it('acks chat:join, chat:join-multiple and chat:get-active-members with the top-level fields', async () => {
          const [alice, bob] = [uid('alice'), uid('bob')];
          const one = await createChat(srv.url, sup(alice), 'group', [bob]);
          const two = await createChat(srv.url, sup(alice), 'group', [bob]);
          const a = await join(sup(alice));
          const b = await join(mrezhen(bob, 'Bob'));
          const joined = await ask(a, 'chat:join', { chatId: one });
          assert.equal(joined.success, true);
          assert.equal(joined.chatId, one);
          const many = await ask(b, 'chat:join-multiple', { chatIds: [one, two, 'not-a-chat'] });
          assert.equal(many.success, true);
          assert.equal(many.joinedCount, 2);
          const active = await ask(a, 'chat:get-active-members', { chatId: one });
          assert.equal(active.success, true);
          assert.equal(active.chatId, one);
          assert.deepEqual([...active.activeMembers].sort(), [alice, bob].sort());
          assert.equal(active.count, 2);
          assert.deepEqual(active.data.members.map((m) => m.userId).sort(), [alice, bob].sort());
          closeAll(a, b);
        });

        it('sends timestamps on membership events and updateType on chat:updated', async () => {
          const [alice, bob, carol] = [uid('alice'), uid('bob'), uid('carol')];
          const chat = await createChat(srv.url, sup(alice), 'group', [bob], { name: 'team' });
          const b = await join(mrezhen(bob, 'Bob'));
          const joined = waitFor(b, 'chat:member-joined');
          const grew = waitFor(b, 'chat:updated', (u) => u.updateType === 'members');
          assert.equal((await api(srv.url, sup(alice), 'POST', `/api/conversations/${chat}/members`, { userId: carol })).status, 201);
          const j = await joined;
          assert.equal(j.userId, carol);
          assert.ok(isIso(j.timestamp));
          const g = await grew;
          assert.equal(g.chatId, chat);
          assert.equal(g.updatedBy, alice);
          assert.equal(g.changes.memberCount, 3);

          const renamed = waitFor(b, 'chat:updated', (u) => u.updateType === 'name');
          await api(srv.url, sup(alice), 'PATCH', `/api/conversations/${chat}`, { name: 'new name' });
          const u = await renamed;
          assert.equal(u.chatId, chat);
          assert.equal(u.updatedBy, alice);
          assert.equal(u.name, 'new name');
          assert.deepEqual(u.changes, { name: 'new name' });
          assert.ok(isIso(u.timestamp));

          const left = waitFor(b, 'chat:member-left');
          await api(srv.url, sup(alice), 'DELETE', `/api/conversations/${chat}/members/${carol}`);
          const l = await left;
          assert.equal(l.userId, carol);
          assert.ok(isIso(l.timestamp));
          b.close();
        });

        it('sends notification:new with the running service\'s fields and answers get-pending at the top level', async () => {
          const [alice, bob] = [uid('alice'), uid('bob')];
          // Direct: a new group would notify Bob of being added, and the badge counts that.
          const chat = await createChat(srv.url, sup(alice), 'direct', [bob]);
          const a = await join(sup(alice));
          const b = await join(mrezhen(bob, 'Bob'));
          const first = waitFor(b, 'notification:new');
          const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'hey', messageType: 'text', metadata: { mentions: [bob] } });
          const n = await first;
          assert.equal(n.type, 'mention');
          assert.equal(typeof n.title, 'string');
          assert.ok(n.title.length > 0);
          assert.equal(typeof n.message, 'string');
          assert.ok(n.message.length > 0);
          assert.equal(n.fromUserId, alice);
          assert.equal(n.chatId, chat);
          assert.equal(n.messageId, m.id);
          assert.ok(['low', 'normal', 'high'].includes(n.priority));
          assert.equal(n.sound, true);
          assert.equal(n.badge, 1);
          assert.ok(isIso(n.timestamp));
          assert.equal(n.read, false);
          assert.deepEqual(n.data, { chatId: chat, messageId: m.id, senderId: alice });
          // The badge counts the user's unread notifications.
          const second = waitFor(b, 'notification:new');
          await call(a, 'message:new', { chatId: chat, encryptedContent: 'again', messageType: 'text', metadata: { mentions: [bob] } });
          assert.equal((await second).badge, 2);

          const pending = await ask(b, 'notification:get-pending', {});
          assert.equal(pending.success, true);
          assert.equal(pending.notifications.length, 2);
          assert.equal(pending.notifications[1].id, n.id);
          assert.equal(pending.notifications[1].fromUserId, alice);
          assert.deepEqual(pending.data.notifications, pending.notifications);

          // A missed call: from the caller, and loud.
          const missed = waitFor(b, 'notification:new', (x) => x.type === 'missed_call');
          const c = await ask(a, 'call:initiate', { chatId: chat, callType: 'audio' });
          await call(a, 'call:end', { callId: c.callId });
          const mc = await missed;
          assert.equal(mc.fromUserId, alice);
          assert.equal(mc.chatId, chat);
          assert.equal(mc.messageId, null);
          assert.equal(mc.priority, 'high');
          assert.equal(mc.badge, 3);
          closeAll(a, b);
        });

        it('reports errors without an ack callback as error { message, code }', async () => {
          const [alice, bob] = [uid('alice'), uid('bob')];
          const chat = await createChat(srv.url, sup(alice), 'direct', [bob]);
          const s = await join(sup(uid('mallory')));
          const error = waitFor(s, 'error');
          s.emit('message:new', { chatId: chat, encryptedContent: 'let me in', messageType: 'text' });
          const e = await error;
          assert.equal(e.code, 'FORBIDDEN');
          assert.equal(typeof e.message, 'string');
          assert.ok(e.message.length > 0);
          s.close();
        });
      });
    }
  });
}
