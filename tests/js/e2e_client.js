// Helpers for the e2e dialect's tests: an End2End Chat client as its web client behaves
// (no token, `join-session`, per-recipient `send-message` copies).
import { connect, ask, waitFor, uid } from './helpers.js';

/** A socket on the e2e dialect (namespace `/e2e`, or `/` where DEFAULT_PROFILE=e2e). */
export function visitor(url, { namespace = '/e2e', ...opts } = {}) {
  return connect(url, { namespace, transports: ['websocket', 'polling'], ...opts });
}

/** Records every event the socket receives, in order, as `[name, payload]`. */
export function record(socket) {
  const seen = [];
  socket.onAny((name, payload) => seen.push([name, payload]));
  return seen;
}

/**
 * Joins and resolves once the joiner has its history, metadata and member list, with those
 * three payloads and the ack. Rejects with the `session-error` if one comes instead.
 */
export async function join(socket, payload) {
  const history = waitFor(socket, 'messages-history');
  const metadata = waitFor(socket, 'session-metadata');
  const keys = waitFor(socket, 'public-keys-updated', (list) => list.some((m) => m.userId === payload.userId));
  const error = waitFor(socket, 'session-error').then((e) => { throw Object.assign(new Error(e.message), e); });
  const ack = await ask(socket, 'join-session', payload);
  if (!ack.success) {
    await error.catch((e) => { throw e; });
  }
  error.catch(() => {});
  const [h, m, k] = await Promise.all([history, metadata, keys]);
  return { ack, history: h, metadata: m, keys: k };
}

/** Asks something that is refused and resolves with the `session-error` and the ack. */
export async function refused(socket, event, payload) {
  const error = waitFor(socket, 'session-error');
  const ack = await ask(socket, event, payload);
  return { error: await error, ack };
}

/** One round trip: after it, whatever the server pushed to the socket before has arrived. */
export async function roundTrip(socket) {
  await ask(socket, 'e2e-round-trip', {});
}

/** A fresh session id and member ids. */
export const names = () => ({ session: uid('s'), alice: uid('alice'), bob: uid('bob'), carol: uid('carol') });

/** A fake public key (the server never looks inside). */
export const pk = (who) => `-----BEGIN PUBLIC KEY-----${who}-----END PUBLIC KEY-----`;
