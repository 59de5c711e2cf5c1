/*
 * epollx.c - epoll details (catalogue part 3, "epoll details (Linux)";
 * epoll(7), epoll_ctl(2), epoll_wait(2), socket(7) SO_ERROR, poll(2)).
 *
 *  1. EPOLLX-EXCLUSIVE       Linux 4.5: EPOLL_CTL_ADD with
 *                            EPOLLIN|EPOLLEXCLUSIVE succeeds; EPOLL_CTL_MOD
 *                            of it is EINVAL with or without the flag;
 *                            EPOLLEXCLUSIVE|EPOLLONESHOT is EINVAL;
 *                            EPOLLEXCLUSIVE on an epoll descriptor is
 *                            EINVAL. Three threads waiting on three epoll
 *                            instances holding one listener exclusively:
 *                            a connection wakes at least one within 1 s.
 *  2. EPOLLX-DUP             a socket and its dup() are two registrations of
 *                            one set, both reported; Linux: the closed
 *                            original's registration keeps reporting while
 *                            the dup holds the socket, EPOLL_CTL_DEL by the
 *                            closed number is EBADF, DEL through the dup
 *                            removes only the dup's, and closing the last
 *                            descriptor removes the stale one.
 *  3. EPOLLX-NESTED          an epoll descriptor in another: nothing ready,
 *                            nothing reported (outer epoll, poll() on the
 *                            inner); data makes the inner POLLIN, the outer
 *                            report the inner and the inner the socket;
 *                            once read, neither reports; a loop is ELOOP.
 *  4. EPOLLX-ET-UNIX         edge-triggered epoll on an AF_UNIX stream pair:
 *                            one report per write, none after a partial
 *                            read; a writer registered EPOLLOUT|EPOLLET
 *                            while full reports nothing until the reader
 *                            drains, then one EPOLLOUT edge within 1 s.
 *  5. EPOLLX-SOERROR-CLEARS  reading SO_ERROR clears POLLERR and EPOLLERR:
 *                            a connected UDP socket refused by ICMP, a
 *                            refused non-blocking TCP connect.
 *
 * Parameters: the epoll wait call (epoll_wait, epoll_pwait) for every
 * item that waits on epoll; the connected socket kind (TCP, v4-mapped,
 * AF_UNIX) for items 2 and 3.
 *
 * Platform-defined (recorded): how many exclusive waiters one connection
 * wakes, and how many without EPOLLEXCLUSIVE; EPOLL_CTL_ADD of a new
 * socket that got the closed number; the nesting depth at which a chain
 * of epoll descriptors fails; the TCP revents once SO_ERROR was read.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#define EPOLL_CALLS SP_VALUES(SP_WAIT_EPOLL, SP_WAIT_EPOLL_PWAIT, SP_WAIT_EPOLL_PWAIT2)

/* One wait through the variant's call, bounded by ms (0: no wait). */
static int ep_wait(int api, int ep, struct epoll_event *ev, int max, int ms)
{
	sigset_t none;
	sigemptyset(&none);
	memset(ev, 0, sizeof(*ev) * (size_t)max);
	int r = sp_epoll_wait_through(api, ep, ev, max, ms, &none);
	if (r < 0)
		FAIL("%s() failed with %s", sp_waitcall_name(api), sp_errno_name(errno));
	return r;
}

static int ep_new(void)
{
	return (int)ASSERT_SYS(epoll_create1(EPOLL_CLOEXEC));
}

static int ep_add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	int r = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
	/* EEXIST for a descriptor never added to this set: a registration of
	 * a closed socket under the same number outlived its close()
	 * (EPOLL-CLOSE-REMOVES), a mechanism here. */
	if (r < 0 && errno == EEXIST)
		sp_needs_at(__FILE__, __LINE__, "EPOLL-CLOSE-REMOVES",
			    "EPOLL_CTL_ADD of a descriptor not yet in the set", "success",
			    "-1 (EEXIST)", EEXIST);
	return r;
}

static int ep_mod(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	return epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* "EPOLLIN|EPOLLERR": epoll bits share poll's values. */
static const char *ev_str(uint32_t e)
{
	return sp_events_str((int)e);
}

/* Exactly n reports within ms, whose data are want[0..n-1] in any order
 * and whose events are exactly `events`. */
#define EXPECT_REPORTS(api, ep, ms, events, what, ...) \
	expect_reports(__FILE__, __LINE__, api, ep, ms, events, what, \
		       (const uint64_t[]){ __VA_ARGS__ }, \
		       (int)(sizeof((const uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t)))
static void expect_reports(const char *file, int line, int api, int ep, int ms, uint32_t events,
			   const char *what, const uint64_t *want, int n)
{
	struct epoll_event ev[8];
	int got = ep_wait(api, ep, ev, 8, ms), seen = 0;
	char list[256] = "";
	for (int i = 0; i < got; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s(data %llu, %s)",
			 i ? " " : "", (unsigned long long)ev[i].data.u64, ev_str(ev[i].events));
	for (int k = 0; k < n; k++)
		for (int i = 0; i < got; i++)
			if (ev[i].data.u64 == want[k] && ev[i].events == events) {
				seen++;
				break;
			}
	if (got != n || seen != n) {
		char exp[128] = "";
		for (int k = 0; k < n; k++)
			snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), "%s(data %llu, %s)",
				 k ? " " : "", (unsigned long long)want[k], ev_str(events));
		sp_failf(file, line, "%s: %s() expected %d report%s %s, observed %d %s", what,
			 sp_waitcall_name(api), n, n == 1 ? "" : "s", exp, got, got ? list : "");
	}
}

/* Nothing to report: a wait with timeout 0 returns 0. */
#define EXPECT_NOTHING(api, ep, what) expect_nothing(__FILE__, __LINE__, api, ep, what)
static void expect_nothing(const char *file, int line, int api, int ep, const char *what)
{
	struct epoll_event ev[4];
	int got = ep_wait(api, ep, ev, 4, 0);
	if (got != 0)
		sp_failf(file, line, "%s: %s(timeout 0) expected 0 reports, observed %d (data %llu, "
			 "%s)", what, sp_waitcall_name(api), got, (unsigned long long)ev[0].data.u64,
			 ev_str(ev[0].events));
}

static int failed_with(int r, int e, int want)
{
	return r == -1 && e == want;
}

#define EXPECT_CTL_FAILS(call, want, what)                                              \
	do {                                                                            \
		errno = 0;                                                              \
		int r_ = (call);                                                        \
		int e_ = errno;                                                         \
		if (!failed_with(r_, e_, want))                                         \
			FAIL("%s returned %d (%s), expected %s", what, r_,                  \
			     r_ < 0 ? sp_errno_name(e_) : "success", sp_errno_name(want));  \
	} while (0)

/* ---- 1. EPOLLX-EXCLUSIVE ---------------------------------------------------- */

/* EPOLLEXCLUSIVE is taken only by EPOLL_CTL_ADD, alone (no ONESHOT), and
 * never for an epoll descriptor. */
SP_TEST(exclusive_registration_is_add_only, "EPOLLX-EXCLUSIVE", SP_INET)
{
	int l = sp_tcp_listener(ctx, 0), l2 = sp_tcp_listener(ctx, 0), ep = ep_new();
	int inner = ep_new();

	errno = 0;
	if (ep_add(ep, l, EPOLLIN | EPOLLEXCLUSIVE, 1) != 0) {
		if (errno == EINVAL)
			UNSUPPORTED("EPOLLEXCLUSIVE (EPOLL_CTL_ADD with EPOLLIN|EPOLLEXCLUSIVE fails "
				    "with EINVAL, as before Linux 4.5)");
		FAIL("EPOLL_CTL_ADD with EPOLLIN|EPOLLEXCLUSIVE failed with %s, expected 0",
		     sp_errno_name(errno));
	}
	EXPECT_CTL_FAILS(ep_mod(ep, l, EPOLLIN | EPOLLEXCLUSIVE, 1), EINVAL,
			 "EPOLL_CTL_MOD (EPOLLIN|EPOLLEXCLUSIVE) of an exclusive registration");
	EXPECT_CTL_FAILS(ep_mod(ep, l, EPOLLIN, 1), EINVAL,
			 "EPOLL_CTL_MOD (EPOLLIN) of an exclusive registration");
	EXPECT_CTL_FAILS(ep_mod(ep, l, EPOLLIN | EPOLLOUT, 2), EINVAL,
			 "EPOLL_CTL_MOD (EPOLLIN|EPOLLOUT) of an exclusive registration");
	EXPECT_CTL_FAILS(ep_add(ep, l2, EPOLLIN | EPOLLEXCLUSIVE | EPOLLONESHOT, 3), EINVAL,
			 "EPOLL_CTL_ADD with EPOLLIN|EPOLLEXCLUSIVE|EPOLLONESHOT");
	EXPECT_CTL_FAILS(ep_add(ep, inner, EPOLLIN | EPOLLEXCLUSIVE, 4), EINVAL,
			 "EPOLL_CTL_ADD of an epoll descriptor with EPOLLIN|EPOLLEXCLUSIVE");

	/* Nothing of the refused calls took: l2 and inner are not in the set
	 * (ADD without the flag succeeds), and l's registration is unchanged
	 * (data 1, EPOLLIN): a connection is reported as such. */
	ASSERT_EQ(0, ep_add(ep, l2, EPOLLIN, 3));
	ASSERT_EQ(0, ep_add(ep, inner, EPOLLIN, 4));
	EXPECT_NOTHING(SP_WAIT_EPOLL, ep, "no connection yet");
	int c = sp_tcp_connect(ctx, l);
	sp_need_connection_queued(l, sp_wait_ms());
	EXPECT_REPORTS(SP_WAIT_EPOLL, ep, sp_wait_ms(), EPOLLIN,
		       "a connection to the exclusively registered listener", 1);
	close(c);
	close(inner);
	close(ep);
	close(l2);
	close(l);
}

#define WAITERS 3
struct waiter {
	int ep, efd, woke_by_listener, r, err;
	pid_t tid;
	struct sp_barrier started;
	int api;
};
static int done_efd = -1;

static void *exclusive_waiter(void *arg)
{
	struct waiter *w = arg;
	struct epoll_event ev[4];
	sigset_t all, none;
	sigfillset(&all);
	sigemptyset(&none);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	w->tid = (pid_t)syscall(SYS_gettid);
	sp_barrier_pass(&w->started);
	memset(ev, 0, sizeof(ev));
	w->r = sp_epoll_wait_through(w->api, w->ep, ev, 4, 1500, &all);
	w->err = errno;
	for (int i = 0; i < w->r; i++)
		if (ev[i].data.u64 == 1)
			w->woke_by_listener = 1;
	uint64_t one = 1;
	if (write(done_efd, &one, sizeof(one)) != sizeof(one))
		w->err = errno;
	return NULL;
}

/* Three waiters, each on its own epoll instance holding the listener (and
 * an eventfd that ends the wait once the count is recorded): one
 * connection wakes one at least. Returns how many the listener woke. */
static int waiters_woken(const struct sp_ctx *ctx, uint32_t flags, int must)
{
	int l = sp_tcp_listener(ctx, 0);
	struct waiter w[WAITERS];
	pthread_t th[WAITERS];
	done_efd = (int)ASSERT_SYS(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	for (int i = 0; i < WAITERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].api = ctx->wait;
		w[i].ep = ep_new();
		w[i].efd = (int)ASSERT_SYS(eventfd(0, EFD_CLOEXEC));
		errno = 0;
		if (ep_add(w[i].ep, l, EPOLLIN | flags, 1) != 0) {
			if (errno == EINVAL && (flags & EPOLLEXCLUSIVE))
				UNSUPPORTED("EPOLLEXCLUSIVE (EPOLL_CTL_ADD fails with EINVAL)");
			FAIL("EPOLL_CTL_ADD of the listener (%s) failed with %s",
			     flags ? "EPOLLIN|EPOLLEXCLUSIVE" : "EPOLLIN", sp_errno_name(errno));
		}
		ASSERT_SYS(ep_add(w[i].ep, w[i].efd, EPOLLIN, 2));
		sp_barrier_init(&w[i].started);
		if (pthread_create(&th[i], NULL, exclusive_waiter, &w[i]) != 0)
			BROKEN("a waiting thread (pthread_create failed)");
	}
	/* Every waiter in its epoll_wait (where /proc shows it); the Must holds
	 * in whichever order they run: the registrations, not the sleepers,
	 * take the wake-up. */
	int asleep = 0;
	for (int i = 0; i < WAITERS; i++) {
		sp_barrier_wait(&w[i].started);
		asleep += sp_have_proc() && sp_wait_proc_state(w[i].tid, 'S');
	}
	if (ctx->first)
		RECORD_ONCE("exclusive_waiters_seen_asleep", "%d of %d", asleep, WAITERS);
	int c = sp_tcp_connect(ctx, l);

	/* The first return, within 1 s of the connection. */
	struct pollfd p = { done_efd, POLLIN, 0 };
	int got = poll(&p, 1, 1000);
	int first_in_time = got == 1;
	/* End the rest: each epoll set also holds an eventfd. */
	uint64_t one = 1;
	for (int i = 0; i < WAITERS; i++)
		ASSERT_EQ((ssize_t)sizeof(one), write(w[i].efd, &one, sizeof(one)));
	int woken = 0, returned_one = 0;
	for (int i = 0; i < WAITERS; i++) {
		pthread_join(th[i], NULL);
		woken += w[i].woke_by_listener;
		returned_one |= w[i].woke_by_listener && w[i].r >= 1;
		sp_barrier_close(&w[i].started);
		close(w[i].efd);
		close(w[i].ep);
	}
	close(done_efd);
	if (must && (!first_in_time || !returned_one))
		sp_need_connection_queued(l, 0);
	close(c);
	close(l);
	if (must && (!first_in_time || !returned_one))
		FAIL("a connection to a listener held by %d epoll instances with EPOLLEXCLUSIVE: "
		     "expected one %s() at least to return 1 within 1 s, observed %s", WAITERS,
		     sp_waitcall_name(ctx->wait),
		     first_in_time ? "returns without the listener" : "none returned");
	return woken;
}

SP_TEST(exclusive_waiters_one_connection_wakes_one, "EPOLLX-EXCLUSIVE", SP_INET,
	.wait = EPOLL_CALLS)
{
	int excl = waiters_woken(ctx, EPOLLEXCLUSIVE, 1);
	int all = waiters_woken(ctx, 0, 0);
	RECORD_ONCE("exclusive_waiters_woken", "%d of %d; without EPOLLEXCLUSIVE %d of %d", excl,
		    WAITERS, all, WAITERS);
}

/* ---- 2. EPOLLX-DUP ------------------------------------------------------------ */

SP_TEST(dup_is_a_registration_of_its_own, "EPOLLX-DUP", SP_INET, .kind = SP_EVERY_KIND,
	.wait = EPOLL_CALLS)
{
	const int api = ctx->wait;
	int c, s, ep = ep_new();
	char buf[8];
	sp_pair(ctx, &c, &s);
	int d = (int)ASSERT_SYS(dup(s));
	const uint64_t orig = 100, copy = 200;

	ASSERT_EQ(0, ep_add(ep, s, EPOLLIN, orig));
	if (ep_add(ep, d, EPOLLIN, copy) != 0)
		FAIL("EPOLL_CTL_ADD of a dup() of a registered socket failed with %s, expected 0 (a "
		     "registration of its own)", sp_errno_name(errno));
	EXPECT_NOTHING(api, ep, "nothing has arrived");
	ASSERT_EQ(1, write(c, "x", 1));
	EXPECT_REPORTS(api, ep, sp_wait_ms(), EPOLLIN, "data arrived", orig, copy);
	/* The waits below see the byte already reported, still unread:
	 * level-triggered reporting (EPOLL-LEVEL) is their mechanism. */
	struct epoll_event again[8];
	int n = ep_wait(api, ep, again, 8, 0);
	if (n != 2) {
		char seen[32];
		snprintf(seen, sizeof(seen), "%d report%s", n, n == 1 ? "" : "s");
		sp_needs_at(__FILE__, __LINE__, "EPOLL-LEVEL", "a second wait, the reported byte "
			    "still unread", "2 reports", seen, 0);
	}

	/* Linux: the original's registration outlives its number. */
	close(s);
	EXPECT_REPORTS(api, ep, 0, EPOLLIN, "the original closed, the dup open", orig, copy);
	EXPECT_CTL_FAILS(epoll_ctl(ep, EPOLL_CTL_DEL, s, NULL), EBADF,
			 "EPOLL_CTL_DEL by the closed original's number");
	EXPECT_REPORTS(api, ep, 0, EPOLLIN, "after EPOLL_CTL_DEL by the closed number", orig, copy);

	/* Record: a new socket that got the closed number. */
	int x = sp_socket(ctx, SOCK_DGRAM);
	if (x != s) {
		RECORD_ONCE("add_new_socket_on_closed_number", "not tried: the new socket got %d, "
			    "not %d", x, s);
	} else {
		errno = 0;
		int r = ep_add(ep, x, EPOLLIN, 300);
		int e = errno;
		struct epoll_event ev[8];
		int n = ep_wait(api, ep, ev, 8, 0);
		RECORD_ONCE("add_new_socket_on_closed_number", "%s%s (%d reports after)",
			    r == 0 ? "0" : sp_errno_name(e),
			    r == 0 ? ", a separate registration" : "", n);
		if (r == 0)
			ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, x, NULL));
	}
	close(x);

	/* DEL through the dup removes the dup's registration only. */
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_DEL, d, NULL));
	EXPECT_REPORTS(api, ep, 0, EPOLLIN, "the dup's registration deleted", orig);
	ASSERT_EQ(1, read(d, buf, sizeof(buf)));
	EXPECT_NOTHING(api, ep, "the byte read through the dup");
	ASSERT_EQ(1, write(c, "y", 1));
	EXPECT_REPORTS(api, ep, sp_wait_ms(), EPOLLIN, "new data, only the stale registration "
		       "left", orig);

	/* The last descriptor closed (the byte still unread): the stale
	 * registration is gone. */
	close(d);
	EXPECT_NOTHING(api, ep, "every descriptor of the socket closed, a byte unread");
	close(c);
	close(ep);
}

/* ---- 3. EPOLLX-NESTED --------------------------------------------------------- */

SP_TEST(epoll_inside_epoll_reports_through_both, "EPOLLX-NESTED", SP_INET,
	.kind = SP_EVERY_KIND, .wait = EPOLL_CALLS)
{
	const int api = ctx->wait;
	int c, s, inner = ep_new(), outer = ep_new();
	char buf[16];
	sp_pair(ctx, &c, &s);
	const uint64_t sock = 7, in = 9;

	ASSERT_EQ(0, ep_add(inner, s, EPOLLIN, sock));
	if (ep_add(outer, inner, EPOLLIN, in) != 0)
		FAIL("EPOLL_CTL_ADD of an epoll descriptor to another failed with %s, expected 0",
		     sp_errno_name(errno));

	EXPECT_NOTHING(api, outer, "outer set, nothing has arrived");
	struct pollfd p = { inner, POLLIN, 0 };
	int r = poll(&p, 1, 0);
	if (r != 0)
		FAIL("poll() on the inner epoll descriptor with nothing ready returned %d (%s), "
		     "expected 0", r, r > 0 ? sp_events_str(p.revents) : sp_errno_name(errno));

	/* The arrival wakes the outer wait through the inner set. */
	ASSERT_EQ(3, write(c, "abc", 3));
	EXPECT_REPORTS(api, outer, sp_wait_ms(), EPOLLIN, "data arrived in the inner set", in);
	p.revents = 0;
	r = poll(&p, 1, 0);
	if (r != 1 || p.revents != POLLIN)
		FAIL("poll() on the inner epoll descriptor after data arrived returned %d (%s), "
		     "expected 1 (POLLIN)", r, r >= 0 ? sp_events_str(p.revents) :
		     sp_errno_name(errno));
	EXPECT_REPORTS(api, inner, 0, EPOLLIN, "the inner set, data arrived", sock);

	ASSERT_EQ(3, read(s, buf, sizeof(buf)));
	EXPECT_NOTHING(api, inner, "inner set, the data read");
	EXPECT_NOTHING(api, outer, "outer set, the data read");
	p.revents = 0;
	ASSERT_EQ(0, poll(&p, 1, 0));

	/* A loop. */
	EXPECT_CTL_FAILS(ep_add(inner, outer, EPOLLIN, 1), ELOOP,
			 "EPOLL_CTL_ADD of the outer epoll descriptor to the inner (a loop)");
	EXPECT_NOTHING(api, inner, "inner set after the refused loop");

	/* Record: the depth at which a chain of nested sets fails. */
	if (ctx->first) {
		int e[8], depth = 0, err = 0;
		e[0] = ep_new();
		for (int k = 1; k < 8 && !depth; k++) {
			e[k] = ep_new();
			if (ep_add(e[k], e[k - 1], EPOLLIN, (uint64_t)k) != 0) {
				depth = k;
				err = errno;
			}
		}
		for (int k = 0; k < (depth ? depth + 1 : 8); k++)
			close(e[k]);
		if (depth)
			RECORD("nesting_chain_fails_at", "nesting %d (%s)", depth, sp_errno_name(err));
		else
			RECORD("nesting_chain_fails_at", "not within 7 nestings");
	}
	close(outer);
	close(inner);
	close(c);
	close(s);
}

/* ---- 4. EPOLLX-ET-UNIX -------------------------------------------------------- */

SP_TEST(edge_triggered_unix_stream_reports_each_edge_once, "EPOLLX-ET-UNIX", SP_NONE,
	.wait = EPOLL_CALLS)
{
	const int api = ctx->wait;
	int sv[2], ep = ep_new();
	char buf[4096];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	int w = sv[0], r = sv[1];

	/* The reader: one report per arrival. */
	ASSERT_EQ(0, ep_add(ep, r, EPOLLIN | EPOLLET, 1));
	EXPECT_NOTHING(api, ep, "nothing written yet");
	ASSERT_EQ(10, write(w, "0123456789", 10));
	EXPECT_REPORTS(api, ep, sp_wait_ms(), EPOLLIN, "a 10-byte write", 1);
	EXPECT_NOTHING(api, ep, "the 10-byte write was reported once");
	ASSERT_EQ(5, read(r, buf, 5));
	EXPECT_NOTHING(api, ep, "a 5-byte partial read (5 bytes left, no new arrival)");
	ASSERT_EQ(1, write(w, "x", 1));
	EXPECT_REPORTS(api, ep, sp_wait_ms(), EPOLLIN, "a new 1-byte write", 1);
	EXPECT_NOTHING(api, ep, "the 1-byte write was reported once");
	/* A set of its own for the writer (no EPOLL_CTL_DEL, EPOLL-CTL-ERRORS'). */
	close(ep);
	ep = ep_new();

	/* The writer, registered while full. */
	sp_set_nonblock(w, 1);
	sp_set_nonblock(r, 1);
	size_t queued = 6;
	memset(buf, 'f', sizeof(buf));
	for (int i = 0; i < 100000; i++) {
		ssize_t n = write(w, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			FAIL("filling the AF_UNIX stream: write() failed with %s", sp_errno_name(errno));
		}
		queued += (size_t)n;
	}
	ASSERT_ERRNO(write(w, buf, 1), EAGAIN);
	ASSERT_EQ(0, ep_add(ep, w, EPOLLOUT | EPOLLET, 2));
	EXPECT_NOTHING(api, ep, "writer registered while its buffer is full");
	size_t drained = 0;
	for (;;) {
		ssize_t n = read(r, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			FAIL("draining the AF_UNIX stream: read() returned %zd (%s)", n,
			     n < 0 ? sp_errno_name(errno) : "EOF");
		drained += (size_t)n;
	}
	/* Every byte written comes out, whatever the reads' sizes: that the
	 * stream keeps no boundaries is UNIX-STREAM-NO-BOUNDARY's. */
	if (drained != queued) {
		char exp[32], seen[32];
		snprintf(exp, sizeof(exp), "%zu bytes", queued);
		snprintf(seen, sizeof(seen), "%zu bytes", drained);
		sp_needs_at(__FILE__, __LINE__, "UNIX-STREAM-NO-BOUNDARY", "draining the AF_UNIX "
			    "stream after a 5-byte partial read", exp, seen, 0);
	}
	EXPECT_REPORTS(api, ep, 1000, EPOLLOUT, "the reader drained everything", 2);
	EXPECT_NOTHING(api, ep, "the EPOLLOUT edge was reported once");
	close(ep);
	close(w);
	close(r);
}

/* ---- 5. EPOLLX-SOERROR-CLEARS ------------------------------------------------- */

/* A UDP port with nothing bound to it. Called after the item's own
 * sockets are bound: bind() may hand the freed port out again. */
static uint16_t closed_udp_port(const struct sp_ctx *ctx)
{
	int fd = sp_udp_bound(ctx);
	uint16_t port = sp_local_port(fd);
	close(fd);
	return port;
}

SP_TEST(reading_so_error_clears_pollerr_and_epollerr, "EPOLLX-SOERROR-CLEARS", SP_INET,
	.wait = EPOLL_CALLS)
{
	const int api = ctx->wait;
	int u = sp_udp_bound(ctx), ep = ep_new();
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, closed_udp_port(ctx));

	ASSERT_SYS(connect(u, (struct sockaddr *)&to, tl));
	/* EPOLLERR asked for (epoll reports it unasked too: that is
	 * EPOLL-HUP-ERR-ALWAYS', not a mechanism this item needs). */
	ASSERT_EQ(0, ep_add(ep, u, EPOLLIN | EPOLLERR, 1));
	errno = 0;
	ssize_t sent = send(u, "x", 1, 0);
	if (sent != 1)
		BROKEN_NEEDS("UDP-CONNECTED", "a connected UDP socket sends a datagram to a closed "
			     "port (send() returned %zd, %s), the refusal arriving later", sent,
			     sent < 0 ? sp_errno_name(errno) : "short");
	int ev = sp_poll(u, POLLIN, sp_wait_ms());
	if (!(ev & POLLERR)) {
		int err = sp_get_int(u, SOL_SOCKET, SO_ERROR);
		if (err != ECONNREFUSED)
			BROKEN_NEEDS("UDP-CONNECTED", "the refusal of a connected UDP socket's datagram "
				     "surfaces (revents %s within %d ms, SO_ERROR %s)",
				     sp_events_str(ev), sp_wait_ms(), sp_errno_name(err));
		FAIL("UDP: poll() with ECONNREFUSED pending in SO_ERROR: expected POLLERR, observed "
		     "%s", sp_events_str(ev));
	}
	/* The catalogue says the registration reports it, not how soon: a
	 * report that comes only after timeout 0 is recorded, and the Must is
	 * the report within the wait bound. */
	struct epoll_event e[4];
	int n = ep_wait(api, ep, e, 4, 0);
	char key[64];
	snprintf(key, sizeof(key), "udp_epollerr_at_timeout_0_%s", sp_waitcall_name(api));
	RECORD(key, "%s", n == 1 && (e[0].events & EPOLLERR) ?
	       "reported" : "not yet (poll() already showed POLLERR)");
	if (n == 0)
		n = ep_wait(api, ep, e, 4, sp_wait_ms());
	if (n != 1 || e[0].data.u64 != 1 || !(e[0].events & EPOLLERR))
		FAIL("UDP, the refusal pending (poll() shows POLLERR): %s() on a level-triggered "
		     "registration expected 1 report with EPOLLERR, observed %d (%s)%s",
		     sp_waitcall_name(api), n, n ? ev_str(e[0].events) : "-",
		     n ? "" : " within the wait bound");
	ASSERT_ERRVAL(ECONNREFUSED, sp_get_int(u, SOL_SOCKET, SO_ERROR));
	struct pollfd p = { u, POLLIN, 0 };
	int r = poll(&p, 1, 0);
	if (r != 0)
		FAIL("UDP: poll() once SO_ERROR was read returned %d (%s), expected 0 (POLLERR "
		     "cleared)", r, r > 0 ? sp_events_str(p.revents) : sp_errno_name(errno));
	EXPECT_NOTHING(api, ep, "UDP, once SO_ERROR was read");
	close(u);

	/* TCP: a refused non-blocking connect. */
	int hold = sp_socket(ctx, SOCK_STREAM);
	sp_bind_loopback(ctx, hold);
	tl = sp_loopback(ctx, &to, sp_local_port(hold));
	int t = sp_socket(ctx, SOCK_STREAM);
	sp_set_nonblock(t, 1);
	errno = 0;
	int r0 = connect(t, (struct sockaddr *)&to, tl);
	if (r0 == 0 || errno != EINPROGRESS)
		BROKEN_NEEDS("MUX-POLLERR-REFUSED", "a non-blocking connect to a closed port returns "
			     "EINPROGRESS, leaving the refusal pending (%s)",
			     r0 == 0 ? "it connected" : sp_errno_name(errno));
	ev = sp_poll(t, POLLOUT, sp_wait_ms());
	if (!(ev & POLLERR))
		BROKEN_NEEDS("MUX-POLLERR-REFUSED", "a refused non-blocking TCP connect shows "
			     "POLLERR (revents %s)", sp_events_str(ev));
	ASSERT_EQ(0, ep_add(ep, t, EPOLLIN | EPOLLOUT, 2));
	n = ep_wait(api, ep, e, 4, 0);
	if (n != 1 || !(e[0].events & EPOLLERR))
		BROKEN_NEEDS("EPOLL-HUP-ERR-ALWAYS", "epoll reports EPOLLERR for a refused "
			     "non-blocking TCP connect (%d reports, %s)", n,
			     n ? ev_str(e[0].events) : "-");
	ASSERT_ERRVAL(ECONNREFUSED, sp_get_int(t, SOL_SOCKET, SO_ERROR));
	p = (struct pollfd){ t, POLLIN | POLLOUT, 0 };
	r = poll(&p, 1, 0);
	if (r < 0 || (p.revents & POLLERR))
		FAIL("TCP: poll() once SO_ERROR was read returned %d (%s), expected no POLLERR", r,
		     r >= 0 ? sp_events_str(p.revents) : sp_errno_name(errno));
	n = ep_wait(api, ep, e, 4, 0);
	for (int i = 0; i < n; i++)
		if (e[i].events & EPOLLERR)
			FAIL("TCP: %s() once SO_ERROR was read reported %s, expected no EPOLLERR",
			     sp_waitcall_name(api), ev_str(e[i].events));
	RECORD_ONCE("tcp_revents_after_so_error", "%s", sp_events_str(p.revents));
	close(t);
	close(hold);
	close(ep);
}

SP_MAIN("epollx")
