// Connection management (SPEC §6, §8): connection attempts per IP, the idle timeout, and the
// counts /health and /metrics report about them.
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, uid, ask, call, waitFor } from './helpers.js';

describe('connections', () => {
  const servers = [];
  after(async () => { await Promise.all(servers.map((s) => s.stop())); });
  const start = async (env) => { const s = await startServer({ env }); servers.push(s); return s; };

  it('refuses connection attempts beyond the per-IP limit with a connect_error saying when to retry', async () => {
    const srv = await start({ RATE_LIMIT_MAX_CONNECTIONS: '3', RATE_LIMIT_CONNECTION_WINDOW: '60000' });
    const ok = [];
    ok.push(await connect(srv.url, { auth: { token: token(uid()) } }));
    // A refused token counts as an attempt too.
    await assert.rejects(connect(srv.url, { auth: { token: 'bad' } }), /malformed|invalid/);
    ok.push(await connect(srv.url, { auth: { token: token(uid()) } }));
    const err = await connect(srv.url, { auth: { token: token(uid()) } }).then(() => null, (e) => e);
    assert.ok(err, 'the fourth attempt is refused');
    assert.match(err.message, /^too many connection attempts, retry in \d+ ms$/);
    assert.ok(ok.every((s) => s.connected), 'open connections are unaffected');
    const health = await (await fetch(srv.url + '/health')).json();
    assert.equal(health.connections.refused.rate_limited, 1);
    assert.equal(health.connections.refused.unauthorized, 1);
    const metrics = await (await fetch(srv.url + '/metrics')).text();
    assert.match(metrics, /switchboard_connections_refused_total\{reason="rate_limited"\} 1/);
    for (const s of ok) s.close();
  });

  it('keys the limit by the forwarded client address behind a trusted proxy', async () => {
    const srv = await start({ RATE_LIMIT_MAX_CONNECTIONS: '1', TRUSTED_PROXIES: '127.0.0.1' });
    const from = (ip) => connect(srv.url, { auth: { token: token(uid()) }, extraHeaders: { 'X-Forwarded-For': ip } });
    const a = await from('198.51.100.1');
    const b = await from('198.51.100.2');
    await assert.rejects(from('198.51.100.1'), /too many connection attempts/);
    a.close();
    b.close();
  });

  it('disconnects a socket that sent nothing for MAX_IDLE_TIME, with a DISCONNECT the client does not retry', async () => {
    const srv = await start({ MAX_IDLE_TIME: '400' });
    const s = await connect(srv.url, { auth: { token: token(uid()) } });
    const reason = await waitFor(s, 'disconnect', () => true, 10000);
    assert.equal(reason, 'io server disconnect');
    const health = await (await fetch(srv.url + '/health')).json();
    assert.ok(health.connections.idleDisconnects >= 1);
    const metrics = await (await fetch(srv.url + '/metrics')).text();
    assert.match(metrics, /switchboard_idle_disconnects_total [1-9]/);
  });

  it('counts events and errors by code in /health', async () => {
    const srv = await start({});
    const s = await connect(srv.url, { auth: { token: token(uid()) } });
    await call(s, 'presence:update', { status: 'away' });
    await ask(s, 'message:new', { chatId: 'nope', encryptedContent: 'x', messageType: 'text' });
    await ask(s, 'no:such-event', {});
    const health = await (await fetch(srv.url + '/health')).json();
    assert.ok(health.events.total >= 3);
    assert.equal(health.events.byEvent['presence:update'], 1);
    assert.equal(health.errors.byCode.NOT_FOUND, 1);
    assert.equal(health.errors.byCode.UNKNOWN_TYPE, 1);
    assert.equal(health.errors.total, 2);
    s.close();
  });
});
