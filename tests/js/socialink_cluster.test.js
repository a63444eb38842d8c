// Socialink on two instances sharing PostgreSQL and Redis: a one-time prekey is never handed
// out twice under concurrent bundle fetches spread over both instances; a message sent through
// one instance reaches a device's socket on the other once; a self-destructing message is
// announced once although every instance sweeps.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { uid } from './helpers.js';
import { clusterUnavailable, startCluster } from './cluster.js';
import { Sl } from './socialink_client.js';

const skip = clusterUnavailable();

describe('socialink on two instances', { skip: skip ?? false }, () => {
  let cluster;
  before(async () => { cluster = await startCluster({ instances: 2, env: { RATE_LIMIT_KEY_BUNDLE: '100000/60s' } }); });
  after(async () => { await cluster?.stop(); });

  const on = (i, user) => new Sl(cluster.servers[i].url, user);

  it('hands each one-time prekey out at most once across instances', async () => {
    const bob = uid('bob');
    const device = await on(0, bob).register({ prekeys: 30 });
    const fetchers = Array.from({ length: 6 }, (_, i) => on(i % 2, uid('f')));
    const results = await Promise.all(Array.from({ length: 80 }, (_, i) =>
      fetchers[i % 6].call('GET', `/keys/bundle/${bob}?device_id=${device.deviceId}`)));
    assert.ok(results.every((r) => r.status === 200));
    const handed = results.map((r) => r.body.onetime_prekey_id).filter((id) => id !== null);
    assert.equal(handed.length, 30, 'all handed out, none withheld while one remained');
    assert.equal(new Set(handed).size, 30, 'none twice');
  });

  it('pushes across instances once, and announces an expiry once', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const phone = await on(1, bob).register();
    const socket = await on(1, bob).socket(phone.deviceId);
    const sent = await on(0, alice).sendTo(bob, 'across', { is_self_destructing: true, expires_in_seconds: 1 });
    await socket.next('message', (f) => f.id === sent.message_id);
    await socket.next('message_deleted', (f) => f.message_id === sent.message_id && f.reason === 'expired', 10000);
    // Both instances swept meanwhile; one more sweep period and a round trip later, still one.
    await new Promise((r) => setTimeout(r, 1200));
    await socket.request({ type: 'ping' }, 'pong');
    assert.equal(socket.frames.filter((f) => f.type === 'message_deleted' && f.message_id === sent.message_id).length, 1);
    assert.equal(socket.frames.filter((f) => f.type === 'message' && f.id === sent.message_id).length, 1);
    await socket.close();
  });
});
