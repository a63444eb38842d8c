// Per-device delivery (SPEC §4, §5.4): what a device was handed is tracked per device, so a
// laptop that was off is pushed, when it reconnects, what the phone already had, once; and a
// device is never pushed again what it confirmed. Devices are named by the token's `deviceId`
// or the handshake's `auth.deviceId`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  backends, startServer, connect, token, uid, call, waitFor, collect, createChat, closeAll,
} from './helpers.js';

const send = (socket, chatId, tempId) =>
  call(socket, 'message:new', { chatId, encryptedContent: `text ${tempId}`, messageType: 'text', tempId });

for (const backend of backends()) {
  describe(`per-device delivery on ${backend}`, () => {
    it('pushes a device that was off what another device of the same user already had, once', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'switchboard-devices-'));
      const keep = backend === 'sqlite' ? { databaseUrl: `sqlite://${join(dir, 'devices.db')}?mode=rwc` } : {};
      let srv = await startServer({ backend, ...keep });
      const databaseUrl = srv.databaseUrl;
      const [alice, bob] = [uid('alice'), uid('bob')];
      try {
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        // The phone names its device in the token (SUP's tokens do), the laptop at the handshake.
        const phoneToken = token(bob, { shape: 'sup', deviceId: 'phone' });
        const laptopAuth = { token: token(bob), deviceId: 'laptop' };
        const laptop = await connect(srv.url, { auth: laptopAuth });
        const a = await connect(srv.url, { auth: { token: token(alice) } });
        const first = waitFor(laptop, 'message:new', (m) => m.tempId === 'm0');
        await send(a, chat, 'm0');
        await first;
        laptop.close(); // the laptop goes off

        const phone = await connect(srv.url, { auth: { token: phoneToken } });
        const got = waitFor(phone, 'message:new', (m) => m.tempId === 'm1');
        const m1 = await send(a, chat, 'm1');
        await got;
        // A graceful stop: the phone answers the close, so what it was handed is recorded as
        // delivered to the phone (and only to the phone).
        closeAll(a);
        assert.equal(await srv.stop(), 0);
        phone.close();

        srv = await startServer({ backend, databaseUrl });
        // The laptop was off: it is pushed m1 (not m0, which it had), without asking, once.
        const laptopGot = [];
        const laptop2 = await connect(srv.url, { auth: laptopAuth, listen: (s) => s.on('message:new', (m) => laptopGot.push(m)) });
        const phoneGot = [];
        const phone2 = await connect(srv.url, { auth: { token: phoneToken }, listen: (s) => s.on('message:new', (m) => phoneGot.push(m)) });
        const a2 = await connect(srv.url, { auth: { token: token(alice) } });
        const marks = [waitFor(laptop2, 'message:new', (m) => m.tempId === 'm2'), waitFor(phone2, 'message:new', (m) => m.tempId === 'm2')];
        await send(a2, chat, 'm2');
        await Promise.all(marks);
        assert.deepEqual(laptopGot.map((m) => m.tempId), ['m1', 'm2'], 'the laptop gets what the phone had, then live');
        assert.equal(laptopGot[0].id, m1.id);
        assert.deepEqual(phoneGot.map((m) => m.tempId), ['m2'], 'the phone is not pushed what it confirmed');
        closeAll(laptop2, phone2, a2);
      } finally {
        await srv.stop();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    it('pushes the sender\'s other device what the sender sent while it was off', async () => {
      const srv = await startServer({ backend });
      try {
        const [alice, bob] = [uid('alice'), uid('bob')];
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        // The tablet has been seen before; then it goes off.
        const tablet = await connect(srv.url, { auth: { token: token(alice), deviceId: 'tablet' } });
        tablet.close();
        const desk = await connect(srv.url, { auth: { token: token(alice), deviceId: 'desk' } });
        const deskGot = collect(desk, 'message:new');
        const whileOff = await send(desk, chat, 'while-tablet-off');
        const tabletGot = [];
        const tablet2 = await connect(srv.url, {
          auth: { token: token(alice), deviceId: 'tablet' },
          listen: (s) => s.on('message:new', (m) => tabletGot.push(m)),
        });
        const b = await connect(srv.url, { auth: { token: token(bob) } });
        const markers = [waitFor(tablet2, 'message:new', (m) => m.tempId === 'marker'), waitFor(desk, 'message:new', (m) => m.tempId === 'marker')];
        await send(b, chat, 'marker');
        await Promise.all(markers);
        assert.deepEqual(tabletGot.map((m) => m.tempId), ['while-tablet-off', 'marker']);
        assert.equal(tabletGot[0].id, whileOff.id);
        assert.deepEqual(deskGot.map((m) => m.tempId), ['marker'], 'the sending device has its message from the ack');
        closeAll(desk, tablet2, b);
      } finally {
        await srv.stop();
      }
    });

    it('refuses a handshake deviceId that is not a short printable string', async () => {
      const srv = await startServer({ backend });
      try {
        await assert.rejects(
          connect(srv.url, { auth: { token: token(uid('eve')), deviceId: 'x'.repeat(200) } }),
          /deviceId/,
        );
      } finally {
        await srv.stop();
      }
    });
  });
}
