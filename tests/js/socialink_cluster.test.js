// Socialink on two instances sharing PostgreSQL and Redis: a one-time prekey is never handed
// out twice under concurrent bundle fetches spread over both instances; a message sent through
// one instance reaches a device's socket on the other once; a self-destructing message is
// announced once although every instance sweeps.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { startServer, uid } from './helpers.js';
import { Sl } from './socialink_client.js';

// Two instances talk to each other directly (no proxy is needed: each test picks its instance).
const skip = !process.env.TEST_DATABASE_URL || !process.env.TEST_REDIS_URL
  ? 'needs TEST_DATABASE_URL (PostgreSQL) and TEST_REDIS_URL' : false;

describe('socialink on two instances', { skip }, () => {
  const cluster = { servers: [] };
  let dropDb = () => {};
  before(async () => {
    const base = process.env.TEST_DATABASE_URL;
    const name = 'sb_sl_' + randomUUID().replace(/-/g, '').slice(0, 16);
    execFileSync('psql', [base, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
    dropDb = () => { try { execFileSync('psql', [base, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'pipe' }); } catch { /* best effort */ } };
    const url = new URL(base);
    url.pathname = '/' + name;
    const env = { REDIS_URL: process.env.TEST_REDIS_URL, REDIS_PREFIX: `sbtest-${randomUUID().slice(0, 8)}:`, RATE_LIMIT_KEY_BUNDLE: '100000/60s' };
    // The first instance applies the migrations alone.
    for (let i = 0; i < 2; i++) cluster.servers.push(await startServer({ databaseUrl: url.toString(), env: { ...env, INSTANCE_ID: `i${i}` } }));
  });
  after(async () => {
    for (const s of cluster.servers) await s.stop().catch(() => {});
    dropDb();
  });

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
