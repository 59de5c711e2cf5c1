/*
 * opt.c - faults for catalogue 2's OPT-*, CONN-* and FLAG-* behaviors
 * (socket options, connection essentials, send/receive flags and vectored
 * I/O). Part of libspfault.so; see spfault.c for the conventions.
 *
 * This file owns the interposers of setsockopt, listen, sendmsg, readv,
 * writev and getpeername. For calls spfault.c interposes (recv, recvfrom,
 * recvmsg, send, sendto, write, getsockopt, connect, accept, accept4, bind)
 * it offers hooks, spfault_opt_*(), that spfault.c calls with one line
 * each. Everything is transparent while no fault of this file is on.
 *
 * Options a fault "ignores" may still read back what the program set
 * (fake_opt): the stack claims the option, so only the behavior it
 * controls can show the deviation.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "spfault.h"

/* ---- the fault table ------------------------------------------------------ */

FAULT(so_type_always_stream,
      "OPT-SO-TYPE",
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
      "OPT-KEEPALIVE",
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
FAULT(connect_refused_times_out,
      "CONN-REFUSED",
      "a firewalled sandbox that drops the RST, so a refused connect reports ETIMEDOUT");
FAULT(nonblock_connect_eagain,
      "CONN-NONBLOCK-CONNECT",
      "a stack that answers a non-blocking TCP connect with EAGAIN, as Linux does for AF_UNIX");
FAULT(listen_backlog_one,
      "CONN-BACKLOG-QUEUE",
      "a small userspace stack that caps every listen() backlog at 1");
FAULT(nonblock_accept_waits,
      "CONN-ACCEPT-EAGAIN",
      "an emulator that ignores O_NONBLOCK on a listening socket, so accept() blocks");
FAULT(getpeername_is_local,
      "CONN-NAMES-AGREE",
      "an LD_PRELOAD stack whose getpeername() fills in the local address");
FAULT(getpeername_unconnected_zero,
      "CONN-NAMES-AGREE",
      "an LD_PRELOAD stack that answers getpeername() on an unconnected socket with an all-zero address");
FAULT(no_v4_mapped,
      "CONN-V6-MAPPED",
      "a stack without dual-stack sockets (OpenBSD-like): AF_INET6 sockets stay IPv6-only whatever IPV6_V6ONLY says");
FAULT(mapped_peer_as_inet,
      "CONN-V6-MAPPED",
      "an emulation layer that hands out a v4-mapped peer of an AF_INET6 socket in its AF_INET form");
FAULT(v6only_ignored,
      "CONN-V6ONLY",
      "an emulator that stores IPV6_V6ONLY (reads it back) but keeps the socket dual-stack");
FAULT(peek_consumes,
      "FLAG-PEEK",
      "an LD_PRELOAD stack that drops MSG_PEEK, so a peek consumes the data");
FAULT(waitall_ignored,
      "FLAG-WAITALL",
      "a userspace stack that ignores MSG_WAITALL and returns whatever has arrived");
FAULT(dontwait_sets_nonblock,
      "FLAG-DONTWAIT",
      "a layer that emulates MSG_DONTWAIT by setting O_NONBLOCK on the descriptor and never restoring it");
FAULT(nosignal_ignored,
      "FLAG-NOSIGNAL",
      "a libc or emulator that drops MSG_NOSIGNAL, so SIGPIPE is raised anyway");
FAULT(sigpipe_never_raised,
      "FLAG-NOSIGNAL",
      "a sandbox that never raises SIGPIPE on a socket (every send behaves as with MSG_NOSIGNAL)");
FAULT(oob_unsupported,
      "FLAG-OOB-URGENT-BYTE,FLAG-OOB-SIGURG,FLAG-OOB-ATMARK",
      "a userspace stack without urgent data: MSG_OOB is sent as normal data and recv(MSG_OOB) fails");
FAULT(sigurg_never_sent,
      "FLAG-OOB-SIGURG",
      "a sandbox that accepts F_SETOWN and delivers urgent data but never raises SIGURG");
FAULT(gather_as_separate_sends,
      "FLAG-WRITEV-GATHER",
      "an LD_PRELOAD stack that implements writev()/sendmsg() as one send() per buffer");
FAULT(writev_first_buffer_only,
      "FLAG-WRITEV-GATHER",
      "a vectored write that sends only the first buffer and returns its length");
FAULT(scatter_as_separate_reads,
      "FLAG-READV-SCATTER",
      "an LD_PRELOAD stack that implements readv() as one read() per buffer");
FAULT(readv_first_buffer_only,
      "FLAG-READV-SCATTER",
      "a vectored read that fills only the first buffer");
FAULT(trunc_flag_ignored,
      "FLAG-TRUNC-UDP",
      "a BSD-style stack where MSG_TRUNC is only an output flag: recv returns the bytes copied");

#define on(name) spfault_on(name)
#define MAXFD 1024

REAL(int, setsockopt, int, int, int, const void *, socklen_t)
REAL(int, listen, int, int)
REAL(ssize_t, sendmsg, int, const struct msghdr *, int)
REAL(ssize_t, readv, int, const struct iovec *, int)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, read, int, void *, size_t)

/* The checks never change errno (spfault_sock_type() does not either). */

static int opt_int(int fd, int level, int opt)
{
	return spfault_sockopt_int(fd, level, opt);
}

/* ---- options that a fault stores instead of applying -------------------- */

enum { F_NODELAY, F_REUSEADDR, F_RCVLOWAT, F_V6ONLY, F_LINGER, F_COUNT };
static struct { ino_t ino; int set; int val; } fake_opt[MAXFD][F_COUNT];


static void fake_store(int fd, int k, int val)
{
	if (fd < 0 || fd >= MAXFD)
		return;
	fake_opt[fd][k].ino = spfault_inode(fd);
	fake_opt[fd][k].set = 1;
	fake_opt[fd][k].val = val;
}

/* The value the program set on this very socket, if a fault stored one. */
static int fake_get(int fd, int k, int *val)
{
	if (fd < 0 || fd >= MAXFD || !fake_opt[fd][k].set || fake_opt[fd][k].ino != spfault_inode(fd))
		return 0;
	*val = fake_opt[fd][k].val;
	return 1;
}

static int fake_key(int level, int opt)
{
	if (level == IPPROTO_TCP && opt == TCP_NODELAY) return F_NODELAY;
	if (level == SOL_SOCKET && opt == SO_REUSEADDR) return F_REUSEADDR;
	if (level == SOL_SOCKET && opt == SO_RCVLOWAT) return F_RCVLOWAT;
	if (level == IPPROTO_IPV6 && opt == IPV6_V6ONLY) return F_V6ONLY;
	return -1;
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	load_setsockopt();
	if (spfault_unix_setsockopt(level, opt)) /* multicast faults (faults/unix.c) */
		return 0;
	if (spfault_listen_setsockopt(fd, level, opt, val, len)) /* faults/listen.c */
		return 0;
	int v = val && len >= sizeof(int) ? *(const int *)val : 0;
	int k = fake_key(level, opt);

	if ((k == F_NODELAY && on("nodelay_ignored")) ||
	    (k == F_REUSEADDR && on("reuseaddr_ignored")) ||
	    (k == F_RCVLOWAT && on("rcvlowat_ignored")) ||
	    (k == F_V6ONLY && on("v6only_ignored"))) {
		fake_store(fd, k, v);
		return 0;
	}
	/* nagle_off: the real socket has Nagle off whatever the program sets;
	 * the program reads back what it set. */
	if (k == F_NODELAY && on("nagle_off")) {
		int one = 1;
		fake_store(fd, k, v);
		return real_setsockopt(fd, level, opt, &one, sizeof(one));
	}
	/* no_v4_mapped: IPV6_V6ONLY stays 1; reads back what was set. */
	if (k == F_V6ONLY && on("no_v4_mapped")) {
		int one = 1;
		fake_store(fd, k, v);
		return real_setsockopt(fd, level, opt, &one, sizeof(one));
	}
	if (level == SOL_SOCKET && opt == SO_KEEPALIVE && on("keepalive_ignored"))
		return 0;
	/* linger_zero_sends_fin: {1,0} is stored (and reads back) but close()
	 * stays graceful. */
	if (level == SOL_SOCKET && opt == SO_LINGER && on("linger_zero_sends_fin") &&
	    len >= sizeof(struct linger) && ((const struct linger *)val)->l_onoff &&
	    ((const struct linger *)val)->l_linger == 0) {
		fake_store(fd, F_LINGER, 1);
		return 0;
	}
	return real_setsockopt(fd, level, opt, val, len);
}

/* getsockopt (spfault.c) calls this after the real call succeeded. */
static int last_so_error[MAXFD];

void spfault_opt_getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	int k = fake_key(level, opt), v;

	if (!val || !len || *len < sizeof(int))
		return;
	if (level == SOL_SOCKET && opt == SO_LINGER && *len >= sizeof(struct linger) &&
	    fake_get(fd, F_LINGER, &v)) {
		((struct linger *)val)->l_onoff = 1;
		((struct linger *)val)->l_linger = 0;
		return;
	}
	if (k >= 0 && fake_get(fd, k, &v)) {
		*(int *)val = k == F_NODELAY || k == F_REUSEADDR ? !!v : v;
		return;
	}
	/* nagle_off: a new socket reads TCP_NODELAY 0 although Nagle is off. */
	if (k == F_NODELAY && on("nagle_off"))
		*(int *)val = 0;
	if (level == SOL_SOCKET && opt == SO_TYPE && on("so_type_always_stream"))
		*(int *)val = SOCK_STREAM;
	/* so_error_sticky: a pending error reads again and again. */
	if (level == SOL_SOCKET && opt == SO_ERROR && on("so_error_sticky") && fd >= 0 && fd < MAXFD) {
		if (*(int *)val)
			last_so_error[fd] = *(int *)val;
		else if (last_so_error[fd])
			*(int *)val = last_so_error[fd];
	}
}

/* ---- flags of recv and send calls (spfault.c calls these) --------------------------- */

/* Returns the flags to use, or -1 (errno set) when the call must fail. */
int spfault_opt_recv_flags(int fd, int flags)
{
	if ((flags & MSG_PEEK) && on("peek_consumes"))
		flags &= ~MSG_PEEK;
	if ((flags & MSG_WAITALL) && on("waitall_ignored"))
		flags &= ~MSG_WAITALL;
	if ((flags & MSG_TRUNC) && on("trunc_flag_ignored") && spfault_sock_type(fd) == SOCK_DGRAM)
		flags &= ~MSG_TRUNC;
	if ((flags & MSG_DONTWAIT) && on("dontwait_sets_nonblock") && spfault_sock_type(fd)) {
		int saved = errno, fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		errno = saved;
		flags &= ~MSG_DONTWAIT;
	}
	if ((flags & MSG_OOB) && on("oob_unsupported") && spfault_sock_type(fd) == SOCK_STREAM) {
		errno = EINVAL;
		return -1;
	}
	return flags;
}

int spfault_opt_send_flags(int fd, int flags)
{
	if (on("nagle_off") && spfault_sock_type(fd) == SOCK_STREAM) {
		int one = 1, saved = errno;
		load_setsockopt();
		real_setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		errno = saved;
	}
	if ((flags & MSG_NOSIGNAL) && on("nosignal_ignored"))
		flags &= ~MSG_NOSIGNAL;
	if (on("sigpipe_never_raised") && spfault_sock_type(fd) == SOCK_STREAM)
		flags |= MSG_NOSIGNAL;
	if ((flags & MSG_OOB) && on("oob_unsupported"))
		flags &= ~MSG_OOB;
	return flags;
}

/* ---- connection set-up (spfault.c calls these) ------------------------------ */

/* After the real connect(): its result, possibly changed. */
int spfault_opt_connect(int fd, int r)
{
	if (r < 0 && errno == ECONNREFUSED && on("connect_refused_times_out"))
		errno = ETIMEDOUT;
	if (r < 0 && errno == EINPROGRESS && on("nonblock_connect_eagain") &&
	    spfault_sock_type(fd) == SOCK_STREAM)
		errno = EAGAIN;
	return r;
}

/* Around the real accept(): nonblock_accept_waits takes O_NONBLOCK off the
 * listener for the call (so it blocks) and puts it back afterwards. */
int spfault_opt_accept_begin(int l)
{
	if (!on("nonblock_accept_waits"))
		return -1;
	int saved = errno, fl = fcntl(l, F_GETFL);
	if (fl >= 0 && (fl & O_NONBLOCK))
		fcntl(l, F_SETFL, fl & ~O_NONBLOCK);
	else
		fl = -1;
	errno = saved;
	return fl;
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

void spfault_opt_accept_end(int l, int fl, struct sockaddr *a, socklen_t *len, int fd)
{
	if (fl >= 0) {
		int saved = errno;
		fcntl(l, F_SETFL, fl);
		errno = saved;
	}
	if (fd >= 0)
		unmap(a, len);
}

/* Is some socket of this process listening on addr's port? */
static int port_has_listener(const struct sockaddr *a)
{
	uint16_t port = a->sa_family == AF_INET6 ? ((const struct sockaddr_in6 *)a)->sin6_port
						 : ((const struct sockaddr_in *)a)->sin_port;
	load_getsockname();
	for (int fd = 3; fd < MAXFD; fd++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (spfault_sock_type(fd) != SOCK_STREAM || !opt_int(fd, SOL_SOCKET, SO_ACCEPTCONN))
			continue;
		if (real_getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
		    ((struct sockaddr_in *)&ss)->sin_port == port)
			return 1;
	}
	return 0;
}

/* After the real bind(): its result, possibly changed. */
int spfault_opt_bind(int fd, const struct sockaddr *a, socklen_t len, int r)
{
	if (r == 0 || errno != EADDRINUSE || spfault_sock_type(fd) != SOCK_STREAM)
		return r;
	/* reuseaddr_steals_port: with SO_REUSEADDR any bind "succeeds". */
	if (on("reuseaddr_steals_port") && opt_int(fd, SOL_SOCKET, SO_REUSEADDR)) {
		errno = 0;
		return 0;
	}
	/* no_time_wait: a port held only by closed connections is free. */
	if (on("no_time_wait") && !port_has_listener(a)) {
		int one = 1, saved = errno;
		load_setsockopt();
		real_setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		int (*rb)(int, const struct sockaddr *, socklen_t) = dlsym(RTLD_NEXT, "bind");
		if (rb && rb(fd, a, len) == 0)
			return 0;
		errno = saved;
	}
	return r;
}

/* ---- interposers of this file ---------------------------------------------- */

int listen(int fd, int backlog)
{
	load_listen();
	if (on("listen_backlog_one") && backlog > 1)
		backlog = 1;
	int own = spfault_listen_listen(fd); /* faults/listen.c */
	if (own)
		return own < 0 ? -1 : 0;
	return real_listen(fd, backlog);
}

int getpeername(int fd, struct sockaddr *a, socklen_t *len)
{
	load_getpeername();
	int r = real_getpeername(fd, a, len);
	if (r == 0)
		unmap(a, len);
	if (r == 0 && on("getpeername_is_local") && spfault_sock_type(fd) == SOCK_STREAM) {
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

/* One send() per buffer (gather_as_separate_sends). */
static ssize_t send_each(int fd, const struct iovec *iov, int n, int flags)
{
	ssize_t total = 0;
	load_send();
	for (int i = 0; i < n; i++) {
		ssize_t w = real_send(fd, iov[i].iov_base, iov[i].iov_len, flags);
		if (w < 0)
			return total ? total : w;
		total += w;
	}
	return total;
}

ssize_t sendmsg(int fd, const struct msghdr *mh, int flags)
{
	load_sendmsg();
	spfault_tick_send(fd);
	flags = spfault_opt_send_flags(fd, flags);
	if (mh && !mh->msg_name && !mh->msg_controllen && on("gather_as_separate_sends") && spfault_sock_type(fd))
		return send_each(fd, mh->msg_iov, (int)mh->msg_iovlen, flags);
	if (mh && mh->msg_iovlen > 1 && on("writev_first_buffer_only") && spfault_sock_type(fd)) {
		struct msghdr one = *mh;
		one.msg_iovlen = 1;
		return real_sendmsg(fd, &one, flags);
	}
	return real_sendmsg(fd, mh, flags);
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	load_writev();
	if (on("gather_as_separate_sends") && spfault_sock_type(fd))
		return send_each(fd, iov, n, 0);
	if (n > 1 && on("writev_first_buffer_only") && spfault_sock_type(fd))
		n = 1;
	return real_writev(fd, iov, n);
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
	load_readv();
	if (n > 1 && on("readv_first_buffer_only") && spfault_sock_type(fd))
		n = 1;
	if (on("scatter_as_separate_reads") && spfault_sock_type(fd)) {
		ssize_t total = 0;
		load_read();
		for (int i = 0; i < n; i++) {
			/* later buffers take only what is already there */
			int fl = i ? fcntl(fd, F_GETFL) : -1;
			if (fl >= 0)
				fcntl(fd, F_SETFL, fl | O_NONBLOCK);
			ssize_t r = real_read(fd, iov[i].iov_base, iov[i].iov_len);
			if (fl >= 0)
				fcntl(fd, F_SETFL, fl);
			if (r < 0)
				return total ? total : r;
			total += r;
			if ((size_t)r < iov[i].iov_len)
				break;
		}
		return total;
	}
	return real_readv(fd, iov, n);
}
