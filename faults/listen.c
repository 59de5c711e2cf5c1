/*
 * faults/listen.c - faults for catalogue 3's LISTEN-* and REUSEPORT-*
 * behaviors (listening sockets, the accept queue, SO_REUSEPORT). Part of
 * libspfault.so; see spfault.h for the conventions.
 *
 * Interposes nothing: joins getsockopt, setsockopt, shutdown, accept,
 * accept4, bind, connect and listen (faults/core.c) through hooks.
 * Everything is transparent while no fault of this file is on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "spfault.h"

FAULT(acceptconn_unix_zero,
      "LISTEN-ACCEPTCONN",
      "gVisor before google/gvisor#8487: getsockopt(SO_ACCEPTCONN) reads 0 on a listening "
      "AF_UNIX socket");
FAULT(full_queue_resets,
      "LISTEN-FULL-QUEUE-PENDS",
      "a stack that answers a SYN to a full accept queue with a reset (Linux with "
      "net.ipv4.tcp_abort_on_overflow=1, Windows' WSAECONNREFUSED): the connect fails instead "
      "of waiting for room");
FAULT(listener_shutdown_enotconn,
      "LISTEN-SHUTDOWN-WAKES-ACCEPT",
      "macOS (NixOS/nix#8168, FluidSynth/fluidsynth#1837): shutdown() of a listening socket "
      "fails with ENOTCONN and leaves a blocked accept() waiting");
FAULT(accepted_inherits_listener_flags,
      "LISTEN-ACCEPT4-FLAGS",
      "BSD/macOS-style accept (dotnet/corefx#27213): the accepted socket inherits the "
      "listener's O_NONBLOCK and, here, FD_CLOEXEC, whatever accept4 was asked");
FAULT(listen_needs_bind,
      "LISTEN-AUTOBIND",
      "Windows sockets (WSAEINVAL, as under WSL1): listen() on a socket that was never bound "
      "fails with EINVAL instead of binding an ephemeral port");
FAULT(defer_accept_ignored,
      "LISTEN-DEFER-ACCEPT",
      "MPTCP before multipath-tcp/mptcp_net-next#271: setsockopt(TCP_DEFER_ACCEPT) returns 0 "
      "and does nothing, so accept() returns connections that sent no data");
FAULT(reuseport_one_listener,
      "REUSEPORT-TCP",
      "a stack with BSD-style SO_REUSEPORT (no load balancing): a second listener binds and "
      "listen() returns 0, but only the first one ever gets connections");
FAULT(reuseport_udp_as_reuseaddr,
      "REUSEPORT-UDP",
      "an emulation that maps SO_REUSEPORT onto SO_REUSEADDR (WSL-like, solana-labs/solana#1149): "
      "the sockets share the port, but unicast datagrams all go to the one bound last");
FAULT(reuseport_shares_without_both,
      "REUSEPORT-BOTH-REQUIRED",
      "WSL1 (microsoft/WSL#4407): a socket with SO_REUSEPORT binds a port another socket holds "
      "without the option");

enum { MAXFD = 1024 };

static int any_on(void)
{
	static const char *const mine[] = {
		"acceptconn_unix_zero", "full_queue_resets", "listener_shutdown_enotconn",
		"accepted_inherits_listener_flags", "listen_needs_bind", "defer_accept_ignored",
		"reuseport_one_listener", "reuseport_udp_as_reuseaddr", "reuseport_shares_without_both",
	};
	static int known = -1;
	if (known < 0) {
		known = 0;
		for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
			known |= spfault_on(mine[i]);
	}
	return known;
}

/* Errno-keeping facts. */
static int family(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	long r = syscall(SYS_getsockname, fd, &ss, &len);
	errno = saved;
	return r == 0 ? ss.ss_family : -1;
}

static int inet(int fd)
{
	int f = family(fd);
	return f == AF_INET || f == AF_INET6;
}

static unsigned local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	long r = syscall(SYS_getsockname, fd, &ss, &len);
	errno = saved;
	if (r != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static int raw_int(int fd, int level, int opt)
{
	int v = 0, saved = errno;
	socklen_t len = sizeof(v);
	if (syscall(SYS_getsockopt, fd, level, opt, &v, &len) != 0)
		v = 0;
	errno = saved;
	return v;
}

static void raw_set(int fd, int level, int opt, int v)
{
	int saved = errno;
	syscall(SYS_setsockopt, fd, level, opt, &v, sizeof(v));
	errno = saved;
}

static unsigned char udp_reuseport[MAXFD]; /* reuseport_udp_as_reuseaddr: what was set */

SPF_HOOK(listen_getsockopt, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 32)
{
	int fd = c->fd, level = c->level, opt = c->opt;
	void *val = c->val;
	socklen_t *len = c->vallen;

	if (c->r != 0 || !any_on() || !val || !len || *len < sizeof(int) || level != SOL_SOCKET)
		return 0;
	if (opt == SO_ACCEPTCONN && spfault_on("acceptconn_unix_zero") && family(fd) == AF_UNIX)
		*(int *)val = 0;
	if (opt == SO_REUSEPORT && spfault_on("reuseport_udp_as_reuseaddr") && fd >= 0 && fd < MAXFD &&
	    spfault_sock_type(fd) == SOCK_DGRAM)
		*(int *)val = udp_reuseport[fd];
	return 0;
}

/* A fault that takes the option answers the call with 0. */
SPF_HOOK(listen_setsockopt, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 15)
{
	int fd = c->fd, level = c->level, opt = c->opt;
	const void *val = c->val;

	if (!any_on() || !val || c->setlen < sizeof(int))
		return 0;
	c->r = 0;
	if (level == IPPROTO_TCP && opt == TCP_DEFER_ACCEPT && spfault_on("defer_accept_ignored"))
		return 1;
	if (level == SOL_SOCKET && opt == SO_REUSEPORT && spfault_on("reuseport_udp_as_reuseaddr") &&
	    fd >= 0 && fd < MAXFD && spfault_sock_type(fd) == SOCK_DGRAM && inet(fd)) {
		udp_reuseport[fd] = !!*(const int *)val;
		raw_set(fd, SOL_SOCKET, SO_REUSEADDR, udp_reuseport[fd]);
		return 1;
	}
	return 0;
}

SPF_HOOK(listen_shutdown, SPF_OP(SPF_SHUTDOWN), SPF_BEFORE, 1)
{
	if (any_on() && spfault_on("listener_shutdown_enotconn") &&
	    raw_int(c->fd, SOL_SOCKET, SO_ACCEPTCONN) == 1) {
		errno = ENOTCONN;
		c->r = -1;
		return 1;
	}
	return 0;
}

SPF_HOOK(listen_accepted, SPF_OP(SPF_ACCEPT), SPF_AFTER, 20)
{
	int l = c->fd, fd = (int)c->r;

	if (fd < 0 || !any_on() || !spfault_on("accepted_inherits_listener_flags"))
		return 0;
	int saved = errno;
	int lfl = fcntl(l, F_GETFL), lfd = fcntl(l, F_GETFD);
	int fl = fcntl(fd, F_GETFL);
	if (lfl >= 0 && fl >= 0)
		fcntl(fd, F_SETFL, (fl & ~O_NONBLOCK) | (lfl & O_NONBLOCK));
	if (lfd >= 0)
		fcntl(fd, F_SETFD, lfd & FD_CLOEXEC);
	errno = saved;
	return 0;
}

/* Another listening socket of this process with SO_REUSEPORT on port. */
static int other_reuseport_listener(int fd, unsigned port)
{
	for (int o = 0; o < MAXFD; o++)
		if (o != fd && spfault_sock_type(o) == SOCK_STREAM && inet(o) &&
		    local_port(o) == port && raw_int(o, SOL_SOCKET, SO_ACCEPTCONN) == 1 &&
		    raw_int(o, SOL_SOCKET, SO_REUSEPORT))
			return 1;
	return 0;
}

/* After listen_backlog_one (faults/conn.c), as before the move. */
SPF_HOOK(listen_listen, SPF_OP(SPF_LISTEN), SPF_BEFORE, 20)
{
	int fd = c->fd;

	if (!any_on() || spfault_sock_type(fd) != SOCK_STREAM || !inet(fd))
		return 0;
	if (spfault_on("listen_needs_bind") && local_port(fd) == 0) {
		errno = EINVAL;
		c->r = -1;
		return 1;
	}
	/* reuseport_one_listener: the second listener never really listens. */
	if (spfault_on("reuseport_one_listener") && raw_int(fd, SOL_SOCKET, SO_REUSEPORT) &&
	    local_port(fd) && other_reuseport_listener(fd, local_port(fd))) {
		c->r = 0;
		return 1;
	}
	return 0;
}

/* After opt_bind (faults/opt.c), as before the move. */
SPF_HOOK(listen_bind, SPF_OP(SPF_BIND), SPF_AFTER, 15)
{
	int fd = c->fd;
	const struct sockaddr *a = c->to;
	socklen_t len = c->tolen;

	if (c->r == 0 || errno != EADDRINUSE || !any_on() || !spfault_on("reuseport_shares_without_both") ||
	    !inet(fd) || !raw_int(fd, SOL_SOCKET, SO_REUSEPORT) || !a)
		return 0;
	unsigned port = a->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)a)->sin_port) :
			a->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)a)->sin6_port) : 0;
	int type = spfault_sock_type(fd);
	/* The holders get SO_REUSEPORT behind the program's back. */
	for (int o = 0; o < MAXFD; o++)
		if (o != fd && spfault_sock_type(o) == type && inet(o) && local_port(o) == port)
			raw_set(o, SOL_SOCKET, SO_REUSEPORT, 1);
	if (syscall(SYS_bind, fd, a, len) == 0) {
		c->r = 0;
		return 0;
	}
	errno = EADDRINUSE;
	return 0;
}

/* full_queue_resets: a non-blocking connect that does not complete at
 * once over loopback is answered with a reset (before conn.c's errors). */
SPF_HOOK(full_queue_resets, SPF_OP(SPF_CONNECT), SPF_AFTER, 5)
{
	int fd = c->fd;

	if (c->r == 0 || errno != EINPROGRESS || !any_on() || !spfault_on("full_queue_resets"))
		return 0;
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int saved = errno;
	if (syscall(SYS_ppoll, &p, 1, &(struct timespec){ 0, 50 * 1000 * 1000 }, NULL, 0) == 0) {
		struct linger lg = { 1, 0 };
		struct sockaddr un = { .sa_family = AF_UNSPEC };
		syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		syscall(SYS_connect, fd, &un, sizeof(un)); /* dropped */
		errno = ECONNREFUSED;
		return 0;
	}
	errno = saved;
	return 0;
}
