// The SUP seed's "Manual Testing with Socket.io Client" snippet, nearly verbatim: only the
// token, the chat id and the assertions are ours.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, token, uid, createChat, eventually } from './helpers.js';

describe('the SUP seed snippet', () => {
  let srv;
  before(async () => { srv = await startServer(); });
  after(async () => { await srv.stop(); });

  it('connects, sends, and gets the acknowledgement and live events it expects', async () => {
    const me = uid('seed');
    const friend = uid('friend');
    const chat_123 = await createChat(srv.url, token(me), 'direct', [friend]);
    const log = [];
    const console = { log: (...a) => log.push(a), error: (...a) => log.push(['ERROR', ...a]) };

    const socket = io(srv.url, {
      auth: {
        token: token(me)
      }
    });

    socket.on('connect', () => {
      console.log('Connected:', socket.id);

      // Send a message
      socket.emit('message:new', {
        chatId: chat_123,
        encryptedContent: 'Hello, World!',
        messageType: 'text'
      }, (response) => {
        console.log('Message sent:', response);
      });
    });

    socket.on('message:new', (data) => {
      console.log('New message:', data);
    });

    socket.on('presence:update', (data) => {
      console.log('Presence update:', data);
    });

    socket.on('error', (error) => {
      console.error('Error:', error);
    });

    // The friend's reply reaches the snippet's `message:new` listener.
    const friendSocket = io(srv.url, { auth: { token: token(friend) } });
    await eventually(() => log.some((l) => l[0] === 'Message sent:'), 10000, 'ack');
    const sent = log.find((l) => l[0] === 'Message sent:')[1];
    assert.equal(sent.success, true);
    assert.equal(sent.data.encryptedContent, 'Hello, World!');
    assert.equal(sent.data.senderId, me);
    friendSocket.emit('message:new', { chatId: chat_123, encryptedContent: 'Hi back', messageType: 'text' });
    await eventually(() => log.some((l) => l[0] === 'New message:'), 10000, 'reply');
    assert.equal(log.find((l) => l[0] === 'New message:')[1].encryptedContent, 'Hi back');
    assert.equal(log.filter((l) => l[0] === 'ERROR').length, 0);
    socket.close();
    friendSocket.close();
  });
});
