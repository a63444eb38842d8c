// The core speaks no dialect (issue 10): an error that names a request field names it in the
// words of the client's dialect, over Socket.IO and REST alike.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, token, uid, ask, api, closeAll } from './helpers.js';

describe('error messages in each dialect\'s words', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  it('names a chat chatId to SUP and conversationId to Spark', async () => {
    const me = uid('me');
    const sup = await connect(srv.url, { namespace: '/sup', auth: { token: token(me) } });
    const spark = await connect(srv.url, { namespace: '/spark', auth: { token: token(me) } });
    const long = 'x'.repeat(200);
    const fromSup = await ask(sup, 'chat:join', { chatId: long });
    assert.equal(fromSup.error.code, 'VALIDATION_FAILED');
    assert.equal(fromSup.error.message, 'chatId must be 1 to 128 characters');
    const fromSpark = await ask(spark, 'send_message', { conversationId: long, content: 'hi' });
    assert.equal(fromSpark.error.code, 'VALIDATION_FAILED');
    assert.equal(fromSpark.error.message, 'conversationId must be 1 to 128 characters');
    const rest = await api(srv.url, token(me), 'GET', `/api/conversations/${long}/messages`);
    assert.equal(rest.status, 422);
    assert.equal(rest.body.error.message, 'conversationId must be 1 to 128 characters');
    closeAll(sup, spark);
  });

  it('says what a rate limit counts without naming another dialect\'s event', async () => {
    const tight = await startServer({ env: { RATE_LIMIT_MESSAGE_NEW: '1/60s' } });
    try {
      const [a, b] = [uid('a'), uid('b')];
      const chat = (await api(tight.url, token(a), 'POST', '/api/conversations', { type: 'direct', participantIds: [b] })).body.data.id;
      const spark = await connect(tight.url, { namespace: '/spark', auth: { token: token(a) } });
      assert.equal((await ask(spark, 'send_message', { conversationId: chat, content: 'one' })).success, true);
      const refused = await ask(spark, 'send_message', { conversationId: chat, content: 'two' });
      assert.equal(refused.error.code, 'RATE_LIMITED');
      assert.match(refused.error.message, /^too many messages, retry in \d+ ms$/);
      spark.close();
    } finally {
      await tight.stop();
    }
  });
});
