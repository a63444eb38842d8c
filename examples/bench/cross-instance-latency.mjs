// Cross-instance delivery latency: a sender connected to instance A, a receiver connected to
// instance B, one direct conversation. Measures, per message, the time from emit to the
// sender's ack (durable write + bus publish) and from emit to the receiver's `message:new`
// on the other instance, in one process with one clock. Prints one JSON summary line.
//
// usage: node cross-instance-latency.mjs URL_A URL_B TOKEN_SENDER TOKEN_RECEIVER RECEIVER_ID
//        [--messages N] [--rate PER_SECOND] (rate 0 = closed loop: one at a time)
import { io } from 'socket.io-client';

const [urlA, urlB, senderToken, receiverToken, receiverId] = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const total = arg('--messages', 2000);
const rate = arg('--rate', 0);
if (!receiverId) {
  console.error('usage: node cross-instance-latency.mjs URL_A URL_B TOKEN_SENDER TOKEN_RECEIVER RECEIVER_ID [--messages N] [--rate R]');
  process.exit(2);
}

const connect = (url, token) => new Promise((resolve, reject) => {
  const s = io(url, { auth: { token }, transports: ['websocket'], forceNew: true });
  s.once('connect', () => resolve(s));
  s.once('connect_error', reject);
});

const res = await fetch(`${urlA}/api/conversations`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${senderToken}` },
  body: JSON.stringify({ type: 'direct', participantIds: [receiverId] }),
});
const chatId = (await res.json()).data.id;
const sender = await connect(urlA, senderToken);
const receiver = await connect(urlB, receiverToken);

// Unique per run: a reused tempId is (correctly) answered as a resend and not delivered again.
const runId = `lat-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
const sentAt = new Map();
const ackMs = [];
const deliverMs = [];
const seen = new Set();
let duplicates = 0;
let done;
const finished = new Promise((r) => { done = r; });
receiver.on('message:new', (m) => {
  const t0 = sentAt.get(m.tempId);
  if (t0 === undefined) return;
  if (seen.has(m.tempId)) { duplicates++; return; }
  seen.add(m.tempId);
  deliverMs.push(performance.now() - t0);
  if (seen.size === total) done();
});

const send = (i) => new Promise((resolve) => {
  const tempId = `${runId}-${i}`;
  sentAt.set(tempId, performance.now());
  sender.emit('message:new', { chatId, encryptedContent: 'x'.repeat(100), messageType: 'text', tempId }, (r) => {
    if (r?.success) ackMs.push(performance.now() - sentAt.get(tempId));
    resolve();
  });
});

const started = performance.now();
if (rate > 0) {
  const pending = [];
  for (let i = 0; i < total; i++) {
    const due = started + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(send(i));
  }
  await Promise.all(pending);
} else {
  for (let i = 0; i < total; i++) await send(i);
}
await Promise.race([finished, new Promise((r) => setTimeout(r, 30000))]);
const elapsed = (performance.now() - started) / 1000;

const pct = (xs, p) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2));
};
console.log(JSON.stringify({
  scenario: 'cross-instance-latency',
  mode: rate > 0 ? `open loop ${rate}/s` : 'closed loop',
  messages: total,
  acked: ackMs.length,
  delivered: seen.size,
  lost: total - seen.size,
  duplicates,
  seconds: Number(elapsed.toFixed(2)),
  ackMs: { p50: pct(ackMs, 50), p90: pct(ackMs, 90), p99: pct(ackMs, 99), max: pct(ackMs, 100) },
  deliveryMs: { p50: pct(deliverMs, 50), p90: pct(deliverMs, 90), p99: pct(deliverMs, 99), max: pct(deliverMs, 100) },
}));
sender.close();
receiver.close();
process.exit(seen.size === total && duplicates === 0 ? 0 : 1);
