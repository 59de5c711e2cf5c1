/*
 * udp.c - UDP datagram behaviors (seed notes: "udp", "一些tips", "6.3",
 * "6.4 connectedUDP and unconnectedUDP").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. UDP-BOUNDARY               k sends are k receives of the same sizes
 *                                (0 to 9000 bytes), in order, none joined
 *                                to the next.
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
 * recvfrom() and recvmsg(), recvmmsg() and io_uring READ, RECV and
 * RECVMSG, each on a blocking and on a non-blocking (O_NONBLOCK) socket;
 * every send-side behavior through write(), send(), sendto(), sendmsg(),
 * sendmmsg() and io_uring WRITE, SEND and SENDMSG where the socket's state
 * allows the call (write/send and io_uring WRITE/SEND need a connected
 * socket), blocking and non-blocking. (The vector calls, splice and
 * sendfile are stream calls: readv/writev join no datagram behavior
 * here, splice and sendfile keep no datagram boundaries.) The
 * source address (address and port) that recvfrom() or recvmsg() reports
 * is asserted where it is the item's Must (UDP-ONE-SOCKET-MANY-PEERS,
 * UDP-CONNECTED's filtering), needed where the item relies on it
 * (UDP-SENDTO-IMPLICIT-BIND: broken, needs UDP-ONE-SOCKET-MANY-PEERS) and
 * recorded elsewhere. A blocking call runs under a bound, so a call that
 * blocks where it must not fails naming the call instead of hanging.
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
#include "sp_entry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

/* ---- helpers local to this file ------------------------------------------ */

/* Parameters: .read and .write are the datagram calls (read, recv,
 * recvfrom, recvmsg; write, send, sendto, sendmsg: SP_IO_*), .mode the
 * socket's O_NONBLOCK. What a receive reports besides its count (source,
 * msg_flags) comes in a struct sp_got. */
enum { DGRAM_CALLS = 4 }; /* SP_IO_READ .. SP_IO_MSG */
/* The send calls that take a destination: sendto, sendmsg, sendmmsg,
 * io_uring SENDMSG (io_uring SEND and WRITE have no address field). */
#define ADDRESSED_WRITES SP_VALUES(SP_IO_RECVFROM, SP_IO_MSG, SP_IO_MMSG, SP_IO_URING_MSG)

/* The k-th call of a set, cycling over the calls this system has. */
#define nth_call(set, k, out) sp_io_nth(set, k, out, SP_IO_RECVFROM)
static const char *mode_name(int nonblock) { return nonblock ? "non-blocking" : "blocking"; }

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

/* The source of a received datagram is exactly `want` (address and
 * port). Reporting it is UDP-ONE-SOCKET-MANY-PEERS' Must (and, for the
 * filtering, UDP-CONNECTED's): ASSERT_FROM there. Where it is evidence
 * only, NOTE_FROM records a mismatch (source_address_seen); where the
 * item needs it as a mechanism, NEED_FROM makes a mismatch broken (needs
 * UDP-ONE-SOCKET-MANY-PEERS). */
enum from_check { FROM_MUST, FROM_NOTE, FROM_NEED };
#define ASSERT_FROM(want, d) check_from(__FILE__, __LINE__, FROM_MUST, want, d)
#define NOTE_FROM(want, d) check_from(__FILE__, __LINE__, FROM_NOTE, want, d)
#define NEED_FROM(want, d) check_from(__FILE__, __LINE__, FROM_NEED, want, d)
static void check_from(const char *file, int line, enum from_check how,
		       const struct sockaddr_storage *want, const struct sp_got *d)
{
	char w[80], g[80];
	addr_str(want, want->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
						   : sizeof(struct sockaddr_in), w, sizeof(w));
	addr_str(&d->from, d->fromlen, g, sizeof(g));
	if (strcmp(w, g) == 0)
		return;
	if (how == FROM_MUST)
		sp_fail(file, line, "source address of the datagram", w, g, 0);
	else if (how == FROM_NEED)
		sp_broken_needs(file, line, "UDP-ONE-SOCKET-MANY-PEERS", "the receiver reports the "
				"datagram's source as %s, expected %s", g, w);
	else
		RECORD_ONCE("source_address_seen", "%s, sent from %s", g, w);
}

/* Receive one datagram that has been sent: wait (bounded) until the socket
 * is readable, then one call; a blocking call runs under the watchdog. */
#define RX(fd, api, buf, n, d) rx_one(__FILE__, __LINE__, fd, api, buf, n, d)
static ssize_t rx_one(const char *file, int line, int fd, int api, void *buf, size_t n,
		      struct sp_got *d)
{
	if (!(sp_poll(fd, POLLIN, sp_wait_ms()) & POLLIN))
		sp_failf(file, line, "a datagram arrives within %d ms for %s(): none did", sp_wait_ms(),
			 sp_io_in_name(api));
	errno = 0;
	int armed = sp_bound_begin();
	ssize_t r = sp_io_recv(api, fd, buf, n, 0, d);
	sp_bound_end(file, line, armed, "%s() with a datagram queued", sp_io_in_name(api));
	int err = errno;
	if (r < 0)
		sp_failf(file, line, "%s() of a queued datagram returns it (got -1, %s)",
			 sp_io_in_name(api), sp_errno_name(err));
	return r;
}

/* One receive returns one datagram of `want` bytes: more is datagrams
 * merged, UDP-BOUNDARY's deviation (a mechanism of the other items). */
#define ASSERT_DGRAM(want, got) assert_dgram(__FILE__, __LINE__, want, got)
static void assert_dgram(const char *file, int line, ssize_t want, ssize_t got)
{
	if (got > want) {
		char exp[32], obs[48];
		snprintf(exp, sizeof(exp), "%zd (one datagram)", want);
		snprintf(obs, sizeof(obs), "%zd (more than one)", got);
		sp_needs_at(file, line, "UDP-BOUNDARY", "one receive of a queued datagram", exp, obs, 0);
	}
	sp_check_eq(file, line, "the datagram's length", want, got);
}

/* Nothing more is queued: not readable, and every receive API says EAGAIN. */
#define ASSERT_EMPTY(fd) assert_empty(__FILE__, __LINE__, fd)
static void assert_empty(const char *file, int line, int fd)
{
	char buf[64];

	if (sp_poll(fd, POLLIN, 0))
		sp_failf(file, line, "no further datagram is queued (poll says readable)");
	for (const int *c = SP_FLAG_READS; *c >= 0; c++) {
		int api = *c;
		if (!sp_io_use(api, 0))
			continue;
		errno = 0;
		ssize_t r = sp_io_in(api, fd, buf, sizeof(buf), MSG_DONTWAIT);
		sp_check_errno(file, line, sp_io_in_name(api), r, errno, EAGAIN);
	}
}

/* One send through `api`: write/send use the socket's peer, sendto/sendmsg
 * the destination `to` (NULL: none). The raw result, never retried. */
static ssize_t tx_call(int fd, int api, const void *buf, size_t n, int flags,
		       const struct sockaddr_storage *to, socklen_t tolen)
{
	return sp_io_send(api, fd, buf, n, flags, (const struct sockaddr *)to, tolen);
}

/* A send that must succeed in full, at once: under the watchdog, so a
 * sender that is held back fails here instead of hanging. */
#define TX(fd, api, buf, n, to, tolen) tx_one(__FILE__, __LINE__, fd, api, buf, n, to, tolen)
static void tx_one(const char *file, int line, int fd, int api, const void *buf, size_t n,
		   const struct sockaddr_storage *to, socklen_t tolen)
{
	errno = 0;
	int armed = sp_bound_begin();
	ssize_t w = tx_call(fd, api, buf, n, 0, to, tolen);
	sp_bound_end(file, line, armed, "%s() of a %zu-byte datagram (the sender held back)",
		     sp_io_out_name(api), n);
	int err = errno;
	/* write, send, io_uring WRITE/SEND rely on the socket's connect()
	 * (UDP-CONNECTED): without a peer they cannot send at all. */
	if (w < 0 && !sp_io_names_peer(api) && (err == EDESTADDRREQ || err == ENOTCONN))
		sp_broken_needs(file, line, "UDP-CONNECTED", "%s() of a %zu-byte datagram on a "
				"connected socket fails with %s (the socket has no peer)",
				sp_io_out_name(api), n, sp_errno_name(err));
	if (w < 0)
		sp_failf(file, line, "%s() of a %zu-byte datagram succeeds (got -1, %s)",
			 sp_io_out_name(api), n, sp_errno_name(err));
	sp_check_eq(file, line, sp_io_out_name(api), (long long)n, w);
}

/* A datagram's content: its index i in every byte, so a datagram joined to
 * another or cut short shows. */
static void fill(unsigned char *buf, size_t n, int i)
{
	for (size_t k = 0; k < n; k++)
		buf[k] = (unsigned char)(i * 31 + k);
}

/* ---- the behaviors ---------------------------------------------------------- */

/* 1. Each send is one datagram: k sends (every datagram send call in turn;
 * an empty one and one larger than an Ethernet MTU among them), k receives of
 * the same sizes and contents, each from its sender, through every receive
 * call (.read), blocking and non-blocking (.mode). */
SP_TEST(udp_keeps_datagram_boundaries, "UDP-BOUNDARY", SP_INET,
	.read = SP_DGRAM_READS, .mode = SP_BOTH_MODES)
{
	static const size_t sizes[] = { 1, 100, 0, 7, 9000, 3 };
	enum { K = sizeof(sizes) / sizeof(sizes[0]) };
	int api = ctx->read;

	/* Two senders: `un` unconnected (the calls with a destination),
	 * `co` connected to rx (write, send, io_uring WRITE and SEND). */
	int rx = sp_udp_bound(ctx), un = sp_udp_bound(ctx), co = sp_udp_bound(ctx);
	struct sockaddr_storage to, sun, sco;
	socklen_t tolen = addr_of(rx, &to);
	unsigned char out[9000], in[16384];
	struct sp_got d;

	addr_of(un, &sun);
	addr_of(co, &sco);
	ASSERT_SYS(connect(co, (struct sockaddr *)&to, tolen));
	sp_set_nonblock(rx, ctx->nonblock);
	/* The sends rotate through every send call. */
	int how[K];
	for (int i = 0; i < K; i++) {
		how[i] = nth_call(SP_DGRAM_WRITES, i + api, 1);
		fill(out, sizes[i], i);
		TX(sp_io_names_peer(how[i]) ? un : co, how[i], out, sizes[i], &to, tolen);
	}
	/* One buffer larger than all of them together: a
	 * receive that joined datagrams would return more. */
	for (int i = 0; i < K; i++) {
		ssize_t n = RX(rx, api, in, sizeof(in), &d);
		if (n != (ssize_t)sizes[i])
			FAIL("datagram %d of %d via %s() (%s, sent with %s()): %zu bytes "
			     "expected, %zd received", i + 1, K, sp_io_in_name(api),
			     mode_name(ctx->nonblock), sp_io_out_name(how[i]), sizes[i], n);
		fill(out, sizes[i], i);
		ASSERT_MEM_EQ(out, in, sizes[i]);
		if (d.named)
			NOTE_FROM(sp_io_names_peer(how[i]) ? &sun : &sco, &d);
		ASSERT_EQ(0, d.msg_flags & MSG_TRUNC);
	}
	ASSERT_EMPTY(rx); /* exactly k, nothing more */
	close(rx);
	close(un);
	close(co);
	RECORD_ONCE("empty_datagram", "received as a 0-byte datagram");
}

/* Recorded: recv(MSG_TRUNC) returns the real length on Linux. */
static void record_recv_msg_trunc(const struct sp_ctx *ctx)
{
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to);
	char big[100] = { 0 }, buf[10];
	TX(tx, SP_IO_RECVFROM, big, sizeof(big), &to, tolen);
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the datagram arrives");
	errno = 0;
	ssize_t r = recv(rx, buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT);
	RECORD("recv_msg_trunc_returns", "%zd%s", r, r < 0 ? sp_errno_name(errno) : "");
}

/* 2. A buffer smaller than the datagram: the head, MSG_TRUNC (recvmsg), the
 * rest dropped; a buffer of exactly the size: no MSG_TRUNC. Through every
 * receive call, blocking and non-blocking. */
SP_TEST(udp_short_buffer_truncates_datagram, "UDP-TRUNCATE", SP_INET,
	.read = SP_DGRAM_READS, .mode = SP_BOTH_MODES)
{
	int api = ctx->read;

	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx);
	struct sockaddr_storage to, stx;
	socklen_t tolen = addr_of(rx, &to);
	unsigned char big[100], small[50], exact[20], buf[10], next[200];
	struct sp_got d;

	addr_of(tx, &stx);
	sp_set_nonblock(rx, ctx->nonblock);
	fill(big, sizeof(big), 1);
	fill(small, sizeof(small), 2);
	fill(exact, sizeof(exact), 3);
	/* Sent by the calls with a destination in turn. */
	TX(tx, nth_call(ADDRESSED_WRITES, api, 1), big, sizeof(big), &to, tolen);
	TX(tx, nth_call(ADDRESSED_WRITES, api + 1, 1), small, sizeof(small), &to, tolen);
	TX(tx, nth_call(ADDRESSED_WRITES, api + 2, 1), exact, sizeof(exact), &to, tolen);

	/* The head of the 100-byte datagram, from its sender. */
	ASSERT_EQ(10, RX(rx, api, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ(big, buf, 10);
	if (d.named)
		NOTE_FROM(&stx, &d);
	if (d.has_flags) /* recvmsg, io_uring RECVMSG, recvmmsg */
		ASSERT_TRUE(d.msg_flags & MSG_TRUNC,
			    "%s flags the datagram MSG_TRUNC (%s; flags 0x%x)",
			    sp_io_in_name(api), mode_name(ctx->nonblock), d.msg_flags);

	/* The 90 bytes that did not fit are gone: the next
	 * receive is the next datagram, whole. */
	ssize_t n = RX(rx, api, next, sizeof(next), &d);
	if (api == SP_IO_RECVFROM && !ctx->nonblock)
		RECORD("next_receive_after_truncation", "%zd bytes", n);
	if (n > (ssize_t)sizeof(small) && n != 90)
		ASSERT_DGRAM((ssize_t)sizeof(small), n); /* merged with the next: UDP-BOUNDARY's */
	if (n != (ssize_t)sizeof(small))
		FAIL("after a truncated datagram, %s() (%s) returns the next "
		     "datagram: 50 bytes expected, %zd received%s", sp_io_in_name(api),
		     mode_name(ctx->nonblock), n, n == 90 ? " (the truncated tail)" : "");
	ASSERT_MEM_EQ(small, next, sizeof(small));
	ASSERT_EQ(0, d.msg_flags & MSG_TRUNC);

	/* Exactly the datagram's size: whole, and not flagged. */
	ASSERT_EQ(sizeof(exact), RX(rx, api, next, sizeof(exact), &d));
	ASSERT_MEM_EQ(exact, next, sizeof(exact));
	ASSERT_EQ(0, d.msg_flags & MSG_TRUNC);
	ASSERT_EMPTY(rx);
	close(rx);
	close(tx);

	if (ctx->first)
		record_recv_msg_trunc(ctx);
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

/* 3. The first sendto (or sendmsg, sendmmsg, io_uring SENDMSG with a
 * destination) on an unbound socket assigns its address and port; every
 * later send, to the same or another destination, leaves from that same
 * address and port, and replies to it reach the socket. The first send
 * is .write, the later ones alternate with sendto or sendmsg. */
SP_TEST(udp_first_sendto_binds_local_port, "UDP-SENDTO-IMPLICIT-BIND", SP_INET,
	.write = ADDRESSED_WRITES, .mode = SP_BOTH_MODES)
{
	int first = ctx->write;
	int other = first == SP_IO_RECVFROM ? SP_IO_MSG : SP_IO_RECVFROM;
	int rx1 = sp_udp_bound(ctx), rx2 = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to1, to2, local, now, src;
	socklen_t l1 = addr_of(rx1, &to1), l2 = addr_of(rx2, &to2);
	char buf[8];
	struct sp_got d;

	sp_set_nonblock(tx, ctx->nonblock);
	ASSERT_EQ(0, sp_local_port(tx));
	TX(tx, first, "hi", 2, &to1, l1);
	addr_of(tx, &local);
	unsigned port = sp_port(&local);
	if (ctx->first) {
		sp_record_ephemeral("port_after_first_sendto", port);
		RECORD("local_address_after_first_sendto", "%s",
		       local_addr_kind(&local) ? local_addr_kind(&local) : "other");
	}
	ASSERT_TRUE(port != 0, "a local port is assigned by the first %s()", sp_io_out_name(first));
	ASSERT_EQ(ctx->af, local.ss_family);
	ASSERT_TRUE(local_addr_kind(&local) != NULL,
		    "the local address after the first %s() is the wildcard or loopback",
		    sp_io_out_name(first));

	/* The datagram left from the loopback address and that port. */
	sp_loopback(ctx, &src, (uint16_t)port);
	ASSERT_EQ(2, RX(rx1, SP_IO_RECVFROM, buf, sizeof(buf), &d));
	NEED_FROM(&src, &d);

	/* Later sends: the same destination, then another one. */
	TX(tx, other, "again", 5, &to1, l1);
	TX(tx, first, "other", 5, &to2, l2);
	TX(tx, other, "third", 5, &to2, l2);
	addr_of(tx, &now);
	ASSERT_EQ(port, sp_port(&now));
	ASSERT_DGRAM(5, RX(rx1, SP_IO_MSG, buf, sizeof(buf), &d));
	NEED_FROM(&src, &d);
	for (int i = 0; i < 2; i++) {
		ASSERT_DGRAM(5, RX(rx2, i ? SP_IO_MSG : SP_IO_RECVFROM, buf, sizeof(buf), &d));
		NEED_FROM(&src, &d);
	}
	ASSERT_EMPTY(rx1);
	ASSERT_EMPTY(rx2);

	/* The binding is real: a reply to that address reaches tx. */
	TX(rx2, SP_IO_RECVFROM, "back", 4, &d.from, d.fromlen);
	ASSERT_EQ(4, RX(tx, SP_IO_RECVFROM, buf, sizeof(buf), &d));
	NEED_FROM(&to2, &d);
	close(rx1);
	close(rx2);
	close(tx);
}

/* 4. No flow control: a fast sender is never held back by a slow receiver
 * (a blocking send returns at once, a non-blocking one never says EAGAIN),
 * through every send call (.write), blocking and not; the receiver gets
 * fewer datagrams than were sent, each whole. */
SP_TEST(udp_sender_is_not_held_back, "UDP-NO-FLOW-CONTROL", SP_INET,
	.write = SP_DGRAM_WRITES, .mode = SP_BOTH_MODES)
{
	enum { SENT = 400, SIZE = 512 };
	char buf[SIZE];
	int api = ctx->write;

	memset(buf, 'u', sizeof(buf));
	int rx = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), small = 4096, got = 0;
	struct sockaddr_storage to;
	socklen_t tolen = addr_of(rx, &to), gl = sizeof(got);

	ASSERT_SYS(setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)));
	ASSERT_SYS(getsockopt(rx, SOL_SOCKET, SO_RCVBUF, &got, &gl));
	if (ctx->first)
		RECORD("receive_buffer", "%d bytes (asked for %d)", got, small);
	REQUIRE(got > 0 && got < SENT * SIZE / 4,
		"a receive buffer much smaller than the %d bytes sent (SO_RCVBUF is %d)",
		SENT * SIZE, got);
	if (!sp_io_names_peer(api)) /* write, send ...: to the connected peer */
		ASSERT_SYS(connect(tx, (struct sockaddr *)&to, tolen));
	sp_set_nonblock(tx, ctx->nonblock);
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
	sp_watchdog(sp_wait_ms()); /* one bound for the whole burst */
	for (int i = 0; i <= SENT; i++) {
		if (i == quiet)
			ASSERT_NO_BLOCK(m, "%d %s() calls (%s) into a slow receiver, their "
					"buffers within the %d-byte send buffer", quiet,
					sp_io_out_name(api), mode_name(ctx->nonblock), sndbuf);
		if (i == SENT)
			break;
		errno = 0;
		ssize_t w = MUST_RETURN(tx_call(tx, api, buf, SIZE, 0, &to, tolen),
					"%s() #%d of %d (%s) into a slow receiver",
					sp_io_out_name(api), i + 1, SENT,
					mode_name(ctx->nonblock));
		int err = errno;
		/* A connected socket that says it has no destination: connect()
		 * registered nothing (UDP-CONNECTED's deviation). */
		if (w < 0 && !sp_io_names_peer(api) && (err == EDESTADDRREQ || err == ENOTCONN))
			sp_needs_at(__FILE__, __LINE__, "UDP-CONNECTED", "a send without an address on "
				    "a connected UDP socket", "sent", sp_errno_name(err), err);
		if (w < 0)
			FAIL("%s() #%d of %d (%s) was held back: %s", sp_io_out_name(api),
			     i + 1, SENT, mode_name(ctx->nonblock), sp_errno_name(err));
		ASSERT_EQ(SIZE, w);
	}
	sp_watchdog(0);
	int received = 0;
	ssize_t r;
	while ((r = recv(rx, buf, sizeof(buf), MSG_DONTWAIT)) >= 0) {
		ASSERT_EQ(SIZE, r);
		received++;
	}
	ASSERT_ERRVAL(EAGAIN, errno);
	if (ctx->first) {
		RECORD("sent", "%d", SENT);
		RECORD("received", "%d", received);
	}
	ASSERT_TRUE(received > 0, "some datagrams sent with %s() (%s) are received "
		    "(none was)", sp_io_out_name(api), mode_name(ctx->nonblock));
	ASSERT_TRUE(received < SENT,
		    "the slow receiver gets fewer than were sent with %s() (%s): %d of %d",
		    sp_io_out_name(api), mode_name(ctx->nonblock), received, SENT);
	close(rx);
	close(tx);
}

/* 5. No acknowledgement: unconnected sends with a destination (sendto,
 * sendmsg, sendmmsg, io_uring SENDMSG) to a port where nobody listens
 * report success, blocking and non-blocking, and no error surfaces later
 * through any receive call; the socket goes on working. */
SP_TEST(udp_sendto_closed_port_reports_success, "UDP-NO-ACK", SP_INET)
{
	int gone = sp_udp_bound(ctx), tx = sp_udp_bound(ctx), open_rx = sp_udp_bound(ctx);
	struct sockaddr_storage to, rxa, txa;
	socklen_t tolen = addr_of(gone, &to), rxl = addr_of(open_rx, &rxa);
	char buf[8];
	struct sp_got d;
	struct sp_capture cap;

	addr_of(tx, &txa);
	/* To an open port: the datagram arrives and nothing comes back. */
	sp_capture_start(&cap);
	sp_capture_name_fd(&cap, tx, "C");
	sp_capture_name_fd(&cap, open_rx, "R");
	sp_capture_name_fd(&cap, gone, "G");
	TX(tx, SP_IO_RECVFROM, "data", 4, &rxa, rxl);
	ASSERT_EQ(4, RX(open_rx, SP_IO_RECVFROM, buf, sizeof(buf), &d));
	NOTE_FROM(&txa, &d);
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>R udp4");
		WIRE_LACKS(&cap, "R>C");
	}

	ASSERT_SYS(close(gone)); /* nobody listens on that port now */
	for (int nonblock = 0; nonblock <= 1; nonblock++) {
		sp_set_nonblock(tx, nonblock);
		for (const int *c = ADDRESSED_WRITES; *c >= 0; c++)
			if (sp_io_use(*c, 1))
				TX(tx, *c, "lost", 4, &to, tolen);
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
	for (const int *c = SP_DGRAM_READS; *c >= 0; c++) {
		/* io_uring READ asks not to wait with RWF_NOWAIT only, which
		 * kernels from before sockets took it refuse (Linux 6.1), and
		 * there it waits whatever O_NONBLOCK says: left out here (its
		 * MSG_DONTWAIT twins io_uring RECV/RECVMSG stay). */
		int uring_rw = *c >= SP_IO_APIS && (sp_entry_io_takes(*c) & SP_EP_URING) &&
			       !sp_io_takes_flags(*c);
		if (uring_rw || !sp_io_use(*c, 0))
			continue;
		errno = 0;
		ssize_t r = sp_io_recv(*c, tx, buf, sizeof(buf), 0, &d);
		ASSERT_FAILED_WITH(r, errno, EAGAIN);
	}

	/* And it goes on working: a reply from the open port is received. */
	sp_set_nonblock(tx, 0);
	TX(tx, SP_IO_RECVFROM, "more", 4, &to, tolen);
	TX(tx, SP_IO_RECVFROM, "ping", 4, &rxa, rxl);
	ASSERT_EQ(4, RX(open_rx, SP_IO_MSG, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("ping", buf, 4);
	for (const int *c = SP_DGRAM_READS; *c >= 0; c++) {
		if (!sp_io_use(*c, 0))
			continue;
		TX(open_rx, SP_IO_MSG, "pong", 4, &txa, len_of(ctx));
		ASSERT_EQ(4, RX(tx, *c, buf, sizeof(buf), &d));
		ASSERT_MEM_EQ("pong", buf, 4);
		if (d.named)
			NOTE_FROM(&rxa, &d);
	}
}

/* 6. One bound socket exchanges datagrams with several peers, interleaved:
 * recvfrom, recvmsg, recvmmsg, io_uring RECVMSG (.read), blocking and not,
 * report each datagram's exact source, and replies sent to it with every
 * call that takes a destination (.write) reach that peer alone; the peers
 * send with those calls in turn. */
SP_TEST(udp_one_socket_talks_to_many_peers, "UDP-ONE-SOCKET-MANY-PEERS", SP_INET,
	.read = SP_NAMING_READS, .write = ADDRESSED_WRITES,
	.mode = SP_BOTH_MODES)
{
	enum { PEERS = 3, EACH = 2 };

	int rxa = ctx->read, txa = ctx->write;
	int srv = sp_udp_bound(ctx), peer[PEERS];
	struct sockaddr_storage to, pa[PEERS];
	socklen_t tolen = addr_of(srv, &to);
	char buf[16];
	struct sp_got d;

	sp_set_nonblock(srv, ctx->nonblock);
	for (int i = 0; i < PEERS; i++) {
		peer[i] = sp_udp_bound(ctx);
		addr_of(peer[i], &pa[i]);
	}
	for (int j = 0; j < EACH; j++)
		for (int i = 0; i < PEERS; i++) {
			char m[2] = { (char)('0' + i), (char)('0' + j) };
			TX(peer[i], nth_call(ADDRESSED_WRITES, i + j * PEERS, 1), m, 2, &to, tolen);
		}
	int seen[PEERS][EACH] = { { 0 } };
	for (int k = 0; k < PEERS * EACH; k++) {
		ASSERT_DGRAM(2, RX(srv, rxa, buf, sizeof(buf), &d));
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
			ASSERT_EQ(2, RX(peer[i], SP_IO_RECVFROM, buf, sizeof(buf), &d));
			ASSERT_EQ('a' + i, buf[0]);
			ASSERT_EQ('0' + j, buf[1]);
			ASSERT_FROM(&to, &d);
		}
		ASSERT_EMPTY(peer[i]);
		close(peer[i]);
	}
	close(srv);
}

/* 7. An unconnected socket needs a destination on every send: send, write,
 * sendto and sendmsg without one fail with EDESTADDRREQ (blocking and
 * non-blocking), before and after a sendto, and deliver nothing; each
 * sendto goes to its own destination. The send without a destination
 * is .write, on a socket in .mode. */
SP_TEST(udp_unconnected_send_needs_destination, "UDP-DESTINATION-EACH-SEND", SP_INET,
	.write = SP_DGRAM_WRITES, .mode = SP_BOTH_MODES)
{
	int rx1 = sp_udp_bound(ctx), rx2 = sp_udp_bound(ctx), tx = sp_socket(ctx, SOCK_DGRAM);
	struct sockaddr_storage to1, to2;
	socklen_t l1 = addr_of(rx1, &to1), l2 = addr_of(rx2, &to2);
	char buf[8];
	struct sp_got d;
	static const char *const when[] = { "before any sendto", "after a sendto",
					    "after a second sendto" };

	/* Before any sendto, after one to rx1, after another to rx2. */
	for (int sent = 0; sent < 3; sent++) {
		sp_set_nonblock(tx, ctx->nonblock);
		errno = 0;
		ssize_t r = MUST_RETURN(tx_call(tx, ctx->write, "nope", 4,
						ctx->nonblock ? MSG_DONTWAIT : 0, NULL, 0),
					"%s() without a destination", sp_io_out_name(ctx->write));
		int err = errno;
		if (r >= 0 || err != EDESTADDRREQ)
			FAIL("%s() without a destination (%s, %s) fails with EDESTADDRREQ: "
			     "got %zd (%s)", sp_io_out_name(ctx->write), mode_name(ctx->nonblock),
			     when[sent], r, r < 0 ? sp_errno_name(err) : "sent");
		sp_set_nonblock(tx, 0);
		if (sent == 0)
			TX(tx, SP_IO_RECVFROM, "one", 3, &to1, l1);
		else if (sent == 1)
			TX(tx, SP_IO_RECVFROM, "two", 3, &to2, l2);
	}
	/* Each datagram went to its own destination; the failed sends sent
	 * nothing. */
	ASSERT_EQ(3, RX(rx1, SP_IO_RECVFROM, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("one", buf, 3);
	ASSERT_EQ(3, RX(rx2, SP_IO_RECVFROM, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ("two", buf, 3);
	ASSERT_EMPTY(rx1);
	ASSERT_EMPTY(rx2);
}

/* 8a. After connect(), write/send/sendto/sendmsg without an address reach
 * the peer, and read/recv/recvfrom/recvmsg receive from it (recvfrom and
 * recvmsg naming it), blocking and non-blocking; connect() itself delivers
 * nothing to the peer. .write is the call a sends with and b receives
 * with (write/read, send/recv, sendto/recvfrom, sendmsg/recvmsg); b
 * answers through the opposite pair. */
SP_TEST(udp_connected_socket_needs_no_addresses, "UDP-CONNECTED", SP_INET,
	.write = SP_DGRAM_WRITES, .mode = SP_BOTH_MODES)
{
	int a = sp_udp_bound(ctx), b = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sb;
	socklen_t la = addr_of(a, &sa), lb = addr_of(b, &sb);
	char buf[16];
	struct sp_got d;
	struct sp_capture cap;

	if (ctx->first) { /* the wire, once */
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, a, "A");
		sp_capture_name_fd(&cap, b, "B");
	}
	ASSERT_SYS(connect(a, (struct sockaddr *)&sb, lb));
	ASSERT_EQ(0, sp_poll(b, POLLIN, 0)); /* connect() sent nothing */
	if (ctx->first) {
		if (sp_capture_sync(&cap)) { /* not a single packet on the wire */
			WIRE_LACKS(&cap, "A>B");
			WIRE_LACKS(&cap, "B>A");
			RECORD("wire", "%s", cap.trace[0] ? cap.trace : "(nothing)");
		}
		sp_capture_stop(&cap);
	}
	ASSERT_SYS(connect(b, (struct sockaddr *)&sa, la));
	sp_set_nonblock(a, ctx->nonblock);
	sp_set_nonblock(b, ctx->nonblock);
	int api = ctx->write, back = api < DGRAM_CALLS ? DGRAM_CALLS - 1 - api : api;
	char m[4] = { 'a', '>', 'b', (char)('0' + api) };
	TX(a, api, m, 4, NULL, 0);
	ASSERT_EQ(4, RX(b, api, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ(m, buf, 4);
	if (d.named)
		NOTE_FROM(&sa, &d);
	m[0] = 'b';
	m[2] = 'a';
	TX(b, back, m, 4, NULL, 0);
	ASSERT_EQ(4, RX(a, back, buf, sizeof(buf), &d));
	ASSERT_MEM_EQ(m, buf, 4);
	if (d.named)
		NOTE_FROM(&sb, &d);
	ASSERT_EMPTY(a);
	ASSERT_EMPTY(b);
}

/* 8b. A connected socket is not delivered datagrams from other sources,
 * whichever call sends them and whichever call receives (.read),
 * blocking or not. */
SP_TEST(udp_connected_socket_ignores_other_sources, "UDP-CONNECTED", SP_INET,
	.read = SP_DGRAM_READS, .mode = SP_BOTH_MODES)
{
	int a = sp_udp_bound(ctx), peer = sp_udp_bound(ctx), stranger = sp_udp_bound(ctx);
	struct sockaddr_storage sa, sp;
	socklen_t la = addr_of(a, &sa), lp = addr_of(peer, &sp);
	char buf[16];
	struct sp_got d;

	ASSERT_SYS(connect(a, (struct sockaddr *)&sp, lp));
	sp_set_nonblock(a, ctx->nonblock);
	int api = ctx->read;
	/* The senders alternate sendto and sendmsg. */
	TX(stranger, api % 2 ? SP_IO_MSG : SP_IO_RECVFROM, "stranger", 8, &sa, la);
	TX(peer, api % 2 ? SP_IO_RECVFROM : SP_IO_MSG, "peer", 4, &sa, la);
	/* Loopback delivers in order: if the stranger's datagram
	 * had been accepted it would be first. */
	ssize_t n = RX(a, api, buf, sizeof(buf), &d);
	if (ctx->first)
		RECORD("first_datagram_on_connected_socket", "%.*s", (int)n, buf);
	ASSERT_EQ(4, n);
	ASSERT_MEM_EQ("peer", buf, 4);
	if (d.named)
		NOTE_FROM(&sp, &d);
	ASSERT_EMPTY(a);
}

/* 8c. A connected socket hears the ICMP port unreachable: ECONNREFUSED,
 * reported once, by whichever call comes next (read, recv, recvfrom,
 * recvmsg, send, write, SO_ERROR, recvmmsg, sendmmsg, io_uring READ, RECV,
 * RECVMSG, WRITE, SEND, SENDMSG), blocking or not. */
SP_TEST(udp_connected_socket_reports_refused, "UDP-CONNECTED", SP_INET,
	.how = SP_NAMES("read", "recv", "recvfrom", "recvmsg", "send", "write",
			"getsockopt(SO_ERROR)", "recvmmsg", "sendmmsg", "io_uring:READ",
			"io_uring:RECV", "io_uring:RECVMSG", "io_uring:WRITE", "io_uring:SEND",
			"io_uring:SENDMSG"),
	.mode = SP_BOTH_MODES)
{
	/* The next call (.how, in the order of the names): a receive call,
	 * a send call (SP_IN/SP_OUT), or SO_ERROR (-1). */
	static const int next[] = { SP_IN(SP_IO_READ), SP_IN(SP_IO_RECV), SP_IN(SP_IO_RECVFROM),
		SP_IN(SP_IO_MSG), SP_OUT(SP_IO_RECV), SP_OUT(SP_IO_READ), -1, SP_IN(SP_IO_MMSG),
		SP_OUT(SP_IO_MMSG), SP_IN(SP_IO_URING_RW), SP_IN(SP_IO_URING_SR),
		SP_IN(SP_IO_URING_MSG), SP_OUT(SP_IO_URING_RW), SP_OUT(SP_IO_URING_SR),
		SP_OUT(SP_IO_URING_MSG) };
	int call = next[ctx->how];

	if (call >= 0 && !sp_io_use(call & 0xff, sp_call_is_out(call)))
		return; /* noted: not supported by this system */

	int a = sp_udp_bound(ctx), gone = sp_udp_bound(ctx);
	struct sockaddr_storage sg;
	socklen_t lg = addr_of(gone, &sg);
	char buf[8];
	struct sp_got d;
	struct sp_capture cap;
	int wire = ctx->first;

	if (wire) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, a, "C");
		sp_capture_name_fd(&cap, gone, "G");
	}
	ASSERT_SYS(close(gone));
	ASSERT_SYS(connect(a, (struct sockaddr *)&sg, lg));
	sp_set_nonblock(a, ctx->nonblock);
	TX(a, SP_IO_RECV, "knock", 5, NULL, 0);
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
	ASSERT_TRUE(heard, "the port unreachable error (%s) arrives (POLLERR) within %d ms: "
		    "no POLLERR", mode_name(ctx->nonblock), sp_wait_ms());
	ssize_t r;
	int err;
	int armed = sp_bound_begin();
	errno = 0;
	if (call >= 0 && !sp_call_is_out(call)) {
		r = sp_io_recv(call, a, buf, sizeof(buf), 0, &d);
	} else if (call >= 0) {
		r = tx_call(a, call & 0xff, "again", 5, 0, NULL, 0);
	} else {
		socklen_t el = sizeof(err);
		r = getsockopt(a, SOL_SOCKET, SO_ERROR, &err, &el);
		errno = err;
		if (r == 0)
			r = err ? -1 : 0;
	}
	sp_bound_end(__FILE__, __LINE__, armed, "%s after an ICMP port unreachable",
		     ctx->how_name);
	err = errno;
	if (call == SP_IN(SP_IO_RECV) && !ctx->nonblock)
		RECORD("recv_after_port_unreachable", "%zd (%s)", r, sp_errno_name(err));
	if (r != -1 || err != ECONNREFUSED)
		FAIL("%s (%s) after ICMP port unreachable reports ECONNREFUSED: got %zd (%s)",
		     ctx->how_name, mode_name(ctx->nonblock), r, sp_errno_name(err));
	/* Recorded: whether it is still pending (clearing is
	 * OPT-SO-ERROR-CLEARS' Must, not this item's). */
	int pending = -1;
	socklen_t pl = sizeof(pending);
	ASSERT_SYS(getsockopt(a, SOL_SOCKET, SO_ERROR, &pending, &pl));
	RECORD_ONCE("so_error_after_refusal_reported", "%s",
		    pending ? sp_errno_name(pending) : "0 (cleared)");
	ASSERT_EMPTY(a);
	close(a);
}

SP_MAIN("udp")
