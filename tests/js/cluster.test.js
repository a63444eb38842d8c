// Several instances behind nginx on PostgreSQL + Redis (SPEC §5 guarantee 6, §8): clients on
// different instances chat, and losing an instance loses no acknowledged message.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { api, token, uid, eventually, waitFor, sendUntilAcked as send } from './helpers.js';
import { clusterUnavailable, startCluster, clientFrom } from './cluster.js';

const skip = clusterUnavailable();

const connected = (s) => new Promise((resolve, reject) => {
  if (s.connected) return resolve(s);
  s.once('connect', () => resolve(s));
  s.once('connect_error', reject);
});

const call = async (s, event, payload) => {
  const r = await s.timeout(10000).emitWithAck(event, payload);
  if (!r.success) throw new Error(`${event}: ${JSON.stringify(r)}`);
  return r.data;
};

describe('several instances behind nginx', { skip: skip ?? false }, () => {
  let cluster;
  before(async () => { cluster = await startCluster({ instances: 2 }); });
  after(async () => { await cluster?.stop(); });

  it('puts clients on different instances that still chat, read, type, see presence and active members', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = (await api(cluster.url, token(alice), 'POST', '/api/conversations', { type: 'group', participantIds: [bob] })).body.data.id;
    const a = await connected(clientFrom(cluster.url, alice, cluster.addressFor(0)));
    const b = await connected(clientFrom(cluster.url, bob, cluster.addressFor(1)));
    // Each instance sees exactly its own client.
    const h0 = await (await fetch(cluster.servers[0].url + '/health')).json();
    const h1 = await (await fetch(cluster.servers[1].url + '/health')).json();
    assert.equal(h0.connections.active, 1);
    assert.equal(h1.connections.active, 1);
    assert.equal(h0.redis.ok, true);

    const toBob = waitFor(b, 'message:new');
    const sent = await call(a, 'message:new', { chatId: chat, encryptedContent: 'across instances', messageType: 'text' });
    assert.equal((await toBob).id, sent.id);

    const read = waitFor(a, 'message:read');
    await call(b, 'message:read', { chatId: chat, messageId: sent.id });
    assert.equal((await read).userId, bob);

    await call(a, 'chat:join', { chatId: chat });
    await call(b, 'chat:join', { chatId: chat });
    const typing = waitFor(b, 'message:typing');
    await call(a, 'message:typing', { chatId: chat });
    assert.equal((await typing).userId, alice);

    const active = await call(a, 'chat:get-active-members', { chatId: chat });
    assert.deepEqual(active.members.map((m) => m.userId).sort(), [alice, bob].sort());

    const seen = await call(a, 'presence:subscribe', { userIds: [bob] });
    assert.equal(seen.presence[0].status, 'online');
    const away = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'away');
    await call(b, 'presence:update', { status: 'away' });
    await away;
    const offline = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'offline');
    b.close();
    await offline;
    a.close();
  });
});

/**
 * Four members; two send continuously (one per instance), and every member records what it
 * receives. A sender retries an unacknowledged message with the same tempId after
 * reconnecting, as a real client does.
 */
async function traffic(cluster, { perSender, stopAfter, disrupt }) {
  const users = { s0: uid('s0'), s1: uid('s1'), r0: uid('r0'), r1: uid('r1') };
  const all = Object.values(users);
  const chat = (await api(cluster.url, token(users.s0), 'POST', '/api/conversations', {
    type: 'group', participantIds: all.filter((u) => u !== users.s0),
  })).body.data.id;
  const sockets = {
    s0: clientFrom(cluster.url, users.s0, cluster.addressFor(0)),
    r0: clientFrom(cluster.url, users.r0, cluster.addressFor(0)),
    s1: clientFrom(cluster.url, users.s1, cluster.addressFor(1)),
    r1: clientFrom(cluster.url, users.r1, cluster.addressFor(1)),
  };
  const received = Object.fromEntries(Object.keys(sockets).map((k) => [k, []]));
  for (const [k, s] of Object.entries(sockets)) s.on('message:new', (m) => received[k].push(m.id));
  const reasons = [];
  for (const s of Object.values(sockets)) s.on('disconnect', (r) => reasons.push(r));
  await Promise.all(Object.values(sockets).map(connected));

  const acked = { s0: [], s1: [] };
  const pump = async (key) => {
    const s = sockets[key];
    for (let i = 0; i < perSender; i++) {
      const payload = { chatId: chat, encryptedContent: `${key}-${i}`, messageType: 'text', tempId: `${key}-${i}` };
      for (let attempt = 0; ; attempt++) {
        if (attempt > 200) throw new Error(`${key} could not send ${i}`);
        if (!s.connected) await new Promise((r) => s.once('connect', r));
        try {
          const r = await s.timeout(3000).emitWithAck('message:new', payload);
          if (r.success) { acked[key].push(r.data); break; }
        } catch { /* timed out or disconnected: retry the same tempId */ }
      }
    }
  };
  const pumps = [pump('s0'), pump('s1')];
  await eventually(() => acked.s0.length >= stopAfter && acked.s1.length >= stopAfter, 30000, 'traffic before the disruption');
  const disruption = await disrupt();
  await Promise.all(pumps);

  const ackedIds = [...acked.s0, ...acked.s1].map((m) => m.id);
  // Every member gets every acknowledged message it did not send itself.
  const expected = (k) => ackedIds.filter((id) => !acked[k]?.some((m) => m.id === id));
  const missing = () => Object.fromEntries(Object.keys(sockets).map((k) => {
    const got = new Set(received[k]);
    return [k, expected(k).filter((id) => !got.has(id))];
  }).filter(([, ids]) => ids.length > 0));
  try {
    await eventually(() => Object.keys(missing()).length === 0, 30000, 'every acknowledged message at every member');
  } catch (e) {
    const seqOf = new Map([...acked.s0, ...acked.s1].map((m) => [m.id, `${m.senderId.slice(0, 2)}#${m.seq}`]));
    const detail = Object.entries(missing()).map(([k, ids]) => `${k} (connected=${sockets[k].connected}) misses ${ids.map((id) => seqOf.get(id)).join(',')}`);
    throw new Error(`${e.message}: ${detail.join('; ')}; disconnects: ${reasons.join(',')}`);
  }

  // The store holds each message once, with gapless seq, and each tempId once.
  const reader = sockets.r1;
  const stored = [];
  for (let after = 0; ;) {
    const page = await call(reader, 'message:sync', { chatId: chat, afterSeq: after, limit: 200 });
    stored.push(...page.messages);
    if (page.messages.length === 0) break;
    after = page.lastSeq;
  }
  const duplicates = Object.fromEntries(Object.entries(received).map(([k, ids]) => [k, ids.length - new Set(ids).size]));
  for (const s of Object.values(sockets)) s.close();
  return { stored, acked, received, duplicates, reasons, disruption, users };
}

function assertStoredOnce(result, perSender) {
  const { stored } = result;
  assert.deepEqual(stored.map((m) => m.seq), stored.map((_, i) => i + 1), 'gapless seq');
  assert.equal(new Set(stored.map((m) => m.id)).size, stored.length, 'ids unique');
  const temps = stored.map((m) => `${m.senderId}/${m.tempId}`);
  assert.equal(new Set(temps).size, temps.length, 'no tempId stored twice');
  assert.equal(stored.length, 2 * perSender, 'every message stored exactly once');
  const ids = new Set(stored.map((m) => m.id));
  for (const m of [...result.acked.s0, ...result.acked.s1]) assert.ok(ids.has(m.id), `acked ${m.id} stored`);
}

/** The server's log line about the close handshakes of its stop. */
const handshakes = (server) => server.logs.map((l) => { try { return JSON.parse(l); } catch { return {}; } })
  .find((e) => e.message === 'close handshakes');

describe('losing an instance', { skip: skip ?? false }, () => {
  it('SIGKILL mid-stream: clients fail over through nginx and get every acknowledged message', async () => {
    const cluster = await startCluster({ instances: 2 });
    try {
      const perSender = 120;
      const result = await traffic(cluster, {
        perSender,
        stopAfter: 30,
        disrupt: async () => cluster.servers[0].stop('SIGKILL'),
      });
      assertStoredOnce(result, perSender);
      // Clients of the killed instance saw their transport close and came back elsewhere.
      assert.ok(result.reasons.includes('transport close') || result.reasons.includes('transport error'), result.reasons.join());
      // A crash may re-push a message whose receipt died with the instance (same id): counted.
      const total = Object.values(result.duplicates).reduce((a, b) => a + b, 0);
      console.log(`# SIGKILL failover: ${result.stored.length} messages, re-pushed after the crash: ${JSON.stringify(result.duplicates)} (total ${total})`);
    } finally {
      await cluster.stop();
    }
  });

  it('SIGTERM mid-stream: the instance exits 0 and nothing is lost or pushed twice', async () => {
    const cluster = await startCluster({ instances: 2 });
    try {
      const perSender = 120;
      const result = await traffic(cluster, {
        perSender,
        stopAfter: 30,
        disrupt: async () => {
          const code = await cluster.servers[1].stop('SIGTERM');
          return { code };
        },
      });
      assert.equal(result.disruption.code, 0);
      assertStoredOnce(result, perSender);
      assert.ok(!result.reasons.includes('io server disconnect'), 'no Socket.IO DISCONNECT: clients must reconnect');
      assert.deepEqual(result.duplicates, { s0: 0, s1: 0, r0: 0, r1: 0 });
      console.log(`# SIGTERM failover: ${JSON.stringify(handshakes(cluster.servers[1]))}`);
    } finally {
      await cluster.stop();
    }
  });

  // Issue 18: under load, the stopping instance had not put on the wire what it had handed
  // out, yet recorded it as delivered. The test hook holds every write of the stopping
  // instance back for a second once its stop began; both instances are kept busy by a burst
  // from each sender, and the stop comes while it is being delivered.
  it('SIGTERM while the stopping instance cannot send: nothing acknowledged is lost, nothing is pushed twice', async () => {
    const HOLD_MS = 1000;
    const cluster = await startCluster({ instances: 2, env: { TEST_HOOK_HOLD_WRITES_AT_STOP: String(HOLD_MS) } });
    const sockets = {};
    try {
      const users = { s0: uid('s0'), s1: uid('s1'), r0: uid('r0'), r1: uid('r1'), w1: uid('w1') };
      const chat = (await api(cluster.url, token(users.s0), 'POST', '/api/conversations', {
        type: 'group', participantIds: Object.values(users).filter((u) => u !== users.s0),
      })).body.data.id;
      const home = { s0: 0, r0: 0, s1: 1, r1: 1, w1: 1 };
      for (const [k, i] of Object.entries(home)) {
        sockets[k] = clientFrom(cluster.url, users[k], cluster.addressFor(i), k === 'w1' ? { transports: ['websocket'] } : {});
      }
      const arrivals = Object.fromEntries(Object.keys(sockets).map((k) => [k, []]));
      for (const [k, s] of Object.entries(sockets)) s.on('message:new', (m) => arrivals[k].push({ id: m.id, at: Date.now() }));
      await Promise.all(Object.values(sockets).map(connected));
      await eventually(() => Object.values(sockets).every((s) => s.io.engine.transport.name === 'websocket'), 10000, 'upgrades');

      const acked = { s0: [], s1: [] };
      for (let i = 0; i < 5; i++) await Promise.all(['s0', 's1'].map((k) => send(sockets[k], chat, `${k}-${i}`, acked[k])));
      // Several batches of the stopping instance's writer: the first one delivered, the
      // others still to come when the stop begins, even on a busy machine (where the signal
      // takes a while to be handled).
      const started = waitFor(sockets.r1, 'message:new', (m) => m.tempId.startsWith('s1-b'), 20000);
      const sizes = { s0: 300, s1: 1500 };
      const burst = ['s0', 's1'].flatMap((k) => Array.from({ length: sizes[k] }, (_, i) => send(sockets[k], chat, `${k}-b${i}`, acked[k])));
      await started;
      const stopAt = Date.now();
      const code = await cluster.servers[1].stop('SIGTERM');
      const exitedAt = Date.now();
      assert.equal(code, 0);
      await Promise.all(burst);

      const ackedIds = [...acked.s0, ...acked.s1].map((m) => m.id);
      const expected = (k) => ackedIds.filter((id) => !acked[k]?.some((m) => m.id === id));
      const missing = () => Object.fromEntries(Object.keys(sockets)
        .map((k) => [k, expected(k).filter((id) => !arrivals[k].some((a) => a.id === id))])
        .filter(([, ids]) => ids.length > 0));
      await eventually(() => Object.keys(missing()).length === 0, 30000, 'every acknowledged message at every member')
        .catch(() => assert.fail(`acknowledged messages lost: ${JSON.stringify(Object.fromEntries(Object.entries(missing()).map(([k, ids]) => [k, ids.length])))}`));
      const held = ['s1', 'r1', 'w1'].flatMap((k) => arrivals[k]).filter((a) => a.at >= stopAt + HOLD_MS * 0.9 && a.at <= exitedAt);
      assert.ok(held.length > 0, 'no delivery was held back by the stop: the scenario did not happen');
      const twice = Object.fromEntries(Object.entries(arrivals).map(([k, list]) => [k, list.length - new Set(list.map((a) => a.id)).size]));
      console.log(`# SIGTERM with writes held back: stop took ${exitedAt - stopAt} ms, ${held.length} deliveries held back; pushed twice: ${JSON.stringify(twice)}; ${JSON.stringify(handshakes(cluster.servers[1]))}`);
      // Every client of the stopped instance answered its close (all are WebSocket clients).
      assert.deepEqual(twice, { s0: 0, r0: 0, s1: 0, r1: 0, w1: 0 });
    } finally {
      for (const s of Object.values(sockets)) s.close();
      await cluster.stop();
    }
  });
});
