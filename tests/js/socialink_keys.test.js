// Socialink keys (protocols/socialink.md §2, §3) over real HTTP with real Ed25519/X25519 keys
// made by Node's crypto: registration with a verified signed prekey, bundles that hand out each
// one-time prekey once (also under a burst of concurrent fetches), rotate, top-ups, deactivate,
// devices, stats, the bundle limit and the actor checks; on SQLite and PostgreSQL.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { backends, startServer, token, uid, api } from './helpers.js';
import { Sl, makeDevice, rawPublic, b64, x25519 } from './socialink_client.js';

for (const backend of backends()) {
  describe(`socialink keys on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { RATE_LIMIT_KEY_BUNDLE: '100000/60s' } }); });
    after(async () => { await srv.stop(); });

    it('registers a device (201 Device), refuses a second registration (409) and lists it', async () => {
      const alice = new Sl(srv.url);
      const device = makeDevice();
      const res = await alice.call('POST', `/keys/register/${alice.user}`, device.registration());
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const d = res.body;
      assert.match(d.id, /^[0-9a-f-]{36}$/);
      assert.deepEqual([d.user_id, d.device_id, d.device_name, d.identity_key, d.is_active], [alice.user, device.deviceId, 'test phone', device.identityKey, true]);
      for (const f of ['registration_id', 'last_seen', 'created_at']) assert.ok(f in d, f);
      const again = await alice.call('POST', `/keys/register/${alice.user}`, device.registration());
      assert.equal(again.status, 409);
      assert.equal(again.body.code, 'CONFLICT');
      const second = await alice.register();
      const list = await new Sl(srv.url).call('GET', `/keys/devices/${alice.user}`);
      assert.equal(list.status, 200);
      assert.equal(list.body.count, 2);
      assert.deepEqual(new Set(list.body.devices.map((x) => x.device_id)), new Set([device.deviceId, second.deviceId]));
    });

    it('refuses a bad signature, wrong key sizes and out-of-range ids with 400, storing nothing', async () => {
      const alice = new Sl(srv.url);
      const device = makeDevice();
      const forger = generateKeyPairSync('ed25519');
      const pub = Buffer.from(device.signedPrekey.public_key, 'base64');
      const forged = { ...device.signedPrekey, signature: b64(sign(null, pub, forger.privateKey)) };
      const bad = await alice.call('POST', `/keys/register/${alice.user}`, device.registration({ signed_prekey: forged }));
      assert.equal(bad.status, 400);
      assert.deepEqual([bad.body.code, bad.body.error], ['VALIDATION_FAILED', 'Invalid signed pre-key signature']);
      const cases = [
        { identity_key: b64(Buffer.alloc(31)) },
        { signed_prekey: { ...device.signedPrekey, signature: b64(Buffer.alloc(10)) } },
        { registration_id: 16384 },
        { registration_id: 'x' },
        { onetime_prekeys: [{ id: -1, public_key: x25519() }] },
        { onetime_prekeys: [{ id: 1, public_key: b64(Buffer.alloc(33)) }] },
        { identity_key: 'not base64!' },
        { device_id: '' },
      ];
      for (const extra of cases) {
        const res = await alice.call('POST', `/keys/register/${alice.user}`, device.registration(extra));
        assert.equal(res.status, 400, JSON.stringify(extra));
        assert.equal(res.body.code, 'VALIDATION_FAILED');
      }
      const notJson = await fetch(`${srv.url}/api/v1/keys/register/${alice.user}`, { method: 'POST', headers: { authorization: `Bearer ${alice.tok}` }, body: '{nope' });
      assert.equal(notJson.status, 400);
      assert.equal((await notJson.json()).code, 'INVALID_JSON');
      const list = await alice.call('GET', `/keys/devices/${alice.user}`);
      assert.equal(list.body.count, 0, 'nothing stored');
      // Byte fields may also be arrays of byte values, and URL-safe base64.
      const arrays = device.registration({ identity_key: [...Buffer.from(device.identityKey, 'base64')], onetime_prekeys: [{ id: 5, public_key: Buffer.from(x25519(), 'base64').toString('base64url') }] });
      const ok = await alice.call('POST', `/keys/register/${alice.user}`, arrays);
      assert.equal(ok.status, 201, JSON.stringify(ok.body));
      assert.equal(ok.body.identity_key, device.identityKey, 'written as standard base64');
    });

    it('hands out a bundle with the oldest one-time prekey, each only once, then none', async () => {
      const bob = new Sl(srv.url);
      const device = await bob.register({ prekeys: 3 });
      const alice = new Sl(srv.url);
      const seen = [];
      for (let i = 0; i < 3; i++) {
        const res = await alice.call('GET', `/keys/bundle/${bob.user}?device_id=${device.deviceId}`);
        assert.equal(res.status, 200);
        const b = res.body;
        assert.deepEqual([b.user_id, b.device_id, b.identity_key, b.signed_prekey_id, b.signed_prekey, b.signed_prekey_signature],
          [bob.user, device.deviceId, device.identityKey, device.signedPrekey.id, device.signedPrekey.public_key, device.signedPrekey.signature]);
        assert.equal(b.registration_id, device.row.registration_id);
        seen.push([b.onetime_prekey_id, b.onetime_prekey]);
      }
      assert.deepEqual(seen, device.onetimePrekeys.map((k) => [k.id, k.public_key]), 'oldest first, each once');
      const empty = await alice.call('GET', `/keys/bundle/${bob.user}`);
      assert.equal(empty.status, 200);
      assert.deepEqual([empty.body.onetime_prekey_id, empty.body.onetime_prekey], [null, null]);
      const stats = await bob.call('GET', `/keys/stats/${bob.user}/${device.deviceId}`);
      assert.deepEqual(stats.body, { unused_prekeys: 0, used_prekeys: 3, total_prekeys: 3 });
      assert.equal((await alice.call('GET', `/keys/bundle/${uid('nobody')}`)).status, 404);
      assert.equal((await alice.call('GET', `/keys/bundle/${bob.user}?device_id=nope`)).status, 404);
    });

    it('never hands a one-time prekey out twice under a burst of concurrent fetches', async () => {
      const bob = new Sl(srv.url);
      const device = await bob.register({ prekeys: 20 });
      const fetchers = Array.from({ length: 5 }, () => new Sl(srv.url));
      const results = await Promise.all(Array.from({ length: 60 }, (_, i) => fetchers[i % 5].call('GET', `/keys/bundle/${bob.user}?device_id=${device.deviceId}`)));
      assert.ok(results.every((r) => r.status === 200), JSON.stringify(results.find((r) => r.status !== 200)?.body));
      const handed = results.map((r) => r.body.onetime_prekey_id).filter((id) => id !== null);
      assert.equal(handed.length, 20, 'every key handed out: none while one remained');
      assert.equal(new Set(handed).size, 20, 'none twice');
      const stats = await bob.call('GET', `/keys/stats/${bob.user}/${device.deviceId}`);
      assert.deepEqual(stats.body, { unused_prekeys: 0, used_prekeys: 20, total_prekeys: 20 });
    });

    it('rotates the signed prekey (verified against the stored identity key) and tops up prekeys', async () => {
      const bob = new Sl(srv.url);
      const device = await bob.register({ prekeys: 0 });
      const next = device.signed();
      const rotated = await bob.call('PUT', `/keys/rotate/${bob.user}/${device.deviceId}`, next);
      assert.equal(rotated.status, 200);
      assert.equal(rotated.body.success, true);
      const other = makeDevice().signed();
      const refused = await bob.call('PUT', `/keys/rotate/${bob.user}/${device.deviceId}`, other);
      assert.equal(refused.status, 400, 'signed by another identity key');
      const bundle = await bob.call('GET', `/keys/bundle/${bob.user}`);
      assert.deepEqual([bundle.body.signed_prekey_id, bundle.body.signed_prekey], [next.id, next.public_key]);
      const keys = device.onetime(3);
      const added = await bob.call('POST', `/keys/prekeys/${bob.user}/${device.deviceId}`, keys);
      assert.deepEqual([added.status, added.body.success, added.body.stored], [200, true, 3]);
      const again = await bob.call('POST', `/keys/prekeys/${bob.user}/${device.deviceId}`, { onetime_prekeys: [...keys, ...device.onetime(1)] });
      assert.equal(again.body.stored, 1, 'ids already stored are ignored');
      assert.equal((await bob.call('POST', `/keys/prekeys/${bob.user}/${device.deviceId}`, [])).status, 400);
      const stats = await bob.call('GET', `/keys/stats/${bob.user}/${device.deviceId}`);
      assert.deepEqual(stats.body, { unused_prekeys: 4, used_prekeys: 0, total_prekeys: 4 });
      assert.equal((await bob.call('POST', `/keys/prekeys/${bob.user}/nope`, device.onetime(1))).status, 404);
    });

    it('deactivates a device: gone from devices and bundles; re-registering replaces its keys', async () => {
      const bob = new Sl(srv.url);
      const device = await bob.register({ prekeys: 2 });
      const res = await bob.call('DELETE', `/keys/deactivate/${bob.user}/${device.deviceId}`);
      assert.deepEqual([res.status, res.body.success], [200, true]);
      assert.equal((await bob.call('GET', `/keys/devices/${bob.user}`)).body.count, 0);
      assert.equal((await bob.call('GET', `/keys/bundle/${bob.user}?device_id=${device.deviceId}`)).status, 404);
      assert.equal((await bob.call('DELETE', `/keys/deactivate/${bob.user}/${device.deviceId}`)).status, 404);
      const fresh = makeDevice({ deviceId: device.deviceId, prekeys: 1 });
      const again = await bob.call('POST', `/keys/register/${bob.user}`, fresh.registration());
      assert.equal(again.status, 201);
      assert.equal(again.body.id, device.row.id, 'the same device row, reactivated');
      const stats = await bob.call('GET', `/keys/stats/${bob.user}/${device.deviceId}`);
      assert.deepEqual(stats.body, { unused_prekeys: 1, used_prekeys: 0, total_prekeys: 1 }, 'old one-time prekeys dropped');
      const bundle = await bob.call('GET', `/keys/bundle/${bob.user}`);
      assert.equal(bundle.body.identity_key, fresh.identityKey);
    });

    it('checks the token (401) and actor ids (403 before the body is read)', async () => {
      const alice = new Sl(srv.url);
      const device = await alice.register();
      const mallory = new Sl(srv.url);
      const noToken = await api(srv.url, undefined, 'GET', `/api/v1/keys/devices/${alice.user}`);
      assert.deepEqual([noToken.status, noToken.body.code], [401, 'UNAUTHORIZED']);
      const expired = await api(srv.url, token(alice.user, { exp: Math.floor(Date.now() / 1000) - 10 }), 'GET', `/api/v1/keys/devices/${alice.user}`);
      assert.equal(expired.status, 401);
      const forbidden = [
        ['POST', `/keys/register/${alice.user}`, '{not json'],
        ['PUT', `/keys/rotate/${alice.user}/${device.deviceId}`, device.signed()],
        ['POST', `/keys/prekeys/${alice.user}/${device.deviceId}`, device.onetime(1)],
        ['DELETE', `/keys/deactivate/${alice.user}/${device.deviceId}`],
        ['GET', `/keys/stats/${alice.user}/${device.deviceId}`],
      ];
      for (const [method, path, body] of forbidden) {
        const res = await mallory.call(method, path, body);
        assert.deepEqual([res.status, res.body.code], [403, 'FORBIDDEN'], `${method} ${path}`);
      }
      assert.equal((await alice.call('GET', `/keys/devices/${alice.user}`)).body.count, 1, 'nothing changed');
      assert.equal((await mallory.call('GET', '/no/such/route')).status, 404);
    });
  });
}

describe('socialink bundle limit', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { RATE_LIMIT_KEY_BUNDLE: '3/60s' } }); });
  after(async () => { await srv.stop(); });

  it('counts bundle fetches per requester (429 RATE_LIMITED with Retry-After)', async () => {
    const bob = new Sl(srv.url);
    await bob.register({ prekeys: 10 });
    const alice = new Sl(srv.url);
    for (let i = 0; i < 3; i++) assert.equal((await alice.call('GET', `/keys/bundle/${bob.user}`)).status, 200);
    const limited = await alice.call('GET', `/keys/bundle/${bob.user}`);
    assert.deepEqual([limited.status, limited.body.code], [429, 'RATE_LIMITED']);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    const carol = new Sl(srv.url);
    assert.equal((await carol.call('GET', `/keys/bundle/${bob.user}`)).status, 200, 'another requester has their own bucket');
  });
});

void rawPublic;
