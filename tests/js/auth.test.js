// SPEC §4: the three token locations, refusals that say why, identity from the token only.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign as cryptoSign } from 'node:crypto';
import { startServer, connect, token, uid, call, api, createChat, waitFor, closeAll } from './helpers.js';

describe('authentication', () => {
  let srv;
  before(async () => { srv = await startServer({ env: { JWT_ISSUER: 'switchboard-tests' } }); });
  after(async () => { await srv.stop(); });

  const good = (sub) => token(sub, { iss: 'switchboard-tests' });

  it('accepts the token in the handshake auth object', async () => {
    const s = await connect(srv.url, { auth: { token: good(uid()) } });
    assert.ok(s.connected);
    s.close();
  });

  it('accepts the token as a query parameter', async () => {
    const s = await connect(srv.url, { query: { token: good(uid()) } });
    assert.ok(s.connected);
    s.close();
  });

  it('accepts the token in an Authorization header (polling and websocket)', async () => {
    for (const transports of [['polling'], ['websocket']]) {
      const s = await connect(srv.url, { transports, extraHeaders: { Authorization: `Bearer ${good(uid())}` } });
      assert.ok(s.connected);
      s.close();
    }
  });

  const refusals = [
    ['no token', {}, /missing/],
    ['an expired token', { auth: { token: token('x', { iss: 'switchboard-tests', exp: 1000 }) } }, /expired/],
    ['a token signed with another secret', { auth: { token: token('x', { iss: 'switchboard-tests', secret: 'other' }) } }, /signature/],
    ['a token from another issuer', { auth: { token: token('x', { iss: 'someone-else' }) } }, /issuer/],
    ['garbage', { auth: { token: 'not.a.jwt' } }, /malformed|invalid/],
  ];
  for (const [what, opts, why] of refusals) {
    it(`refuses ${what} with a connect_error that says why`, async () => {
      await assert.rejects(connect(srv.url, opts), (err) => {
        assert.match(err.message, why);
        return true;
      });
    });
  }

  it('answers REST without a valid token with 401 and the error envelope', async () => {
    const none = await api(srv.url, null, 'POST', '/api/conversations', { type: 'group', participantIds: [] });
    assert.equal(none.status, 401);
    assert.equal(none.body.success, false);
    assert.equal(none.body.error.code, 'UNAUTHORIZED');
    const bad = await api(srv.url, token('x', { secret: 'nope' }), 'GET', '/api/conversations/abc');
    assert.equal(bad.status, 401);
    assert.match(bad.body.error.message, /signature/);
  });

  it('takes the sender from the token, never from the payload', async () => {
    const alice = uid('alice');
    const bob = uid('bob');
    const chat = await createChat(srv.url, good(alice), 'direct', [bob]);
    const a = await connect(srv.url, { auth: { token: good(alice) } });
    const b = await connect(srv.url, { auth: { token: good(bob) } });
    const got = waitFor(b, 'message:new');
    const sent = await call(a, 'message:new', { chatId: chat, encryptedContent: 'hi', messageType: 'text', senderId: bob });
    assert.equal(sent.senderId, alice);
    assert.equal((await got).senderId, alice);
    closeAll(a, b);
  });

  it('stores the profile claims of the token on the user', async () => {
    const carol = uid('carol');
    const dave = uid('dave');
    const s = await connect(srv.url, { auth: { token: token(carol, { iss: 'switchboard-tests', username: 'carol_c', name: 'Carol' }) } });
    const chat = await createChat(srv.url, good(dave), 'direct', [carol]);
    const res = await api(srv.url, good(dave), 'GET', `/api/conversations/${chat}`);
    const me = res.body.data.participants.find((p) => p.userId === carol);
    assert.equal(me.username, 'carol_c');
    assert.equal(me.name, 'Carol');
    s.close();
  });
});

describe('public-key tokens (JWT_PUBLIC_KEY)', () => {
  const sign = (alg, privateKey, sub) => {
    const now = Math.floor(Date.now() / 1000);
    const head = Buffer.from(JSON.stringify({ alg, typ: 'JWT' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ sub, exp: now + 600, iat: now })).toString('base64url');
    // ES256 signatures are the raw r||s pair in JWS, not DER.
    const sig = cryptoSign('sha256', Buffer.from(`${head}.${body}`), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${head}.${body}.${sig.toString('base64url')}`;
  };

  for (const [alg, kind, options] of [
    ['RS256', 'rsa', { modulusLength: 2048 }],
    ['ES256', 'ec', { namedCurve: 'P-256' }],
  ]) {
    it(`accepts ${alg} tokens verified with the configured public key, and refuses HS256 ones`, async () => {
      const { publicKey, privateKey } = generateKeyPairSync(kind, options);
      const pem = publicKey.export({ type: 'spki', format: 'pem' });
      // No JWT_SECRET: only the public key verifies.
      const srv = await startServer({ env: { JWT_SECRET: '', JWT_PUBLIC_KEY: pem } });
      try {
        const s = await connect(srv.url, { auth: { token: sign(alg, privateKey, uid()) } });
        assert.ok(s.connected);
        s.close();
        await assert.rejects(connect(srv.url, { auth: { token: token(uid()) } }), /not accepted|invalid/);
      } finally {
        await srv.stop();
      }
    });
  }
});
