/*
 * faults/mux.c - faults of catalogue 2's MUX-* behaviors: readiness
 * through select() and poll() (part of libspfault.so; see spfault.h).
 *
 * Interposers owned here: poll, ppoll, select, pselect (and an
 * SPF_EPOLL_CTL hook for a closed descriptor). Each is
 * transparent unless one of its faults is on, touches only the sockets
 * its fault is about, and never changes errno in its checks. Other
 * families join them through the SPF_POLL hooks (faults/tick.c; poll and
 * select restart through its SPF_AGAIN stage, faults/intr.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>

#include "spfault.h"

/* ---- checks that never change errno ----------------------------------- */

REAL(int, getpeername, int, struct sockaddr *, socklen_t *)

static int mux_is_stream(int fd) { return spfault_sock_type(fd) == SOCK_STREAM; }

static int mux_is_listener(int fd)
{
	return mux_is_stream(fd) && spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN);
}

FAULT(poll_always_readable,
      "MUX-READABLE-DATA,OPT-RCVLOWAT",
      "an LD_PRELOAD socket stack whose poll() reports its connected sockets readable whether or not data is queued");
FAULT(select_no_wakeup,
      "MUX-READABLE-DATA",
      "a select() emulation that samples readiness at entry and then sleeps out its timeout, never woken by arriving data");
FAULT(poll_eof_not_readable,
      "MUX-READABLE-EOF",
      "a user-space stack whose poll() signals POLLIN only for queued bytes, never for the peer's FIN");
FAULT(select_eof_not_readable,
      "MUX-READABLE-EOF",
      "a user-space stack whose select() marks a socket readable only for queued bytes, never for the peer's FIN");
FAULT(poll_listener_always_readable,
      "MUX-LISTEN-READABLE,LISTEN-DEFER-ACCEPT",
      "an emulator whose poll() reports listening sockets readable whenever polled, so accept() then fails with EAGAIN");
FAULT(select_listener_always_readable,
      "MUX-LISTEN-READABLE",
      "an emulator whose select() reports listening sockets readable whenever asked, so accept() then fails with EAGAIN");
FAULT(poll_always_writable,
      "MUX-WRITABLE",
      "a user-space stack whose poll() reports sockets always writable and lets write() answer EAGAIN instead");
FAULT(select_always_writable,
      "MUX-WRITABLE",
      "a user-space stack whose select() reports sockets always writable and lets write() answer EAGAIN instead");
FAULT(poll_short_timeout_expires_early,
      "MUX-SELECT-TIMEOUT",
      "a poll() emulation that converts its millisecond timeout to 10 ms ticks rounding down, so short timeouts expire at once");
FAULT(pollhup_on_peer_fin,
      "MUX-POLLHUP,MUX-POLLRDHUP",
      "a WSAPoll-style layer that reports the peer's graceful close (FIN) as POLLHUP on a half-open connection");
FAULT(pollerr_dropped,
      "MUX-POLLHUP,MUX-POLLERR-REFUSED",
      "a poll() emulation that reports a reset or a refused connect as POLLHUP only (POLLHUP where POLLERR is due)");
FAULT(pollrdhup_unmasked,
      "MUX-POLLRDHUP",
      "a poll() that does not mask revents by the requested events, so POLLRDHUP arrives unrequested");
FAULT(select_connect_error_in_exceptfds,
      "MUX-POLLERR-REFUSED",
      "Winsock-style select() that reports a failed non-blocking connect in the except set, not as writable");
FAULT(select_keeps_idle_bits,
      "MUX-SELECT-SETS-MODIFIED",
      "a select() emulation that returns the ready count but leaves the caller's fd_sets as passed");
FAULT(poll_leaves_stale_revents,
      "MUX-SELECT-SETS-MODIFIED",
      "a poll() emulation that writes revents only for ready entries and leaves the others' old values");
FAULT(select_timeout_leaves_sets,
      "MUX-SELECT-TIMEOUT",
      "a select() emulation that returns 0 at its timeout without clearing the caller's fd_sets");
FAULT(select_zero_timeout_blocks,
      "MUX-SELECT-TIMEOUT",
      "a select() emulation that treats a zero timeval like a NULL timeout and blocks");
FAULT(poll_skips_closed_fds,
      "MUX-CLOSED-FD",
      "a user-space poll() that silently skips descriptors it does not know, so a closed one just never becomes ready");
FAULT(select_skips_closed_fds,
      "MUX-CLOSED-FD",
      "a user-space select() that ignores closed descriptors in its sets instead of failing with EBADF");
FAULT(epoll_ctl_takes_closed_fds,
      "MUX-CLOSED-FD",
      "a user-space epoll in an LD_PRELOAD stack whose EPOLL_CTL_ADD takes any descriptor number, a "
      "closed one too, answers 0 and never reports it");

REAL(int, poll, struct pollfd *, nfds_t, int)
REAL(int, ppoll, struct pollfd *, nfds_t, const struct timespec *, const sigset_t *)
REAL(int, select, int, fd_set *, fd_set *, fd_set *, struct timeval *)
REAL(int, pselect, int, fd_set *, fd_set *, fd_set *, const struct timespec *, const sigset_t *)

static int mux_is_closed(int fd)
{
	int saved = errno;
	int r = fd >= 0 && fcntl(fd, F_GETFD) < 0 && errno == EBADF;
	errno = saved;
	return r;
}

/* epoll_ctl_takes_closed_fds: EPOLL_CTL_ADD of a closed descriptor answers
 * 0 (faults/epoll.c's epoll_ctl runs the SPF_EPOLL_CTL hooks). */
SPF_HOOK(mux_epoll_add_closed, SPF_OP(SPF_EPOLL_CTL), SPF_BEFORE, 5)
{
	if (c->flags != EPOLL_CTL_ADD || !spfault_on("epoll_ctl_takes_closed_fds") || !mux_is_closed(c->fd))
		return 0;
	c->r = 0;
	return 1;
}

static int mux_connected(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	load_getpeername();
	int r = mux_is_stream(fd) && real_getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
	errno = saved;
	return r;
}

/* A stream socket with nothing queued and no pending error (a FIN only). */
static int mux_eof_only(int fd)
{
	int inq = -1, saved = errno;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	load_poll();
	int r = mux_is_stream(fd) && !mux_is_listener(fd) && ioctl(fd, FIONREAD, &inq) == 0 &&
		inq == 0 && real_poll(&p, 1, 0) == 1 && !(p.revents & POLLERR);
	errno = saved;
	return r;
}

/* A connect that failed: a stream socket, not a listener, no peer, closed,
 * an error pending (seen by poll, so SO_ERROR is not consumed). */
static int mux_connect_failed(int fd)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	int saved = errno;

	memset(&ti, 0, sizeof(ti));
	load_poll();
	int r = mux_is_stream(fd) && !mux_is_listener(fd) && !mux_connected(fd) &&
		getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE &&
		ti.tcpi_rtt == 0 /* never connected: no round trip measured (a reset
				    connection had one) */ &&
		real_poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
	errno = saved;
	return r;
}

/* Half-closed by the peer (its FIN arrived), found without consuming anything. */
static int mux_peer_fin(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };
	int saved = errno;

	load_poll();
	int r = mux_is_stream(fd) && real_poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP);
	errno = saved;
	return r;
}

/* Is any of these faults on? (Without one, the calls go straight through.) */
static int mux_any_on(const char *const *names)
{
	for (; *names; names++)
		if (spfault_on(*names))
			return 1;
	return 0;
}

static const char *const poll_faults[] = {
	"poll_skips_closed_fds", "pollrdhup_unmasked", "poll_always_readable",
	"poll_eof_not_readable", "poll_listener_always_readable", "poll_always_writable",
	"pollhup_on_peer_fin", "pollerr_dropped", "poll_leaves_stale_revents",
	"poll_short_timeout_expires_early", NULL,
};
static const char *const select_faults[] = {
	"select_skips_closed_fds", "select_zero_timeout_blocks", "select_no_wakeup",
	"select_eof_not_readable", "select_listener_always_readable", "select_always_writable",
	"select_connect_error_in_exceptfds", "select_keeps_idle_bits",
	"select_timeout_leaves_sets", NULL,
};

/* The SPF_POLL hooks (faults/tick.c) see whether the timeout is zero. */
static void zero_timeout(int zero)
{
	struct spf_call c = { .op = SPF_POLL, .fd = -1, .zero_timeout = zero };
	spfault_before(&c);
}

/* ---- poll, ppoll ---- */

#define MUX_MAXP 64

static int mux_poll_core(struct pollfd *p, nfds_t n, int ms, const struct timespec *ts,
			 const sigset_t *mask, int use_ppoll)
{
	short events[MUX_MAXP], old_revents[MUX_MAXP];
	int fds[MUX_MAXP];
	struct timespec tcopy;
	int r;

	load_poll();
	load_ppoll();
	if (n > MUX_MAXP || !p || !mux_any_on(poll_faults))
		return use_ppoll ? real_ppoll(p, n, ts, mask) : real_poll(p, n, ms);
	for (nfds_t i = 0; i < n; i++) {
		events[i] = p[i].events;
		old_revents[i] = p[i].revents;
		fds[i] = p[i].fd;
		if (spfault_on("poll_skips_closed_fds") && mux_is_closed(p[i].fd))
			p[i].fd = -1;
		if (spfault_on("pollrdhup_unmasked") && mux_is_stream(p[i].fd))
			p[i].events |= POLLRDHUP;
	}
	if (spfault_on("poll_short_timeout_expires_early")) {
		/* 10 ms ticks, rounded down. */
		if (!use_ppoll && ms > 0)
			ms = ms / 10 * 10;
		if (use_ppoll && ts && ts->tv_sec == 0) {
			tcopy = *ts;
			tcopy.tv_nsec = tcopy.tv_nsec / 10000000L * 10000000L;
			ts = &tcopy;
		}
	}
	if (use_ppoll) {
		if (ts)
			tcopy = *ts;
		r = real_ppoll(p, n, ts ? &tcopy : NULL, mask);
	} else {
		r = real_poll(p, n, ms);
	}
	int saved = errno;
	if (r >= 0) {
		r = 0;
		for (nfds_t i = 0; i < n; i++) {
			int fd = p[i].fd = fds[i];
			short want = p[i].events = events[i], got = p[i].revents;
			if (fd >= 0 && p[i].revents != POLLNVAL) {
				if (spfault_on("poll_always_readable") && (want & POLLIN) && mux_connected(fd))
					got |= POLLIN;
				if (spfault_on("poll_eof_not_readable") && (got & POLLIN) && mux_eof_only(fd))
					got &= ~POLLIN;
				if (spfault_on("poll_listener_always_readable") && (want & POLLIN) &&
				    mux_is_listener(fd))
					got |= POLLIN;
				if (spfault_on("poll_always_writable") && (want & POLLOUT) && mux_connected(fd))
					got |= POLLOUT;
				if (spfault_on("pollhup_on_peer_fin") && mux_peer_fin(fd))
					got |= POLLHUP;
				if (spfault_on("pollerr_dropped") && mux_is_stream(fd))
					got &= ~POLLERR;
			}
			if (spfault_on("poll_leaves_stale_revents") && !got)
				got = old_revents[i];
			p[i].revents = got;
			r += got != 0;
		}
	}
	errno = saved;
	return r;
}

int poll(struct pollfd *p, nfds_t n, int ms)
{
	zero_timeout(ms == 0);
	struct spf_call c = { .op = SPF_POLL, .fd = -1, .zero_timeout = ms == 0 };
	do
		c.r = mux_poll_core(p, n, ms, NULL, NULL, 0);
	while (spfault_again(&c));
	return (int)c.r;
}

int ppoll(struct pollfd *p, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	zero_timeout(ts && !ts->tv_sec && !ts->tv_nsec);
	return mux_poll_core(p, n, 0, ts, mask, 1);
}

/* ---- select, pselect ---- */

static int mux_select_core(int nfds, fd_set *rs, fd_set *ws, fd_set *es, struct timeval *tv,
			   const struct timespec *ts, const sigset_t *mask, int use_pselect)
{
	fd_set in_r, in_w, in_e, none;
	struct timespec tcopy;
	struct timeval zero_tv = { 0, 0 };
	int r, saved;

	load_select();
	load_pselect();
	load_poll();
	if (nfds > FD_SETSIZE || nfds < 0 || !mux_any_on(select_faults))
		return use_pselect ? real_pselect(nfds, rs, ws, es, ts, mask)
				   : real_select(nfds, rs, ws, es, tv);
	FD_ZERO(&none);
	in_r = rs ? *rs : none;
	in_w = ws ? *ws : none;
	in_e = es ? *es : none;
	if (spfault_on("select_skips_closed_fds"))
		for (int fd = 0; fd < nfds; fd++)
			if (mux_is_closed(fd)) {
				if (rs)
					FD_CLR(fd, rs);
				if (ws)
					FD_CLR(fd, ws);
				if (es)
					FD_CLR(fd, es);
			}
	long wait_ms = -1;
	if (use_pselect && ts)
		wait_ms = ts->tv_sec * 1000L + ts->tv_nsec / 1000000L;
	else if (!use_pselect && tv)
		wait_ms = tv->tv_sec * 1000L + tv->tv_usec / 1000L;
	if (spfault_on("select_zero_timeout_blocks") && wait_ms == 0) {
		tv = NULL;
		ts = NULL;
	}
	if (spfault_on("select_no_wakeup") && wait_ms > 0) {
		/* Sample now; if nothing is ready, sleep the timeout and say 0.
		 * The sleep is a wait like the real one for signals: pselect's
		 * mask is in effect and a handled signal ends it with EINTR
		 * (SIG-INTERRUPTS-SLEEP is not this fault's). */
		fd_set r0 = rs ? *rs : none, w0 = ws ? *ws : none, e0 = es ? *es : none;
		r = real_select(nfds, rs ? &r0 : NULL, ws ? &w0 : NULL, es ? &e0 : NULL, &zero_tv);
		if (r == 0) {
			struct timespec sleep_ts = { wait_ms / 1000, (wait_ms % 1000) * 1000000L };
			load_ppoll();
			if (real_ppoll(NULL, 0, &sleep_ts, use_pselect ? mask : NULL) < 0 && errno == EINTR)
				return -1;
			if (tv)
				*tv = zero_tv;
		}
		if (rs)
			*rs = r0;
		if (ws)
			*ws = w0;
		if (es)
			*es = e0;
	} else if (use_pselect) {
		if (ts)
			tcopy = *ts;
		r = real_pselect(nfds, rs, ws, es, ts ? &tcopy : NULL, mask);
	} else {
		r = real_select(nfds, rs, ws, es, tv);
	}
	saved = errno;
	if (r < 0) {
		errno = saved;
		return r;
	}
	for (int fd = 0; fd < nfds; fd++) {
		if (spfault_on("select_eof_not_readable") && rs && FD_ISSET(fd, rs) && mux_eof_only(fd))
			FD_CLR(fd, rs);
		if (spfault_on("select_listener_always_readable") && rs && FD_ISSET(fd, &in_r) &&
		    mux_is_listener(fd))
			FD_SET(fd, rs);
		if (spfault_on("select_always_writable") && ws && FD_ISSET(fd, &in_w) && mux_connected(fd))
			FD_SET(fd, ws);
		if (spfault_on("select_connect_error_in_exceptfds") && ws && FD_ISSET(fd, ws) &&
		    mux_connect_failed(fd)) {
			FD_CLR(fd, ws);
			if (rs)
				FD_CLR(fd, rs);
			if (es && FD_ISSET(fd, &in_e))
				FD_SET(fd, es);
		}
	}
	r = 0;
	for (int fd = 0; fd < nfds; fd++)
		r += (rs && FD_ISSET(fd, rs)) + (ws && FD_ISSET(fd, ws)) + (es && FD_ISSET(fd, es));
	if ((r > 0 && spfault_on("select_keeps_idle_bits")) ||
	    (r == 0 && spfault_on("select_timeout_leaves_sets"))) {
		if (rs)
			*rs = in_r;
		if (ws)
			*ws = in_w;
		if (es)
			*es = in_e;
	}
	errno = saved;
	return r;
}

int select(int nfds, fd_set *rs, fd_set *ws, fd_set *es, struct timeval *tv)
{
	zero_timeout(tv && !tv->tv_sec && !tv->tv_usec);
	struct spf_call c = { .op = SPF_POLL, .fd = -1,
			      .zero_timeout = tv && !tv->tv_sec && !tv->tv_usec };
	do
		c.r = mux_select_core(nfds, rs, ws, es, tv, NULL, NULL, 0);
	while (spfault_again(&c));
	return (int)c.r;
}

int pselect(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *ts,
	    const sigset_t *mask)
{
	zero_timeout(ts && !ts->tv_sec && !ts->tv_nsec);
	return mux_select_core(nfds, rs, ws, es, NULL, ts, mask, 1);
}
