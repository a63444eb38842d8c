// A Socialink client for the tests: real Ed25519 identity keys and X25519 prekeys made with
// Node's `crypto`, REST calls under /api/v1 as a given user, and the per-device WebSocket
// (`/ws/{user_id}/{device_id}`) through the frame-recording client of mrezhen_client.js.
import { generateKeyPairSync, sign, randomUUID } from 'node:crypto';
import { api, token, uid } from './helpers.js';
import { open } from './mrezhen_client.js';

export const NIL = '00000000-0000-0000-0000-000000000000';

/** The 32 raw bytes of an Ed25519 or X25519 public key. */
export function rawPublic(publicKey) {
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return der.subarray(der.length - 32);
}

export const b64 = (bytes) => Buffer.from(bytes).toString('base64');

/** A fresh X25519 public key, standard base64. */
export const x25519 = () => b64(rawPublic(generateKeyPairSync('x25519').publicKey));

let nextKeyId = 1;

/**
 * A device's key material: an Ed25519 identity key pair, a signed X25519 prekey (signed by
 * the identity key over its 32 raw bytes) and `prekeys` one-time X25519 prekeys.
 * `registration()` is the `keys/register` body; `signed(id)` makes another signed prekey;
 * `onetime(n)` more one-time prekeys.
 */
export function makeDevice({ deviceId = uid('dev'), name = 'test phone', prekeys = 5 } = {}) {
  const identity = generateKeyPairSync('ed25519');
  const identityKey = b64(rawPublic(identity.publicKey));
  const signed = (id = nextKeyId++) => {
    const pub = rawPublic(generateKeyPairSync('x25519').publicKey);
    return { id, public_key: b64(pub), signature: b64(sign(null, pub, identity.privateKey)) };
  };
  const onetime = (n) => Array.from({ length: n }, () => ({ id: nextKeyId++, public_key: x25519() }));
  const signedPrekey = signed();
  const onetimePrekeys = onetime(prekeys);
  return {
    deviceId,
    identity,
    identityKey,
    signedPrekey,
    onetimePrekeys,
    signed,
    onetime,
    registration: (extra = {}) => ({
      device_id: deviceId,
      device_name: name,
      registration_id: 1 + Math.floor(Math.random() * 16000),
      identity_key: identityKey,
      signed_prekey: signedPrekey,
      onetime_prekeys: onetimePrekeys,
      ...extra,
    }),
  };
}

/**
 * A Socialink user: `call(method, path, body)` → `{ status, body }` under /api/v1 with the
 * user's token; `register(opts)` registers a fresh device (makeDevice opts) and returns it
 * (with `.row` = the Device answered); `send(body)` posts messages/send as this user;
 * `socket(device)` opens `/ws/{user}/{device}` and resolves with the recording client.
 */
export class Sl {
  constructor(url, user = uid('sl')) {
    this.url = url;
    this.user = user;
    this.tok = token(user);
  }

  call(method, path, body) {
    return api(this.url, this.tok, method, '/api/v1' + path, body);
  }

  async register(opts = {}) {
    const device = makeDevice(opts);
    const res = await this.call('POST', `/keys/register/${this.user}`, device.registration());
    if (res.status !== 201) throw new Error(`register: ${res.status} ${JSON.stringify(res.body)}`);
    device.row = res.body;
    return device;
  }

  async send(body) {
    const res = await this.call('POST', `/messages/send/${this.user}`, body);
    if (res.status !== 201) throw new Error(`send: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** Sends `text` to `recipient` as ciphertext (its UTF-8 bytes, base64). */
  sendTo(recipient, text, extra = {}) {
    return this.send({ conversation_id: NIL, recipient_id: recipient, ciphertext: b64(Buffer.from(text)), ...extra });
  }

  queue(deviceId, query = '') {
    return this.call('GET', `/messages/queue/${this.user}/${deviceId}${query}`);
  }

  ack(deviceId, ids) {
    return this.call('DELETE', `/messages/queue/${this.user}/${deviceId}`, ids);
  }

  socket(deviceId, opts = {}) {
    return open(this.url, this.tok, { path: `/ws/${this.user}/${deviceId}`, ...opts });
  }
}

/** Decodes a base64 ciphertext back to text. */
export const text = (ciphertext) => Buffer.from(ciphertext, 'base64').toString('utf8');

export const freshId = () => randomUUID();
