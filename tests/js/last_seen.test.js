// Last-seen times are written in batches (core::last_seen): a disconnect notes the time, a
// flusher writes what was noted every second, and a graceful stop writes what is still noted.
// A user's last seen must be answered at once after they went offline, and be kept by a
// graceful stop that follows straight after.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { backends, startServer, token, uid, connect, call, waitFor, createChat } from './helpers.js';

// A database that outlives one server: the restart must find what the first one wrote.
function database(backend) {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-last-seen-'));
    return { url: `sqlite://${join(dir, 'seen.db')}?mode=rwc`, drop: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const base = process.env.TEST_DATABASE_URL;
  const name = 'sb_seen_' + randomUUID().replace(/-/g, '').slice(0, 16);
  execFileSync('psql', [base, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
  const url = new URL(base);
  url.pathname = '/' + name;
  return {
    url: url.toString(),
    drop: () => execFileSync('psql', [base, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'pipe' }),
  };
}

for (const backend of backends()) {
  describe(`last seen (${backend})`, () => {
    it('is answered at once after a disconnect and is kept by a graceful stop right after it', async () => {
      const db = database(backend);
      const servers = [];
      try {
        const first = await startServer({ databaseUrl: db.url });
        servers.push(first);
        const [alice, bob] = [uid('alice'), uid('bob')];
        await createChat(first.url, token(alice), 'direct', [bob]);
        const a = await connect(first.url, { auth: { token: token(alice) } });
        const b = await connect(first.url, { auth: { token: token(bob) } });
        const offline = waitFor(a, 'presence:update', (p) => p.userId === bob && p.status === 'offline');
        b.close();
        const announced = (await offline).lastSeen;
        assert.ok(!Number.isNaN(Date.parse(announced)), `announced last seen ${announced}`);

        const now = await call(a, 'presence:subscribe', { userIds: [bob] });
        assert.equal(now.presence[0].status, 'offline');
        assert.equal(Date.parse(now.presence[0].lastSeen), Date.parse(announced));
        a.close();
        assert.equal(await first.stop('SIGTERM'), 0);

        const second = await startServer({ databaseUrl: db.url });
        servers.push(second);
        const again = await connect(second.url, { auth: { token: token(alice) } });
        const kept = await call(again, 'presence:subscribe', { userIds: [bob] });
        assert.equal(kept.presence[0].status, 'offline');
        assert.equal(Date.parse(kept.presence[0].lastSeen), Date.parse(announced));
        again.close();
      } finally {
        for (const s of servers) await s.stop('SIGTERM');
        db.drop();
      }
    });
  });
}
