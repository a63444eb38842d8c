// Per-user rate limits with the seed's defaults (message:new 30 per 60 s).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, uid, ask, call, createChat, closeAll } from './helpers.js';

describe('rate limits', () => {
  let srv;
  // Defaults from the SUP table, not the generous test ones.
  before(async () => {
    srv = await startServer({ env: {
      // An hour's window: a token refilled while a loaded machine sends the first 30 (one
      // every 2 s at 30/60s) would let the 31st through.
      RATE_LIMIT_MESSAGE_NEW: '30/3600s', RATE_LIMIT_TYPING: '10/10s', RATE_LIMIT_PRESENCE_UPDATE: '20/60s',
    } });
  });
  after(async () => { await srv.stop(); });

  it('refuses the 31st message within the window with RATE_LIMITED and keeps the connection usable', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a1 = await connect(srv.url, { auth: { token: token(alice) } });
    const a2 = await connect(srv.url, { auth: { token: token(alice) } });
    const results = [];
    for (let i = 0; i < 30; i++) {
      // The bucket is per user: both devices draw on it.
      results.push(await ask(i % 2 ? a1 : a2, 'message:new', { chatId: chat, encryptedContent: `m${i}`, messageType: 'text' }));
    }
    assert.ok(results.every((r) => r.success), 'first 30 accepted');
    const refused = await ask(a1, 'message:new', { chatId: chat, encryptedContent: 'one too many', messageType: 'text' });
    assert.equal(refused.success, false);
    assert.equal(refused.error.code, 'RATE_LIMITED');
    assert.match(refused.error.message, /retry in \d+ ms/);
    // Other events and other users are unaffected.
    assert.ok(a1.connected);
    await call(a1, 'chat:join', { chatId: chat });
    const b = await connect(srv.url, { auth: { token: token(bob) } });
    await call(b, 'message:new', { chatId: chat, encryptedContent: 'bob is fine', messageType: 'text' });
    closeAll(a1, a2, b);
  });

  it('limits typing to 10 per 10 seconds', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = await connect(srv.url, { auth: { token: token(alice) } });
    const codes = [];
    for (let i = 0; i < 11; i++) {
      const r = await ask(a, 'message:typing', { chatId: chat });
      codes.push(r.success ? 'ok' : r.error.code);
    }
    assert.deepEqual(codes, [...Array(10).fill('ok'), 'RATE_LIMITED']);
    a.close();
  });
});

describe('call and reaction limits', () => {
  let srv;
  before(async () => {
    srv = await startServer({ env: { RATE_LIMIT_CALL_INITIATE: '2/60s', RATE_LIMIT_REACTIONS: '3/60s' } });
  });
  after(async () => { await srv.stop(); });

  it('limits call:initiate per user', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = await connect(srv.url, { auth: { token: token(alice) } });
    const codes = [];
    for (let i = 0; i < 3; i++) {
      const r = await ask(a, 'call:initiate', { chatId: chat, callType: 'audio' });
      codes.push(r.success ? 'ok' : r.error.code);
      if (r.success) await call(a, 'call:end', { callId: r.data.callId });
    }
    assert.deepEqual(codes, ['ok', 'ok', 'RATE_LIMITED']);
    a.close();
  });

  it('shares one reaction bucket between reaction:new and reaction:remove', async () => {
    const [alice, bob] = [uid('alice'), uid('bob')];
    const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
    const a = await connect(srv.url, { auth: { token: token(alice) } });
    const m = await call(a, 'message:new', { chatId: chat, encryptedContent: 'x', messageType: 'text' });
    const codes = [];
    for (const event of ['reaction:new', 'reaction:remove', 'reaction:new', 'reaction:remove']) {
      const r = await ask(a, event, { messageId: m.id, emoji: '👍' });
      codes.push(r.success ? 'ok' : r.error.code);
    }
    assert.deepEqual(codes, ['ok', 'ok', 'ok', 'RATE_LIMITED']);
    a.close();
  });
});
