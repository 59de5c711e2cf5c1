/*
 * faults/opt.c - faults of catalogue 2's OPT-* behaviors: socket options
 * (SO_TYPE, SO_REUSEADDR and TIME_WAIT, TCP_NODELAY, SO_KEEPALIVE,
 * SO_LINGER, SO_ERROR, SO_RCVLOWAT). Part of libspfault.so; see
 * spfault.h.
 *
 * Options a fault "ignores" still read back what the program set
 * (spfault_store_opt): the stack claims the option, so only the behavior
 * it controls can show the deviation.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)
#define MAXFD 1024

FAULT(so_type_always_stream,
      "OPT-SO-TYPE,UNIXX-OPTIONS",
      "an LD_PRELOAD stack that carries every socket over a stream and reports SOCK_STREAM for UDP too");
FAULT(reuseaddr_steals_port,
      "OPT-BIND-IN-USE",
      "Windows-style SO_REUSEADDR: a second socket with the option binds a port a listener holds");
FAULT(reuseaddr_ignored,
      "OPT-REUSEADDR-TIME-WAIT",
      "a sandbox that accepts SO_REUSEADDR (reads it back) but never applies it");
FAULT(no_time_wait,
      "OPT-REUSEADDR-TIME-WAIT",
      "a userspace TCP stack without TIME_WAIT: a closed connection's port is free at once");
FAULT(nodelay_ignored,
      "OPT-TCP-NODELAY",
      "an emulator that stores TCP_NODELAY (reads it back) but keeps Nagle on");
FAULT(nagle_off,
      "OPT-TCP-NODELAY",
      "a userspace TCP stack without Nagle's algorithm that still reports TCP_NODELAY 0");
FAULT(keepalive_ignored,
      "OPT-KEEPALIVE,TCPOPT-KEEPALIVE-KNOBS",
      "an LD_PRELOAD stack that accepts SO_KEEPALIVE and silently drops it");
FAULT(linger_zero_sends_fin,
      "OPT-LINGER-ZERO-RST",
      "a stack that ignores SO_LINGER {1,0} and closes gracefully with a FIN (seen in emulation layers)");
FAULT(so_error_sticky,
      "OPT-SO-ERROR-CLEARS",
      "an emulator whose SO_ERROR is a status that reading does not clear");
FAULT(rcvlowat_ignored,
      "OPT-RCVLOWAT",
      "a sandbox that stores SO_RCVLOWAT (reads it back) but wakes poll and read at one byte");

REAL(int, setsockopt, int, int, int, const void *, socklen_t)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)

/* ---- setting options ---------------------------------------------------------- */

SPF_HOOK(opt_set, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 20)
{
	int level = c->level, opt = c->opt, one = 1;
	int v = c->val && c->setlen >= sizeof(int) ? *(const int *)c->val : 0;
	int nodelay = level == IPPROTO_TCP && opt == TCP_NODELAY;
	int reuseaddr = level == SOL_SOCKET && opt == SO_REUSEADDR;
	int rcvlowat = level == SOL_SOCKET && opt == SO_RCVLOWAT;
	int flag = !!v;

	/* *_ignored: stored, not applied. */
	/* reuseaddr_ignored models TIME_WAIT rebinding: TCP sockets only. */
	if ((nodelay && on("nodelay_ignored")) ||
	    (reuseaddr && on("reuseaddr_ignored") && spfault_sock_type(c->fd) == SOCK_STREAM)) {
		spfault_store_opt(c->fd, level, opt, &flag, sizeof(flag));
		c->r = 0;
		return 1;
	}
	if (rcvlowat && on("rcvlowat_ignored")) {
		spfault_store_opt(c->fd, level, opt, &v, sizeof(v));
		c->r = 0;
		return 1;
	}
	/* nagle_off: the real socket has Nagle off whatever the program sets;
	 * the program reads back what it set. */
	if (nodelay && on("nagle_off")) {
		spfault_store_opt(c->fd, level, opt, &flag, sizeof(flag));
		load_setsockopt();
		c->r = real_setsockopt(c->fd, level, opt, &one, sizeof(one));
		return 1;
	}
	if (level == SOL_SOCKET && opt == SO_KEEPALIVE && on("keepalive_ignored")) {
		c->r = 0;
		return 1;
	}
	/* linger_zero_sends_fin: {1,0} is stored (and reads back) but close()
	 * stays graceful. */
	if (level == SOL_SOCKET && opt == SO_LINGER && on("linger_zero_sends_fin") &&
	    c->setlen >= sizeof(struct linger) && ((const struct linger *)c->val)->l_onoff &&
	    ((const struct linger *)c->val)->l_linger == 0) {
		struct linger zero = { 1, 0 };
		spfault_store_opt(c->fd, level, opt, &zero, sizeof(zero));
		c->r = 0;
		return 1;
	}
	return 0;
}

/* nagle_off: every send on a stream goes out with Nagle off. */
SPF_HOOK(nagle_off_on_send, SPF_SENDING, SPF_BEFORE, 20)
{
	if (on("nagle_off") && spfault_sock_type(c->fd) == SOCK_STREAM) {
		int one = 1, saved = errno;
		load_setsockopt();
		real_setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		errno = saved;
	}
	return 0;
}

/* ---- reading options ------------------------------------------------------------ */

static int last_so_error[MAXFD];

SPF_HOOK(opt_get, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 30)
{
	int fd = c->fd, *val = c->val;

	if (c->r != 0 || !val || !c->vallen || *c->vallen < sizeof(int))
		return 0;
	/* nagle_off: a new socket reads TCP_NODELAY 0 although Nagle is off
	 * (what the program set reads back: faults/core.c). */
	if (c->level == IPPROTO_TCP && c->opt == TCP_NODELAY && on("nagle_off"))
		*val = 0;
	if (c->level == SOL_SOCKET && c->opt == SO_TYPE && on("so_type_always_stream"))
		*val = SOCK_STREAM;
	/* so_error_sticky: a pending error reads again and again. */
	if (c->level == SOL_SOCKET && c->opt == SO_ERROR && on("so_error_sticky") && fd >= 0 &&
	    fd < MAXFD) {
		if (*val)
			last_so_error[fd] = *val;
		else if (last_so_error[fd])
			*val = last_so_error[fd];
	}
	return 0;
}

/* ---- binding ---------------------------------------------------------------------- */

/* Is some socket of this process listening on addr's port? */
static int port_has_listener(const struct sockaddr *a)
{
	uint16_t port = a->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
						 : ((const struct sockaddr_in *)a)->sin_port;
	load_getsockname();
	for (int fd = 3; fd < MAXFD; fd++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (spfault_sock_type(fd) != SOCK_STREAM ||
		    !spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN))
			continue;
		if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    ((struct sockaddr_in *)&ss)->sin_port == port)
			return 1;
	}
	return 0;
}

SPF_HOOK(opt_bind, SPF_OP(SPF_BIND), SPF_AFTER, 10)
{
	int fd = c->fd;

	if (c->r == 0 || errno != EADDRINUSE || spfault_sock_type(fd) != SOCK_STREAM)
		return 0;
	/* reuseaddr_steals_port: with SO_REUSEADDR any bind "succeeds". */
	if (on("reuseaddr_steals_port") && spfault_sockopt_int(fd, SOL_SOCKET, SO_REUSEADDR)) {
		errno = 0;
		c->r = 0;
		return 0;
	}
	/* no_time_wait: a port held only by closed connections is free. */
	if (on("no_time_wait") && !port_has_listener(c->to)) {
		int one = 1, saved = errno;
		load_setsockopt();
		real_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int (*rb)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "bind");
		if (rb && rb(fd, c->to, c->tolen) == 0)
			c->r = 0;
		else
			errno = saved;
	}
	return 0;
}
