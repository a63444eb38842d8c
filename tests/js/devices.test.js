// Per-device delivery (SPEC §4, §5.4): what a device was handed is tracked per device, so a
// laptop that was off is pushed, when it reconnects, what the phone already had, once; and a
// device is never pushed again what it confirmed. Devices are named by the token's `deviceId`
// or the handshake's `auth.deviceId`.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  backends, startServer, connect, token, uid, call, waitFor, collect, createChat, closeAll,
} from './helpers.js';

const send = (socket, chatId, tempId) =>
  call(socket, 'message:new', { chatId, encryptedContent: `text ${tempId}`, messageType: 'text', tempId });

for (const backend of backends()) {
  describe(`per-device delivery on ${backend}`, () => {
    it('pushes a device that was off what another device of the same user already had, once', async () => {
      // Each phase ends with a graceful stop, which every client answers: what each device
      // was handed is then confirmed, and recorded for that device alone.
      const first = await startServer({ backend });
      const { databaseUrl } = first;
      const graceful = async (s) => { s.proc.kill('SIGTERM'); return (await s.exited).code; };
      let srv = first;
      const [alice, bob] = [uid('alice'), uid('bob')];
      // The phone names its device in the token (as SUP's tokens do), the laptop at the handshake.
      const phoneToken = token(bob, { shape: 'sup', deviceId: 'phone' });
      const laptopAuth = { token: token(bob), deviceId: 'laptop' };
      try {
        const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
        // 1. The laptop is on and gets m0.
        let a = await connect(srv.url, { auth: { token: token(alice) } });
        const laptop = await connect(srv.url, { auth: laptopAuth });
        const m0 = waitFor(laptop, 'message:new', (m) => m.tempId === 'm0');
        await send(a, chat, 'm0');
        await m0;
        assert.equal(await graceful(srv), 0);
        closeAll(a, laptop);

        // 2. The laptop is off; the phone (a device never seen before) gets m1.
        srv = await startServer({ backend, databaseUrl });
        a = await connect(srv.url, { auth: { token: token(alice) } });
        const phoneFirst = [];
        const phone = await connect(srv.url, { auth: { token: phoneToken }, listen: (s) => s.on('message:new', (m) => phoneFirst.push(m)) });
        const got = waitFor(phone, 'message:new', (m) => m.tempId === 'm1');
        const m1 = await send(a, chat, 'm1');
        await got;
        assert.deepEqual(phoneFirst.map((m) => m.tempId), ['m1'], 'a new device starts where the user\'s devices are');
        assert.equal(await graceful(srv), 0);
        closeAll(a, phone);
        await srv.stop();

        // 3. Both come back: the laptop is pushed m1 (which only the phone had), once; the
        // phone is pushed nothing it confirmed.
        srv = await startServer({ backend, databaseUrl });
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
        await srv.stop();
      } finally {
        await first.stop();
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
