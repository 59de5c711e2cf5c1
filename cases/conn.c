/*
 * conn.c - connection essentials (catalogue part 2, "Connection
 * essentials"; textbook ch. 4).
 *
 *  1. CONN-REFUSED           connect() to a closed port, or to a port bound
 *                            but not listening, fails with ECONNREFUSED
 *                            (blocking; non-blocking through SO_ERROR), by
 *                            the system call and by io_uring CONNECT.
 *  2. CONN-NONBLOCK-CONNECT  a non-blocking connect returns 0 or EINPROGRESS,
 *                            then the socket is writable with SO_ERROR 0
 *                            (the completion waited for through every wait
 *                            call: select, pselect, poll, ppoll, epoll_wait,
 *                            epoll_pwait, epoll_pwait2, io_uring POLL_ADD).
 *  3. CONN-BACKLOG-QUEUE     with listen(s, 3) and no accept, 3 blocking
 *                            connects return; then 3 accepts give 3 usable
 *                            connections (connect and accept, accept4, or
 *                            io_uring CONNECT and ACCEPT).
 *  4. CONN-ACCEPT-EAGAIN     accept(), accept4() and io_uring ACCEPT on a
 *                            non-blocking listener with nothing pending
 *                            fail at once with EAGAIN.
 *  5. CONN-NAMES-AGREE       getsockname on one end equals getpeername (and
 *                            accept's address) on the other; the accepted
 *                            socket has the listener's port; getpeername on
 *                            an unconnected socket fails with ENOTCONN
 *                            (connected and accepted by the system calls
 *                            or by io_uring CONNECT and ACCEPT).
 *  6. CONN-V6-MAPPED         (ipv6 item) an AF_INET6 listener on [::] with
 *                            IPV6_V6ONLY=0 takes an IPv4 client, seen as
 *                            ::ffff:127.0.0.1; AF_INET 0.0.0.0:P is in use.
 *  7. CONN-V6ONLY            (ipv6 item) with IPV6_V6ONLY=1 it takes only
 *                            IPv6: IPv4 is refused and 0.0.0.0:P is free.
 *
 * Items 1-5 run over IPv4 and IPv6 loopback. Items 6 and 7 are the
 * dual-stack items: they run once, as ipv6 (AF_INET6 sockets with IPv4
 * clients), and bind the wildcard address, so only inside the item's own
 * network namespace (skipped, with the reason, on a shared host); their
 * connects and accepts are the system calls or io_uring CONNECT and
 * ACCEPT.
 *
 * Entry points: io_uring CONNECT is left out of item 2, which it cannot
 * express: its request completes the handshake itself (on a non-blocking
 * socket too), so there is no EINPROGRESS and nothing to wait for. An
 * io_uring ACCEPT on a non-blocking listener asks IORING_ACCEPT_DONTWAIT
 * (io_uring ignores the listener's O_NONBLOCK); where the kernel lacks the
 * flag, the "nothing pending" checks have no io_uring call (unavailable).
 *
 * Wire (where the item has its own network namespace): a refused SYN is
 * answered by RST.
 *
 * Platform-defined (recorded): which result a non-blocking loopback
 * connect gives (Linux: EINPROGRESS) and what a second connect returns
 * after completion; accept order; how many of 8 non-blocking connects to
 * listen(3) complete at once (Linux: backlog+1 = 4); whether an accepted
 * socket inherits O_NONBLOCK (Linux: no; BSD: yes); IPV6_V6ONLY's default.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

/* A loopback address of the family whose port nobody uses: a listener's,
 * closed. With `keep_bound`, a socket stays bound there, not listening. */
static socklen_t closed_port(const struct sp_ctx *ctx, struct sockaddr_storage *ss, int keep_bound)
{
	int b = sp_socket(ctx, SOCK_STREAM);
	socklen_t len = sp_loopback(ctx, ss, 0);

	ASSERT_SYS(bind(b, (struct sockaddr *)ss, len));
	len = sp_loopback(ctx, ss, sp_local_port(b));
	if (!keep_bound)
		close(b);
	return len;
}

/* 1. connect() where nobody listens is refused (.how: the port is
 * closed, or bound by a socket that does not listen; the connect is the
 * system call or io_uring CONNECT). */
SP_TEST(connect_without_listener_is_refused, "CONN-REFUSED", SP_INET,
	.how = SP_NAMES("closed port", "bound port, not listening", "closed port, io_uring:CONNECT",
			"bound port, not listening, io_uring:CONNECT"))
{
	struct sockaddr_storage ss;
	struct sp_capture cap;

	const int bound = ctx->how % 2, uring = ctx->how >= 2;
	const char *call = uring ? "io_uring CONNECT" : "connect()";
	const char *lacking = uring ? sp_uring_missing(SP_URING_CONNECT) : NULL;
	if (lacking)
		UNAVAILABLE("%s", lacking);
	socklen_t len = closed_port(ctx, &ss, bound);
	if (!bound) {
		sp_capture_start(&cap);
		sp_capture_name(&cap, sp_port(&ss), "S");
		sp_capture_name(&cap, 0, "C");
	}
	/* blocking */
	int c = sp_socket(ctx, SOCK_STREAM);
	errno = 0;
	int r = MUST_RETURN(sp_connect_through(uring, c, (struct sockaddr *)&ss, len),
			    "a blocking %s to a %s", call, bound ? "bound port, not listening" : "closed port");
	int err = errno;
	ASSERT_TRUE(r == -1 && err == ECONNREFUSED,
		    "a blocking %s to a %s port fails with ECONNREFUSED (got %d, %s)", call,
		    bound ? "bound, not listening," : "closed", r, sp_errno_name(err));
	if (!bound) {
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "C>S S, S>C R");
			WIRE_LACKS(&cap, "S>C S.");
		}
		sp_capture_stop(&cap);
	}
	close(c);
	/* non-blocking: at once, or later through SO_ERROR (io_uring
	 * CONNECT completes with the outcome itself) */
	c = sp_socket(ctx, SOCK_STREAM);
	sp_set_nonblock(c, 1);
	errno = 0;
	r = MUST_RETURN(sp_connect_through(uring, c, (struct sockaddr *)&ss, len),
			"a non-blocking %s to a %s", call, bound ? "bound port, not listening" : "closed port");
	err = errno;
	if (r == -1 && err == EAGAIN) /* EINPROGRESS is CONN-NONBLOCK-CONNECT's Must */
		sp_needs_at(__FILE__, __LINE__, "CONN-NONBLOCK-CONNECT", "a non-blocking connect()",
			    "0, -1 (EINPROGRESS) or the refusal", "-1 (EAGAIN)", err);
	if (r == -1 && err == EINPROGRESS) {
		/* The refusal ends the attempt: any event (which one poll
		 * reports is MUX-POLLERR-REFUSED's), then SO_ERROR says it. */
		EXPECT_EVENTS(c, POLLOUT, POLLOUT | POLLERR | POLLHUP, "the refusal arrives");
		ASSERT_ERRVAL(ECONNREFUSED, sp_get_int(c, SOL_SOCKET, SO_ERROR));
	} else {
		ASSERT_FAILED_WITH(r, err, ECONNREFUSED);
	}
	close(c);
}

/* Every call that waits for readiness (sp_wait_on), io_uring POLL_ADD
 * last: a process that has used io_uring can see a later epoll_wait end
 * with EINTR when the ring's work notifies the task. */
#define EVERY_WAIT SP_VALUES(SP_WAIT_SELECT, SP_WAIT_PSELECT, SP_WAIT_POLL, SP_WAIT_PPOLL, \
			     SP_WAIT_EPOLL, SP_WAIT_EPOLL_PWAIT, SP_WAIT_EPOLL_PWAIT2, SP_WAIT_URING_POLL)

/* 2. A non-blocking connect completes in the background (.how: the
 * socket made non-blocking by SOCK_NONBLOCK, or later by fcntl; .wait:
 * the call that waits for the completion). */
SP_TEST(nonblocking_connect_completes_writable, "CONN-NONBLOCK-CONNECT", SP_INET,
	.wait = EVERY_WAIT, .how = SP_NAMES("SOCK_NONBLOCK", "fcntl(O_NONBLOCK)"))
{
	int l = sp_tcp_listener(ctx, 0);
	struct sockaddr_storage ss, peer;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l));

	int via_fcntl = ctx->how == 1;
	int c = via_fcntl ? sp_socket(ctx, SOCK_STREAM)
			  : (int)ASSERT_SYS(socket(ctx->af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (via_fcntl)
		sp_set_nonblock(c, 1);
	errno = 0;
	int r = MUST_RETURN(connect(c, (struct sockaddr *)&ss, len),
			    "a non-blocking connect() (%s)", ctx->how_name);
	int err = errno;
	ASSERT_TRUE(r == 0 || (r == -1 && err == EINPROGRESS),
		    "a non-blocking connect returns 0 or EINPROGRESS (got %d, %s)",
		    r, sp_errno_name(err));
	if (ctx->first)
		RECORD("nonblocking_connect", "%s", r == 0 ? "0" : "EINPROGRESS");
	/* Writable: select's write set, POLLOUT from the others; no error
	 * (select has no bit for it: SO_ERROR below says it for all). */
	errno = 0;
	int ev = sp_wait_on(ctx->wait, c, POLLOUT, sp_wait_ms(), NULL);
	ASSERT_TRUE(ev > 0 && (ev & POLLOUT), "%s reports the connecting socket writable within %d ms "
		    "(got %s)", sp_waitcall_name(ctx->wait), sp_wait_ms(),
		    ev < 0 ? sp_errno_name(errno) : sp_events_str(ev));
	ASSERT_TRUE(!(ev & (POLLERR | POLLHUP)), "%s reports no error for the completed connect "
		    "(got %s)", sp_waitcall_name(ctx->wait), sp_events_str(ev));
	ASSERT_ERRVAL(0, sp_get_int(c, SOL_SOCKET, SO_ERROR));
	socklen_t pl = sizeof(peer);
	ASSERT_SYS(getpeername(c, (struct sockaddr *)&peer, &pl));
	/* Recorded: the peer's name (CONN-NAMES-AGREE's Must). */
	RECORD_ONCE("getpeername_port_is_listeners", "%s",
		    sp_port(&peer) == sp_local_port(l) ? "yes" : "no");
	errno = 0;
	r = connect(c, (struct sockaddr *)&ss, len);
	if (ctx->first) /* recorded only: Linux 0, POSIX EISCONN */
		RECORD("second_connect", "%d%s%s", r, r ? " " : "", r ? sp_errno_name(errno) : "");
	/* The connection works, and the socket stays non-blocking. */
	int s = sp_tcp_accept(l);
	char b[4];
	ASSERT_ERRNO(read(c, b, 1), EAGAIN);
	SP_OUT_EXACT(SP_IO_READ, c, "hi", 2);
	SP_IN_EXACT(SP_IO_READ, s, b, 2);
	SP_OUT_EXACT(SP_IO_READ, s, "ho", 2);
	SP_IN_EXACT(SP_IO_READ, c, b, 2);
	ASSERT_MEM_EQ("ho", b, 2);
	close(s);
	close(c);
}

/* The connect and accept calls of an item's variant (.how): the system
 * calls (accept() by name, or accept4()) or io_uring CONNECT and ACCEPT. */
enum conn_by { BY_ACCEPT, BY_ACCEPT4, BY_URING };
static const char *const by_name[] = { "accept()", "accept4()", "io_uring ACCEPT" };

/* The variant's calls are there, or it ends as unavailable. `empty`: it
 * asks an empty non-blocking listener, which io_uring ACCEPT expresses
 * only with IORING_ACCEPT_DONTWAIT. */
static void require_calls(int by, int empty)
{
	const char *m = NULL;

	if (by == BY_URING)
		m = empty ? sp_uring_accept_nowait_missing() : sp_uring_missing(SP_URING_ACCEPT);
	if (!m && by == BY_URING)
		m = sp_uring_missing(SP_URING_CONNECT);
	if (m)
		UNAVAILABLE("%s", m);
}

static int accept_by(int by, int l, struct sockaddr *a, socklen_t *alen)
{
	if (by == BY_ACCEPT)
		return accept(l, a, alen);
	return sp_accept_through(by == BY_URING, l, a, alen, SOCK_CLOEXEC);
}

/* The variant's call for sp_tcp_accept_by (arg: the conn_by). */
static int take_by(int l, struct sockaddr *a, socklen_t *alen, void *arg)
{
	return accept_by(*(const int *)arg, l, a, alen);
}

/* A queued connection taken by the variant's call: the fixture's bounded
 * accept (a connection not queued after connect() returned needs
 * TCP-HANDSHAKE-BEFORE-ACCEPT; one not taken, or handed out again, needs
 * TCP-LISTEN-ACCEPT-SEQUENCE). */
static int accept_queued(int by, int l, struct sockaddr *a, socklen_t *alen)
{
	return sp_tcp_accept_by(l, a, alen, take_by, &by, by_name[by]);
}

/* A client connected to the listener by connect() (sp_tcp_connect) or by
 * io_uring CONNECT (a mechanism here: TCP-HANDSHAKE-BEFORE-ACCEPT's). */
static int connect_by(const struct sp_ctx *ctx, int by, int l)
{
	if (by != BY_URING)
		return sp_tcp_connect(ctx, l);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l));
	int fd = sp_socket(ctx, SOCK_STREAM);
	errno = 0;
	if (MUST_RETURN(sp_connect_through(1, fd, (struct sockaddr *)&ss, len),
			"io_uring CONNECT to a listener") < 0)
		BROKEN_NEEDS("TCP-HANDSHAKE-BEFORE-ACCEPT", "io_uring CONNECT to a listener failed: %s",
			     sp_errno_name(errno));
	return fd;
}

/* Nothing (more) in the listener's queue: a non-blocking accept says
 * EAGAIN (through the variant's call; io_uring ACCEPT where it can be
 * asked not to wait, else accept4()). Asked by accept, not poll() (a
 * listener's readability is MUX-LISTEN-READABLE's); EAGAIN at once is
 * CONN-ACCEPT-EAGAIN's, a mechanism here. */
static void nothing_queued(int by, int l, const char *what)
{
	if (by == BY_URING && sp_uring_accept_nowait_missing())
		by = BY_ACCEPT4;
	int fl = (int)ASSERT_SYS(fcntl(l, F_GETFL));
	ASSERT_SYS(fcntl(l, F_SETFL, fl | O_NONBLOCK));
	errno = 0;
	int s = BOUNDED(accept_by(by, l, NULL, NULL));
	/* io_uring's own bound ends a request that waits with EINTR */
	int err = errno, blocked = sp_bound_expired() || (s < 0 && err == EINTR);
	ASSERT_SYS(fcntl(l, F_SETFL, fl));
	if (blocked)
		sp_needs_at(__FILE__, __LINE__, "CONN-ACCEPT-EAGAIN", by_name[by],
			    "returns at once on a non-blocking listener", "still blocked", 0);
	ASSERT_TRUE(s < 0, "%s: a non-blocking %s finds no connection (it took one)", what, by_name[by]);
	if (err != EAGAIN && err != EWOULDBLOCK)
		sp_needs_at(__FILE__, __LINE__, "CONN-ACCEPT-EAGAIN", by_name[by],
			    "-1 (EAGAIN) on an empty non-blocking listener", sp_errno_name(err), err);
}

/* 3. Up to the backlog, connections complete before accept (.how: the
 * connects and accepts made by the system calls or by io_uring). */
SP_TEST(backlog_queues_connections_before_accept, "CONN-BACKLOG-QUEUE", SP_INET,
	.how = SP_NAMES("connect, accept", "connect, accept4", "io_uring:CONNECT, io_uring:ACCEPT"))
{
	const int by = ctx->how, uring = by == BY_URING;
	const char *conn_call = uring ? "io_uring CONNECT" : "connect()";
	int l = sp_socket(ctx, SOCK_STREAM), c[3], order[3];
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, 0);

	require_calls(by, 0);
	ASSERT_SYS(bind(l, (struct sockaddr *)&ss, len));
	ASSERT_SYS(listen(l, 3));
	len = sp_loopback(ctx, &ss, sp_local_port(l));
	for (int i = 0; i < 3; i++) {
		c[i] = sp_socket(ctx, SOCK_STREAM);
		errno = 0;
		int r = MUST_RETURN(sp_connect_through(uring, c[i], (struct sockaddr *)&ss, len),
				    "blocking %s %d of 3 to listen(3) with nobody accepting", conn_call, i + 1);
		int err = errno;
		ASSERT_TRUE(r == 0, "blocking %s %d of 3 returns with nobody accepting (got %s)",
			    conn_call, i + 1, sp_errno_name(err));
		SP_OUT_EXACT(SP_IO_READ, c[i], &"ABC"[i], 1);
	}
	int in_order = 1;
	for (int i = 0; i < 3; i++) {
		errno = 0;
		int s = MUST_RETURN(accept_by(by, l, NULL, NULL), "%s %d of 3 queued connections",
				    by_name[by], i + 1);
		ASSERT_TRUE(s >= 0, "%s %d of 3 queued connections succeeds (got %s)", by_name[by],
			    i + 1, sp_errno_name(errno));
		char b;
		SP_IN_EXACT(SP_IO_READ, s, &b, 1);
		ASSERT_TRUE(b >= 'A' && b <= 'C', "accepted connection %d carries a client's byte", i + 1);
		order[i] = b - 'A';
		in_order &= order[i] == i;
		SP_OUT_EXACT(SP_IO_READ, s, "k", 1);      /* usable both ways */
		SP_IN_EXACT(SP_IO_READ, c[order[i]], &b, 1);
		ASSERT_EQ('k', b);
		close(s);
	}
	RECORD_ONCE("accept_order_is_arrival_order", "%s", in_order ? "yes" : "no");
	nothing_queued(by, l, "nothing else is queued after the three");
	for (int i = 0; i < 3; i++)
		close(c[i]);
	close(l);
	if (!ctx->first)
		return;

	/* Record (once): how many of 8 non-blocking connects complete at once. */
	int many[8], est = 0;
	struct sp_capture cap;
	int l2 = sp_socket(ctx, SOCK_STREAM);
	len = sp_loopback(ctx, &ss, 0);
	ASSERT_SYS(bind(l2, (struct sockaddr *)&ss, len));
	ASSERT_SYS(listen(l2, 3));
	len = sp_loopback(ctx, &ss, sp_local_port(l2));
	sp_capture_start(&cap);
	for (int i = 0; i < 8; i++) {
		many[i] = sp_socket(ctx, SOCK_STREAM);
		sp_set_nonblock(many[i], 1);
		connect(many[i], (struct sockaddr *)&ss, len);
	}
	sp_capture_sync(&cap); /* every handshake packet processed */
	sp_capture_stop(&cap);
	for (int i = 0; i < 8; i++) {
		est += sp_poll(many[i], POLLOUT, 0) & POLLOUT ? 1 : 0;
		close(many[i]);
	}
	RECORD("established_of_8_with_backlog_3", "%d", est);
	close(l2);
}

/* 4. accept on a non-blocking listener does not wait. */
/* A child that makes the accept call on the non-blocking listener once
 * the parent watches it: "at once" means the call never sleeps. */
struct nb_accepter { int l, by; struct sp_barrier go; };
static int accept_once(void *p)
{
	struct nb_accepter *a = p;
	sp_barrier_pass(&a->go);
	errno = 0;
	int r = accept_by(a->by, a->l, NULL, NULL);
	return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : 1;
}

static int gone_or_asleep(void *p)
{
	char st = sp_proc_state(*(pid_t *)p);
	return st == 'Z' || st == 'S' || st == 0;
}

/* The variant's accept call on an empty non-blocking listener fails at
 * once with EAGAIN; a wrong stack that blocks is cut off and the call
 * named (io_uring's own bound ends its request with EINTR). */
static void expect_eagain(int by, int l, const char *what)
{
	char desc[128];

	snprintf(desc, sizeof(desc), "%s on %s", by_name[by], what);
	errno = 0;
	int r = MUST_RETURN(accept_by(by, l, NULL, NULL), "%s", desc);
	int err = errno;
	if (r < 0 && err == EINTR && by == BY_URING) {
		char seen[64];
		snprintf(seen, sizeof(seen), "still blocked after %d ms", sp_wait_ms());
		sp_fail(__FILE__, __LINE__, desc, "-1 (EAGAIN) at once", seen, 0);
	}
	if (r >= 0)
		close(r);
	ASSERT_TRUE(r < 0 && (err == EAGAIN || err == EWOULDBLOCK),
		    "%s fails with EAGAIN (got %d, %s)", desc, r, r < 0 ? sp_errno_name(err) : "a connection");
}

SP_TEST(nonblocking_accept_fails_with_eagain, "CONN-ACCEPT-EAGAIN", SP_INET,
	.how = SP_NAMES("accept", "accept4", "io_uring:ACCEPT"))
{
	const int by = ctx->how;
	require_calls(by, 1);
	int l = sp_tcp_listener(ctx, 0);
	int l2 = sp_socket(ctx, SOCK_STREAM | SOCK_NONBLOCK);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, 0);

	ASSERT_SYS(bind(l2, (struct sockaddr *)&ss, len));
	ASSERT_SYS(listen(l2, 4));
	sp_set_nonblock(l, 1);
	expect_eagain(by, l, "an empty O_NONBLOCK listener");
	expect_eagain(by, l2, "an empty SOCK_NONBLOCK listener");

	/* "At once": the call never sleeps. A child makes it while /proc
	 * shows its state; it must end, never be seen asleep in accept.
	 * Not for io_uring: its request completes at once with EAGAIN (shown
	 * above, within the fixture's bound), and the io_uring_enter() that
	 * collects it may sleep for the fixture's own linked timeout. */
	if (sp_have_proc() && by != BY_URING) {
		struct nb_accepter a = { .l = l, .by = by };
		sp_barrier_init(&a.go);
		pid_t pid = sp_fork(accept_once, &a);
		sp_barrier_wait(&a.go);
		ASSERT_TRUE(sp_wait_until(gone_or_asleep, &pid, sp_wait_ms()),
			    "the child's %s ends or sleeps within %d ms", by_name[by], sp_wait_ms());
		char st = sp_proc_state(pid);
		ASSERT_TRUE(st != 'S', "a non-blocking %s returns without sleeping "
			    "(the child was seen asleep in it, state %c)", by_name[by], st);
		sp_reap_exit(pid, 0);
	}

	/* With a connection pending it succeeds, then the queue is empty again. */
	int c = sp_tcp_connect(ctx, l);
	int s = accept_queued(by, l, NULL, NULL);
	int fl = (int)ASSERT_SYS(fcntl(s, F_GETFL));
	RECORD_ONCE("accepted_inherits_o_nonblock", "%s", fl & O_NONBLOCK ? "yes" : "no");
	SP_OUT_EXACT(SP_IO_READ, c, "x", 1);
	char b;
	SP_IN_EXACT(SP_IO_READ, s, &b, 1);
	expect_eagain(by, l, "a drained O_NONBLOCK listener");
	close(s);
	close(c);
	close(l);
	close(l2);
}

static int same_sockaddr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

static const char *show(const struct sockaddr_storage *ss)
{
	static char out[4][80];
	static int k;
	char a[INET6_ADDRSTRLEN] = "?";
	char *o = out[k++ % 4];

	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, a, sizeof(a));
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, a, sizeof(a));
	snprintf(o, 80, "[%s]:%u (family %d)", a, sp_port(ss), ss->ss_family);
	return o;
}

static void name_of(int fd, int peer, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	memset(ss, 0, sizeof(*ss));
	if (peer)
		ASSERT_SYS(getpeername(fd, (struct sockaddr *)ss, &len));
	else
		ASSERT_SYS(getsockname(fd, (struct sockaddr *)ss, &len));
	ASSERT_EQ(ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), len);
}

#define ASSERT_SAME_ADDR(a, b, what) \
	ASSERT_TRUE(same_sockaddr(a, b), "%s: %s vs %s", what, show(a), show(b))

/* 5. The two ends agree on each other's names (.how: connected and
 * accepted by the system calls, accept() then accept4(), or by io_uring
 * CONNECT and ACCEPT). */
SP_TEST(socket_and_peer_names_agree, "CONN-NAMES-AGREE", SP_INET,
	.how = SP_NAMES("syscalls", "io_uring:CONNECT+ACCEPT"))
{
	const int uring = ctx->how == 1;
	const int first = uring ? BY_URING : BY_ACCEPT, second = uring ? BY_URING : BY_ACCEPT4;
	require_calls(first, 0);
	int l = sp_tcp_listener(ctx, 0), c = connect_by(ctx, first, l);
	struct sockaddr_storage from, cl, cp, sl, sp, ll;
	socklen_t flen = sizeof(from);

	memset(&from, 0, sizeof(from));
	int s = accept_queued(first, l, (struct sockaddr *)&from, &flen);
	name_of(c, 0, &cl);
	name_of(c, 1, &cp);
	name_of(s, 0, &sl);
	name_of(s, 1, &sp);
	name_of(l, 0, &ll);
	ASSERT_EQ(ctx->af, cl.ss_family);
	ASSERT_SAME_ADDR(&cl, &sp, "client getsockname = server getpeername");
	ASSERT_SAME_ADDR(&sl, &cp, "server getsockname = client getpeername");
	ASSERT_EQ(ctx->af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in), flen);
	ASSERT_SAME_ADDR(&cl, &from, "client getsockname = accept's address");
	ASSERT_SAME_ADDR(&sl, &ll, "accepted socket's name = listener's name");
	ASSERT_TRUE(sp_port(&cl) != sp_port(&sl), "the two ends' ports: expected different, "
		    "observed both %u", sp_port(&cl));

	/* accept4 (or io_uring ACCEPT again) fills in the same address. */
	int c2 = connect_by(ctx, second, l);
	flen = sizeof(from);
	memset(&from, 0, sizeof(from));
	int s2 = accept_queued(second, l, (struct sockaddr *)&from, &flen);
	name_of(c2, 0, &cl);
	name_of(s2, 1, &sp);
	ASSERT_TRUE(same_sockaddr(&cl, &from), "client getsockname = %s's address: %s vs %s",
		    by_name[second], show(&cl), show(&from));
	ASSERT_SAME_ADDR(&cl, &sp, "client getsockname = server getpeername");

	/* Connected UDP sockets agree too. */
	int u1 = sp_udp_bound(ctx), u2 = sp_udp_bound(ctx);
	struct sockaddr_storage a1, a2, p1, p2;
	name_of(u1, 0, &a1);
	name_of(u2, 0, &a2);
	socklen_t ul = ctx->af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	ASSERT_SYS(sp_connect_through(uring, u1, (struct sockaddr *)&a2, ul));
	ASSERT_SYS(sp_connect_through(uring, u2, (struct sockaddr *)&a1, ul));
	/* connect() registering the UDP peer is UDP-CONNECTED's Must. */
	struct sockaddr_storage tmp;
	socklen_t tl = sizeof(tmp);
	errno = 0;
	if (getpeername(u1, (struct sockaddr *)&tmp, &tl) < 0 && errno == ENOTCONN)
		sp_needs_at(__FILE__, __LINE__, "UDP-CONNECTED", "getpeername() after connect() on UDP",
			    "the peer registered", "-1 (ENOTCONN)", ENOTCONN);
	name_of(u1, 1, &p1);
	name_of(u2, 1, &p2);
	ASSERT_SAME_ADDR(&a1, &p2, "UDP getsockname = peer's getpeername");
	ASSERT_SAME_ADDR(&a2, &p1, "UDP getpeername = peer's getsockname");

	/* A listener on the wildcard address: the accepted socket is named by
	 * the concrete address the client reached, never the wildcard (only
	 * in the item's own network namespace: it binds the wildcard). */
	const char *netns = getenv("SOCKPROBE_NETNS");
	if (netns && strcmp(netns, "private") == 0) {
		struct sockaddr_storage any;
		socklen_t alen = sp_loopback(ctx, &any, 0);
		if (ctx->af == AF_INET6)
			((struct sockaddr_in6 *)&any)->sin6_addr = in6addr_any;
		else
			((struct sockaddr_in *)&any)->sin_addr.s_addr = htonl(INADDR_ANY);
		int wl = sp_socket(ctx, SOCK_STREAM);
		ASSERT_SYS(bind(wl, (struct sockaddr *)&any, alen));
		ASSERT_SYS(listen(wl, 4));
		int wc = connect_by(ctx, first, wl);
		int ws = accept_queued(first, wl, NULL, NULL);
		name_of(ws, 0, &sl);
		name_of(wc, 1, &cp);
		ASSERT_SAME_ADDR(&sl, &cp, "wildcard listener: accepted getsockname = client getpeername");
		RECORD("wildcard_listener_accepted_name", "%s", same_sockaddr(&sl, &cp) ?
		       "the address the client reached" : "another address");
		close(ws);
		close(wc);
		close(wl);
	} else {
		RECORD("wildcard_listener_accepted_name", "not checked (shared host network)");
	}

	/* Unconnected sockets have no peer. */
	struct sockaddr_storage none;
	socklen_t nl = sizeof(none);
	int fresh = sp_socket(ctx, SOCK_STREAM), ufresh = sp_udp_bound(ctx);
	ASSERT_ERRNO(getpeername(fresh, (struct sockaddr *)&none, &nl), ENOTCONN);
	nl = sizeof(none);
	ASSERT_ERRNO(getpeername(l, (struct sockaddr *)&none, &nl), ENOTCONN);
	nl = sizeof(none);
	ASSERT_ERRNO(getpeername(ufresh, (struct sockaddr *)&none, &nl), ENOTCONN);
}

/* An AF_INET6 listener on [::]:0 with IPV6_V6ONLY set to v6only. */
static int dual_listener(const struct sp_ctx *ctx, int v6only, int *dflt)
{
	int l = sp_socket(ctx, SOCK_STREAM); /* AF_INET6: the item is ipv6 */
	struct sockaddr_in6 any = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };

	*dflt = sp_get_int(l, IPPROTO_IPV6, IPV6_V6ONLY);
	ASSERT_SYS(setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)));
	ASSERT_EQ(v6only, !!sp_get_int(l, IPPROTO_IPV6, IPV6_V6ONLY));
	ASSERT_SYS(bind(l, (struct sockaddr *)&any, sizeof(any)));
	ASSERT_SYS(listen(l, 4));
	return l;
}

static int v4_connect(int by, uint16_t port, int *err)
{
	int c = (int)ASSERT_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	errno = 0;
	int r = MUST_RETURN(sp_connect_through(by == BY_URING, c, (struct sockaddr *)&to, sizeof(to)),
			    "a blocking IPv4 %s to 127.0.0.1 port %u",
			    by == BY_URING ? "io_uring CONNECT" : "connect()", port);
	*err = errno;
	if (r < 0) {
		close(c);
		return -1;
	}
	return c;
}

static int v4_bind_any(uint16_t port)
{
	int b = (int)ASSERT_SYS(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	struct sockaddr_in any = { .sin_family = AF_INET, .sin_port = htons(port) };
	errno = 0;
	int r = bind(b, (struct sockaddr *)&any, sizeof(any));
	int err = errno;
	close(b);
	return r == 0 ? 0 : err;
}

static void v6_client_connects(const struct sp_ctx *ctx, int by, int l)
{
	int c = connect_by(ctx, by, l); /* ::1 */
	struct sockaddr_in6 from;
	socklen_t fl = sizeof(from);
	int s = accept_queued(by, l, (struct sockaddr *)&from, &fl);
	ASSERT_TRUE(IN6_IS_ADDR_LOOPBACK(&from.sin6_addr), "the IPv6 client's address from "
		    "accept(): expected ::1, observed %s", show((struct sockaddr_storage *)&from));
	close(s);
	close(c);
}

/* The connects and accepts of items 6 and 7 (.how). */
#define DUAL_CALLS SP_NAMES("syscalls", "io_uring:CONNECT+ACCEPT")

/* 6. A dual-stack listener takes IPv4 clients as mapped addresses. */
SP_TEST(v6_listener_takes_v4_clients_as_mapped, "CONN-V6-MAPPED", SP_IPV6, .how = DUAL_CALLS)
{
	const int by = ctx->how ? BY_URING : BY_ACCEPT4;
	int dflt, err;

	sp_require_private_net();
	require_calls(by, 0);
	int l = dual_listener(ctx, 0, &dflt);
	RECORD_ONCE("ipv6_v6only_default", "%d", dflt);
	uint16_t port = sp_local_port(l);
	int c = v4_connect(by, port, &err);
	ASSERT_TRUE(c >= 0, "an IPv4 client connects to [::]:P with IPV6_V6ONLY=0 (got %s)",
		    sp_errno_name(err));
	struct sockaddr_storage from, peer, cname, sname;
	socklen_t fl = sizeof(from);
	memset(&from, 0, sizeof(from));
	int s = accept_queued(by, l, (struct sockaddr *)&from, &fl);
	ASSERT_EQ(AF_INET6, from.ss_family);
	ASSERT_EQ(sizeof(struct sockaddr_in6), fl);
	struct in6_addr mapped;
	ASSERT_EQ(1, inet_pton(AF_INET6, "::ffff:127.0.0.1", &mapped));
	ASSERT_TRUE(!memcmp(&((struct sockaddr_in6 *)&from)->sin6_addr, &mapped, 16),
		    "%s gives the client as ::ffff:127.0.0.1: got %s", by_name[by], show(&from));
	name_of(s, 1, &peer);
	/* Recorded: names agreeing is CONN-NAMES-AGREE's Must. */
	RECORD_ONCE("accept_address_is_getpeername", "%s", same_sockaddr(&from, &peer) ? "yes" : show(&peer));
	name_of(c, 0, &cname);
	ASSERT_EQ(AF_INET, cname.ss_family);              /* the client stays IPv4 */
	RECORD_ONCE("client_port_is_servers_getpeername", "%s",
	       sp_port(&cname) == sp_port(&peer) ? "yes" : "no");
	name_of(s, 0, &sname);
	ASSERT_EQ(AF_INET6, sname.ss_family);
	/* Its port is the listener's: CONN-NAMES-AGREE's Must, recorded. */
	RECORD_ONCE("accepted_port_is_listeners", "%s", sp_port(&sname) == port ? "yes" : "no");
	SP_OUT_EXACT(SP_IO_READ, c, "v4", 2);
	char b[2];
	SP_IN_EXACT(SP_IO_READ, s, b, 2);
	ASSERT_MEM_EQ("v4", b, 2);
	/* The port is taken for IPv4 too. */
	int e = v4_bind_any(port);
	ASSERT_TRUE(e == EADDRINUSE, "AF_INET bind to 0.0.0.0:P fails with EADDRINUSE (got %s)",
		    e ? sp_errno_name(e) : "success");
	v6_client_connects(ctx, by, l);
	close(s);
	close(c);
	close(l);
}

/* 7. An IPv6-only listener leaves IPv4 alone. */
SP_TEST(v6only_listener_takes_only_ipv6, "CONN-V6ONLY", SP_IPV6, .how = DUAL_CALLS)
{
	const int by = ctx->how ? BY_URING : BY_ACCEPT4;
	int dflt, err;

	sp_require_private_net();
	require_calls(by, 0);
	int l = dual_listener(ctx, 1, &dflt);
	uint16_t port = sp_local_port(l);
	int c = v4_connect(by, port, &err);
	ASSERT_TRUE(c < 0 && err == ECONNREFUSED,
		    "an IPv4 %s to an IPv6-only [::]:P is refused (got %s)",
		    by == BY_URING ? "io_uring CONNECT" : "connect()",
		    c >= 0 ? "connected" : sp_errno_name(err));
	nothing_queued(by, l, "nothing reached the IPv6 listener");
	int e = v4_bind_any(port);
	ASSERT_TRUE(e == 0, "AF_INET bind to 0.0.0.0:P succeeds beside an IPv6-only listener (got %s)",
		    sp_errno_name(e));
	v6_client_connects(ctx, by, l);
	close(l);
}

SP_MAIN("conn")
