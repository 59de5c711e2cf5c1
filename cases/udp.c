/*
 * udp.c - UDP datagram behaviors (seed notes: "udp", "一些tips", "6.3",
 * "6.4 connectedUDP and unconnectedUDP").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. UDP-BOUNDARY               k sends are k receives of the same sizes.
 *  2. UDP-TRUNCATE               a short buffer gets the head, MSG_TRUNC, and
 *                                the rest of that datagram is gone.
 *  3. UDP-SENDTO-IMPLICIT-BIND   the first sendto binds address and port.
 *  4. UDP-NO-FLOW-CONTROL        a sender is never held back; the receiver
 *                                loses what its buffer cannot hold.
 *  5. UDP-NO-ACK                 sendto to a port nobody listens on succeeds.
 *  6. UDP-ONE-SOCKET-MANY-PEERS  one socket, several peers, told apart by
 *                                recvfrom's address.
 *  7. UDP-DESTINATION-EACH-SEND  send() without a destination: EDESTADDRREQ.
 *  8. UDP-CONNECTED              connect() only registers the peer: no
 *                                addresses needed, other sources filtered,
 *                                ICMP port unreachable -> ECONNREFUSED.
 *
 * Wire (where the item has its own network namespace): connect() sends
 * nothing; a closed port answers with ICMP / ICMPv6 port unreachable; a
 * datagram to an open port gets no reply packet.
 *
 * Platform-defined (recorded): how many of the datagrams a small receive
 * buffer keeps, the ephemeral port.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

/* Address of a bound socket. */
static socklen_t addr_of(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)ss, &len));
	return len;
}

/* Receive one datagram, waiting at most the suite's bound. */
static ssize_t recv_bounded(int fd, void *buf, size_t n, struct sockaddr_storage *from)
{
	socklen_t len = sizeof(*from);

	ASSERT_TRUE(sp_poll(fd, POLLIN, sp_wait_ms()) & POLLIN,
		    "a datagram arrives within %d ms", sp_wait_ms());
	return ASSERT_SYS(recvfrom(fd, buf, n, 0, (struct sockaddr *)from, &len));
}

/* 1. Each sendto is one datagram: k sends, k receives of the same sizes. */
SP_TEST(udp_keeps_datagram_boundaries)
{
	static const size_t sizes[] = { 1, 100, 7, 1000, 3 };
	enum { K = sizeof(sizes) / sizeof(sizes[0]) };
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to, from;
	socklen_t tolen = addr_of(rx, &to);
	unsigned char buf[2048];

	for (size_t i = 0; i < K; i++) {
		memset(buf, (int)('a' + i), sizes[i]);
		ASSERT_EQ(sizes[i], sendto(tx, buf, sizes[i], 0, (struct sockaddr *)&to, tolen));
	}
	for (size_t i = 0; i < K; i++) {
		ASSERT_EQ(sizes[i], recv_bounded(rx, buf, sizeof(buf), &from));
		ASSERT_EQ('a' + i, buf[0]);
	}
	ASSERT_EQ(0, sp_poll(rx, POLLIN, 0)); /* exactly k, nothing more */
}

/* 2. A buffer smaller than the datagram: the head, MSG_TRUNC, rest dropped. */
SP_TEST(udp_short_buffer_truncates_datagram)
{
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to);
	char big[100], small[50], buf[10];

	memset(big, 'B', sizeof(big));
	memset(small, 's', sizeof(small));
	ASSERT_EQ(100, sendto(tx, big, 100, 0, (struct sockaddr *)&to, tolen));
	ASSERT_EQ(50, sendto(tx, small, 50, 0, (struct sockaddr *)&to, tolen));

	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	ASSERT_TRUE(sp_poll(rx, POLLIN, sp_wait_ms()), "the datagram arrives");
	ASSERT_EQ(10, recvmsg(rx, &mh, 0));
	ASSERT_TRUE(mh.msg_flags & MSG_TRUNC, "recvmsg flags the datagram MSG_TRUNC (flags 0x%x)",
		    mh.msg_flags);
	ASSERT_MEM_EQ(big, buf, 10);

	char next[200];
	struct sockaddr_storage from;
	ssize_t n = recv_bounded(rx, next, sizeof(next), &from);
	RECORD("next_receive_after_truncation", "%zd bytes of '%c'", n, n > 0 ? next[0] : '-');
	ASSERT_EQ(50, n);
	ASSERT_EQ('s', next[0]);
}

/* 3. The first sendto on an unbound socket assigns its address and port. */
SP_TEST(udp_first_sendto_binds_local_port)
{
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to, from;
	socklen_t tolen = addr_of(rx, &to);
	char buf[8];

	ASSERT_EQ(0, sp_local_port(tx));
	ASSERT_EQ(2, sendto(tx, "hi", 2, 0, (struct sockaddr *)&to, tolen));
	unsigned port = sp_local_port(tx);
	sp_record_ephemeral("port_after_first_sendto", port);
	ASSERT_TRUE(port != 0, "a local port is assigned by the first sendto");
	ASSERT_EQ(2, recv_bounded(rx, buf, sizeof(buf), &from));
	ASSERT_EQ(port, sp_port(&from));
}

/* 4. No flow control: a fast sender is never held back by a slow receiver;
 * the receiver gets fewer datagrams than were sent. */
SP_TEST(udp_sender_is_not_held_back)
{
	enum { SENT = 400, SIZE = 512 };
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM), small = 4096;
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to);
	char buf[SIZE];

	ASSERT_SYS(setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
	memset(buf, 'u', sizeof(buf));
	for (int i = 0; i < SENT; i++) {
		ssize_t w = sendto(tx, buf, SIZE, MSG_DONTWAIT, (struct sockaddr *)&to, tolen);
		if (w < 0)
			FAIL("sendto #%d of %d was held back: %s", i + 1, SENT,
			     sp_errno_name(errno));
		ASSERT_EQ(SIZE, w);
	}
	int received = 0;
	while (recv(rx, buf, sizeof(buf), MSG_DONTWAIT) == SIZE)
		received++;
	RECORD("sent", "%d", SENT);
	RECORD("received", "%d", received);
	ASSERT_TRUE(received > 0, "some datagrams are received");
	ASSERT_TRUE(received < SENT, "the slow receiver gets fewer than were sent (%d of %d)",
		    received, SENT);
}

/* 5. No acknowledgement: an unconnected sendto to a port where nobody
 * listens reports success, and no error surfaces later either. */
SP_TEST(udp_sendto_closed_port_reports_success)
{
	int gone = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), open_rx = sp_udp_bound(ctx);
	struct sockaddr_storage to, from;
	socklen_t tolen = addr_of(gone, &to);
	char buf[8];
	struct sp_capture cap;

	/* To an open port: the datagram arrives and nothing comes back. */
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(tx), "C");
	sp_capture_name(&cap, sp_local_port(open_rx), "R");
	sp_capture_name(&cap, sp_local_port(gone), "G");
	struct sockaddr_storage rxa;
	socklen_t rxl = addr_of(open_rx, &rxa);
	ASSERT_EQ(4, sendto(tx, "data", 4, 0, (struct sockaddr *)&rxa, rxl));
	ASSERT_EQ(4, recv_bounded(open_rx, buf, sizeof(buf), &from));
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>R udp4");
		WIRE_LACKS(&cap, "R>C");
	}

	ASSERT_SYS(close(gone)); /* nobody listens on that port now */
	ASSERT_EQ(4, sendto(tx, "lost", 4, 0, (struct sockaddr *)&to, tolen));
	ASSERT_EQ(4, sendto(tx, "lost", 4, 0, (struct sockaddr *)&to, tolen));
	ASSERT_ERRNO(recv(tx, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
	sp_capture_sync(&cap); /* recorded: the kernel's ICMP, unreported to us */
	RECORD("wire", "%s", cap.on ? cap.trace : cap.why);
	sp_capture_stop(&cap);
}

/* 6. One bound socket exchanges datagrams with several peers. */
SP_TEST(udp_one_socket_talks_to_many_peers)
{
	enum { PEERS = 3 };
	int srv = sp_udp_bound(ctx), peer[PEERS];
	struct sockaddr_storage to, from;
	socklen_t tolen = addr_of(srv, &to);
	char buf[16];

	for (int i = 0; i < PEERS; i++) {
		peer[i] = sp_udp_bound(ctx);
		char m = (char)('0' + i);
		ASSERT_EQ(1, sendto(peer[i], &m, 1, 0, (struct sockaddr *)&to, tolen));
	}
	for (int i = 0; i < PEERS; i++) {
		ASSERT_EQ(1, recv_bounded(srv, buf, sizeof(buf), &from));
		int who = buf[0] - '0';
		ASSERT_TRUE(who >= 0 && who < PEERS, "a datagram from a known peer");
		ASSERT_EQ(sp_local_port(peer[who]), sp_port(&from));
		char reply = (char)('a' + who);
		socklen_t flen = from.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							     : sizeof(struct sockaddr_in);
		ASSERT_EQ(1, sendto(srv, &reply, 1, 0, (struct sockaddr *)&from, flen));
	}
	for (int i = 0; i < PEERS; i++) {
		ASSERT_EQ(1, recv_bounded(peer[i], buf, sizeof(buf), &from));
		ASSERT_EQ('a' + i, buf[0]);
	}
}

/* 7. An unconnected socket needs a destination on every send. */
SP_TEST(udp_unconnected_send_needs_destination)
{
	int rx = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to);

	ASSERT_EQ(3, sendto(tx, "one", 3, 0, (struct sockaddr *)&to, tolen));
	/* The destination of that sendto was not kept. */
	ASSERT_ERRNO(send(tx, "two", 3, 0), EDESTADDRREQ);
	ASSERT_ERRNO(write(tx, "two", 3), EDESTADDRREQ);
}

/* 8a. After connect(), send/recv/write/read work without addresses, and
 * connect() itself delivers nothing to the peer. */
SP_TEST(udp_connected_socket_needs_no_addresses)
{
	int a = sp_udp_bound(ctx), b = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sb;
	socklen_t la = addr_of(a, &sa), lb = addr_of(b, &sb);
	char buf[16];
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
	ASSERT_EQ(4, send(a, "ping", 4, 0));
	ASSERT_EQ(4, write(a, "pong", 4));
	ASSERT_TRUE(sp_poll(b, POLLIN, sp_wait_ms()), "the datagram arrives");
	ASSERT_EQ(4, recv(b, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("ping", buf, 4);
	ASSERT_TRUE(sp_poll(b, POLLIN, sp_wait_ms()), "the second datagram arrives");
	ASSERT_EQ(4, read(b, buf, sizeof(buf)));
	ASSERT_MEM_EQ("pong", buf, 4);
}

/* 8b. A connected socket is not delivered datagrams from other sources. */
SP_TEST(udp_connected_socket_ignores_other_sources)
{
	int a = sp_udp_bound(ctx), peer = sp_udp_bound(ctx), stranger = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sp;
	socklen_t la = addr_of(a, &sa), lp = addr_of(peer, &sp);
	char buf[16];

	ASSERT_SYS(connect(a, (struct sockaddr *)&sp, lp));
	ASSERT_EQ(8, sendto(stranger, "stranger", 8, 0, (struct sockaddr *)&sa, la));
	ASSERT_EQ(4, sendto(peer, "peer", 4, 0, (struct sockaddr *)&sa, la));
	/* Loopback delivers in order: if the stranger's datagram had been
	 * accepted it would be first. */
	ASSERT_TRUE(sp_poll(a, POLLIN, sp_wait_ms()), "the peer's datagram arrives");
	ssize_t n = ASSERT_SYS(recv(a, buf, sizeof(buf), 0));
	RECORD("first_datagram_on_connected_socket", "%.*s", (int)n, buf);
	ASSERT_EQ(4, n);
	ASSERT_MEM_EQ("peer", buf, 4);
	ASSERT_ERRNO(recv(a, buf, sizeof(buf), MSG_DONTWAIT), EAGAIN);
}

/* 8c. A connected socket hears the ICMP port unreachable: ECONNREFUSED. */
SP_TEST(udp_connected_socket_reports_refused)
{
	int a = sp_udp_bound(ctx), gone = sp_udp_bound(ctx);
	struct sockaddr_storage sg;
	socklen_t lg = addr_of(gone, &sg);
	char buf[8];
	struct sp_capture cap;

	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(a), "C");
	sp_capture_name(&cap, sp_local_port(gone), "G");
	ASSERT_SYS(close(gone));
	ASSERT_SYS(connect(a, (struct sockaddr *)&sg, lg));
	ASSERT_EQ(5, send(a, "knock", 5, 0));
	ASSERT_TRUE(sp_poll(a, POLLIN, sp_wait_ms()) & POLLERR,
		    "the port unreachable error arrives within %d ms", sp_wait_ms());
	/* On the wire: our datagram, answered by ICMP(v6) port unreachable. */
	if (sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, ctx->af == AF_INET6 ? "C>G udp5, G>C icmp6-port-unreachable"
						      : "C>G udp5, G>C icmp-port-unreachable");
	sp_capture_stop(&cap);
	errno = 0;
	ssize_t r = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	int err = errno;
	RECORD("recv_after_port_unreachable", "%zd (%s)", r, sp_errno_name(err));
	ASSERT_FAILED_WITH(r, err, ECONNREFUSED);
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
