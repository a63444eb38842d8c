// The e2e dialect on two instances sharing PostgreSQL and Redis: members of one session on
// different instances see each other's messages and notices. Once with clients connected to
// each instance directly, once behind nginx (examples/nginx/nginx.conf), as deployed.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';
import { startServer, ask, waitFor, uid, closeAll, eventually } from './helpers.js';
import { clusterUnavailable, startCluster } from './cluster.js';
import { visitor, record, join, roundTrip, names, pk } from './e2e_client.js';

/** What one session's members on two instances must see of each other. */
async function crossInstanceSession(first, second) {
  const n = names();
  const a = await first();
  await join(a, { sessionId: `${n.session}:k`, userId: n.alice, displayName: 'Alice', publicKey: pk('a'), isCreator: true });
  const seenA = record(a);
  const b = await second();
  const c = await second();
  const { keys } = await join(b, { sessionId: `${n.session}:k`, userId: n.bob, displayName: 'Bob', publicKey: pk('b') });
  assert.deepEqual(keys.map((k) => k.userId), [n.alice, n.bob], 'the member list is the same on both instances');
  await eventually(() => seenA.some(([e, p]) => e === 'user-joined' && p.userId === n.bob), 10000, 'user-joined across instances');
  await eventually(() => seenA.some(([e, p]) => e === 'public-keys-updated' && p.length === 2), 10000, 'public-keys-updated across');
  await join(c, { sessionId: `${n.session}:k`, userId: n.carol, displayName: 'Carol', publicKey: pk('c') });
  const [seenB, seenC] = [record(b), record(c)];

  // Per-recipient copies, each only to its addressee, across instances; and back.
  const id = uid('m');
  for (const to of [n.bob, n.carol]) {
    const ack = await ask(a, 'send-message', { sessionId: n.session, from: n.alice, to, encrypted: `for-${to}`, type: 'text', clientMessageId: id });
    assert.equal(ack.success, true, JSON.stringify(ack));
  }
  await eventually(() => seenB.some(([e, p]) => e === 'new-message' && p.id === id), 10000, "bob's copy");
  await eventually(() => seenC.some(([e, p]) => e === 'new-message' && p.id === id), 10000, "carol's copy");
  const reply = uid('m');
  await ask(b, 'send-message', { sessionId: n.session, from: n.bob, to: 'all', encrypted: 'reply', type: 'text', clientMessageId: reply });
  await eventually(() => seenA.some(([e, p]) => e === 'new-message' && p.id === reply), 10000, 'the reply on the first instance');

  // Notices: typing, download, session keys, leaving.
  await ask(b, 'typing', { sessionId: n.session, userId: n.bob, displayName: 'Bob' });
  await eventually(() => seenA.some(([e, p]) => e === 'user-typing' && p.userId === n.bob), 10000, 'typing across');
  await ask(b, 'file-downloaded', { sessionId: n.session, downloadedBy: n.bob, senderId: n.alice, fileName: 'f.bin' });
  await eventually(() => seenA.some(([e, p]) => e === 'download-notification' && p.downloadedBy === n.bob), 10000, 'download across');
  await ask(a, 'set-session-key', { sessionId: n.session, encryptedKeys: { [n.bob]: 'kb', [n.carol]: 'kc' } });
  await eventually(() => seenB.some(([e, p]) => e === 'session-key-available' && p.encryptedKeys[n.bob] === 'kb'), 10000, 'keys across');
  c.disconnect();
  await eventually(() => seenA.some(([e, p]) => e === 'user-left' && p.userId === n.carol), 10000, 'user-left across');

  await roundTrip(b);
  assert.equal(seenB.filter(([e, p]) => e === 'new-message' && p.id === id).length, 1, 'one copy for bob');
  assert.ok(!seenB.some(([e, p]) => e === 'new-message' && p.encrypted === `for-${n.carol}`), "bob never gets carol's copy");
  closeAll(a, b);
}

const direct = !process.env.TEST_DATABASE_URL || !process.env.TEST_REDIS_URL ? 'TEST_DATABASE_URL and TEST_REDIS_URL are needed' : null;

describe('e2e on two instances sharing PostgreSQL and Redis', { skip: direct ?? false }, () => {
  let one;
  let two;
  before(async () => {
    const env = { REDIS_URL: process.env.TEST_REDIS_URL, REDIS_PREFIX: `sbtest-${randomUUID().slice(0, 8)}:` };
    one = await startServer({ backend: 'postgres', env: { ...env, INSTANCE_ID: 'i0' } });
    two = await startServer({ databaseUrl: one.databaseUrl, env: { ...env, INSTANCE_ID: 'i1' } });
  });
  after(async () => { await two?.stop(); await one?.stop(); });

  it('members on different instances see each other\'s messages and notices', async () => {
    await crossInstanceSession(() => visitor(one.url), () => visitor(two.url));
  });
});

const behindNginx = clusterUnavailable();

describe('e2e behind nginx', { skip: behindNginx ?? false }, () => {
  let cluster;
  before(async () => { cluster = await startCluster({ instances: 2, env: { DEFAULT_PROFILE: 'e2e' } }); });
  after(async () => { await cluster?.stop(); });

  /** A web client on the bare URL, from a source address nginx sends to instance `i`. */
  const onInstance = (i) => () => {
    const localAddress = cluster.addressFor(i);
    const socket = io(cluster.url, { forceNew: true, agent: new http.Agent({ localAddress, keepAlive: true }), localAddress });
    return new Promise((resolve, reject) => {
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', (e) => { socket.close(); reject(e); });
    });
  };

  it('members on different instances see each other\'s messages and notices', async () => {
    await crossInstanceSession(onInstance(0), onInstance(1));
  });
});
