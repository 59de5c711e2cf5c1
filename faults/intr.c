/*
 * faults/intr.c - faults for catalogue 3's INTR-* and TIMEO-* behaviors
 * (signals and blocking calls, socket timeouts). Part of libspfault.so;
 * see spfault.h for the conventions.
 *
 * Interposes nothing: joins read, recv, recvfrom, recvmsg, accept,
 * accept4, send and connect (faults/core.c), poll and select
 * (faults/mux.c) and epoll_wait (faults/epoll.c) through hooks: an
 * SPF_BEFORE hook that makes the call itself (the waits below), an
 * SPF_AGAIN hook that restarts a failed call, SPF_AFTER hooks that change
 * what the caller sees.
 *
 * The faults wait with raw ppoll() system calls (past mux.c), which a
 * signal always interrupts, whatever SA_RESTART says: that is how a stack
 * that does not restart, or ignores a timeout, behaves. Everything is
 * transparent while no fault of this file is on.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>

#include "spfault.h"

FAULT(socket_calls_not_restarted,
      "INTR-RESTART-SOCKET-CALLS",
      "gVisor before its fix (google/gvisor#13179): a blocked recv/recvfrom or accept on a TCP "
      "socket fails with EINTR although the handler was installed with SA_RESTART");
FAULT(connect_not_restarted,
      "INTR-CONNECT",
      "Minoca OS (minoca/os#72): a blocking connect() is not restarted under SA_RESTART, it "
      "fails with EINTR");
FAULT(interrupted_connect_aborted,
      "INTR-CONNECT",
      "a stack that abandons the connection request when connect() is interrupted, so a "
      "retry starts over (no EALREADY, the attempt never completes) instead of going on "
      "asynchronously as POSIX requires");
FAULT(timed_calls_restarted,
      "INTR-TIMEOUT-NO-RESTART",
      "a stack that restarts socket calls with SO_RCVTIMEO/SO_SNDTIMEO under SA_RESTART, "
      "so they wait on for their timeout (the restart logic of minoca/os#72)");
FAULT(mux_restarted,
      "INTR-MUX-NO-RESTART",
      "an emulator that restarts poll/select/epoll_wait under SA_RESTART with the original "
      "timeout (the Cap'n Proto bug capnproto/capnproto#580, done by the system)");
FAULT(interrupted_send_reports_eintr,
      "INTR-PARTIAL-TRANSFER",
      "Nanvix (nanvix/nanvix#3016): a blocking send interrupted after it moved data fails "
      "with EINTR instead of returning the count, so the caller sends those bytes again");
FAULT(accept_ignores_rcvtimeo,
      "TIMEO-RCVTIMEO",
      "macOS as seen by RoboVM (robovm/robovm#78): accept() on a listener with SO_RCVTIMEO "
      "blocks until a connection comes, ignoring the timeout");
FAULT(sndtimeo_ignored,
      "TIMEO-SNDTIMEO,INTR-TIMEOUT-NO-RESTART",
      "Zephyr before its send timeout path (zephyrproject-rtos/zephyr#31369): SO_SNDTIMEO is "
      "stored and read back, but a blocking send on a full buffer waits without limit");
FAULT(connect_ignores_sndtimeo,
      "TIMEO-CONNECT",
      "a stack where SO_SNDTIMEO bounds only send(), as is widely believed of Linux: a "
      "blocking connect() to a full accept queue waits for the handshake without limit");

REAL(int, sigaction, int, const struct sigaction *, struct sigaction *)

/* Errno-keeping facts about fd. */
static int family(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno, r = getsockname(fd, (struct sockaddr *)&ss, &len);
	errno = saved;
	return r == 0 ? ss.ss_family : -1;
}

static int inet_stream(int fd)
{
	int f = family(fd);
	return (f == AF_INET || f == AF_INET6) && spfault_sock_type(fd) == SOCK_STREAM;
}

static int blocking(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);
	errno = saved;
	return fl >= 0 && !(fl & O_NONBLOCK);
}

static int has_timeout(int fd, int opt)
{
	struct timeval tv = { 0, 0 };
	socklen_t len = sizeof(tv);
	int saved = errno, r = syscall(SYS_getsockopt, fd, SOL_SOCKET, opt, &tv, &len);
	errno = saved;
	return r == 0 && (tv.tv_sec || tv.tv_usec);
}

/* Is SIGALRM's handler installed with SA_RESTART (the catalogue's signal)? */
static int alrm_restarts(void)
{
	struct sigaction now;
	int saved = errno;
	load_sigaction();
	int r = real_sigaction(SIGALRM, NULL, &now);
	errno = saved;
	return r == 0 && now.sa_handler != SIG_DFL && now.sa_handler != SIG_IGN &&
	       (now.sa_flags & SA_RESTART);
}

/* Wait for events on fd without limit; a signal ends the wait (EINTR),
 * whatever SA_RESTART says. 0 when ready. */
static int wait_unbounded(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	long r = syscall(SYS_ppoll, &p, 1, NULL, NULL, 0);
	return r < 0 ? -1 : 0;
}

/* Is any fault of this file on? (Cheap: most calls need no more.) */
static int any_on(void)
{
	static const char *const mine[] = {
		"socket_calls_not_restarted", "connect_not_restarted", "interrupted_connect_aborted",
		"timed_calls_restarted", "mux_restarted", "interrupted_send_reports_eintr",
		"accept_ignores_rcvtimeo", "sndtimeo_ignored", "connect_ignores_sndtimeo",
	};
	static int known = -1;
	if (known < 0) {
		known = 0;
		for (size_t i = 0; i < sizeof(mine) / sizeof(mine[0]); i++)
			known |= spfault_on(mine[i]);
	}
	return known;
}

static __thread int held_fd = -1;      /* sndtimeo_ignored: whose timeout is held */
static __thread struct timeval held_tv;

/* The blocking calls of a TCP socket (faults after every other family's
 * SPF_BEFORE hook, as the old interposers ran them last). */
SPF_HOOK(intr_before, SPF_RECEIVING | SPF_OP(SPF_ACCEPT) | SPF_OP(SPF_SEND), SPF_BEFORE, 90)
{
	int fd = c->fd, taking = c->op != SPF_SEND;

	if (!any_on() || fd < 0 || !inet_stream(fd) || !blocking(fd))
		return 0;
	/* socket_calls_not_restarted: the call waits where no restart can
	 * happen; a handled signal ends it with EINTR. */
	if (taking && spfault_on("socket_calls_not_restarted") && alrm_restarts() &&
	    !has_timeout(fd, SO_RCVTIMEO) && wait_unbounded(fd, POLLIN) < 0) {
		c->r = -1;
		return 1;
	}
	/* accept_ignores_rcvtimeo: wait for a connection, whatever the timeout. */
	if (c->op == SPF_ACCEPT && spfault_on("accept_ignores_rcvtimeo") &&
	    has_timeout(fd, SO_RCVTIMEO) && wait_unbounded(fd, POLLIN) < 0) {
		c->r = -1;
		return 1;
	}
	/* sndtimeo_ignored: the send is made as if no timeout were set (it is
	 * put back after the call: the program reads back what it set). */
	if (c->op == SPF_SEND && spfault_on("sndtimeo_ignored") && has_timeout(fd, SO_SNDTIMEO)) {
		socklen_t len = sizeof(held_tv);
		struct timeval none = { 0, 0 };
		int saved = errno;
		if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &held_tv, &len) == 0 &&
		    syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)) == 0)
			held_fd = fd;
		errno = saved;
	}
	return 0;
}

static __thread int restarted;

/* mux_restarted, timed_calls_restarted: an interrupted call under
 * SA_RESTART is made again (once per call). */
SPF_HOOK(intr_again, SPF_RECEIVING | SPF_OP(SPF_ACCEPT) | SPF_OP(SPF_SEND) |
	 SPF_OP(SPF_CONNECT) | SPF_OP(SPF_POLL), SPF_AGAIN, 90)
{
	int again = 0, fd = c->fd;

	if (errno == EINTR && any_on() && !restarted && alrm_restarts()) {
		if (c->op == SPF_POLL)
			again = spfault_on("mux_restarted");
		else if (spfault_on("timed_calls_restarted") && fd >= 0 && inet_stream(fd))
			again = has_timeout(fd, c->op == SPF_SEND || c->op == SPF_CONNECT ? SO_SNDTIMEO
											  : SO_RCVTIMEO);
	}
	restarted = again;
	return again;
}

SPF_HOOK(intr_after_send, SPF_OP(SPF_SEND), SPF_AFTER, 90)
{
	int fd = c->fd;

	if (held_fd >= 0 && held_fd == fd) {
		int saved = errno;
		syscall(SYS_setsockopt, fd, SOL_SOCKET, SO_SNDTIMEO, &held_tv, sizeof(held_tv));
		held_fd = -1;
		errno = saved;
	}
	/* interrupted_send_reports_eintr: a short count of a blocking send
	 * (only a signal makes one when no SO_SNDTIMEO is set) becomes EINTR. */
	if (c->r > 0 && (size_t)c->r < c->n && any_on() &&
	    spfault_on("interrupted_send_reports_eintr") && inet_stream(fd) && blocking(fd) &&
	    !has_timeout(fd, SO_SNDTIMEO)) {
		errno = EINTR;
		c->r = -1;
	}
	return 0;
}

/* connect_not_restarted (under SA_RESTART), connect_ignores_sndtimeo
 * (with SO_SNDTIMEO): start the attempt, then wait for it without limit
 * where no restart can happen. */
SPF_HOOK(intr_connect, SPF_OP(SPF_CONNECT), SPF_BEFORE, 90)
{
	int fd = c->fd;
	const struct sockaddr *a = c->to;

	if (!any_on() || fd < 0 || !a || a->sa_family == AF_UNSPEC || !inet_stream(fd) ||
	    !blocking(fd))
		return 0;
	if (!(spfault_on("connect_not_restarted") && alrm_restarts() &&
	      !has_timeout(fd, SO_SNDTIMEO)) &&
	    !(spfault_on("connect_ignores_sndtimeo") && has_timeout(fd, SO_SNDTIMEO)))
		return 0;
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	c->r = syscall(SYS_connect, fd, a, c->tolen);
	int err = errno;
	fcntl(fd, F_SETFL, fl);
	if (c->r == 0 || err != EINPROGRESS) {
		errno = err;
		return 1;
	}
	if (wait_unbounded(fd, POLLOUT) < 0) {
		c->r = -1; /* EINTR */
		return 1;
	}
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	errno = soerr;
	c->r = soerr ? -1 : 0;
	return 1;
}

/* interrupted_connect_aborted: the attempt is dropped (AF_UNSPEC). */
SPF_HOOK(interrupted_connect_aborted, SPF_OP(SPF_CONNECT), SPF_AFTER, 1)
{
	if (c->r < 0 && errno == EINTR && any_on() && spfault_on("interrupted_connect_aborted") &&
	    c->to && c->to->sa_family != AF_UNSPEC && c->fd >= 0 && inet_stream(c->fd) &&
	    blocking(c->fd)) {
		struct sockaddr un = { .sa_family = AF_UNSPEC };
		syscall(SYS_connect, c->fd, &un, sizeof(un));
		errno = EINTR;
	}
	return 0;
}
