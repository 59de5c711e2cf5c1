/*
 * ioctl.c - socket ioctls, zero-length and peeked reads (catalogue part 3,
 * "ioctls" and "Zero-length and peeked reads"; ioctl_list(2), tcp(7),
 * udp(7), unix(7), recv(2)).
 *
 *  1. IOCTL-INQ-STREAM        FIONREAD (= SIOCINQ) on a connected stream:
 *                             0 when empty, 30 after three writes of 10,
 *                             18 after 12 are read, 0 at the peer's FIN
 *                             (TCP over the family, v4-mapped TCP, and an
 *                             AF_UNIX socketpair, where 30 holds at once).
 *  2. IOCTL-INQ-DGRAM         Linux: FIONREAD and SIOCINQ on UDP and on an
 *                             AF_UNIX datagram socket give the size of the
 *                             next datagram (10 with 10 and 20 queued, then
 *                             20, then 0), not the total.
 *  3. IOCTL-OUTQ              Linux: SIOCOUTQ (= TIOCOUTQ) on TCP: 0 idle,
 *                             0 < n <= written while the peer reads nothing,
 *                             0 once the peer read it all and replied.
 *  4. IOCTL-FIONBIO           FIONBIO with a pointer to non-zero (1, 2) sets
 *                             O_NONBLOCK (F_GETFL, recv EAGAIN at once), 0
 *                             clears it; the flag is the open file
 *                             description's: a dup() shares it both ways.
 *  5. RECV-ZERO-LENGTH        a zero-length datagram (UDP, AF_UNIX) is a
 *                             message received as 0, with the sender's
 *                             address, exactly once; recvmsg into 0 bytes
 *                             consumes a datagram with MSG_TRUNC; a
 *                             zero-length stream write sends nothing, and a
 *                             zero-length TCP recv returns 0 at once and
 *                             leaves the data.
 *  6. RECV-PEEK-ACROSS-WRITES MSG_PEEK returns everything queued, across
 *                             writes (recv, recvfrom, recvmsg), and leaves
 *                             it; Linux: SO_PEEK_OFF on an AF_UNIX stream
 *                             makes successive peeks advance (its own item,
 *                             so a stack without SO_PEEK_OFF is
 *                             "unsupported" there and still checked here).
 *
 * Parameters: the stream kinds (TCP, v4-mapped TCP, AF_UNIX) of items 1 and
 * 6; the send and receive calls of item 5 (write/send/sendto/sendmsg into
 * read/recv/recvfrom/recvmsg) and the receive calls that take MSG_PEEK in
 * item 6 (recv/recvfrom/recvmsg).
 *
 * "Linux:" points are unsupported, not failed, where the stack refuses the
 * request itself (ENOTTY, EINVAL, EOPNOTSUPP, ENOPROTOOPT); a value that differs from
 * the catalogue's is a failure.
 *
 * Platform-defined (recorded): FIONREAD on a listener and on a new socket,
 * with a zero-length datagram at the head, on SOCK_SEQPACKET; SIOCOUTQ's
 * value, SIOCOUTQNSD, SIOCOUTQ on UDP and AF_UNIX; a zero-length recv on
 * an empty TCP socket; a zero-length SEQPACKET message; SO_PEEK_OFF on TCP
 * and UDP and its value after a normal read.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/uio.h>

/* The socket ioctls (linux/sockios.h, which a musl build may lack): SIOCINQ
 * and SIOCOUTQ are FIONREAD and TIOCOUTQ by definition. */
#ifndef SIOCINQ
#define SIOCINQ FIONREAD
#endif
#ifndef SIOCOUTQ
#define SIOCOUTQ TIOCOUTQ
#endif
#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B
#endif

/* The ioctl's own refusal: the request is not there at all. */
static int refused(int e)
{
	return e == ENOTTY || e == EINVAL || e == EOPNOTSUPP || e == ENOPROTOOPT;
}

/* FIONREAD's value (the ioctl must succeed). */
static int inq(int fd, unsigned long req, const char *what)
{
	int n = -1;
	if (ioctl(fd, req, &n) < 0)
		FAIL("ioctl(%s) failed with %s, expected a byte count", what, sp_errno_name(errno));
	return n;
}

/* ---- 1. IOCTL-INQ-STREAM --------------------------------------------------- */

/* The ID whose Must says a stream read returns every queued byte it has
 * room for and leaves the rest queued, for this kind of stream. */
static const char *stream_boundary_id(int kind, int split)
{
	if (kind == SP_KIND_UNIX)
		return "UNIX-STREAM-NO-BOUNDARY";
	return split ? "TCP-BOUNDARY-SPLIT" : "TCP-BOUNDARY-COALESCE";
}

static void check_stream_inq(int kind, int c, int s)
{
	char buf[32];

	if (inq(s, FIONREAD, "FIONREAD") != 0)
		FAIL("FIONREAD with nothing queued reads %d, expected 0",
		     inq(s, FIONREAD, "FIONREAD"));
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(10, send(c, "0123456789", 10, MSG_NOSIGNAL));
	/* The bytes travel: FIONREAD is polled until it shows them (bounded). */
	int got = sp_wait_inq(s, 30);
	if (got != 30)
		FAIL("FIONREAD after three writes of 10 reads %d, expected 30", got);
	ASSERT_EQ(30, inq(s, SIOCINQ, "SIOCINQ"));
	/* recv(12) of the 30 bytes: 12, the rest left queued (a mechanism
	 * here, another ID's Must). */
	ssize_t r = recv(s, buf, 12, 0);
	if (r > 0 && r < 12)
		BROKEN_NEEDS(stream_boundary_id(kind, 0), "recv(12) with 30 bytes queued returned "
			     "%zd", r);
	ASSERT_EQ(12, r);
	got = inq(s, FIONREAD, "FIONREAD");
	if (got != 18) {
		char peek[32];
		ssize_t left = recv(s, peek, sizeof(peek), MSG_PEEK | MSG_DONTWAIT);
		if (got == 0 && left < 0)
			BROKEN_NEEDS(stream_boundary_id(kind, 1), "recv(12) of 30 queued bytes left "
				     "none queued (a peek finds nothing either): the rest was dropped");
		FAIL("FIONREAD after 12 of 30 bytes were read reads %d, expected 18 (a peek finds "
		     "%zd)", got, left);
	}
	ASSERT_EQ(18, inq(s, SIOCINQ, "SIOCINQ"));
	ASSERT_EQ(18, recv(s, buf, sizeof(buf), 0));
	ASSERT_SYS(shutdown(c, SHUT_WR));
	if (!(sp_poll(s, POLLIN, sp_wait_ms()) & POLLIN))
		BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "the peer's FIN arrives within %d ms", sp_wait_ms());
	got = inq(s, FIONREAD, "FIONREAD");
	if (got != 0)
		FAIL("FIONREAD after the peer's FIN with no data left reads %d, expected 0", got);
	ASSERT_EQ(0, recv(s, buf, sizeof(buf), 0)); /* it was the FIN */
}

/* 1. FIONREAD counts what is queued on a connected stream. */
SP_TEST(fionread_counts_queued_stream_bytes, "IOCTL-INQ-STREAM", SP_INET, .kind = SP_EVERY_KIND)
{
	int c, s;
	sp_pair(ctx, &c, &s);
	check_stream_inq(ctx->kind, c, s);
	close(c);
	close(s);
	if (!ctx->first)
		return;
	/* An AF_UNIX stream has the bytes the moment the writes return. */
	int sv[2], n = -1;
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(10, write(sv[0], "abcdefghij", 10));
	ASSERT_SYS(ioctl(sv[1], FIONREAD, &n));
	if (n != 30)
		FAIL("AF_UNIX stream: FIONREAD right after three writes of 10 reads %d, expected 30",
		     n);
	close(sv[0]);
	close(sv[1]);

	int l = sp_tcp_listener(ctx, 0), u = sp_socket(ctx, SOCK_STREAM);
	n = -1;
	if (ioctl(l, FIONREAD, &n) < 0)
		RECORD("fionread_listener", "fails with %s", sp_errno_name(errno));
	else
		RECORD("fionread_listener", "%d", n);
	n = -1;
	if (ioctl(u, FIONREAD, &n) < 0)
		RECORD("fionread_unconnected", "fails with %s", sp_errno_name(errno));
	else
		RECORD("fionread_unconnected", "%d", n);
	close(l);
	close(u);
}

/* ---- 2. IOCTL-INQ-DGRAM ---------------------------------------------------- */

/* FIONREAD and SIOCINQ on a datagram socket, or "unsupported". */
static int dgram_inq(int fd, unsigned long req, const char *what, const char *kind)
{
	int n = -1;
	if (ioctl(fd, req, &n) < 0) {
		if (refused(errno))
			UNSUPPORTED("%s on %s sockets (%s)", what, kind, sp_errno_name(errno));
		FAIL("%s: ioctl(%s) failed with %s", kind, what, sp_errno_name(errno));
	}
	return n;
}

/* With datagrams of 10 and 20 queued on rx: 10, then 20, then 0. */
static void check_next_datagram_size(const char *kind, int rx, int both_reqs)
{
	char buf[64];

	for (int r = 0; r < 1 + both_reqs; r++) {
		unsigned long req = r ? SIOCINQ : FIONREAD;
		const char *what = r ? "SIOCINQ" : "FIONREAD";
		int n = dgram_inq(rx, req, what, kind);
		if (n != 10)
			FAIL("%s: %s with datagrams of 10 and 20 queued reads %d, expected 10 (the "
			     "next datagram, not the total)", kind, what, n);
	}
	/* One datagram per recv() is UDP-BOUNDARY's (UNIX-DGRAM-BOUNDARY's)
	 * Must, a mechanism here. */
	ssize_t r = recv(rx, buf, sizeof(buf), 0);
	if (r > 10)
		BROKEN_NEEDS(strcmp(kind, "UDP") ? "UNIX-DGRAM-BOUNDARY" : "UDP-BOUNDARY",
			     "%s: recv() of the next datagram (10 bytes) returned %zd: the datagrams "
			     "were merged", kind, r);
	ASSERT_EQ(10, r);
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "%s: the 20-byte datagram is "
		    "queued", kind);
	for (int r = 0; r < 1 + both_reqs; r++) {
		int n = dgram_inq(rx, r ? SIOCINQ : FIONREAD, r ? "SIOCINQ" : "FIONREAD", kind);
		if (n != 20)
			FAIL("%s: %s after the 10-byte datagram was received reads %d, expected 20",
			     kind, r ? "SIOCINQ" : "FIONREAD", n);
	}
	ASSERT_EQ(20, recv(rx, buf, sizeof(buf), 0));
	for (int r = 0; r < 1 + both_reqs; r++) {
		int n = dgram_inq(rx, r ? SIOCINQ : FIONREAD, r ? "SIOCINQ" : "FIONREAD", kind);
		if (n != 0)
			FAIL("%s: %s on an empty queue reads %d, expected 0", kind,
			     r ? "SIOCINQ" : "FIONREAD", n);
	}
}

SP_TEST(fionread_gives_next_datagram_size, "IOCTL-INQ-DGRAM", SP_INET)
{
	char buf[32];
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(rx));
	static char twenty[20] = "abcdefghijklmnopqrst";

	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	ASSERT_EQ(10, send(tx, "0123456789", 10, 0));
	ASSERT_EQ(20, send(tx, twenty, 20, 0));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "UDP: the datagrams arrive");
	check_next_datagram_size("UDP", rx, 1);

	/* Record: a zero-length datagram at the head, 7 bytes behind it. */
	ASSERT_EQ(0, send(tx, "", 0, 0));
	ASSERT_EQ(7, send(tx, "1234567", 7, 0));
	int ready = sp_poll(rx, POLLIN, sp_wait_ms());
	int n = -1;
	int ir = ioctl(rx, FIONREAD, &n);
	ssize_t first = recv(rx, buf, sizeof(buf), MSG_DONTWAIT);
	RECORD("fionread_zero_length_head", "%d%s%s (poll %s; the first receive gets %zd bytes)", n,
	       ir < 0 ? ", fails with " : "", ir < 0 ? sp_errno_name(errno) : "",
	       ready & POLLIN ? "POLLIN" : "-", first);
	close(tx);
	close(rx);

	/* AF_UNIX datagrams: queued the moment send returns. */
	int sv[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	ASSERT_EQ(10, send(sv[0], "0123456789", 10, 0));
	ASSERT_EQ(20, send(sv[0], twenty, 20, 0));
	check_next_datagram_size("AF_UNIX datagram", sv[1], 0);
	close(sv[0]);
	close(sv[1]);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0) {
		ASSERT_EQ(10, send(sv[0], "0123456789", 10, 0));
		ASSERT_EQ(20, send(sv[0], twenty, 20, 0));
		n = -1;
		if (ioctl(sv[1], FIONREAD, &n) < 0)
			RECORD("fionread_seqpacket", "fails with %s", sp_errno_name(errno));
		else
			RECORD("fionread_seqpacket", "%d with 10 and 20 queued", n);
		close(sv[0]);
		close(sv[1]);
	} else {
		RECORD("fionread_seqpacket", "no SOCK_SEQPACKET (%s)", sp_errno_name(errno));
	}
}

/* ---- 3. IOCTL-OUTQ --------------------------------------------------------- */

static int outq(int fd, unsigned long req, const char *what)
{
	int n = -1;
	if (ioctl(fd, req, &n) < 0) {
		if (refused(errno))
			UNSUPPORTED("%s on TCP sockets (%s)", what, sp_errno_name(errno));
		FAIL("ioctl(%s) failed with %s", what, sp_errno_name(errno));
	}
	return n;
}

SP_TEST(siocoutq_counts_unacknowledged_bytes, "IOCTL-OUTQ", SP_INET)
{
	static char chunk[4096];
	int small = 4096, c, s, n;
	int l = sp_tcp_listener(ctx, small);

	c = sp_tcp_connect(ctx, l);
	s = (int)ASSERT_SYS(accept(l, NULL, NULL));
	close(l);
	n = outq(c, SIOCOUTQ, "SIOCOUTQ");
	if (n != 0)
		FAIL("SIOCOUTQ on an idle connection reads %d, expected 0", n);

	/* Fill: non-blocking writes until EAGAIN; the peer reads nothing. */
	ASSERT_SYS(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
	sp_set_nonblock(c, 1);
	long written = 0;
	for (;;) {
		ssize_t w = send(c, chunk, sizeof(chunk), MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			break;
		ASSERT_TRUE(w > 0, "send before the buffers fill returns bytes (%zd, %s)", w,
			    sp_errno_name(errno));
		written += w;
		REQUIRE(written < (64L << 20), "the send buffer fills (64 MiB went without EAGAIN)");
	}
	n = outq(c, SIOCOUTQ, "SIOCOUTQ");
	int t = outq(c, TIOCOUTQ, "TIOCOUTQ");
	if (n <= 0 || n > written)
		FAIL("SIOCOUTQ with %ld bytes written and none read reads %d, expected more than 0 "
		     "and at most %ld", written, n, written);
	ASSERT_EQ(n, t);
	int nsd = -1;
	if (ioctl(c, SIOCOUTQNSD, &nsd) < 0)
		RECORD("siocoutqnsd", "fails with %s", sp_errno_name(errno));
	else
		RECORD("siocoutqnsd", "%d of %d unacknowledged not yet sent", nsd, n);
	RECORD("siocoutq_full", "%d of %ld bytes written", n, written);

	/* The peer reads everything and replies: nothing is unacknowledged. */
	sp_set_nonblock(c, 0);
	for (long got = 0; got < written;) {
		/* The rest still queued after a read that filled its buffer is
		 * TCP-BOUNDARY-SPLIT's; poll() reporting it, MUX-READABLE-DATA's:
		 * mechanisms here. */
		if (!(sp_poll(s, POLLIN, sp_wait_ms()) & POLLIN)) {
			int inq = -1;
			if (ioctl(s, FIONREAD, &inq) == 0 && inq > 0)
				BROKEN_NEEDS("MUX-READABLE-DATA", "poll() does not report the peer "
					     "readable with %d bytes queued", inq);
			if (got > 0 && inq == 0)
				BROKEN_NEEDS("TCP-BOUNDARY-SPLIT", "the peer read %ld of the %ld bytes "
					     "written and the rest is gone (nothing queued)", got, written);
		}
		EXPECT_EVENTS(s, POLLIN, POLLIN, "the peer has data to read "
			    "(%ld of %ld read)", got, written);
		ssize_t r = recv(s, chunk, sizeof(chunk), MSG_DONTWAIT);
		if (r < 0 && errno == EAGAIN)
			continue;
		ASSERT_TRUE(r > 0, "the peer reads (%zd, %s)", r, sp_errno_name(errno));
		got += r;
	}
	ASSERT_EQ(1, send(s, "r", 1, MSG_NOSIGNAL));
	char reply;
	EXPECT_EVENTS(c, POLLIN, POLLIN, "the reply arrives");
	ASSERT_EQ(1, recv(c, &reply, 1, 0));
	n = outq(c, SIOCOUTQ, "SIOCOUTQ");
	if (n != 0)
		FAIL("SIOCOUTQ once the peer read everything and its reply arrived reads %d, "
		     "expected 0", n);
	ASSERT_EQ(0, outq(c, TIOCOUTQ, "TIOCOUTQ"));
	close(c);
	close(s);

	/* Records: UDP after a send; AF_UNIX stream with 100 unread bytes. */
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(rx));
	ASSERT_EQ(5, sendto(tx, "hello", 5, 0, (struct sockaddr *)&to, tl));
	n = -1;
	if (ioctl(tx, SIOCOUTQ, &n) < 0)
		RECORD("siocoutq_udp", "fails with %s", sp_errno_name(errno));
	else
		RECORD("siocoutq_udp", "%d after a send", n);
	close(tx);
	close(rx);
	int sv[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_EQ(100, write(sv[0], chunk, 100));
	int before = -1, after = -1;
	int rb = ioctl(sv[0], SIOCOUTQ, &before);
	ASSERT_EQ(100, recv(sv[1], chunk, 100, 0));
	int ra = ioctl(sv[0], SIOCOUTQ, &after);
	if (rb < 0 || ra < 0)
		RECORD("siocoutq_unix", "fails with %s", sp_errno_name(errno));
	else
		RECORD("siocoutq_unix", "%d with 100 unread, %d once read", before, after);
	close(sv[0]);
	close(sv[1]);
}

/* ---- 4. IOCTL-FIONBIO ------------------------------------------------------- */

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Non-blocking as F_GETFL shows it and as recv() behaves. */
static void expect_nonblocking(int fd, const char *how)
{
	char c;
	ASSERT_TRUE(fcntl(fd, F_GETFL) & O_NONBLOCK, "F_GETFL shows O_NONBLOCK after %s", how);
	long m = sp_block_mark();
	errno = 0;
	ssize_t r = recv(fd, &c, 1, 0);
	if (r != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
		FAIL("recv() on an empty socket after %s returned %zd (%s), expected EAGAIN", how, r,
		     r < 0 ? sp_errno_name(errno) : "data");
	ASSERT_NO_BLOCK(m, "recv() on an empty socket after %s", how);
}

/* Blocking as F_GETFL shows it and as recv() behaves: with a 15 ms receive
 * timeout it waits (at least 10 ms) before EAGAIN. */
static void expect_blocking(int fd, const char *how)
{
	char c;
	struct timeval tv = { 0, 15000 }, none = { 0, 0 };
	ASSERT_TRUE(!(fcntl(fd, F_GETFL) & O_NONBLOCK), "F_GETFL shows O_NONBLOCK clear after %s",
		    how);
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	/* The timeout is TIMEO-RCVTIMEO's mechanism, the bound of this recv(). */
	struct timeval back = { -1, -1 };
	socklen_t bl = sizeof(back);
	if (getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &back, &bl) != 0 ||
	    (back.tv_sec == 0 && back.tv_usec == 0)) { /* kept, if rounded (Linux: to jiffies) */
		/* Not kept (gVisor hostinet): the recv() is bounded by a 15 ms
		 * watchdog signal instead (SIG-INTERRUPTS-SLEEP's mechanism);
		 * a blocking recv() is cut off by it, a non-blocking one is not. */
		ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none)));
		RECORD_ONCE("blocking_shown_by", "a 15 ms watchdog signal (SO_RCVTIMEO reads back "
			    "{%ld, %ld})", (long)back.tv_sec, (long)back.tv_usec);
		sp_watchdog(15);
		errno = 0;
		ssize_t rw = BOUNDED(recv(fd, &c, 1, 0));
		int err = errno, cut = sp_bound_expired();
		sp_watchdog(0);
		if (!cut)
			FAIL("recv() on an empty socket after %s returned %zd (%s), expected it to "
			     "block (until a 15 ms watchdog signal)", how, rw,
			     rw < 0 ? sp_errno_name(err) : "data");
		return;
	}
	long long t0 = now_ns();
	errno = 0;
	ssize_t r = recv(fd, &c, 1, 0);
	long long waited = (now_ns() - t0) / 1000000;
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none)));
	if (r != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
		FAIL("blocking recv() with a 15 ms SO_RCVTIMEO after %s returned %zd (%s), expected "
		     "EAGAIN at the timeout", how, r, r < 0 ? sp_errno_name(errno) : "data");
	if (waited < 10)
		FAIL("recv() after %s returned EAGAIN after %lld ms: it did not wait for its 15 ms "
		     "timeout, so the socket is still non-blocking", how, waited);
}

SP_TEST(fionbio_sets_and_clears_nonblocking_mode, "IOCTL-FIONBIO", SP_INET)
{
	int c, s, v;

	sp_tcp_pair(ctx, &c, &s);
	v = 1;
	ASSERT_SYS(ioctl(s, FIONBIO, &v));
	expect_nonblocking(s, "FIONBIO 1");
	v = 0;
	ASSERT_SYS(ioctl(s, FIONBIO, &v));
	expect_blocking(s, "FIONBIO 0");
	v = 2;
	ASSERT_SYS(ioctl(s, FIONBIO, &v));
	expect_nonblocking(s, "FIONBIO 2 (any non-zero value)");

	/* The open file description's flag: a dup() sees it and clears it. */
	int d = (int)ASSERT_SYS(dup(s));
	expect_nonblocking(d, "FIONBIO 2 on the original, seen through a dup()");
	v = 0;
	ASSERT_SYS(ioctl(d, FIONBIO, &v));
	expect_blocking(s, "FIONBIO 0 through a dup(), seen on the original");
	v = 1;
	ASSERT_SYS(ioctl(d, FIONBIO, &v));
	expect_nonblocking(s, "FIONBIO 1 through a dup(), seen on the original");
	/* And data still flows once it is set. */
	ASSERT_EQ(3, send(c, "abc", 3, MSG_NOSIGNAL));
	char buf[4];
	EXPECT_EVENTS(s, POLLIN, POLLIN, "data arrives");
	ASSERT_EQ(3, recv(s, buf, sizeof(buf), 0));
	close(d);
	close(c);
	close(s);
}

/* ---- 5. RECV-ZERO-LENGTH --------------------------------------------------- */

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return !memcmp(a, b, sizeof(struct sockaddr_in)) ||
		       (((const struct sockaddr_in *)a)->sin_port ==
			((const struct sockaddr_in *)b)->sin_port &&
			((const struct sockaddr_in *)a)->sin_addr.s_addr ==
			((const struct sockaddr_in *)b)->sin_addr.s_addr);
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port && !memcmp(&x->sin6_addr, &y->sin6_addr, 16);
}

/* A zero-length datagram, sent with the variant's call and received with
 * its call: readable, received as 0 (a bounded call), then the next
 * datagram is the next one and nothing more is queued. */
static void check_zero_length_datagram(const struct sp_ctx *ctx, const char *kind, int tx, int rx)
{
	const char *in = sp_io_in_name(ctx->read), *out = sp_io_out_name(ctx->write);
	char buf[16];
	errno = 0;
	ssize_t w = sp_io_send(ctx->write, tx, "", 0, MSG_NOSIGNAL, NULL, 0);
	/* The connected sender's destination is UDP-CONNECTED's, a mechanism. */
	if (w < 0 && errno == EDESTADDRREQ)
		BROKEN_NEEDS("UDP-CONNECTED", "%s: %s() of 0 bytes on a connected socket failed with "
			     "EDESTADDRREQ", kind, out);
	if (w != 0)
		FAIL("%s: %s() of 0 bytes returned %zd (%s), expected 0", kind, out, w,
		     w < 0 ? sp_errno_name(errno) : "more");
	if (!(sp_poll(rx, POLLIN, sp_wait_ms()) & POLLIN))
		FAIL("%s: a zero-length datagram (%s) does not make the receiver readable within "
		     "%d ms", kind, out, sp_wait_ms());
	ASSERT_EQ(3, send(tx, "nxt", 3, MSG_NOSIGNAL));
	errno = 0;
	ssize_t r = MUST_RETURN(sp_io_recv(ctx->read, rx, buf, sizeof(buf), 0, NULL),
				"%s() of a queued zero-length datagram", in);
	if (r != 0)
		FAIL("%s: %s() of a zero-length datagram returned %zd (%s), expected 0", kind, in, r,
		     r < 0 ? sp_errno_name(errno) : "data");
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "%s: the next datagram is queued",
		    kind);
	r = MUST_RETURN(sp_io_recv(ctx->read, rx, buf, sizeof(buf), 0, NULL),
			"%s() of the next datagram", in);
	if (r != 3 || memcmp(buf, "nxt", 3))
		FAIL("%s: the %s() after the zero-length datagram returned %zd, expected the next "
		     "3-byte datagram (the empty one is received exactly once)", kind, in, r);
	ASSERT_ERRNO(recv(rx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
}

/* 5. A zero-length datagram is a message; a zero-length stream write is nothing. */
SP_TEST(zero_length_datagram_is_a_message_not_eof, "RECV-ZERO-LENGTH", SP_INET,
	.write = SP_DGRAM_WRITES, .read = SP_DGRAM_READS)
{
	char buf[16];
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), sv[2];
	struct sockaddr_storage to, me, from;
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(rx)), ml = sizeof(me);

	/* Through the variant's calls: UDP (connected sender) and AF_UNIX. */
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	check_zero_length_datagram(ctx, "UDP", tx, rx);
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	check_zero_length_datagram(ctx, "AF_UNIX datagram", sv[0], sv[1]);
	close(sv[0]);
	close(sv[1]);
	close(tx);
	if (!ctx->first) {
		close(rx);
		return;
	}
	/* Once: the unconnected sendto()/recvfrom() pair with the sender's
	 * address, recvmsg() into no buffer, and the streams. */
	tx = sp_udp_bound(ctx);

	ASSERT_SYS(getsockname(tx, (struct sockaddr *)&me, &ml));
	/* UDP sendto() of 0 bytes; recvfrom() gets 0 and the sender. */
	ASSERT_EQ(0, sendto(tx, "", 0, 0, (struct sockaddr *)&to, tl));
	if (!(sp_poll(rx, POLLIN, sp_wait_ms()) & POLLIN))
		FAIL("UDP: a zero-length datagram does not make the receiver readable within %d ms",
		     sp_wait_ms());
	socklen_t fl = sizeof(from);
	memset(&from, 0, sizeof(from));
	ssize_t r = recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
	if (r != 0)
		FAIL("UDP: recvfrom() of a zero-length datagram returned %zd (%s), expected 0", r,
		     r < 0 ? sp_errno_name(errno) : "data");
	ASSERT_TRUE(same_addr(&me, &from), "UDP: recvfrom() of a zero-length datagram names the "
		    "sender (family %d, port %u; sender port %u)", from.ss_family, sp_port(&from),
		    sp_port(&me));
	ASSERT_EQ(4, sendto(tx, "next", 4, 0, (struct sockaddr *)&to, tl));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "UDP: the next datagram arrives");
	ASSERT_EQ(4, recv(rx, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("next", buf, 4);
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));

	/* recvmsg() into a zero-length buffer (one iovec of length 0, and no
	 * iovec at all): 0, MSG_TRUNC, and the datagram is consumed. */
	for (int form = 0; form < 2; form++) {
		const char *how = form ? "no iovec" : "one iovec of length 0";
		char none[1];
		struct iovec iov = { none, 0 };
		struct msghdr mh;
		memset(&mh, 0, sizeof(mh));
		if (!form) {
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
		}
		ASSERT_EQ(5, send(tx, "hello", 5, 0));
		ASSERT_EQ(3, send(tx, "two", 3, 0));
		EXPECT_EVENTS(rx, POLLIN, POLLIN, "UDP: the datagram arrives");
		r = MUST_RETURN(recvmsg(rx, &mh, 0), "recvmsg() (%s) with a datagram queued", how);
		if (r != 0 || !(mh.msg_flags & MSG_TRUNC))
			FAIL("UDP: recvmsg() into a zero-length buffer (%s) on a 5-byte datagram "
			     "returned %zd with flags 0x%x, expected 0 with MSG_TRUNC", how, r,
			     r >= 0 ? mh.msg_flags : 0);
		EXPECT_EVENTS(rx, POLLIN, POLLIN, "UDP: the next datagram is "
			    "queued");
		r = recv(rx, buf, sizeof(buf), 0);
		if (r != 3 || memcmp(buf, "two", 3))
			FAIL("UDP: after recvmsg() into a zero-length buffer (%s), recv() returned %zd "
			     "bytes, expected the next datagram \"two\" (the 5-byte one is consumed)",
			     how, r);
	}
	close(tx);
	close(rx);

	/* Streams: a zero-length send is nothing. Both kinds wait together. */
	int c, s, u[2];
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, u));
	ASSERT_EQ(0, send(c, "", 0, MSG_NOSIGNAL));
	ASSERT_EQ(0, send(u[0], "", 0, MSG_NOSIGNAL));
	ASSERT_EQ(0, write(c, "", 0));
	struct pollfd p[2] = { { s, POLLIN, 0 }, { u[1], POLLIN, 0 } };
	int ready = poll(p, 2, 100);
	ASSERT_SYS(ready);
	/* Readable with nothing to read is poll()'s deviation
	 * (MUX-READABLE-DATA), not this ID's: a non-blocking peek tells. */
	for (int k = 0; k < 2; k++)
		if (p[k].revents == POLLIN) {
			char pk;
			int fd = p[k].fd;
			sp_set_nonblock(fd, 1);
			errno = 0;
			ssize_t got = recv(fd, &pk, 1, MSG_PEEK);
			int gerr = errno;
			sp_set_nonblock(fd, 0);
			if (got < 0 && (gerr == EAGAIN || gerr == EWOULDBLOCK))
				BROKEN_NEEDS("MUX-READABLE-DATA", "poll() reports the %s peer readable "
					     "with nothing to read", k ? "AF_UNIX stream" : "TCP");
		}
	if (p[0].revents)
		FAIL("TCP: a zero-length send made the peer ready (revents 0x%x) within 100 ms, "
		     "expected nothing", p[0].revents);
	if (p[1].revents)
		FAIL("AF_UNIX stream: a zero-length send made the peer ready (revents 0x%x) within "
		     "100 ms, expected nothing", p[1].revents);
	/* TCP: recv() into 0 bytes returns 0 at once and leaves the data. */
	ASSERT_EQ(4, send(c, "data", 4, MSG_NOSIGNAL));
	ASSERT_EQ(4, sp_wait_inq(s, 4));
	long m = sp_block_mark();
	r = recv(s, buf, 0, 0);
	if (r != 0)
		FAIL("TCP: recv() into 0 bytes with 4 queued returned %zd (%s), expected 0", r,
		     r < 0 ? sp_errno_name(errno) : "data");
	ASSERT_NO_BLOCK(m, "recv() into 0 bytes with 4 bytes queued");
	r = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
	if (r != 4 || memcmp(buf, "data", 4))
		FAIL("TCP: after a zero-length recv(), recv() returned %zd, expected the 4 bytes "
		     "still queued", r);

	/* Records: a zero-length recv() on an empty TCP socket. */
	errno = 0;
	r = recv(s, buf, 0, MSG_DONTWAIT);
	RECORD("recv_zero_empty_tcp_dontwait", "%zd%s%s", r, r < 0 ? " " : "",
	       r < 0 ? sp_errno_name(errno) : "");
	sp_watchdog(20);
	errno = 0;
	m = sp_block_mark();
	r = recv(s, buf, 0, 0);
	int e = errno;
	long blocked = m < 0 ? -1 : sp_block_mark() - m;
	sp_watchdog(0);
	RECORD("recv_zero_empty_tcp", "%s%s", r == 0 ? "0" : e == EINTR ? "EINTR" : sp_errno_name(e),
	       blocked < 0 ? "" : blocked ? ", after blocking until a signal at 20 ms" :
	       ", at once");
	close(c);
	close(s);
	close(u[0]);
	close(u[1]);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0) {
		ASSERT_EQ(0, send(sv[0], "", 0, 0));
		int rd = sp_poll(sv[1], POLLIN, 50);
		r = recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT);
		RECORD("seqpacket_zero_length", "%s, recv %zd%s%s", rd & POLLIN ? "readable" :
		       "not readable", r, r < 0 ? " " : "", r < 0 ? sp_errno_name(errno) : "");
		close(sv[0]);
		close(sv[1]);
	}
}

/* ---- 6. RECV-PEEK-ACROSS-WRITES --------------------------------------------- */

/* 6. A peek returns everything queued, across writes, and leaves it. */
SP_TEST(peek_returns_data_of_several_writes, "RECV-PEEK-ACROSS-WRITES", SP_INET,
	.kind = SP_EVERY_KIND, .read = SP_FLAG_READS)
{
	static const char *const w[] = { "abc", "def", "ghi" };
	const char *call = sp_io_in_name(ctx->read);
	int c, s;
	char buf[32];

	sp_pair(ctx, &c, &s);
	if (ctx->kind != SP_KIND_UNIX)
		sp_set_int(c, IPPROTO_TCP, TCP_NODELAY, 1);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(3, send(c, w[i], 3, MSG_NOSIGNAL));
	ASSERT_EQ(9, sp_wait_inq(s, 9));
	memset(buf, 0, sizeof(buf));
	ssize_t r = MUST_RETURN(sp_io_recv(ctx->read, s, buf, 32, MSG_PEEK, NULL),
				"%s(MSG_PEEK) with 9 bytes queued", call);
	const char *err = r < 0 ? sp_errno_name(errno) : NULL;
	if (r > 0 && r < 9) {
		/* Does a plain read stop at a write's boundary too? Then the
		 * stream keeps message boundaries: that is the stream-boundary
		 * ID's deviation, not the peek's. */
		char all[32];
		ssize_t plain = recv(s, all, sizeof(all), MSG_DONTWAIT);
		if (plain > 0 && plain < 9)
			BROKEN_NEEDS(ctx->kind == SP_KIND_UNIX ? "UNIX-STREAM-NO-BOUNDARY" :
				     "TCP-BOUNDARY-COALESCE", "recv(32) with three writes of 3 queued "
				     "returns %zd, peeking (%zd) or not", plain, r);
	}
	if (r < 0) {
		/* The same through recv(), beside it: a path that disagrees. */
		char other[32];
		ssize_t via_recv = recv(s, other, sizeof(other), MSG_PEEK | MSG_DONTWAIT);
		FAIL("%s(32, MSG_PEEK) after three writes of 3: expected all 9 bytes \"abcdefghi\", "
		     "observed -1 (%s); recv(MSG_PEEK) gives %zd", call, err, via_recv);
	}
	if (r != 9 || memcmp(buf, "abcdefghi", 9))
		FAIL("%s(32, MSG_PEEK) after three writes of 3 returned %zd (\"%.*s\"), expected all "
		     "9 bytes \"abcdefghi\"", call, r, r > 0 ? (int)r : 0, buf);
	/* A peek leaves the bytes queued: FLAG-PEEK's Must, a mechanism for
	 * the next peek here. */
	int left = -1;
	ASSERT_SYS(ioctl(s, FIONREAD, &left));
	if (left == 0)
		BROKEN_NEEDS("FLAG-PEEK", "%s(MSG_PEEK) took the 9 bytes off the queue (FIONREAD 0 "
			     "after it)", call);
	memset(buf, 0, sizeof(buf));
	r = MUST_RETURN(sp_io_recv(ctx->read, s, buf, 5, MSG_PEEK, NULL),
			"%s(MSG_PEEK) with 9 bytes queued", call);
	if (r != 5 || memcmp(buf, "abcde", 5))
		FAIL("%s(5, MSG_PEEK) returned %zd (\"%.*s\"), expected \"abcde\"", call, r,
		     r > 0 ? (int)r : 0, buf);
	memset(buf, 0, sizeof(buf));
	r = MUST_RETURN(sp_io_recv(ctx->read, s, buf, sizeof(buf), 0, NULL),
			"%s() after the peeks", call);
	if (r != 9 || memcmp(buf, "abcdefghi", 9))
		FAIL("%s() after the peeks returned %zd (\"%.*s\"), expected the same 9 bytes", call,
		     r, r > 0 ? (int)r : 0, buf);
	close(c);
	close(s);
}

/* SO_PEEK_OFF 0 set on fd; then "123" and "456" written; two 3-byte
 * peeks. Returns through *a and *b what they gave ("" on error). */
static int peek_twice(int fd, int tx, int stream, char a[4], char b[4])
{
	int off = 0;
	if (setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off)) < 0)
		return -errno;
	if (stream) {
		ASSERT_EQ(3, send(tx, "123", 3, MSG_NOSIGNAL));
		ASSERT_EQ(3, send(tx, "456", 3, MSG_NOSIGNAL));
		ASSERT_EQ(6, sp_wait_inq(fd, 6));
	} else {
		ASSERT_EQ(6, send(tx, "abcdef", 6, MSG_NOSIGNAL));
		EXPECT_EVENTS(fd, POLLIN, POLLIN, "the datagram arrives");
	}
	memset(a, 0, 4);
	memset(b, 0, 4);
	if (BOUNDED(recv(fd, a, 3, MSG_PEEK)) < 0)
		a[0] = 0;
	/* The peek left the bytes queued (FLAG-PEEK's Must, a mechanism). */
	int left = -1;
	if (ioctl(fd, FIONREAD, &left) == 0 && stream && left < 6)
		BROKEN_NEEDS("FLAG-PEEK", "a 3-byte MSG_PEEK took bytes off the queue (FIONREAD %d "
			     "of 6 after it)", left);
	if (BOUNDED(recv(fd, b, 3, MSG_PEEK)) < 0)
		b[0] = 0;
	return 0;
}

SP_TEST(peek_offset_advances_on_unix_stream, "RECV-PEEK-ACROSS-WRITES", SP_INET)
{
	(void)ctx;
	int sv[2];
	char a[4], b[4], buf[16];

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	int e = peek_twice(sv[1], sv[0], 1, a, b);
	if (e < 0)
		UNSUPPORTED("SO_PEEK_OFF on AF_UNIX stream sockets (%s)", sp_errno_name(-e));
	if (strcmp(a, "123") || strcmp(b, "456"))
		FAIL("AF_UNIX stream with SO_PEEK_OFF 0: two 3-byte peeks returned \"%s\" then "
		     "\"%s\", expected \"123\" then \"456\"", a, b);
	ssize_t r = recv(sv[1], buf, sizeof(buf), 0);
	/* A plain read stopping at the first write is a stream that keeps
	 * boundaries: UNIX-STREAM-NO-BOUNDARY's deviation. */
	if (r > 0 && r < 6)
		BROKEN_NEEDS("UNIX-STREAM-NO-BOUNDARY", "recv(16) with two writes of 3 queued on an "
			     "AF_UNIX stream returned %zd", r);
	if (r != 6 || memcmp(buf, "123456", 6))
		FAIL("AF_UNIX stream: recv() after the peeks returned %zd, expected all 6 bytes "
		     "\"123456\"", r);
	int off = -2;
	socklen_t ol = sizeof(off);
	ASSERT_SYS(getsockopt(sv[1], SOL_SOCKET, SO_PEEK_OFF, &off, &ol));
	RECORD("peek_off_after_read", "%d", off);
	close(sv[0]);
	close(sv[1]);

	/* Records: TCP and UDP. */
	
	int c, s;
	sp_tcp_pair(ctx, &c, &s);
	e = peek_twice(s, c, 1, a, b);
	if (e < 0)
		RECORD("peek_off_tcp", "setsockopt fails with %s", sp_errno_name(-e));
	else
		RECORD("peek_off_tcp", "\"%s\" then \"%s\"", a, b);
	close(c);
	close(s);
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(rx));
	ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tl));
	e = peek_twice(rx, tx, 0, a, b);
	if (e < 0)
		RECORD("peek_off_udp", "setsockopt fails with %s", sp_errno_name(-e));
	else
		RECORD("peek_off_udp", "\"%s\" then \"%s\"", a, b);
	close(tx);
	close(rx);
}

SP_MAIN("ioctl")
