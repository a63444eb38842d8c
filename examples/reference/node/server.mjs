// The Node Socket.IO reference server of the benchmarks (examples/bench/run.sh), with the same
// behaviours as examples/reference/socketioxide:
//  * any `auth` is accepted on `/`;
//  * `join` {room} joins the socket to `room`, acks {success: true, data: {room}};
//  * `message:new` {chatId, …} broadcasts the payload as `message:new` to the room `chatId`
//    (every socket in it but the sender), then acks {success: true, data: payload}.
// HOST (default 127.0.0.1) and PORT (default 3202) choose the address.
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 3202);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`reference-node: invalid PORT ${process.env.PORT}`);
  process.exit(1);
}

// An explicit HTTP server so that it listens on loopback only (new Server(port) binds every
// interface); the browser bundle is not served, as the benchmark has no use for it.
const http = createServer();
const io = new Server(http, { serveClient: false });

io.on('connection', (socket) => {
  socket.on('join', (payload, ack) => {
    const room = String(payload?.room ?? '');
    socket.join(room);
    if (typeof ack === 'function') ack({ success: true, data: { room } });
  });
  socket.on('message:new', (payload, ack) => {
    if (typeof payload?.chatId === 'string') socket.to(payload.chatId).emit('message:new', payload);
    if (typeof ack === 'function') ack({ success: true, data: payload });
  });
});

http.on('error', (e) => {
  console.error(`reference-node: ${e.message}`);
  process.exit(1);
});
http.listen(port, host, () => console.error(`reference-node listening on ${host}:${port}`));
const stop = () => io.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
