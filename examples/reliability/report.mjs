// Writes RELIABILITY.md from the reliability run's results (target/reliability/results.json
// and run.json beside it): what was run, on what machine, the figures against issue 17's
// targets, a reading of them that follows the figures, and analysis.md (how the accounting
// works). Usage: node report.mjs <results.json> <RELIABILITY.md>
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [resultsFile, reportFile] = process.argv.slice(2);
const r = JSON.parse(readFileSync(resultsFile, 'utf8'));
const runFile = join(dirname(resultsFile), 'run.json');
const run = existsSync(runFile) ? JSON.parse(readFileSync(runFile, 'utf8')) : {};
const here = dirname(fileURLToPath(import.meta.url));

const n = (x) => (x === null || x === undefined ? '—' : Number(x).toLocaleString('en-US'));
const pc = (a, b) => (b ? `${((100 * a) / b).toFixed(a === b ? 0 : 3)} %` : '—');
const ms = (x) => (x === null || x === undefined ? '—' : x >= 10000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
const mib = (b) => (b ? `${(b / 1048576).toFixed(1)} MiB` : '—');
const yes = (ok) => (ok ? '**met**' : '**not met**');

const s = r.settings;
const m = r.messages;
const d = r.deliveries;
const dup = d.duplicatesByCause;
const sigkillDups = dup.sigkill || 0;
const otherDups = d.extraCopies - sigkillDups;
const faultNames = { sigkill: 'SIGKILL of instance i1, restarted 2 s later', graceful: 'graceful restart of i1 (SIGTERM, wait for exit, start)', redis: 'Redis restart (down ~2 s)', postgres: 'PostgreSQL restart (`pg_ctl stop -m fast`, down ~2 s, start)' };
const dialectWhy = {
  sup: 'Socket.IO `/sup`, `message:new` with `tempId`; real socket.io-client 4.8.1, default transports (polling, then upgrade) and default reconnection (1–5 s); ' + (s.supReceipts ? 'sends `message:delivered` for the newest message of a chat, at most once a second per chat' : 'sends no receipts'),
  spark: 'Socket.IO `/spark`, `send_message` with `tempId`; same client and reconnection; sends no receipts (Spark clients have only `mark_read`)',
  mrezhen: 'raw WebSocket `/ws` (npm `ws`), `direct_message` with `tempId`; in direct conversations only (the dialect shows no group messages), each with a SUP user where there is one; reconnected by the app 1–5 s after a close (Mrezhen\'s page does not reconnect by itself)',
  socialink: 'REST `POST /api/v1/messages/send` with `client_message_id` (the 201 is the ack) and the per-device WebSocket `/ws/{user}/{device}`, acknowledging every `message` frame with an `ack` frame; reconnected 1–5 s after a close',
};

const lines = [];
const w = (x = '') => lines.push(x);
w('# Reliability');
w();
w(`Written by \`examples/reliability/run.sh\` on ${run.started || r.startedAt} (commit ${run.commit || '?'}), in ${run.elapsedS ? `${Math.floor(run.elapsedS / 60)} min ${run.elapsedS % 60} s` : '?'}.`);
w('Raw results: `target/reliability/results.json` (per-worker detail in `worker-*.json`, logs in `logs/`).');
w('Re-write this file from them with `examples/reliability/run.sh --report-only`.');
w();
w('## What was run');
w();
w(`* **Servers.** Two Switchboard release instances (i0, i1) behind nginx (\`examples/nginx/nginx.conf\` with its own ports), on a PostgreSQL ${run.postgres || ''} cluster and a Redis ${run.redis || ''} that the run starts for itself (ports 5441 and 6391, fresh each run), so that restarting them touches none of the machine's services. Settings are the defaults except \`RATE_LIMIT_MAX_CONNECTIONS=100000\` (clients come from 250 loopback addresses and reconnect every ~15 s, beyond the default 60 per minute and address), \`MAX_GROUP_SIZE=${Math.max(256, s.groupSize + 1)}\`, \`TRUSTED_PROXIES=127.0.0.1\` (nginx), \`LOG_LEVEL=warn,switchboard=info\`.`);
w(`* **Clients.** ${n(s.clients)} clients, one user and one device each, in ${s.workers} harness processes (Node ${run.node || ''}): ${Object.entries(r.dialects).map(([k, v]) => `${n(v)} ${k}`).join(', ')}. ${n(r.conversations.groups)} group conversations of ~${s.groupSize} members mixing the dialects, and ${n(r.conversations.directs)} direct conversations for the mrezhen users. Each client spreads its traffic over source addresses 127.0.0.2–251, which nginx hashes onto the two instances.`);
for (const [k] of Object.entries(r.dialects)) w(`  * \`${k}\`: ${dialectWhy[k] || ''}.`);
w('  * `e2e` is left out: its clients get the newest 1,000 messages again with every `join-session` (the dialect\'s contract), so "exactly once" does not apply to it; see analysis.md.');
w(`* **Load.** ${n(s.rate)} messages/s overall for ${s.durationS} s, each from a random client into one of its conversations; every body carries a unique id. A send that is refused, times out (10 s) or loses its connection is sent again with the same \`tempId\` / \`client_message_id\`, up to 60 attempts.`);
w('* **Forced disconnects.** Every client\'s TCP connection is destroyed (`socket.destroy()`: no WebSocket close, no Engine.IO close) 10–20 s after each connect, uniformly at random, i.e. about every 15 s; the client then reconnects as described above.');
w(`* **Faults, in sequence** at equal steps of the load: ${r.recovery.map((f) => `${faultNames[f.kind] || f.kind} at ${f.atS.toFixed(0)} s`).join('; ') || 'none'}.`);
w(`* **Drain.** Then no sends, no forced disconnects and no faults: every pending send resolved and every client connected, ${s.drainS} s of quiet, then every client reconnects once, politely, and the run ends when nothing arrived for 5 s. A message counts as lost only if it never arrived by then.`);
w();
w('## Machine');
w();
w(`${run.cpu || '?'}, ${run.cores || '?'} cores, ${run.memGiB || '?'} GiB RAM, Linux ${run.kernel || '?'}; nginx ${run.nginx || '?'}. Everything — both instances, PostgreSQL, Redis, nginx and the harness — shares the two cores, unpinned. Load average ${run.loadBefore || '?'} at the start, ${run.loadAfter || '?'} at the end.`);
w();
w('## Figures');
w();
w('| figure | value | target (issue 17) | |');
w('|---|---|---|---|');
w(`| messages sent | ${n(m.sent)} | | |`);
w(`| acknowledged | ${n(m.acknowledged)} (${pc(m.acknowledged, m.sent)}) | | |`);
w(`| not acknowledged (not losses) | ${n(m.unacknowledged)}${m.unacknowledged ? ` (last error: ${Object.entries(m.unacknowledgedErrors).map(([k, v]) => `${k} ${v}`).join(', ')}); ${n(m.unacknowledgedButDelivered)} of them delivered anyway` : ''} | | |`);
w(`| sends that needed more than one attempt | ${n(m.resent)} | | |`);
if (m.ackMs) w(`| first attempt to ack, p50 / p90 / p99 (max) | ${ms(m.ackMs.p50)} / ${ms(m.ackMs.p90)} / ${ms(m.ackMs.p99)} (${ms(m.ackMs.max)}) | | |`);
w(`| deliveries owed (acknowledged × other members) | ${n(d.expected)} | | |`);
w(`| delivered at least once | ${n(d.deliveredAtLeastOnce)} (${pc(d.deliveredAtLeastOnce, d.expected)}) | 100 % | ${yes(d.deliveredAtLeastOnce === d.expected)} |`);
w(`| delivered exactly once | ${n(d.exactlyOnce)} (${pc(d.exactlyOnce, d.expected)}) | | |`);
w(`| **lost** (acknowledged, never reached a member) | ${n(d.lost)} | 0 | ${yes(d.lost === 0)} |`);
w(`| duplicated (member got it more than once) | ${n(d.duplicated)} (${pc(d.duplicated, d.expected)}), ${n(d.extraCopies)} extra copies | only after the SIGKILL (SPEC §5.6) | ${yes(otherDups === 0)} |`);
w(`| extra copies by what ended the connection that had the previous copy | after the SIGKILL ${n(dup.sigkill)}; after a forced disconnect ${n(dup.forced)}; after the final polite reconnect ${n(dup.final)}; graceful restart ${n(dup.graceful)}; Redis restart ${n(dup.redis)}; PostgreSQL restart ${n(dup.postgres)}; on the same connection ${n(dup.sameConnection)}; other ${n(dup.other)} | | |`);
w(`| live delivery missed, recovered only by the final reconnect | ${n(d.lateAfterFinalReconnect)} | | |`);
w(`| replay after a reconnect, p50 / p99 (max) | ${ms(r.replayMs.p50)} / ${ms(r.replayMs.p99)} (${ms(r.replayMs.max)}), ${n(r.replayMs.samples)} reconnects with a backlog | p99 < 1 s | ${yes(r.replayMs.p99 !== null && r.replayMs.p99 < 1000)} |`);
w(`| connections opened | ${n(r.connections.total)} (ended by — forced: the harness destroyed it; server: closed from the server side; final: the polite reconnect at the end; end: still open at the end — ${Object.entries(r.connections.endedBy).map(([k, v]) => `${k} ${n(v)}`).join(', ')}); failed connection attempts ${n(r.connections.connectErrors)} | | |`);
w();
w('Per dialect of the recipient:');
w();
w('| recipient dialect | owed | exactly once | duplicated | extra copies | lost | replay p50 / p99 |');
w('|---|---|---|---|---|---|---|');
for (const [k, v] of Object.entries(d.perDialect)) {
  const rp = r.replayMs.byDialect[k] || {};
  w(`| ${k} | ${n(v.expected)} | ${n(v.exactlyOnce)} (${pc(v.exactlyOnce, v.expected)}) | ${n(v.duplicated)} | ${n(v.extraCopies)} | ${n(v.lost)} | ${ms(rp.p50)} / ${ms(rp.p99)} |`);
}
w();
w('### Faults');
w();
w('| fault | at | down | clients disconnected by it | back: p50 / max | sends acked again after | slowest ack of a send in its first second |');
w('|---|---|---|---|---|---|---|');
for (const f of r.recovery) {
  w(`| ${f.kind} | ${f.atS.toFixed(1)} s | ${ms(f.downMs)}${f.kind === 'graceful' && f.stopMs !== null && f.stopMs !== undefined ? ` (the stop itself ${ms(f.stopMs)}${f.stopTimedOut ? ', ended by SIGKILL after the 60 s limit' : `, exit ${f.exit?.code ?? '?'}`})` : ''} | ${n(f.clientsDisconnected)}${f.clientsReconnectedMs.neverBack ? ` (${f.clientsReconnectedMs.neverBack} never back)` : ''} | ${ms(f.clientsReconnectedMs.p50)} / ${ms(f.clientsReconnectedMs.max)} | ${f.sendsRecoveredMs === null ? 'not within the window' : ms(f.sendsRecoveredMs)} | ${ms(f.slowestAckOfSendsInFirstSecondMs)} |`);
}
w();
w('"Back" counts from the fault to the next connection of each client whose connection the server side closed within the fault (from its start to 5 s after the restarted component was up). "Sends acked again": from the fault to the first 1-s window from which on, for three windows, the share of sends acknowledged within 2 s of their first attempt is within 5 points of the 5 s before the fault (0 ms: the fault never pushed it below).');
w();
w('### Memory (RSS)');
w();
w('| instance | before the load (all clients connected) | after the drain |');
w('|---|---|---|');
r.memory.before.forEach((b, i) => w(`| i${i}${i === 1 ? ' (restarted by the faults: a fresh process afterwards)' : ''} | ${mib(b)} | ${mib(r.memory.after[i])} |`));
w();
if (r.lostDetail.length) {
  w('### Lost deliveries');
  w();
  w('| message | sender (dialect) | recipient (dialect) | sent at | near fault |');
  w('|---|---|---|---|---|');
  for (const l of r.lostDetail.slice(0, 40)) w(`| \`${l.uid}\` | ${l.senderDialect} | \`${l.recipient}\` (${l.recipientDialect}) | ${l.sinceLoadS.toFixed(1)} s | ${l.fault || '—'} |`);
  if (r.lostDetail.length > 40) w(`| … ${r.lostDetail.length - 40} more in results.json | | | | |`);
  w();
}
w('## Reading');
w();
const reading = [];
if (d.lost === 0) reading.push(`Every one of the ${n(d.expected)} deliveries owed for the ${n(m.acknowledged)} acknowledged messages arrived: **0 lost**, through ${n(r.connections.total)} connections, ${n(r.connections.endedBy.forced || 0)} of them destroyed under the clients, and the four faults.`);
else {
  const by = Object.entries(d.perDialect).filter(([, v]) => v.lost).map(([k, v]) => `${n(v.lost)} to ${k} recipients`).join(', ');
  reading.push(`**${n(d.lost)} deliveries were lost** (${by}): acknowledged messages that some member never received, even after the final reconnect. They are listed above and in results.json (\`lostDetail\`, with the recipient's connections around the send); the target of 0 lost is not met.`);
}
if (m.ackMs) reading.push(`Acks: p50 ${ms(m.ackMs.p50)}, p99 ${ms(m.ackMs.p99)} from a message's first attempt; ${n(m.resent)} of ${n(m.sent)} sends needed more than one attempt. Two instances, PostgreSQL, Redis, nginx and ${s.workers} harness processes share two cores while every client reconnects about every 15 s (${n(Math.round(s.clients / 15))} reconnects a second, each with its catch-up), so these are figures of a saturated machine${run.loadBefore ? ` (load average ${run.loadBefore.split(' ')[0]} at the start, other work included)` : ''}.`);
const sparkD = d.perDialect.spark;
if (sparkD && sparkD.expected) reading.push(`Exactly once, by the recipient's dialect: ${Object.entries(d.perDialect).map(([k, v]) => `${k} ${pc(v.exactlyOnce, v.expected)}`).join(', ')}. SUP clients confirm with \`message:delivered\` receipts and Socialink clients with \`ack\` frames. Mrezhen clients (raw WebSocket) confirm with the pong to a ping the server sends about a second after it wrote them messages. Spark clients have nothing to confirm with but their Engine.IO pongs, which the engine asks for every 25 s, and a connection that lives ~15 s never sends one, so nearly everything a Spark client was handed comes again on its next connection.`);
if (m.unacknowledged) reading.push(`${n(m.unacknowledged)} sends were never acknowledged (their clients gave up after 60 attempts or the run ended); they are not counted as losses, as the sender was never told they were stored.`);
if (d.extraCopies) reading.push(`Duplicates: ${n(d.extraCopies)} extra copies reached ${n(d.duplicated)} member-message pairs. ${n(sigkillDups)} followed the SIGKILL, which SPEC §5.6 allows. ${n(dup.forced || 0)} followed a forced disconnect: what a connection was handed but did not confirm (a Socket.IO WebSocket confirms with its pongs, every 25 s; a raw WebSocket with the pong to a ping sent about a second after messages were written; any client with a receipt) is pushed again by the next connection, under the same id. That is the documented cost of "delivered means received" (README, Delivery guarantees), not a loss, but it is outside what the issue's target allows, so that target is not met. ${n(dup.final || 0)} followed the final polite reconnect (the client's own close confirms nothing).${otherDups - (dup.forced || 0) - (dup.final || 0) > 0 ? ` ${n(otherDups - (dup.forced || 0) - (dup.final || 0))} have another cause (graceful restart, Redis or PostgreSQL restart, same connection, other): see the table.` : ''}`);
else reading.push('No message reached any member twice.');
if (r.replayMs.p99 !== null) reading.push(`Replay after a reconnect: p50 ${ms(r.replayMs.p50)}, p99 ${ms(r.replayMs.p99)} over ${n(r.replayMs.samples)} reconnects that had a backlog; the target of p99 under 1 s is ${r.replayMs.p99 < 1000 ? 'met' : 'not met'}. The replay includes the re-pushed copies above, so it grows with what a client was handed and never confirmed.`);
for (const line of reading) { w(line); w(); }

const analysis = join(here, 'analysis.md');
if (existsSync(analysis)) {
  w(readFileSync(analysis, 'utf8').replace(/^# /m, '## '));
}
writeFileSync(reportFile, lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n');
