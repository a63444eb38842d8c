// The reliability run's harness (examples/reliability/run.sh starts it; analysis.md explains
// the accounting). One coordinator process starts two Switchboard instances (nginx, Redis and
// PostgreSQL are run.sh's), creates the users and conversations, forks worker processes that
// drive the clients, injects the faults, and merges what the workers saw into
// target/reliability/results.json.
//
//   node harness.mjs            coordinator (settings from the environment, see run.sh)
//   node harness.mjs --worker   one worker (forked by the coordinator; talks over IPC)
//
// Every message body is `rel|<uid>|<send time ms>`, so a delivery is recognised by its body
// whatever dialect wrote or read it. A client is one user with one device.
import { fork, spawn, execFileSync } from 'node:child_process';
import { createHmac, generateKeyPairSync, sign, randomUUID } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import http from 'node:http';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const env = process.env;
const num = (name, def) => {
  const v = env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${v} is not a number`);
  return n;
};
const now = () => Date.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const SECRET = env.REL_JWT_SECRET || 'reliability-secret';

function jwt(claims) {
  const b64u = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const head = b64u({ alg: 'HS256', typ: 'JWT' });
  const body = b64u(claims);
  const sig = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A token in the claim layout of the dialect's real clients (README, Identity). */
function tokenFor(user, dialect) {
  const t = Math.floor(now() / 1000);
  if (dialect === 'mrezhen') return jwt({ userId: user, name: user, iss: 'mrezhen', iat: t, exp: t + 86400 });
  if (dialect === 'sup') return jwt({ userId: user, type: 'access', iat: t, exp: t + 86400 });
  return jwt({ sub: user, name: user, iat: t, exp: t + 86400 });
}

const BODY = /^rel\|([^|]+)\|(\d+)$/;
/** The uid and send time in a body, or null. Socialink writes bytes: other dialects see base64. */
function parseBody(text) {
  if (typeof text !== 'string') return null;
  let m = BODY.exec(text);
  if (!m) {
    try { m = BODY.exec(Buffer.from(text, 'base64').toString('utf8')); } catch { m = null; }
  }
  return m ? { uid: m[1], tSend: Number(m[2]) } : null;
}

// ---------------------------------------------------------------------------------------------
// Worker: drives a slice of the clients.
// ---------------------------------------------------------------------------------------------

async function worker() {
  const { io } = await import('socket.io-client');
  const { default: WebSocket } = await import('ws');
  let cfg;
  const clients = [];
  const sends = [];
  const state = { sending: false, forcing: false, stopping: false };
  let unknownFrames = 0;

  /** Reconnect delay as socket.io-client computes it by default (1 s doubling to 5 s, ±50 %). */
  const backoff = (attempt) => {
    const base = Math.min(1000 * 2 ** attempt, 5000);
    return Math.round(base * (0.5 + Math.random()));
  };

  // A client keeps trying a message for two minutes (then gives up: it stays "not
  // acknowledged"), waiting longer after each failed attempt, as a well-behaved app does.
  const giveUp = (rec) => now() - rec.tFirst > 120000;
  const retryDelay = (rec) => Math.min(1000 * 2 ** Math.max(0, rec.errors.length - 1), 30000);
  const ACK_TIMEOUT = 20000;

  class Client {
    constructor(spec) {
      Object.assign(this, spec); // user, dialect, ip, chats, partner, deviceId
      this.token = tokenFor(this.user, this.dialect);
      this.conns = []; // { n, tOpen, tClose, cause }
      this.recv = new Map(); // uid -> [[t, connNo]...]
      this.echo = 0; // own messages pushed back
      this.pending = new Map(); // uid -> send record not acked yet
      this.connNo = 0;
      this.closing = null; // why the harness is closing the current connection
      this.forceTimer = null;
      this.connectErrors = 0;
      this.nextChat = 0;
    }

    get current() { return this.conns[this.conns.length - 1]; }
    get connected() { const c = this.current; return !!c && c.tClose === null; }

    opened() {
      this.connNo += 1;
      this.conns.push({ n: this.connNo, tOpen: now(), tClose: null, cause: null });
      this.scheduleForce();
      for (const rec of this.pending.values()) if (rec.inflightConn !== this.connNo) this.attempt(rec);
    }

    closed(reason) {
      clearTimeout(this.forceTimer);
      const c = this.current;
      if (c && c.tClose === null) {
        c.tClose = now();
        c.cause = this.closing || `server:${reason}`;
      }
      this.closing = null;
    }

    /** The next forced close, uniformly 10–20 s after this connection opened (~every 15 s). */
    scheduleForce() {
      clearTimeout(this.forceTimer);
      const conn = this.connNo;
      this.forceTimer = setTimeout(() => {
        if (!state.forcing || conn !== this.connNo || !this.connected) { if (state.forcing && conn === this.connNo) this.scheduleForce(); return; }
        this.closing = 'forced';
        this.destroyTransport();
      }, 10000 + Math.random() * 10000);
    }

    received(body, t = now()) {
      const p = parseBody(body);
      if (!p) { unknownFrames += 1; return null; }
      if (p.uid.startsWith(this.user + '#')) { this.echo += 1; return p; }
      let list = this.recv.get(p.uid);
      if (!list) this.recv.set(p.uid, (list = []));
      list.push([t, this.connNo]);
      return p;
    }

    newSend() {
      const chat = this.chats[this.nextChat++ % this.chats.length];
      const seqNo = sends.length;
      const uid = `${this.user}#${seqNo}`;
      const rec = { uid, user: this.user, dialect: this.dialect, chat: chat.id, to: chat.to, tFirst: now(), tAck: null, attempts: 0, errors: [], inflightConn: 0 };
      rec.body = `rel|${uid}|${rec.tFirst}`;
      sends.push(rec);
      this.pending.set(uid, rec);
      this.attempt(rec);
    }

    ackOk(rec) {
      if (rec.tAck !== null) return;
      rec.tAck = now();
      this.pending.delete(rec.uid);
    }

    /** A refused or failed attempt: try again later, backing off (1 s doubling to 30 s), with the same tempId. */
    retryLater(rec, code) {
      if (rec.tAck !== null) return;
      rec.errors.push(code);
      rec.inflightConn = 0;
      if (giveUp(rec)) { this.pending.delete(rec.uid); rec.gaveUp = true; return; }
      setTimeout(() => { if (rec.tAck === null && rec.inflightConn === 0) this.attempt(rec); }, retryDelay(rec));
    }
  }

  /** sup and spark: the real socket.io-client with its default transports and reconnection. */
  class SioClient extends Client {
    start() {
      const sockets = new Set();
      this.sockets = sockets;
      const agent = new http.Agent({ keepAlive: true, localAddress: this.ip });
      const create = agent.createConnection.bind(agent);
      agent.createConnection = (opts, cb) => {
        const s = create(opts, cb);
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
        return s;
      };
      this.socket = io(`${cfg.url}/${this.dialect}`, { auth: { token: this.token }, forceNew: true, agent, localAddress: this.ip });
      const s = this.socket;
      s.on('connect', () => this.opened());
      s.on('disconnect', (reason) => this.closed(reason));
      s.on('connect_error', () => {
        this.connectErrors += 1;
        // A refusal by the server's middleware stops socket.io-client's own retries; an app
        // connects again (a transport error keeps the client retrying by itself).
        if (!s.active && !state.stopping) setTimeout(() => s.connect(), backoff(2));
      });
      const ev = this.dialect === 'sup' ? 'message:new' : 'new_message';
      s.on(ev, (m) => {
        const p = this.received(this.dialect === 'sup' ? m.encryptedContent : m.content);
        if (p && this.dialect === 'sup' && cfg.supReceipts) this.receipt(m.chatId, m.id, m.seq);
      });
      this.pendingReceipts = new Map();
    }

    /** SUP's client reports what it received (`message:delivered`), the newest per chat, at most once a second per chat. */
    receipt(chatId, messageId, seq) {
      const cur = this.pendingReceipts.get(chatId);
      if (cur && cur.seq >= seq) return;
      const first = !cur;
      this.pendingReceipts.set(chatId, { messageId, seq });
      if (!first) return;
      setTimeout(() => {
        const r = this.pendingReceipts.get(chatId);
        this.pendingReceipts.delete(chatId);
        if (r && this.socket.connected) this.socket.emit('message:delivered', { chatId, messageId: r.messageId }, () => {});
      }, 1000);
    }

    attempt(rec) {
      if (!this.socket.connected) return; // sent again on connect
      rec.attempts += 1;
      const conn = this.connNo;
      rec.inflightConn = conn;
      const [ev, payload] = this.dialect === 'sup'
        ? ['message:new', { chatId: rec.chat, encryptedContent: rec.body, messageType: 'text', tempId: rec.uid }]
        : ['send_message', { conversationId: rec.chat, content: rec.body, tempId: rec.uid }];
      this.socket.timeout(ACK_TIMEOUT).emit(ev, payload, (err, res) => {
        if (rec.tAck !== null) return;
        if (err) { if (rec.inflightConn === conn) this.retryLater(rec, 'ACK_TIMEOUT'); return; }
        if (res && res.success) this.ackOk(rec);
        else this.retryLater(rec, res?.error?.code || 'ERROR');
      });
    }

    destroyTransport() { for (const s of this.sockets) s.destroy(); }
    politeReconnect() { this.closing = 'final'; this.socket.disconnect(); this.socket.connect(); }
  }

  /** mrezhen and socialink: a raw WebSocket (`ws`), reconnected by the app after a delay. */
  class WsClient extends Client {
    start() { this.reconnects = 0; this.open(); }

    open() {
      if (state.stopped) return;
      const path = this.dialect === 'mrezhen' ? '/ws' : `/ws/${this.user}/${this.deviceId}`;
      const ws = new WebSocket(`${cfg.url.replace(/^http/, 'ws')}${path}?token=${this.token}`, { localAddress: this.ip });
      this.ws = ws;
      let opened = false;
      ws.on('open', () => { opened = true; this.reconnects = 0; this.opened(); });
      ws.on('message', (data) => this.frame(data));
      ws.on('error', () => {});
      ws.on('unexpected-response', (_req, res) => { res.resume(); ws.terminate(); });
      ws.on('close', (code) => {
        const polite = this.closing === 'final';
        if (opened) this.closed(`close ${code}`); else this.connectErrors += 1;
        if (this.inflight && this.inflight.inflightConn) this.inflight.inflightConn = 0;
        if (state.stopped) return;
        const delay = polite ? 0 : backoff(this.reconnects++);
        setTimeout(() => this.open(), opened ? delay : backoff(this.reconnects++));
      });
    }

    frame(data) {
      let f;
      try { f = JSON.parse(String(data)); } catch { unknownFrames += 1; return; }
      if (this.dialect === 'mrezhen') {
        if (f.type === 'direct_message') this.received(f.message?.content);
        else if (f.type === 'message_ack') {
          const rec = this.pending.get(f.tempId);
          if (rec) { this.ackOk(rec); if (this.inflight === rec) { this.inflight = null; this.pump(); } }
        } else if (f.type === 'error' && this.inflight) {
          const rec = this.inflight;
          this.inflight = null;
          this.retryLater(rec, f.code || 'ERROR');
          this.pump();
        }
      } else if (f.type === 'message') {
        this.received(f.ciphertext);
        // Socialink's queue keeps a message until the device acknowledges it.
        if (f.message_id || f.id) this.ws.send(JSON.stringify({ type: 'ack', message_ids: [f.message_id || f.id] }));
      }
    }

    opened() { super.opened(); if (this.dialect === 'mrezhen') this.pump(); }

    attempt(rec) {
      if (this.dialect === 'socialink') return this.restSend(rec);
      if (!this.queue) this.queue = [];
      if (!this.queue.includes(rec)) this.queue.push(rec);
      this.pump();
    }

    /** Mrezhen acks carry the tempId but errors do not: one message in flight at a time. */
    pump() {
      if (this.inflight && this.inflight.inflightConn === this.connNo && this.connected) return;
      if (this.inflight) { if (!this.queue.includes(this.inflight)) this.queue.unshift(this.inflight); this.inflight = null; }
      if (!this.connected || !this.queue?.length) return;
      const rec = this.queue.shift();
      if (rec.tAck !== null) return this.pump();
      this.inflight = rec;
      rec.attempts += 1;
      rec.inflightConn = this.connNo;
      const conn = this.connNo;
      this.ws.send(JSON.stringify({ type: 'direct_message', to: rec.to, content: rec.body, tempId: rec.uid }));
      setTimeout(() => {
        if (this.inflight === rec && rec.inflightConn === conn && rec.tAck === null) {
          this.inflight = null;
          rec.errors.push('ACK_TIMEOUT');
          this.queue.push(rec);
          this.pump();
        }
      }, ACK_TIMEOUT);
    }

    retryLater(rec, code) {
      if (this.dialect === 'socialink') return super.retryLater(rec, code);
      rec.errors.push(code);
      rec.inflightConn = 0;
      if (giveUp(rec)) { this.pending.delete(rec.uid); rec.gaveUp = true; return; }
      setTimeout(() => { if (rec.tAck === null) { this.queue.push(rec); this.pump(); } }, retryDelay(rec));
    }

    restSend(rec) {
      rec.attempts += 1;
      rec.inflightConn = -1;
      const body = JSON.stringify({ conversation_id: rec.chat, ciphertext: Buffer.from(rec.body).toString('base64'), client_message_id: rec.uid, device_id: this.deviceId });
      const req = http.request(`${cfg.url}/api/v1/messages/send/${encodeURIComponent(this.user)}`, {
        method: 'POST', localAddress: this.ip, agent: restAgent, timeout: ACK_TIMEOUT,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.token}`, 'content-length': Buffer.byteLength(body) },
      }, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => {
          if (res.statusCode === 201) this.ackOk(rec);
          else { let code = `HTTP_${res.statusCode}`; try { code = JSON.parse(text).code || code; } catch { /* not JSON */ } this.retryLater(rec, code); }
        });
        res.on('error', () => this.retryLater(rec, 'HTTP_ERROR'));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => this.retryLater(rec, 'HTTP_ERROR'));
      req.end(body);
    }

    destroyTransport() { this.ws?._socket?.destroy(); }
    politeReconnect() { this.closing = 'final'; this.ws.close(1000); }
  }

  const restAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  const report = () => {
    let connected = 0, pending = 0;
    for (const c of clients) { if (c.connected) connected += 1; pending += c.pending.size; }
    return { connected, pending, clients: clients.length, sent: sends.length };
  };

  process.on('message', async (msg) => {
    if (msg.cmd === 'init') {
      cfg = msg.cfg;
      for (const spec of msg.clients) {
        const c = spec.dialect === 'sup' || spec.dialect === 'spark' ? new SioClient(spec) : new WsClient(spec);
        clients.push(c);
      }
      // Connect gradually: a connection storm at the start is not what is measured.
      for (let i = 0; i < clients.length; i++) {
        clients[i].start();
        if (i % 20 === 19) await sleep(100);
      }
      process.send({ cmd: 'inited' });
    } else if (msg.cmd === 'status') {
      process.send({ cmd: 'status', id: msg.id, ...report() });
    } else if (msg.cmd === 'load') {
      state.sending = true;
      state.forcing = true;
      for (const c of clients) c.scheduleForce();
      // A steady rate: every tick, this worker's share of the overall rate, to random clients.
      const perMs = msg.rate / 1000;
      let due = 0, last = now();
      const tick = setInterval(() => {
        if (!state.sending) { clearInterval(tick); return; }
        const t = now();
        due += (t - last) * perMs;
        last = t;
        while (due >= 1) {
          due -= 1;
          clients[Math.floor(Math.random() * clients.length)].newSend();
        }
      }, 20);
    } else if (msg.cmd === 'quiet') {
      state.sending = false;
      state.forcing = false;
      process.send({ cmd: 'quiet' });
    } else if (msg.cmd === 'final-reconnect') {
      for (let i = 0; i < clients.length; i++) {
        const c = clients[i];
        if (c.connected) c.politeReconnect();
        if (i % 20 === 19) await sleep(50);
      }
      process.send({ cmd: 'final-reconnect' });
    } else if (msg.cmd === 'lastRecv') {
      let last = 0;
      for (const c of clients) for (const l of c.recv.values()) for (const [t] of l) if (t > last) last = t;
      process.send({ cmd: 'lastRecv', id: msg.id, last });
    } else if (msg.cmd === 'finish') {
      state.stopping = true;
      state.stopped = true;
      for (const c of clients) { clearTimeout(c.forceTimer); c.closing = 'end'; if (c.socket) c.socket.close(); if (c.ws) c.ws.terminate(); }
      const out = {
        unknownFrames,
        clients: clients.map((c) => ({ user: c.user, dialect: c.dialect, conns: c.conns, echo: c.echo, connectErrors: c.connectErrors, recv: [...c.recv] })),
        sends: sends.map(({ body, inflightConn, ...r }) => r),
      };
      writeFileSync(msg.file, JSON.stringify(out));
      process.send({ cmd: 'finished' });
      setTimeout(() => process.exit(0), 100);
    }
  });
  // A worker whose coordinator died must not go on driving clients.
  process.on('disconnect', () => process.exit(1));
  process.send({ cmd: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// Coordinator.
// ---------------------------------------------------------------------------------------------

function request(url, { method = 'GET', token, body, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (data) headers['content-length'] = Buffer.byteLength(data);
    const req = http.request(url, { method, headers, localAddress, agent: false, timeout: 10000 }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => { let parsed = text; try { parsed = JSON.parse(text); } catch { /* text */ } resolve({ status: res.statusCode, body: parsed }); });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

async function until(what, fn, timeoutMs, everyMs = 100) {
  const deadline = now() + timeoutMs;
  for (;;) {
    try { if (await fn()) return true; } catch { /* not yet */ }
    if (now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

const rss = (pid) => {
  try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024; } catch { return null; }
};

class Instance {
  constructor(i, port, cfg) { this.i = i; this.port = port; this.cfg = cfg; this.proc = null; }

  async start() {
    const log = openSync(join(this.cfg.out, 'logs', `i${this.i}.log`), 'a');
    this.proc = spawn(this.cfg.bin, [], {
      cwd: this.cfg.workDir,
      env: { ...this.cfg.serverEnv, PORT: String(this.port), INSTANCE_ID: `i${this.i}` },
      stdio: ['ignore', log, log],
    });
    this.exited = new Promise((r) => this.proc.once('exit', (code, signal) => r({ code, signal })));
    writeFileSync(join(this.cfg.out, `i${this.i}.pid`), String(this.proc.pid));
    await until(`instance i${this.i} on port ${this.port}`, async () => {
      if (this.proc.exitCode !== null) throw new Error('exited');
      return (await request(`http://127.0.0.1:${this.port}/health`)).status === 200;
    }, 60000);
    return this;
  }

  rss() { return this.proc ? rss(this.proc.pid) : null; }

  async stop(signal) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return null;
    this.proc.kill(signal);
    const r = await this.exited;
    return r;
  }
}

function pct(list, p) {
  if (!list.length) return null;
  const s = [...list].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function coordinator() {
  const N = num('RELIABILITY_CLIENTS', 2000);
  const DURATION = num('RELIABILITY_DURATION', 120) * 1000;
  const RATE = num('RELIABILITY_RATE', 50);
  const GROUP = num('RELIABILITY_GROUP_SIZE', 10);
  const DRAIN = num('RELIABILITY_DRAIN', 15) * 1000;
  const FAULTS = (env.RELIABILITY_FAULTS ?? 'sigkill,graceful,redis,postgres').split(',').map((s) => s.trim()).filter(Boolean);
  const MIX = (env.RELIABILITY_MIX || 'sup:40,spark:30,mrezhen:20,socialink:10').split(',').map((p) => p.split(':'));
  const WORKERS = num('RELIABILITY_WORKERS', Math.max(1, Math.ceil(N / 700)));
  const out = env.REL_OUT;
  const cfg = {
    out,
    bin: env.REL_BIN,
    workDir: join(out, 'work'),
    url: env.REL_URL,
    supReceipts: env.RELIABILITY_SUP_RECEIPTS !== '0',
    serverEnv: {
      PATH: env.PATH,
      HOST: '127.0.0.1',
      DATABASE_URL: env.REL_DATABASE_URL,
      REDIS_URL: env.REL_REDIS_URL,
      REDIS_PREFIX: 'rel:',
      JWT_SECRET: SECRET,
      TRUSTED_PROXIES: '127.0.0.1',
      LOG_FORMAT: 'json',
      LOG_LEVEL: env.REL_LOG_LEVEL || 'warn,switchboard=info',
      // Clients come from 250 loopback addresses and reconnect every ~15 s; the default 60
      // attempts a minute per address would refuse some of them (run.sh says so in the report).
      RATE_LIMIT_MAX_CONNECTIONS: '100000',
      MAX_GROUP_SIZE: String(Math.max(256, GROUP + 1)),
    },
  };
  mkdirSync(join(out, 'logs'), { recursive: true });
  mkdirSync(cfg.workDir, { recursive: true });
  const log = (...a) => console.error(`[${((now() - T0) / 1000).toFixed(1)}s]`, ...a);
  const T0 = now();
  const events = [];
  const mark = (name, extra = {}) => { const e = { name, t: now(), ...extra }; events.push(e); log(name, JSON.stringify(extra)); return e; };

  const instances = [new Instance(0, num('REL_PORT_A', 3441), cfg), new Instance(1, num('REL_PORT_B', 3442), cfg)];
  // The first applies the migrations alone.
  await instances[0].start();
  await instances[1].start();
  mark('instances up');

  // ---- users and conversations ----
  const dialectOf = [];
  const total = MIX.reduce((a, [, w]) => a + Number(w), 0);
  let acc = 0;
  for (const [d, w] of MIX) {
    const k = Math.round((Number(w) / total) * N);
    for (let j = 0; j < k && dialectOf.length < N; j++) dialectOf.push(d);
    acc += k;
  }
  while (dialectOf.length < N) dialectOf.push(MIX[0][0]);
  // Interleave dialects so that every group mixes them.
  const byDialect = {};
  dialectOf.forEach((d) => { (byDialect[d] ||= []).push(d); });
  const order = [];
  for (let i = 0; order.length < N; i++) for (const d of Object.keys(byDialect)) if (byDialect[d][i]) order.push(d);
  const run = randomUUID().slice(0, 6);
  const users = order.map((d, i) => ({ user: `r${run}-${d}-${i}`, dialect: d, ip: `127.0.0.${2 + (i % 250)}`, chats: [] }));
  const api = async (path, token, body, method = 'POST') => {
    for (let a = 0; ; a++) {
      const r = await request(cfg.url + path, { method, token, body }).catch((e) => ({ status: 0, body: String(e) }));
      if (r.status >= 200 && r.status < 300) return r.body;
      if (a >= 5) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
      await sleep(500);
    }
  };
  const stdTok = (u) => tokenFor(u, 'standard');
  // Socialink devices are registered before anything is sent: a device's queue holds only
  // messages stored after it registered.
  const keyId = { n: 1 };
  const raw = (k) => { const der = k.export({ format: 'der', type: 'spki' }); return der.subarray(der.length - 32); };
  const sl = users.filter((u) => u.dialect === 'socialink');
  for (const u of sl) {
    u.deviceId = 'dev-1';
    const id = generateKeyPairSync('ed25519');
    const spk = raw(generateKeyPairSync('x25519').publicKey);
    await api(`/api/v1/keys/register/${u.user}`, stdTok(u.user), {
      device_id: u.deviceId, device_name: 'reliability', registration_id: 1 + (keyId.n % 16000),
      identity_key: raw(id.publicKey).toString('base64'),
      signed_prekey: { id: keyId.n++, public_key: spk.toString('base64'), signature: sign(null, spk, id.privateKey).toString('base64') },
      onetime_prekeys: [],
    });
  }
  // Groups of GROUP members (sup, spark, socialink mixed); mrezhen users have direct
  // conversations (the dialect shows only those), each with a SUP user where there is one.
  const grouped = users.filter((u) => u.dialect !== 'mrezhen');
  const groups = [];
  for (let i = 0; i < grouped.length; i += GROUP) {
    const members = grouped.slice(i, i + GROUP);
    if (members.length < 2 && groups.length) { groups[groups.length - 1].members.push(...members); continue; }
    groups.push({ members });
  }
  for (const g of groups) {
    const [owner, ...rest] = g.members;
    const conv = await api('/api/conversations', stdTok(owner.user), { type: 'group', name: 'reliability', participantIds: rest.map((m) => m.user) });
    g.id = (conv.data || conv).id;
    for (const m of g.members) m.chats.push({ id: g.id });
  }
  const mrezhen = users.filter((u) => u.dialect === 'mrezhen');
  const supFree = users.filter((u) => u.dialect === 'sup');
  const directs = [];
  while (mrezhen.length) {
    const a = mrezhen.shift();
    const b = supFree.shift() || mrezhen.shift();
    if (!b) break;
    const conv = await api('/api/conversations', stdTok(a.user), { type: 'direct', participantIds: [b.user] });
    const id = (conv.data || conv).id;
    directs.push({ id, members: [a, b] });
    a.chats.push({ id, to: b.user });
    b.chats.push({ id, to: a.user });
  }
  const members = new Map(); // chat -> [user]
  for (const g of groups) members.set(g.id, g.members.map((m) => m.user));
  for (const d of directs) members.set(d.id, d.members.map((m) => m.user));
  const active = users.filter((u) => u.chats.length);
  mark('conversations created', { groups: groups.length, directs: directs.length, clients: active.length });

  // ---- workers ----
  const workers = [];
  const waits = new Map();
  let reqId = 0;
  const ask = (w, cmd, extra = {}) => new Promise((resolve) => {
    const id = ++reqId;
    waits.set(id, resolve);
    w.send({ cmd, id, ...extra });
  });
  for (let k = 0; k < WORKERS; k++) {
    const w = fork(fileURLToPath(import.meta.url), ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const once = new Map();
    w.on('message', (m) => {
      if (m.id && waits.has(m.id)) { const r = waits.get(m.id); waits.delete(m.id); r(m); return; }
      const r = once.get(m.cmd);
      if (r) { once.delete(m.cmd); r(m); }
    });
    w.await = (cmd) => new Promise((r) => once.set(cmd, r));
    workers.push(w);
  }
  await Promise.all(workers.map((w) => w.await('ready')));
  const slices = workers.map(() => []);
  active.forEach((u, i) => slices[i % WORKERS].push(u));
  await Promise.all(workers.map((w, k) => { const p = w.await('inited'); w.send({ cmd: 'init', cfg, clients: slices[k] }); return p; }));
  const status = async () => {
    const all = await Promise.all(workers.map((w) => ask(w, 'status')));
    return all.reduce((a, s) => ({ connected: a.connected + s.connected, pending: a.pending + s.pending, sent: a.sent + s.sent }), { connected: 0, pending: 0, sent: 0 });
  };
  await until('every client connected', async () => (await status()).connected === active.length, 120000, 500);
  mark('clients connected', { clients: active.length });
  const rssBefore = instances.map((x) => x.rss());

  // A status sample every 500 ms: connected clients over time (time to recover, the report).
  const samples = [];
  let sampling = true;
  (async () => { while (sampling) { const s = await status(); samples.push({ t: now(), ...s }); await sleep(500); } })();

  // ---- load, with the faults in sequence ----
  const loadStart = mark('load start', { rate: RATE, durationS: DURATION / 1000 });
  workers.forEach((w, k) => w.send({ cmd: 'load', rate: (RATE * slices[k].length) / active.length }));
  const faultAt = (k) => loadStart.t + ((k + 1) / (FAULTS.length + 1)) * DURATION;
  const faults = [];
  const redisCli = (...a) => execFileSync('redis-cli', ['-p', env.REL_REDIS_PORT, ...a], { stdio: 'pipe' });
  for (let k = 0; k < FAULTS.length; k++) {
    const wait = faultAt(k) - now();
    if (wait > 0) await sleep(wait);
    const kind = FAULTS[k];
    const victim = instances[1];
    const f = { kind, t: now() };
    if (kind === 'sigkill') {
      f.rssBefore = victim.rss();
      await victim.stop('SIGKILL');
      f.tDown = now();
      await sleep(num('RELIABILITY_KILL_DOWN', 2) * 1000); // as a supervisor restarts it
      await victim.start();
      f.tUp = now();
    } else if (kind === 'graceful') {
      f.rssBefore = victim.rss();
      // As a supervisor would (systemd's TimeoutStopSec): a stop that has not ended after
      // RELIABILITY_STOP_TIMEOUT seconds is ended with SIGKILL, and the report says so.
      const killer = setTimeout(() => { f.stopTimedOut = true; victim.proc.kill('SIGKILL'); }, num('RELIABILITY_STOP_TIMEOUT', 60) * 1000);
      const r = await victim.stop('SIGTERM');
      clearTimeout(killer);
      f.tDown = now();
      f.exit = r;
      await victim.start();
      f.tUp = now();
    } else if (kind === 'redis') {
      try { redisCli('shutdown', 'nosave'); } catch { /* the connection closes as it stops */ }
      f.tDown = now();
      await sleep(num('RELIABILITY_REDIS_DOWN', 2) * 1000);
      execFileSync('sh', ['-c', env.REL_REDIS_START], { stdio: 'pipe' });
      await until('redis', () => String(redisCli('ping')).includes('PONG'), 30000);
      f.tUp = now();
    } else if (kind === 'postgres') {
      execFileSync('sh', ['-c', env.REL_PG_STOP], { stdio: 'pipe' });
      f.tDown = now();
      await sleep(num('RELIABILITY_PG_DOWN', 2) * 1000);
      execFileSync('sh', ['-c', env.REL_PG_START], { stdio: 'pipe' });
      f.tUp = now();
    } else {
      throw new Error(`unknown fault ${kind}`);
    }
    faults.push(f);
    mark(`fault ${kind}`, { downMs: (f.tUp ?? f.t) - f.t });
  }
  const rest = loadStart.t + DURATION - now();
  if (rest > 0) await sleep(rest);

  // ---- drain: no new sends, no forced closes, no faults ----
  await Promise.all(workers.map((w) => { const p = w.await('quiet'); w.send({ cmd: 'quiet' }); return p; }));
  const loadEnd = mark('load end');
  await until('every send resolved and every client connected', async () => {
    const s = await status();
    return s.pending === 0 && s.connected === active.length;
  }, 120000, 500).catch((e) => mark('drain incomplete', { error: String(e.message) }));
  await sleep(DRAIN);
  const lastRecv = async () => Math.max(...(await Promise.all(workers.map((w) => ask(w, 'lastRecv')))).map((r) => r.last));
  const beforeFinal = mark('final reconnect');
  await Promise.all(workers.map((w) => { const p = w.await('final-reconnect'); w.send({ cmd: 'final-reconnect' }); return p; }));
  await until('every client reconnected', async () => (await status()).connected === active.length, 120000, 500)
    .catch((e) => mark('final reconnect incomplete', { error: String(e.message) }));
  // Settled: nothing arrived for 5 s.
  await until('no delivery for 5 s', async () => now() - (await lastRecv()) > 5000, 120000, 500).catch(() => {});
  const end = mark('settled');
  const rssAfter = instances.map((x) => x.rss());
  sampling = false;
  const files = workers.map((_, k) => join(out, `worker-${k}.json`));
  await Promise.all(workers.map((w, k) => { const p = w.await('finished'); w.send({ cmd: 'finish', file: files[k] }); return p; }));
  for (const x of instances) await x.stop('SIGTERM');

  // ---- accounting ----
  const data = files.map((f) => JSON.parse(readFileSync(f, 'utf8')));
  const clients = data.flatMap((d) => d.clients);
  const sends = data.flatMap((d) => d.sends);
  const byUser = new Map(clients.map((c) => [c.user, c]));
  for (const c of clients) c.recvMap = new Map(c.recv);
  const faultWindow = (t) => faults.find((f) => t >= f.t - 500 && t <= (f.tUp ?? f.t) + 5000);

  const dup = { sigkill: 0, graceful: 0, redis: 0, postgres: 0, forced: 0, final: 0, sameConnection: 0, other: 0 };
  const dupByDialect = {};
  const lost = [];
  const late = []; // missing before the final reconnect, delivered by it
  let acked = 0, exactlyOnce = 0, expected = 0, deliveredOnce = 0, deliveries = 0, unackedDelivered = 0;
  const perDialect = {};
  const pd = (d) => (perDialect[d] ||= { expected: 0, exactlyOnce: 0, duplicated: 0, lost: 0, extraCopies: 0 });
  const connCause = (c, n) => c.conns.find((x) => x.n === n)?.cause || 'open';
  const classify = (c, copies) => {
    // The copy before each extra one: how did the connection that had it end?
    const kinds = [];
    for (let j = 1; j < copies.length; j++) {
      const [, prevConn] = copies[j - 1];
      const [, conn] = copies[j];
      if (prevConn === conn) { kinds.push('sameConnection'); continue; }
      const cause = connCause(c, prevConn);
      if (cause === 'forced' || cause === 'final') { kinds.push(cause); continue; }
      const closedAt = c.conns.find((x) => x.n === prevConn)?.tClose;
      const f = closedAt && faultWindow(closedAt);
      kinds.push(f ? f.kind : 'other');
    }
    return kinds;
  };
  const unacked = sends.filter((s) => s.tAck === null);
  for (const s of sends) {
    const rcpts = (members.get(s.chat) || []).filter((u) => u !== s.user);
    if (s.tAck === null) {
      if (rcpts.some((u) => byUser.get(u)?.recvMap.has(s.uid))) unackedDelivered += 1;
      continue;
    }
    acked += 1;
    let allOnce = true;
    for (const u of rcpts) {
      const c = byUser.get(u);
      expected += 1;
      const st = pd(c.dialect);
      st.expected += 1;
      const copies = c.recvMap.get(s.uid) || [];
      deliveries += copies.length;
      if (copies.length === 0) {
        allOnce = false;
        st.lost += 1;
        lost.push({ uid: s.uid, sender: s.user, senderDialect: s.dialect, chat: s.chat, recipient: u, recipientDialect: c.dialect, tSend: s.tFirst, tAck: s.tAck, sinceLoadS: (s.tFirst - loadStart.t) / 1000, fault: faultWindow(s.tFirst)?.kind || null, recipientConns: c.conns.filter((x) => x.tClose === null || x.tClose >= s.tFirst - 1000).slice(0, 4) });
        continue;
      }
      deliveredOnce += 1;
      if (copies[0][0] > beforeFinal.t) late.push({ uid: s.uid, recipient: u, recipientDialect: c.dialect });
      if (copies.length === 1) { st.exactlyOnce += 1; continue; }
      allOnce = false;
      st.duplicated += 1;
      st.extraCopies += copies.length - 1;
      for (const k of classify(c, copies)) { dup[k] += 1; (dupByDialect[c.dialect] ||= {})[k] = ((dupByDialect[c.dialect] ||= {})[k] || 0) + 1; }
    }
    if (allOnce) exactlyOnce += 1;
  }
  const dupPairs = Object.values(perDialect).reduce((a, s) => a + s.duplicated, 0);
  const extra = Object.values(dup).reduce((a, b) => a + b, 0);

  // Replay latency: from a reconnect to the last message of its backlog (sent before it).
  const replay = [];
  const replayBy = {};
  // The backlog of a connection: messages acknowledged (so stored) before it opened. A
  // message still waiting for its ack then (PostgreSQL down, say) arrives live, not replayed.
  const sendTime = new Map(sends.filter((s) => s.tAck !== null).map((s) => [s.uid, s.tAck]));
  for (const c of clients) {
    // Per connection after the first: the last copy of a message sent before it opened.
    const lastBacklog = new Map();
    for (const [uid, copies] of c.recvMap) {
      const sent = sendTime.get(uid);
      if (sent === undefined) continue;
      for (const [t, conn] of copies) {
        if (conn < 2) continue;
        const o = c.conns[conn - 1];
        if (!o || sent >= o.tOpen) continue;
        lastBacklog.set(conn, Math.max(lastBacklog.get(conn) ?? 0, t));
      }
    }
    for (const [conn, t] of lastBacklog) {
      const ms = t - c.conns[conn - 1].tOpen;
      replay.push(ms);
      (replayBy[c.dialect] ||= []).push(ms);
    }
  }

  // Recovery per fault.
  const recovery = faults.map((f) => {
    const next = faults.find((g) => g.t > f.t)?.t ?? loadEnd.t;
    const closedByFault = [];
    for (const c of clients) for (const o of c.conns) {
      if (o.tClose !== null && o.tClose >= f.t - 200 && o.tClose <= (f.tUp ?? f.t) + 5000 && String(o.cause).startsWith('server')) {
        const back = c.conns.find((x) => x.n === o.n + 1);
        closedByFault.push(back ? back.tOpen - f.t : null);
      }
    }
    const back = closedByFault.filter((x) => x !== null);
    // Sends acked again: 1-s windows, share of sends acked within 2 s of their first attempt.
    const share = (a, b) => {
      const w = sends.filter((s) => s.tFirst >= a && s.tFirst < b);
      return w.length ? w.filter((s) => s.tAck !== null && s.tAck - s.tFirst <= 2000).length / w.length : null;
    };
    const base = share(f.t - 5000, f.t);
    let recoveredAt = null;
    for (let t = f.t; t < next; t += 1000) {
      const ok = [0, 1, 2].every((j) => { const s = share(t + j * 1000, t + (j + 1) * 1000); return s === null || base === null || s >= base - 0.05; });
      if (ok) { recoveredAt = t; break; }
    }
    let worstAck = 0;
    for (const s of sends) if (s.tFirst >= f.t && s.tFirst < f.t + 1000 && s.tAck !== null) worstAck = Math.max(worstAck, s.tAck - s.tFirst);
    return {
      kind: f.kind, atS: (f.t - loadStart.t) / 1000, downMs: (f.tUp ?? f.t) - f.t, exit: f.exit, stopMs: f.tDown ? f.tDown - f.t : null, stopTimedOut: !!f.stopTimedOut,
      clientsDisconnected: closedByFault.length,
      clientsReconnectedMs: { p50: pct(back, 50), max: back.length ? Math.max(...back) : null, neverBack: closedByFault.length - back.length },
      ackShareBefore: base, sendsRecoveredMs: recoveredAt === null ? null : recoveredAt - f.t,
      slowestAckOfSendsInFirstSecondMs: worstAck,
    };
  });

  const conns = clients.reduce((a, c) => a + c.conns.length, 0);
  const causes = {};
  for (const c of clients) for (const o of c.conns) { const k = o.cause === null ? 'end' : String(o.cause).replace(/^server:.*/, 'server'); causes[k] = (causes[k] || 0) + 1; }
  const results = {
    startedAt: new Date(T0).toISOString(),
    settings: { clients: active.length, requested: N, durationS: DURATION / 1000, rate: RATE, groupSize: GROUP, workers: WORKERS, faults: FAULTS, mix: Object.fromEntries(MIX), supReceipts: cfg.supReceipts, drainS: DRAIN / 1000 },
    dialects: Object.fromEntries(Object.entries(users.reduce((a, u) => ((a[u.dialect] = (a[u.dialect] || 0) + (u.chats.length ? 1 : 0)), a), {}))),
    conversations: { groups: groups.length, directs: directs.length },
    timeline: events.map((e) => ({ ...e, t: (e.t - T0) / 1000 })),
    messages: {
      sent: sends.length, acknowledged: acked, unacknowledged: unacked.length,
      unacknowledgedErrors: unacked.reduce((a, s) => { const k = s.errors[s.errors.length - 1] || 'none'; a[k] = (a[k] || 0) + 1; return a; }, {}),
      unacknowledgedButDelivered: unackedDelivered,
      resent: sends.filter((s) => s.attempts > 1).length,
      ackMs: (() => { const l = sends.filter((s) => s.tAck !== null).map((s) => s.tAck - s.tFirst); return { p50: pct(l, 50), p90: pct(l, 90), p99: pct(l, 99), max: l.length ? Math.max(...l) : null }; })(),
      errorsSeen: sends.reduce((a, s) => { for (const e of s.errors) a[e] = (a[e] || 0) + 1; return a; }, {}),
    },
    deliveries: {
      expected, deliveredAtLeastOnce: deliveredOnce, exactlyOnce: expected - lost.length - dupPairs, duplicated: dupPairs,
      extraCopies: extra, duplicatesByCause: dup, duplicatesByDialect: dupByDialect, lost: lost.length,
      messagesDeliveredExactlyOnceToEveryone: exactlyOnce, lateAfterFinalReconnect: late.length,
      perDialect, echoesToSender: clients.reduce((a, c) => a + c.echo, 0), copiesReceived: deliveries,
      unknownFrames: data.reduce((a, d) => a + d.unknownFrames, 0),
    },
    lostDetail: lost.slice(0, 200),
    lateDetail: late.slice(0, 50),
    replayMs: { samples: replay.length, p50: pct(replay, 50), p90: pct(replay, 90), p99: pct(replay, 99), max: replay.length ? Math.max(...replay) : null,
      byDialect: Object.fromEntries(Object.entries(replayBy).map(([d, l]) => [d, { samples: l.length, p50: pct(l, 50), p99: pct(l, 99) }])) },
    recovery,
    connections: { total: conns, endedBy: causes, connectErrors: clients.reduce((a, c) => a + c.connectErrors, 0) },
    memory: { before: rssBefore, after: rssAfter, note: 'RSS in bytes of instance i0 and i1; i1 is the instance the SIGKILL and the graceful restart hit, so its "after" is a fresh process' },
    samples: samples.map((s) => ({ t: (s.t - loadStart.t) / 1000, connected: s.connected, pending: s.pending })),
  };
  writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 1));
  log('results', JSON.stringify({ messages: results.messages, deliveries: { ...results.deliveries, perDialect: undefined }, replayMs: results.replayMs, recovery }, null, 1));
  process.exit(0);
}

if (process.argv.includes('--worker')) worker();
else coordinator().catch((e) => { console.error(e); process.exit(1); });
