/*
 * mmsg.c - several messages in one call (catalogue part 3, "Multi-message
 * and zero-copy I/O"; sendmmsg(2), recvmmsg(2)).
 *
 *  1. MMSG-SENDMMSG  Linux: sendmmsg() of three UDP messages (5, 10, 1
 *                    bytes) returns 3 with msg_len 5, 10, 1, and three
 *                    datagrams of those sizes arrive in order; when the
 *                    second has a destination of the wrong family it
 *                    returns 1 (what was sent) instead of failing; on TCP
 *                    "abc", "defgh", "i" return 3 and the peer reads
 *                    "abcdefghi".
 *  2. MMSG-RECVMMSG  Linux: three datagrams (5, 10, 1 bytes) from two
 *                    senders: recvmmsg(vlen 8, MSG_DONTWAIT) returns 3 with
 *                    those msg_len and each sender in msg_name; on an empty
 *                    socket EAGAIN; a 20-byte datagram into 16 bytes then a
 *                    2-byte one: 2, MSG_TRUNC on the first only; a blocking
 *                    recvmmsg(vlen 8, MSG_WAITFORONE) with one queued
 *                    returns 1 at once.
 *
 * Datagrams are known to be queued when a fence datagram, sent after
 * them over the same loopback to a socket of its own, has arrived.
 *
 * Platform-defined (recorded): the error of a sendmmsg() retried from the
 * failed message; a blocking recvmmsg(vlen 8) with one datagram queued and
 * a 20 ms timeout argument (recvmmsg(2) BUGS: the timeout is looked at only
 * after each datagram; a guard signal at 100 ms ends it).
 */
#define _GNU_SOURCE
#include "sp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define VLEN 8

struct batch {
	struct mmsghdr m[VLEN];
	struct iovec iov[VLEN];
	struct sockaddr_storage name[VLEN];
	char buf[VLEN][32];
};

/* vlen receive slots of `room` bytes each, with room for a source. */
static struct mmsghdr *batch_prepare(struct batch *b, size_t room)
{
	memset(b, 0, sizeof(*b));
	for (int i = 0; i < VLEN; i++) {
		b->iov[i].iov_base = b->buf[i];
		b->iov[i].iov_len = room;
		b->m[i].msg_hdr.msg_iov = &b->iov[i];
		b->m[i].msg_hdr.msg_iovlen = 1;
		b->m[i].msg_hdr.msg_name = &b->name[i];
		b->m[i].msg_hdr.msg_namelen = sizeof(b->name[i]);
	}
	return b->m;
}

/* One message to send: data and (may be NULL) a destination. */
static void batch_out(struct batch *b, int i, const char *data, size_t n,
		      const struct sockaddr_storage *to, socklen_t tl)
{
	b->iov[i].iov_base = (void *)data;
	b->iov[i].iov_len = n;
	b->m[i].msg_hdr.msg_iov = &b->iov[i];
	b->m[i].msg_hdr.msg_iovlen = 1;
	b->m[i].msg_hdr.msg_name = (void *)to;
	b->m[i].msg_hdr.msg_namelen = to ? tl : 0;
	b->m[i].msg_len = 0xdead;
}

/* After datagrams sent from one thread over loopback, one more to a
 * fence socket: once it has arrived, the earlier ones are queued too. */
static void fence(const struct sp_ctx *ctx, int from)
{
	int f = sp_udp_bound(ctx);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(f));
	ASSERT_EQ(1, sendto(from, "!", 1, 0, (struct sockaddr *)&ss, len));
	int ev = sp_poll(f, POLLIN, sp_wait_ms());
	if (!(ev & POLLIN))
		BROKEN_NEEDS("UDP-BOUNDARY", "a datagram over loopback arrives within %d ms (%s)",
			     sp_wait_ms(), sp_events_str(ev));
	close(f);
}

/* The datagrams are counted with recv(): one datagram per receive is
 * UDP-BOUNDARY's Must, a mechanism here. When they do not come back as
 * sent, two datagrams of separate sendto()s from s to r tell whose
 * deviation it is: read back as other than 2 bytes, broken, needs
 * UDP-BOUNDARY; as 2, the receive side keeps boundaries. */
static void need_recv_boundaries(const struct sp_ctx *ctx, int s, int r)
{
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(r));
	char b[32];

	while (recv(r, b, sizeof(b), MSG_DONTWAIT) >= 0)
		;
	ASSERT_EQ(2, sendto(s, "ab", 2, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(3, sendto(s, "cde", 3, 0, (struct sockaddr *)&to, tl));
	fence(ctx, s);
	ssize_t n = recv(r, b, sizeof(b), MSG_DONTWAIT);
	if (n != 2)
		BROKEN_NEEDS("UDP-BOUNDARY", "datagrams of 2 and 3 bytes from separate sendto()s: the "
			     "first recv() returned %zd%s, expected 2", n, n < 0 ? " (nothing)" : "");
}

/* ---- 1. MMSG-SENDMMSG ----------------------------------------------------------- */

SP_TEST(sendmmsg_sends_each_message_and_counts_them, "MMSG-SENDMMSG", SP_INET)
{
	sp_path_used(SP_PATH_OUT, SP_IO_MMSG); /* the calls below, made by name */
	static const char *data[3] = { "fives", "tentenbyte", "1" };
	static const size_t len[3] = { 5, 10, 1 };
	struct batch out;
	struct sockaddr_storage to, wrong;
	int r = sp_udp_bound(ctx), s = sp_udp_bound(ctx);
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(r));
	char b[32];

	/* Three UDP messages, three datagrams. */
	memset(&out, 0, sizeof(out));
	for (int i = 0; i < 3; i++)
		batch_out(&out, i, data[i], len[i], &to, tl);
	errno = 0;
	int k = MUST_RETURN(sendmmsg(s, out.m, 3, 0), "sendmmsg() of three datagrams");
	if (k < 0 && (errno == ENOSYS || errno == EOPNOTSUPP))
		UNSUPPORTED("sendmmsg() (%s)", sp_errno_name(errno));
	if (k != 3)
		FAIL("sendmmsg() of three UDP messages returned %d (%s), expected 3", k,
		     k < 0 ? sp_errno_name(errno) : "short");
	for (int i = 0; i < 3; i++)
		if (out.m[i].msg_len != len[i])
			FAIL("sendmmsg(): message %d has msg_len %u, expected %zu", i + 1,
			     out.m[i].msg_len, len[i]);
	for (int i = 0; i < 3; i++) {
		EXPECT_EVENTS(r, POLLIN, POLLIN, "datagram %d of the sendmmsg() arrives", i + 1);
		ssize_t n = recv(r, b, sizeof(b), MSG_DONTWAIT);
		if (n != (ssize_t)len[i] || memcmp(b, data[i], len[i])) {
			need_recv_boundaries(ctx, s, r);
			FAIL("datagram %d of the sendmmsg(): %zd bytes, expected the %zu bytes \"%s\"",
			     i + 1, n, len[i], data[i]);
		}
	}

	/* The second message names the other family: 1, what was sent. */
	memset(&wrong, 0, sizeof(wrong));
	socklen_t wl;
	if (ctx->af == AF_INET) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&wrong;
		a->sin6_family = AF_INET6;
		a->sin6_addr = in6addr_loopback;
		a->sin6_port = htons(sp_local_port(r));
		wl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&wrong;
		a->sin_family = AF_INET;
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		a->sin_port = htons(sp_local_port(r));
		wl = sizeof(*a);
	}
	memset(&out, 0, sizeof(out));
	batch_out(&out, 0, data[0], len[0], &to, tl);
	batch_out(&out, 1, data[1], len[1], &wrong, wl);
	batch_out(&out, 2, data[2], len[2], &to, tl);
	errno = 0;
	k = MUST_RETURN(sendmmsg(s, out.m, 3, 0), "sendmmsg() whose second message has the wrong family");
	if (k != 1)
		FAIL("sendmmsg() whose second message names the other family returned %d (%s), "
		     "expected 1 (the message sent before the error)", k,
		     k < 0 ? sp_errno_name(errno) : "no error");
	ASSERT_EQ(len[0], out.m[0].msg_len);
	EXPECT_EVENTS(r, POLLIN, POLLIN, "the message sent before the error arrives");
	ASSERT_EQ(len[0], recv(r, b, sizeof(b), MSG_DONTWAIT));
	errno = 0;
	k = sendmmsg(s, &out.m[1], 2, 0);
	RECORD_ONCE("retry_from_the_failed_message", "%s", k < 0 ? sp_errno_name(errno) : "sent");
	close(r);
	close(s);

	/* TCP: the three parts, in order, as one stream. */
	int c, a;
	sp_tcp_pair(ctx, &c, &a);
	memset(&out, 0, sizeof(out));
	batch_out(&out, 0, "abc", 3, NULL, 0);
	batch_out(&out, 1, "defgh", 5, NULL, 0);
	batch_out(&out, 2, "i", 1, NULL, 0);
	errno = 0;
	k = MUST_RETURN(sendmmsg(c, out.m, 3, MSG_NOSIGNAL), "sendmmsg() on TCP");
	if (k != 3)
		FAIL("sendmmsg() of \"abc\", \"defgh\", \"i\" on TCP returned %d (%s), expected 3", k,
		     k < 0 ? sp_errno_name(errno) : "short");
	ASSERT_EQ(9, sp_read_all(a, b, 9));
	ASSERT_MEM_EQ("abcdefghi", b, 9);
	close(c);
	close(a);
}

/* ---- 2. MMSG-RECVMMSG ----------------------------------------------------------- */

static void no_op(int sig)
{
	(void)sig;
}

SP_TEST(recvmmsg_takes_what_is_queued, "MMSG-RECVMMSG", SP_INET)
{
	sp_path_used(SP_PATH_IN, SP_IO_MMSG); /* the calls below, made by name */
	struct batch in;
	struct sockaddr_storage to;
	int r = sp_udp_bound(ctx), a = sp_udp_bound(ctx), b = sp_udp_bound(ctx);
	socklen_t tl = sp_loopback(ctx, &to, sp_local_port(r));
	static const char twenty[] = "twenty-byte-datagram";

	/* Empty: EAGAIN. */
	errno = 0;
	int k = recvmmsg(r, batch_prepare(&in, 32), VLEN, MSG_DONTWAIT, NULL);
	if (k < 0 && (errno == ENOSYS || errno == EOPNOTSUPP))
		UNSUPPORTED("recvmmsg() (%s)", sp_errno_name(errno));
	if (k != -1 || errno != EAGAIN)
		FAIL("recvmmsg(vlen 8, MSG_DONTWAIT) on an empty socket returned %d (%s), expected "
		     "EAGAIN", k, k < 0 ? sp_errno_name(errno) : "messages");

	/* 5, 10 and 1 bytes from two senders: all three in one call. */
	ASSERT_EQ(5, sendto(a, "fives", 5, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(10, sendto(b, "tentenbyte", 10, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(1, sendto(a, "1", 1, 0, (struct sockaddr *)&to, tl));
	fence(ctx, a);
	errno = 0;
	k = recvmmsg(r, batch_prepare(&in, 32), VLEN, MSG_DONTWAIT, NULL);
	if (k != 3)
		FAIL("recvmmsg(vlen 8, MSG_DONTWAIT) with three datagrams queued returned %d (%s), "
		     "expected 3", k, k < 0 ? sp_errno_name(errno) : "another count");
	static const unsigned lens[3] = { 5, 10, 1 };
	const int from[3] = { a, b, a };
	for (int i = 0; i < 3; i++) {
		if (in.m[i].msg_len != lens[i])
			FAIL("recvmmsg(): message %d has msg_len %u, expected %u", i + 1, in.m[i].msg_len,
			     lens[i]);
		uint16_t want = sp_local_port(from[i]);
		if (in.m[i].msg_hdr.msg_namelen == 0 || in.name[i].ss_family != ctx->af ||
		    sp_port(&in.name[i]) != want)
			FAIL("recvmmsg(): message %d names port %u (family %d, namelen %u), expected its "
			     "sender's port %u", i + 1, sp_port(&in.name[i]), in.name[i].ss_family,
			     (unsigned)in.m[i].msg_hdr.msg_namelen, want);
	}
	ASSERT_MEM_EQ("tentenbyte", in.buf[1], 10);

	/* 20 bytes into 16, then 2: MSG_TRUNC on the first only. */
	ASSERT_EQ(20, sendto(a, twenty, 20, 0, (struct sockaddr *)&to, tl));
	ASSERT_EQ(2, sendto(a, "ok", 2, 0, (struct sockaddr *)&to, tl));
	fence(ctx, a);
	errno = 0;
	k = recvmmsg(r, batch_prepare(&in, 16), VLEN, MSG_DONTWAIT, NULL);
	if (k != 2)
		FAIL("recvmmsg() of a 20-byte and a 2-byte datagram returned %d (%s), expected 2", k,
		     k < 0 ? sp_errno_name(errno) : "another count");
	ASSERT_EQ(16, in.m[0].msg_len);
	ASSERT_TRUE(in.m[0].msg_hdr.msg_flags & MSG_TRUNC, "the 20-byte datagram received into 16 "
		    "bytes has MSG_TRUNC in its msg_flags (got 0x%x)", in.m[0].msg_hdr.msg_flags);
	ASSERT_MEM_EQ(twenty, in.buf[0], 16);
	ASSERT_EQ(2, in.m[1].msg_len);
	ASSERT_TRUE(!(in.m[1].msg_hdr.msg_flags & MSG_TRUNC), "the 2-byte datagram that fits has "
		    "no MSG_TRUNC (msg_flags 0x%x)", in.m[1].msg_hdr.msg_flags);

	/* Record: the timeout argument with one datagram queued. */
	ASSERT_EQ(5, sendto(b, "fives", 5, 0, (struct sockaddr *)&to, tl));
	fence(ctx, b);
	struct sigaction sa = { .sa_handler = no_op }, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	struct itimerval guard = { .it_value = { 0, 100000 } }, off = { { 0, 0 }, { 0, 0 } };
	struct timespec t = { 0, 20 * 1000000L };
	setitimer(ITIMER_REAL, &guard, NULL);
	errno = 0;
	k = recvmmsg(r, batch_prepare(&in, 32), VLEN, 0, &t);
	int e = errno;
	struct itimerval left;
	setitimer(ITIMER_REAL, &off, &left);
	sigaction(SIGALRM, &old, NULL);
	int fired = left.it_value.tv_sec == 0 && left.it_value.tv_usec == 0;
	RECORD_ONCE("blocking_recvmmsg_with_timeout_and_one_queued", "returned %d%s%s, %s", k,
		    k < 0 ? " " : "", k < 0 ? sp_errno_name(e) : "",
		    fired ? "after the guard signal at 100 ms" : "before the guard signal at 100 ms");
	char drain[32];
	while (recv(r, drain, sizeof(drain), MSG_DONTWAIT) >= 0)
		;

	/* Blocking, MSG_WAITFORONE, one queued: 1 at once (last: a stack that
	 * refuses the flag reports this point unsupported). */
	ASSERT_EQ(5, sendto(b, "fives", 5, 0, (struct sockaddr *)&to, tl));
	fence(ctx, b);
	long mark = sp_block_mark();
	errno = 0;
	k = MUST_RETURN(recvmmsg(r, batch_prepare(&in, 32), VLEN, MSG_WAITFORONE, NULL),
			"blocking recvmmsg(vlen 8, MSG_WAITFORONE) with one datagram queued");
	if (k < 0 && errno == EINVAL)
		UNSUPPORTED("recvmmsg() with MSG_WAITFORONE (EINVAL), after every other point of "
			    "the ID held");
	if (k != 1)
		FAIL("blocking recvmmsg(vlen 8, MSG_WAITFORONE) with one datagram queued returned %d "
		     "(%s), expected 1", k, k < 0 ? sp_errno_name(errno) : "another count");
	ASSERT_NO_BLOCK(mark, "recvmmsg(MSG_WAITFORONE) with one datagram queued");
	ASSERT_EQ(5, in.m[0].msg_len);

	close(r);
	close(a);
	close(b);
}

SP_MAIN("mmsg")
