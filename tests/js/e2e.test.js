// The `e2e` dialect (End2End Chat's anonymous sessions) with the real socket.io-client: every
// row of protocols/e2e.md, on SQLite and PostgreSQL. The server's `/` namespace is e2e here
// (DEFAULT_PROFILE=e2e), as the web client connects to the bare URL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { backends, startServer, ask, waitFor, uid, closeAll, eventually, dbText } from './helpers.js';
import { visitor, record, join, refused, roundTrip, names, pk } from './e2e_client.js';
import { online } from './mrezhen_client.js';
import { token } from './helpers.js';

const ADMIN = 'admin-' + uid('t');

/** Every byte the SQLite database holds on disk (file and WAL), or '' on PostgreSQL. */
function sqliteBytes(srv) {
  if (!srv.databaseUrl.startsWith('sqlite:')) return '';
  const file = srv.databaseUrl.replace(/^sqlite:\/\//, '').replace(/\?.*$/, '');
  return [file, file + '-wal'].filter(existsSync).map((f) => readFileSync(f).toString('latin1')).join('');
}

/** Two members in a fresh group session: alice (creator) and bob. */
async function pair(url, opts = {}) {
  const n = names();
  const a = await visitor(url, opts);
  const b = await visitor(url, opts);
  await join(a, { sessionId: `${n.session}:key`, userId: n.alice, displayName: 'Alice', publicKey: pk('a'), isCreator: true });
  await join(b, { sessionId: `${n.session}:key`, userId: n.bob, displayName: 'Bob', publicKey: pk('b'), isCreator: false });
  return { n, a, b };
}

/** Sends one copy per recipient, as the web client does, all under one clientMessageId. */
async function sendToEach(socket, n, from, recipients, clientMessageId, text = 'ciphertext') {
  const acks = [];
  for (const to of recipients) {
    acks.push(await ask(socket, 'send-message', { sessionId: n.session, from, to, encrypted: `${text}-for-${to}`, originalContent: 'PLAINTEXT-' + clientMessageId, type: 'text', clientMessageId }));
  }
  return acks;
}

for (const backend of backends()) {
  describe(`e2e on ${backend}`, () => {
    let srv;
    before(async () => {
      srv = await startServer({ backend, env: { DEFAULT_PROFILE: 'e2e', ADMIN_TOKEN: ADMIN, RATE_LIMIT_SESSION_JOIN: '100000/60s' } });
    });
    after(async () => { await srv.stop(); });

    it('serves the bare URL and /e2e without a token (a token, if sent, is ignored)', async () => {
      const bare = await visitor(srv.url, { namespace: '/' });
      const ns = await visitor(srv.url, { auth: { token: 'not-a-jwt' } });
      const n = names();
      await join(bare, { sessionId: n.session, userId: n.alice, displayName: 'A', publicKey: pk('a'), isCreator: true });
      const { history } = await join(ns, { sessionId: n.session, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      assert.deepEqual(history, []);
      closeAll(bare, ns);
    });

    it('join order: messages-history, session-metadata, public-keys-updated to the joiner; the others get public-keys-updated and user-joined', async () => {
      const n = names();
      const a = await visitor(srv.url);
      await join(a, { sessionId: `${n.session}:k1`, userId: n.alice, displayName: 'Alice', publicKey: pk('a'), isCreator: true });
      const seenByA = record(a);
      const b = await visitor(srv.url);
      const seenByB = record(b);
      const { ack } = await join(b, { sessionId: n.session, authKey: 'k1', userId: n.bob, displayName: 'Bob', publicKey: pk('b') });
      assert.equal(ack.success, true);
      assert.deepEqual(seenByB.map(([e]) => e).slice(0, 3), ['messages-history', 'session-metadata', 'public-keys-updated']);
      assert.deepEqual(seenByB[1][1], { chatMode: 'group', encryptedSessionKey: null });
      const keys = seenByB[2][1];
      assert.deepEqual(keys.map((k) => [k.userId, k.publicKey, k.displayName]), [[n.alice, pk('a'), 'Alice'], [n.bob, pk('b'), 'Bob']]);
      assert.equal(typeof keys[0].joinedAt, 'number');
      const joined = await eventually(() => seenByA.find(([e, j]) => e === 'user-joined' && j.userId === n.bob)?.[1], 10000, 'user-joined');
      assert.equal(joined.displayName, 'Bob');
      assert.equal(typeof joined.timestamp, 'number');
      await roundTrip(a);
      const names_ = seenByA.map(([e]) => e);
      assert.ok(names_.indexOf('public-keys-updated') < names_.indexOf('user-joined'), names_.join());
      assert.ok(!seenByB.some(([e, p]) => e === 'user-joined' && p.userId === n.bob), 'the joiner is not told of itself');
      closeAll(a, b);
    });

    it('a rejoin after a reconnect (publicKey null) gets its history and keeps its key; no user-joined', async () => {
      const { n, a, b } = await pair(srv.url);
      await sendToEach(a, n, n.alice, [n.bob], uid('m'));
      const seenByA = record(a);
      b.disconnect();
      await waitFor(a, 'user-left', (l) => l.userId === n.bob);
      const again = await visitor(srv.url);
      const { history, keys } = await join(again, { sessionId: `${n.session}:key`, userId: n.bob, displayName: 'Bob', publicKey: null, isCreator: false });
      assert.equal(history.length, 1);
      assert.equal(keys.find((k) => k.userId === n.bob).publicKey, pk('b'), 'the key saved before is kept');
      await roundTrip(a);
      assert.ok(!seenByA.some(([e]) => e === 'user-joined'), 'a rejoin is not a first join');
      closeAll(a, again);
    });

    it('a socket that joins another session leaves the first: its members get user-left', async () => {
      const { n, a, b } = await pair(srv.url);
      const other = names();
      const left = waitFor(a, 'user-left', (l) => l.userId === n.bob);
      await join(b, { sessionId: other.session, userId: other.bob, displayName: 'Bob', publicKey: pk('b'), isCreator: true });
      assert.equal((await left).displayName, 'Bob');
      // It now acts in the second session only.
      assert.equal((await ask(b, 'send-message', { sessionId: n.session, to: n.alice, encrypted: 'x' })).success, false);
      closeAll(a, b);
    });

    it('session-error: SESSION_NOT_FOUND, INVALID_KEY (wrong or missing), and the connection stays', async () => {
      const n = names();
      const s = await visitor(srv.url);
      const nf = await refused(s, 'join-session', { sessionId: n.session, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      assert.equal(nf.error.error, 'SESSION_NOT_FOUND');
      assert.equal(typeof nf.error.message, 'string');
      assert.equal(nf.ack.success, false);
      const creator = await visitor(srv.url);
      await join(creator, { sessionId: `${n.session}:right`, userId: n.alice, displayName: 'A', publicKey: pk('a'), isCreator: true });
      assert.equal((await refused(s, 'join-session', { sessionId: `${n.session}:wrong`, userId: n.bob })).error.error, 'INVALID_KEY');
      assert.equal((await refused(s, 'join-session', { sessionId: n.session, userId: n.bob })).error.error, 'INVALID_KEY');
      assert.ok(s.connected);
      await join(s, { sessionId: `${n.session}:right`, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      closeAll(s, creator);
    });

    it('a missing sessionId, a non-object payload or an unknown session gets session-error, and the connection stays', async () => {
      const { n, a, b } = await pair(srv.url);
      for (const [event, payload] of [
        ['join-session', { userId: 'x' }],
        ['join-session', 'not an object'],
        ['send-message', { from: n.alice, to: n.bob, encrypted: 'x' }],
        ['send-message', 42],
        ['send-message', { sessionId: uid('nope'), from: n.alice, to: 'all', encrypted: 'x' }],
        ['get-public-keys', { sessionId: uid('nope') }],
        ['typing', {}],
      ]) {
        const res = await ask(a, event, payload);
        assert.equal(res.success, false, `${event} ${JSON.stringify(payload)}`);
      }
      const unknown = await refused(a, 'save-public-key', { sessionId: uid('nope'), userId: n.alice, publicKey: 'k' });
      assert.equal(unknown.error.error, 'SESSION_NOT_FOUND');
      const missing = await refused(a, 'leave-session', { userId: n.alice });
      assert.equal(missing.error.error, 'VALIDATION_FAILED');
      // Without an ack callback, the refusal comes as session-error alone.
      const noAck = waitFor(a, 'session-error');
      a.emit('send-message', { from: n.alice });
      assert.equal((await noAck).error, 'VALIDATION_FAILED');
      assert.ok(a.connected);
      const ok = await ask(a, 'send-message', { sessionId: n.session, to: n.bob, encrypted: 'still here', type: 'text' });
      assert.equal(ok.success, true);
      closeAll(a, b);
    });

    it('reserved sessions: 200 with its shape, 400 without sessionId or authKey, 409 when it exists; SESSION_NOT_ACTIVE until the creator joins', async () => {
      const n = names();
      const post = (body) => fetch(srv.url + '/api/reserve-session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const res = await post({ sessionId: n.session, authKey: 'rk', chatMode: 'private' });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.success, true);
      assert.equal(body.sessionId, n.session);
      assert.equal(body.chatMode, 'private');
      assert.equal(typeof body.message, 'string');
      assert.deepEqual(body.data, { sessionId: n.session, chatMode: 'private' });
      for (const bad of [{ authKey: 'x' }, { sessionId: uid('s') }]) {
        const r = await post(bad);
        assert.equal(r.status, 400);
        assert.equal((await r.json()).error.code, 'VALIDATION_FAILED');
      }
      const again = await post({ sessionId: n.session, authKey: 'other' });
      assert.equal(again.status, 409);
      assert.equal((await again.json()).error.code, 'CONFLICT');

      const early = await visitor(srv.url);
      const waiting = await refused(early, 'join-session', { sessionId: `${n.session}:rk`, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      assert.equal(waiting.error.error, 'SESSION_NOT_ACTIVE');
      const creator = await visitor(srv.url);
      const { metadata } = await join(creator, { sessionId: `${n.session}:rk`, userId: n.alice, displayName: 'A', publicKey: pk('a'), isCreator: true });
      assert.equal(metadata.chatMode, 'private');
      await join(early, { sessionId: `${n.session}:rk`, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      closeAll(early, creator);
    });

    it('private mode takes two members: a third gets SESSION_FULL; members rejoin freely', async () => {
      const n = names();
      const a = await visitor(srv.url);
      await join(a, { sessionId: `${n.session}:pk`, userId: n.alice, displayName: 'A', publicKey: pk('a'), isCreator: true, chatMode: 'private' });
      const b = await visitor(srv.url);
      const { metadata } = await join(b, { sessionId: `${n.session}:pk`, userId: n.bob, displayName: 'B', publicKey: pk('b') });
      assert.equal(metadata.chatMode, 'private');
      const c = await visitor(srv.url);
      const full = await refused(c, 'join-session', { sessionId: `${n.session}:pk`, userId: n.carol, displayName: 'C', publicKey: pk('c') });
      assert.equal(full.error.error, 'SESSION_FULL');
      await join(c, { sessionId: `${n.session}:pk`, userId: n.bob, displayName: 'B', publicKey: null });
      // Session keys are for group sessions.
      const keys = await refused(a, 'set-session-key', { sessionId: n.session, encryptedKeys: { [n.bob]: 'x' } });
      assert.equal(keys.error.error, 'VALIDATION_FAILED');
      closeAll(a, b, c);
    });

    it('save-public-key tells everyone; get-public-keys answers the asker only, its own key left out', async () => {
      const { n, a, b } = await pair(srv.url);
      const seenByB = record(b);
      const toA = waitFor(a, 'public-keys-updated', (l) => l.some((k) => k.userId === n.bob && k.publicKey === pk('b2')));
      const toB = waitFor(b, 'public-keys-updated', (l) => l.some((k) => k.userId === n.bob && k.publicKey === pk('b2')));
      const saved = await ask(b, 'save-public-key', { sessionId: n.session, userId: n.bob, publicKey: pk('b2'), displayName: 'Bobby' });
      assert.equal(saved.success, true);
      const [la] = await Promise.all([toA, toB]);
      assert.equal(la.find((k) => k.userId === n.bob).displayName, 'Bobby');
      seenByB.length = 0;
      const event = waitFor(a, 'public-keys-updated', (l) => l.length === 1);
      const res = await ask(a, 'get-public-keys', { sessionId: n.session, userId: n.alice });
      assert.deepEqual(res.data.map((k) => k.userId), [n.bob]);
      assert.deepEqual((await event).map((k) => k.userId), [n.bob]);
      await roundTrip(b);
      assert.ok(!seenByB.some(([e]) => e === 'public-keys-updated'), 'only the asker is answered');
      // A key for someone else is refused.
      const other = await ask(a, 'save-public-key', { sessionId: n.session, userId: n.bob, publicKey: 'forged' });
      assert.equal(other.success, false);
      closeAll(a, b);
    });

    it('send-message: a copy per recipient reaches only its addressee; message-sent once per id; to "all" reaches everyone else', async () => {
      const { n, a, b } = await pair(srv.url);
      const c = await visitor(srv.url);
      await join(c, { sessionId: `${n.session}:key`, userId: n.carol, displayName: 'Carol', publicKey: pk('c') });
      const [seenA, seenB, seenC] = [record(a), record(b), record(c)];
      const id = uid('m');
      const gotB = waitFor(b, 'new-message', (m) => m.id === id);
      const gotC = waitFor(c, 'new-message', (m) => m.id === id);
      const acks = await sendToEach(a, n, n.alice, [n.bob, n.carol], id);
      assert.ok(acks.every((x) => x.success), JSON.stringify(acks));
      const [mb, mc] = await Promise.all([gotB, gotC]);
      assert.equal(mb.encrypted, `ciphertext-for-${n.bob}`);
      assert.equal(mc.encrypted, `ciphertext-for-${n.carol}`);
      for (const [m, to] of [[mb, n.bob], [mc, n.carol]]) {
        assert.equal(m.from, n.alice);
        assert.equal(m.to, to);
        assert.equal(m.type, 'text');
        assert.equal(m.senderDisplayName, 'Alice');
        assert.equal(typeof m.timestamp, 'number');
        assert.equal(m.originalContent, undefined, 'the plaintext is never relayed');
      }
      const all = uid('m');
      const everyone = [waitFor(b, 'new-message', (m) => m.id === all), waitFor(c, 'new-message', (m) => m.id === all)];
      await ask(a, 'send-message', { sessionId: n.session, from: n.alice, to: 'all', encrypted: 'to everyone', type: 'text', clientMessageId: all });
      const toEveryone = await Promise.all(everyone);
      assert.deepEqual(toEveryone.map((m) => m.to), ['all', 'all']);
      await roundTrip(a); await roundTrip(b); await roundTrip(c);
      const sent = seenA.filter(([e, p]) => e === 'message-sent' && p.id === id);
      assert.equal(sent.length, 1, 'message-sent once per id');
      assert.equal(sent[0][1].from, n.alice);
      assert.ok(!seenA.some(([e]) => e === 'new-message'), 'the sender gets no new-message');
      assert.equal(seenB.filter(([e, p]) => e === 'new-message' && p.id === id).length, 1);
      assert.ok(!seenB.some(([e, p]) => e === 'new-message' && p.encrypted === `ciphertext-for-${n.carol}`), "bob never sees carol's copy");
      assert.ok(!seenC.some(([e, p]) => e === 'new-message' && p.encrypted === `ciphertext-for-${n.bob}`), "carol never sees bob's copy");
      closeAll(a, b, c);
    });

    it('clientMessageId: a resend of the same copy is stored and delivered once; a message without one gets a server id', async () => {
      const { n, a, b } = await pair(srv.url);
      const seenB = record(b);
      const id = uid('m');
      const first = await sendToEach(a, n, n.alice, [n.bob], id);
      const second = await sendToEach(a, n, n.alice, [n.bob], id);
      assert.equal(first[0].data.messageId, second[0].data.messageId, 'the resend is the same message');
      await eventually(() => seenB.some(([e, p]) => e === 'new-message' && p.id === id), 10000, 'the copy');
      const arrives = waitFor(b, 'new-message', (m) => m.encrypted === 'no id');
      const bare = await ask(a, 'send-message', { sessionId: n.session, to: n.bob, encrypted: 'no id', type: 'text' });
      assert.ok(bare.data.id, 'a server id');
      assert.equal((await arrives).id, bare.data.id);
      await roundTrip(b);
      assert.equal(seenB.filter(([e, p]) => e === 'new-message' && p.id === id).length, 1);
      const stored = dbText(srv, `SELECT count(*) FROM messages WHERE temp_id = '${id}'`).trim();
      assert.equal(stored, '1');
      closeAll(a, b);
    });

    it('a from other than the joined member is refused; a socket that joined nothing cannot send', async () => {
      const { n, a, b } = await pair(srv.url);
      const forged = await refused(a, 'send-message', { sessionId: n.session, from: n.bob, to: n.bob, encrypted: 'x' });
      assert.equal(forged.error.error, 'FORBIDDEN');
      const stranger = await visitor(srv.url);
      const nope = await refused(stranger, 'send-message', { sessionId: n.session, from: n.alice, to: n.bob, encrypted: 'x' });
      assert.equal(nope.error.error, 'FORBIDDEN');
      closeAll(a, b, stranger);
    });

    it('history on join holds the messages addressed to the member, to everyone, or sent by it, in order', async () => {
      const { n, a, b } = await pair(srv.url);
      const c = await visitor(srv.url);
      await join(c, { sessionId: `${n.session}:key`, userId: n.carol, displayName: 'Carol', publicKey: pk('c') });
      const [m1, m2, m3] = [uid('m1'), uid('m2'), uid('m3')];
      await sendToEach(a, n, n.alice, [n.bob, n.carol], m1);
      await sendToEach(b, n, n.bob, [n.alice], m2);
      await ask(c, 'send-message', { sessionId: n.session, from: n.carol, to: 'all', encrypted: 'hi all', clientMessageId: m3 });
      const again = await visitor(srv.url);
      const { history } = await join(again, { sessionId: `${n.session}:key`, userId: n.bob, publicKey: null });
      assert.deepEqual(history.map((m) => [m.id, m.from, m.to]), [[m1, n.alice, n.bob], [m2, n.bob, n.alice], [m3, n.carol, 'all']]);
      const forCarol = await visitor(srv.url);
      const hc = (await join(forCarol, { sessionId: `${n.session}:key`, userId: n.carol, publicKey: null })).history;
      assert.deepEqual(hc.map((m) => [m.id, m.to]), [[m1, n.carol], [m3, 'all']]);
      assert.ok(hc.every((m) => typeof m.timestamp === 'number' && m.originalContent === undefined));
      closeAll(a, b, c, again, forCarol);
    });

    it('set-session-key: session-key-available to the session; a later join gets its own entry in session-metadata', async () => {
      const { n, a, b } = await pair(srv.url);
      const keys = { [n.alice]: 'key-for-alice', [n.bob]: 'key-for-bob' };
      const both = [waitFor(a, 'session-key-available'), waitFor(b, 'session-key-available')];
      assert.equal((await ask(a, 'set-session-key', { sessionId: n.session, encryptedKeys: keys })).success, true);
      for (const got of await Promise.all(both)) assert.deepEqual(got.encryptedKeys, keys);
      const again = await visitor(srv.url);
      const { metadata } = await join(again, { sessionId: `${n.session}:key`, userId: n.bob, publicKey: null });
      assert.deepEqual(metadata, { chatMode: 'group', encryptedSessionKey: 'key-for-bob' });
      closeAll(a, b, again);
    });

    it('typing and stopped-typing reach the others as user-typing / user-stopped-typing', async () => {
      const { n, a, b } = await pair(srv.url);
      const seenA = record(a);
      const typing = waitFor(b, 'user-typing', (t) => t.userId === n.alice);
      await ask(a, 'typing', { sessionId: n.session, userId: n.alice, displayName: 'Alice' });
      assert.deepEqual(await typing, { userId: n.alice, displayName: 'Alice' });
      const stopped = waitFor(b, 'user-stopped-typing', (t) => t.userId === n.alice);
      await ask(a, 'stopped-typing', { sessionId: n.session, userId: n.alice, displayName: 'Alice' });
      assert.equal((await stopped).displayName, 'Alice');
      await roundTrip(a);
      assert.ok(!seenA.some(([e]) => e === 'user-typing' || e === 'user-stopped-typing'), 'not echoed to the typist');
      closeAll(a, b);
    });

    it('file-downloaded notifies the file\'s sender only', async () => {
      const { n, a, b } = await pair(srv.url);
      const c = await visitor(srv.url);
      await join(c, { sessionId: `${n.session}:key`, userId: n.carol, displayName: 'Carol', publicKey: pk('c') });
      const seenC = record(c);
      const note = waitFor(a, 'download-notification');
      await ask(b, 'file-downloaded', { sessionId: n.session, downloadedBy: n.bob, senderId: n.alice, fileName: 'plan.pdf', timestamp: Date.now() });
      const got = await note;
      assert.equal(got.downloadedBy, n.bob);
      assert.equal(got.fileName, 'plan.pdf');
      assert.equal(typeof got.timestamp, 'number');
      await roundTrip(c);
      assert.ok(!seenC.some(([e]) => e === 'download-notification'));
      closeAll(a, b, c);
    });

    it('leave-session: the others get user-left and the member list without the leaver; a disconnect gives user-left', async () => {
      const { n, a, b } = await pair(srv.url);
      const left = waitFor(a, 'user-left', (l) => l.userId === n.bob);
      const list = waitFor(a, 'public-keys-updated', (l) => !l.some((k) => k.userId === n.bob));
      assert.equal((await ask(b, 'leave-session', { sessionId: n.session, userId: n.bob })).success, true);
      const l = await left;
      assert.equal(l.displayName, 'Bob');
      assert.equal(typeof l.timestamp, 'number');
      assert.deepEqual((await list).map((k) => k.userId), [n.alice]);
      // Having left, bob acts as nobody there.
      assert.equal((await ask(b, 'send-message', { sessionId: n.session, to: n.alice, encrypted: 'x' })).success, false);
      // A member whose connection goes: user-left too.
      const c = await visitor(srv.url);
      await join(c, { sessionId: `${n.session}:key`, userId: n.carol, displayName: 'Carol', publicKey: pk('c') });
      const gone = waitFor(a, 'user-left', (x) => x.userId === n.carol);
      c.disconnect();
      assert.equal((await gone).displayName, 'Carol');
      closeAll(a, b);
    });

    it('never stores or relays originalContent: the database holds ciphertext only', async () => {
      const { n, a, b } = await pair(srv.url);
      const secret = 'PLAINTEXT-' + uid('secret');
      const got = waitFor(b, 'new-message', (m) => m.encrypted === 'CIPHERTEXT-ONLY');
      await ask(a, 'send-message', { sessionId: n.session, from: n.alice, to: n.bob, encrypted: 'CIPHERTEXT-ONLY', originalContent: secret, type: 'text', clientMessageId: uid('m') });
      const m = await got;
      assert.ok(!JSON.stringify(m).includes(secret));
      const rows = dbText(srv, `SELECT content || ' ' || coalesce(CAST(metadata AS TEXT), '') FROM messages WHERE conversation_id = 'session:${n.session}'`);
      assert.match(rows, /CIPHERTEXT-ONLY/);
      assert.ok(!rows.includes(secret), 'no plaintext in the messages table');
      const dump = backend === 'sqlite' ? sqliteBytes(srv) : execFileSync('pg_dump', [srv.databaseUrl, '--data-only'], { encoding: 'utf8' });
      assert.ok(dump.length > 0);
      assert.ok(!dump.includes(secret), 'no plaintext anywhere in the database');
      closeAll(a, b);
    });

    it('session members have no presence: users of other dialects never see them online', async () => {
      const { n, a, b } = await pair(srv.url);
      const watcher = await online(srv.url, token(uid('mz'), { shape: 'mrezhen' }));
      const list = watcher.frames.find((f) => f.type === 'online_users');
      assert.ok(list, 'the online list came');
      assert.ok(!list.users.some((u) => u.includes(n.session)), JSON.stringify(list.users));
      const c = await visitor(srv.url);
      await join(c, { sessionId: `${n.session}:key`, userId: n.carol, displayName: 'C', publicKey: pk('c') });
      await roundTrip(c);
      const ping = await watcher.request({ type: 'ping' }, 'pong');
      assert.equal(ping.type, 'pong');
      assert.ok(!watcher.frames.some((f) => JSON.stringify(f).includes(n.session)), 'no presence frame names a member');
      await watcher.close();
      closeAll(a, b, c);
    });

    it('GET /sessions needs the admin token; /health counts the sessions', async () => {
      const { n, a, b } = await pair(srv.url);
      await sendToEach(a, n, n.alice, [n.bob], uid('m'));
      assert.equal((await fetch(srv.url + '/sessions')).status, 401);
      assert.equal((await fetch(srv.url + '/sessions', { headers: { authorization: 'Bearer wrong' } })).status, 401);
      const res = await fetch(srv.url + '/sessions', { headers: { authorization: `Bearer ${ADMIN}` } });
      assert.equal(res.status, 200);
      const body = await res.json();
      const mine = body.data.find((s) => s.sessionId === n.session);
      assert.ok(mine, 'the session is listed');
      assert.equal(mine.members, 2);
      assert.equal(mine.messages, 1);
      assert.equal(mine.publicKeys, 2);
      assert.ok(!JSON.stringify(body).includes('ciphertext'), 'no content in the list');
      const health = await (await fetch(srv.url + '/health')).json();
      assert.ok(health.activeSessions >= 1);
      // Refusals told by session-error count as errors (the earlier tests of this server had some).
      assert.ok(JSON.stringify(health.errors.byCode).includes('SESSION_NOT_FOUND'), JSON.stringify(health.errors));
      assert.equal(health.errors.byCode.INTERNAL_ERROR, undefined, 'no internal error in any e2e test so far');
      closeAll(a, b);
    });
  });

  describe(`e2e limits and expiry on ${backend}`, () => {
    let srv;
    before(async () => {
      srv = await startServer({ backend, env: { E2E_SESSION_IDLE_TIMEOUT: '1500', RATE_LIMIT_SESSION_JOIN: '6/60s', RATE_LIMIT_MESSAGE_NEW: '2/60s' } });
    });
    after(async () => { await srv.stop(); });

    it('a session idle for E2E_SESSION_IDLE_TIMEOUT is deleted with its messages and keys; later actions get SESSION_NOT_FOUND', async () => {
      const { n, a, b } = await pair(srv.url);
      await sendToEach(a, n, n.alice, [n.bob], uid('m'));
      const chat = `session:${n.session}`;
      await eventually(() => dbText(srv, `SELECT count(*) FROM sessions WHERE conversation_id = '${chat}'`).trim() === '0', 15000, 'the session to expire');
      for (const table of ['messages', 'members', 'session_members', 'conversations']) {
        const column = table === 'conversations' ? 'id' : 'conversation_id';
        assert.equal(dbText(srv, `SELECT count(*) FROM ${table} WHERE ${column} = '${chat}'`).trim(), '0', table);
      }
      const gone = await refused(a, 'send-message', { sessionId: n.session, to: n.bob, encrypted: 'late' });
      assert.equal(gone.error.error, 'SESSION_NOT_FOUND');
      const late = await visitor(srv.url);
      const nf = await refused(late, 'join-session', { sessionId: `${n.session}:key`, userId: n.carol });
      assert.equal(nf.error.error, 'SESSION_NOT_FOUND');
      closeAll(a, b, late);
    });

    it('messages draw on the per-member message bucket; join attempts are limited per client address', async () => {
      const { n, a, b } = await pair(srv.url);
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await ask(a, 'send-message', { sessionId: n.session, to: n.bob, encrypted: `m${i}` }));
      assert.deepEqual(results.map((r) => r.success), [true, true, false]);
      assert.equal(results[2].error.code, 'RATE_LIMITED');
      // Six attempts per minute from this address (the other tests of this server take some):
      // the attempts are answered until the bucket is empty, then refused.
      const s = await visitor(srv.url);
      const codes = [];
      for (let i = 0; i < 7; i++) codes.push((await refused(s, 'join-session', { sessionId: `${uid('none')}`, userId: 'x' })).error.error);
      const firstLimited = codes.indexOf('RATE_LIMITED');
      assert.ok(firstLimited >= 0, codes.join());
      assert.ok(codes.slice(0, firstLimited).every((c) => c === 'SESSION_NOT_FOUND'), codes.join());
      assert.ok(codes.slice(firstLimited).every((c) => c === 'RATE_LIMITED'), codes.join());
      assert.ok(s.connected);
      closeAll(a, b, s);
    });
  });

  describe(`e2e across a restart on ${backend}`, () => {
    it('a session outlives a server restart: history and keys are there when its members rejoin', async () => {
      const first = await startServer({ backend });
      try {
        const { n, a, b } = await pair(first.url);
        const id = uid('m');
        await sendToEach(a, n, n.alice, [n.bob], id);
        closeAll(a, b);
        first.proc.kill('SIGTERM');
        await first.exited;
        const second = await startServer({ databaseUrl: first.databaseUrl });
        try {
          const again = await visitor(second.url);
          const { history, keys } = await join(again, { sessionId: `${n.session}:key`, userId: n.bob, publicKey: null });
          assert.deepEqual(history.map((m) => [m.id, m.encrypted]), [[id, `ciphertext-for-${n.bob}`]]);
          assert.deepEqual(keys.map((k) => k.userId), [n.alice, n.bob]);
          closeAll(again);
        } finally {
          await second.stop();
        }
      } finally {
        await first.stop();
      }
    });
  });
}
