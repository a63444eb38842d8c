// The Spark seed's "Socket.IO Client" and "REST API Integration" snippets, nearly verbatim:
// only the server URL, the token and the assertions are ours. The server runs with
// DEFAULT_PROFILE=spark, so the snippet's `io(url)` (namespace `/`) speaks Spark.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import axios from 'axios';
import { backends, startServer, token, uid, connect, call, waitFor, eventually, closeAll } from './helpers.js';

for (const backend of backends()) {
  describe(`the Spark seed snippets on ${backend}`, () => {
    let srv;
    before(async () => { srv = await startServer({ backend, env: { DEFAULT_PROFILE: 'spark' } }); });
    after(async () => { await srv.stop(); });

    it('runs the Socket.IO Client snippet: connect, send, receive, typing, mark read', async () => {
      const [me, friend] = [uid('spark'), uid('friend')];
      const log = [];
      const console = { log: (...a) => log.push(a) };
      const shown = [];
      const displayMessage = (m) => shown.push(m);
      const typing = [];
      const showTypingIndicator = (userId, conversationId) => typing.push({ userId, conversationId });

      // --- the seed's snippet, with the URL and token filled in ---
      const socket = io(srv.url, {
        auth: {
          token: token(me, { username: 'me' })
        },
        transports: ['websocket', 'polling']
      });

      // Connection events
      socket.on('connect', () => {
        console.log('Connected to Spark');
      });

      socket.on('disconnect', () => {
        console.log('Disconnected from Spark');
      });

      // Send message
      function sendMessage(conversationId, content) {
        socket.emit('send_message', {
          conversationId,
          content,
          encrypted: false
        });
      }

      // Listen for new messages
      socket.on('new_message', (message) => {
        console.log('Received message:', message);
        displayMessage(message);
      });

      // Typing indicators
      function startTyping(conversationId) {
        socket.emit('typing_start', { conversationId });
      }

      function stopTyping(conversationId) {
        socket.emit('typing_stop', { conversationId });
      }

      // Handle typing updates
      socket.on('user_typing', (data) => {
        showTypingIndicator(data.userId, data.conversationId);
      });

      // Mark messages as read
      socket.on('new_message', (message) => {
        socket.emit('mark_read', {
          conversationId: message.conversationId,
          messageId: message.id
        });
      });
      // --- end of the snippet ---

      await eventually(() => log.some((l) => l[0] === 'Connected to Spark'), 10000, 'connect');
      const friendSocket = await connect(srv.url, { auth: { token: token(friend, { username: 'friend' }) } });
      const { data: { data: conversation } } = await axios.post(`${srv.url}/api/conversations`,
        { type: 'direct', participantIds: [friend], encrypted: false },
        { headers: { Authorization: `Bearer ${token(me)}` } });

      const arrived = waitFor(friendSocket, 'new_message');
      sendMessage(conversation.id, 'Hello!');
      const hello = await arrived;
      assert.equal(hello.content, 'Hello!');
      assert.equal(hello.senderId, me);
      assert.equal(hello.conversationId, conversation.id);
      assert.equal(hello.encrypted, false);
      assert.deepEqual(hello.attachments, []);
      assert.deepEqual(hello.reactions, {});
      assert.equal(hello.edited, false);
      assert.equal(hello.seq, 1);

      // The friend answers; the snippet displays it and marks it read.
      const read = waitFor(friendSocket, 'message_read');
      const reply = await call(friendSocket, 'send_message', { conversationId: conversation.id, content: 'Hi back' });
      await eventually(() => shown.some((m) => m.id === reply.id), 10000, 'displayMessage');
      const receipt = await read;
      assert.equal(receipt.messageId, reply.id);
      assert.equal(receipt.conversationId, conversation.id);
      assert.equal(receipt.userId, me);
      assert.ok(!Number.isNaN(Date.parse(receipt.readAt)));

      // Typing both ways, with isTyping telling start from stop.
      const started = waitFor(friendSocket, 'user_typing', (d) => d.isTyping === true);
      startTyping(conversation.id);
      const t = await started;
      assert.deepEqual(t, { conversationId: conversation.id, userId: me, username: 'me', isTyping: true });
      const stopped = waitFor(friendSocket, 'user_typing', (d) => d.isTyping === false);
      stopTyping(conversation.id);
      assert.equal((await stopped).userId, me);
      await call(friendSocket, 'typing_start', { conversationId: conversation.id });
      await eventually(() => typing.some((x) => x.userId === friend), 10000, 'showTypingIndicator');
      assert.deepEqual(typing.find((x) => x.userId === friend), { userId: friend, conversationId: conversation.id });

      closeAll(socket, friendSocket);
    });

    it('runs the REST API Integration snippet with axios: create, list, page through messages', async () => {
      const [me, recipientId] = [uid('rest'), uid('recipient')];
      const base = srv.url;

      // --- the seed's snippet, with its URL replaced by the test server's ---
      // Get conversations
      async function getConversations(token) {
        const response = await axios.get(`${base}/api/conversations`, {
          headers: { 'Authorization': `Bearer ${token}` }
        });
        return response.data.data.conversations;
      }

      // Create direct message conversation
      async function createConversation(recipientId, token) {
        const response = await axios.post(`${base}/api/conversations`, {
          type: 'direct',
          participantIds: [recipientId],
          encrypted: true
        }, {
          headers: { 'Authorization': `Bearer ${token}` }
        });
        return response.data.data;
      }

      // Get conversation messages
      async function getMessages(conversationId, token, cursor = null) {
        const params = cursor ? { cursor } : {};
        const response = await axios.get(
          `${base}/api/conversations/${conversationId}/messages`,
          {
            headers: { 'Authorization': `Bearer ${token}` },
            params
          }
        );
        return response.data.data;
      }
      // --- end of the snippet ---

      const created = await createConversation(recipientId, token(me));
      assert.equal(created.type, 'direct');
      assert.equal(created.encrypted, true);
      const again = await createConversation(recipientId, token(me));
      assert.equal(again.id, created.id, 'a direct conversation is reused for the same pair');

      const headers = { Authorization: `Bearer ${token(me)}` };
      for (let i = 1; i <= 60; i++) {
        await axios.post(`${base}/api/conversations/${created.id}/messages`, { content: `m${i}` }, { headers });
      }
      const list = await getConversations(token(me));
      const entry = list.find((c) => c.id === created.id);
      assert.ok(entry, 'the new conversation is listed');
      assert.equal(entry.lastMessage.content, 'm60');
      assert.equal(entry.unreadCount, 0, 'one\'s own messages are not unread');
      const theirs = (await getConversations(token(recipientId))).find((c) => c.id === created.id);
      assert.equal(theirs.unreadCount, 60);
      assert.deepEqual(theirs.participants.map((p) => p.userId).sort(), [me, recipientId].sort());

      const first = await getMessages(created.id, token(me));
      assert.equal(first.messages.length, 50, 'default page size');
      assert.equal(first.hasMore, true);
      assert.equal(first.messages[0].content, 'm60', 'newest first');
      const second = await getMessages(created.id, token(me), first.nextCursor);
      assert.equal(second.messages.length, 10);
      assert.equal(second.hasMore, false);
      assert.equal(second.nextCursor, null);
      assert.deepEqual([...first.messages, ...second.messages].map((m) => m.seq), Array.from({ length: 60 }, (_, i) => 60 - i));

      // Errors come as the envelope, which axios surfaces as a rejected promise.
      await assert.rejects(getMessages(created.id, token(uid('stranger'))), (e) => {
        assert.equal(e.response.status, 403);
        assert.deepEqual(Object.keys(e.response.data), ['error', 'success']);
        assert.equal(e.response.data.error.code, 'FORBIDDEN');
        return true;
      });
    });
  });
}
