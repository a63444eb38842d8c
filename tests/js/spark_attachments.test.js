// Attachments (SPEC §7.2): multipart upload with size and sniffed-type checks, images scaled
// to IMAGE_MAX_WIDTH×IMAGE_MAX_HEIGHT with a thumbnail, downloads for members only, voice
// and location messages, and the attachment limit per message.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { backends, startServer, connect, token, uid, api, upload, createChat, call, waitFor, closeAll } from './helpers.js';
import { png, pngSize } from './png.js';

const PDF = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n', 'latin1');

/** The start of an Ogg Opus stream: enough for the magic-number check. */
function oggOpus() {
  const b = Buffer.alloc(200);
  b.write('OggS', 0, 'latin1');
  b.write('OpusHead', 28, 'latin1');
  return b;
}

/** The start of a WebM file (EBML header with the webm doctype), as browsers record voice. */
function webm() {
  const b = Buffer.alloc(400, 0x20);
  Buffer.from([0x1a, 0x45, 0xdf, 0xa3]).copy(b, 0);
  Buffer.from('\x42\x82\x84webm', 'latin1').copy(b, 8);
  return b;
}

async function download(url, tok, path, headers = {}) {
  const res = await fetch(url + path, { headers: { authorization: `Bearer ${tok}`, ...headers } });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

for (const backend of backends()) {
  describe(`attachments on ${backend}`, () => {
    let srv; // defaults: 10 MiB, 2048×2048, 10 per message
    let small; // 200 kB, 300×200, 3 per message
    before(async () => {
      [srv, small] = await Promise.all([
        startServer({ backend }),
        startServer({ backend, env: { MEDIA_MAX_SIZE: '200000', IMAGE_MAX_WIDTH: '300', IMAGE_MAX_HEIGHT: '200', MAX_ATTACHMENTS_PER_MESSAGE: '3' } }),
      ]);
    });
    after(async () => { await Promise.all([srv.stop(), small.stop()]); });

    it('scales a real PNG to fit IMAGE_MAX_WIDTH×IMAGE_MAX_HEIGHT and makes a thumbnail', async () => {
      const alice = uid('alice');
      const res = await upload(small.url, token(alice), png(900, 300), { contentType: 'image/png', name: 'wide.png' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const a = res.body.data;
      assert.equal(a.type, 'image');
      assert.equal(a.contentType, 'image/png');
      assert.equal(a.fileName, 'wide.png');
      assert.deepEqual([a.width, a.height], [300, 100], 'fits 300×200, aspect kept');
      assert.equal(a.uploaderId, alice);
      assert.equal(a.url, `/api/attachments/${a.id}`);
      assert.equal(a.thumbnailUrl, `/api/attachments/${a.id}/thumbnail`);

      const file = await download(small.url, token(alice), a.url);
      assert.equal(file.status, 200);
      assert.equal(file.headers.get('content-type'), 'image/png');
      assert.equal(file.headers.get('x-content-type-options'), 'nosniff');
      assert.match(file.headers.get('content-disposition'), /^inline; filename="wide.png"/);
      assert.deepEqual(pngSize(file.bytes), { width: 300, height: 100 });
      assert.equal(file.bytes.length, a.size);
      const thumb = await download(small.url, token(alice), a.thumbnailUrl);
      assert.equal(thumb.status, 200);
      const t = pngSize(thumb.bytes);
      assert.ok(t.width <= 320 && t.height <= 320 && t.width / t.height === 3, JSON.stringify(t));
    });

    it('scales with the default 2048×2048 box too', async () => {
      const res = await upload(srv.url, token(uid('alice')), png(3000, 1000), { contentType: 'image/png', name: 'big.png' });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      assert.deepEqual([res.body.data.width, res.body.data.height], [2048, 683]);
    });

    it('refuses files over MEDIA_MAX_SIZE with 413', async () => {
      const tok = token(uid('alice'));
      for (const size of [200001, 1500000]) {
        const res = await upload(small.url, tok, randomBytes(size), { name: 'big.bin' });
        assert.equal(res.status, 413, `${size} bytes`);
        assert.equal(res.body.error.code, 'CONTENT_TOO_LONG');
      }
    });

    it('refuses a non-image sent as an image, unknown types and bad requests', async () => {
      const tok = token(uid('alice'));
      const asImage = await upload(srv.url, tok, PDF, { contentType: 'image/png', name: 'cat.png' });
      assert.equal(asImage.status, 422);
      assert.equal(asImage.body.error.code, 'VALIDATION_FAILED');
      assert.match(asImage.body.error.message, /not an image/);
      const askedImage = await upload(srv.url, tok, PDF, { contentType: 'application/pdf', kind: 'image' });
      assert.equal(askedImage.body.error.code, 'VALIDATION_FAILED');
      const corrupt = png(50, 50).subarray(0, 60);
      assert.equal((await upload(srv.url, tok, corrupt, { contentType: 'image/png' })).body.error.code, 'VALIDATION_FAILED');
      const exe = Buffer.concat([Buffer.from('MZ'), randomBytes(500)]);
      assert.equal((await upload(srv.url, tok, exe, { name: 'setup.exe' })).status, 422);
      assert.equal((await upload(srv.url, tok, Buffer.alloc(0))).status, 422);
      // A PDF as itself is fine, and a download is offered as a file, not shown inline.
      const pdf = await upload(srv.url, tok, PDF, { contentType: 'application/pdf', name: 'report.pdf' });
      assert.equal(pdf.status, 201);
      assert.equal(pdf.body.data.type, 'file');
      assert.equal(pdf.body.data.thumbnailUrl, null);
      const got = await download(srv.url, tok, pdf.body.data.url);
      assert.match(got.headers.get('content-disposition'), /^attachment;/);
      assert.equal((await download(srv.url, tok, pdf.body.data.url + '/thumbnail')).status, 404);
      // Not multipart, or no file field.
      const plain = await api(srv.url, tok, 'POST', '/api/attachments', { file: 'nope' });
      assert.equal(plain.status, 422);
      const form = new FormData();
      form.append('type', 'image');
      const noFile = await fetch(srv.url + '/api/attachments', { method: 'POST', headers: { authorization: `Bearer ${tok}` }, body: form });
      assert.equal(noFile.status, 422);
    });

    it('lets the members of a conversation download what was sent to it, and nobody else', async () => {
      const [alice, bob, mallory] = [uid('alice'), uid('bob'), uid('mallory')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const pic = (await upload(srv.url, token(alice), png(40, 30), { contentType: 'image/png', name: 'pic.png' })).body.data;
      assert.equal((await download(srv.url, token(bob), pic.url)).status, 403, 'not sent yet');
      assert.equal((await download(srv.url, token(alice), pic.url)).status, 200, 'the uploader may');

      const b = await connect(srv.url, { namespace: '/spark', auth: { token: token(bob) } });
      const live = waitFor(b, 'new_message');
      const sent = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: '', attachments: [pic.id] });
      assert.equal(sent.status, 201, JSON.stringify(sent.body));
      const m = sent.body.data;
      assert.equal(m.type, 'image');
      assert.equal(m.attachments.length, 1);
      assert.deepEqual(m.attachments[0], { id: pic.id, type: 'image', contentType: 'image/png', fileName: 'pic.png', size: pic.size, width: 40, height: 30, url: pic.url, thumbnailUrl: pic.thumbnailUrl });
      assert.deepEqual((await live).attachments, m.attachments);

      assert.equal((await download(srv.url, token(bob), pic.url)).status, 200);
      assert.equal((await download(srv.url, token(bob), pic.thumbnailUrl)).status, 200);
      assert.equal((await download(srv.url, token(mallory), pic.url)).status, 403);
      assert.equal((await download(srv.url, `${token(bob)}x`, pic.url)).status, 401);
      assert.equal((await download(srv.url, token(bob), '/api/attachments/no-such-file')).status, 404);
      // `?token=` works for <img src>.
      assert.equal((await fetch(`${srv.url}${pic.url}?token=${token(bob)}`)).status, 200);

      // Someone else's upload cannot be attached, nor an unknown one.
      const theirs = await api(srv.url, token(bob), 'POST', `/api/conversations/${chat}/messages`, { content: 'mine?', attachments: [pic.id] });
      assert.equal(theirs.status, 403);
      const unknown = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: 'x', attachments: ['nope'] });
      assert.equal(unknown.status, 404);

      // Deleted for everyone: the members lose access, the uploader keeps it.
      await api(srv.url, token(alice), 'DELETE', `/api/messages/${m.id}?deleteFor=everyone`);
      assert.equal((await download(srv.url, token(bob), pic.url)).status, 403);
      assert.equal((await download(srv.url, token(alice), pic.url)).status, 200);
      b.close();
    });

    it('caps attachments per message at MAX_ATTACHMENTS_PER_MESSAGE and refuses duplicates', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(small.url, token(alice), 'direct', [bob]);
      const ids = [];
      for (let i = 0; i < 4; i++) ids.push((await upload(small.url, token(alice), png(8, 8), { contentType: 'image/png' })).body.data.id);
      const four = await api(small.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: 'x', attachments: ids });
      assert.equal(four.status, 422);
      assert.match(four.body.error.message, /at most 3/);
      const dup = await api(small.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: 'x', attachments: [ids[0], ids[0]] });
      assert.equal(dup.status, 422);
      const three = await api(small.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { content: 'album', attachments: ids.slice(0, 3) });
      assert.equal(three.status, 201);
      assert.deepEqual(three.body.data.attachments.map((a) => a.id), ids.slice(0, 3), 'in the order given');
    });

    it('sends voice messages: one audio recording, also in a browser\'s webm, with range requests', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
      const ogg = (await upload(srv.url, token(alice), oggOpus(), { contentType: 'audio/ogg', name: 'note.ogg', kind: 'voice' })).body.data;
      assert.equal(ogg.type, 'audio');
      assert.equal(ogg.contentType, 'audio/ogg');
      const rec = await upload(srv.url, token(alice), webm(), { contentType: 'audio/webm;codecs=opus', name: 'rec.webm', kind: 'voice' });
      assert.equal(rec.status, 201, JSON.stringify(rec.body));
      assert.equal(rec.body.data.type, 'audio');
      assert.equal(rec.body.data.contentType, 'audio/webm');
      const video = await upload(srv.url, token(alice), webm(), { contentType: 'video/webm', name: 'clip.webm' });
      assert.equal(video.body.data.type, 'video');

      const voice = await call(a, 'send_message', { conversationId: chat, type: 'voice', attachments: [ogg.id] });
      assert.equal(voice.type, 'voice');
      assert.equal(voice.content, '');
      const pic = (await upload(srv.url, token(alice), png(4, 4), { contentType: 'image/png' })).body.data;
      const notAudio = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { type: 'voice', attachments: [pic.id] });
      assert.equal(notAudio.body.error.code, 'VALIDATION_FAILED');
      const two = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, { type: 'voice', attachments: [ogg.id, rec.body.data.id] });
      assert.equal(two.body.error.code, 'VALIDATION_FAILED');

      // Players seek with range requests.
      const part = await download(srv.url, token(bob), ogg.url, { range: 'bytes=0-3' });
      assert.equal(part.status, 206);
      assert.equal(part.bytes.toString('latin1'), 'OggS');
      assert.equal(part.headers.get('content-type'), 'audio/ogg');
      a.close();
    });

    it('sends location messages with a validated position, seen by SUP clients in metadata', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const chat = await createChat(srv.url, token(alice), 'direct', [bob]);
      const a = await connect(srv.url, { namespace: '/spark', auth: { token: token(alice) } });
      const b = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob) } });
      const atBob = waitFor(b, 'message:new');
      const here = { latitude: 52.5163, longitude: 13.3777, accuracy: 12, address: 'Pariser Platz' };
      const m = await call(a, 'send_message', { conversationId: chat, type: 'location', location: here });
      assert.equal(m.type, 'location');
      assert.deepEqual(m.location, here);
      const sup = await atBob;
      assert.equal(sup.messageType, 'location');
      assert.deepEqual(sup.metadata.location, here);
      // `type` may be left out when a location is given.
      assert.equal((await call(a, 'send_message', { conversationId: chat, location: { latitude: -33.86, longitude: 151.21 } })).type, 'location');
      // SUP clients send one through metadata.location.
      const fromSup = await call(b, 'message:new', { chatId: chat, encryptedContent: '', messageType: 'location', metadata: { location: { latitude: 0, longitude: 0 } } });
      assert.equal(fromSup.messageType, 'location');
      for (const bad of [
        { type: 'location' },
        { type: 'location', location: { latitude: 91, longitude: 0 } },
        { type: 'location', location: { latitude: 0, longitude: -180.5 } },
        { type: 'location', location: { latitude: '52', longitude: 13 } },
        { type: 'location', location: { latitude: 1, longitude: 1, accuracy: -3 } },
        { type: 'image', content: 'x', location: { latitude: 1, longitude: 1 } },
      ]) {
        const res = await api(srv.url, token(alice), 'POST', `/api/conversations/${chat}/messages`, bad);
        assert.equal(res.status, 422, JSON.stringify(bad));
        assert.equal(res.body.error.code, 'VALIDATION_FAILED', JSON.stringify(bad));
      }
      assert.equal((await call(b, 'message:new', { chatId: chat, encryptedContent: 'x', messageType: 'location' }).catch((e) => e.message)).includes('VALIDATION_FAILED'), true);
      closeAll(a, b);
    });
  });
}
