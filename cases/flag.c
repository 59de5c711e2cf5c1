/*
 * flag.c - send/receive flags, urgent data and vectored I/O (textbook
 * ch. 13; catalogue part 2, "Send/receive flags and vectored I/O").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. FLAG-PEEK             MSG_PEEK returns queued data without consuming
 *                           it (recv, recvfrom, recvmsg; TCP and UDP).
 *  2. FLAG-WAITALL          MSG_WAITALL waits for the full count across
 *                           several writes; short only at EOF or a signal.
 *  3. FLAG-DONTWAIT         MSG_DONTWAIT on an empty blocking socket fails
 *                           at once with EAGAIN and leaves O_NONBLOCK unset.
 *  4. FLAG-NOSIGNAL         MSG_NOSIGNAL: EPIPE without SIGPIPE (send, sendto,
 *                           sendmsg, sendmmsg, io_uring SEND/SENDMSG);
 *                           without it SIGPIPE is raised (io_uring sets
 *                           MSG_NOSIGNAL itself: recorded there).
 *  5. FLAG-OOB-URGENT-BYTE  send(MSG_OOB) of "45" after "123": only '5' is
 *                           urgent, '4' stays in the stream.
 *  6. FLAG-OOB-SIGURG       the F_SETOWN owner gets SIGURG; without an owner
 *                           nobody does (MSG_OOB through send, sendto,
 *                           sendmsg, sendmmsg, io_uring SEND/SENDMSG).
 *  7. FLAG-OOB-ATMARK       a read stops at the urgent mark (through every
 *                           read call; recv(MSG_OOB) through those that take
 *                           flags); sockatmark and SIOCATMARK say 0, then 1,
 *                           then 0.
 *  8. FLAG-WRITEV-GATHER    writev/sendmsg/sendmmsg and io_uring WRITEV/SENDMSG
 *                           send their buffers in order as one write (one
 *                           datagram on UDP).
 *  9. FLAG-READV-SCATTER    readv/recvmsg/recvmmsg and io_uring READV/RECVMSG
 *                           fill their buffers in order; a UDP datagram's
 *                           rest is dropped.
 * 10. FLAG-TRUNC-UDP        Linux: recv(MSG_TRUNC) on UDP returns the real
 *                           length and consumes; with MSG_PEEK it does not.
 *
 * Wire (where the item has its own network namespace): the urgent segment
 * carries URG with the urgent pointer just past the urgent byte (Linux
 * and BSD convention, RFC 6093: the pointer equals the segment's payload
 * when the urgent byte ends it); a writev of three buffers leaves as one
 * segment.
 *
 * FLAG-TRUNC-UDP is a Linux point: a stack that refuses MSG_TRUNC (EINVAL,
 * EOPNOTSUPP) reports it as unsupported; one that accepts it and returns
 * the copied length fails.
 *
 * Platform-defined (recorded): recv(MSG_OOB) with nothing urgent and a
 * second time for the same byte (Linux: EINVAL both); which of two urgent
 * bytes is returned (Linux: the last); SO_OOBINLINE behavior; whether an
 * urgent byte never read out of band is dropped from the stream (Linux:
 * yes); what splice() returns at an urgent byte already taken out of band
 * (Linux 6.18: 0, tcp_read_sock stops there; the stream is then read with
 * read()); how many SIGPIPEs an io_uring SEND/SENDMSG without MSG_NOSIGNAL
 * raises (Linux: none, io_uring sets the flag on every request).
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif

/* Parameters: .read is the receive call (those that take flags: recv,
 * recvfrom, recvmsg), .write the send call. */

/* Wait until everything fd sent has been acknowledged (so the peer's
 * kernel has processed it). Where SIOCOUTQ is missing (gVisor:
 * ENOPROTOOPT), until the peer's FIONREAD shows the `before_mark` normal
 * bytes in front of the urgent mark (Linux stops the count at the mark;
 * a stack that counts past it only gets there sooner), or, with none,
 * until the peer is readable at all (POLLIN or POLLPRI). Never through
 * POLLPRI alone: that is one stack's way of saying urgent data came, not
 * a Must of these items. A delivery that cannot be seen is a broken
 * set-up, not a failure of the item. */
static int outq_empty(void *p)
{
	int q = -1;
	return ioctl(*(int *)p, SIOCOUTQ, &q) == 0 && q == 0;
}

static void wait_delivered(int fd, int peer, int before_mark)
{
	int q;
	if (ioctl(fd, SIOCOUTQ, &q) == 0) {
		REQUIRE(sp_wait_until(outq_empty, &fd, sp_wait_ms()),
			"the peer acknowledges everything within %d ms (SIOCOUTQ still %d)",
			sp_wait_ms(), (ioctl(fd, SIOCOUTQ, &q), q));
	} else if (before_mark > 0) {
		int inq = sp_wait_inq(peer, before_mark);
		REQUIRE(inq >= before_mark, "the data reaches the peer: its FIONREAD is %d after "
			"%d ms, expected >= %d (no SIOCOUTQ here)", inq, sp_wait_ms(), before_mark);
	} else {
		int ev = sp_poll(peer, POLLIN | POLLPRI, sp_wait_ms());
		REQUIRE(ev & (POLLIN | POLLPRI), "the urgent byte reaches the peer within %d ms "
			"(poll reported %s; no SIOCOUTQ here)", sp_wait_ms(), sp_events_str(ev));
	}
}

/* 1. MSG_PEEK looks without consuming. */
SP_TEST(peek_returns_data_without_consuming, "FLAG-PEEK", SP_INET,
	.read = SP_FLAG_READS)
{
	int c, s, how = ctx->read;
	char buf[16];

	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(5, write(c, "hello", 5));
	ASSERT_EQ(5, sp_wait_inq(s, 5));
	for (int k = 0; k < 2; k++) {       /* peeking twice gives the same */
		memset(buf, 0, sizeof(buf));
		ssize_t r = MUST_RETURN(sp_io_in(how, s, buf, sizeof(buf), MSG_PEEK),
					"%s(MSG_PEEK) with 5 bytes queued", sp_io_in_name(how));
		if (r != 5) {
			int e = errno;
			char other[16];
			ssize_t via_recv = recv(s, other, sizeof(other), MSG_PEEK | MSG_DONTWAIT);
			FAIL("%s(MSG_PEEK) with 5 bytes queued: expected 5, observed %zd%s%s%s; "
			     "recv(MSG_PEEK) gives %zd", sp_io_in_name(how), r, r < 0 ? " (" : "",
			     r < 0 ? sp_errno_name(e) : "", r < 0 ? ")" : "", via_recv);
		}
		ASSERT_MEM_EQ("hello", buf, 5);
		int inq = -1;
		ASSERT_SYS(ioctl(s, FIONREAD, &inq));
		ASSERT_EQ(5, inq);                  /* still queued */
	}
	ASSERT_EQ(2, sp_io_in(how, s, buf, 2, MSG_PEEK)); /* a partial peek */
	ASSERT_MEM_EQ("he", buf, 2);
	memset(buf, 0, sizeof(buf));
	ASSERT_EQ(5, sp_io_in(how, s, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("hello", buf, 5);
	ASSERT_ERRNO(sp_io_in(how, s, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT), EAGAIN);
	ASSERT_ERRNO(sp_io_in(how, s, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);

	/* UDP: the datagram stays queued, whole, with its source. */
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to, from;
	socklen_t tl = sizeof(to), fl;
	ASSERT_SYS(getsockname(rx, (struct sockaddr *)&to, &tl));
	ASSERT_EQ(5, sendto(tx, "first", 5, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(6, sendto(tx, "second", 6, 0, (struct sockaddr *)&to, tl));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "a datagram arrives");
	for (int k = 0; k < 2; k++) {
		memset(buf, 0, sizeof(buf));
		ssize_t n = MUST_RETURN(sp_io_in(how, rx, buf, sizeof(buf), MSG_PEEK),
					"%s(MSG_PEEK) with a datagram queued", sp_io_in_name(how));
		/* One datagram per receive is UDP-BOUNDARY's Must, a mechanism. */
		if (n > 5)
			BROKEN_NEEDS("UDP-BOUNDARY", "%s(MSG_PEEK) with datagrams of 5 and 6 queued "
				     "returned %zd: they were merged", sp_io_in_name(how), n);
		ASSERT_EQ(5, n);
		ASSERT_MEM_EQ("first", buf, 5);
	}
	fl = sizeof(from);
	ASSERT_EQ(5, recvfrom(rx, buf, sizeof(buf), MSG_PEEK, (struct sockaddr *)&from, &fl));
	if (sp_port(&from) != sp_local_port(tx)) {
		/* Does a plain recvfrom() name the sender either? That is
		 * UDP-ONE-SOCKET-MANY-PEERS' Must; this one is the peek's. */
		struct sockaddr_storage real;
		socklen_t rl = sizeof(real);
		ASSERT_EQ(5, recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&real, &rl));
		if (sp_port(&real) != sp_local_port(tx))
			BROKEN_NEEDS("UDP-ONE-SOCKET-MANY-PEERS", "recvfrom() names the sender with "
				     "port %u, not %u, peeking or not", sp_port(&real), sp_local_port(tx));
		FAIL("recvfrom(MSG_PEEK) names the sender with port %u, expected %u (a plain "
		     "recvfrom() does)", sp_port(&from), sp_local_port(tx));
	}
	ASSERT_EQ(5, sp_io_in(how, rx, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("first", buf, 5);
	ASSERT_EQ(6, MUST_RETURN(sp_io_in(how, rx, buf, sizeof(buf), MSG_PEEK),
				 "%s(MSG_PEEK) with the second datagram queued",
				 sp_io_in_name(how)));
	ASSERT_MEM_EQ("second", buf, 6);
	ASSERT_EQ(6, sp_io_in(how, rx, buf, sizeof(buf), 0));
	ASSERT_ERRNO(sp_io_in(how, rx, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT), EAGAIN);
}

/* The writer of test 2: four writes of 5, each once the reader sleeps. */
/* Four writes of 5 bytes, each once the reader has taken the one before
 * (the receive queue is empty again): a read that ends at the first bytes
 * has returned before the second write. */
static int four_writes(void *arg)
{
	const int *cs = arg;
	for (int i = 0; i < 4; i++) {
		if (write(cs[0], &"aaaaabbbbbcccccddddd"[5 * i], 5) != 5)
			return 1;
		sp_wait_drained(cs[1]);
	}
	return 0;
}

static int alarm_parent_when_asleep(void *unused)
{
	(void)unused;
	if (sp_have_proc())
		sp_wait_proc_state(getppid(), 'S');
	return kill(getppid(), SIGALRM) == 0 ? 0 : 1;
}

/* MSG_WAITALL interrupted by a signal returns the bytes so far, not EINTR
 * (through the read call `how`). */
static void waitall_ends_short_at_a_signal(const struct sp_ctx *ctx, int how)
{
	int c, s;
	char buf[32];

	/* An io_uring request is not a system call a signal interrupts: the
	 * signal ends the program's wait, the request goes on. */
	if (sp_entry_io_takes(how) & SP_EP_URING)
		return;
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(5, write(c, "early", 5));
	ASSERT_EQ(5, sp_wait_inq(s, 5));
	/* SIGALRM (the watchdog's handler, no SA_RESTART) from a child once we
	 * sleep in recv; the watchdog itself bounds the wait if it never comes. */
	sp_watchdog(sp_wait_ms());
	pid_t k = sp_fork(alarm_parent_when_asleep, NULL);
	errno = 0;
	ssize_t r = sp_io_in(how, s, buf, 20, MSG_WAITALL);
	int err = errno;
	sp_watchdog(0);
	sp_reap(k);
	ASSERT_TRUE(r == 5, "%s(MSG_WAITALL) interrupted by a signal returns the 5 bytes "
		    "it has (got %zd, %s)", sp_io_in_name(how), r, r < 0 ? sp_errno_name(err) : "");
	ASSERT_MEM_EQ("early", buf, 5);
}

/* 2. MSG_WAITALL returns the full count, short only at EOF or a signal. */
SP_TEST(waitall_waits_for_the_full_count, "FLAG-WAITALL", SP_INET,
	.read = SP_FLAG_READS)
{
	char buf[32];
	int how = ctx->read;

	int c, s;
	sp_tcp_pair(ctx, &c, &s);
	int cs[2] = { c, s };
	pid_t w = sp_fork(four_writes, cs);
	sp_watchdog(2 * sp_wait_ms()); /* the writer waits for our sleep 4 times */
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(how, s, buf, 20, MSG_WAITALL),
				"%s(MSG_WAITALL) while 4 writes of 5 bytes arrive",
				sp_io_in_name(how));
	int err = errno;
	sp_watchdog(0);
	ASSERT_TRUE(r == 20, "%s(MSG_WAITALL) returns all 20 bytes of 4 writes (got %zd, %s)",
		    sp_io_in_name(how), r, r < 0 ? sp_errno_name(err) : "a short count");
	ASSERT_MEM_EQ("aaaaabbbbbcccccddddd", buf, 20);
	int st = sp_reap(w);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer of the 4 pieces: expected "
		    "exited 0 (all 4 written), observed %s", sp_status_str(st));
	close(c);
	close(s);

	/* EOF ends the wait short: 5, then 0. */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(5, write(c, "short", 5));
	ASSERT_SYS(shutdown(c, SHUT_WR));
	errno = 0;
	r = BOUNDED(sp_io_in(how, s, buf, 20, MSG_WAITALL));
	err = errno;
	if (sp_bound_expired()) {
		/* That shutdown(SHUT_WR) sends the FIN is CLOSE-HALF-WR-EOF's
		 * behavior, a mechanism here: did the end of stream arrive? */
		int st = sp_tcp_state(s);
		if (st != TCP_CLOSE_WAIT)
			BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "%s(MSG_WAITALL) of 20 with 5 bytes queued "
				     "still waits after %d ms, and the peer's FIN has not arrived "
				     "(state %s, not CLOSE_WAIT)", sp_io_in_name(how), sp_wait_ms(),
				     sp_tcp_state_name(st));
		FAIL("%s(MSG_WAITALL) of 20 with 5 bytes and EOF queued: expected it to return 5, "
		     "observed still blocked after %d ms (the FIN is there: state CLOSE_WAIT)",
		     sp_io_in_name(how), sp_wait_ms());
	}
	ssize_t r2 = MUST_RETURN(sp_io_in(how, s, buf + 5, 20, MSG_WAITALL),
				 "%s(MSG_WAITALL) at EOF", sp_io_in_name(how));
	ASSERT_TRUE(r == 5, "%s(MSG_WAITALL) returns the 5 bytes before EOF (got %zd, %s)",
		    sp_io_in_name(how), r, r < 0 ? sp_errno_name(err) : "");
	ASSERT_MEM_EQ("short", buf, 5);
	ASSERT_EQ(0, r2);
	close(c);
	close(s);

	waitall_ends_short_at_a_signal(ctx, how);
}

/* 3. MSG_DONTWAIT makes one call non-blocking, not the descriptor. */
SP_TEST(dontwait_fails_at_once_and_keeps_the_socket_blocking, "FLAG-DONTWAIT", SP_INET,
	.read = SP_FLAG_READS)
{
	int c, s, u = sp_udp_bound(ctx);
	char buf[8];

	sp_tcp_pair(ctx, &c, &s);
	int fl = (int)ASSERT_SYS(fcntl(s, F_GETFL)), ufl = (int)ASSERT_SYS(fcntl(u, F_GETFL));
	ASSERT_EQ(0, fl & O_NONBLOCK);
	int how = ctx->read;
	/* A call that blocks is cut off and named; one that only waits a
	 * while is seen by ASSERT_NO_BLOCK. */
	long m = sp_block_mark();
	ASSERT_ERRNO(MUST_RETURN(sp_io_in(how, s, buf, sizeof(buf), MSG_DONTWAIT),
				 "%s(MSG_DONTWAIT) on an empty blocking TCP socket",
				 sp_io_in_name(how)), EAGAIN);
	ASSERT_NO_BLOCK(m, "%s(MSG_DONTWAIT) on an empty blocking TCP socket", sp_io_in_name(how));
	m = sp_block_mark();
	ASSERT_ERRNO(MUST_RETURN(sp_io_in(how, u, buf, sizeof(buf), MSG_DONTWAIT),
				 "%s(MSG_DONTWAIT) on an empty blocking UDP socket",
				 sp_io_in_name(how)), EAGAIN);
	ASSERT_NO_BLOCK(m, "%s(MSG_DONTWAIT) on an empty blocking UDP socket", sp_io_in_name(how));
	ASSERT_EQ(fl, fcntl(s, F_GETFL));
	ASSERT_EQ(ufl, fcntl(u, F_GETFL));
	/* With data queued it returns the data. */
	ASSERT_EQ(3, write(c, "abc", 3));
	ASSERT_EQ(3, sp_wait_inq(s, 3));
	ASSERT_EQ(3, recv(s, buf, sizeof(buf), MSG_DONTWAIT));
	ASSERT_MEM_EQ("abc", buf, 3);
	ASSERT_EQ(fl, fcntl(s, F_GETFL));
}

static volatile sig_atomic_t sigpipes;
static void count_sigpipe(int sig) { (void)sig; sigpipes++; }

/* A stream whose peer has closed and reset: every send fails with EPIPE.
 * The reset is the peer's answer to data after its close
 * (CLOSE-FULL-LOSES-REPLY), the mechanism here: it is waited for itself
 * (poll with no events wakes only for POLLERR/POLLHUP, not for the FIN). */
static void broken_pipe(const struct sp_ctx *ctx, int *c, int *s)
{
	sp_tcp_pair(ctx, c, s);
	ASSERT_SYS(close(*s));
	ssize_t r = send(*c, "x", 1, MSG_NOSIGNAL); /* accepted locally, answered by RST */
	if (r < 0 && (errno == ECONNRESET || errno == EPIPE))
		return; /* the close reset the connection itself: reset already */
	ASSERT_EQ(1, r);
	int ev = sp_poll(*c, 0, sp_wait_ms());
	if (!(ev & (POLLERR | POLLHUP)))
		BROKEN_NEEDS("CLOSE-FULL-LOSES-REPLY", "no reset reached the sender within %d ms "
			     "of its send after the peer's close (poll reported %s)", sp_wait_ms(),
			     sp_events_str(ev));
}

/* The variant's send call without MSG_NOSIGNAL, the default SIGPIPE
 * disposition: it must kill the child. */
struct unflagged_send { int fd, api; };

static int send_without_flag(void *arg)
{
	const struct unflagged_send *u = arg;
	signal(SIGPIPE, SIG_DFL);
	sp_io_out(u->api, u->fd, "y", 1, 0);
	return 0; /* reached only if no SIGPIPE killed us */
}

/* 4. MSG_NOSIGNAL: EPIPE, no SIGPIPE; without it, SIGPIPE. Through every
 * call that takes flags (.write: send, sendto, sendmsg, sendmmsg, io_uring
 * SEND/SENDMSG). io_uring adds MSG_NOSIGNAL to every SEND/SENDMSG itself
 * (a request has no thread to signal), so its side without the flag is
 * recorded, not asserted. */
SP_TEST(nosignal_suppresses_sigpipe, "FLAG-NOSIGNAL", SP_INET, .write = SP_FLAG_WRITES)
{
	int c, s, api = ctx->write;
	int uring = (sp_entry_io_takes(api) & SP_EP_URING) != 0;
	const char *name = sp_io_out_name(api);
	struct sigaction sa = { .sa_handler = count_sigpipe };

	ASSERT_SYS(sigaction(SIGPIPE, &sa, NULL));
	broken_pipe(ctx, &c, &s);
	sigpipes = 0;
	ASSERT_ERRNO(sp_io_out(api, c, "y", 1, MSG_NOSIGNAL), EPIPE);
	ASSERT_ERRNO(sp_io_out(api, c, "y", 1, MSG_NOSIGNAL), EPIPE);
	ASSERT_TRUE(sigpipes == 0, "%s(MSG_NOSIGNAL) twice to a reset peer: SIGPIPE raised %d "
		    "times, expected none", name, (int)sigpipes);
	/* The same call without the flag raises SIGPIPE, once per call. */
	ASSERT_ERRNO(sp_io_out(api, c, "y", 1, 0), EPIPE);
	if (uring) {
		RECORD_ONCE("uring_send_without_nosignal_sigpipes", "%d", (int)sigpipes);
	} else {
		ASSERT_TRUE(sigpipes == 1, "%s() without MSG_NOSIGNAL to a reset peer: SIGPIPE raised "
			    "%d times, expected once", name, (int)sigpipes);
		ASSERT_ERRNO(sp_io_out(api, c, "y", 1, 0), EPIPE);
		ASSERT_TRUE(sigpipes == 2, "%s() without MSG_NOSIGNAL, a second time: SIGPIPE raised "
			    "%d times in all, expected 2 (one per call)", name, (int)sigpipes);
	}
	if (ctx->first) { /* write() has no flags: it always raises SIGPIPE */
		int before = (int)sigpipes;
		errno = 0;
		ssize_t w = write(c, "y", 1);
		if (w == 1)
			BROKEN_NEEDS("CLOSE-FULL-LOSES-REPLY", "write() to a peer that reset the "
				     "connection returned 1 (accepted), where %s() failed with EPIPE",
				     name);
		ASSERT_FAILED_WITH(w, errno, EPIPE);
		ASSERT_TRUE(sigpipes == before + 1, "write() to a reset peer: SIGPIPE raised %d "
			    "times, expected once", (int)sigpipes - before);
	}

	/* The real mechanism: with the default disposition SIGPIPE kills. */
	if (!uring) {
		struct unflagged_send u = { c, api };
		int st = sp_reap(sp_fork(send_without_flag, &u));
		if (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGPIPE)
			BROKEN_NEEDS("PROC-WAIT-REAPS", "the sender's wait status says exited %d, "
				     "which it never exits with: a death by SIGPIPE reported as an "
				     "exit code", 128 + SIGPIPE);
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE,
			    "a %s() without MSG_NOSIGNAL kills by SIGPIPE (status 0x%x)", name, st);
	}
	signal(SIGPIPE, SIG_DFL);
	ASSERT_ERRNO(sp_io_out(api, c, "y", 1, MSG_NOSIGNAL), EPIPE); /* and with it, we live */
	close(c);
}

/* Check the wire's urgent segments: the last one's pointer is its payload
 * length (the urgent byte ends the segment, the pointer is just past it). */
static void wire_urgent_pointer(struct sp_capture *cap, const char *dir)
{
	if (!sp_capture_sync(cap))
		return;
	WIRE_EXPECT(cap, dir);
	const char *p = cap->trace, *last = NULL;
	while ((p = strstr(p, " urg")) != NULL)
		last = p++;
	ASSERT_TRUE(last != NULL, "a segment carries URG (trace: %s)", cap->trace);
	const char *start = last;
	while (start > cap->trace && start[-1] != ',')
		start--;
	unsigned len = 0, ptr = 0;
	const char *dot = strchr(start, '.');
	ASSERT_TRUE(dot && dot < last && sscanf(dot + 1, "%u", &len) == 1 &&
		    sscanf(last, " urg%u", &ptr) == 1,
		    "the urgent segment has a payload (trace: %s)", cap->trace);
	ASSERT_TRUE(len > 0 && ptr == len,
		    "the urgent pointer is just past the urgent byte: %u for a %u-byte segment (trace: %s)",
		    ptr, len, cap->trace);
}

/* Record: two urgent sends before the reader looks. */
static void record_two_urgent_sends(const struct sp_ctx *ctx)
{
	int c, s;
	char b;
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(1, send(c, "a", 1, MSG_OOB));
	ASSERT_EQ(1, send(c, "b", 1, MSG_OOB));
	wait_delivered(c, s, 0);
	b = 0;
	errno = 0;
	ssize_t r = BOUNDED(recv(s, &b, 1, MSG_OOB));
	if (sp_bound_expired())
		RECORD("two_urgent_sends_recv_oob", "blocked (still after %d ms)", sp_wait_ms());
	else if (r == 1)
		RECORD("two_urgent_sends_recv_oob", "'%c' (of 'a' then 'b')", b);
	else
		RECORD("two_urgent_sends_recv_oob", "%s", sp_errno_name(errno));
}

/* 5. MSG_OOB makes only the last byte urgent. */
SP_TEST(oob_send_makes_only_the_last_byte_urgent, "FLAG-OOB-URGENT-BYTE", SP_INET,
	.write = SP_FLAG_WRITES, .read = SP_FLAG_READS)
{
	char buf[16], b;

	int c, s;
	struct sp_capture cap;
	struct sp_got got;

	sp_tcp_pair(ctx, &c, &s);
	if (ctx->first) {
		/* Record: recv(MSG_OOB) with nothing urgent (bounded). */
		errno = 0;
		ssize_t r = BOUNDED(recv(s, &b, 1, MSG_OOB));
		if (sp_bound_expired())
			RECORD("recv_oob_with_nothing_urgent", "blocked (still after %d ms)",
			       sp_wait_ms());
		else
			RECORD("recv_oob_with_nothing_urgent", "%zd (%s)", r,
			       r < 0 ? sp_errno_name(errno) : "a byte");
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, c, "C");
		sp_capture_name_fd(&cap, s, "S");
	}
	ASSERT_EQ(3, send(c, "123", 3, 0));
	ASSERT_EQ(2, sp_io_out(ctx->write, c, "45", 2, MSG_OOB));
	wait_delivered(c, s, 4); /* "1234" before the mark */
	RECORD_ONCE("pollpri_on_urgent", "%s", sp_events_str(sp_poll(s, POLLPRI, 0)));
	b = 0;
	ssize_t got1 = MUST_RETURN(sp_io_recv(ctx->read, s, &b, 1, MSG_OOB, &got),
				   "%s(MSG_OOB) with an urgent byte delivered",
				   sp_io_in_name(ctx->read));
	if (got1 != 1)
		FAIL("%s(MSG_OOB) returns the urgent byte: got %zd (%s)", sp_io_in_name(ctx->read),
		     got1, got1 < 0 ? sp_errno_name(errno) : "no byte");
	ASSERT_TRUE(b == '5', "%s(MSG_OOB) returns the urgent byte '5': got '%c'",
		    sp_io_in_name(ctx->read), b);
	if (ctx->read == SP_IO_MSG)
		ASSERT_TRUE(got.msg_flags & MSG_OOB, "recvmsg marks the byte MSG_OOB (msg_flags 0x%x)",
			    got.msg_flags);
	/* Record: a second recv(MSG_OOB) of the same byte (bounded). */
	errno = 0;
	ssize_t r = BOUNDED(recv(s, &b, 1, MSG_OOB));
	if (ctx->first)
		RECORD("recv_oob_second_time", sp_bound_expired() ? "blocked" : "%zd (%s)", r,
		       r < 0 ? sp_errno_name(errno) : "a byte");
	/* The normal stream is "1234": '4' is not urgent, '5' is gone. */
	ASSERT_EQ(4, sp_read_all(s, buf, 4));
	ASSERT_MEM_EQ("1234", buf, 4);
	ASSERT_ERRNO(recv(s, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	if (ctx->first) {
		wire_urgent_pointer(&cap, "C>S P.3, C>S P.");
		sp_capture_stop(&cap);
	}
	close(c);
	close(s);

	if (ctx->first)
		record_two_urgent_sends(ctx);
}

static volatile sig_atomic_t sigurgs;
static void count_sigurg(int sig) { (void)sig; sigurgs++; }
static int got_sigurg(void *unused) { (void)unused; return sigurgs > 0; }

/* 6. The socket's owner gets SIGURG when urgent data arrives, sent with
 * MSG_OOB through every call that takes flags (.write). */
SP_TEST(oob_arrival_sends_sigurg_to_the_owner, "FLAG-OOB-SIGURG", SP_INET,
	.write = SP_FLAG_WRITES)
{
	int c, s, c2, s2, api = ctx->write;
	const char *name = sp_io_out_name(api);
	struct sigaction sa = { .sa_handler = count_sigurg };

	ASSERT_SYS(sigaction(SIGURG, &sa, NULL));
	/* Without an owner, nobody is signalled. */
	sp_tcp_pair(ctx, &c2, &s2);
	sigurgs = 0;
	ASSERT_EQ(1, sp_io_out(api, c2, "u", 1, MSG_OOB));
	wait_delivered(c2, s2, 0);
	ASSERT_TRUE(sigurgs == 0, "no SIGURG without an owner: it came %d times after %s(MSG_OOB)",
		    (int)sigurgs, name);

	/* With F_SETOWN, the owner is. */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(fcntl(s, F_SETOWN, getpid()));
	ASSERT_EQ(getpid(), fcntl(s, F_GETOWN));
	ASSERT_EQ(0, sigurgs);
	ASSERT_EQ(3, sp_io_out(api, c, "abc", 3, 0)); /* normal data: no signal */
	ASSERT_EQ(3, sp_wait_inq(s, 3));
	ASSERT_TRUE(sigurgs == 0, "no SIGURG for normal data sent with %s(): it came %d times",
		    name, (int)sigurgs);
	ASSERT_EQ(1, sp_io_out(api, c, "u", 1, MSG_OOB));
	wait_delivered(c, s, 0);
	RECORD_ONCE("pollpri_on_urgent", "%s", sp_events_str(sp_poll(s, POLLPRI, 0)));
	sp_wait_until(got_sigurg, NULL, sp_wait_ms());
	ASSERT_TRUE(sigurgs >= 1, "SIGURG reaches the owner: it came 0 times within %d ms of the "
		    "delivery of the urgent byte sent with %s(MSG_OOB)", sp_wait_ms(), name);
	RECORD_ONCE("sigurg_count", "%d", (int)sigurgs);
	signal(SIGURG, SIG_DFL);
	close(c);
	close(s);
	close(c2);
	close(s2);
}

static int atmark(int fd)
{
	int m = -1;
	int a = (int)ASSERT_SYS(sockatmark(fd));
	ASSERT_SYS(ioctl(fd, SIOCATMARK, &m));
	ASSERT_TRUE(a == m, "sockatmark (%d) and SIOCATMARK (%d) agree", a, m);
	return a;
}

/* "123", urgent "45", "67" from c; delivered to s. */
static void send_with_mark(int c, int s)
{
	ASSERT_EQ(3, send(c, "123", 3, 0));
	ASSERT_EQ(2, send(c, "45", 2, MSG_OOB));
	ASSERT_EQ(2, send(c, "67", 2, 0));
	wait_delivered(c, s, 4); /* "1234" before the mark */
}

/* recv(MSG_OOB) through the read call when it takes flags, else through
 * recv() (read, readv, splice and io_uring READ/READV have no flags). */
static ssize_t recv_oob(int api, int fd, char *b)
{
	return sp_io_takes_flags(api) ? sp_io_in(api, fd, b, 1, MSG_OOB) : recv(fd, b, 1, MSG_OOB);
}

static const char *oob_name(int api)
{
	return sp_io_takes_flags(api) ? sp_io_in_name(api) : "recv";
}

/* 7. A read stops at the urgent mark: the normal reads through every read
 * call (.read), the urgent byte through the same call where it takes
 * MSG_OOB. */
SP_TEST(read_stops_at_the_urgent_mark, "FLAG-OOB-ATMARK", SP_INET, .read = SP_EVERY_READ)
{
	int c, s, api = ctx->read;
	const char *name = sp_io_in_name(api);
	char buf[16], b;

	sp_tcp_pair(ctx, &c, &s);
	send_with_mark(c, s);
	ASSERT_EQ(0, atmark(s));
	memset(buf, 0, sizeof(buf));
	ssize_t r = MUST_RETURN(sp_io_in(api, s, buf, sizeof(buf), 0),
				"%s() with \"1234\", the urgent '5' and \"67\" queued", name);
	ASSERT_TRUE(r == 4 && !memcmp(buf, "1234", 4), "%s() with \"1234\", the urgent '5' and "
		    "\"67\" queued returns \"1234\", stopping at the mark (got %zd: \"%.*s\")",
		    name, r, (int)(r > 0 ? r : 0), buf);
	ASSERT_EQ(1, atmark(s));
	b = 0;
	ASSERT_EQ(1, MUST_RETURN(recv_oob(api, s, &b), "%s(MSG_OOB) at the mark", oob_name(api)));
	ASSERT_TRUE(b == '5', "%s(MSG_OOB) at the mark returns '5' (got '%c')", oob_name(api), b);
	memset(buf, 0, sizeof(buf));
	r = MUST_RETURN(sp_io_in(api, s, buf, sizeof(buf), 0), "%s() after the urgent byte", name);
	if (api == SP_IO_SPLICE && r != 2) {
		/* Linux's splice (tcp_read_sock) stops at an urgent byte even
		 * once recv(MSG_OOB) took it: 0, as at EOF (6.18). Whether the
		 * catalogue's "next read" covers splice is open: recorded. */
		RECORD_ONCE("splice_after_urgent_byte_taken", "%zd%s%s", r, r < 0 ? " " : "",
			    r < 0 ? sp_errno_name(errno) : "");
		r = MUST_RETURN(read(s, buf, sizeof(buf)), "read() after the urgent byte");
		name = "read";
	}
	ASSERT_TRUE(r == 2 && !memcmp(buf, "67", 2), "%s() after the urgent byte was taken returns "
		    "\"67\" (got %zd: \"%.*s\")", name, r, (int)(r > 0 ? r : 0), buf);
	ASSERT_EQ(0, atmark(s));
	close(c);
	close(s);
	if (!ctx->first)
		return;

/* Record: an urgent byte never read out of band. */
	sp_tcp_pair(ctx, &c, &s);
	send_with_mark(c, s);
	ASSERT_EQ(4, read(s, buf, sizeof(buf)));
	ASSERT_EQ(1, atmark(s));
	memset(buf, 0, sizeof(buf));
	r = read(s, buf, sizeof(buf));
	RECORD("unread_urgent_byte_dropped_from_stream", "%s (read \"%.*s\")",
	       r == 2 && !memcmp(buf, "67", 2) ? "yes" : "no", (int)(r > 0 ? r : 0), buf);
	close(c);
	close(s);

	/* Record: SO_OOBINLINE. */
	sp_tcp_pair(ctx, &c, &s);
	int one = 1;
	ASSERT_SYS(setsockopt(s, SOL_SOCKET, SO_OOBINLINE, &one, sizeof(one)));
	send_with_mark(c, s);
	errno = 0;
	r = MUST_RETURN(recv(s, &b, 1, MSG_OOB), "recv(MSG_OOB) with SO_OOBINLINE");
	int err = errno;
	char got[16] = "";
	size_t n = 0;
	for (int i = 0; i < 4 && n < 7; i++) {
		r = recv(s, got + n, sizeof(got) - 1 - n, MSG_DONTWAIT);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	RECORD("oobinline", "stream \"%s\", recv(MSG_OOB) %s", got,
	       err ? sp_errno_name(err) : "returned a byte");
}

/* The vectored calls, each with the caller's own iovec: writev/readv,
 * sendmsg/recvmsg, sendmmsg/recvmmsg (one message) and io_uring
 * WRITEV/READV, SENDMSG/RECVMSG. pwritev2/preadv2 are left out: on a
 * socket (offset -1) they are readv/writev's own path with RWF_* flags,
 * none of which speaks of buffers. */
#define VECTORED SP_VALUES(SP_IO_VEC, SP_IO_MSG, SP_IO_MMSG, SP_IO_URING_VEC, SP_IO_URING_MSG)

/* 8. writev/sendmsg (.write) gather their buffers into one write. */
SP_TEST(writev_gathers_buffers_in_order, "FLAG-WRITEV-GATHER", SP_INET, .write = VECTORED)
{
	int c, s, api = ctx->write;
	const char *name = sp_io_out_name(api);
	char buf[32];
	struct iovec iov[3] = { { "ab", 2 }, { "cde", 3 }, { "f", 1 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 3 };
	struct sp_capture cap;

	sp_tcp_pair(ctx, &c, &s);
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, c, "C");
		sp_capture_name_fd(&cap, s, "S");
	}
	ASSERT_TRUE(MUST_RETURN(sp_io_iov(api, 1, c, &mh, 0), "%s() of 2+3+1 bytes", name) == 6,
		    "%s() of \"ab\"+\"cde\"+\"f\" on TCP returns 6", name);
	ASSERT_EQ(6, sp_read_all(s, buf, 6));
	ASSERT_TRUE(!memcmp(buf, "abcdef", 6), "%s() of \"ab\"+\"cde\"+\"f\": the peer reads "
		    "\"abcdef\" (got \"%.6s\")", name, buf);
	if (ctx->first) {
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "C>S P.6");      /* one write, one segment */
			WIRE_LACKS(&cap, "C>S P.2");
		}
		sp_capture_stop(&cap);
	}
	ASSERT_ERRNO(recv(s, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);

	/* UDP: one datagram of the summed length, addressed (the message
	 * calls) and connected. */
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), sent = 0;
	struct sockaddr_storage to;
	socklen_t tl = sizeof(to);
	ASSERT_SYS(getsockname(rx, (struct sockaddr *)&to, &tl));
	if (sp_io_names_peer(api)) {
		mh.msg_name = &to;
		mh.msg_namelen = tl;
		ASSERT_TRUE(sp_io_iov(api, 1, tx, &mh, 0) == 6, "%s() of 2+3+1 bytes to an address "
			    "on UDP returns 6", name);
		mh.msg_name = NULL;
		mh.msg_namelen = 0;
		sent++;
	}
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	ssize_t w = sp_io_iov(api, 1, tx, &mh, 0);
	/* A vectored write on a connected UDP socket needs the connect() to
	 * have set the destination: UDP-CONNECTED's Must, a mechanism here. */
	if (w < 0 && (errno == EDESTADDRREQ || errno == ENOTCONN))
		BROKEN_NEEDS("UDP-CONNECTED", "%s() on a connected UDP socket failed with %s", name,
			     sp_errno_name(errno));
	ASSERT_TRUE(w == 6, "%s() of 2+3+1 bytes on a connected UDP socket returns 6 (got %zd)",
		    name, w);
	sent++;
	for (int i = 0; i < sent; i++) {
		EXPECT_EVENTS(rx, POLLIN, POLLIN, "datagram %d arrives", i + 1);
		memset(buf, 0, sizeof(buf));
		ssize_t n = recv(rx, buf, sizeof(buf), 0);
		if (n == 12)
			BROKEN_NEEDS("UDP-BOUNDARY", "recv() with two datagrams of 6 queued returned 12: "
				     "they were merged");
		ASSERT_TRUE(n == 6 && !memcmp(buf, "abcdef", 6), "one %s() of 2+3+1 bytes is one "
			    "datagram \"abcdef\" (got %zd bytes: \"%.*s\")", name, n,
			    (int)(n > 0 ? n : 0), buf);
	}
	ASSERT_ERRNO(recv(rx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	close(c);
	close(s);
	close(rx);
	close(tx);
}

/* 9. readv/recvmsg (.read) scatter into their buffers in order. */
SP_TEST(readv_scatters_in_order, "FLAG-READV-SCATTER", SP_INET, .read = VECTORED)
{
	int api = ctx->read;
	const char *name = sp_io_in_name(api);
	int c, s;
	char a[8], b[8];
	struct iovec iov[2] = { { a, 2 }, { b, 4 } };
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

	sp_tcp_pair(ctx, &c, &s);
	ASSERT_EQ(6, write(c, "abcdef", 6));
	ASSERT_EQ(6, sp_wait_inq(s, 6));
	ASSERT_TRUE(MUST_RETURN(sp_io_iov(api, 0, s, &mh, 0), "%s() into 2+4 bytes", name) == 6,
		    "%s() into 2+4 bytes with 6 queued returns 6", name);
	ASSERT_TRUE(!memcmp(a, "ab", 2) && !memcmp(b, "cdef", 4), "%s() of \"abcdef\" into 2+4 "
		    "bytes fills \"ab\" then \"cdef\" (got \"%.2s\" and \"%.4s\")", name, a, b);
	ASSERT_EQ(6, write(c, "ghijkl", 6));
	ASSERT_EQ(6, sp_wait_inq(s, 6));
	ASSERT_EQ(6, MUST_RETURN(sp_io_iov(api, 0, s, &mh, 0), "%s() into 2+4 bytes", name));
	ASSERT_TRUE(!memcmp(a, "gh", 2) && !memcmp(b, "ijkl", 4), "%s() of \"ghijkl\" into 2+4 "
		    "bytes fills \"gh\" then \"ijkl\" (got \"%.2s\" and \"%.4s\")", name, a, b);

	/* UDP: 10 bytes into 3+3 fill both and drop the rest. */
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tl = sizeof(to);
	ASSERT_SYS(getsockname(rx, (struct sockaddr *)&to, &tl));
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	iov[1].iov_len = 3;
	iov[0].iov_len = 3;
	ASSERT_EQ(10, send(tx, "0123456789", 10, 0));
	ASSERT_EQ(3, send(tx, "XYZ", 3, 0));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "a datagram arrives");
	mh.msg_flags = 0;
	ssize_t r = MUST_RETURN(sp_io_iov(api, 0, rx, &mh, 0), "%s() into 3+3 bytes", name);
	ASSERT_TRUE(r == 6, "%s() of a 10-byte datagram into 3+3 bytes returns 6 (got %zd)", name, r);
	ASSERT_TRUE(!memcmp(a, "012", 3) && !memcmp(b, "345", 3), "%s() of \"0123456789\" into "
		    "3+3 bytes fills \"012\" then \"345\" (got \"%.3s\" and \"%.3s\")", name, a, b);
	if (api != SP_IO_VEC && api != SP_IO_URING_VEC) /* recorded: UDP-TRUNCATE's Must */
		RECORD_ONCE("scatter_recvmsg_flags_msg_trunc", "%s",
			    mh.msg_flags & MSG_TRUNC ? "yes" : "no");
	memset(a, 0, sizeof(a));
	/* the next datagram, not the rest */
	r = MUST_RETURN(sp_io_iov(api, 0, rx, &mh, 0), "%s() with a second datagram queued", name);
	ASSERT_TRUE(r == 3 && !memcmp(a, "XYZ", 3), "the next %s() returns the next datagram "
		    "\"XYZ\", not the dropped rest (got %zd: \"%.*s\")", name, r,
		    (int)(r > 0 && r <= 3 ? r : 0), a);
	ASSERT_ERRNO(recv(rx, a, sizeof(a), MSG_DONTWAIT), EAGAIN);
	close(c);
	close(s);
	close(rx);
	close(tx);
}

/* 10. Linux: MSG_TRUNC gives a UDP datagram's real length. */
SP_TEST(trunc_flag_returns_the_real_datagram_length, "FLAG-TRUNC-UDP", SP_INET,
	.read = SP_FLAG_READS)
{
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tl = sizeof(to);
	char buf[16];

	ASSERT_SYS(getsockname(rx, (struct sockaddr *)&to, &tl));
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	int how = ctx->read;
	struct sp_got got;
	ASSERT_EQ(10, send(tx, "0123456789", 10, 0));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the datagram arrives");
	/* The size of the next datagram, left queued. */
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_in(how, rx, buf, 0, MSG_PEEK | MSG_TRUNC),
				"%s(MSG_PEEK|MSG_TRUNC) with a datagram queued",
				sp_io_in_name(how));
	if (r < 0 && (errno == EINVAL || errno == EOPNOTSUPP)) {
		/* A stack without the flag is not supported; one whose recv()
		 * takes it while this path refuses it disagrees with itself. */
		int e = errno;
		char one[16];
		ssize_t via_recv = recv(rx, one, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
		if (how == SP_IO_RECV || via_recv != 10)
			UNSUPPORTED("%s(MSG_TRUNC) on UDP (%s)", sp_io_in_name(how), sp_errno_name(e));
		FAIL("%s(buf, 0, MSG_PEEK|MSG_TRUNC) with a 10-byte datagram queued: expected 10, "
		     "observed -1 (%s); recv() with the same flags gives 10", sp_io_in_name(how),
		     sp_errno_name(e));
	}
	RECORD_ONCE("peek_trunc_zero_buffer", "%zd", r);
	ASSERT_TRUE(r == 10, "%s(buf, 0, MSG_PEEK|MSG_TRUNC) gives the datagram's size 10 (got %zd)",
		    sp_io_in_name(how), r);
	ASSERT_EQ(10, sp_io_in(how, rx, buf, 0, MSG_PEEK | MSG_TRUNC)); /* still there */
	/* The real length with a 4-byte buffer, and the datagram is gone. */
	memset(buf, 0, sizeof(buf));
	r = sp_io_recv(how, rx, buf, 4, MSG_TRUNC, &got);
	ASSERT_TRUE(r == 10, "%s(buf, 4, MSG_TRUNC) returns the real length 10 (got %zd)",
		    sp_io_in_name(how), r);
	ASSERT_MEM_EQ("0123", buf, 4);
	ASSERT_EQ(0, buf[4]);                     /* no more than 4 copied */
	if (how == SP_IO_MSG) /* recorded: the flag is UDP-TRUNCATE's Must */
		RECORD("trunc_recvmsg_flags_msg_trunc", "%s",
		       got.msg_flags & MSG_TRUNC ? "yes" : "no");
	ASSERT_ERRNO(sp_io_in(how, rx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
}

SP_MAIN("flag")
