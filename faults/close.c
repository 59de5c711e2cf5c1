/*
 * faults/close.c - faults of closing and half-closing a connection:
 * CLOSE-* and the TCP-CLOSE-* / TCP-TEARDOWN-* behaviors (part of
 * libspfault.so; see spfault.h). close() and shutdown() themselves, the
 * end-of-file a reader sees, and what a write to a closed connection
 * reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)
#define MAXFD 1024

FAULT(close_discards_output,
      "TCP-CLOSE-FLUSHES-OUTPUT,TCP-TEARDOWN-STATES,CLOSE-FULL-LOSES-REPLY",
      "a stack whose close() frees the send queue instead of flushing it");
FAULT(nonblocking_close_discards_output,
      "TCP-CLOSE-FLUSHES-OUTPUT",
      "a userspace TCP stack that flushes the send queue inside close() only for blocking sockets and resets non-blocking ones (it cannot linger in the background)");
FAULT(close_drains_input,
      "TCP-CLOSE-DISCARDS-INPUT",
      "a stack that drains unread input on close() and sends FIN instead of RST");
FAULT(recv_reset_reads_as_eof,
      "TCP-CLOSE-DISCARDS-INPUT,OPT-LINGER-ZERO-RST",
      "a userspace stack whose recv()-family calls map a connection reset to end-of-file (only read() reports ECONNRESET)");
FAULT(close_is_half_close,
      "CLOSE-FULL-LOSES-REPLY,OPT-LINGER-ZERO-RST,TCP-CLOSE-DISCARDS-INPUT,PROC-FORK-SHARES-FDS,"
      "PROC-FORKING-SERVER,EXEC-PEER-EOF,EPOLLX-DUP",
      "a stack whose close() only shuts down writing, so late replies still arrive");
FAULT(write_hides_reset,
      "CLOSE-FULL-LOSES-REPLY,CLOSE-HALF-WR-NO-MORE-WRITES,TCP-CLOSE-DISCARDS-INPUT",
      "an LD_PRELOAD stack that buffers write() in user space and reports success even when the connection is reset or shut (send() reports the error)");
FAULT(sigpipe_once_per_socket,
      "CLOSE-HALF-WR-NO-MORE-WRITES,FLAG-NOSIGNAL",
      "an emulator that raises SIGPIPE only for the first failed write on a socket (a one-shot 'broken pipe' event), later writes just fail with EPIPE");
FAULT(shutdown_wr_closes_both,
      "CLOSE-HALF-WR-EOF",
      "a stack whose shutdown(SHUT_WR) closes both directions");
FAULT(eof_reported_once,
      "CLOSE-HALF-WR-EOF",
      "an emulator that delivers the peer's FIN as a one-shot EOF event: the first read returns 0, later reads say EAGAIN");
FAULT(shutdown_ignored,
      "CLOSE-HALF-WR-NO-MORE-WRITES,CLOSE-HALF-RD,CLOSE-HALF-WR-EOF,LISTEN-SHUTDOWN-WAKES-ACCEPT",
      "an emulator that accepts shutdown() and does nothing");
FAULT(shut_rd_eof_once,
      "CLOSE-HALF-RD",
      "an emulator that turns shutdown(SHUT_RD) into a one-shot EOF event: the first read returns 0, later reads say EAGAIN as if the socket were open");

REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, write, int, const void *, size_t)
REAL(int, shutdown, int, int)
REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, getsockopt, int, int, int, void *, socklen_t *)

/* A TCP socket: the faults here model TCP stacks and leave AF_UNIX alone. */
static int is_stream(int fd)
{
	int domain = spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN);
	return spfault_sock_type(fd) == SOCK_STREAM && (domain == AF_INET || domain == AF_INET6);
}

/* fd has a peer (connected; keeps errno). */
static int has_peer(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	load_getpeername();
	int r = real_getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
	errno = saved;
	return r;
}

/* The peer's FIN has arrived on fd (TCP state CLOSE_WAIT, LAST_ACK,
 * CLOSING or TIME_WAIT): an end of input that is the FIN's, not that of
 * a shutdown(SHUT_RD) however it was made (a system call, io_uring). */
static int fin_received(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	int saved = errno;
	load_getsockopt();
	memset(&ti, 0, sizeof(ti));
	int r = real_getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
		(ti.tcpi_state == TCP_CLOSE_WAIT || ti.tcpi_state == TCP_LAST_ACK ||
		 ti.tcpi_state == TCP_CLOSING || ti.tcpi_state == TCP_TIME_WAIT);
	errno = saved;
	return r;
}

static char shut_rd_state[MAXFD];               /* shut_rd_eof_once: 1 shut, 2 EOF given */
static char eof_given[MAXFD];                   /* eof_reported_once */
static char sigpipe_given[MAXFD];               /* sigpipe_once_per_socket */

/* ---- a socket another descriptor still holds ---------------------------------
 *
 * A stack's close() acts on the connection only when the last reference
 * goes: a close() of one copy while a dup() of it, or a forked process,
 * still holds the socket releases nothing. close_drains_input keeps to
 * that (a close that ends a shared connection is close_shuts_down_shared_
 * socket's, faults/proc.c); close_is_half_close keeps to it for dup()s. */
static char forked_with[MAXFD];                 /* open when this process forked */

static void note_fork(void)
{
	int saved = errno;
	if (on("close_drains_input"))
		for (int fd = 0; fd < MAXFD; fd++)
			forked_with[fd] = fcntl(fd, F_GETFD) >= 0;
	errno = saved;
}

__attribute__((constructor)) static void close_watch_forks(void)
{
	pthread_atfork(note_fork, NULL, NULL);
}

/* Another descriptor of this process refers to fd's socket (a dup()). */
static int dup_held(int fd)
{
	ino_t ino = spfault_inode(fd);
	for (int other = 0; ino && other < MAXFD; other++)
		if (other != fd && spfault_inode(other) == ino)
			return 1;
	return 0;
}

SPF_HOOK(close_forget, SPF_OP(SPF_CLOSE), SPF_BEFORE, 0)
{
	if (c->fd >= 0 && c->fd < MAXFD)
		shut_rd_state[c->fd] = eof_given[c->fd] = sigpipe_given[c->fd] = 0;
	return 0;
}

SPF_HOOK(close_forget_fork, SPF_OP(SPF_CLOSE), SPF_AFTER, 0)
{
	if (c->fd >= 0 && c->fd < MAXFD && c->r == 0)
		forked_with[c->fd] = 0;
	return 0;
}

/* ---- close() ---------------------------------------------------------------- */

SPF_HOOK(faulty_close, SPF_OP(SPF_CLOSE), SPF_BEFORE, 30)
{
	int fd = c->fd;

	if (!is_stream(fd))
		return 0;
	/* close_discards_output: close() resets, dropping queued output;
	 * nonblocking_close_discards_output: only for O_NONBLOCK sockets. */
	if (on("close_discards_output") ||
	    (on("nonblocking_close_discards_output") && spfault_nonblocking(fd))) {
		struct linger lg = { 1, 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	/* close_drains_input: unread input is consumed, so the peer gets a
	 * clean FIN instead of a reset. */
	if (on("close_drains_input") && !(fd < MAXFD && forked_with[fd]) && !dup_held(fd)) {
		char scratch[65536];
		load_recv();
		while (real_recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
			;
	}
	return 0;
}

/* close_is_half_close: close() only shuts the write side and keeps the
 * socket, so the peer's reply is never refused. (After the others: a
 * close that ends a shared connection still does that first.) */
SPF_HOOK(close_is_half_close, SPF_OP(SPF_CLOSE), SPF_BEFORE, 90)
{
	if (!on("close_is_half_close") || !is_stream(c->fd) ||
	    spfault_sockopt_int(c->fd, SOL_SOCKET, SO_ACCEPTCONN) || dup_held(c->fd))
		return 0;
	/* Only a connection is half-closed: an unconnected or listening
	 * socket (shutdown() says ENOTCONN) is closed for real. */
	load_shutdown();
	int e = errno;
	int r = real_shutdown(c->fd, SHUT_WR);
	if (r < 0 && errno == ENOTCONN) {
		errno = e;
		return 0;
	}
	c->r = r;
	return 1;
}

/* ---- shutdown() ------------------------------------------------------------ */

SPF_HOOK(faulty_shutdown, SPF_OP(SPF_SHUTDOWN), SPF_BEFORE, 20)
{
	int fd = c->fd, how = c->flags;

	if (fd >= 0 && fd < MAXFD && (how == SHUT_RD || how == SHUT_RDWR) && is_stream(fd))
		shut_rd_state[fd] = 1;
	/* shutdown_ignored: half-close does nothing at all, on a connection
	 * or a listener; a never-connected socket still says ENOTCONN
	 * (STATE-SHUTDOWN-UNCONNECTED is not this fault's). */
	if (on("shutdown_ignored") && is_stream(fd) && (has_peer(fd) ||
	    spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN))) {
		c->r = 0;
		return 1;
	}
	/* shutdown_wr_closes_both: SHUT_WR behaves like SHUT_RDWR. */
	if (on("shutdown_wr_closes_both") && how == SHUT_WR)
		c->flags = SHUT_RDWR;
	return 0;
}

/* ---- what a reader sees ------------------------------------------------------ */

SPF_HOOK(faulty_eof, SPF_RECEIVING, SPF_AFTER, 50)
{
	int fd = c->fd;

	if (fd < 0 || fd >= MAXFD || !is_stream(fd))
		return 0;
	if (c->op != SPF_READ && c->r < 0 && errno == ECONNRESET && on("recv_reset_reads_as_eof"))
		c->r = 0;
	if (c->r == 0 && c->n > 0 && shut_rd_state[fd] && on("shut_rd_eof_once")) {
		if (shut_rd_state[fd]++ >= 2) {
			errno = EAGAIN;
			c->r = -1;
		}
	} else if (c->r == 0 && c->n > 0 && !shut_rd_state[fd] && on("eof_reported_once") &&
		   fin_received(fd)) {
		if (eof_given[fd]++) {
			errno = EAGAIN;
			c->r = -1;
		}
	}
	return 0;
}

/* ---- what a writer sees ------------------------------------------------------- */

SPF_HOOK(faulty_write_after_close, SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO),
	 SPF_BEFORE, 45)
{
	int fd = c->fd;

	if ((c->op == SPF_SENDTO && c->to) || fd < 0 || fd >= MAXFD)
		return 0;
	load_send();
	load_write();
	/* write_hides_reset: write() succeeds on a reset or shut connection. */
	if (c->via_write && on("write_hides_reset") && is_stream(fd)) {
		c->r = real_write(fd, c->data, c->n);
		if (c->r < 0 && (errno == EPIPE || errno == ECONNRESET))
			c->r = (ssize_t)c->n;
		return 1;
	}
	/* sigpipe_once_per_socket: the first failed write raises SIGPIPE,
	 * later ones only fail; on every stream socket (AF_UNIX too). */
	if (on("sigpipe_once_per_socket") && spfault_sock_type(fd) == SOCK_STREAM) {
		if (sigpipe_given[fd])
			c->r = real_send(fd, c->data, c->n, c->flags | MSG_NOSIGNAL);
		else
			c->r = c->via_write ? real_write(fd, c->data, c->n)
					    : real_send(fd, c->data, c->n, c->flags);
		if (c->r < 0 && errno == EPIPE && !(c->flags & MSG_NOSIGNAL))
			sigpipe_given[fd] = 1;
		return 1;
	}
	return 0;
}
