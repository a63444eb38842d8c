// What the callgrind drivers (connect-cycles.mjs, message-cycles.mjs) share: their arguments,
// the tokens they sign, deadlines, Socket.IO connects, REST calls and callgrind_control.
import { createHmac } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { io } from 'socket.io-client';

/** The value after `--name` on the command line, or `dflt`. */
export const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A client of the server at `url`: tokens signed with `secret` (HS256, a display name, the
 * same claims at every connect, as a real provider issues them) and every wait bounded by
 * `deadline` ms (under callgrind the server is ~50 times slower than usual).
 */
export function client(url, secret, deadline) {
  const b64url = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const token = (sub, extra = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const head = b64url({ alg: 'HS256', typ: 'JWT' });
    const body = b64url({ sub, iat: now, exp: now + 86400, name: `Name of ${sub}`, ...extra });
    const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
    return `${head}.${body}.${sig}`;
  };
  const within = (promise, what) => {
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), deadline); });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
  };
  const connect = (tok, listen) => within(new Promise((resolve, reject) => {
    const s = io(url, { auth: { token: tok }, transports: ['websocket'], forceNew: true, reconnection: false });
    if (listen) listen(s);
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  }), 'connect');
  const rest = async (tok, path, body) => {
    const res = await fetch(url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${tok}` },
      body: JSON.stringify(body),
    });
    const json = await res.json();
    if (!res.ok || !json.data) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
    return json.data;
  };
  return { token, within, connect, rest };
}

/**
 * `callgrind_control FLAG PID`, or nothing without a pid. It finds the server's vgdb pipes by
 * user and host name, which valgrind takes from the environment: HOST must be what the server
 * was started with (callgrind.sh sets both).
 */
export const control = (pid, flag) => {
  if (!pid) return;
  const r = spawnSync('callgrind_control', [flag, pid], { encoding: 'utf8' });
  if (r.status !== 0 || !/OK\./.test(r.stdout) || /error/i.test(r.stderr)) {
    throw new Error(`callgrind_control ${flag}: ${r.stdout}${r.stderr}`);
  }
};
