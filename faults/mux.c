/*
 * faults/mux.c - faults for catalogue 2's MUX-*, EPOLL-* and STDIO-*
 * behaviors (select/poll, epoll, sockets under stdio), part of
 * libspfault.so.
 *
 * Interposers owned here: poll, ppoll, select, pselect, epoll_ctl,
 * epoll_wait, epoll_pwait, fdopen, fflush, fclose (and dup, owned by the
 * UNIX/THREAD group; kept small here for STDIO-DUP-TWO-STREAMS). Each is
 * transparent unless one of its faults is on, touches only the sockets
 * its fault is about, and never changes errno in its checks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "spfault.h"

/* ---- checks that never change errno ----------------------------------- */

static int mux_is_stream(int fd) { return spfault_sock_type(fd) == SOCK_STREAM; }

static int mux_is_listener(int fd)
{
	return mux_is_stream(fd) && spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN);
}

static int mux_is_regular(int fd)
{
	struct stat st;
	int saved = errno;
	int r = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	errno = saved;
	return r;
}

/* ==== epoll ============================================================== */

FAULT(epoll_edge_as_level,
      "EPOLL-EDGE",
      "an epoll emulation that ignores EPOLLET and reports edge-triggered registrations like level-triggered");
FAULT(epoll_level_as_edge,
      "EPOLL-LEVEL",
      "an epoll shim over an edge-only notifier (kqueue EV_CLEAR-style) that reports level registrations only on new arrivals");
FAULT(epoll_oneshot_as_edge,
      "EPOLL-ONESHOT",
      "an epoll emulation that implements EPOLLONESHOT as edge-triggered, so new data re-reports a disabled socket");
FAULT(epoll_oneshot_deletes,
      "EPOLL-ONESHOT",
      "an epoll shim over kqueue's EV_ONESHOT, which deletes the registration after one report instead of disabling it");
FAULT(epoll_rdhup_as_hup,
      "EPOLL-RDHUP",
      "an emulation layer that reports the peer's FIN as a hang-up (EPOLLHUP), as Winsock-based layers report a graceful close");
FAULT(epoll_hup_err_need_request,
      "EPOLL-HUP-ERR-ALWAYS",
      "an epoll emulation that filters every condition by the requested mask, so unrequested EPOLLHUP/EPOLLERR never arrive");
FAULT(epoll_registry_by_number,
      "EPOLL-CLOSE-REMOVES",
      "a user-space epoll in an LD_PRELOAD stack, keyed by descriptor number, that never learns of close()");
FAULT(epoll_ctl_add_replaces,
      "EPOLL-CTL-ERRORS",
      "an epoll shim that merges a repeated EPOLL_CTL_ADD into a MOD instead of failing with EEXIST");
FAULT(epoll_regular_file_ready,
      "EPOLL-CTL-ERRORS",
      "an emulator that accepts regular files in epoll (always ready) instead of failing with EPERM");

FAULT(epoll_del_ignored,
      "EPOLL-CTL-ERRORS",
      "an epoll shim whose EPOLL_CTL_DEL answers 0 without removing anything (and so never reports ENOENT)");
FAULT(epoll_wait_no_wakeup,
      "EPOLL-LEVEL,EPOLL-EDGE",
      "an epoll emulation that checks readiness when epoll_wait is called and then sleeps out the timeout, never woken by arrivals");

REAL(int, epoll_ctl, int, int, int, struct epoll_event *)
REAL(int, epoll_wait, int, struct epoll_event *, int, int)
REAL(int, epoll_pwait, int, struct epoll_event *, int, int, const sigset_t *)

/* What the program registered (the shims above keep such a table). */
#define EP_REGS 256
static struct ep_reg {
	int used, ep, fd;
	ino_t ep_ino;           /* which epoll instance (its number may be reused) */
	uint32_t events;
	uint64_t data;
} ep_regs[EP_REGS];


static struct ep_reg *ep_find(int ep, int fd)
{
	ino_t ino = spfault_inode(ep);
	for (int i = 0; i < EP_REGS; i++)
		if (ep_regs[i].used && ep_regs[i].ep == ep && ep_regs[i].ep_ino == ino &&
		    ep_regs[i].fd == fd)
			return &ep_regs[i];
	return NULL;
}

static struct ep_reg *ep_find_data(int ep, uint64_t data)
{
	ino_t ino = spfault_inode(ep);
	for (int i = 0; i < EP_REGS; i++)
		if (ep_regs[i].used && ep_regs[i].ep == ep && ep_regs[i].ep_ino == ino &&
		    ep_regs[i].data == data)
			return &ep_regs[i];
	return NULL;
}

static void ep_note(int ep, int op, int fd, const struct epoll_event *ev)
{
	struct ep_reg *r = ep_find(ep, fd);

	if (op == EPOLL_CTL_DEL) {
		if (r)
			r->used = 0;
		return;
	}
	if (!r && op == EPOLL_CTL_ADD)
		for (int i = 0; i < EP_REGS && !r; i++)
			if (!ep_regs[i].used)
				r = &ep_regs[i];
	if (r && ev)
		*r = (struct ep_reg){ 1, ep, fd, spfault_inode(ep), ev->events, ev->data.u64 };
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	struct epoll_event copy;

	load_epoll_ctl();
	if (op == EPOLL_CTL_ADD && spfault_on("epoll_registry_by_number") && ep_find(ep, fd)) {
		errno = EEXIST;
		return -1;
	}
	if (op == EPOLL_CTL_ADD && spfault_on("epoll_regular_file_ready") && mux_is_regular(fd))
		return 0;
	if (op == EPOLL_CTL_DEL && spfault_on("epoll_del_ignored"))
		return 0;
	if (ev && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD)) {
		copy = *ev;
		if (spfault_on("epoll_edge_as_level"))
			copy.events &= ~EPOLLET;
		if (spfault_on("epoll_level_as_edge") && !(copy.events & (EPOLLET | EPOLLONESHOT)))
			copy.events |= EPOLLET;
		if (spfault_on("epoll_oneshot_as_edge") && (copy.events & EPOLLONESHOT))
			copy.events = (copy.events & ~EPOLLONESHOT) | EPOLLET;
		ev = &copy;
	}
	int r = real_epoll_ctl(ep, op, fd, ev);
	if (r < 0 && errno == EEXIST && op == EPOLL_CTL_ADD && spfault_on("epoll_ctl_add_replaces"))
		r = real_epoll_ctl(ep, op = EPOLL_CTL_MOD, fd, ev);
	if (r == 0)
		ep_note(ep, op, fd, ev);
	return r;
}

/* Rewrite what epoll_wait returned, as the faulty shims would. */
static int ep_after_wait(int ep, struct epoll_event *ev, int n)
{
	int saved = errno, out = 0;

	for (int i = 0; i < n; i++) {
		struct ep_reg *r = ep_find_data(ep, ev[i].data.u64);
		uint32_t e = ev[i].events;
		if (spfault_on("epoll_rdhup_as_hup") && (e & EPOLLRDHUP))
			e |= EPOLLHUP;
		if (spfault_on("epoll_hup_err_need_request") && r)
			e &= r->events | ~(uint32_t)(EPOLLHUP | EPOLLERR);
		if (spfault_on("epoll_oneshot_deletes") && r && (r->events & EPOLLONESHOT)) {
			real_epoll_ctl(ep, EPOLL_CTL_DEL, r->fd, NULL);
			r->used = 0;
		}
		if (!e)
			continue;
		ev[out] = ev[i];
		ev[out++].events = e;
	}
	errno = saved;
	return out;
}

/* epoll_wait_no_wakeup: sample at entry; if nothing, sleep out the timeout. */
static int ep_sleep_out(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	return 0;
}

int epoll_wait(int ep, struct epoll_event *ev, int max, int ms)
{
	load_epoll_wait();
	load_epoll_ctl();
	int nowake = ms > 0 && spfault_on("epoll_wait_no_wakeup");
	int n;
	while ((n = real_epoll_wait(ep, ev, max, nowake ? 0 : ms)) < 0 &&
	       spfault_intr_again(SPF_MUX, -1)) /* faults/intr.c */
		;
	if (n == 0 && nowake)
		return ep_sleep_out(ms);
	return n > 0 ? ep_after_wait(ep, ev, n) : n;
}

int epoll_pwait(int ep, struct epoll_event *ev, int max, int ms, const sigset_t *mask)
{
	load_epoll_pwait();
	load_epoll_ctl();
	int nowake = ms > 0 && spfault_on("epoll_wait_no_wakeup");
	int n = real_epoll_pwait(ep, ev, max, nowake ? 0 : ms, mask);
	if (n == 0 && nowake)
		return ep_sleep_out(ms);
	return n > 0 ? ep_after_wait(ep, ev, n) : n;
}

/* ==== select and poll ===================================================== */

FAULT(poll_always_readable,
      "MUX-READABLE-DATA",
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
      "MUX-LISTEN-READABLE",
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

static int mux_connected(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	int r = mux_is_stream(fd) && getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
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
	spfault_tick_zero_timeout(ms == 0);
	int r;
	while ((r = mux_poll_core(p, n, ms, NULL, NULL, 0)) < 0 && spfault_intr_again(SPF_MUX, -1))
		; /* faults/intr.c */
	return r;
}

int ppoll(struct pollfd *p, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	spfault_tick_zero_timeout(ts && !ts->tv_sec && !ts->tv_nsec);
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
		/* Sample now; if nothing is ready, sleep the timeout and say 0. */
		fd_set r0 = rs ? *rs : none, w0 = ws ? *ws : none, e0 = es ? *es : none;
		r = real_select(nfds, rs ? &r0 : NULL, ws ? &w0 : NULL, es ? &e0 : NULL, &zero_tv);
		if (r == 0) {
			real_poll(NULL, 0, (int)wait_ms);
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
	spfault_tick_zero_timeout(tv && !tv->tv_sec && !tv->tv_usec);
	int r;
	while ((r = mux_select_core(nfds, rs, ws, es, tv, NULL, NULL, 0)) < 0 &&
	       spfault_intr_again(SPF_MUX, -1)) /* faults/intr.c */
		;
	return r;
}

int pselect(int nfds, fd_set *rs, fd_set *ws, fd_set *es, const struct timespec *ts,
	    const sigset_t *mask)
{
	spfault_tick_zero_timeout(ts && !ts->tv_sec && !ts->tv_nsec);
	return mux_select_core(nfds, rs, ws, es, NULL, ts, mask, 1);
}

/* ==== sockets under stdio ================================================== */

FAULT(fdopen_rejects_sockets,
      "STDIO-FDOPEN",
      "a libc or sandbox whose fdopen() insists on a seekable file and fails with ESPIPE on sockets");
FAULT(fgets_stops_at_read_boundary,
      "STDIO-FDOPEN",
      "a record-oriented stdio layer whose fgets() returns what one read() gave, splitting lines that arrive in pieces");
FAULT(socket_streams_unbuffered,
      "STDIO-BUFFERED-UNTIL-FLUSH",
      "a libc or runtime (stdbuf-style preload) that makes every non-tty stream unbuffered, so each fputs is a write");
FAULT(fflush_skips_sockets,
      "STDIO-BUFFERED-UNTIL-FLUSH",
      "a libc whose fflush() on a non-seekable stream keeps the data until the buffer fills or fclose()");
FAULT(fclose_leaves_socket_open,
      "STDIO-FCLOSE-CLOSES-FD",
      "an LD_PRELOAD stack that hooks close() but not libc's internal close in fclose(), so the connection stays open");
FAULT(fclose_shuts_down_socket,
      "STDIO-FCLOSE-NO-HALF-CLOSE",
      "a stdio layer that treats fclose() of a socket stream as the end of the connection and sends a FIN despite a dup()");
FAULT(dup_gives_unconnected_socket,
      "STDIO-DUP-TWO-STREAMS",
      "an LD_PRELOAD user-space stack without a dup() hook: the duplicate is a fresh kernel socket, not the connection");

REAL(FILE *, fdopen, int, const char *)
REAL(char *, fgets, char *, int, FILE *)
REAL(int, fflush, FILE *)
REAL(int, fclose, FILE *)
REAL(int, dup, int)

static int mux_stream_fd(FILE *f)
{
	int saved = errno;
	int fd = f ? fileno(f) : -1;
	errno = saved;
	return fd >= 0 && mux_is_stream(fd) ? fd : -1;
}

FILE *fdopen(int fd, const char *mode)
{
	load_fdopen();
	if (spfault_on("fdopen_rejects_sockets") && mux_is_stream(fd)) {
		errno = ESPIPE;
		return NULL;
	}
	FILE *f = real_fdopen(fd, mode);
	if (f && spfault_on("socket_streams_unbuffered") && mux_is_stream(fd)) {
		int saved = errno;
		setvbuf(f, NULL, _IONBF, 0);
		errno = saved;
	}
	return f;
}

char *fgets(char *buf, int n, FILE *f)
{
	load_fgets();
	if (!spfault_on("fgets_stops_at_read_boundary") || mux_stream_fd(f) < 0 || n < 2)
		return real_fgets(buf, n, f);
	/* Stop where the stream's buffer (the last read) runs out. */
	int i = 0;
	while (i < n - 1) {
		if (i > 0 && f->_IO_read_ptr >= f->_IO_read_end)
			break;
		int ch = fgetc(f);
		if (ch == EOF)
			break;
		buf[i++] = (char)ch;
		if (ch == '\n')
			break;
	}
	if (i == 0)
		return NULL;
	buf[i] = '\0';
	return buf;
}

int fflush(FILE *f)
{
	load_fflush();
	if (spfault_on("fflush_skips_sockets") && mux_stream_fd(f) >= 0)
		return 0;
	return real_fflush(f);
}

int fclose(FILE *f)
{
	load_fclose();
	load_dup();
	int fd = mux_stream_fd(f);
	if (fd >= 0 && spfault_on("fclose_leaves_socket_open")) {
		int saved = errno;
		real_dup(fd);            /* a reference the program never sees */
		errno = saved;
	}
	if (fd >= 0 && spfault_on("fclose_shuts_down_socket")) {
		int saved = errno;
		real_fflush(f);
		shutdown(fd, SHUT_WR);
		errno = saved;
	}
	return real_fclose(f);
}

int dup(int fd)
{
	load_dup();
	if (spfault_on("dup_gives_unconnected_socket") && mux_connected(fd)) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int saved = errno;
		if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
			int s = socket(ss.ss_family, SOCK_STREAM, 0);
			if (s >= 0)
				return s;
		}
		errno = saved;
	}
	return real_dup(fd);
}
