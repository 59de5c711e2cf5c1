/*
 * faults/tcp.c - faults of TCP-* behaviors: byte-stream boundaries, flow
 * control, the handshake, implicit binds and the accept queue (part of
 * libspfault.so; see spfault.h). Closing and half-closing are in
 * faults/close.c.
 *
 * Every fault here joins shared calls through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)
#define MAXFD 1024

FAULT(read_caps_at_10,
      "TCP-BOUNDARY-COALESCE",
      "a message-oriented stack (SCTP-like emulation) that returns one write per read");
FAULT(stream_read_drops_rest,
      "TCP-BOUNDARY-SPLIT",
      "a userspace TCP stack that drops what does not fit the caller's buffer");
FAULT(stream_recv_drops_rest,
      "TCP-BOUNDARY-SPLIT",
      "an LD_PRELOAD stack whose recv()/recvfrom()/recvmsg() path treats the stream like datagrams and drops what does not fit (read() goes to the kernel intact)");
FAULT(sockets_start_without_buffers,
      "TCP-BUFFERS-AT-CREATION",
      "an emulator that allocates buffers only at connect() and reports 0 before");
FAULT(write_ignores_full_buffer,
      "TCP-FLOW-CONTROL,PROC-SPLIT-IO",
      "a stack without flow control that drops what the window cannot take");
FAULT(blocking_write_eagain,
      "TCP-FLOW-CONTROL",
      "an emulator that backs a blocking guest socket with a non-blocking host socket and passes EAGAIN and short counts through");
FAULT(blocking_write_short,
      "TCP-FLOW-CONTROL",
      "a userspace TCP stack whose blocking send() returns after copying one 8 KiB segment (a short count) instead of blocking for the rest");
FAULT(write_waits_for_peer_read,
      "TCP-WRITE-RETURNS-BUFFERED",
      "a synchronous RPC-style transport whose write waits for the peer's read");
FAULT(connect_needs_accept,
      "TCP-HANDSHAKE-BEFORE-ACCEPT,CONN-BACKLOG-QUEUE",
      "a sandbox that completes connect() only when the server accepts");
FAULT(connect_returns_before_handshake,
      "TCP-HANDSHAKE-BEFORE-ACCEPT,CONN-REFUSED,CONN-V6ONLY,LISTEN-SHUTDOWN-WAKES-ACCEPT,"
      "TIMEO-CONNECT,TCPOPT-SYNCNT",
      "a stack with deferred connect (TCP_FASTOPEN_CONNECT-like, or a lazy proxy shim): connect() returns 0 at once and the SYN goes out on the next call on the socket");
FAULT(no_implicit_bind,
      "TCP-CONNECT-IMPLICIT-BIND,UDP-SENDTO-IMPLICIT-BIND,CONN-NAMES-AGREE",
      "an LD_PRELOAD stack whose getsockname() reports port 0 after an implicit bind");
FAULT(implicit_bind_reports_wildcard,
      "TCP-CONNECT-IMPLICIT-BIND,CONN-NAMES-AGREE,ADDR-V6-MAPPED-CONNECT",
      "an LD_PRELOAD or NAT-ing sandbox stack whose getsockname() after connect()'s implicit bind reports the wildcard address (only the port is right)");
FAULT(accept_repeats_first,
      "TCP-LISTEN-ACCEPT-SEQUENCE",
      "a broken accept() that hands out the same connection again");

REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(int, connect, int, const struct sockaddr *, socklen_t)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(int, close, int)
REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, poll, struct pollfd *, nfds_t, int)
REAL(int, dup, int)

/* A TCP socket: the faults here model TCP stacks and leave AF_UNIX alone. */
static int is_stream(int fd)
{
	int domain = spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN);
	return spfault_sock_type(fd) == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6);
}

static struct sockaddr_storage lazy_peer[MAXFD]; /* connect_returns_before_handshake */
static socklen_t lazy_len[MAXFD];
static char connected_by_us[MAXFD];            /* implicit_bind_reports_wildcard */
static int first_accepted[MAXFD];              /* accept_repeats_first, +1 */
static ino_t first_inode[MAXFD];               /* ... and that connection's inode */

SPF_HOOK(tcp_forget, SPF_OP(SPF_CLOSE), SPF_BEFORE, 0)
{
	if (c->fd >= 0 && c->fd < MAXFD) {
		lazy_len[c->fd] = connected_by_us[c->fd] = 0;
		first_accepted[c->fd] = 0; /* a listener closed: a new one starts afresh */
	}
	return 0;
}

/* Drain what is queued on fd without blocking (keeps errno). */
static void drain(int fd)
{
	char scratch[65536];
	int saved = errno;

	/* Only the bytes queued (FIONREAD): a pending error or EOF is not
	 * data and stays for the caller's next call. */
	int q = 0;
	load_recv();
	while (ioctl(fd, FIONREAD, &q) == 0 && q > 0)
		if (real_recv(fd, scratch, (size_t)q < sizeof(scratch) ? (size_t)q : sizeof(scratch),
			      MSG_DONTWAIT) <= 0)
			break;
	errno = saved;
}

/* A socket of this process whose local address is `addr` (the peer of a
 * loopback connection made inside the same probe), or -1. */
static int local_socket_at(const struct sockaddr_storage *addr, int want_listener, int not_fd)
{
	load_getsockname();
	for (int fd = 3; fd < MAXFD; fd++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (fd == not_fd || !is_stream(fd))
			continue;
		memset(&ss, 0, sizeof(ss));
		if (real_getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || !spfault_same_addr(&ss, addr))
			continue;
		if (!!spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN) == !!want_listener)
			return fd;
	}
	return -1;
}

/* ---- the handshake ------------------------------------------------------ */

/* connect_returns_before_handshake: the deferred handshake happens on the
 * next call on the socket. */
SPF_HOOK(lazy_connect_finish,
	 SPF_RECEIVING | SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO) |
	 SPF_OP(SPF_GETSOCKNAME) | SPF_OP(SPF_GETSOCKOPT) | SPF_OP(SPF_SHUTDOWN),
	 SPF_BEFORE, 5)
{
	int fd = c->fd;

	if (fd < 0 || fd >= MAXFD || !lazy_len[fd] || (c->op == SPF_SENDTO && c->to))
		return 0;
	int saved = errno;
	socklen_t len = lazy_len[fd];
	lazy_len[fd] = 0;
	load_connect();
	real_connect(fd, (struct sockaddr *)&lazy_peer[fd], len);
	errno = saved;
	return 0;
}

SPF_HOOK(tcp_connect, SPF_OP(SPF_CONNECT), SPF_BEFORE, 30)
{
	int fd = c->fd;

	if (fd >= 0 && fd < MAXFD && is_stream(fd))
		connected_by_us[fd] = 1;
	/* connect_returns_before_handshake: nothing is sent yet. */
	if (!on("connect_returns_before_handshake") || fd < 0 || fd >= MAXFD ||
	    c->tolen > sizeof(lazy_peer[fd]) || !is_stream(fd) || spfault_nonblocking(fd))
		return 0;
	memcpy(&lazy_peer[fd], c->to, c->tolen);
	lazy_len[fd] = c->tolen;
	c->r = 0;
	return 1;
}

/* connect_needs_accept: connect() does not complete while the connection
 * waits, unaccepted, in the listen queue. */
SPF_HOOK(connect_needs_accept, SPF_OP(SPF_CONNECT), SPF_AFTER, 30)
{
	if (c->r != 0 || !on("connect_needs_accept") || !is_stream(c->fd))
		return 0;
	struct sockaddr_storage dst;
	memset(&dst, 0, sizeof(dst));
	memcpy(&dst, c->to, c->tolen < sizeof(dst) ? c->tolen : sizeof(dst));
	int l = local_socket_at(&dst, 1, c->fd);
	struct pollfd p = { .fd = l, .events = POLLIN };
	load_poll();
	if (l >= 0 && real_poll(&p, 1, 0) == 1) {
		errno = ETIMEDOUT;
		c->r = -1;
	}
	return 0;
}

/* accept_repeats_first: every accept() hands out the first connection. */
SPF_HOOK(accept_repeats_first, SPF_OP(SPF_ACCEPT), SPF_AFTER, 30)
{
	int l = c->fd, fd = (int)c->r;

	if (fd < 0 || !on("accept_repeats_first") || l >= MAXFD || !is_stream(l)) /* TCP only */
		return 0;
	/* The first connection, while it is still open under its number
	 * (one closed, or its number reused, cannot be handed out again). */
	if (!first_accepted[l] || spfault_inode(first_accepted[l] - 1) != first_inode[l]) {
		first_accepted[l] = fd + 1;
		first_inode[l] = spfault_inode(fd);
		return 0;
	}
	load_close();
	real_close(fd);
	load_dup();
	c->r = real_dup(first_accepted[l] - 1);
	return 0;
}

/* ---- local names ------------------------------------------------------------ */

SPF_HOOK(implicit_bind_names, SPF_OP(SPF_GETSOCKNAME), SPF_AFTER, 20)
{
	int fd = c->fd;
	struct sockaddr *a = c->addr;

	if (c->r != 0 || fd < 0 || fd >= MAXFD || spfault_explicitly_bound(fd))
		return 0;
	/* implicit_bind_reports_wildcard: the port is right, the address is
	 * the wildcard. */
	if (on("implicit_bind_reports_wildcard") && connected_by_us[fd]) {
		if (a->sa_family == AF_INET)
			((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (a->sa_family == AF_INET6)
			((struct sockaddr_in6 *)a)->sin6_addr = in6addr_any;
	}
	/* no_implicit_bind: connect()/sendto() leave an unbound socket
	 * without a local port. */
	if (on("no_implicit_bind") && spfault_sock_type(fd) != 0 &&
	    !spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN)) {
		if (a->sa_family == AF_INET)
			((struct sockaddr_in *)a)->sin_port = 0;
		else if (a->sa_family == AF_INET6)
			((struct sockaddr_in6 *)a)->sin6_port = 0;
	}
	return 0;
}

/* sockets_start_without_buffers: buffers appear only once connected. */
SPF_HOOK(buffers_at_connect, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 40)
{
	if (c->r == 0 && c->level == SOL_SOCKET && (c->opt == SO_SNDBUF || c->opt == SO_RCVBUF) &&
	    on("sockets_start_without_buffers") &&
	    (spfault_family(c->fd) == AF_INET || spfault_family(c->fd) == AF_INET6)) { /* IP sockets */
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		load_getpeername();
		if (real_getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0)
			*(int *)c->val = 0;
	}
	return 0;
}

/* ---- reading ------------------------------------------------------------------ */

/* read_caps_at_10: a read never returns more than one 10-byte write.
 * MSG_WAITALL still waits for the full count (a message-oriented stack
 * fills the request from several messages): that is FLAG-WAITALL's. */
SPF_HOOK(read_caps_at_10, SPF_OP(SPF_READ) | SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM),
	 SPF_BEFORE, 60)
{
	if (c->ask > 10 && !(c->flags & MSG_WAITALL) && on("read_caps_at_10") && is_stream(c->fd))
		c->ask = 10;
	return 0;
}

/* stream_read_drops_rest: a short read throws away what was left, as if
 * the stream kept message boundaries. */
SPF_HOOK(stream_read_drops_rest, SPF_OP(SPF_READ) | SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM),
	 SPF_AFTER, 30)
{
	/* Only a read that filled the buffer left something behind; a peek
	 * leaves everything queued anyway. */
	if (c->r > 0 && (size_t)c->r == c->ask && !(c->flags & (MSG_PEEK | MSG_OOB)) &&
	    on("stream_read_drops_rest") && is_stream(c->fd)) /* the urgent byte is no stream read */
		drain(c->fd);
	return 0;
}

/* stream_recv_drops_rest: the same on the recv() family only, when the
 * caller's buffer was filled. */
SPF_HOOK(stream_recv_drops_rest, SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM) | SPF_OP(SPF_RECVMSG),
	 SPF_AFTER, 51)
{
	/* A peek consumes nothing, of a datagram either. */
	if (c->fd >= 0 && c->fd < MAXFD && c->r > 0 && (size_t)c->r == c->n &&
	    !(c->flags & (MSG_PEEK | MSG_OOB)) && on("stream_recv_drops_rest") && is_stream(c->fd))
		drain(c->fd);
	return 0;
}

/* ---- writing -------------------------------------------------------------------- */

/* write_waits_for_peer_read: write() returns only once the peer
 * application has read the data (what the notes claim). */
static void wait_for_peer_read(int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	memset(&peer, 0, sizeof(peer));
	load_getpeername();
	load_poll();
	if (real_getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
		return;
	int p = local_socket_at(&peer, 0, fd);
	if (p < 0)
		return;
	const char *w = getenv("SOCKPROBE_WAIT_MS");
	int bound = 2 * (w && atoi(w) > 0 ? atoi(w) : 2000);
	for (int i = 0; i < bound; i++) {
		int inq = 0;
		if (ioctl(p, FIONREAD, &inq) < 0 || inq == 0)
			return;
		/* A wait like any other: a caught signal ends it, and the
		 * send returns the count it moved (INTR-PARTIAL-TRANSFER). */
		int saved = errno;
		if (real_poll(NULL, 0, 1) < 0 && errno == EINTR) {
			errno = saved;
			return;
		}
		errno = saved;
	}
}

SPF_HOOK(tcp_send, SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO), SPF_BEFORE, 40)
{
	int fd = c->fd;

	if ((c->op == SPF_SENDTO && c->to) || !is_stream(fd))
		return 0;
	load_send();
	int blocking = !spfault_nonblocking(fd) && !(c->flags & MSG_DONTWAIT);
	if (fd >= 0 && fd < MAXFD && blocking && on("blocking_write_eagain")) {
		c->r = real_send(fd, c->data, c->n, c->flags | MSG_DONTWAIT);
		return 1;
	}
	if (fd >= 0 && fd < MAXFD && blocking && c->n > 8192 && on("blocking_write_short")) {
		c->r = real_send(fd, c->data, 8192, c->flags);
		return 1;
	}
	/* write_ignores_full_buffer: a full send buffer silently drops data
	 * instead of blocking the writer or answering EAGAIN. */
	if (on("write_ignores_full_buffer")) {
		c->r = real_send(fd, c->data, c->n, c->flags | MSG_DONTWAIT);
		if (c->r >= 0 || errno == EAGAIN)
			c->r = (ssize_t)c->n;
		return 1;
	}
	if (on("write_waits_for_peer_read")) {
		c->r = real_send(fd, c->data, c->n, c->flags);
		/* A short count: the send was cut short (a signal), and
		 * returns at once with it (INTR-PARTIAL-TRANSFER). */
		if (c->r > 0 && (size_t)c->r == c->n)
			wait_for_peer_read(fd);
		return 1;
	}
	return 0;
}
