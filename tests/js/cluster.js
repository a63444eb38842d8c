// Multi-instance harness: N Switchboard instances on one fresh PostgreSQL database and one
// Redis (own key prefix), behind nginx configured from examples/nginx/nginx.conf.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { io } from 'socket.io-client';
import { startServer, token } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));
const NGINX_CONF = join(here, '..', '..', 'examples', 'nginx', 'nginx.conf');

function which(cmd) {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'pipe' }); return true; } catch { return false; }
}

/** Why the cluster tests cannot run here, or null when they can. */
export function clusterUnavailable() {
  if (!process.env.TEST_DATABASE_URL) return 'TEST_DATABASE_URL is not set';
  if (!process.env.TEST_REDIS_URL) return 'TEST_REDIS_URL is not set';
  if (!which('nginx')) return 'nginx is not installed';
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
    srv.on('error', reject);
  });
}

async function startNginx(ports) {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-nginx-'));
  const listen = await freePort();
  let conf = readFileSync(NGINX_CONF, 'utf8');
  conf = conf.replace('server 127.0.0.1:3001', `server 127.0.0.1:${ports[0]}`)
    .replace('server 127.0.0.1:3002', `server 127.0.0.1:${ports[1]}`)
    .replace('listen 8080;', `listen 127.0.0.1:${listen};`);
  // The example is written for 2 instances; more are added next to the second one.
  for (const extra of ports.slice(2)) {
    conf = conf.replace(`server 127.0.0.1:${ports[1]} max_fails=0;`, `server 127.0.0.1:${ports[1]} max_fails=0;\n        server 127.0.0.1:${extra} max_fails=0;`);
  }
  const file = join(dir, 'nginx.conf');
  writeFileSync(file, conf);
  const proc = spawn('nginx', ['-p', dir, '-c', file, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const logs = [];
  proc.stderr.on('data', (d) => logs.push(String(d)));
  const url = `http://127.0.0.1:${listen}`;
  for (let i = 0; i < 100; i++) {
    try { await fetch(url + '/health'); return { url, proc, logs, dir }; } catch { await new Promise((r) => setTimeout(r, 50)); }
  }
  proc.kill('SIGKILL');
  throw new Error('nginx did not start: ' + logs.join(''));
}

/** GET a path through nginx from a given loopback source address. */
function getFrom(url, path, localAddress) {
  return new Promise((resolve, reject) => {
    const req = http.get(url + path, { localAddress, agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    });
    req.on('error', reject);
  });
}

export async function startCluster({ instances = 2, env = {} } = {}) {
  const base = process.env.TEST_DATABASE_URL;
  const name = 'sb_cluster_' + randomUUID().replace(/-/g, '').slice(0, 16);
  execFileSync('psql', [base, '-q', '-c', `CREATE DATABASE ${name}`], { stdio: 'pipe' });
  const dbUrl = new URL(base);
  dbUrl.pathname = '/' + name;
  const shared = {
    REDIS_URL: process.env.TEST_REDIS_URL,
    REDIS_PREFIX: `sbtest-${randomUUID().slice(0, 8)}:`,
    // As in a deployment: nginx (on 127.0.0.1) forwards the client address.
    TRUSTED_PROXIES: '127.0.0.1',
    ...env,
  };
  const servers = [];
  // The first instance applies the migrations alone; the others find them applied.
  for (let i = 0; i < instances; i++) {
    servers.push(await startServer({ databaseUrl: dbUrl.toString(), env: { ...shared, INSTANCE_ID: `i${i}` } }));
  }
  const nginx = await startNginx(servers.map((s) => s.port));

  // Which loopback source addresses nginx sends to which instance.
  const byInstance = new Map();
  for (let n = 2; n < 120; n++) {
    const ip = `127.0.0.${n}`;
    const health = await getFrom(nginx.url, '/health', ip);
    if (!byInstance.has(health.instance)) byInstance.set(health.instance, []);
    byInstance.get(health.instance).push(ip);
  }
  const used = new Map();
  return {
    url: nginx.url,
    servers,
    nginx,
    /** A fresh source address that nginx maps to instance `i`. */
    addressFor(i) {
      const list = byInstance.get(`i${i}`) || [];
      const k = used.get(i) || 0;
      if (k >= list.length) throw new Error(`no more source addresses for instance ${i}`);
      used.set(i, k + 1);
      return list[k];
    },
    async stop() {
      for (const s of servers) await s.stop('SIGKILL').catch(() => {});
      nginx.proc.kill('SIGQUIT');
      await new Promise((r) => { if (nginx.proc.exitCode !== null) r(); else nginx.proc.once('exit', r); });
      rmSync(nginx.dir, { recursive: true, force: true });
      try { execFileSync('psql', [base, '-q', '-c', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`], { stdio: 'pipe' }); } catch { /* best effort */ }
    },
  };
}

/**
 * A socket.io-client with default transports (polling, then upgrade) whose traffic leaves from
 * `localAddress`, so that nginx's address hash puts it on a chosen instance. It reconnects
 * quickly, as a mobile client would after losing its server.
 */
export function clientFrom(url, user, localAddress, opts = {}) {
  const agent = new http.Agent({ localAddress, keepAlive: true });
  return io(url, {
    auth: { token: token(user) },
    forceNew: true,
    agent,
    localAddress,
    reconnectionDelay: 100,
    reconnectionDelayMax: 400,
    ...opts,
  });
}
