/* Diagnostic for BENCHMARKS.md: an LD_PRELOAD shim that sets TCP_NODELAY on every accepted
 * socket, to show what Nagle's algorithm costs a server that does not set it (Switchboard's
 * axum::serve does not) without changing the server:
 *
 *   gcc -shared -fPIC -O2 -o /tmp/nodelay.so examples/bench/tcp-nodelay-shim.c -ldl
 *   LD_PRELOAD=/tmp/nodelay.so ./target/release/switchboard
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
  int one = 1;
  if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  static int (*real)(int, struct sockaddr *, socklen_t *, int);
  if (!real) real = dlsym(RTLD_NEXT, "accept4");
  int conn = real(fd, addr, len, flags);
  nodelay(conn);
  return conn;
}

int accept(int fd, struct sockaddr *addr, socklen_t *len) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  if (!real) real = dlsym(RTLD_NEXT, "accept");
  int conn = real(fd, addr, len);
  nodelay(conn);
  return conn;
}
