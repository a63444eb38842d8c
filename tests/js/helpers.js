// Test harness: starts the real Switchboard binary on an ephemeral port (fresh SQLite file,
// or a fresh PostgreSQL database when TEST_DATABASE_URL is set), mints tokens, and wraps the
// real npm socket.io-client with promise helpers that always time out instead of hanging.
import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { io } from 'socket.io-client';

const here = dirname(fileURLToPath(import.meta.url));
export const BIN = process.env.SWITCHBOARD_BIN || join(here, '..', '..', 'target', 'debug', 'switchboard');
export const SECRET = 'test-secret-' + randomUUID();

/** Backends every behaviour test runs on. */
export function backends() {
  return process.env.TEST_DATABASE_URL ? ['sqlite', 'postgres'] : ['sqlite'];
}

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/**
 * An HS256 JWT, as any identity provider would issue it. `shape` picks the claim layout:
 * `standard` (default, `sub`), `sup` (SUP Messenger's real tokens: `userId`, `deviceId`,
 * `type: 'access'`, no `sub`) or `mrezhen` (`userId`, `name`, issuer `mrezhen`, no `sub`);
 * `deviceId` adds that claim to any shape.
 */
export function token(sub, { secret = SECRET, ttl = 3600, exp, iss, username, name, avatar, shape = 'standard', deviceId } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, exp: exp ?? now + ttl, iat: now };
  if (shape === 'sup') {
    delete claims.sub;
    Object.assign(claims, { userId: sub, type: 'access' });
  } else if (shape === 'mrezhen') {
    delete claims.sub;
    Object.assign(claims, { userId: sub, name: name ?? sub, iss: iss ?? 'mrezhen' });
  } else if (shape !== 'standard') {
    throw new Error(`unknown token shape ${shape}`);
  }
  if (deviceId) claims.deviceId = deviceId;
  if (iss) claims.iss = iss;
  if (username) claims.username = username;
  if (name) claims.name = name;
  if (avatar) claims.avatar = avatar;
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url(claims);
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

export const uid = (prefix = 'u') => `${prefix}-${randomUUID().slice(0, 8)}`;

function freshDatabase(backend, dir) {
  if (backend === 'sqlite') return `sqlite://${join(dir, 'test.db')}?mode=rwc`;
  const base = process.env.TEST_DATABASE_URL;
  const name = 'sb_js_' + randomUUID().replace(/-/g, '').slice(0, 16);
  execFileSync('psql', [base, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
  const url = new URL(base);
  url.pathname = '/' + name;
  return { url: url.toString(), drop: () => {
    try { execFileSync('psql', [base, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'pipe' }); } catch { /* best effort */ }
  } };
}

/**
 * Starts a server. `env` overrides settings; by default rate limits are generous so tests
 * that send many messages from one user measure behaviour, not the limiter.
 */
export async function startServer({ backend = 'sqlite', env = {}, databaseUrl } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-test-'));
  let db = databaseUrl;
  let drop = () => {};
  if (!db) {
    const fresh = freshDatabase(backend, dir);
    if (typeof fresh === 'string') db = fresh; else { db = fresh.url; drop = fresh.drop; }
  }
  const server = await launch({
    PORT: '0',
    HOST: '127.0.0.1',
    DATABASE_URL: db,
    JWT_SECRET: SECRET,
    LOG_FORMAT: 'json',
    LOG_LEVEL: 'warn,switchboard=info',
    RATE_LIMIT_MESSAGE_NEW: '100000/60s',
    RATE_LIMIT_TYPING: '100000/10s',
    RATE_LIMIT_DELIVERED: '100000/60s',
    RATE_LIMIT_READ: '100000/60s',
    RATE_LIMIT_PRESENCE_UPDATE: '100000/60s',
    RATE_LIMIT_CALL_INITIATE: '100000/60s',
    RATE_LIMIT_REACTIONS: '100000/60s',
    // Every test client connects from 127.0.0.1.
    RATE_LIMIT_MAX_CONNECTIONS: '100000',
    // Uploads go to the test's own directory, removed with it.
    MEDIA_DIR: join(dir, 'media'),
    ...env,
  });
  server.databaseUrl = db;
  const stop = server.stop;
  server.stop = async (signal) => {
    const code = await stop(signal);
    drop();
    rmSync(dir, { recursive: true, force: true });
    return code;
  };
  return server;
}

/** Spawns the binary and resolves once it logs its port. */
export function launch(env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(BIN, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const logs = [];
    let settled = false;
    const exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
    const fail = (why) => {
      if (settled) return;
      settled = true;
      proc.kill('SIGKILL');
      reject(new Error(`${why}\n--- server output ---\n${logs.join('\n')}`));
    };
    const timer = setTimeout(() => fail('server did not start within 30 s'), 30000);
    proc.once('exit', (code) => fail(`server exited early with ${code}`));
    for (const stream of [proc.stdout, proc.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        logs.push(line);
        if (logs.length > 2000) logs.shift();
        if (settled) return;
        try {
          const ev = JSON.parse(line);
          if (ev.message === 'switchboard listening' && ev.port) {
            settled = true;
            clearTimeout(timer);
            const url = `http://127.0.0.1:${ev.port}`;
            resolve({
              url,
              port: ev.port,
              proc,
              logs,
              exited,
              /** Stops the server (SIGTERM by default) and resolves with its exit code. */
              async stop(signal = 'SIGTERM') {
                if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
                proc.kill(signal);
                const { code } = await exited;
                return code;
              },
            });
          }
        } catch { /* not JSON: plain output */ }
      });
    }
  });
}

/**
 * Runs `sql` on a running server's database and returns its rows as text: `sqlite3` on the file
 * (waiting out the server's write lock, held for a moment by a flush), `psql` on PostgreSQL.
 */
export function dbText(srv, sql) {
  if (srv.databaseUrl.startsWith('sqlite:')) {
    const file = srv.databaseUrl.replace(/^sqlite:\/\//, '').replace(/\?.*$/, '');
    return execFileSync('sqlite3', ['-cmd', '.timeout 10000', file, sql], { encoding: 'utf8' });
  }
  return execFileSync('psql', [srv.databaseUrl, '-At', '-c', sql], { encoding: 'utf8' });
}

/** Connects a socket.io-client and resolves once `connect` fired (or rejects on error). */
export function connect(url, opts = {}) {
  const { namespace = '/', timeout = 10000, listen, ...options } = opts;
  const socket = io(url + (namespace === '/' ? '' : namespace), { forceNew: true, reconnection: false, ...options });
  // Listeners that must see events sent right after CONNECT (greeting, backlog).
  if (listen) listen(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { socket.close(); reject(new Error('connect timed out')); }, timeout);
    socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
    socket.once('connect_error', (err) => { clearTimeout(timer); socket.close(); reject(err); });
  });
}

/** Emits with an ack and resolves with the ack's payload (`{success, data|error}`). */
export function ask(socket, event, payload, timeout = 10000) {
  return socket.timeout(timeout).emitWithAck(event, payload);
}

/** Emits, expects `success: true`, returns `data`. */
export async function call(socket, event, payload, timeout = 10000) {
  const res = await ask(socket, event, payload, timeout);
  if (!res || res.success !== true) throw new Error(`${event} failed: ${JSON.stringify(res)}`);
  return res.data;
}

/** Resolves with the first `event` payload matching `pred`, or rejects after `timeout`. */
export function waitFor(socket, event, pred = () => true, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const handler = (data) => {
      if (!pred(data)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(data);
    };
    const timer = setTimeout(() => { socket.off(event, handler); reject(new Error(`timed out waiting for ${event}`)); }, timeout);
    socket.on(event, handler);
  });
}

/**
 * One round trip per socket. The server publishes an operation's live events before it sends
 * that operation's ack, and one socket's packets arrive in order, so after awaiting an ack,
 * `settle(x)` guarantees that whatever that operation pushed to `x` has arrived. Used before
 * asserting that something did *not* arrive.
 */
export async function settle(...sockets) {
  for (const s of sockets.flat()) await call(s, 'notification:get-pending', { limit: 1 });
}

/** Records every payload of `event` on a socket. */
export function collect(socket, event) {
  const seen = [];
  socket.on(event, (d) => seen.push(d));
  return seen;
}

/** Polls `fn` until it returns truthy, or throws after `timeout`. For counting, not timing. */
export async function eventually(fn, timeout = 10000, what = 'condition') {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** REST call; resolves with `{ status, body }`. */
export async function api(url, tok, method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (tok) headers.authorization = `Bearer ${tok}`;
  const res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed;
  try { parsed = JSON.parse(text); } catch { parsed = text; }
  return { status: res.status, body: parsed, headers: res.headers };
}

/**
 * Uploads a file as multipart/form-data (field `file`, plus `type` when given); resolves
 * with `{ status, body }`.
 */
export async function upload(url, tok, bytes, { contentType = 'application/octet-stream', name = 'file.bin', kind } = {}) {
  const form = new FormData();
  form.append('file', new Blob([bytes], { type: contentType }), name);
  if (kind) form.append('type', kind);
  const res = await fetch(url + '/api/attachments', { method: 'POST', headers: { authorization: `Bearer ${tok}` }, body: form });
  const text = await res.text();
  let body;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: res.status, body };
}

/** Creates a conversation through REST as `ownerToken` and returns its id. */
export async function createChat(url, ownerToken, type, participantIds, extra = {}) {
  const res = await api(url, ownerToken, 'POST', '/api/conversations', { type, participantIds, ...extra });
  if (!res.body.success) throw new Error('create chat failed: ' + JSON.stringify(res.body));
  return res.body.data.id;
}

export function closeAll(...sockets) {
  for (const s of sockets.flat()) s?.close();
}

/** Chromium for the page tests: its path, and why the tests are skipped when it is missing. */
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const chromiumMissing = existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}`;

/** Launches headless Chromium as the page tests need it. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    // As root, without a GPU, and without Chromium's own calls home (the network is closed).
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** Sends one message until it is acknowledged, resending it with the same tempId after a timeout or a reconnect. */
export async function sendUntilAcked(socket, chat, tempId, acked) {
  const payload = { chatId: chat, encryptedContent: tempId, messageType: 'text', tempId };
  for (let attempt = 0; attempt < 100; attempt++) {
    if (!socket.connected) await new Promise((r) => socket.once('connect', r));
    try {
      const r = await socket.timeout(3000).emitWithAck('message:new', payload);
      if (r.success) { acked.push(r.data); return; }
    } catch { /* timed out or disconnected: resend */ }
  }
  throw new Error(`could not send ${tempId}`);
}
