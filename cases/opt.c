/*
 * opt.c - socket options (textbook ch. 9; catalogue part 2, "Socket
 * options").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. OPT-SO-TYPE              SO_TYPE is SOCK_STREAM for TCP (new, listening,
 *                              connected and accepted sockets) and SOCK_DGRAM
 *                              for UDP.
 *  2. OPT-BIND-IN-USE          bind() to a port a listener holds fails with
 *                              EADDRINUSE, with or without SO_REUSEADDR on
 *                              either socket.
 *  3. OPT-REUSEADDR-TIME-WAIT  after the server closes first, its port is in
 *                              TIME_WAIT: a new bind fails without
 *                              SO_REUSEADDR and succeeds (and serves) with it.
 *  4. OPT-TCP-NODELAY          TCP_NODELAY reads 0, 1, 0 as set; Nagle holds
 *                              small writes while a segment is unacknowledged,
 *                              TCP_NODELAY sends each at once.
 *  5. OPT-KEEPALIVE            SO_KEEPALIVE reads 0 by default and 1 once set.
 *  6. OPT-LINGER-ZERO-RST      close() with SO_LINGER {1,0} resets: the peer
 *                              reads ECONNRESET (never EOF), and the closer's
 *                              port is free at once (no TIME_WAIT).
 *  7. OPT-SO-ERROR-CLEARS      SO_ERROR reports a pending error once: a UDP
 *                              ECONNREFUSED (the receives around it through
 *                              every datagram read call), a refused
 *                              non-blocking connect.
 *  8. OPT-RCVLOWAT             SO_RCVLOWAT reads 1, then N; every wait call
 *                              (select, pselect, poll, ppoll, the epoll
 *                              calls, io_uring POLL_ADD) reports readable
 *                              only with N bytes queued; a blocking read
 *                              (every read call) then returns them at once.
 *
 * Wire (where the item has its own network namespace; else skipped with
 * the reason): SO_LINGER {1,0} sends RST and no FIN; with Nagle the writes
 * behind an unacknowledged segment leave as one segment, with TCP_NODELAY
 * each write is its own segment; the server's FIN comes first and the
 * rebound port answers a new SYN while the old connection is in TIME_WAIT.
 *
 * The Nagle and delayed-ACK set-up (the receiver in TCP_QUICKACK=0 mode so
 * its ACK of the first byte waits) is extra evidence beyond the Must; where
 * it cannot be made (no TCP_QUICKACK, no SIOCOUTQ, the ACK came early three
 * times) that part is recorded as not shown and the option checks decide.
 *
 * SO_RCVLOWAT: a stack that rejects the option reports the Linux point as
 * unsupported; a stack that accepts it (reads it back) but ignores it in
 * poll/select fails.
 *
 * Platform-defined (recorded): setsockopt(SO_TYPE) (Linux: ENOPROTOOPT);
 * SO_REUSEADDR on the new socket alone against a TIME_WAIT without it
 * (Linux: EADDRINUSE); keepalive timers (Linux: 7200, 75, 9); data readable
 * after a reset and the peer's write errno (Linux: yes, EPIPE); a read
 * started below SO_RCVLOWAT and a non-blocking read below it.
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif
#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B
#endif

/* bind fd to the test family's loopback address at port; 0 or errno. */
static int bind_port(const struct sp_ctx *ctx, int fd, uint16_t port)
{
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, port);

	errno = 0;
	return bind(fd, (struct sockaddr *)&ss, len) == 0 ? 0 : errno;
}

/* Is some connection on local port `port` in TIME_WAIT? (/proc/net/tcp*);
 * -1 when /proc cannot tell. */
/* Is a socket with local port `port` (and remote port `rport`, when not
 * 0) in TIME_WAIT? 1 yes, 0 no, -1 no /proc/net/tcp to tell (none, or one
 * that lists no socket at all: gVisor's shows none of the host's). */
static int time_wait_of(const struct sp_ctx *ctx, uint16_t port, uint16_t rport)
{
	FILE *f = fopen(ctx->af == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp", "r");
	char line[512];
	int found = 0, rows = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char local[128], remote[128];
		unsigned st;
		if (sscanf(line, " %*d: %127s %127s %x", local, remote, &st) != 3)
			continue;
		rows++;
		char *colon = strrchr(local, ':'), *rcolon = strrchr(remote, ':');
		if (colon && strtoul(colon + 1, NULL, 16) == port && st == 6 &&
		    (!rport || (rcolon && strtoul(rcolon + 1, NULL, 16) == rport)))
			found = 1;
	}
	fclose(f);
	return rows ? found : -1;
}

static int time_wait_on(const struct sp_ctx *ctx, uint16_t port)
{
	return time_wait_of(ctx, port, 0);
}

/* 1. SO_TYPE tells a stream socket from a datagram socket. */
SP_TEST(so_type_reports_the_socket_type, "OPT-SO-TYPE", SP_INET)
{
	int c, s, l = sp_tcp_listener(ctx, 0);
	int t = sp_socket(ctx, SOCK_STREAM), u = sp_socket(ctx, SOCK_DGRAM);

	ASSERT_EQ(SOCK_STREAM, sp_get_int(t, SOL_SOCKET, SO_TYPE));
	ASSERT_EQ(SOCK_DGRAM, sp_get_int(u, SOL_SOCKET, SO_TYPE));
	ASSERT_EQ(SOCK_STREAM, sp_get_int(l, SOL_SOCKET, SO_TYPE));
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(SOCK_STREAM, sp_get_int(c, SOL_SOCKET, SO_TYPE));
	ASSERT_EQ(SOCK_STREAM, sp_get_int(s, SOL_SOCKET, SO_TYPE));
	int b = sp_udp_bound(ctx);
	ASSERT_EQ(SOCK_DGRAM, sp_get_int(b, SOL_SOCKET, SO_TYPE));

	int v = SOCK_DGRAM;
	errno = 0;
	int r = setsockopt(t, SOL_SOCKET, SO_TYPE, &v, sizeof(v));
	RECORD("setsockopt_so_type", "%d (%s)", r, r ? sp_errno_name(errno) : "accepted");
	ASSERT_EQ(SOCK_STREAM, sp_get_int(t, SOL_SOCKET, SO_TYPE)); /* read-only either way */
}

/* 2. A port a listener holds cannot be bound again, SO_REUSEADDR or not. */
SP_TEST(bind_to_listening_port_fails_with_eaddrinuse, "OPT-BIND-IN-USE", SP_INET)
{
	for (int lreuse = 0; lreuse <= 1; lreuse++) {
		int l = sp_socket(ctx, SOCK_STREAM);
		if (lreuse)
			sp_set_int(l, SOL_SOCKET, SO_REUSEADDR, 1);
		ASSERT_EQ(0, bind_port(ctx, l, 0));
		ASSERT_SYS(listen(l, 4));
		uint16_t port = sp_local_port(l);
		for (int nreuse = 0; nreuse <= 1; nreuse++) {
			int n = sp_socket(ctx, SOCK_STREAM);
			if (nreuse)
				sp_set_int(n, SOL_SOCKET, SO_REUSEADDR, 1);
			int e = bind_port(ctx, n, port);
			ASSERT_TRUE(e == EADDRINUSE,
				    "bind to a listening port fails with EADDRINUSE "
				    "(listener SO_REUSEADDR=%d, new socket SO_REUSEADDR=%d): got %s",
				    lreuse, nreuse, e ? sp_errno_name(e) : "success");
			ASSERT_EQ(0, sp_local_port(n)); /* and stays unbound */
			close(n);
		}
		/* The listener is unharmed: it still accepts. */
		int c = sp_tcp_connect(ctx, l);
		close(sp_tcp_accept(l));
		close(c);
		close(l);
	}
}

/* Run one connection on a server port, the server closing first, so the
 * port ends in TIME_WAIT. Returns the server port. */
/* Has the socket taken the last FIN? Linux reads CLOSE on the fd (the
 * connection lives on in a TIME_WAIT mini-socket), other stacks
 * TIME_WAIT on the fd itself; which is TCP-TEARDOWN-STATES' business. */
static int took_last_fin(void *p)
{
	int st = sp_tcp_state(*(int *)p);
	return st == TCP_CLOSE || st == TCP_TIME_WAIT;
}

/* Set by server_closes_first() when nothing could show the port in
 * TIME_WAIT (the fd read CLOSE and /proc/net/tcp cannot tell): the item
 * then takes a plain bind's EADDRINUSE as the evidence. */
static int time_wait_unseen;

static uint16_t server_closes_first(const struct sp_ctx *ctx, int reuse, struct sp_capture *cap)
{
	int l = sp_socket(ctx, SOCK_STREAM);
	if (reuse)
		sp_set_int(l, SOL_SOCKET, SO_REUSEADDR, 1);
	ASSERT_EQ(0, bind_port(ctx, l, 0));
	ASSERT_SYS(listen(l, 4));
	uint16_t port = sp_local_port(l);
	if (cap) {
		sp_capture_name(cap, port, "S");
		sp_capture_name(cap, 0, "C");
	}
	int c = sp_tcp_connect(ctx, l);
	int s = sp_tcp_accept(l);
	close(l);
	ASSERT_SYS(shutdown(s, SHUT_WR));         /* the server's FIN first */
	SP_PEER_FIN(c, "CLOSE-HALF-WR-EOF");      /* the client sees it */
	ASSERT_SYS(close(c));                     /* the client's FIN */
	/* The server end has taken the last FIN: the connection lives on as
	 * TIME_WAIT (the premise; the state the fd reads is recorded). */
	int took = sp_wait_until(took_last_fin, &s, sp_wait_ms());
	int st = sp_tcp_state(s);
	RECORD("closer_socket_state", "%s", sp_tcp_state_name(st));
	REQUIRE(took, "the server socket to take the client's FIN (TCP_INFO state %s after %d ms, "
		"expected CLOSE or TIME_WAIT)", sp_tcp_state_name(st), sp_wait_ms());
	ASSERT_SYS(close(s));
	/* close() released the socket (one that keeps it open holds the
	 * port: CLOSE-FULL-LOSES-REPLY's deviation, a mechanism here). */
	errno = 0;
	if (fcntl(s, F_GETFD) != -1 || errno != EBADF)
		sp_needs_at(__FILE__, __LINE__, "CLOSE-FULL-LOSES-REPLY", "close() of the server socket",
			    "the descriptor released (EBADF)", "still open", 0);
	/* The premise: the port is in TIME_WAIT, as the fd said, or as
	 * /proc/net/tcp shows (read once per item: it walks every bucket). */
	time_wait_unseen = 0;
	if (cap && st != TCP_TIME_WAIT) {
		int tw = time_wait_on(ctx, port);
		REQUIRE(tw != 0, "the server's port to be in TIME_WAIT (the socket read %s, "
			"/proc/net/tcp shows no TIME_WAIT entry)", sp_tcp_state_name(st));
		time_wait_unseen = tw < 0;
	}
	return port;
}

/* 3. SO_REUSEADDR lets a restarted server bind its port during TIME_WAIT. */
SP_TEST(reuseaddr_rebinds_a_port_in_time_wait, "OPT-REUSEADDR-TIME-WAIT", SP_INET)
{
	struct sp_capture cap;

	sp_capture_start(&cap);
	uint16_t port = server_closes_first(ctx, 1, &cap);

	/* Without SO_REUSEADDR the port is in use. */
	int plain = sp_socket(ctx, SOCK_STREAM);
	int e = bind_port(ctx, plain, port);
	if (time_wait_unseen) {
		RECORD("time_wait_shown_by", "a plain bind's EADDRINUSE (/proc/net/tcp lists no socket)");
		REQUIRE(e == EADDRINUSE, "the server's port to be in TIME_WAIT (the socket read "
			"CLOSE, /proc/net/tcp lists no socket, and a plain bind() %s)",
			e ? sp_errno_name(e) : "succeeded");
	}
	ASSERT_TRUE(e == EADDRINUSE,
		    "bind without SO_REUSEADDR to a port in TIME_WAIT fails with EADDRINUSE: got %s",
		    e ? sp_errno_name(e) : "success");
	/* With it, as the old server had, bind and listen work at once... */
	int l = sp_socket(ctx, SOCK_STREAM);
	sp_set_int(l, SOL_SOCKET, SO_REUSEADDR, 1);
	REQUIRE(sp_get_int(l, SOL_SOCKET, SO_REUSEADDR) != 0, "a listener with SO_REUSEADDR set: "
		"it reads back 0 after setting 1");
	long m = sp_block_mark();
	ASSERT_EQ(0, bind_port(ctx, l, port));
	ASSERT_SYS(listen(l, 4));
	ASSERT_NO_BLOCK(m, "bind and listen with SO_REUSEADDR on a port in TIME_WAIT");
	ASSERT_EQ(port, sp_local_port(l));
	/* ...and the new server serves. */
	int c = sp_tcp_connect(ctx, l);
	int s = sp_tcp_accept(l);
	SP_OUT_EXACT(SP_IO_READ, c, "hi", 2);
	char buf[4];
	SP_IN_EXACT(SP_IO_READ, s, buf, 2);
	ASSERT_MEM_EQ("hi", buf, 2);
	/* On the wire: the server's FIN, the client's FIN, the server's last
	 * ACK (TIME_WAIT is the server's), then a new SYN answered by the
	 * rebound port. */
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "S>C F., C>S F., S>C ., C>S S, S>C S.");
		WIRE_LACKS(&cap, "S>C R");
	}
	sp_capture_stop(&cap);
	close(s);
	close(c);
	close(l);

	/* Record: SO_REUSEADDR on the new socket only. */
	uint16_t p2 = server_closes_first(ctx, 0, NULL);
	int n = sp_socket(ctx, SOCK_STREAM);
	sp_set_int(n, SOL_SOCKET, SO_REUSEADDR, 1);
	e = bind_port(ctx, n, p2);
	RECORD("reuseaddr_new_socket_only", "%s", e ? sp_errno_name(e) : "bound");
}

static int outq(int fd, unsigned long req)
{
	int v = -1;
	return ioctl(fd, req, &v) == 0 ? v : -1;
}

/* Five 1-byte writes from c to s (whose ACKs are delayed). Returns 1 when
 * the observation is valid (the first byte was still unacknowledged when
 * measured) and fills what the receiver had and what the sender held. */
/* One byte written: returning before the peer reads is
 * TCP-WRITE-RETURNS-BUFFERED's, a mechanism here. */
static void one_byte(int fd, const char *b)
{
	ssize_t w = BOUNDED(write(fd, b, 1));
	if (sp_bound_expired())
		sp_needs_at(__FILE__, __LINE__, "TCP-WRITE-RETURNS-BUFFERED", "write() of 1 byte",
			    "returns at once", "still blocked", 0);
	ASSERT_EQ(1, w);
}

static int small_writes(int c, int s, int *inq, int *held)
{
	one_byte(c, "a");
	ASSERT_EQ(1, sp_wait_inq(s, 1));
	for (int i = 0; i < 4; i++)
		one_byte(c, "b");
	ASSERT_SYS(ioctl(s, FIONREAD, inq));
	int q = outq(c, SIOCOUTQ), nsd = outq(c, SIOCOUTQNSD);
	*held = nsd;
	/* All 5 bytes unacknowledged now means no ACK came before either. */
	return q == 5;
}

/* 4. TCP_NODELAY reads as set; Nagle holds small writes, NODELAY does not. */
SP_TEST(tcp_nodelay_reads_as_set_and_turns_nagle_off, "OPT-TCP-NODELAY", SP_INET)
{
	int t = sp_socket(ctx, SOCK_STREAM);

	ASSERT_EQ(0, sp_get_int(t, IPPROTO_TCP, TCP_NODELAY));
	sp_set_int(t, IPPROTO_TCP, TCP_NODELAY, 1);
	ASSERT_TRUE(sp_get_int(t, IPPROTO_TCP, TCP_NODELAY) != 0, "TCP_NODELAY after setting it "
		    "to 1: expected non-zero, observed 0");
	sp_set_int(t, IPPROTO_TCP, TCP_NODELAY, 0);
	ASSERT_EQ(0, sp_get_int(t, IPPROTO_TCP, TCP_NODELAY));

	/* Nagle on the wire: both legs need the receiver's ACK delayed. */
	const char *why = NULL;
	for (int attempt = 0; attempt < 3; attempt++) {
		int c, s, d, u, inq, held;
		struct sp_capture cap;

		sp_tcp_pair(ctx, &c, &s);
		sp_tcp_pair(ctx, &d, &u);
		ASSERT_EQ(0, sp_get_int(c, IPPROTO_TCP, TCP_NODELAY)); /* connected: still 0 */
		ASSERT_EQ(0, sp_get_int(s, IPPROTO_TCP, TCP_NODELAY)); /* accepted: 0 */
		int zero = 0;
		if (setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero)) < 0 ||
		    setsockopt(u, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero)) < 0) {
			why = "TCP_QUICKACK=0 (to delay the receiver's ACK) is not available";
			break;
		}
		if (outq(c, SIOCOUTQ) < 0 || outq(c, SIOCOUTQNSD) < 0) {
			why = "SIOCOUTQ/SIOCOUTQNSD (unsent bytes) are not available";
			break;
		}
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, c, "C");
		sp_capture_name_fd(&cap, s, "S");
		sp_capture_name_fd(&cap, d, "D");
		sp_capture_name_fd(&cap, u, "U");
		/* Leg 1, Nagle (the default): bytes 2-5 wait for the ACK of byte 1. */
		if (!small_writes(c, s, &inq, &held)) {
			sp_capture_stop(&cap);
			why = "the receiver's delayed ACK came before the writes were measured";
			close(c), close(s), close(d), close(u);
			continue;
		}
		ASSERT_EQ(1, inq);  /* only the first byte crossed */
		ASSERT_EQ(4, held); /* the rest wait in the sender */
		sp_set_int(c, IPPROTO_TCP, TCP_NODELAY, 1); /* pushes what is pending */
		ASSERT_EQ(5, sp_wait_inq(s, 5));
		/* Leg 2, TCP_NODELAY: every write leaves at once. */
		sp_set_int(d, IPPROTO_TCP, TCP_NODELAY, 1);
		small_writes(d, u, &inq, &held);
		ASSERT_EQ(0, held); /* nothing waits in the sender */
		ASSERT_EQ(5, sp_wait_inq(u, 5));
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "C>S P.1, C>S P.4, "
				    "D>U P.1, D>U P.1, D>U P.1, D>U P.1, D>U P.1");
			WIRE_LACKS(&cap, "C>S P.2");
			WIRE_LACKS(&cap, "C>S P.3");
			WIRE_LACKS(&cap, "D>U P.2");
			WIRE_LACKS(&cap, "D>U P.4");
		}
		sp_capture_stop(&cap);
		RECORD("nagle", "held 4 of 5 small writes behind an unacknowledged byte; "
		       "TCP_NODELAY sent each at once");
		return;
	}
	RECORD("nagle", "not shown: %s", why);
}

/* 5. SO_KEEPALIVE is off by default and reads as set. */
SP_TEST(keepalive_is_off_by_default_and_reads_as_set, "OPT-KEEPALIVE", SP_INET)
{
	int c, s, t = sp_socket(ctx, SOCK_STREAM);

	ASSERT_EQ(0, sp_get_int(t, SOL_SOCKET, SO_KEEPALIVE));
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(0, sp_get_int(c, SOL_SOCKET, SO_KEEPALIVE));
	ASSERT_EQ(0, sp_get_int(s, SOL_SOCKET, SO_KEEPALIVE));
	sp_set_int(c, SOL_SOCKET, SO_KEEPALIVE, 1);
	int ka = sp_get_int(c, SOL_SOCKET, SO_KEEPALIVE);
	if (ka == 0)
		FAIL("SO_KEEPALIVE set to 1: expected it to read non-zero, observed 0");
	ASSERT_EQ(0, sp_get_int(s, SOL_SOCKET, SO_KEEPALIVE)); /* per socket, not per connection */
	sp_set_int(c, SOL_SOCKET, SO_KEEPALIVE, 0);
	ASSERT_EQ(0, sp_get_int(c, SOL_SOCKET, SO_KEEPALIVE));

	int idle, intvl, cnt;
	socklen_t len = sizeof(int);
	if (getsockopt(t, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &len) == 0 &&
	    getsockopt(t, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, &len) == 0 &&
	    getsockopt(t, IPPROTO_TCP, TCP_KEEPCNT, &cnt, &len) == 0)
		RECORD("keepalive_idle_intvl_cnt", "%d %d %d", idle, intvl, cnt);
	else
		RECORD("keepalive_idle_intvl_cnt", "unavailable (%s)", sp_errno_name(errno));
}

/* 6. SO_LINGER {1,0}: close() resets; the peer reads ECONNRESET, not EOF
 * (through each read call, .read). */
SP_TEST(linger_zero_close_resets_instead_of_fin, "OPT-LINGER-ZERO-RST", SP_INET,
	.read = SP_EVERY_READ)
{
	int how = ctx->read;
	int c, s;
	char buf[16];
	struct linger lg = { 1, 0 }, back;
	socklen_t len = sizeof(back);
	struct sp_capture cap;
	struct sigaction ign = { .sa_handler = SIG_IGN };

	ASSERT_SYS(sigaction(SIGPIPE, &ign, NULL)); /* the recorded send to the reset peer */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	ASSERT_SYS(getsockopt(c, SOL_SOCKET, SO_LINGER, &back, &len));
	ASSERT_TRUE(back.l_onoff && back.l_linger == 0, "SO_LINGER reads back {1,0} (got {%d,%d})",
		    back.l_onoff, back.l_linger);
	uint16_t cport = sp_local_port(c), sport = sp_local_port(s);
	SP_OUT_EXACT(SP_IO_READ, c, "hello", 5);
	ASSERT_EQ(5, sp_wait_inq(s, 5));
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, c, "C");
		sp_capture_name_fd(&cap, s, "S");
	}
	ASSERT_SYS(close(c));
	EXPECT_EVENTS(s, POLLIN, POLLIN | POLLERR | POLLHUP, "the peer learns of the close");
	if (ctx->first) {
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "C>S R");
			WIRE_LACKS(&cap, "C>S F");
		}
		sp_capture_stop(&cap);
	}
	/* The peer never reads EOF: data that had arrived, then ECONNRESET. */
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(how, s, buf, sizeof(buf), 0),
				"%s() on the reset peer", sp_io_in_name(how));
	int err = errno;
	RECORD_ONCE("data_readable_after_reset", "%s", r == 5 ? "yes" : "no");
	if (r == 5) {
		ASSERT_MEM_EQ("hello", buf, 5);
		errno = 0;
		r = MUST_RETURN(sp_io_in(how, s, buf, sizeof(buf), 0),
				"%s() on the reset peer after its data", sp_io_in_name(how));
		err = errno;
	}
	ASSERT_TRUE(r == -1 && err == ECONNRESET,
		    "%s on the reset peer fails with ECONNRESET (got %zd, %s)",
		    sp_io_in_name(how), r, r < 0 ? sp_errno_name(err) : r ? "data" : "EOF");
	if (ctx->first) {
		errno = 0;
		r = send(s, "x", 1, MSG_NOSIGNAL);
		RECORD("peer_write_after_reset", "%zd (%s)", r, sp_errno_name(errno));
	}
	/* No TIME_WAIT on the closing side: its port binds again at once. */
	int n = sp_socket(ctx, SOCK_STREAM);
	long m = sp_block_mark();
	int e = bind_port(ctx, n, cport);
	ASSERT_NO_BLOCK(m, "bind to the port of a connection closed with SO_LINGER {1,0}");
	const char *netns = getenv("SOCKPROBE_NETNS");
	if (e == EADDRINUSE && !(netns && strcmp(netns, "private") == 0) &&
	    time_wait_of(ctx, cport, sport) == 0) {
		/* On a shared host loopback another connection (of
		 * another program, or a TIME_WAIT left by one) may hold
		 * the same ephemeral port, which connect() shares between
		 * destinations: /proc/net/tcp shows no TIME_WAIT of this
		 * connection, which is what the Must is about. */
		RECORD("rebind_after_reset", "EADDRINUSE from another socket on the "
		       "shared host loopback; no TIME_WAIT on the port");
	} else {
		ASSERT_TRUE(e == 0, "the reset connection's local port binds again at once "
			    "without SO_REUSEADDR (got %s)", sp_errno_name(e));
	}
	if (ctx->first) /* /proc/net/tcp is slow to read: once */
		ASSERT_TRUE(time_wait_of(ctx, cport, sport) != 1, "/proc/net/tcp after the "
			    "reset: expected no TIME_WAIT of this connection on the closer's "
			    "port, observed one");
	close(n);
	close(s);
}

/* A UDP socket connected to a port where nobody listens. */
static int udp_to_closed_port(const struct sp_ctx *ctx)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int gone = sp_udp_bound(ctx), u = sp_udp_bound(ctx);

	ASSERT_SYS(getsockname(gone, (struct sockaddr *)&ss, &len));
	close(gone);
	ASSERT_SYS(connect(u, (struct sockaddr *)&ss, len));
	return u;
}

/* A send on the connected UDP socket to a closed port, answered by an ICMP
 * port unreachable that sets the error: UDP-CONNECTED's Must, the
 * mechanism that makes an error pending here. */
static void udp_error_arrives(int u, const char *msg)
{
	errno = 0;
	ssize_t w = send(u, msg, 1, 0);
	int err = errno;
	if (w != 1) {
		char obs[48];
		snprintf(obs, sizeof(obs), "%zd (%s)", w, sp_errno_name(err));
		sp_needs_at(__FILE__, __LINE__, "UDP-CONNECTED", "send() on a connected UDP socket "
			    "to a closed port, no error pending", "1", obs, err);
	}
	int ev = sp_poll(u, POLLIN, sp_wait_ms());
	if (!(ev & POLLERR))
		sp_needs_at(__FILE__, __LINE__, "UDP-CONNECTED", "the ICMP port unreachable after "
			    "a send to a closed port", "POLLERR (an error pending)", sp_events_str(ev), 0);
}

/* A non-blocking receive on u through the read call api: EAGAIN where
 * nothing (no datagram, no error) is pending. io_uring READ is left out
 * of these: where a kernel refuses RWF_NOWAIT on sockets (Linux 6.1) its
 * request waits whatever O_NONBLOCK says (sp_entry.c), so "nothing
 * pending" cannot be asked through it there. */
static void nothing_pending_for(int api, int u, const char *after)
{
	char b;
	if (api == SP_IO_URING_RW)
		return;
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(api, u, &b, 1, 0), "a non-blocking %s() %s",
				sp_io_in_name(api), after);
	ASSERT_TRUE(r < 0 && errno == EAGAIN, "a non-blocking %s() %s: expected EAGAIN (the "
		    "error not reported again), observed %zd (%s)", sp_io_in_name(api), after, r,
		    r < 0 ? sp_errno_name(errno) : "a datagram");
}

/* 7. SO_ERROR gives a pending error once and clears it; the receives
 * around it through every datagram read call (.read). */
SP_TEST(so_error_reports_a_pending_error_once, "OPT-SO-ERROR-CLEARS", SP_INET,
	.read = SP_DGRAM_READS)
{
	char b;
	int api = ctx->read;
	int u = udp_to_closed_port(ctx);

	sp_set_nonblock(u, 1);
	ASSERT_ERRVAL(0, sp_get_int(u, SOL_SOCKET, SO_ERROR)); /* nothing pending yet */
	udp_error_arrives(u, "x");
	ASSERT_ERRVAL(ECONNREFUSED, sp_get_int(u, SOL_SOCKET, SO_ERROR));
	ASSERT_ERRVAL(0, sp_get_int(u, SOL_SOCKET, SO_ERROR));        /* read once, cleared */
	nothing_pending_for(api, u, "after SO_ERROR gave the error");  /* not reported again */
	ASSERT_EQ(0, sp_poll(u, POLLIN, 0) & POLLERR);

	/* The other way round: the receive reports it, then SO_ERROR is 0. */
	udp_error_arrives(u, "y");
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(api, u, &b, 1, 0), "a non-blocking %s() with the "
				"error pending", sp_io_in_name(api));
	ASSERT_TRUE(r < 0 && errno == ECONNREFUSED, "a non-blocking %s() with ECONNREFUSED "
		    "pending reports it (got %zd, %s)", sp_io_in_name(api), r,
		    r < 0 ? sp_errno_name(errno) : "a datagram");
	ASSERT_ERRVAL(0, sp_get_int(u, SOL_SOCKET, SO_ERROR));
	nothing_pending_for(api, u, "after it reported the error");
	close(u);
	if (!ctx->first)
		return;

	/* TCP: a refused non-blocking connect leaves ECONNREFUSED, read once. */
	struct sockaddr_storage ss;
	int gone = sp_tcp_listener(ctx, 0);
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(gone));
	close(gone);
	int t = sp_socket(ctx, SOCK_STREAM);
	sp_set_nonblock(t, 1);
	errno = 0;
	int cr = connect(t, (struct sockaddr *)&ss, len);
	if (cr < 0 && errno == EAGAIN)
		sp_needs_at(__FILE__, __LINE__, "CONN-NONBLOCK-CONNECT", "a non-blocking connect()",
			    "0, -1 (EINPROGRESS) or the refusal", "-1 (EAGAIN)", EAGAIN);
	if (cr < 0 && errno == EINPROGRESS) {
		/* Any event ends the wait (POLLERR is MUX-POLLERR-REFUSED's). */
		EXPECT_EVENTS(t, POLLOUT, POLLOUT | POLLERR | POLLHUP, "the refusal arrives");
		ASSERT_ERRVAL(ECONNREFUSED, sp_get_int(t, SOL_SOCKET, SO_ERROR));
		ASSERT_ERRVAL(0, sp_get_int(t, SOL_SOCKET, SO_ERROR));
	} else {
		ASSERT_ERRVAL(ECONNREFUSED, errno); /* refused at once: nothing left pending */
		ASSERT_ERRVAL(0, sp_get_int(t, SOL_SOCKET, SO_ERROR));
	}
}

struct lowat_reader { int fd; volatile pid_t tid; volatile int done; ssize_t r; };

static void *lowat_read(void *p)
{
	struct lowat_reader *lr = p;
	char buf[64];

	lr->tid = (pid_t)syscall(SYS_gettid);
	lr->r = read(lr->fd, buf, sizeof(buf));
	lr->done = 1;
	return NULL;
}

static int reader_done(void *p) { return ((struct lowat_reader *)p)->done; }
static int reader_started(void *p) { return ((struct lowat_reader *)p)->tid != 0; }

/* Is fd readable for the wait call w (poll bits, whatever call)? With a
 * zero timeout: a poll; else wait up to that long. select() and pselect()
 * returning at once for a zero timeout is MUX-SELECT-TIMEOUT's Must, a
 * mechanism here. */
static int readable_through(int w, int fd, int timeout_ms)
{
	int ev;
	if (!timeout_ms && (w == SP_WAIT_SELECT || w == SP_WAIT_PSELECT)) {
		ev = BOUNDED(sp_wait_on(w, fd, POLLIN, 0, NULL));
		if (sp_bound_expired())
			BROKEN_NEEDS("MUX-SELECT-TIMEOUT", "%s() with a zero timeout is still blocked "
				     "after %d ms", sp_waitcall_name(w), sp_wait_ms());
	} else {
		ev = MUST_RETURN(sp_wait_on(w, fd, POLLIN, timeout_ms, NULL), "%s() %s",
				 sp_waitcall_name(w), timeout_ms ? "with 10 of 10 queued" :
				 "with a zero timeout");
	}
	ASSERT_SYS(ev);
	return (ev & POLLIN) != 0;
}

/* 8. SO_RCVLOWAT: readable only with N bytes queued, for every wait call
 * (select, pselect, poll, ppoll, epoll_wait, epoll_pwait, epoll_pwait2,
 * io_uring POLL_ADD: each in turn, a loop); the read with N queued
 * returns them at once through every read call (.read). */
SP_TEST(rcvlowat_holds_readability_until_n_bytes, "OPT-RCVLOWAT", SP_INET, .read = SP_EVERY_READ)
{
	int c, s, api = ctx->read;
	char buf[64];

	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(1, sp_get_int(s, SOL_SOCKET, SO_RCVLOWAT));
	int ten = 10;
	if (setsockopt(s, SOL_SOCKET, SO_RCVLOWAT, &ten, sizeof(ten)) < 0)
		UNSUPPORTED("setsockopt(SO_RCVLOWAT) fails with %s", sp_errno_name(errno));
	ASSERT_EQ(10, sp_get_int(s, SOL_SOCKET, SO_RCVLOWAT));

	SP_OUT_EXACT(SP_IO_READ, c, "01234", 5);
	ASSERT_EQ(5, sp_wait_inq(s, 5));
	for (int w = 0; w < SP_WAITCALLS; w++)  /* 5 of 10: not readable */
		if (sp_waitcall_use(w))
			ASSERT_TRUE(!readable_through(w, s, 0), "%s() reports a socket with "
				    "SO_RCVLOWAT 10 readable with 5 bytes queued", sp_waitcall_name(w));
	SP_OUT_EXACT(SP_IO_READ, c, "56789", 5);
	ASSERT_EQ(10, sp_wait_inq(s, 10));
	for (int w = 0; w < SP_WAITCALLS; w++)  /* 10 of 10: readable */
		if (sp_waitcall_use(w))
			ASSERT_TRUE(readable_through(w, s, sp_wait_ms()), "%s() reports a socket with "
				    "SO_RCVLOWAT 10 readable with 10 bytes queued (not within %d ms)",
				    sp_waitcall_name(w), sp_wait_ms());
	long m = sp_block_mark();
	ssize_t r = MUST_RETURN(sp_io_in(api, s, buf, sizeof(buf), 0), /* 10 queued: at once */
				"a blocking %s() with SO_RCVLOWAT 10 and 10 bytes queued",
				sp_io_in_name(api));
	ASSERT_NO_BLOCK(m, "a blocking %s() with SO_RCVLOWAT 10 and 10 bytes queued",
			sp_io_in_name(api));
	ASSERT_TRUE(r == 10 && !memcmp(buf, "0123456789", 10), "a blocking %s() with SO_RCVLOWAT "
		    "10 and 10 bytes queued returns the 10 (got %zd%s%s)", sp_io_in_name(api), r,
		    r < 0 ? ", " : "", r < 0 ? sp_errno_name(errno) : "");
	if (!ctx->first)
		return;

	/* Record: a non-blocking read below the mark. */
	SP_OUT_EXACT(SP_IO_READ, c, "abcde", 5);
	ASSERT_EQ(5, sp_wait_inq(s, 5));
	errno = 0;
	r = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	RECORD("nonblocking_read_below_lowat", "%zd%s%s", r, r < 0 ? " " : "",
	       r < 0 ? sp_errno_name(errno) : "");
	if (r > 0 && r < 5)
		ASSERT_EQ(5 - r, recv(s, buf, sizeof(buf), MSG_DONTWAIT));

	/* Record: a blocking read started with 4 of 10 queued, when 6 more come. */
	struct lowat_reader lr = { .fd = s };
	pthread_t th;
	SP_OUT_EXACT(SP_IO_READ, c, "wxyz", 4);
	ASSERT_EQ(4, sp_wait_inq(s, 4));
	ASSERT_EQ(0, pthread_create(&th, NULL, lowat_read, &lr));
	REQUIRE(sp_wait_until(reader_started, &lr, sp_wait_ms()),
		"the reader thread starts within %d ms", sp_wait_ms());
	if (sp_have_proc())
		sp_wait_proc_state(lr.tid, 'S');
	SP_OUT_EXACT(SP_IO_READ, c, "WXYZ01", 6);
	/* Bounded short on purpose: this is recorded, and Linux 6.x does not
	 * wake such a reader (it already copied 4, so only 6 are queued).
	 * Then a full mark's worth more ends its read, whatever
	 * shutdown(SHUT_RD) would do (CLOSE-HALF-RD's business). */
	int woke = sp_wait_until(reader_done, &lr, 20);
	if (!woke)
		SP_OUT_EXACT(SP_IO_READ, c, "0123456789", 10);
	REQUIRE(sp_wait_until(reader_done, &lr, sp_wait_ms()),
		"the reader below SO_RCVLOWAT to return once 10 more bytes came (%d ms)",
		sp_wait_ms());
	pthread_join(th, NULL);
	RECORD("blocking_read_started_below_lowat", "%s", woke ? "returned once 10 had arrived"
								: "not woken within 20 ms");
	if (woke)
		RECORD("blocking_read_started_below_lowat_count", "%zd", lr.r);
}

SP_MAIN("opt")
