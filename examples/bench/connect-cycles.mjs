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
import { randomUUID } from 'node:crypto';
import { arg, client, control as controlOf, sleep } from './cycles-client.mjs';

const [url, secret] = process.argv.slice(2);
const cycles = Number(arg('--cycles', 100));
const pid = arg('--pid', null);
if (!secret || !Number.isInteger(cycles) || cycles < 1) {
  console.error('usage: node connect-cycles.mjs URL SECRET [--cycles N] [--pid PID]');
  process.exit(2);
}

// Under callgrind the server is ~50 times slower than usual: generous deadlines.
const DEADLINE = 120000;
const { token, within, connect, rest } = client(url, secret, DEADLINE);

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

const control = (flag) => controlOf(pid, flag);

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
