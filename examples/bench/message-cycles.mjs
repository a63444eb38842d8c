// Persisted messages under a small closed-loop load, for `callgrind.sh` (CALLGRIND_SCENARIO
// `message` or `message-direct`): the benchmark's "ack-closed" scenario in miniature, so that
// the writer forms batches as it does under load (one transaction for everything queued while
// the previous one was on disk, up to 256 messages).
//
// * `--variant self` (default): C connections of C users, each sending `message:new` with an
//   ack into its own note-to-self conversation, the next one as soon as the ack came (closed
//   loop); nobody else hears of the messages.
// * `--variant direct`: the same C senders, each in a direct chat with a partner of its own
//   whose connection is open, so every message is also delivered once, as an event, to one
//   other socket (encoding, hub, and the partner's delivery mark, confirmed by its pongs).
//
// With `--pid` (the server running under callgrind), it brackets exactly M messages with
// `callgrind_control`: after the set-up and a warm-up, zero the counters, send M messages,
// wait until they are delivered and their marks flushed, dump ("messages"); zero, stay idle
// for as long, dump ("idle"). `(messages - idle) / M` is then the cost of one persisted
// message, without the start-up and without what the server does on its own per second.
//
// The measured messages' `tempId`s start with `RUN-m-` (RUN printed as `run`), so that the
// batches can be counted afterwards from the database: a batch stamps all its messages with
// one `created_at` (`store::messages::append`).
//
// usage: node message-cycles.mjs URL SECRET [--messages M] [--connections C]
//          [--variant self|direct] [--warmup W] [--pid PID]
// Prints one JSON line: { variant, connections, messages, run, messages_ms, idle_ms, ... }.
import { randomUUID } from 'node:crypto';
import { arg, client, control as controlOf, sleep } from './cycles-client.mjs';

const [url, secret] = process.argv.slice(2);
const messages = Number(arg('--messages', 2000));
const connections = Number(arg('--connections', 50));
const warmup = Number(arg('--warmup', 300));
const variant = arg('--variant', 'self');
const pid = arg('--pid', null);
if (!secret || ![messages, connections].every((n) => Number.isInteger(n) && n >= 1)
  || !Number.isInteger(warmup) || warmup < 0 || !['self', 'direct'].includes(variant)) {
  console.error('usage: node message-cycles.mjs URL SECRET [--messages M] [--connections C] '
    + '[--variant self|direct] [--warmup W] [--pid PID]');
  process.exit(2);
}

// Under callgrind the server is ~50 times slower than usual: generous deadlines.
const DEADLINE = 300000;
const { token, within, connect, rest } = client(url, secret, DEADLINE);

// A few at a time: the set-up is not measured, but a server under callgrind is slow.
const inBatches = async (items, size, fn) => {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(...await Promise.all(items.slice(i, i + size).map((x, j) => fn(x, i + j))));
  return out;
};

// The benchmark's message: 100 bytes of text (loadgen's default `--payload`).
const CONTENT = 'x'.repeat(100);
const send = async (s, chatId, tempId) => {
  const ack = await within(s.timeout(DEADLINE).emitWithAck('message:new',
    { chatId, encryptedContent: CONTENT, messageType: 'text', tempId }), 'message ack');
  if (!ack || ack.success !== true) throw new Error(`message:new refused: ${JSON.stringify(ack)}`);
};

const run = randomUUID().slice(0, 8);
const senders = Array.from({ length: connections }, (_, i) => `cg-s${i}-${run}`);
const partners = variant === 'direct' ? Array.from({ length: connections }, (_, i) => `cg-p${i}-${run}`) : [];

// Set-up: one conversation per sender, its partner connected first (direct), then the senders.
let delivered = 0;
const partnerSocks = await inBatches(partners, 10, (p) => connect(token(p, { deviceId: 'phone' }),
  (s) => s.on('message:new', () => { delivered += 1; })));
const chats = await inBatches(senders, 10, (u, i) => rest(token(u, { deviceId: 'phone' }), '/api/conversations',
  variant === 'direct'
    ? { type: 'direct', participantIds: [partners[i]] }
    : { type: 'self', participantIds: [] }).then((c) => c.id));
const senderSocks = await inBatches(senders, 10, (u) => connect(token(u, { deviceId: 'phone' })));

const control = (flag) => controlOf(pid, flag);

// Exactly `count` messages over all senders, each sender in a closed loop (send, wait for the
// ack, send again), as loadgen's ack-closed does.
const closedLoop = async (count, phase) => {
  let left = count;
  let n = 0;
  await Promise.all(senderSocks.map(async (s, i) => {
    while (left > 0) {
      left -= 1;
      await send(s, chats[i], `${run}-${phase}-${n++}`);
    }
  }));
};
// Every message sent so far reached the partners' sockets (direct), then two ping intervals
// (1 s each: the partners' pongs confirm what they were handed) and the delivery-mark flusher.
const settle = async (expected) => {
  const until = Date.now() + DEADLINE;
  while (delivered < expected && Date.now() < until) await sleep(50);
  if (delivered < expected) throw new Error(`delivered ${delivered} of ${expected}`);
  await sleep(3000);
};
const expected = (n) => (variant === 'direct' ? n : 0);

// Warm-up: the first messages fill what the server keeps (statement caches, hub entries, the
// catch-up memory) and let the first batches form.
await closedLoop(warmup, 'w');
await settle(expected(warmup));

control('--zero');
const t0 = Date.now();
await closedLoop(messages, 'm');
const sendMs = Date.now() - t0;
await settle(expected(warmup + messages));
const messagesMs = Date.now() - t0;
control('--dump=messages');
control('--zero');
const t1 = Date.now();
await sleep(messagesMs);
const idleMs = Date.now() - t1;
control('--dump=idle');
for (const s of [...senderSocks, ...partnerSocks]) s.disconnect();
console.log(JSON.stringify({
  variant, connections, messages, warmup, run, send_ms: sendMs, messages_ms: messagesMs, idle_ms: idleMs,
  acks_per_s: Math.round(messages / (sendMs / 1000) * 10) / 10,
  ...(variant === 'direct' ? { delivered: delivered - warmup } : {}),
}));
process.exit(0);
