/*
 * listen.c - listening sockets, the accept queue and SO_REUSEPORT
 * (catalogue part 3, "Listening sockets and the accept queue" and
 * "SO_REUSEPORT"; listen(2), accept(2), socket(7), tcp(7)).
 *
 *  1. LISTEN-ACCEPTCONN             SO_ACCEPTCONN reads 0 on a new TCP
 *                                   socket and after bind(), 1 after
 *                                   listen(), 0 on the client, the accepted
 *                                   socket and UDP; an AF_UNIX stream socket
 *                                   reads 0 bound, 1 listening.
 *  2. LISTEN-FULL-QUEUE-PENDS       Linux: a connect to a full accept queue
 *                                   neither fails nor completes (500 ms not
 *                                   writable, SO_ERROR 0) and completes
 *                                   after one accept() (the SYN
 *                                   retransmission, seen on the wire).
 *  3. LISTEN-SHUTDOWN-WAKES-ACCEPT  Linux: shutdown(SHUT_RD or SHUT_RDWR) of
 *                                   a listener returns 0 and wakes an
 *                                   accept() blocked in another thread; a
 *                                   later accept() fails at once; a new
 *                                   connect is refused.
 *  4. LISTEN-ACCEPT4-FLAGS          accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) sets
 *                                   both flags (recv: EAGAIN at once);
 *                                   FD_CLOEXEC is never inherited from the
 *                                   listener, which keeps its flags; an
 *                                   unknown flag fails with EINVAL.
 *  5. LISTEN-AUTOBIND               Linux: listen() on an unbound socket
 *                                   binds the wildcard address and an
 *                                   ephemeral port, reachable on loopback.
 *  6. LISTEN-DEFER-ACCEPT           Linux: with TCP_DEFER_ACCEPT the
 *                                   listener stays unreadable (accept:
 *                                   EAGAIN) until the client's first byte,
 *                                   then accept() returns the connection
 *                                   with the byte already readable.
 *  7. REUSEPORT-TCP                 Linux: two listeners with SO_REUSEPORT
 *                                   share a port (a third without it:
 *                                   EADDRINUSE); 32 connections are all
 *                                   accepted, each listener gets some; after
 *                                   one closes, the other gets the next.
 *  8. REUSEPORT-UDP                 Linux: two UDP sockets share a port the
 *                                   same way; 32 datagrams from 32 source
 *                                   ports arrive exactly once, spread over
 *                                   both.
 *  9. REUSEPORT-BOTH-REQUIRED       Linux: SO_REUSEPORT reads 0, then 1 once
 *                                   set; sharing needs it on both sockets
 *                                   (first only, second only, neither:
 *                                   EADDRINUSE), for TCP and UDP.
 *
 * Items run over IPv4 and IPv6 loopback; LISTEN-AUTOBIND binds the
 * wildcard address, so only in the item's own network namespace. A
 * thread blocked on purpose in accept() is seen asleep in the call in
 * /proc before the listener is shut down; every wait is bounded.
 *
 * Platform-defined (recorded): setsockopt(SO_ACCEPTCONN); how many
 * connects complete for listen(fd, 0), 1 and 2 and the time from the
 * accept() to the completion; the woken accept's errno, listen() again
 * after shutdown, what a queued client sees, shutdown(SHUT_WR) and close()
 * of a listener with an accept() blocked; O_NONBLOCK after accept4(.., 0);
 * whether IPv4 reaches an autobound AF_INET6 socket; TCP_DEFER_ACCEPT read
 * back; the REUSEPORT splits; SO_REUSEADDR sharing of a UDP port; and
 * SO_REUSEPORT on AF_UNIX.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <sys/un.h>

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

static int listener_with_backlog(const struct sp_ctx *ctx, int backlog)
{
	int l = sp_socket(ctx, SOCK_STREAM);

	sp_bind_loopback(ctx, l);
	ASSERT_SYS(listen(l, backlog));
	return l;
}

/* connect() to loopback:port: the socket, or -1 with *err. */
static int connect_to(const struct sp_ctx *ctx, uint16_t port, int *err)
{
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, port);
	int c = sp_socket(ctx, SOCK_STREAM);

	sp_watchdog(sp_wait_ms());
	errno = 0;
	int r = connect(c, (struct sockaddr *)&ss, len);
	*err = errno;
	sp_watchdog(0);
	if (r < 0) {
		close(c);
		return -1;
	}
	return c;
}

/* ---- 1. LISTEN-ACCEPTCONN --------------------------------------------------- */

SP_TEST(acceptconn_reads_listening_state, "LISTEN-ACCEPTCONN", SP_INET)
{
	int l = sp_socket(ctx, SOCK_STREAM);

	ASSERT_EQ(0, sp_get_int(l, SOL_SOCKET, SO_ACCEPTCONN));       /* new */
	sp_bind_loopback(ctx, l);
	ASSERT_EQ(0, sp_get_int(l, SOL_SOCKET, SO_ACCEPTCONN));       /* bound */
	ASSERT_SYS(listen(l, 4));
	ASSERT_EQ(1, sp_get_int(l, SOL_SOCKET, SO_ACCEPTCONN));       /* listening */
	int c = sp_tcp_connect(ctx, l);
	int s = sp_tcp_accept(l);
	ASSERT_EQ(0, sp_get_int(c, SOL_SOCKET, SO_ACCEPTCONN));       /* client */
	ASSERT_EQ(0, sp_get_int(s, SOL_SOCKET, SO_ACCEPTCONN));       /* accepted */
	int u = sp_udp_bound(ctx);
	ASSERT_EQ(0, sp_get_int(u, SOL_SOCKET, SO_ACCEPTCONN));       /* UDP */

	/* AF_UNIX stream, bound to a path in a directory of its own */
	char dir[] = "/tmp/sockprobe-acceptconn-XXXXXX";
	REQUIRE(mkdtemp(dir), "a temporary directory for the AF_UNIX socket (%s)",
		sp_errno_name(errno));
	int x = (int)ASSERT_SYS(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	snprintf(un.sun_path, sizeof(un.sun_path), "%s/s", dir);
	errno = 0;
	int br = bind(x, (struct sockaddr *)&un, sizeof(un));
	int berr = errno;
	unlink(un.sun_path);
	rmdir(dir);
	REQUIRE(br == 0, "an AF_UNIX stream socket binds a path (%s)", sp_errno_name(berr));
	int before = sp_get_int(x, SOL_SOCKET, SO_ACCEPTCONN);
	if (before != 0)
		FAIL("SO_ACCEPTCONN of a bound AF_UNIX stream socket before listen(): expected 0, "
		     "observed %d", before);
	ASSERT_SYS(listen(x, 4));
	int after = sp_get_int(x, SOL_SOCKET, SO_ACCEPTCONN);
	if (after != 1)
		FAIL("SO_ACCEPTCONN of a listening AF_UNIX stream socket: expected 1, observed %d",
		     after);

	int one = 1;
	errno = 0;
	int r = setsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &one, sizeof(one));
	RECORD("setsockopt_so_acceptconn", "%s", r == 0 ? "0" : sp_errno_name(errno));
	close(x);
	close(u);
	close(s);
	close(c);
	close(l);
}

/* ---- 2. LISTEN-FULL-QUEUE-PENDS ------------------------------------------- */

/* Fill n listeners at once with non-blocking connects until one stays in
 * progress for 150 ms (catalogue convention); done[i] counts those that
 * completed, pend[i] is the one in progress. Broken if a queue never
 * fills. */
enum { FILL_MAX = 16 };
static void fill_queues(const struct sp_ctx *ctx, const int *l, int n, int *done, int *pend,
			int fill[][FILL_MAX])
{
	int left = n;

	for (int i = 0; i < n; i++) {
		done[i] = 0;
		pend[i] = -1;
	}
	while (left) {
		struct pollfd p[8];
		int who[8], k = 0;
		for (int i = 0; i < n; i++) {
			if (pend[i] >= 0)
				continue;
			REQUIRE(done[i] < FILL_MAX, "the accept queue fills: %d non-blocking "
				"connects all completed", FILL_MAX);
			struct sockaddr_storage ss;
			socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l[i]));
			int c = sp_socket(ctx, SOCK_STREAM);
			sp_set_nonblock(c, 1);
			errno = 0;
			int r = connect(c, (struct sockaddr *)&ss, len);
			if (r < 0 && (errno == ECONNREFUSED || errno == ECONNRESET))
				FAIL("a non-blocking connect to a listener whose queue may be full "
				     "neither fails nor completes (got %s after %d completed)",
				     sp_errno_name(errno), done[i]);
			REQUIRE(r == 0 || errno == EINPROGRESS, "a non-blocking connect starts (got %s)",
				sp_errno_name(errno));
			p[k] = (struct pollfd){ .fd = c, .events = POLLOUT };
			who[k++] = i;
		}
		long long until = now_ms() + 150;
		for (;;) {
			int pending = 0;
			for (int j = 0; j < k; j++) {
				p[j].revents = 0;
				if (poll(&p[j], 1, 0) != 1)
					pending++;
			}
			long long rest = until - now_ms();
			if (!pending || rest <= 0)
				break;
			poll(NULL, 0, rest > 5 ? 5 : (int)rest); /* bounded: 150 ms */
		}
		for (int j = 0; j < k; j++) {
			int i = who[j];
			if (p[j].revents & (POLLERR | POLLHUP)) {
				/* A refusal is this ID's deviation, not a setup problem. */
				FAIL("a connect to a listener whose queue may be full is refused or "
				     "reset (%s, SO_ERROR %s) after %d completed",
				     sp_events_str(p[j].revents), sp_errno_name(sp_get_int(p[j].fd, SOL_SOCKET, SO_ERROR)),
				     done[i]);
			}
			if (p[j].revents & POLLOUT) {
				fill[i][done[i]++] = p[j].fd;
			} else {
				pend[i] = p[j].fd;
				left--;
			}
		}
	}
}

SP_TEST(full_queue_leaves_connect_pending, "LISTEN-FULL-QUEUE-PENDS", SP_INET, .slow = 1)
{
	static const int backlogs[4] = { 1, 0, 1, 2 };
	int l[4], done[4], pend[4], fill[4][FILL_MAX];
	struct sp_capture cap;

	for (int i = 0; i < 4; i++)
		l[i] = listener_with_backlog(ctx, backlogs[i]);
	int cap_on = sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(l[0]), "S");
	fill_queues(ctx, l, 4, done, pend, fill);
	ASSERT_TRUE(done[0] >= 1, "at least one connect to listen(fd, 1) completes before one "
		    "stays in progress (%d did)", done[0]);
	RECORD("completed_for_backlog_0_1_2", "%d %d %d", done[1], done[2], done[3]);
	int p = pend[0];
	sp_capture_name(&cap, sp_local_port(p), "P");

	/* Neither fails nor completes for 500 ms more. */
	int ev = sp_poll(p, POLLOUT, 500);
	ASSERT_TRUE(ev == 0, "a connect to a full accept queue stays pending: not writable, no "
		    "error for 500 ms (%s, SO_ERROR %s)", sp_events_str(ev),
		    sp_errno_name(sp_get_int(p, SOL_SOCKET, SO_ERROR)));
	ASSERT_EQ(0, sp_get_int(p, SOL_SOCKET, SO_ERROR));

	/* One accept() makes room: it completes within 5 s. */
	sp_capture_mark(&cap, "accept");
	int s = (int)ASSERT_SYS(accept(l[0], NULL, NULL));
	long long t0 = now_ms();
	ev = sp_poll(p, POLLOUT, 5000);
	long long took = now_ms() - t0;
	ASSERT_TRUE(ev & POLLOUT, "after one accept() the pending connect completes within 5 s "
		    "(%s)", sp_events_str(ev));
	ASSERT_EQ(0, ev & POLLERR);
	ASSERT_EQ(0, sp_get_int(p, SOL_SOCKET, SO_ERROR));
	RECORD("accept_to_completion", "%lld-%lld ms", took / 100 * 100, took / 100 * 100 + 100);
	if (cap_on && sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "P>S S, M accept, P>S S, S>P S., P>S .");
		WIRE_LACKS(&cap, "S>P R");
	}
	sp_capture_stop(&cap);
	close(s);
	for (int i = 0; i < 4; i++) {
		for (int j = 0; j < done[i]; j++)
			close(fill[i][j]);
		close(pend[i]);
		close(l[i]);
	}
}

/* ---- 3. LISTEN-SHUTDOWN-WAKES-ACCEPT -------------------------------------- */

/* Is thread tid asleep in accept (state S, and the system call where
 * /proc shows it)? */
static int asleep_in_accept(void *p)
{
	pid_t tid = *(volatile pid_t *)p;
	char path[64], buf[256];
	FILE *f;

	if (!tid || sp_proc_state(tid) != 'S')
		return 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	if (!(f = fopen(path, "re")))
		return 1;
	int ok = fgets(buf, sizeof(buf), f) != NULL;
	fclose(f);
	if (!ok)
		return 1;
	long nr = strtol(buf, NULL, 10);
	return
#ifdef SYS_accept
		nr == SYS_accept ||
#endif
#ifdef SYS_socketcall
		nr == SYS_socketcall ||
#endif
		nr == SYS_accept4;
}

struct blocked_accept { int l; volatile pid_t tid; int r, err; volatile int done; };

static void *accept_in_thread(void *p)
{
	struct blocked_accept *b = p;
	b->tid = (pid_t)syscall(SYS_gettid);
	errno = 0;
	b->r = accept(b->l, NULL, NULL);
	b->err = errno;
	b->done = 1;
	return NULL;
}

static int accept_done(void *p) { return ((struct blocked_accept *)p)->done; }

static void start_blocked_accept(struct blocked_accept *b, pthread_t *th, int l)
{
	sigset_t all, old;
	memset(b, 0, sizeof(*b));
	b->l = l;
	sigfillset(&all);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &all, &old));
	ASSERT_EQ(0, pthread_create(th, NULL, accept_in_thread, b));
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &old, NULL));
	REQUIRE(sp_wait_until(asleep_in_accept, (void *)&b->tid, sp_wait_ms()) && !b->done,
		"the thread's accept() is seen blocked in /proc within %d ms", sp_wait_ms());
}

/* On the way to a failure: a thread still blocked in accept() is left to
 * end with the probe (a connection to wake it could block as well, and
 * the item's time is better spent on its verdict). */
static void end_blocked_accept(struct blocked_accept *b, pthread_t th)
{
	if (b->done)
		pthread_join(th, NULL);
	else
		pthread_detach(th);
}

SP_TEST(listener_shutdown_wakes_accept, "LISTEN-SHUTDOWN-WAKES-ACCEPT", SP_INET,
	.how = SP_NAMES("SHUT_RD", "SHUT_RDWR"))
{
	if (!sp_have_proc())
		SKIP("needs /proc of this pid namespace to see accept() blocked in a thread");
	int how = ctx->how == 0 ? SHUT_RD : SHUT_RDWR;
	const char *hn = ctx->how_name;
	{
		int l = sp_tcp_listener(ctx, 0), err;
		uint16_t port = sp_local_port(l);
		struct blocked_accept b;
		pthread_t th;

		start_blocked_accept(&b, &th, l);
		errno = 0;
		int r = shutdown(l, how);
		int serr = errno;
		if (r != 0)
			end_blocked_accept(&b, th);
		ASSERT_TRUE(r == 0, "shutdown(%s) on a listening socket returns 0 (got %s)", hn,
			    sp_errno_name(serr));
		int woke = sp_wait_until(accept_done, &b, sp_wait_ms());
		if (!woke)
			end_blocked_accept(&b, th);
		if (!woke)
			FAIL("shutdown(%s) of the listener: expected the accept() blocked in another "
			     "thread to return, observed it still blocked after %d ms", hn, sp_wait_ms());
		pthread_join(th, NULL);
		ASSERT_TRUE(b.r == -1, "the woken accept() fails (got a socket, %d)", b.r);
		RECORD(how == SHUT_RD ? "woken_accept_errno_shut_rd" : "woken_accept_errno_shut_rdwr",
		       "%s", sp_errno_name(b.err));

		/* A later accept() fails at once. */
		sp_watchdog(sp_wait_ms());
		long m = sp_block_mark();
		errno = 0;
		r = accept(l, NULL, NULL);
		int aerr = errno;
		sp_watchdog(0);
		ASSERT_TRUE(r == -1 && aerr != EINTR, "accept() after shutdown(%s) fails at once "
			    "(got %d, %s)", hn, r, sp_errno_name(aerr));
		ASSERT_NO_BLOCK(m, "accept() after shutdown(%s)", hn);

		/* A new connect is refused. */
		int c = connect_to(ctx, port, &err);
		ASSERT_TRUE(c < 0 && err == ECONNREFUSED, "a connect to the port after shutdown(%s) "
			    "fails with ECONNREFUSED (got %s)", hn, c >= 0 ? "connected" :
			    sp_errno_name(err));
		if (how == SHUT_RD) {
			errno = 0;
			r = listen(l, 4);
			RECORD("listen_again_after_shutdown", "%s", r == 0 ? "0" : sp_errno_name(errno));
		}
		close(l);
	}

	if (how != SHUT_RDWR)
		return; /* the Records below once, in the last variant */

	/* Record: a queued, never accepted client at shutdown. */
	int l = sp_tcp_listener(ctx, 0), err;
	int q = connect_to(ctx, sp_local_port(l), &err);
	REQUIRE(q >= 0, "a client connects to the listener (%s)", sp_errno_name(err));
	ASSERT_SYS(shutdown(l, SHUT_RDWR));
	int ev = sp_poll(q, POLLIN, sp_wait_ms());
	char b1;
	errno = 0;
	ssize_t rr = recv(q, &b1, 1, MSG_DONTWAIT);
	RECORD("queued_client_after_shutdown", "revents%s%s%s, recv %s", ev & POLLIN ? " POLLIN" : "",
	       ev & POLLERR ? " POLLERR" : "", ev & POLLHUP ? " POLLHUP" : "",
	       rr < 0 ? sp_errno_name(errno) : rr == 0 ? "EOF" : "data");
	close(q);
	close(l);

	/* Record: shutdown(SHUT_WR) on a listener. */
	l = sp_tcp_listener(ctx, 0);
	errno = 0;
	int r = shutdown(l, SHUT_WR);
	int werr = errno;
	q = connect_to(ctx, sp_local_port(l), &err);
	int works = q >= 0 && (sp_poll(l, POLLIN, sp_wait_ms()) & POLLIN);
	int s = works ? accept(l, NULL, NULL) : -1;
	RECORD("shutdown_wr_on_listener", "%s, accept %s", r == 0 ? "0" : sp_errno_name(werr),
	       s >= 0 ? "still works" : "fails");
	if (s >= 0)
		close(s);
	if (q >= 0)
		close(q);
	close(l);

	/* Record: close() of the listener while another thread is in accept(). */
	l = sp_tcp_listener(ctx, 0);
	uint16_t port = sp_local_port(l);
	struct blocked_accept b;
	pthread_t th;
	start_blocked_accept(&b, &th, l);
	close(l);
	int woke = sp_wait_until(accept_done, &b, 50); /* Record only: a short look */
	int c = woke ? -1 : connect_to(ctx, port, &err);
	int got = c >= 0 && sp_wait_until(accept_done, &b, sp_wait_ms());
	RECORD("close_of_listener_with_accept_blocked", "%s", woke ? "wakes the accept" :
	       c >= 0 && got && b.r >= 0 ? "does not wake it; a new connect is accepted by it" :
	       c < 0 ? "does not wake it; a new connect fails" : "does not wake it; accept stays blocked");
	end_blocked_accept(&b, th);
	if (b.r >= 0)
		close(b.r);
	if (c >= 0)
		close(c);
}

/* ---- 4. LISTEN-ACCEPT4-FLAGS ----------------------------------------------- */

static int has_fl(int fd, int fl) { return !!((int)ASSERT_SYS(fcntl(fd, F_GETFL)) & fl); }
static int has_cloexec(int fd) { return !!((int)ASSERT_SYS(fcntl(fd, F_GETFD)) & FD_CLOEXEC); }

/* A client queued at l: connect() through the listen queue and the
 * listener readable are mechanisms here (TCP-HANDSHAKE-BEFORE-ACCEPT,
 * MUX-LISTEN-READABLE). */
static void queue_client(const struct sp_ctx *ctx, int l, int *c)
{
	*c = sp_tcp_connect(ctx, l);
	if (sp_wait_tcp_state(*c, TCP_ESTABLISHED) != TCP_ESTABLISHED)
		sp_needs_at(__FILE__, __LINE__, "TCP-HANDSHAKE-BEFORE-ACCEPT",
			    "the client's state once connect() returned", "ESTABLISHED",
			    sp_tcp_state_name(sp_tcp_state(*c)), 0);
	int ev = sp_poll(l, POLLIN, sp_wait_ms());
	if (!(ev & POLLIN))
		sp_needs_at(__FILE__, __LINE__, "MUX-LISTEN-READABLE",
			    "poll() on a listener with a connection queued", "POLLIN",
			    sp_events_str(ev), 0);
}

/* accept()/accept4() with a connection queued: a failure other than the
 * flags' EINVAL is TCP-LISTEN-ACCEPT-SEQUENCE's deviation (a mechanism). */
static int accepted(int s, const char *call)
{
	if (s < 0 && errno != EINVAL) {
		char obs[48];
		snprintf(obs, sizeof(obs), "-1 (%s)", sp_errno_name(errno));
		sp_needs_at(__FILE__, __LINE__, "TCP-LISTEN-ACCEPT-SEQUENCE", call, "a new socket", obs,
			    errno);
	}
	return (int)ASSERT_SYS(s);
}

SP_TEST(accept4_sets_only_the_flags_asked, "LISTEN-ACCEPT4-FLAGS", SP_INET)
{
	int l = sp_tcp_listener(ctx, 0), c, s;
	char b;

	/* Both flags asked for, on a blocking listener. */
	sp_set_nonblock(l, 0);
	ASSERT_SYS(fcntl(l, F_SETFD, 0));
	queue_client(ctx, l, &c);
	s = accepted(accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC),
		     "accept4(SOCK_NONBLOCK|SOCK_CLOEXEC) with a connection queued");
	ASSERT_TRUE(has_fl(s, O_NONBLOCK), "accept4(SOCK_NONBLOCK|SOCK_CLOEXEC): expected "
		    "O_NONBLOCK set, observed clear");
	ASSERT_TRUE(has_cloexec(s), "accept4(SOCK_NONBLOCK|SOCK_CLOEXEC): expected FD_CLOEXEC "
		    "set, observed clear");
	sp_watchdog(sp_wait_ms());
	long m = sp_block_mark();
	ASSERT_ERRNO(recv(s, &b, 1, 0), EAGAIN);
	ASSERT_NO_BLOCK(m, "recv() with nothing queued on the accept4(SOCK_NONBLOCK) socket");
	sp_watchdog(0);
	ASSERT_TRUE(!has_fl(l, O_NONBLOCK) && !has_cloexec(l), "the listener after accept4(SOCK_"
		    "NONBLOCK|SOCK_CLOEXEC): expected O_NONBLOCK and FD_CLOEXEC clear (its own), "
		    "observed O_NONBLOCK %s, FD_CLOEXEC %s",
		    has_fl(l, O_NONBLOCK) ? "set" : "clear", has_cloexec(l) ? "set" : "clear");
	close(s);
	close(c);
	close(l);

	/* A listener with both flags: accepted sockets never get FD_CLOEXEC. */
	l = sp_socket(ctx, SOCK_STREAM | SOCK_NONBLOCK);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, 0);
	ASSERT_SYS(bind(l, (struct sockaddr *)&ss, len));
	ASSERT_SYS(listen(l, 8));
	if (!has_cloexec(l))
		BROKEN_NEEDS("EXEC-SOCK-CLOEXEC", "socket(SOCK_CLOEXEC) gave a listener without "
			     "FD_CLOEXEC, so nothing shows whether accepted sockets inherit it");
	REQUIRE(has_fl(l, O_NONBLOCK), "a listener with O_NONBLOCK: socket(SOCK_NONBLOCK) gave "
		"one with O_NONBLOCK clear");
	for (int four = 1; four >= 0; four--) {
		queue_client(ctx, l, &c);
		s = four ? accepted(accept4(l, NULL, NULL, 0), "accept4(.., 0) with a connection queued")
			 : accepted(accept(l, NULL, NULL), "accept() with a connection queued");
		ASSERT_TRUE(!has_cloexec(s), "%s on a SOCK_CLOEXEC listener gives a socket without "
			    "FD_CLOEXEC", four ? "accept4(.., 0)" : "accept()");
		if (four)
			RECORD("accept4_0_o_nonblock", "%s", has_fl(s, O_NONBLOCK) ? "set" : "clear");
		close(s);
		close(c);
	}
	ASSERT_TRUE(has_fl(l, O_NONBLOCK) && has_cloexec(l), "the SOCK_NONBLOCK|SOCK_CLOEXEC "
		    "listener after accept4(.., 0) and accept(): expected O_NONBLOCK and "
		    "FD_CLOEXEC kept, observed O_NONBLOCK %s, FD_CLOEXEC %s",
		    has_fl(l, O_NONBLOCK) ? "set" : "clear", has_cloexec(l) ? "set" : "clear");

	/* An unknown flag, with a connection waiting. */
	queue_client(ctx, l, &c);
	errno = 0;
	s = accept4(l, NULL, NULL, O_APPEND);
	int err = errno;
	if (s >= 0)
		close(s);
	ASSERT_TRUE(s == -1 && err == EINVAL, "accept4(O_APPEND) fails with EINVAL (got %s)",
		    s >= 0 ? "a socket" : sp_errno_name(err));
	close(c);
	close(l);
}

/* ---- 5. LISTEN-AUTOBIND ----------------------------------------------------- */

SP_TEST(listen_binds_unbound_socket, "LISTEN-AUTOBIND", SP_INET)
{
	sp_require_private_net(); /* it binds the wildcard address */
	int l = sp_socket(ctx, SOCK_STREAM);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	ASSERT_SYS(listen(l, 4));
	ASSERT_SYS(getsockname(l, (struct sockaddr *)&ss, &len));
	ASSERT_EQ(ctx->af, ss.ss_family);
	uint16_t port = sp_port(&ss);
	ASSERT_TRUE(port != 0, "getsockname() after listen() on an unbound socket: expected an "
		    "ephemeral port, observed port 0");
	sp_record_ephemeral("autobind_port", port);
	if (ctx->af == AF_INET6) {
		const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		char seen[INET6_ADDRSTRLEN] = "?";

		inet_ntop(AF_INET6, a6, seen, sizeof(seen));
		ASSERT_TRUE(IN6_IS_ADDR_UNSPECIFIED(a6), "the autobound address: expected ::, "
			    "observed %s", seen);
	} else
		ASSERT_EQ(INADDR_ANY, ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr));
	int err, c = connect_to(ctx, port, &err);
	ASSERT_TRUE(c >= 0, "a client connecting to loopback at the autobound port is accepted "
		    "(connect: %s)", sp_errno_name(err));
	int s = sp_tcp_accept(l);
	SP_OUT_EXACT(SP_IO_READ, c, "ab", 2);
	char b[2];
	SP_IN_EXACT(SP_IO_READ, s, b, 2);
	close(s);
	close(c);
	if (ctx->af == AF_INET6) {
		struct sp_ctx v4 = { .fam = SP_IPV4, .af = AF_INET, .fam_name = "ipv4" };
		int c4 = connect_to(&v4, port, &err);
		RECORD("ipv4_reaches_autobound_ipv6", "%s", c4 >= 0 ? "yes" : sp_errno_name(err));
		if (c4 >= 0)
			close(c4);
	}
	close(l);
}

/* ---- 6. LISTEN-DEFER-ACCEPT ------------------------------------------------ */

SP_TEST(defer_accept_waits_for_data, "LISTEN-DEFER-ACCEPT", SP_INET)
{
	int l = sp_socket(ctx, SOCK_STREAM), five = 5;

	sp_bind_loopback(ctx, l);
	errno = 0;
	if (setsockopt(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, &five, sizeof(five)) != 0) {
		if (errno == ENOPROTOOPT || errno == EINVAL || errno == EOPNOTSUPP)
			UNSUPPORTED("TCP_DEFER_ACCEPT (%s)", sp_errno_name(errno));
		FAIL("setsockopt(TCP_DEFER_ACCEPT, 5) returns 0 (got %s)", sp_errno_name(errno));
	}
	/* The value read back is a Record: a stack that cannot read it is no failure. */
	int back = -1;
	socklen_t bl = sizeof(back);
	errno = 0;
	if (getsockopt(l, IPPROTO_TCP, TCP_DEFER_ACCEPT, &back, &bl) == 0)
		RECORD("defer_accept_read_back_for_5", "%d", back);
	else
		RECORD("defer_accept_read_back_for_5", "%s", sp_errno_name(errno));
	ASSERT_SYS(listen(l, 4));
	int err, c = connect_to(ctx, sp_local_port(l), &err);
	ASSERT_TRUE(c >= 0, "the client's connect completes (got %s)", sp_errno_name(err));
	int ev = sp_poll(l, POLLIN, 300);
	if (ev & POLLIN)
		FAIL("TCP_DEFER_ACCEPT, the client connected and sending nothing: expected the "
		     "listener not readable for 300 ms, observed %s", sp_events_str(ev));
	sp_set_nonblock(l, 1);
	ASSERT_ERRNO(MUST_RETURN(accept(l, NULL, NULL), "a non-blocking accept() while the client "
				 "sends nothing"), EAGAIN);
	SP_OUT_EXACT(SP_IO_READ, c, "!", 1);
	ev = sp_poll(l, POLLIN, 1000);
	ASSERT_TRUE(ev & POLLIN, "once the client sends a byte the listener is readable within "
		    "1 s (%s)", sp_events_str(ev));
	int s = (int)ASSERT_SYS(accept(l, NULL, NULL));
	char b = 0;
	/* Already there: an O_NONBLOCK recv() gets it (not MSG_DONTWAIT,
	 * FLAG-DONTWAIT's). */
	sp_set_nonblock(s, 1);
	long m = sp_block_mark();
	errno = 0;
	ssize_t got = recv(s, &b, 1, 0);
	ASSERT_TRUE(got == 1, "the byte is already readable on the accepted connection: recv() "
		    "on it (O_NONBLOCK) returns 1 (got %zd, %s)", got, got < 0 ? sp_errno_name(errno) :
		    "-");
	ASSERT_NO_BLOCK(m, "recv() of the byte already there");
	ASSERT_EQ('!', b);
	close(s);
	close(c);
	close(l);
}

/* ---- 7-9. SO_REUSEPORT ------------------------------------------------------ */

/* A socket of `type` with SO_REUSEPORT `rp` (and SO_REUSEADDR `ra`) bound to
 * loopback:port; -1 with *err when bind() fails. */
static int bound_with(const struct sp_ctx *ctx, int type, int rp, int ra, uint16_t port, int *err)
{
	int fd = sp_socket(ctx, type);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, port);

	if (rp) {
		errno = 0;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &rp, sizeof(rp)) != 0) {
			if (errno == ENOPROTOOPT || errno == EOPNOTSUPP || errno == EINVAL)
				UNSUPPORTED("SO_REUSEPORT (%s)", sp_errno_name(errno));
			FAIL("setsockopt(SO_REUSEPORT, 1) returns 0 (got %s)", sp_errno_name(errno));
		}
	}
	if (ra)
		sp_set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	errno = 0;
	if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
		*err = errno;
		close(fd);
		return -1;
	}
	*err = 0;
	return fd;
}

#define ASSERT_BIND_IN_USE(fd, err, what) do {                                   \
		if ((fd) >= 0) close(fd);                                          \
		ASSERT_TRUE((fd) < 0 && (err) == EADDRINUSE, "%s: the bind fails with " \
			    "EADDRINUSE (got %s)", what, (fd) >= 0 ? "success" : sp_errno_name(err)); \
	} while (0)

enum { SPREAD = 32 };

SP_TEST(reuseport_spreads_tcp_connections, "REUSEPORT-TCP", SP_INET)
{
	int err, l[2];

	l[0] = bound_with(ctx, SOCK_STREAM, 1, 0, 0, &err);
	REQUIRE(l[0] >= 0, "a socket with SO_REUSEPORT binds loopback port 0 (%s)", sp_errno_name(err));
	uint16_t port = sp_local_port(l[0]);
	l[1] = bound_with(ctx, SOCK_STREAM, 1, 0, port, &err);
	ASSERT_TRUE(l[1] >= 0, "a second TCP socket with SO_REUSEPORT binds the same address and "
		    "port (got %s)", sp_errno_name(err));
	ASSERT_SYS(listen(l[0], SPREAD));
	ASSERT_SYS(listen(l[1], SPREAD));
	int third = bound_with(ctx, SOCK_STREAM, 0, 0, port, &err);
	ASSERT_BIND_IN_USE(third, err, "a third TCP socket without SO_REUSEPORT");

	int c[SPREAD], got[2] = { 0, 0 }, seen[SPREAD] = { 0 };
	uint16_t cport[SPREAD];
	for (int i = 0; i < SPREAD; i++) {
		c[i] = connect_to(ctx, port, &err);
		/* Connects completing before accept() (the first:
		 * TCP-HANDSHAKE-BEFORE-ACCEPT; up to the backlog of 32:
		 * CONN-BACKLOG-QUEUE) and the client's port being known
		 * (TCP-CONNECT-IMPLICIT-BIND) are mechanisms here. */
		if (c[i] < 0 && err != ECONNREFUSED)
			sp_needs_at(__FILE__, __LINE__, i ? "CONN-BACKLOG-QUEUE" : "TCP-HANDSHAKE-BEFORE-ACCEPT",
				    "a blocking connect() to a listener of backlog 32, nobody accepting yet",
				    "0", sp_errno_name(err), err);
		ASSERT_TRUE(c[i] >= 0, "connection %d of %d to the shared port completes (%s)", i + 1,
			    SPREAD, sp_errno_name(err));
		cport[i] = sp_local_port(c[i]);
		if (!cport[i])
			sp_needs_at(__FILE__, __LINE__, "TCP-CONNECT-IMPLICIT-BIND",
				    "getsockname() after connect()", "a non-zero port", "0", 0);
	}
	sp_set_nonblock(l[0], 1);
	sp_set_nonblock(l[1], 1);
	int total = 0;
	while (total < SPREAD) {
		struct pollfd p[2] = { { .fd = l[0], .events = POLLIN }, { .fd = l[1], .events = POLLIN } };
		if (poll(p, 2, sp_wait_ms()) <= 0)
			break;
		for (int k = 0; k < 2; k++) {
			if (!(p[k].revents & POLLIN))
				continue;
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			errno = 0;
			int s = accept(l[k], (struct sockaddr *)&from, &fl);
			if (s < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				accepted(s, "accept() on a listener that poll() reported readable");
			if (s < 0)
				continue;
			for (int i = 0; i < SPREAD; i++)
				if (cport[i] == sp_port(&from))
					seen[i]++;
			got[k]++;
			total++;
			close(s);
		}
	}
	RECORD("tcp_split", "%d/%d", got[0] < got[1] ? got[0] : got[1],
	       got[0] < got[1] ? got[1] : got[0]);
	for (int i = 0; i < SPREAD; i++)
		ASSERT_TRUE(seen[i] == 1, "connection %d of %d is accepted exactly once (%d times; "
			    "%d accepted in all)", i + 1, SPREAD, seen[i], total);
	ASSERT_TRUE(got[0] >= 1 && got[1] >= 1, "the connections are spread over both listeners "
		    "(%d and %d)", got[0], got[1]);
	for (int i = 0; i < SPREAD; i++)
		close(c[i]);

	/* One listener closed: the other takes the next connection. */
	close(l[0]);
	int n = connect_to(ctx, port, &err);
	ASSERT_TRUE(n >= 0, "after one listener is closed a new connection completes (%s)",
		    sp_errno_name(err));
	int s = sp_tcp_accept(l[1]); /* the remaining listener has it */
	close(s);
	close(n);
	close(l[1]);
}

/* 32 datagrams from 32 sockets (32 source ports) to the shared port; got[k]
 * counts what socket k received, seen[i] how often datagram i arrived. */
static void spread_datagrams(const struct sp_ctx *ctx, const int *u, int nu, uint16_t port,
			     int n, int *got, int *seen)
{
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, port);

	for (int i = 0; i < n; i++) {
		int s = sp_udp_bound(ctx);
		unsigned char b = (unsigned char)i;
		ASSERT_EQ(1, sendto(s, &b, 1, 0, (struct sockaddr *)&to, tl));
		close(s);
	}
	for (int k = 0; k < nu; k++)
		got[k] = 0;
	for (int i = 0; i < n; i++)
		seen[i] = 0;
	/* Each arrives: wait for input on either socket (bounded), read it. */
	for (int total = 0; total < n;) {
		struct pollfd p[2] = { { .fd = u[0], .events = POLLIN }, { .fd = u[1], .events = POLLIN } };
		if (poll(p, (nfds_t)nu, sp_wait_ms()) <= 0)
			break;
		for (int k = 0; k < nu; k++) {
			unsigned char b;
			while (recv(u[k], &b, 1, MSG_DONTWAIT) == 1) {
				got[k]++;
				total++;
				if (b < n)
					seen[b]++;
			}
		}
	}
}

SP_TEST(reuseport_spreads_udp_datagrams, "REUSEPORT-UDP", SP_INET)
{
	int err, u[2], got[2], seen[SPREAD];

	u[0] = bound_with(ctx, SOCK_DGRAM, 1, 0, 0, &err);
	REQUIRE(u[0] >= 0, "a UDP socket with SO_REUSEPORT binds loopback port 0 (%s)", sp_errno_name(err));
	uint16_t port = sp_local_port(u[0]);
	u[1] = bound_with(ctx, SOCK_DGRAM, 1, 0, port, &err);
	ASSERT_TRUE(u[1] >= 0, "a second UDP socket with SO_REUSEPORT binds the same address and "
		    "port (got %s)", sp_errno_name(err));
	int third = bound_with(ctx, SOCK_DGRAM, 0, 0, port, &err);
	ASSERT_BIND_IN_USE(third, err, "a third UDP socket without SO_REUSEPORT");

	spread_datagrams(ctx, u, 2, port, SPREAD, got, seen);
	RECORD("udp_split", "%d/%d", got[0] < got[1] ? got[0] : got[1],
	       got[0] < got[1] ? got[1] : got[0]);
	for (int i = 0; i < SPREAD; i++)
		ASSERT_TRUE(seen[i] == 1, "datagram %d of %d is delivered exactly once (%d times)",
			    i + 1, SPREAD, seen[i]);
	ASSERT_TRUE(got[0] >= 1 && got[1] >= 1, "the datagrams are spread over both sockets "
		    "(%d and %d)", got[0], got[1]);
	close(u[0]);
	close(u[1]);

	/* Record: SO_REUSEADDR on both, no SO_REUSEPORT. */
	u[0] = bound_with(ctx, SOCK_DGRAM, 0, 1, 0, &err);
	REQUIRE(u[0] >= 0, "a UDP socket with SO_REUSEADDR binds (%s)", sp_errno_name(err));
	port = sp_local_port(u[0]);
	u[1] = bound_with(ctx, SOCK_DGRAM, 0, 1, port, &err);
	if (u[1] < 0) {
		RECORD("udp_reuseaddr_sharing", "second bind: %s", sp_errno_name(err));
	} else {
		spread_datagrams(ctx, u, 2, port, 8, got, seen);
		RECORD("udp_reuseaddr_sharing", "second bind: 0; of 8 datagrams first got %d, last "
		       "bound got %d", got[0], got[1]);
		close(u[1]);
	}
	close(u[0]);
}

SP_TEST(reuseport_needed_on_every_socket, "REUSEPORT-BOTH-REQUIRED", SP_INET,
	.how = SP_NAMES("TCP", "UDP"))
{
	static const int types[2] = { SOCK_STREAM, SOCK_DGRAM };
	static const int pairs[3][2] = { { 0, 1 }, { 1, 0 }, { 0, 0 } };

	{
		int t = ctx->how;
		const char *tn = ctx->how_name;
		int fd = sp_socket(ctx, types[t]);
		ASSERT_TRUE(sp_get_int(fd, SOL_SOCKET, SO_REUSEPORT) == 0, "SO_REUSEPORT reads 0 on a "
			    "new %s socket", tn);
		int one = 1;
		errno = 0;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
			UNSUPPORTED("SO_REUSEPORT (%s)", sp_errno_name(errno));
		ASSERT_TRUE(sp_get_int(fd, SOL_SOCKET, SO_REUSEPORT) == 1, "SO_REUSEPORT reads 1 once "
			    "set on a %s socket", tn);
		close(fd);
		for (int p = 0; p < 3; p++) {
			int err, a = bound_with(ctx, types[t], pairs[p][0], 0, 0, &err);
			REQUIRE(a >= 0, "the first %s socket binds (%s)", tn, sp_errno_name(err));
			if (types[t] == SOCK_STREAM)
				ASSERT_SYS(listen(a, 4));
			int b = bound_with(ctx, types[t], pairs[p][1], 0, sp_local_port(a), &err);
			char what[96];
			snprintf(what, sizeof(what), "%s, first socket %s SO_REUSEPORT, second %s", tn,
				 pairs[p][0] ? "with" : "without", pairs[p][1] ? "with" : "without");
			ASSERT_BIND_IN_USE(b, err, what);
			close(a);
		}
	}
	if (!ctx->first)
		return;
	int x = (int)ASSERT_SYS(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)), one = 1;
	errno = 0;
	int r = setsockopt(x, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	RECORD("so_reuseport_on_af_unix", "%s", r == 0 ? "0" : sp_errno_name(errno));
	close(x);
}

SP_MAIN("listen")
