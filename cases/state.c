/*
 * state.c - connection state errors (catalogue part 3, "Connection state
 * errors"; connect(2), bind(2), shutdown(2), send(2), recv(2), accept(2),
 * listen(2)).
 *
 *  1. STATE-CONNECT-AGAIN        connect() on a connected TCP socket is
 *                                EISCONN (same address or another
 *                                listener) and the connection still works;
 *                                a pending non-blocking connect is
 *                                EINPROGRESS, then EALREADY while pending,
 *                                then 0 or EISCONN, then EISCONN; UDP
 *                                re-associates (0) and sends to the new peer.
 *  2. STATE-RECONNECT            after a blocking connect() is refused,
 *                                SO_ERROR reads 0; Linux: the same socket then
 *                                connects to a listener, which accepts it.
 *  3. STATE-BIND-TWICE           a bound TCP or UDP socket, a TCP socket bound
 *                                by connect(), an AF_UNIX socket bound to an
 *                                abstract name: bind() again is EINVAL, and
 *                                the first address stays.
 *  4. STATE-SHUTDOWN-UNCONNECTED shutdown() of a never-connected TCP socket
 *                                is ENOTCONN (SHUT_RDWR, SHUT_WR), of a
 *                                connected one 0; of an unconnected UDP
 *                                socket ENOTCONN.
 *  5. STATE-LISTENER-IO          recv() (every receive call, blocking or not)
 *                                on a listener or a never-connected TCP socket
 *                                is ENOTCONN; send() on them fails; accept()
 *                                on a non-listening TCP socket and listen() on
 *                                a connected one are EINVAL; listen() and
 *                                accept() on UDP are EOPNOTSUPP.
 *  6. STATE-UDP-DISCONNECT       connect(AF_UNSPEC) dissolves a UDP
 *                                association: other peers' datagrams arrive
 *                                again, getpeername() is ENOTCONN, send()
 *                                without an address EDESTADDRREQ, an explicit
 *                                bind port stays.
 *
 * Parameters: item 5's receive call (read, recv, recvfrom, recvmsg, readv)
 * and blocking mode; every call that must return is bounded and named.
 *
 * The pending connect of STATE-CONNECT-AGAIN is made with the catalogue's
 * full accept queue (listen(fd, 1), never accepted, filled with
 * non-blocking connects until one stays in progress for 150 ms); it
 * completes on the SYN retransmission after one accept(), about 1 s. That
 * part is an item of its own that runs both families at once, so the one
 * wait is spent once (the rest of the ID runs per family).
 *
 * Platform-defined (recorded): the first connect() after the asynchronous
 * completion; a reconnect after a refused non-blocking connect; SHUT_RD
 * on a connected UDP socket; send()'s errno on a listener and on a
 * never-connected socket and whether SIGPIPE is raised; the port a kernel
 * chose once the association is dissolved; connect(AF_UNSPEC) on TCP.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

static int connect_to(int fd, const struct sp_ctx *ctx, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, port);
	return connect(fd, (struct sockaddr *)&ss, len);
}

/* Bind fd to the family's loopback address, port 0: the set-up, so a stack
 * that refuses the address (no ::1) makes the item broken, not failed. */
static void bind_loopback(const struct sp_ctx *ctx, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, 0);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		BROKEN("the stack under test refuses the %s loopback address: bind() failed with %s",
		       ctx->fam_name, sp_errno_name(errno));
}

/* Data flows both ways on a connected pair. */
static void still_carries_data(int c, int s, const char *after)
{
	char buf[8];
	ASSERT_EQ(4, send(c, "ping", 4, MSG_NOSIGNAL));
	EXPECT_EVENTS(s, POLLIN, POLLIN, "data arrives after %s", after);
	ASSERT_EQ(4, recv(s, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("ping", buf, 4);
	ASSERT_EQ(4, send(s, "pong", 4, MSG_NOSIGNAL));
	EXPECT_EVENTS(c, POLLIN, POLLIN, "the reply arrives after %s", after);
	ASSERT_EQ(4, recv(c, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("pong", buf, 4);
}

/* ---- the full accept queue ------------------------------------------------- */

#define MAXFILL 16
struct full_queue { int l, n, fill[MAXFILL], pending; const struct sp_ctx *fam; };

/* listen(l, 1), never accepted, filled with non-blocking connects until
 * one stays in progress for 150 ms: that one is q->pending. */
static void fill_accept_queue(const struct sp_ctx *ctx, struct full_queue *q)
{
	q->l = sp_socket(ctx, SOCK_STREAM);
	bind_loopback(ctx, q->l);
	ASSERT_SYS(listen(q->l, 1));
	for (q->n = 0; q->n < MAXFILL; q->n++) {
		int fd = sp_socket(ctx, SOCK_STREAM);
		sp_set_nonblock(fd, 1);
		q->fill[q->n] = fd;
		errno = 0;
		int r = connect_to(fd, ctx, sp_local_port(q->l));
		if (r == 0)
			continue;
		if (errno != EINPROGRESS)
			BROKEN_NEEDS("CONN-NONBLOCK-CONNECT", "a non-blocking connect to the listener "
				     "starts (%s)", sp_errno_name(errno));
		if (!(sp_poll(fd, POLLOUT, 150) & (POLLOUT | POLLERR | POLLHUP))) {
			q->pending = fd;
			q->n++;
			return;
		}
	}
	BROKEN("a full accept queue: %d non-blocking connects to listen(fd, 1) all completed",
	       MAXFILL);
}

static void free_queue(struct full_queue *q)
{
	for (int i = 0; i < q->n; i++)
		close(q->fill[i]);
	close(q->l);
}

/* ---- 1. STATE-CONNECT-AGAIN ------------------------------------------------ */

SP_TEST(connect_again_fails_with_eisconn, "STATE-CONNECT-AGAIN", SP_INET)
{
	int c, s, l2 = sp_tcp_listener(ctx, 0);
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);

	/* A connected TCP socket: EISCONN, to the same peer or another. */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(getpeername(c, (struct sockaddr *)&peer, &pl));
	ASSERT_ERRNO(connect(c, (struct sockaddr *)&peer, pl), EISCONN);
	ASSERT_ERRNO(connect_to(c, ctx, sp_local_port(l2)), EISCONN);
	sp_set_nonblock(c, 1);
	ASSERT_ERRNO(connect(c, (struct sockaddr *)&peer, pl), EISCONN);
	sp_set_nonblock(c, 0);
	/* Nothing reached the other listener: a non-blocking accept() says
	 * EAGAIN (not poll(), whose listener readiness is MUX-LISTEN-READABLE's). */
	sp_set_nonblock(l2, 1);
	errno = 0;
	int stray = accept(l2, NULL, NULL);
	int serr = errno;
	sp_set_nonblock(l2, 0);
	ASSERT_TRUE(stray < 0 && (serr == EAGAIN || serr == EWOULDBLOCK),
		    "nothing reached the other listener: accept() gives EAGAIN (got %d, %s)", stray,
		    stray < 0 ? sp_errno_name(serr) : "a connection");
	still_carries_data(c, s, "connect() failed with EISCONN");
	close(c);
	close(s);
	close(l2);

	/* A pending non-blocking connect: EALREADY while pending (its
	 * completion is pending_connect_fails_with_ealready_until_complete). */
	struct full_queue q;
	fill_accept_queue(ctx, &q);
	for (int i = 0; i < 2; i++) {
		errno = 0;
		int r = connect_to(q.pending, ctx, sp_local_port(q.l));
		if (r != -1 || errno != EALREADY)
			FAIL("connect() #%d while the non-blocking connect is pending returned %d (%s), "
			     "expected EALREADY", i + 2, r, r < 0 ? sp_errno_name(errno) : "success");
	}
	free_queue(&q);

	/* UDP: a second connect() re-associates; send() goes to the new peer. */
	int u = sp_udp_bound(ctx), p1 = sp_udp_bound(ctx), p2 = sp_udp_bound(ctx);
	char buf[8];
	ASSERT_SYS(connect_to(u, ctx, sp_local_port(p1)));
	ASSERT_EQ(1, send(u, "1", 1, 0));
	EXPECT_EVENTS(p1, POLLIN, POLLIN, "UDP: the first peer receives");
	ASSERT_EQ(1, recv(p1, buf, sizeof(buf), 0));
	ASSERT_EQ(0, connect_to(u, ctx, sp_local_port(p2)));
	ASSERT_EQ(1, send(u, "2", 1, 0));
	if (!(sp_poll(p2, POLLIN, sp_wait_ms()) & POLLIN))
		FAIL("UDP: after connect() to a second peer, send() did not reach it within %d ms",
		     sp_wait_ms());
	ASSERT_EQ(1, recv(p2, buf, sizeof(buf), 0));
	ASSERT_EQ('2', buf[0]);
	ASSERT_ERRNO(recv(p1, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	pl = sizeof(peer);
	/* The name a connected UDP socket reports is UDP-CONNECTED's. */
	if (getpeername(u, (struct sockaddr *)&peer, &pl) != 0)
		BROKEN_NEEDS("UDP-CONNECTED", "getpeername() of a connected UDP socket fails: %s",
			     sp_errno_name(errno));
	ASSERT_EQ(sp_local_port(p2), sp_port(&peer));
	close(u);
	close(p1);
	close(p2);
}

/* STATE-CONNECT-AGAIN, the pending connect: EALREADY while pending, then 0
 * or EISCONN once complete, then EISCONN. Both families at once, so that
 * the one SYN retransmission (about 1 s) is waited for once. */
SP_TEST(pending_connect_fails_with_ealready_until_complete, "STATE-CONNECT-AGAIN", SP_NONE,
	.slow = 1)
{
	(void)ctx;
	static const struct sp_ctx fams[2] = {
		{ .fam = SP_IPV4, .af = AF_INET, .fam_name = "ipv4" },
		{ .fam = SP_IPV6, .af = AF_INET6, .fam_name = "ipv6" } };
	struct full_queue q[2];
	int n = 0, a[2];

	for (int f = 0; f < 2; f++) {
		int probe = socket(fams[f].af, SOCK_STREAM, 0);
		if (probe < 0) {
			RECORD("pending_connect_family", "%s: no sockets (%s)", fams[f].fam_name,
			       sp_errno_name(errno));
			continue;
		}
		close(probe);
		fill_accept_queue(&fams[f], &q[n]);
		q[n].fam = &fams[f];
		for (int i = 0; i < 2; i++) {
			errno = 0;
			int r = connect_to(q[n].pending, &fams[f], sp_local_port(q[n].l));
			if (r != -1 || errno != EALREADY)
				FAIL("%s: connect() #%d while the non-blocking connect is pending returned "
				     "%d (%s), expected EALREADY", fams[f].fam_name, i + 2, r,
				     r < 0 ? sp_errno_name(errno) : "success");
		}
		n++;
	}
	REQUIRE(n > 0, "TCP sockets of either family");
	for (int i = 0; i < n; i++)
		a[i] = (int)ASSERT_SYS(accept(q[i].l, NULL, NULL));
	for (int i = 0; i < n; i++) {
		const char *fam = q[i].fam->fam_name;
		int ev = sp_poll(q[i].pending, POLLOUT, 5000);
		if (!(ev & POLLOUT))
			BROKEN_NEEDS("CONN-BACKLOG-QUEUE", "%s: the pending connect completes within "
				     "5 s of one accept() (revents 0x%x)", fam, ev);
		int err = -1;
		socklen_t el = sizeof(err);
		ASSERT_SYS(getsockopt(q[i].pending, SOL_SOCKET, SO_ERROR, &err, &el));
		if (err != 0)
			BROKEN_NEEDS("CONN-BACKLOG-QUEUE", "%s: the pending connect succeeds (SO_ERROR "
				     "%s)", fam, sp_errno_name(err));
		errno = 0;
		int r = connect_to(q[i].pending, q[i].fam, sp_local_port(q[i].l));
		int cerr = errno;
		/* The completed connection waits unaccepted: a stack whose
		 * connect() reports it only after accept() (a deviation of
		 * TCP-HANDSHAKE-BEFORE-ACCEPT) is told apart first. */
		if (r != 0 && cerr != EISCONN) {
			sp_need_handshake_before_accept(q[i].fam);
			FAIL("%s: connect() once the pending connect completed returned %d (%s), "
			     "expected 0 or EISCONN", fam, r, sp_errno_name(cerr));
		}
		RECORD(q[i].fam->af == AF_INET6 ? "connect_after_completion_ipv6" :
		       "connect_after_completion_ipv4", "%s", r == 0 ? "0" : "EISCONN");
		errno = 0;
		r = connect_to(q[i].pending, q[i].fam, sp_local_port(q[i].l));
		if (r != -1 || errno != EISCONN)
			FAIL("%s: the next connect() on the completed socket returned %d (%s), "
			     "expected EISCONN", fam, r, r < 0 ? sp_errno_name(errno) : "success");
		close(a[i]);
		free_queue(&q[i]);
	}
}

/* ---- 2. STATE-RECONNECT ---------------------------------------------------- */

/* A port nobody listens on: a socket bound to it, not listening. */
static int closed_port(const struct sp_ctx *ctx, uint16_t *port)
{
	int fd = sp_socket(ctx, SOCK_STREAM);
	bind_loopback(ctx, fd);
	*port = sp_local_port(fd);
	return fd;
}

SP_TEST(refused_connect_clears_so_error_and_socket_reconnects, "STATE-RECONNECT", SP_INET)
{
	uint16_t dead;
	int hold = closed_port(ctx, &dead), l = sp_tcp_listener(ctx, 0);
	int fd = sp_socket(ctx, SOCK_STREAM), err = -1;
	socklen_t el = sizeof(err);

	errno = 0;
	int r = BOUNDED(connect_to(fd, ctx, dead));
	int e = errno;
	if (r != -1 || e != ECONNREFUSED)
		BROKEN_NEEDS("CONN-REFUSED", "a blocking connect to a closed port is refused (got %d, "
			     "%s)", r, sp_bound_expired() ? "still blocked" : sp_errno_name(e));
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el));
	if (err != 0)
		FAIL("SO_ERROR after connect() returned ECONNREFUSED reads %s, expected 0 (connect "
		     "returned the error)", sp_errno_name(err));

	/* Linux: the same socket connects to a listener. */
	errno = 0;
	r = MUST_RETURN(connect_to(fd, ctx, sp_local_port(l)),
			"connect() to a listener after a refused connect");
	e = errno;
	if (r < 0 && (e == EINVAL || e == EISCONN || e == ECONNABORTED || e == EBADF))
		UNSUPPORTED("a second connect() on a socket whose connect was refused (%s)",
			    sp_errno_name(e));
	if (r != 0 && e == ETIMEDOUT)
		BROKEN_NEEDS("TCP-HANDSHAKE-BEFORE-ACCEPT", "connect() to a listener after a refused "
			     "connect did not complete before accept() (ETIMEDOUT)");
	if (r != 0)
		FAIL("connect() to a listener after a refused connect returned %d (%s), expected 0",
		     r, sp_errno_name(e));
	int a = sp_tcp_accept(l); /* the listener accepts it */
	/* Record: the accepted peer's port is the reconnected socket's (the
	 * names agreeing is CONN-NAMES-AGREE's Must, not this ID's). */
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	ASSERT_SYS(getpeername(a, (struct sockaddr *)&from, &fl));
	RECORD("reconnected_port_named_by_peer", "%s",
	       sp_local_port(fd) == sp_port(&from) ? "the same" : "another");
	still_carries_data(fd, a, "a reconnect");
	close(a);
	close(fd);

	/* Record: after a refused non-blocking connect. */
	fd = sp_socket(ctx, SOCK_STREAM);
	sp_set_nonblock(fd, 1);
	errno = 0;
	r = connect_to(fd, ctx, dead);
	if (r < 0 && errno == EINPROGRESS)
		sp_poll(fd, POLLOUT, sp_wait_ms());
	el = sizeof(err);
	err = -1;
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	errno = 0;
	r = connect_to(fd, ctx, sp_local_port(l));
	e = errno;
	int ev = sp_poll(fd, POLLOUT, 50);
	int err2 = -1;
	el = sizeof(err2);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err2, &el);
	RECORD("reconnect_after_nonblocking_refusal", "SO_ERROR %s, then connect %s, revents%s%s%s, "
	       "SO_ERROR %s", err ? sp_errno_name(err) : "0", r == 0 ? "0" : sp_errno_name(e),
	       ev & POLLOUT ? " POLLOUT" : "", ev & POLLHUP ? " POLLHUP" : "",
	       ev & POLLERR ? " POLLERR" : "", err2 ? sp_errno_name(err2) : "0");
	close(fd);
	close(l);
	close(hold);
}

/* ---- 3. STATE-BIND-TWICE --------------------------------------------------- */

static void bind_again_is_einval(const struct sp_ctx *ctx, int fd, const char *what)
{
	struct sockaddr_storage was, now;
	socklen_t wl = sizeof(was), nl = sizeof(now);
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)&was, &wl));
	errno = 0;
	int r = bind(fd, (struct sockaddr *)&was, wl);
	if (r != -1 || errno != EINVAL)
		FAIL("%s: bind() to its own address again returned %d (%s), expected EINVAL", what,
		     r, r < 0 ? sp_errno_name(errno) : "success");
	struct sockaddr_storage other;
	socklen_t ol = sp_loopback(ctx, &other, 0);
	errno = 0;
	r = bind(fd, (struct sockaddr *)&other, ol);
	if (r != -1 || errno != EINVAL)
		FAIL("%s: bind() to port 0 again returned %d (%s), expected EINVAL", what, r,
		     r < 0 ? sp_errno_name(errno) : "success");
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)&now, &nl));
	ASSERT_EQ(sp_port(&was), sp_port(&now));
}

SP_TEST(bind_of_a_bound_socket_fails_with_einval, "STATE-BIND-TWICE", SP_INET)
{
	int t = sp_socket(ctx, SOCK_STREAM), u = sp_udp_bound(ctx);

	bind_loopback(ctx, t);
	bind_again_is_einval(ctx, t, "bound TCP socket");
	bind_again_is_einval(ctx, u, "bound UDP socket");
	close(t);
	close(u);

	int l = sp_tcp_listener(ctx, 0), c = sp_tcp_connect(ctx, l);
	bind_again_is_einval(ctx, c, "TCP socket bound by connect()");
	close(c);
	close(l);

	/* AF_UNIX: a second abstract name. */
	struct sockaddr_un a, b, got;
	socklen_t alen, blen, glen = sizeof(got);
	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.sun_family = b.sun_family = AF_UNIX;
	int na = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "sp-bind-twice-a-%d", getpid());
	int nb = snprintf(b.sun_path + 1, sizeof(b.sun_path) - 1, "sp-bind-twice-b-%d", getpid());
	alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + na);
	blen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + nb);
	int x = (int)ASSERT_SYS(socket(AF_UNIX, SOCK_STREAM, 0));
	if (bind(x, (struct sockaddr *)&a, alen) != 0)
		BROKEN_NEEDS("UNIX-ABSTRACT", "an abstract AF_UNIX name binds (%s)",
			     sp_errno_name(errno));
	errno = 0;
	int r = bind(x, (struct sockaddr *)&b, blen);
	if (r != -1 || errno != EINVAL)
		FAIL("AF_UNIX: bind() to a second abstract name returned %d (%s), expected EINVAL",
		     r, r < 0 ? sp_errno_name(errno) : "success");
	ASSERT_SYS(getsockname(x, (struct sockaddr *)&got, &glen));
	ASSERT_EQ(alen, glen);
	ASSERT_MEM_EQ(a.sun_path, got.sun_path, (size_t)na + 1);
	close(x);
}

/* ---- 4. STATE-SHUTDOWN-UNCONNECTED ------------------------------------------ */

SP_TEST(shutdown_of_unconnected_socket_fails_with_enotconn, "STATE-SHUTDOWN-UNCONNECTED", SP_INET)
{
	int t = sp_socket(ctx, SOCK_STREAM), u = sp_udp_bound(ctx), v = sp_socket(ctx, SOCK_DGRAM);
	static const int hows[] = { SHUT_RDWR, SHUT_WR, SHUT_RD };
	static const char *const how_name[] = { "SHUT_RDWR", "SHUT_WR", "SHUT_RD" };

	for (int i = 0; i < 2; i++) {
		errno = 0;
		int r = shutdown(t, hows[i]);
		if (r != -1 || errno != ENOTCONN)
			FAIL("shutdown(%s) of a never-connected TCP socket returned %d (%s), expected "
			     "ENOTCONN", how_name[i], r, r < 0 ? sp_errno_name(errno) : "success");
	}
	for (int i = 0; i < 3; i++) {
		for (int k = 0; k < 2; k++) {
			errno = 0;
			int r = shutdown(k ? v : u, hows[i]);
			if (r != -1 || errno != ENOTCONN)
				FAIL("shutdown(%s) of an unconnected %s UDP socket returned %d (%s), "
				     "expected ENOTCONN", how_name[i], k ? "unbound" : "bound", r,
				     r < 0 ? sp_errno_name(errno) : "success");
		}
	}
	close(t);

	/* Connected: 0. That it takes effect (the peer reads EOF) is
	 * CLOSE-HALF-WR-EOF's Must, seen here as a mechanism. */
	int c, s;
	char buf[4];
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(0, shutdown(c, SHUT_WR));
	SP_PEER_FIN(s, "CLOSE-HALF-WR-EOF");
	ASSERT_EQ(0, shutdown(s, SHUT_RDWR));
	close(c);
	close(s);

	/* Record: SHUT_RD on a connected UDP socket. */
	int p = sp_udp_bound(ctx);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(p));
	ASSERT_SYS(connect(u, (struct sockaddr *)&ss, len));
	errno = 0;
	int r = shutdown(u, SHUT_RD);
	int e = errno;
	errno = 0;
	ssize_t n = recv(u, buf, sizeof(buf), MSG_DONTWAIT);
	RECORD("udp_connected_shut_rd", "%s; then recv %s", r == 0 ? "0" : sp_errno_name(e),
	       n == 0 ? "0" : n < 0 ? sp_errno_name(errno) : "data");
	close(p);
	close(u);
	close(v);
}

/* ---- 5. STATE-LISTENER-IO ---------------------------------------------------- */

/* The variant's receive call, blocking or not, fails at once with ENOTCONN. */
static void receive_is_enotconn(const struct sp_ctx *ctx, int fd, const char *what)
{
	const char *in = sp_io_in_name(ctx->read);
	char buf[8];
	sp_set_nonblock(fd, ctx->nonblock);
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(ctx->read, fd, buf, sizeof(buf), 0), "%s() on %s", in,
				what);
	int e = errno;
	if (r != -1 || e != ENOTCONN)
		FAIL("%s() on %s returned %zd (%s), expected ENOTCONN", in, what, r,
		     r < 0 ? sp_errno_name(e) : r == 0 ? "EOF" : "data");
	sp_set_nonblock(fd, 0);
}

/* send() fails (errno recorded); with SIGPIPE blocked, was it raised? */
static void send_fails(int fd, const char *what, const char *key)
{
	sigset_t pipe, old, pend;
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	ASSERT_SYS(sigprocmask(SIG_BLOCK, &pipe, &old));
	errno = 0;
	ssize_t r = send(fd, "x", 1, 0);
	int e = errno;
	sigpending(&pend);
	int raised = sigismember(&pend, SIGPIPE);
	if (raised) {
		int sig;
		sigwait(&pipe, &sig);
	}
	ASSERT_SYS(sigprocmask(SIG_SETMASK, &old, NULL));
	if (r != -1)
		FAIL("send() on %s returned %zd, expected it to fail", what, r);
	errno = 0;
	ASSERT_TRUE(send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT) == -1, "send(MSG_DONTWAIT) on %s "
		    "fails", what);
	RECORD(key, "%s%s", sp_errno_name(e), raised ? ", SIGPIPE raised" : ", no SIGPIPE");
}

/* 5. Receive, send, accept and listen need the right kind of socket. */
SP_TEST(calls_needing_a_connection_fail_without_one, "STATE-LISTENER-IO", SP_INET,
	.read = SP_EVERY_READ, .mode = SP_BOTH_MODES)
{
	int l = sp_tcp_listener(ctx, 0), fresh = sp_socket(ctx, SOCK_STREAM);

	receive_is_enotconn(ctx, l, "a listening socket");
	receive_is_enotconn(ctx, fresh, "a never-connected TCP socket");
	if (!ctx->first) {
		close(fresh);
		close(l);
		return;
	}
	send_fails(l, "a listening socket", "send_on_listener");
	send_fails(fresh, "a never-connected TCP socket", "send_on_unconnected");

	/* accept() on a TCP socket that is not listening: EINVAL, blocking or not. */
	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(fresh, nb);
		errno = 0;
		int r = MUST_RETURN(accept(fresh, NULL, NULL), "accept() on a %snon-listening TCP "
				    "socket", nb ? "non-blocking " : "");
		int e = errno;
		if (r != -1 || e != EINVAL)
			FAIL("accept() on a %snon-listening TCP socket returned %d (%s), expected "
			     "EINVAL", nb ? "non-blocking " : "", r, sp_errno_name(e));
	}
	/* listen() on a connected socket: EINVAL; the connection is unchanged. */
	int c = sp_tcp_connect(ctx, l);
	int s = sp_tcp_accept(l);
	ASSERT_ERRNO(listen(c, 4), EINVAL);
	ASSERT_ERRNO(listen(s, 4), EINVAL);
	/* That the socket is still a connection is the data it carries (no
	 * Must of this ID names SO_ACCEPTCONN, LISTEN-ACCEPTCONN's: recorded). */
	int acc = -1;
	socklen_t al = sizeof(acc);
	errno = 0;
	int ar = getsockopt(c, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al);
	RECORD("acceptconn_after_failed_listen", "%s", ar == 0 ? (acc ? "1" : "0") :
	       sp_errno_name(errno));
	still_carries_data(c, s, "listen() failed on it");
	close(c);
	close(s);

	/* UDP: neither listen() nor accept(). */
	int u = sp_udp_bound(ctx);
	ASSERT_ERRNO(listen(u, 4), EOPNOTSUPP);
	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(u, nb);
		errno = 0;
		int r = MUST_RETURN(accept(u, NULL, NULL), "accept() on a %sUDP socket",
				    nb ? "non-blocking " : "");
		int e = errno;
		if (r != -1 || e != EOPNOTSUPP)
			FAIL("accept() on a %sUDP socket returned %d (%s), expected EOPNOTSUPP",
			     nb ? "non-blocking " : "", r, sp_errno_name(e));
	}
	close(u);
	close(fresh);
	close(l);
}

/* ---- 6. STATE-UDP-DISCONNECT ------------------------------------------------- */

static int unspec_connect(int fd, int af)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNSPEC;
	return connect(fd, (struct sockaddr *)&ss,
		       af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
}

/* A UDP socket bound to a port given explicitly (non-zero). */
static int udp_bound_explicitly(const struct sp_ctx *ctx, uint16_t *port)
{
	for (int tries = 0; tries < 20; tries++) {
		int probe = sp_udp_bound(ctx);
		uint16_t p = sp_local_port(probe);
		close(probe);
		int fd = sp_socket(ctx, SOCK_DGRAM);
		struct sockaddr_storage ss;
		socklen_t len = sp_loopback(ctx, &ss, p);
		if (bind(fd, (struct sockaddr *)&ss, len) == 0) {
			*port = p;
			return fd;
		}
		close(fd);
	}
	BROKEN("a UDP socket bound to an explicit port (20 ports were taken at once)");
}

SP_TEST(unspec_connect_dissolves_udp_association, "STATE-UDP-DISCONNECT", SP_INET)
{
	uint16_t port;
	int u = udp_bound_explicitly(ctx, &port), p1 = sp_udp_bound(ctx), p2 = sp_udp_bound(ctx);
	struct sockaddr_storage to, peer;
	socklen_t tl = sp_loopback(ctx, &to, port), pl = sizeof(peer);
	char buf[8];

	ASSERT_SYS(connect_to(u, ctx, sp_local_port(p1)));
	/* Connected to p1: p2's datagram is not delivered, p1's is. */
	ASSERT_EQ(2, sendto(p2, "p2", 2, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(2, sendto(p1, "p1", 2, 0, (struct sockaddr *)&to, tl));
	EXPECT_EVENTS(u, POLLIN, POLLIN, "the connected peer's datagram "
		    "arrives (UDP-CONNECTED)");
	ssize_t r = recv(u, buf, sizeof(buf), 0);
	if (r != 2 || memcmp(buf, "p1", 2))
		BROKEN_NEEDS("UDP-CONNECTED", "a connected UDP socket receives only its peer's "
			     "datagrams (got %zd bytes \"%.*s\")", r, r > 0 ? (int)r : 0, buf);
	if (sp_poll(u, POLLIN, 100) != 0)
		BROKEN_NEEDS("UDP-CONNECTED", "a connected UDP socket receives nothing from another "
			     "peer (100 ms)");

	/* Dissolved. */
	errno = 0;
	int c = unspec_connect(u, ctx->af);
	if (c != 0)
		FAIL("connect(AF_UNSPEC) on a connected UDP socket returned %d (%s), expected 0", c,
		     sp_errno_name(errno));
	ASSERT_ERRNO(getpeername(u, (struct sockaddr *)&peer, &pl), ENOTCONN);
	ASSERT_ERRNO(send(u, "x", 1, 0), EDESTADDRREQ);
	ASSERT_ERRNO(write(u, "x", 1), EDESTADDRREQ);
	ASSERT_EQ(port, sp_local_port(u));
	ASSERT_EQ(2, sendto(p2, "P2", 2, 0, (struct sockaddr *)&to, tl));
	if (!(sp_poll(u, POLLIN, sp_wait_ms()) & POLLIN))
		FAIL("after connect(AF_UNSPEC), a datagram from another peer was not delivered "
		     "within %d ms", sp_wait_ms());
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	r = recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
	ASSERT_EQ(2, r);
	ASSERT_MEM_EQ("P2", buf, 2);
	ASSERT_EQ(sp_local_port(p2), sp_port(&from));
	/* And it can still send with an address. */
	struct sockaddr_storage p1a;
	socklen_t p1l = sp_loopback(ctx, &p1a, sp_local_port(p1));
	ASSERT_EQ(1, sendto(u, "z", 1, 0, (struct sockaddr *)&p1a, p1l));
	EXPECT_EVENTS(p1, POLLIN, POLLIN, "sendto() after the disconnect");
	close(u);

	/* Records: a port the kernel chose; AF_UNSPEC on TCP. */
	int k = sp_socket(ctx, SOCK_DGRAM);
	ASSERT_SYS(connect_to(k, ctx, sp_local_port(p1)));
	unspec_connect(k, ctx->af);
	RECORD("implicit_port_after_disconnect", "%s", sp_local_port(k) ? "kept" : "released (0)");
	close(k);
	k = sp_udp_bound(ctx);
	ASSERT_SYS(connect_to(k, ctx, sp_local_port(p1)));
	unspec_connect(k, ctx->af);
	RECORD("port0_bind_after_disconnect", "%s", sp_local_port(k) ? "kept" : "released (0)");
	close(k);
	int tc, ts;
	sp_tcp_pair(ctx, &tc, &ts);
	errno = 0;
	c = unspec_connect(tc, ctx->af);
	int e = errno;
	int ev = sp_poll(ts, POLLIN, 200);
	errno = 0;
	r = recv(ts, buf, sizeof(buf), MSG_DONTWAIT);
	RECORD("tcp_unspec_connect", "%s; peer revents%s%s%s, recv %s", c == 0 ? "0" : sp_errno_name(e),
	       ev & POLLIN ? " POLLIN" : "", ev & POLLERR ? " POLLERR" : "",
	       ev & POLLHUP ? " POLLHUP" : "", r < 0 ? sp_errno_name(errno) : r ? "data" : "EOF");
	close(tc);
	close(ts);
	close(p1);
	close(p2);
}

SP_MAIN("state")
