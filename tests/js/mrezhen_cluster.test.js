// Mrezhen across two instances behind nginx (PostgreSQL + Redis, examples/nginx/nginx.conf):
// messages, presence, the online list and the frame limit hold across instances.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { token, uid } from './helpers.js';
import { clusterUnavailable, startCluster } from './cluster.js';
import { online, open } from './mrezhen_client.js';

const skip = clusterUnavailable();
const mz = (user) => token(user, { shape: 'mrezhen' });

describe('mrezhen on several instances behind nginx', { skip: skip ?? false }, () => {
  let cluster;
  before(async () => { cluster = await startCluster({ instances: 2, env: { RATE_LIMIT_MESSAGES: '4' } }); });
  after(async () => { await cluster?.stop(); });

  const on = (i, user) => online(cluster.url, mz(user), { path: '/', localAddress: cluster.addressFor(i) });

  it('delivers, queues and announces across instances', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const a = await on(0, alice);
    const ack = await a.request({ type: 'direct_message', to: bob, content: 'while offline' }, 'message_ack');
    assert.equal(ack.status, 'queued');
    const b = await open(cluster.url, mz(bob), { path: '/', localAddress: cluster.addressFor(1) });
    await b.next('online_users');
    const [presence, queued, users] = b.frames;
    assert.deepEqual([presence.type, queued.type, users.type], ['presence', 'direct_message', 'online_users']);
    assert.deepEqual([queued.message.id, queued.queued], [ack.messageId, true]);
    assert.ok(users.users.includes(alice) && users.users.includes(bob), 'online users of both instances');
    // Each instance holds one of them.
    const h0 = await (await fetch(cluster.servers[0].url + '/health')).json();
    const h1 = await (await fetch(cluster.servers[1].url + '/health')).json();
    assert.deepEqual([h0.connections.active, h1.connections.active], [1, 1]);

    const arrived = await a.next('presence', (f) => f.userId === bob && f.status === 'online');
    assert.ok(arrived.onlineUsers.includes(alice) && arrived.onlineUsers.includes(bob));
    const live = await a.request({ type: 'direct_message', to: bob, content: 'across' }, 'message_ack');
    assert.equal(live.status, 'delivered', 'bob is online on the other instance');
    const got = await b.next('direct_message', (f) => f.message.id === live.messageId);
    assert.equal(got.message.content, 'across');
    await b.close();
    const left = await a.next('presence', (f) => f.userId === bob && f.status === 'offline');
    assert.ok(!left.onlineUsers.includes(bob));
    await a.close();
  });

  it('shares one frame window per user across instances', async () => {
    const carol = uid('carol');
    const c0 = await on(0, carol);
    const c1 = await on(1, carol);
    assert.equal((await c0.request({ type: 'ping' }, 'pong')).type, 'pong');
    assert.equal((await c1.request({ type: 'ping' }, 'pong')).type, 'pong');
    assert.equal((await c0.request({ type: 'ping' }, 'pong')).type, 'pong');
    assert.equal((await c1.request({ type: 'ping' }, 'pong')).type, 'pong');
    const refused = await c0.request({ type: 'ping' }, 'pong');
    assert.deepEqual([refused.type, refused.code], ['error', 'RATE_LIMITED']);
    assert.equal((await c1.request({ type: 'ping' }, 'pong')).code, 'RATE_LIMITED');
    await Promise.all([c0.close(), c1.close()]);
  });
});
