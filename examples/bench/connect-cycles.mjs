// Reconnect cycles of one authenticated user, for `callgrind.sh`: the user has a few
// conversations (a note-to-self, a direct chat, a group) with messages in each, and connects,
// is greeted, and disconnects, N times in a row, owing nothing (the common reconnect).
//
// With `--pid` (the server running under callgrind), it brackets the cycles with
// `callgrind_control`: zero the counters, run the cycles, dump ("cycles"); zero, stay idle for
// as long as the cycles took, dump ("idle"). `(cycles - idle) / N` is then the cost of one
// reconnect, without the start-up and without what the server does on its own per second
// (timers, the delivery-mark flusher).
//
// usage: node connect-cycles.mjs URL SECRET [--cycles N] [--pid PID] [--out FILE_BASE]
// Prints one JSON line: { cycles, cycles_ms, idle_ms }.
import { createHmac, randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { io } from 'socket.io-client';

const [url, secret] = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const cycles = Number(arg('--cycles', 100));
const pid = arg('--pid', null);
if (!secret || !Number.isInteger(cycles) || cycles < 1) {
  console.error('usage: node connect-cycles.mjs URL SECRET [--cycles N] [--pid PID]');
  process.exit(2);
}

const b64url = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
// The claims a real provider puts in: a display name and a device, the same at every reconnect.
const token = (sub, extra = {}) => {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({ sub, iat: now, exp: now + 86400, name: `Name of ${sub}`, ...extra });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
};

// Under callgrind the server is ~50 times slower than usual: generous deadlines.
const DEADLINE = 120000;
const within = (promise, what) => {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), DEADLINE); });
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

const send = (s, chatId, tempId) => within(s.timeout(DEADLINE).emitWithAck('message:new',
  { chatId, encryptedContent: `text ${tempId}`, messageType: 'text', tempId }), 'message ack');

const run = randomUUID().slice(0, 8);
const [me, peer, third] = ['me', 'peer', 'third'].map((p) => `cg-${p}-${run}`);
const [meTok, peerTok, thirdTok] = [token(me, { deviceId: 'phone' }), token(peer), token(third)];

// Set-up: three conversations, two with messages from both sides; the user's device is
// connected while they are sent, so it owes nothing once its client confirmed them.
const peerSock = await connect(peerTok);
const thirdSock = await connect(thirdTok);
const chats = [
  (await rest(meTok, '/api/conversations', { type: 'self', participantIds: [] })).id,
  (await rest(meTok, '/api/conversations', { type: 'direct', participantIds: [peer] })).id,
  (await rest(meTok, '/api/conversations', { type: 'group', name: 'cg', participantIds: [peer, third] })).id,
];
let meSock = await connect(meTok);
// The note-to-self stays empty: a device's own message as the last of a conversation is only
// recorded as delivered once something else is (see `hub::deliver_message`).
for (const chat of chats.slice(1)) {
  await send(meSock, chat, `${run}-me-${chat}`);
  await send(peerSock, chat, `${run}-peer-${chat}`);
}
// Deliveries are confirmed by the client's pongs (the server runs with a 1 s ping interval):
// two pings after the last message, everything before it is confirmed, and the next flush of
// the delivery marks records it.
await within(new Promise((resolve) => {
  let pings = 0;
  meSock.io.engine.on('ping', () => { if (++pings === 2) resolve(); });
}), 'two pings');
await within(meSock.timeout(DEADLINE).emitWithAck('notification:get-pending', { limit: 1 }), 'settle');
meSock.disconnect();
peerSock.disconnect();
thirdSock.disconnect();

// callgrind_control finds the server's vgdb pipes by user and host name, which valgrind takes
// from the environment: HOST must be what the server was started with (callgrind.sh sets both).
const control = (flag) => {
  if (!pid) return;
  const r = spawnSync('callgrind_control', [flag, pid], { encoding: 'utf8' });
  if (r.status !== 0 || !/OK\./.test(r.stdout) || /error/i.test(r.stderr)) {
    throw new Error(`callgrind_control ${flag}: ${r.stdout}${r.stderr}`);
  }
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Warm-up: the first reconnects fill whatever the server keeps between connects.
const cycle = async () => {
  let greeted = false;
  const s = await connect(meTok, (sock) => sock.on('connected', () => { greeted = true; }));
  // The greeting is the first event after CONNECT; waiting for it keeps one reconnect at a time.
  if (!greeted) await within(new Promise((r) => s.once('connected', r)), 'greeting');
  // Nothing else: no event of the client's own (each would cost its handler), so the catch-up
  // the connect started may still run while the next cycle connects; the totals are the same.
  s.disconnect();
};
for (let i = 0; i < 5; i++) await cycle();
await sleep(2000); // the flusher confirms the warm-up's marks

control('--zero');
const t0 = Date.now();
for (let i = 0; i < cycles; i++) await cycle();
await sleep(3000); // disconnects finish (last_seen, presence) before the dump
const cyclesMs = Date.now() - t0;
control('--dump=cycles');
control('--zero');
const t1 = Date.now();
await sleep(cyclesMs);
const idleMs = Date.now() - t1;
control('--dump=idle');
console.log(JSON.stringify({ cycles, cycles_ms: cyclesMs, idle_ms: idleMs, }));
process.exit(0);
