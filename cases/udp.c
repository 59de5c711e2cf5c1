/*
 * udp.c - UDP datagram behaviors (seed notes: "udp", "一些tips", "6.3",
 * "6.4 connectedUDP and unconnectedUDP").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. UDP-BOUNDARY               k sends are k receives of the same sizes
 *                                (0 to 9000 bytes), in order, each from its
 *                                sender's address, none joined to the next.
 *  2. UDP-TRUNCATE               a short buffer gets the head (MSG_TRUNC in
 *                                recvmsg) and the rest of that datagram is
 *                                gone: the next receive gets the next one.
 *  3. UDP-SENDTO-IMPLICIT-BIND   the first sendto binds address and port;
 *                                every later send uses that same port.
 *  4. UDP-NO-FLOW-CONTROL        a sender is never held back (no blocking,
 *                                no EAGAIN); the receiver loses what its
 *                                buffer cannot hold.
 *  5. UDP-NO-ACK                 sendto to a port nobody listens on succeeds,
 *                                and no error surfaces later.
 *  6. UDP-ONE-SOCKET-MANY-PEERS  one socket, several peers, told apart by
 *                                the source address of each datagram.
 *  7. UDP-DESTINATION-EACH-SEND  send() without a destination: EDESTADDRREQ,
 *                                before and after a sendto.
 *  8. UDP-CONNECTED              connect() only registers the peer: no
 *                                addresses needed, other sources filtered,
 *                                ICMP port unreachable -> ECONNREFUSED.
 *
 * APIs. Every receive-side behavior is checked through read(), recv(),
 * recvfrom() and recvmsg(), each on a blocking and on a non-blocking
 * (O_NONBLOCK) socket; every send-side behavior through write(), send(),
 * sendto() and sendmsg() where the socket's state allows the call
 * (write/send need a connected socket), blocking and non-blocking. The
 * source address (address and port) of every datagram that recvfrom() or
 * recvmsg() returns is checked. A blocking call runs under a watchdog, so
 * a call that blocks where it must not fails the check instead of hanging.
 *
 * Wire (where the item has its own network namespace): connect() sends
 * nothing; a closed port answers with ICMP / ICMPv6 port unreachable; a
 * datagram to an open port gets no reply packet.
 *
 * Platform-defined (recorded): how many of the datagrams a small receive
 * buffer keeps (and the buffer size it got), the ephemeral port's range,
 * the local address an implicit bind reports (wildcard on Linux), what
 * recv(MSG_TRUNC) returns (Linux: the datagram's real length).
 */
#define _GNU_SOURCE
#include "sp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

/* ---- helpers local to this file ------------------------------------------ */

/* The four ways to receive a datagram and the four ways to send one. */
enum rx_api { RX_READ, RX_RECV, RX_RECVFROM, RX_RECVMSG, RX_APIS };
enum tx_api { TX_WRITE, TX_SEND, TX_SENDTO, TX_SENDMSG, TX_APIS };
static const char *const rx_name[] = { "read", "recv", "recvfrom", "recvmsg" };
static const char *const tx_name[] = { "write", "send", "sendto", "sendmsg" };
/* Blocking modes: the socket is blocking, or has O_NONBLOCK set. */
enum mode { BLOCKING, NONBLOCKING, MODES };
static const char *const mode_name[] = { "blocking", "non-blocking" };

/* What one receive returned, besides its count. */
struct dgram {
	struct sockaddr_storage from; /* source (recvfrom, recvmsg) */
	socklen_t fromlen;            /* 0 when the API gives no source */
	int flags;                    /* msg_flags (recvmsg), else 0 */
	int named;                    /* the API reports a source */
};

/* Address of a bound socket. */
static socklen_t addr_of(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)ss, &len));
	return len;
}

static socklen_t len_of(const struct sp_ctx *ctx)
{
	return ctx->af == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* "127.0.0.1:40001" / "[::1]:40001" / "(none)", into out. */
static const char *addr_str(const struct sockaddr_storage *ss, socklen_t len, char *out, size_t room)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (len == 0)
		snprintf(out, room, "(no address, length 0)");
	else if (ss->ss_family == AF_INET)
		snprintf(out, room, "%s:%u", inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr,
						       a, sizeof(a)), sp_port(ss));
	else if (ss->ss_family == AF_INET6)
		snprintf(out, room, "[%s]:%u", inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr,
							 a, sizeof(a)), sp_port(ss));
	else
		snprintf(out, room, "(family %d, length %u)", ss->ss_family, (unsigned)len);
	return out;
}

/* The source of a received datagram is exactly `want` (address and port). */
#define ASSERT_FROM(want, d) assert_from(__FILE__, __LINE__, want, d)
static void assert_from(const char *file, int line, const struct sockaddr_storage *want,
			const struct dgram *d)
{
	char w[80], g[80];
	addr_str(want, want->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in), w, sizeof(w));
	addr_str(&d->from, d->fromlen, g, sizeof(g));
	if (strcmp(w, g) != 0)
		sp_fail(file, line, "source address of the datagram", w, g, 0);
}

/* One receive through `api`, exactly as the program would make it: no
 * wait, no retry. */
static ssize_t rx_call(int fd, enum rx_api api, void *buf, size_t n, int flags, struct dgram *d)
{
	struct iovec iov = { buf, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t r = -1;

	memset(d, 0, sizeof(*d));
	d->fromlen = sizeof(d->from);
	switch (api) {
	case RX_READ:
		r = read(fd, buf, n);
		d->fromlen = 0;
		break;
	case RX_RECV:
		r = recv(fd, buf, n, flags);
		d->fromlen = 0;
		break;
	case RX_RECVFROM:
		d->named = 1;
		r = recvfrom(fd, buf, n, flags, (struct sockaddr *)&d->from, &d->fromlen);
		break;
	default:
		d->named = 1;
		mh.msg_name = &d->from;
		mh.msg_namelen = sizeof(d->from);
		r = recvmsg(fd, &mh, flags);
		d->fromlen = mh.msg_namelen;
		d->flags = mh.msg_flags;
		break;
	}
	return r;
}

/* Receive one datagram that has been sent: wait (bounded) until the socket
 * is readable, then one call; a blocking call runs under the watchdog. */
#define RX(fd, api, buf, n, d) rx_one(__FILE__, __LINE__, fd, api, buf, n, d)
static ssize_t rx_one(const char *file, int line, int fd, enum rx_api api, void *buf, size_t n,
		      struct dgram *d)
{
	if (!(sp_poll(fd, POLLIN, sp_wait_ms()) & POLLIN))
		sp_failf(file, line, "a datagram arrives within %d ms for %s()", sp_wait_ms(),
			 rx_name[api]);
	sp_watchdog(sp_wait_ms());
	errno = 0;
	ssize_t r = rx_call(fd, api, buf, n, 0, d);
	int err = errno;
	sp_watchdog(0);
	if (r < 0)
		sp_failf(file, line, "%s() of a queued datagram returns it (got -1, %s%s)",
			 rx_name[api], sp_errno_name(err),
			 err == EINTR ? ": it blocked although a datagram was queued" : "");
	return r;
}

/* Nothing more is queued: not readable, and every receive API says EAGAIN. */
#define ASSERT_EMPTY(fd) assert_empty(__FILE__, __LINE__, fd)
static void assert_empty(const char *file, int line, int fd)
{
	char buf[64];
	struct dgram d;

	if (sp_poll(fd, POLLIN, 0))
		sp_failf(file, line, "no further datagram is queued (poll says readable)");
	for (int api = RX_RECV; api < RX_APIS; api++) {
		errno = 0;
		ssize_t r = rx_call(fd, (enum rx_api)api, buf, sizeof(buf), MSG_DONTWAIT, &d);
		sp_check_errno(file, line, rx_name[api], r, errno, EAGAIN);
	}
}

/* One send through `api`: write/send use the socket's peer, sendto/sendmsg
 * the destination `to` (NULL: none). The raw result, never retried. */
static ssize_t tx_call(int fd, enum tx_api api, const void *buf, size_t n, int flags,
		       const struct sockaddr_storage *to, socklen_t tolen)
{
	struct iovec iov = { (void *)buf, n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	switch (api) {
	case TX_WRITE:
		return write(fd, buf, n);
	case TX_SEND:
		return send(fd, buf, n, flags);
	case TX_SENDTO:
		return sendto(fd, buf, n, flags, (const struct sockaddr *)to, to ? tolen : 0);
	default:
		mh.msg_name = (void *)to;
		mh.msg_namelen = to ? tolen : 0;
		return sendmsg(fd, &mh, flags);
	}
}

/* A send that must succeed in full, at once: under the watchdog, so a
 * sender that is held back fails here instead of hanging. */
#define TX(fd, api, buf, n, to, tolen) tx_one(__FILE__, __LINE__, fd, api, buf, n, to, tolen)
static void tx_one(const char *file, int line, int fd, enum tx_api api, const void *buf, size_t n,
		   const struct sockaddr_storage *to, socklen_t tolen)
{
	sp_watchdog(sp_wait_ms());
	errno = 0;
	ssize_t w = tx_call(fd, api, buf, n, 0, to, tolen);
	int err = errno;
	sp_watchdog(0);
	if (w < 0)
		sp_failf(file, line, "%s() of a %zu-byte datagram succeeds (got -1, %s%s)",
			 tx_name[api], n, sp_errno_name(err),
			 err == EINTR ? ": the sender was held back" : "");
	sp_check_eq(file, line, tx_name[api], (long long)n, w);
}

/* A datagram's content: its index i in every byte, so a datagram joined to
 * another or cut short shows. */
static void fill(unsigned char *buf, size_t n, int i)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = (unsigned char)(i * 31 + k);
}

/* ---- the behaviors ---------------------------------------------------------- */

/* 1. Each send is one datagram: k sends (sendto, sendmsg, write, send; an
 * empty one and one larger than an Ethernet MTU among them), k receives of
 * the same sizes and contents, each from its sender, through every receive
 * API, blocking and non-blocking. */
SP_TEST(udp_keeps_datagram_boundaries)
{
	static const size_t sizes[] = { 1, 100, 0, 7, 9000, 3 };
	enum { K = sizeof(sizes) / sizeof(sizes[0]) };

	for (int api = 0; api < RX_APIS; api++) {
		for (int mode = 0; mode < MODES; mode++) {
			/* Two senders: `un` unconnected (sendto, sendmsg),
			 * `co` connected to rx (write, send). */
			int rx = sp_udp_bound(ctx), un = sp_udp_bound(ctx), co = sp_udp_bound(ctx);
			struct sockaddr_storage to, sun, sco;
			socklen_t tolen = addr_of(rx, &to);
			unsigned char out[9000], in[16384];
			struct dgram d;

			addr_of(un, &sun);
			addr_of(co, &sco);
			ASSERT_SYS(connect(co, (struct sockaddr *)&to, tolen));
			sp_set_nonblock(rx, mode == NONBLOCKING);
			for (int i = 0; i < K; i++) {
				enum tx_api how = (enum tx_api)((i + api) % TX_APIS);
				fill(out, sizes[i], i);
				TX(how <= TX_SEND ? co : un, how, out, sizes[i], &to, tolen);
			}
			/* One buffer larger than all of them together: a
			 * receive that joined datagrams would return more. */
			for (int i = 0; i < K; i++) {
				enum tx_api how = (enum tx_api)((i + api) % TX_APIS);
				ssize_t n = RX(rx, (enum rx_api)api, in, sizeof(in), &d);
				if (n != (ssize_t)sizes[i])
					FAIL("datagram %d of %d via %s() (%s, sent with %s()): %zu bytes "
					     "expected, %zd received", i + 1, K, rx_name[api],
					     mode_name[mode], tx_name[how], sizes[i], n);
				fill(out, sizes[i], i);
				ASSERT_MEM_EQ(out, in, sizes[i]);
				if (d.named)
					ASSERT_FROM(how <= TX_SEND ? &sco : &sun, &d);
				ASSERT_EQ(0, d.flags & MSG_TRUNC);
			}
			ASSERT_EMPTY(rx); /* exactly k, nothing more */
			close(rx);
			close(un);
			close(co);
		}
	}
	RECORD("empty_datagram", "received as a 0-byte datagram");
}

/* 2. A buffer smaller than the datagram: the head, MSG_TRUNC (recvmsg), the
 * rest dropped; a buffer of exactly the size: no MSG_TRUNC. Through every
 * receive API, blocking and non-blocking. */
SP_TEST(udp_short_buffer_truncates_datagram)
{
	for (int api = 0; api < RX_APIS; api++) {
		for (int mode = 0; mode < MODES; mode++) {
			int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
			struct sockaddr_storage to, stx;
			socklen_t tolen = addr_of(rx, &to);
			unsigned char big[100], small[50], exact[20], buf[10], next[200];
			struct dgram d;

			addr_of(tx, &stx);
			sp_set_nonblock(rx, mode == NONBLOCKING);
			fill(big, sizeof(big), 1);
			fill(small, sizeof(small), 2);
			fill(exact, sizeof(exact), 3);
			TX(tx, TX_SENDTO, big, sizeof(big), &to, tolen);
			TX(tx, TX_SENDTO, small, sizeof(small), &to, tolen);
			TX(tx, TX_SENDTO, exact, sizeof(exact), &to, tolen);

			/* The head of the 100-byte datagram, from its sender. */
			ASSERT_EQ(10, RX(rx, (enum rx_api)api, buf, sizeof(buf), &d));
			ASSERT_MEM_EQ(big, buf, 10);
			if (d.named)
				ASSERT_FROM(&stx, &d);
			if (api == RX_RECVMSG)
				ASSERT_TRUE(d.flags & MSG_TRUNC,
					    "recvmsg flags the datagram MSG_TRUNC (%s; flags 0x%x)",
					    mode_name[mode], d.flags);

			/* The 90 bytes that did not fit are gone: the next
			 * receive is the next datagram, whole. */
			ssize_t n = RX(rx, (enum rx_api)api, next, sizeof(next), &d);
			if (api == RX_RECVFROM && mode == BLOCKING)
				RECORD("next_receive_after_truncation", "%zd bytes", n);
			if (n != (ssize_t)sizeof(small))
				FAIL("after a truncated datagram, %s() (%s) returns the next "
				     "datagram: 50 bytes expected, %zd received%s", rx_name[api],
				     mode_name[mode], n, n == 90 ? " (the truncated tail)" : "");
			ASSERT_MEM_EQ(small, next, sizeof(small));
			ASSERT_EQ(0, d.flags & MSG_TRUNC);

			/* Exactly the datagram's size: whole, and not flagged. */
			ASSERT_EQ(sizeof(exact), RX(rx, (enum rx_api)api, next, sizeof(exact), &d));
			ASSERT_MEM_EQ(exact, next, sizeof(exact));
			ASSERT_EQ(0, d.flags & MSG_TRUNC);
			ASSERT_EMPTY(rx);
			close(rx);
			close(tx);
		}
	}

	/* Recorded: recv(MSG_TRUNC) returns the real length on Linux. */
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to);
	char big[100] = { 0 }, buf[10];
	TX(tx, TX_SENDTO, big, sizeof(big), &to, tolen);
	ASSERT_TRUE(sp_poll(rx, POLLIN, sp_wait_ms()) & POLLIN, "the datagram arrives");
	errno = 0;
	ssize_t r = recv(rx, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT);
	RECORD("recv_msg_trunc_returns", "%zd%s", r, r < 0 ? sp_errno_name(errno) : "");
}

/* Is the socket's local address the wildcard, or the loopback address? */
static const char *local_addr_kind(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		return IN6_IS_ADDR_UNSPECIFIED(a) ? "wildcard" : IN6_IS_ADDR_LOOPBACK(a) ? "loopback" : NULL;
	}
	if (ss->ss_family != AF_INET)
		return NULL;
	uint32_t a = ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr);
	return a == 0 ? "wildcard" : a == 0x7f000001 ? "loopback" : NULL;
}

/* 3. The first sendto (or sendmsg with a destination) on an unbound socket
 * assigns its address and port; every later send, to the same or another
 * destination, leaves from that same address and port, and replies to it
 * reach the socket. */
SP_TEST(udp_first_sendto_binds_local_port)
{
	for (int mode = 0; mode < MODES; mode++) {
		/* Blocking: the first send is sendto(); non-blocking: sendmsg(). */
		enum tx_api first = mode == BLOCKING ? TX_SENDTO : TX_SENDMSG;
		enum tx_api other = mode == BLOCKING ? TX_SENDMSG : TX_SENDTO;
		int rx1 = sp_udp_bound(ctx), rx2 = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
		struct sockaddr_storage to1, to2, local, now, src;
		socklen_t l1 = addr_of(rx1, &to1), l2 = addr_of(rx2, &to2);
		char buf[8];
		struct dgram d;

		sp_set_nonblock(tx, mode == NONBLOCKING);
		ASSERT_EQ(0, sp_local_port(tx));
		TX(tx, first, "hi", 2, &to1, l1);
		addr_of(tx, &local);
		unsigned port = sp_port(&local);
		if (mode == BLOCKING) {
			sp_record_ephemeral("port_after_first_sendto", port);
			RECORD("local_address_after_first_sendto", "%s",
			       local_addr_kind(&local) ? local_addr_kind(&local) : "other");
		}
		ASSERT_TRUE(port != 0, "a local port is assigned by the first %s()", tx_name[first]);
		ASSERT_EQ(ctx->af, local.ss_family);
		ASSERT_TRUE(local_addr_kind(&local) != NULL,
			    "the local address after the first %s() is the wildcard or loopback",
			    tx_name[first]);

		/* The datagram left from the loopback address and that port. */
		sp_loopback(ctx, &src, (uint16_t)port);
		ASSERT_EQ(2, RX(rx1, RX_RECVFROM, buf, sizeof(buf), &d));
		ASSERT_FROM(&src, &d);

		/* Later sends: the same destination, then another one. */
		TX(tx, other, "again", 5, &to1, l1);
		TX(tx, first, "other", 5, &to2, l2);
		TX(tx, other, "third", 5, &to2, l2);
		addr_of(tx, &now);
		ASSERT_EQ(port, sp_port(&now));
		ASSERT_EQ(5, RX(rx1, RX_RECVMSG, buf, sizeof(buf), &d));
		ASSERT_FROM(&src, &d);
		for (int i = 0; i < 2; i++) {
			ASSERT_EQ(5, RX(rx2, i ? RX_RECVMSG : RX_RECVFROM, buf, sizeof(buf), &d));
			ASSERT_FROM(&src, &d);
		}
		ASSERT_EMPTY(rx1);
		ASSERT_EMPTY(rx2);

		/* The binding is real: a reply to that address reaches tx. */
		TX(rx2, TX_SENDTO, "back", 4, &d.from, d.fromlen);
		ASSERT_EQ(4, RX(tx, RX_RECVFROM, buf, sizeof(buf), &d));
		ASSERT_FROM(&to2, &d);
		close(rx1);
		close(rx2);
		close(tx);
	}
}

/* 4. No flow control: a fast sender is never held back by a slow receiver
 * (a blocking send returns at once, a non-blocking one never says EAGAIN),
 * through every send API; the receiver gets fewer datagrams than were sent,
 * each whole. */
SP_TEST(udp_sender_is_not_held_back)
{
	enum { SENT = 400, SIZE = 512 };
	char buf[SIZE];

	memset(buf, 'u', sizeof(buf));
	for (int api = 0; api < TX_APIS; api++) {
		for (int mode = 0; mode < MODES; mode++) {
			int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), small = 4096, got = 0;
			struct sockaddr_storage to;
			socklen_t tolen = addr_of(rx, &to), gl = sizeof(got);

			ASSERT_SYS(setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
			ASSERT_SYS(getsockopt(rx, SOL_SOCKET, SO_RCVBUF, &got, &gl));
			if (api == 0 && mode == 0)
				RECORD("receive_buffer", "%d bytes (asked for %d)", got, small);
			REQUIRE(got > 0 && got < SENT * SIZE / 4,
				"a receive buffer much smaller than the %d bytes sent (SO_RCVBUF is %d)",
				SENT * SIZE, got);
			if (api <= TX_SEND)
				ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tolen));
			sp_set_nonblock(tx, mode == NONBLOCKING);
			/* Not even for a moment: the sends whose buffers fit in the
			 * sender's own send buffer (at most 2 KiB each, even were
			 * none freed yet) cannot block in any conforming stack, and
			 * the thread must not have blocked once they are done. */
			int sndbuf = 1 << 22, quiet;
			gl = sizeof(sndbuf);
			(void)setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
			ASSERT_SYS(getsockopt(tx, SOL_SOCKET, SO_SNDBUF, &sndbuf, &gl));
			quiet = sndbuf / 2048 < SENT ? sndbuf / 2048 : SENT;
			long m = sp_block_mark();
			sp_watchdog(mode == BLOCKING ? sp_wait_ms() : 0);
			for (int i = 0; i <= SENT; i++) {
				if (i == quiet)
					ASSERT_NO_BLOCK(m, "%d %s() calls (%s) into a slow receiver, their "
							"buffers within the %d-byte send buffer", quiet,
							tx_name[api], mode_name[mode], sndbuf);
				if (i == SENT)
					break;
				errno = 0;
				ssize_t w = tx_call(tx, (enum tx_api)api, buf, SIZE, 0, &to, tolen);
				int err = errno;
				if (w < 0) {
					sp_watchdog(0);
					FAIL("%s() #%d of %d (%s) was held back: %s", tx_name[api], i + 1,
					     SENT, mode_name[mode],
					     err == EINTR ? "it blocked" : sp_errno_name(err));
				}
				ASSERT_EQ(SIZE, w);
			}
			sp_watchdog(0);
			int received = 0;
			ssize_t r;
			while ((r = recv(rx, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
				ASSERT_EQ(SIZE, r);
				received++;
			}
			ASSERT_EQ(EAGAIN, errno);
			if (api == 0 && mode == 0) {
				RECORD("sent", "%d", SENT);
				RECORD("received", "%d", received);
			}
			ASSERT_TRUE(received > 0, "some datagrams sent with %s() (%s) are received",
				    tx_name[api], mode_name[mode]);
			ASSERT_TRUE(received < SENT,
				    "the slow receiver gets fewer than were sent with %s() (%s): %d of %d",
				    tx_name[api], mode_name[mode], received, SENT);
			close(rx);
			close(tx);
		}
	}
}

/* 5. No acknowledgement: unconnected sendto/sendmsg to a port where nobody
 * listens report success, blocking and non-blocking, and no error surfaces
 * later through any call; the socket goes on working. */
SP_TEST(udp_sendto_closed_port_reports_success)
{
	int gone = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), open_rx = sp_udp_bound(ctx);
	struct sockaddr_storage to, rxa, txa;
	socklen_t tolen = addr_of(gone, &to), rxl = addr_of(open_rx, &rxa);
	char buf[8];
	struct dgram d;
	struct sp_capture cap;

	addr_of(tx, &txa);
	/* To an open port: the datagram arrives and nothing comes back. */
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(tx), "C");
	sp_capture_name(&cap, sp_local_port(open_rx), "R");
	sp_capture_name(&cap, sp_local_port(gone), "G");
	TX(tx, TX_SENDTO, "data", 4, &rxa, rxl);
	ASSERT_EQ(4, RX(open_rx, RX_RECVFROM, buf, sizeof(buf), &d));
	ASSERT_FROM(&txa, &d);
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>R udp4");
		WIRE_LACKS(&cap, "R>C");
	}

	ASSERT_SYS(close(gone)); /* nobody listens on that port now */
	for (int mode = 0; mode < MODES; mode++) {
		sp_set_nonblock(tx, mode == NONBLOCKING);
		TX(tx, TX_SENDTO, "lost", 4, &to, tolen);
		TX(tx, TX_SENDMSG, "lost", 4, &to, tolen);
	}

	/* A witness: a connected socket sending to the same closed port after
	 * us hears the ICMP error; once it has, ours were answered too. */
	int w = sp_udp_bound(ctx);
	ASSERT_SYS(connect(w, (struct sockaddr *)&to, tolen));
	errno = 0;
	ssize_t ws = send(w, "w", 1, 0); /* evidence only: its result decides nothing */
	int werr = errno, heard = ws == 1 && (sp_poll(w, POLLERR, sp_wait_ms()) & POLLERR);
	RECORD("icmp_error_on_a_connected_witness", "%s%s", ws < 0 ? "send failed: " : "",
	       ws < 0 ? sp_errno_name(werr) : heard ? "yes" : "no");
	sp_capture_sync(&cap); /* recorded: the kernel's ICMP, unreported to us */
	RECORD("wire", "%s", cap.on ? cap.trace : cap.why);
	sp_capture_stop(&cap);

	/* No error on our socket: not pending, not readable, no POLLERR, and
	 * every receive API, blocking or not, has nothing to say. */
	int err = -1;
	socklen_t el = sizeof(err);
	ASSERT_EQ(0, sp_poll(tx, POLLIN, 0));
	ASSERT_SYS(getsockopt(tx, SOL_SOCKET, SO_ERROR, &err, &el));
	ASSERT_STR(sp_errno_name(0), sp_errno_name(err));
	sp_set_nonblock(tx, 1);
	for (int api = 0; api < RX_APIS; api++) {
		errno = 0;
		ssize_t r = rx_call(tx, (enum rx_api)api, buf, sizeof(buf), 0, &d);
		ASSERT_FAILED_WITH(r, errno, EAGAIN);
	}

	/* And it goes on working: a reply from the open port is received. */
	sp_set_nonblock(tx, 0);
	TX(tx, TX_SENDTO, "more", 4, &to, tolen);
	TX(tx, TX_SENDTO, "ping", 4, &rxa, rxl);
	ASSERT_EQ(4, RX(open_rx, RX_RECVMSG, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("ping", buf, 4);
	TX(open_rx, TX_SENDMSG, "pong", 4, &txa, len_of(ctx));
	for (int api = RX_RECV; api < RX_APIS; api++) {
		ASSERT_EQ(4, RX(tx, (enum rx_api)api, buf, sizeof(buf), &d));
		ASSERT_MEM_EQ("pong", buf, 4);
		if (d.named)
			ASSERT_FROM(&rxa, &d);
		if (api + 1 < RX_APIS)
			TX(open_rx, TX_SENDTO, "pong", 4, &txa, len_of(ctx));
	}
}

/* 6. One bound socket exchanges datagrams with several peers, interleaved:
 * recvfrom (blocking) and recvmsg (non-blocking) report each datagram's
 * exact source, and replies sent to it with sendto/sendmsg reach that
 * peer alone. */
SP_TEST(udp_one_socket_talks_to_many_peers)
{
	enum { PEERS = 3, EACH = 2 };

	for (int mode = 0; mode < MODES; mode++) {
		enum rx_api rxa = mode == BLOCKING ? RX_RECVFROM : RX_RECVMSG;
		enum tx_api txa = mode == BLOCKING ? TX_SENDTO : TX_SENDMSG;
		int srv = sp_udp_bound(ctx), peer[PEERS];
		struct sockaddr_storage to, pa[PEERS];
		socklen_t tolen = addr_of(srv, &to);
		char buf[16];
		struct dgram d;

		sp_set_nonblock(srv, mode == NONBLOCKING);
		for (int i = 0; i < PEERS; i++) {
			peer[i] = sp_udp_bound(ctx);
			addr_of(peer[i], &pa[i]);
		}
		for (int j = 0; j < EACH; j++)
			for (int i = 0; i < PEERS; i++) {
				char m[2] = { (char)('0' + i), (char)('0' + j) };
				TX(peer[i], (enum tx_api)(TX_SENDTO + (i + j) % 2), m, 2, &to, tolen);
			}
		int seen[PEERS][EACH] = { { 0 } };
		for (int k = 0; k < PEERS * EACH; k++) {
			ASSERT_EQ(2, RX(srv, rxa, buf, sizeof(buf), &d));
			int who = buf[0] - '0', j = buf[1] - '0';
			ASSERT_TRUE(who >= 0 && who < PEERS && j >= 0 && j < EACH && !seen[who][j]++,
				    "a datagram from a known peer, received once (got '%.2s')", buf);
			/* Its source names the peer that sent it. */
			ASSERT_FROM(&pa[who], &d);
			ASSERT_EQ(len_of(ctx), d.fromlen);
			/* Reply to the address exactly as it was returned. */
			char reply[2] = { (char)('a' + who), buf[1] };
			TX(srv, txa, reply, 2, &d.from, d.fromlen);
		}
		ASSERT_EMPTY(srv);
		for (int i = 0; i < PEERS; i++) {
			for (int j = 0; j < EACH; j++) {
				ASSERT_EQ(2, RX(peer[i], RX_RECVFROM, buf, sizeof(buf), &d));
				ASSERT_EQ('a' + i, buf[0]);
				ASSERT_EQ('0' + j, buf[1]);
				ASSERT_FROM(&to, &d);
			}
			ASSERT_EMPTY(peer[i]);
			close(peer[i]);
		}
		close(srv);
	}
}

/* 7. An unconnected socket needs a destination on every send: send, write,
 * sendto and sendmsg without one fail with EDESTADDRREQ (blocking and
 * non-blocking), before and after a sendto, and deliver nothing; each
 * sendto goes to its own destination. */
SP_TEST(udp_unconnected_send_needs_destination)
{
	int rx1 = sp_udp_bound(ctx), rx2 = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to1, to2;
	socklen_t l1 = addr_of(rx1, &to1), l2 = addr_of(rx2, &to2);
	char buf[8];
	struct dgram d;

	for (int round = 0; round < 3; round++) {
		for (int mode = 0; mode < MODES; mode++) {
			sp_set_nonblock(tx, mode == NONBLOCKING);
			for (int api = 0; api < TX_APIS; api++) {
				errno = 0;
				ssize_t r = tx_call(tx, (enum tx_api)api, "nope", 4,
						    mode == NONBLOCKING ? MSG_DONTWAIT : 0, NULL, 0);
				int err = errno;
				if (r >= 0 || err != EDESTADDRREQ)
					FAIL("%s() without a destination (%s, %s) fails with EDESTADDRREQ: "
					     "got %zd (%s)", tx_name[api], mode_name[mode],
					     round == 0 ? "before any sendto" : "after a sendto", r,
					     sp_errno_name(err));
			}
		}
		/* Round 0: nothing sent yet; then one sendto to rx1, then to rx2. */
		sp_set_nonblock(tx, 0);
		if (round == 0)
			TX(tx, TX_SENDTO, "one", 3, &to1, l1);
		else if (round == 1)
			TX(tx, TX_SENDTO, "two", 3, &to2, l2);
	}
	/* Each datagram went to its own destination; the failed sends sent
	 * nothing. */
	ASSERT_EQ(3, RX(rx1, RX_RECVFROM, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("one", buf, 3);
	ASSERT_EQ(3, RX(rx2, RX_RECVFROM, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("two", buf, 3);
	ASSERT_EMPTY(rx1);
	ASSERT_EMPTY(rx2);
}

/* 8a. After connect(), write/send/sendto/sendmsg without an address reach
 * the peer, and read/recv/recvfrom/recvmsg receive from it (recvfrom and
 * recvmsg naming it), blocking and non-blocking; connect() itself delivers
 * nothing to the peer. */
SP_TEST(udp_connected_socket_needs_no_addresses)
{
	int a = sp_udp_bound(ctx), b = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sb;
	socklen_t la = addr_of(a, &sa), lb = addr_of(b, &sb);
	char buf[16];
	struct dgram d;
	struct sp_capture cap;

	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(a), "A");
	sp_capture_name(&cap, sp_local_port(b), "B");
	ASSERT_SYS(connect(a, (struct sockaddr *)&sb, lb));
	ASSERT_EQ(0, sp_poll(b, POLLIN, 0)); /* connect() sent nothing */
	if (sp_capture_sync(&cap)) { /* not a single packet on the wire */
		WIRE_LACKS(&cap, "A>B");
		WIRE_LACKS(&cap, "B>A");
		RECORD("wire", "%s", cap.trace[0] ? cap.trace : "(nothing)");
	}
	sp_capture_stop(&cap);
	ASSERT_SYS(connect(b, (struct sockaddr *)&sa, la));
	for (int mode = 0; mode < MODES; mode++) {
		sp_set_nonblock(a, mode == NONBLOCKING);
		sp_set_nonblock(b, mode == NONBLOCKING);
		for (int api = 0; api < TX_APIS; api++) {
			char m[4] = { 'a', '>', 'b', (char)('0' + api) };
			TX(a, (enum tx_api)api, m, 4, NULL, 0);
			ASSERT_EQ(4, RX(b, (enum rx_api)api, buf, sizeof(buf), &d));
			ASSERT_MEM_EQ(m, buf, 4);
			if (d.named)
				ASSERT_FROM(&sa, &d);
			m[0] = 'b';
			m[2] = 'a';
			TX(b, (enum tx_api)(TX_APIS - 1 - api), m, 4, NULL, 0);
			ASSERT_EQ(4, RX(a, (enum rx_api)(RX_APIS - 1 - api), buf, sizeof(buf), &d));
			ASSERT_MEM_EQ(m, buf, 4);
			if (d.named)
				ASSERT_FROM(&sb, &d);
		}
	}
	ASSERT_EMPTY(a);
	ASSERT_EMPTY(b);
}

/* 8b. A connected socket is not delivered datagrams from other sources,
 * whichever call sends them and whichever call receives, blocking or not. */
SP_TEST(udp_connected_socket_ignores_other_sources)
{
	int a = sp_udp_bound(ctx), peer = sp_udp_bound(ctx), stranger = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sp;
	socklen_t la = addr_of(a, &sa), lp = addr_of(peer, &sp);
	char buf[16];
	struct dgram d;

	ASSERT_SYS(connect(a, (struct sockaddr *)&sp, lp));
	for (int mode = 0; mode < MODES; mode++) {
		sp_set_nonblock(a, mode == NONBLOCKING);
		for (int api = 0; api < RX_APIS; api++) {
			TX(stranger, (enum tx_api)(TX_SENDTO + api % 2), "stranger", 8, &sa, la);
			TX(peer, (enum tx_api)(TX_SENDTO + (api + 1) % 2), "peer", 4, &sa, la);
			/* Loopback delivers in order: if the stranger's datagram
			 * had been accepted it would be first. */
			ssize_t n = RX(a, (enum rx_api)api, buf, sizeof(buf), &d);
			if (api == 0 && mode == 0)
				RECORD("first_datagram_on_connected_socket", "%.*s", (int)n, buf);
			ASSERT_EQ(4, n);
			ASSERT_MEM_EQ("peer", buf, 4);
			if (d.named)
				ASSERT_FROM(&sp, &d);
			ASSERT_EMPTY(a);
		}
	}
}

/* 8c. A connected socket hears the ICMP port unreachable: ECONNREFUSED,
 * reported once, by whichever call comes next (read, recv, recvfrom,
 * recvmsg, send, write, SO_ERROR), blocking or not. */
SP_TEST(udp_connected_socket_reports_refused)
{
	enum { RECEIVES = RX_APIS, SENDS = 2, VIA_SO_ERROR = 1 };
	static const char *const how[] = { "read", "recv", "recvfrom", "recvmsg", "send", "write",
					   "getsockopt(SO_ERROR)" };

	for (int call = 0; call < RECEIVES + SENDS + VIA_SO_ERROR; call++) {
		for (int mode = 0; mode < MODES; mode++) {
			int a = sp_udp_bound(ctx), gone = sp_udp_bound(ctx);
			struct sockaddr_storage sg;
			socklen_t lg = addr_of(gone, &sg);
			char buf[8];
			struct dgram d;
			struct sp_capture cap;
			int wire = call == 0 && mode == 0;

			if (wire) {
				sp_capture_start(&cap);
				sp_capture_name(&cap, sp_local_port(a), "C");
				sp_capture_name(&cap, sp_local_port(gone), "G");
			}
			ASSERT_SYS(close(gone));
			ASSERT_SYS(connect(a, (struct sockaddr *)&sg, lg));
			sp_set_nonblock(a, mode == NONBLOCKING);
			TX(a, TX_SEND, "knock", 5, NULL, 0);
			int heard = sp_poll(a, POLLIN, sp_wait_ms()) & POLLERR;
			/* On the wire: our datagram, answered by ICMP(v6) port
			 * unreachable. No ICMP at all (a firewall, a rate limit)
			 * leaves nothing for the socket to report. */
			if (wire) {
				if (sp_capture_sync(&cap)) {
					REQUIRE(heard || strstr(cap.trace, "port-unreachable"),
						"an ICMP port unreachable for the datagram (none was sent: %s)",
						cap.trace);
					WIRE_EXPECT(&cap, ctx->af == AF_INET6
						    ? "C>G udp5, G>C icmp6-port-unreachable"
						    : "C>G udp5, G>C icmp-port-unreachable");
				}
				sp_capture_stop(&cap);
			}
			ASSERT_TRUE(heard, "the port unreachable error (%s) arrives within %d ms",
				    mode_name[mode], sp_wait_ms());
			ssize_t r;
			int err;
			sp_watchdog(sp_wait_ms());
			errno = 0;
			if (call < RECEIVES) {
				r = rx_call(a, (enum rx_api)call, buf, sizeof(buf), 0, &d);
			} else if (call < RECEIVES + SENDS) {
				r = tx_call(a, call == RECEIVES ? TX_SEND : TX_WRITE, "again", 5, 0,
					    NULL, 0);
			} else {
				socklen_t el = sizeof(err);
				r = getsockopt(a, SOL_SOCKET, SO_ERROR, &err, &el);
				errno = err;
				if (r == 0)
					r = err ? -1 : 0;
			}
			err = errno;
			sp_watchdog(0);
			if (call == 1 && mode == 0)
				RECORD("recv_after_port_unreachable", "%zd (%s)", r, sp_errno_name(err));
			if (r != -1 || err != ECONNREFUSED)
				FAIL("%s (%s) after ICMP port unreachable reports ECONNREFUSED: got %zd (%s)",
				     how[call], mode_name[mode], r, sp_errno_name(err));
			/* Reported once: nothing pending any more. */
			int pending = -1;
			socklen_t pl = sizeof(pending);
			ASSERT_SYS(getsockopt(a, SOL_SOCKET, SO_ERROR, &pending, &pl));
			ASSERT_STR(sp_errno_name(0), sp_errno_name(pending));
			ASSERT_EMPTY(a);
			close(a);
		}
	}
}

static const struct sp_case cases[] = {
	SP_CASE(udp_keeps_datagram_boundaries, "UDP-BOUNDARY", SP_INET),
	SP_CASE(udp_short_buffer_truncates_datagram, "UDP-TRUNCATE", SP_INET),
	SP_CASE(udp_first_sendto_binds_local_port, "UDP-SENDTO-IMPLICIT-BIND", SP_INET),
	SP_CASE(udp_sender_is_not_held_back, "UDP-NO-FLOW-CONTROL", SP_INET),
	SP_CASE(udp_sendto_closed_port_reports_success, "UDP-NO-ACK", SP_INET),
	SP_CASE(udp_one_socket_talks_to_many_peers, "UDP-ONE-SOCKET-MANY-PEERS", SP_INET),
	SP_CASE(udp_unconnected_send_needs_destination, "UDP-DESTINATION-EACH-SEND", SP_INET),
	SP_CASE(udp_connected_socket_needs_no_addresses, "UDP-CONNECTED", SP_INET),
	SP_CASE(udp_connected_socket_ignores_other_sources, "UDP-CONNECTED", SP_INET),
	SP_CASE(udp_connected_socket_reports_refused, "UDP-CONNECTED", SP_INET),
};

SP_MAIN("udp", cases)
