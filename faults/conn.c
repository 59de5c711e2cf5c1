/*
 * faults/conn.c - faults of catalogue 2's CONN-* behaviors: the
 * essentials of making a connection (refused and non-blocking connects,
 * the backlog, non-blocking accept, local and peer names, IPv6 and
 * v4-mapped addresses). Part of libspfault.so; see spfault.h.
 *
 * Interposes getpeername(); joins listen, connect, accept,
 * getsockname, setsockopt and close through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)
#define MAXFD 1024

FAULT(connect_refused_times_out,
      "CONN-REFUSED,CONN-V6ONLY,LISTEN-SHUTDOWN-WAKES-ACCEPT",
      "a firewalled sandbox that drops the RST, so a refused connect reports ETIMEDOUT");
FAULT(nonblock_connect_eagain,
      "CONN-NONBLOCK-CONNECT,MUX-POLLERR-REFUSED",
      "a stack that answers a non-blocking TCP connect with EAGAIN, as Linux does for AF_UNIX");
FAULT(listen_backlog_one,
      "CONN-BACKLOG-QUEUE",
      "a small userspace stack that caps every listen() backlog at 1");
FAULT(nonblock_accept_waits,
      "CONN-ACCEPT-EAGAIN,LISTEN-DEFER-ACCEPT",
      "an emulator that ignores O_NONBLOCK on a listening socket, so accept() blocks");
FAULT(getpeername_is_local,
      "CONN-NAMES-AGREE,ADDR-V6-MAPPED-CONNECT",
      "an LD_PRELOAD stack whose getpeername() fills in the local address");
FAULT(getpeername_unconnected_zero,
      "CONN-NAMES-AGREE,STATE-UDP-DISCONNECT",
      "an LD_PRELOAD stack that answers getpeername() on an unconnected socket with an all-zero address");
FAULT(accepted_name_is_listeners,
      "CONN-NAMES-AGREE",
      "a socket layer that names an accepted socket by its listener's bound address, "
      "so a wildcard listener's connections report 0.0.0.0 / :: in getsockname()");
FAULT(no_v4_mapped,
      "CONN-V6-MAPPED,ADDR-V6-MAPPED-CONNECT",
      "a stack without dual-stack sockets (OpenBSD-like): AF_INET6 sockets stay IPv6-only whatever IPV6_V6ONLY says");
FAULT(mapped_peer_as_inet,
      "CONN-V6-MAPPED,ADDR-V6-MAPPED-CONNECT",
      "an emulation layer that hands out a v4-mapped peer of an AF_INET6 socket in its AF_INET form");
FAULT(v6only_ignored,
      "CONN-V6ONLY,ADDR-V6-MAPPED-CONNECT",
      "an emulator that stores IPV6_V6ONLY (reads it back) but keeps the socket dual-stack");

REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(int, setsockopt, int, int, int, const void *, socklen_t)

/* Accepted sockets whose listener is bound to the wildcard address. */
static unsigned char from_wildcard_listener[MAXFD];

SPF_HOOK(conn_forget, SPF_OP(SPF_CLOSE), SPF_BEFORE, 0)
{
	if (c->fd >= 0 && c->fd < MAXFD)
		from_wildcard_listener[c->fd] = 0;
	return 0;
}

/* ---- connect, listen, accept ---------------------------------------------- */

SPF_HOOK(conn_connect_errors, SPF_OP(SPF_CONNECT), SPF_AFTER, 10)
{
	int domain = spfault_sockopt_int(c->fd, SOL_SOCKET, SO_DOMAIN);

	/* connect_refused_times_out: a firewall drops the RST of a TCP refusal. */
	if (c->r < 0 && errno == ECONNREFUSED && on("connect_refused_times_out") &&
	    (domain == AF_INET || domain == AF_INET6))
		errno = ETIMEDOUT;
	if (c->r < 0 && errno == EINPROGRESS && on("nonblock_connect_eagain") &&
	    spfault_sock_type(c->fd) == SOCK_STREAM)
		errno = EAGAIN;
	return 0;
}

SPF_HOOK(listen_backlog_one, SPF_OP(SPF_LISTEN), SPF_BEFORE, 10)
{
	if (on("listen_backlog_one") && c->flags > 1)
		c->flags = 1;
	return 0;
}

/* nonblock_accept_waits: O_NONBLOCK is off the listener for the call (so
 * it blocks) and back on afterwards. */
static __thread int listener_flags = -1;

SPF_HOOK(nonblock_accept_waits, SPF_OP(SPF_ACCEPT), SPF_BEFORE, 20)
{
	if (!on("nonblock_accept_waits"))
		return 0;
	int saved = errno, fl = fcntl(c->fd, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK)) {
		fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK);
		listener_flags = fl;
	}
	errno = saved;
	return 0;
}

/* mapped_peer_as_inet: ::ffff:a.b.c.d:p becomes a.b.c.d:p (AF_INET). */
static void unmap(struct sockaddr *a, socklen_t *len)
{
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)a;

	if (!a || !len || *len < sizeof(*a6) || a->sa_family != AF_INET6 ||
	    !IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr) || !on("mapped_peer_as_inet"))
		return;
	struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = a6->sin6_port };
	memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
	memset(a, 0, *len);
	memcpy(a, &a4, sizeof(a4));
	*len = sizeof(a4);
}

static int is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return 0;
}

SPF_HOOK(conn_accepted, SPF_OP(SPF_ACCEPT), SPF_AFTER, 10)
{
	int fd = (int)c->r, saved = errno;

	if (listener_flags >= 0) {
		fcntl(c->fd, F_SETFL, listener_flags);
		listener_flags = -1;
		errno = saved;
	}
	if (fd < 0)
		return 0;
	unmap(c->addr, c->addrlen);
	if (fd < MAXFD) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		load_getsockname();
		memset(&ss, 0, sizeof(ss));
		from_wildcard_listener[fd] = real_getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0 &&
					     is_wildcard(&ss);
		errno = saved;
	}
	return 0;
}

/* ---- names ---------------------------------------------------------------------- */

/* accepted_name_is_listeners: an accepted socket of a wildcard listener
 * reports the wildcard address. */
SPF_HOOK(accepted_name_is_listeners, SPF_OP(SPF_GETSOCKNAME), SPF_AFTER, 10)
{
	struct sockaddr *a = c->addr;

	if (c->r != 0 || !on("accepted_name_is_listeners") || c->fd < 0 || c->fd >= MAXFD ||
	    !from_wildcard_listener[c->fd])
		return 0;
	if (a->sa_family == AF_INET)
		((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (a->sa_family == AF_INET6)
		((struct sockaddr_in6 *)a)->sin6_addr = in6addr_any;
	return 0;
}

int getpeername(int fd, struct sockaddr *a, socklen_t *len)
{
	load_getpeername();
	int r = real_getpeername(fd, a, len);
	if (r == 0)
		unmap(a, len);
	if (r == 0 && on("getpeername_is_local") && spfault_sock_type(fd) == SOCK_STREAM &&
	    spfault_family(fd) != AF_UNIX) { /* an IP stack's */
		load_getsockname();
		return real_getsockname(fd, a, len);
	}
	if (r < 0 && errno == ENOTCONN && on("getpeername_unconnected_zero") && a && len) {
		load_getsockname();
		int saved = errno;
		if (real_getsockname(fd, a, len) == 0) {
			if (a->sa_family == AF_INET)
				memset(&((struct sockaddr_in *)a)->sin_addr, 0, 4), ((struct sockaddr_in *)a)->sin_port = 0;
			else if (a->sa_family == AF_INET6)
				memset(&((struct sockaddr_in6 *)a)->sin6_addr, 0, 16), ((struct sockaddr_in6 *)a)->sin6_port = 0;
			errno = 0;
			return 0;
		}
		errno = saved;
	}
	return r;
}

/* ---- IPV6_V6ONLY ------------------------------------------------------------------ */

/* v6only_ignored: the value is stored (reads back), not applied;
 * no_v4_mapped: the socket stays IPv6-only, and reads back what was set. */
SPF_HOOK(v6only_faults, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 20)
{
	int v = c->val && c->setlen >= sizeof(int) ? *(const int *)c->val : 0, one = 1;

	if (c->level != IPPROTO_IPV6 || c->opt != IPV6_V6ONLY)
		return 0;
	if (on("v6only_ignored")) {
		spfault_store_opt(c->fd, c->level, c->opt, &v, sizeof(v));
		c->r = 0;
		return 1;
	}
	if (on("no_v4_mapped")) {
		spfault_store_opt(c->fd, c->level, c->opt, &v, sizeof(v));
		load_setsockopt();
		c->r = real_setsockopt(c->fd, c->level, c->opt, &one, sizeof(one));
		return 1;
	}
	return 0;
}
