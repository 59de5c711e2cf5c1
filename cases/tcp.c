/*
 * tcp.c - TCP stream behaviors (seed notes: "tcp原理", "一些tips").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. TCP-BOUNDARY-COALESCE     4 writes of 10 bytes are read by one read.
 *  2. TCP-BOUNDARY-SPLIT        1 write is consumed by several reads, intact.
 *  3. TCP-BUFFERS-AT-CREATION   SO_SNDBUF/SO_RCVBUF exist right after socket().
 *  4. TCP-CLOSE-FLUSHES-OUTPUT  close() still delivers queued output, then EOF.
 *  5. TCP-CLOSE-DISCARDS-INPUT  close() with unread input resets the peer.
 *  6. TCP-FLOW-CONTROL          a fast writer is held back, never loses data.
 *  7. TCP-WRITE-RETURNS-BUFFERED  write() returns before the peer reads.
 *  8. TCP-HANDSHAKE-BEFORE-ACCEPT connect() completes before accept().
 *  9. TCP-TEARDOWN-STATES       FIN_WAIT -> TIME_WAIT, CLOSE_WAIT on the peer.
 * 10. TCP-CONNECT-IMPLICIT-BIND connect() assigns a local address and port.
 * 11. TCP-LISTEN-ACCEPT-SEQUENCE each accept() gives a new socket.
 *
 * Every API: where a behavior is about moving bytes, it is shown through
 * each call that moves them (read/recv/recvfrom/recvmsg/readv and
 * write/send/sendto/sendmsg/writev, and the entry points io_uring
 * READ/READV/RECV/RECVMSG and WRITE/WRITEV/SEND/SENDMSG, recvmmsg/
 * sendmmsg, splice, sendfile: the sp_io_* fixtures), in both
 * directions (client to server and back), on blocking and non-blocking
 * sockets where they differ. The strict fixtures (SP_OUT_EXACT,
 * SP_IN_EXACT, SP_EXPECT_EOF) fail on a short count or EAGAIN from a
 * blocking socket and on an early or missing EOF; nothing is retried away.
 *
 * Wire (where the item has its own network namespace; else skipped with
 * the reason): the whole handshake is on the wire before connect()
 * returns (a mark sent right after it comes later in the trace); the
 * four-way close in order; close() with unread input sends RST, not FIN;
 * close() sends queued data before its FIN, and no RST.
 *
 * Where the notes are wrong: they say "write() returns when the data has
 * been transmitted". A real kernel returns as soon as the bytes are copied
 * into the local send buffer (test 7 shows the peer has not read them).
 *
 * Set-up values a test relies on are read back and recorded (buffer
 * sizes that applied); when the situation cannot be created the verdict
 * is broken, not fail (e.g. a writer that never meets full buffers).
 * TIOCOUTQ/FIONREAD are extra evidence where the stack has them, never a
 * precondition.
 *
 * Platform-defined (recorded, not asserted): buffer sizes (Linux doubles
 * a value set with SO_RCVBUF), the errno the reset peer sees, the
 * ephemeral port range, how many bytes fit before EAGAIN.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <sys/ioctl.h>

#ifndef SIOCOUTQNSD
#define SIOCOUTQNSD 0x894B /* linux/sockios.h: bytes not yet sent */
#endif

/* The payload of 4 writes of 10 bytes, or a 100-byte message. */
static const char ten[] = "0123456789";

/* Parameters: .end is the end that writes (or closes first), .write and
 * .read the calls, .mode the reader's (or closer's) O_NONBLOCK. */

/* One connection for every variant of an item, made in the first: a
 * long-lived connection carries all the traffic, as in a real program
 * (and a hundred handshakes would only cost time). */
static void item_pair(const struct sp_ctx *ctx, int *c, int *s)
{
	static int pair[2] = { -1, -1 };

	if (ctx->first)
		sp_tcp_pair(ctx, &pair[0], &pair[1]);
	*c = pair[0];
	*s = pair[1];
}

/* The k-th call of a set, cycling over the calls this system has. */
#define nth_call(set, k, out) sp_io_nth(set, k, out, SP_IO_READ)

/* accept() a connection once the listener has it queued (bounded; the
 * queueing and the accept are TCP-HANDSHAKE-BEFORE-ACCEPT's and
 * TCP-LISTEN-ACCEPT-SEQUENCE's, sp_tcp_accept). */
static int accept_queued(int l)
{
	return sp_tcp_accept(l);
}

/* 1. Several writes can be read by one read: TCP keeps no boundaries.
 * Every write call x every read call, both directions, the reader
 * blocking and non-blocking; after the 40 bytes nothing is left. */
SP_TEST(tcp_writes_coalesce_into_one_read, "TCP-BOUNDARY-COALESCE", SP_INET,
	.end = SP_BOTH_ENDS, .write = SP_EVERY_WRITE, .read = SP_EVERY_READ,
	.mode = SP_BOTH_MODES)
{
	int c, s, wr, rd;
	char buf[1024];

	item_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &wr, &rd);
	/* Without Nagle each small write leaves at once as its own segment
	 * (no delayed-ACK wait per round); the reader must still get one run
	 * of 40 bytes. Best effort: a stack without TCP_NODELAY only runs
	 * slower. */
	static int nodelay;
	if (ctx->first) {
		int one = 1;
		nodelay = setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
			  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0;
		RECORD("tcp_nodelay", "%s", nodelay ? "on" : "unavailable");
	}
	sp_set_nonblock(rd, ctx->nonblock);
	sp_watchdog(sp_wait_ms()); /* one bound for the calls below (each is named) */
	for (int i = 0; i < 4; i++)
		SP_OUT_EXACT(ctx->write, wr, ten, 10);
	/* With TCP_NODELAY nothing waits in the sender (OPT-TCP-NODELAY's
	 * Must, which keeps these hundreds of rounds fast): a stack that
	 * took the option but kept Nagle would spend a delayed ACK on each. */
	int unsent = 0;
	if (nodelay && ioctl(wr, SIOCOUTQNSD, &unsent) == 0 && unsent > 0) {
		char obs[48];
		snprintf(obs, sizeof(obs), "%d bytes held unsent", unsent);
		sp_needs_at(__FILE__, __LINE__, "OPT-TCP-NODELAY", "4 writes with TCP_NODELAY set",
			    "every byte sent at once", obs, 0);
	}
	ASSERT_EQ(40, sp_wait_inq(rd, 40));

	ssize_t n = MUST_RETURN(sp_io_in(ctx->read, rd, buf, sizeof(buf), 0),
				"%s() with 40 bytes queued", sp_io_in_name(ctx->read));
	sp_watchdog(0);
	RECORD_ONCE("read_sizes", "%zd", n);
	ASSERT_TRUE(n == 40, "one %s() returns all 40 bytes of 4 %s() calls: got %zd (%s)",
		    sp_io_in_name(ctx->read), sp_io_out_name(ctx->write), n,
		    n < 0 ? sp_errno_name(errno) : "");
	for (int i = 0; i < 4; i++)
		ASSERT_MEM_EQ(ten, buf + 10 * i, 10);
	/* Nothing more: not a byte twice, no leftover. */
	ASSERT_ERRNO(recv(rd, buf, 1, MSG_DONTWAIT), EAGAIN);
}

/* 2. One write can be consumed by several smaller reads, in order: each
 * read call takes 100 bytes and leaves the rest queued for the next one
 * (whatever call that is), both directions, blocking and non-blocking. */
SP_TEST(tcp_one_write_splits_across_reads, "TCP-BOUNDARY-SPLIT", SP_INET,
	.end = SP_BOTH_ENDS, .write = SP_EVERY_WRITE, .mode = SP_BOTH_MODES)
{
	enum { N = 1000, PIECE = 100 };
	unsigned char out[N], in[N];
	int c, s, wr, rd;

	item_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &wr, &rd);
	sp_pattern(out, N, 0);
	sp_set_nonblock(rd, ctx->nonblock);
	memset(in, 0, N);
	sp_watchdog(sp_wait_ms()); /* one bound for the calls below (each is named) */
	SP_OUT_EXACT(ctx->write, wr, out, N); /* one call, all N bytes */
	ASSERT_EQ(N, sp_wait_inq(rd, N));
	/* The pieces are taken by every read call in turn. */
	for (int off = 0, k = 0; off < N; off += PIECE, k++) {
		int rapi = nth_call(SP_EVERY_READ, k + ctx->write, 0), left = 0;
		ssize_t r = MUST_RETURN(sp_io_in(rapi, rd, in + off, PIECE, 0),
					"%s() with %d bytes queued", sp_io_in_name(rapi), N - off);
		/* A vectored read filling only its first buffer is
		 * FLAG-READV-SCATTER's deviation, not a split stream. */
		if (rapi == SP_IO_VEC && r == PIECE / 2)
			sp_needs_at(__FILE__, __LINE__, "FLAG-READV-SCATTER", "readv() into two buffers",
				    "both filled", "only the first", 0);
		/* Fewer than asked with more queued: a read returns what is
		 * queued up to its size (TCP-BOUNDARY-COALESCE's), the rest
		 * staying queued is this item's. */
		int still = -1;
		if (r > 0 && r < PIECE && ioctl(rd, FIONREAD, &still) == 0 && still == N - off - r) {
			char obs[64];
			snprintf(obs, sizeof(obs), "%zd, %d left queued", r, still);
			sp_needs_at(__FILE__, __LINE__, "TCP-BOUNDARY-COALESCE",
				    "a read of 100 bytes with more queued", "100", obs, 0);
		}
		ASSERT_TRUE(r == PIECE, "%s() of %d bytes from %d queued returns %d (written by "
			    "one %s()): got %zd", sp_io_in_name(rapi), PIECE, N - off, PIECE,
			    sp_io_out_name(ctx->write), r);
		ASSERT_SYS(ioctl(rd, FIONREAD, &left));
		ASSERT_TRUE(left == N - off - PIECE,
			    "after %s() took %d bytes the other %d stay queued (FIONREAD %d)",
			    sp_io_in_name(rapi), PIECE, N - off - PIECE, left);
	}
	sp_watchdog(0);
	ASSERT_EQ(N, sp_pattern_check(in, N, 0));
	ASSERT_ERRNO(recv(rd, in, 1, MSG_DONTWAIT), EAGAIN);
}

/* 3. Every TCP socket gets I/O buffers when it is created. */
SP_TEST(tcp_socket_has_buffers_at_creation, "TCP-BUFFERS-AT-CREATION", SP_INET)
{
	int fd = sp_socket(ctx, SOCK_STREAM), snd = 0, rcv = 0, set = 4096, got = 0;
	socklen_t len = sizeof(int);

	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &snd, &len));
	len = sizeof(int);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, &len));
	RECORD("sndbuf_at_creation", "%d", snd);
	RECORD("rcvbuf_at_creation", "%d", rcv);
	ASSERT_TRUE(snd > 0, "SO_SNDBUF > 0 before bind/connect (got %d)", snd);
	ASSERT_TRUE(rcv > 0, "SO_RCVBUF > 0 before bind/connect (got %d)", rcv);

	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &set, sizeof(set)));
	len = sizeof(int);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len));
	RECORD("rcvbuf_after_setting_4096", "%d", got);
	ASSERT_TRUE(got >= set, "SO_RCVBUF read back >= the %d set (got %d)", set, got);
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &set, sizeof(set)));
	len = sizeof(int);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &got, &len));
	RECORD("sndbuf_after_setting_4096", "%d", got);
	ASSERT_TRUE(got >= set, "SO_SNDBUF read back >= the %d set (got %d)", set, got);
	close(fd);
}

/* Small buffers keep the buffer-filling tests fast and bounded. */
enum { SMALL_BUF = 8192, CHUNK = 4096 };

static void small_sndbuf(int fd)
{
	int v = SMALL_BUF;
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)));
}

/* The listener's SO_RCVBUF is inherited by accepted sockets on Linux; set
 * it on the accepted socket too, for stacks that do not pass it on. */
static void small_rcvbuf(int fd)
{
	int v = SMALL_BUF;
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)));
}

static int bufsize(int fd, int opt)
{
	int v = 0;
	socklen_t len = sizeof(v);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, opt, &v, &len));
	return v;
}

/* An io_uring request? */
static int uring_call(int api)
{
	return api >= SP_IO_APIS && (sp_entry_io_takes(api) & SP_EP_URING);
}

/* io_uring READ/WRITE[V] take no MSG_DONTWAIT: they ask not to wait with
 * RWF_NOWAIT, which kernels from before sockets took it refuse (Linux 6.1:
 * EOPNOTSUPP), and there the request waits on a full non-blocking socket
 * whatever its O_NONBLOCK. "A non-blocking writer gets EAGAIN" cannot be
 * asked of them on every kernel, so the filling writers leave them out;
 * io_uring SEND/SENDMSG (MSG_DONTWAIT) stay. */
static int no_wait_unaskable(int api)
{
	return uring_call(api) && !sp_io_takes_flags(api);
}

/* Write the pattern (from offset *total) non-blocking through `api` until
 * the kernel says EAGAIN; returns 1 on EAGAIN, 0 when `limit` was reached
 * first. Short counts are normal here; every byte taken is counted. */
static int fill_until_eagain(int fd, int api, size_t *total, size_t limit)
{
	unsigned char chunk[CHUNK];

	sp_set_nonblock(fd, 1);
	while (*total < limit) {
		sp_pattern(chunk, CHUNK, *total);
		ssize_t w = BOUNDED(sp_io_out(api, fd, chunk, CHUNK, MSG_NOSIGNAL));
		if (sp_bound_expired())
			sp_needs_at(__FILE__, __LINE__, "TCP-WRITE-RETURNS-BUFFERED",
				    "a non-blocking write while the peer does not read",
				    "returns at once (bytes or EAGAIN)", "still blocked", 0);
		if (w < 0 && errno == EAGAIN)
			return 1;
		ASSERT_TRUE(w > 0, "non-blocking %s() takes bytes or says EAGAIN (got %zd, %s)",
			    sp_io_out_name(api), w, sp_errno_name(errno));
		*total += (size_t)w;
	}
	return 0;
}

/* Read `expected` pattern bytes rotating over every read call, then EOF
 * through every read call (EOF stays: each returns 0, never data; that it
 * stays is CLOSE-HALF-WR-EOF's Must, SP_EXPECT_EOF_AGAIN). The FIN is
 * sent by the peer's close() or shutdown(): `fin_id` names the ID whose
 * Must that is, for where it never arrives. */
static void drain_pattern_then_eof(int fd, size_t expected, const char *fin_id, const char *how)
{
	unsigned char buf[CHUNK];
	size_t total = 0;

	for (int k = 0; total < expected; k++) {
		size_t want = expected - total < CHUNK ? expected - total : CHUNK;
		SP_IN_EXACT(nth_call(SP_EVERY_READ, k, 0), fd, buf, want);
		ASSERT_TRUE(sp_pattern_check(buf, want, total) == want,
			    "bytes %zu..%zu intact and in order", total, total + want);
		total += want;
	}
	SP_FIN_ARRIVES(fd, fin_id, how); /* the EOF seen (by a peek) */
	for (const int *r = SP_EVERY_READ; *r >= 0; r++)
		if (sp_io_use(*r, 0))
			SP_EXPECT_EOF_AGAIN(*r, fd);
}

/* One writer fills the buffers and closes; returns bytes queued. */
static size_t fill_and_close(const struct sp_ctx *ctx, int c, int s, int nonblock_at_close)
{
	size_t queued = 0;
	int full = 0;

	small_sndbuf(c);
	RECORD("close_flush_sndbuf", "%d", bufsize(c, SO_SNDBUF));
	RECORD("close_flush_rcvbuf", "%d", bufsize(s, SO_RCVBUF));
	/* Every write call in turn until the buffers are full. */
	const int *writes = SP_EVERY_WRITE;
	for (int i = 0; writes[i] >= 0; i++)
		if (!no_wait_unaskable(writes[i]) && sp_io_use(writes[i], 1))
			full = fill_until_eagain(c, writes[i], &queued, (size_t)(i + 1) << 22) || full;
	REQUIRE(full, "a writer that meets full buffers (no EAGAIN after %zu bytes)", queued);

	/* Extra evidence, where the stack offers it: what is still unsent
	 * (TIOCOUTQ) and what has reached the reader (FIONREAD). */
	int outq = 0, inq = 0;
	int have_outq = ioctl(c, TIOCOUTQ, &outq) == 0, outq_err = errno;
	int have_inq = ioctl(s, FIONREAD, &inq) == 0, inq_err = errno;
	RECORD("bytes_queued_before_close", "%zu", queued);
	if (have_outq)
		RECORD("unsent_in_send_buffer_at_close", "%d", outq);
	else
		RECORD("unsent_in_send_buffer_at_close", "unknown (TIOCOUTQ: %s)", sp_errno_name(outq_err));
	if (have_inq)
		RECORD("arrived_at_reader_at_close", "%d", inq);
	else
		RECORD("arrived_at_reader_at_close", "unknown (FIONREAD: %s)", sp_errno_name(inq_err));
	/* Every byte write() took is still somewhere: unacknowledged at the
	 * sender or queued at the reader (loopback: nothing in flight). Fewer
	 * is data lost before close(): no flow control (TCP-FLOW-CONTROL's
	 * Must, the mechanism that holds the bytes for close() to flush). */
	if (have_outq && have_inq && (size_t)outq + (size_t)inq < queued) {
		char exp[48], obs[64];
		snprintf(exp, sizeof(exp), "%zu bytes held", queued);
		snprintf(obs, sizeof(obs), "%d unacknowledged + %d at the reader", outq, inq);
		sp_needs_at(__FILE__, __LINE__, "TCP-FLOW-CONTROL",
			    "the bytes written before close()", exp, obs, 0);
	}
	if (have_inq && (size_t)inq >= queued)
		BROKEN("nothing left to flush: all %zu bytes had reached the reader's buffer "
		       "before close() (FIONREAD %d%s)", queued, inq,
		       have_outq ? (outq ? ", TIOCOUTQ non-zero" : ", TIOCOUTQ 0") : "");
	sp_set_nonblock(c, nonblock_at_close);
	ASSERT_SYS(sp_close_through(ctx->how, c)); /* close() or io_uring CLOSE (.how) */
	return queued;
}

/* 4. close() still sends what is in the output buffer, then FIN: with the
 * closing socket blocking and non-blocking, closed by close() or io_uring
 * CLOSE (.how), the reader starting late and reading through every read
 * call, blocking then non-blocking. */
SP_TEST(tcp_close_flushes_output, "TCP-CLOSE-FLUSHES-OUTPUT", SP_INET,
	.mode = SP_BOTH_MODES, .how = SP_NAMES("close", "io_uring:CLOSE"))
{
	int l = sp_tcp_listener(ctx, SMALL_BUF), c, s;
	struct sp_capture cap;

	c = sp_tcp_connect(ctx, l);
	s = accept_queued(l);
	small_rcvbuf(s);
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, c, "C");
		sp_capture_name_fd(&cap, s, "S");
	}
	size_t queued = fill_and_close(ctx, c, s, ctx->nonblock);

	/* The reader starts only now, after the writer has closed. */
	sp_set_nonblock(s, ctx->nonblock);
	drain_pattern_then_eof(s, queued, "TCP-CLOSE-FLUSHES-OUTPUT", "close()");
	/* On the wire: data, then the FIN, no data after it, no reset. */
	if (ctx->first && sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>S P., C>S F");
		const char *fin = strstr(cap.trace, "C>S F");
		const char *after = fin ? strstr(fin + 1, "C>S ") : NULL;
		for (; after; after = strstr(after + 1, "C>S "))
			ASSERT_TRUE(after[5] == '.' && (after[6] == ',' || after[6] == '\0'),
				    "only bare ACKs follow the FIN (trace: %s)", cap.trace);
		WIRE_LACKS(&cap, "C>S R");
		WIRE_LACKS(&cap, "S>C R");
	}
	if (ctx->first)
		sp_capture_stop(&cap);
	close(s);
	close(l);
}

/* A connection reset by the peer's close(): the call fails with
 * ECONNRESET or EPIPE, never a clean EOF (0), data, or EAGAIN. */
static void expect_reset(int api, int out, int fd, ssize_t r, int err, const char *how)
{
	const char *call = out ? sp_io_out_name(api) : sp_io_in_name(api);
	ASSERT_TRUE(r < 0 && (err == ECONNRESET || err == EPIPE),
		    "%s() on the reset peer (%s) fails with ECONNRESET or EPIPE, not %s "
		    "(got %zd, %s)", call, how, out ? "success" : "a clean EOF",
		    r, r < 0 ? sp_errno_name(err) : r == 0 ? "EOF" : "data");
	(void)fd;
}

/* 5. close() with unread input discards it and resets the connection:
 * the peer's next call (.call: every read call and every write call),
 * blocking and not, with either end closing, by close() or io_uring CLOSE
 * (.how). */
SP_TEST(tcp_close_with_unread_input_resets_peer, "TCP-CLOSE-DISCARDS-INPUT", SP_INET,
	.end = SP_BOTH_ENDS, .call = SP_EVERY_CALL, .mode = SP_BOTH_MODES,
	.how = SP_NAMES("close", "io_uring:CLOSE"))
{
	char buf[16], msg[100];
	struct sigaction ign = { .sa_handler = SIG_IGN };
	int out = sp_call_is_out(ctx->call), c, s, closer, peer;
	struct sp_capture cap;
	char how[64], x = 'x';

	memset(msg, 'a', sizeof(msg));
	ASSERT_SYS(sigaction(SIGPIPE, &ign, NULL)); /* write()/writev() on a reset peer */
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &closer, &peer);
	sp_set_nonblock(peer, ctx->nonblock);
	snprintf(how, sizeof(how), "%s closed, %s", sp_end_name(ctx->end),
		 ctx->nonblock ? "non-blocking" : "blocking");
	SP_OUT_EXACT(SP_IO_READ, peer, msg, sizeof(msg));
	ASSERT_EQ(100, sp_wait_inq(closer, 100));
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, peer, "C");
		sp_capture_name_fd(&cap, closer, "S");
	}
	ASSERT_SYS(sp_close_through(ctx->how, closer)); /* 100 bytes unread */

	EXPECT_EVENTS(peer, POLLIN, POLLIN | POLLERR | POLLHUP | POLLNVAL,
		      "the peer learns of the close");
	/* On the wire the closer resets: RST, never a FIN. */
	if (ctx->first) {
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "S>C R");
			WIRE_LACKS(&cap, "S>C F");
		}
		sp_capture_stop(&cap);
	}
	errno = 0;
	ssize_t r = MUST_RETURN(sp_call(ctx->call, peer, out ? &x : buf, out ? 1 : sizeof(buf),
					out ? MSG_NOSIGNAL : 0),
				"%s() on the reset peer", sp_call_name(ctx->call));
	int err = errno;
	/* writev() of 1 byte moving nothing: its first buffer is empty, the
	 * second not gathered (FLAG-WRITEV-GATHER's deviation). */
	if (out && (ctx->call & 0xff) == SP_IO_VEC && r == 0)
		sp_needs_at(__FILE__, __LINE__, "FLAG-WRITEV-GATHER", "writev() of 1 byte in two buffers",
			    "the byte or an error", "0", 0);
	if (out)
		RECORD_ONCE("peer_write_after_close", "%zd (%s)", r,
			    r < 0 ? sp_errno_name(err) : "accepted");
	else
		RECORD_ONCE("peer_read_after_close", "%zd (%s)", r,
			    r < 0 ? sp_errno_name(err) : "EOF");
	expect_reset(ctx->call & 0xff, out, peer, r, err, how);
	close(peer);
}

/* 6a. A non-blocking writer faster than its reader gets EAGAIN, through
 * every write call that can ask not to wait (not io_uring WRITE/WRITEV:
 * no_wait_unaskable()); no byte is lost even though the receiver's buffer
 * is smaller than the sender's; the reader reads through every read call. */
SP_TEST(tcp_flow_control_stops_nonblocking_writer, "TCP-FLOW-CONTROL", SP_INET)
{
	int l = sp_tcp_listener(ctx, SMALL_BUF), c, s, big = 4 * SMALL_BUF;

	c = sp_tcp_connect(ctx, l);
	s = accept_queued(l);
	small_rcvbuf(s);
	ASSERT_SYS(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)));
	int snd = bufsize(c, SO_SNDBUF), rcv = bufsize(s, SO_RCVBUF);
	RECORD("sender_sndbuf", "%d", snd);
	RECORD("receiver_rcvbuf", "%d", rcv);
	REQUIRE(rcv < snd, "the receiver's buffer smaller than the sender's (SO_RCVBUF %d, "
		"SO_SNDBUF %d after setting %d and %d)", rcv, snd, SMALL_BUF, big);

	size_t accepted = 0;
	char eagain_at[256] = "";
	for (const int *w = SP_EVERY_WRITE; *w >= 0; w++) {
		int api = *w;
		size_t before = accepted;
		if (no_wait_unaskable(api) || !sp_io_use(api, 1))
			continue;
		ASSERT_TRUE(fill_until_eagain(c, api, &accepted, accepted + (1 << 24)),
			    "non-blocking %s() reports EAGAIN once window and buffers are full "
			    "(took %zu bytes without)", sp_io_out_name(api), accepted - before);
		if (api == SP_IO_READ)
			RECORD("bytes_accepted_before_eagain", "%zu", accepted);
		snprintf(eagain_at + strlen(eagain_at), sizeof(eagain_at) - strlen(eagain_at),
			 "%s%s", eagain_at[0] ? " " : "", sp_io_out_name(api));
	}
	RECORD("eagain_from", "%s", eagain_at);
	ASSERT_SYS(shutdown(c, SHUT_WR));
	drain_pattern_then_eof(s, accepted, "CLOSE-HALF-WR-EOF", "shutdown(SHUT_WR)");
	close(c);
	close(s);
	close(l);
}

struct blocking_writer {
	int fd;
	size_t n;                    /* bytes per call */
	struct sp_barrier about[SP_IO_ALL], done[SP_IO_ALL]; /* by call */
};

/* io_uring completes a request on a stream socket with what one attempt
 * moved: on a blocking socket with too little room that is a short count,
 * by design; MSG_WAITALL is how a program asks it to wait for the whole
 * count, as a blocking send() does. So SEND/SENDMSG are made with it, and
 * WRITE/WRITEV (no flags: no way to ask) are left out of the blocking
 * writer (as of the non-blocking one, see no_wait_unaskable()). */
static int waits_for_whole_count(int api)
{
	return sp_io_use(api, 1) && (!uring_call(api) || sp_io_takes_flags(api));
}

/* In a child: one blocking call per write API, each of more bytes than
 * the buffers hold; each must return the full count (no EAGAIN, no short
 * count, SP_OUT_EXACT fails the child otherwise). */
static int write_blocking(void *p)
{
	struct blocking_writer *w = p;
	unsigned char *buf = malloc(w->n);

	for (const int *c = SP_EVERY_WRITE; *c >= 0; c++) {
		int api = *c;
		if (!waits_for_whole_count(api))
			continue;
		sp_pattern(buf, w->n, (size_t)api * w->n);
		sp_barrier_pass(&w->about[api]);
		if (uring_call(api)) {
			ssize_t r = MUST_RETURN(sp_io_out(api, w->fd, buf, w->n, MSG_NOSIGNAL | MSG_WAITALL),
						"%s(MSG_WAITALL) of %zu bytes on a blocking socket",
						sp_io_out_name(api), w->n);
			ASSERT_TRUE(r == (ssize_t)w->n, "%s(MSG_WAITALL) of %zu bytes on a blocking "
				    "socket returns the whole count (got %zd%s%s)", sp_io_out_name(api),
				    w->n, r, r < 0 ? ", " : "", r < 0 ? sp_errno_name(errno) : "");
		} else {
			SP_OUT_EXACT(api, w->fd, buf, w->n);
		}
		sp_barrier_pass(&w->done[api]);
	}
	free(buf);
	return 0;
}

/* 6b. A blocking writer stays blocked until the reader reads, through
 * every write call; then the call returns the full count and every byte
 * arrives intact and in order (read through every read call). */
SP_TEST(tcp_flow_control_blocks_writer_until_reader_reads, "TCP-FLOW-CONTROL", SP_INET)
{
	int l = sp_tcp_listener(ctx, SMALL_BUF), s;
	struct blocking_writer w;

	/* Without /proc of our own the writer's sleep cannot be seen: every
	 * other check still runs (exact counts, no EAGAIN, bytes intact), and
	 * a conformant run ends as a skip, never a pass. */
	int see_sleep = sp_have_proc();
	w.fd = sp_tcp_connect(ctx, l);
	s = accept_queued(l);
	small_rcvbuf(s);
	small_sndbuf(w.fd);
	int snd = bufsize(w.fd, SO_SNDBUF), rcv = bufsize(s, SO_RCVBUF);
	RECORD("writer_sndbuf", "%d", snd);
	RECORD("reader_rcvbuf", "%d", rcv);
	/* Each call writes twice what both buffers can hold, so it must block. */
	w.n = 2 * ((size_t)snd + (size_t)rcv);
	REQUIRE(snd > 0 && rcv > 0 && w.n <= (8u << 20),
		"small socket buffers (SO_SNDBUF %d, SO_RCVBUF %d after setting %d)",
		snd, rcv, SMALL_BUF);
	RECORD("bytes_per_blocking_write", "%zu", w.n);
	for (int api = 0; api < SP_IO_ALL; api++) {
		sp_barrier_init(&w.about[api]);
		sp_barrier_init(&w.done[api]);
	}
	pid_t writer = sp_fork(write_blocking, &w);
	unsigned char *in = malloc(w.n);

	for (const int *c = SP_EVERY_WRITE; *c >= 0; c++) {
		int api = *c;
		const char *call = sp_io_out_name(api);
		if (!waits_for_whole_count(api))
			continue;
		sp_barrier_wait(&w.about[api]);
		/* The writer fills the buffers, then sleeps inside the call. */
		if (see_sleep) {
			int asleep = sp_wait_proc_state(writer, 'S');
			ASSERT_TRUE(asleep || sp_proc_state(writer) != 'Z',
				    "the writer stays in a blocking %s() once buffers are full; it "
				    "ended instead (its own failure, reported first, says how the "
				    "call returned)", call);
			ASSERT_TRUE(asleep, "the writer sleeps in a blocking %s() once buffers are "
				    "full (state %c)", call, sp_proc_state(writer));
		}
		int queued = 0;
		ASSERT_SYS(ioctl(s, FIONREAD, &queued));
		if (api == SP_IO_READ)
			RECORD("bytes_in_flight_while_writer_blocked", "%d", queued);
		ASSERT_TRUE(!sp_barrier_ready(&w.done[api]),
			    "%s() has not returned while the reader has not read", call);
		ASSERT_TRUE((size_t)queued < w.n, "not all %zu bytes of the %s() reached the "
			    "reader (%d)", w.n, call, queued);

		memset(in, 0, w.n);
		for (size_t off = 0; off < w.n; off += CHUNK) {
			size_t want = w.n - off < CHUNK ? w.n - off : CHUNK;
			int rapi = nth_call(SP_EVERY_READ, (int)(off / CHUNK), 0);
			SP_IN_EXACT(rapi, s, in + off, want);
		}
		ASSERT_TRUE(sp_pattern_check(in, w.n, (size_t)api * w.n) == w.n,
			    "the %zu bytes of the blocking %s() arrive intact and in order", w.n, call);
		sp_barrier_wait(&w.done[api]);
	}
	int st = sp_reap(writer);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "every blocking write call took all its bytes (writer status 0x%x)", st);
	ASSERT_ERRNO(recv(s, in, 1, MSG_DONTWAIT), EAGAIN); /* nothing extra */
	free(in);
	if (!see_sleep)
		SKIP("needs /proc of this pid namespace to see the writer asleep in the call "
		     "(counts and data were checked and held)");
}

/* 7. write() returns once the bytes are in the local send buffer, before
 * the peer application reads them (the notes say "when transmitted"):
 * every write call, both directions, blocking then non-blocking, each
 * returning its full count. */
struct writer7 { int c, s; struct sp_barrier done; };
static const char payload[] = "payload-of-some-bytes"; /* 21 bytes */

static int write_each_api(void *p)
{
	struct writer7 *w = p;

	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(w->c, nb); /* the child's descriptions are shared */
		sp_set_nonblock(w->s, nb);
		for (int dir = 0; dir < 2; dir++)
			for (const int *c = SP_EVERY_WRITE; *c >= 0; c++)
				if (sp_io_use(*c, 1))
					SP_OUT_EXACT(*c, dir ? w->s : w->c, payload, 21);
	}
	sp_set_nonblock(w->c, 0);
	sp_set_nonblock(w->s, 0);
	sp_barrier_pass(&w->done);
	return 0;
}

SP_TEST(tcp_write_returns_before_peer_reads, "TCP-WRITE-RETURNS-BUFFERED", SP_INET)
{
	struct writer7 w;
	int calls = 0; /* the write calls this system has (the child makes each) */

	for (const int *c = SP_EVERY_WRITE; *c >= 0; c++)
		calls += sp_io_use(*c, 1);
	sp_tcp_pair(ctx, &w.c, &w.s);
	sp_barrier_init(&w.done);
	pid_t pid = sp_fork(write_each_api, &w);
	/* Neither peer reads anything until every write call has returned. */
	sp_barrier_wait(&w.done);
	int st = sp_reap(pid);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "each write call returned all 21 bytes (writer status 0x%x)", st);
	for (int dir = 0; dir < 2; dir++) {
		int rd = dir ? w.c : w.s, unread = 0;
		char buf[2 * SP_IO_ALL * 21];
		size_t n = 2 * (size_t)calls * 21;
		ASSERT_SYS(ioctl(rd, FIONREAD, &unread));
		if (dir == 0)
			RECORD("unread_at_peer_when_write_returned", "%d", unread);
		ASSERT_TRUE(unread <= (int)n, "at most the %zu bytes written wait at "
			    "the peer (%d)", n, unread);
		SP_IN_EXACT(SP_IO_READ, rd, buf, n);
		for (int k = 0; k < 2 * calls; k++)
			ASSERT_MEM_EQ(payload, buf + 21 * k, 21);
		ASSERT_ERRNO(recv(rd, buf, 1, MSG_DONTWAIT), EAGAIN);
	}
}

/* 8. connect() completes via the listen queue before accept() is called.
 * A mark sent right after connect() returns (blocking; the system call or
 * io_uring CONNECT, .how), or after POLLOUT reports a non-blocking connect
 * done, comes after the whole handshake in the wire trace: connect() did
 * not return before the handshake. */
SP_TEST(tcp_connect_completes_before_accept, "TCP-HANDSHAKE-BEFORE-ACCEPT", SP_INET,
	.how = SP_NAMES("connect", "io_uring:CONNECT"))
{
	/* Known before the capture starts: a variant that ends here leaves
	 * none running. */
	const char *lacking = ctx->how ? sp_uring_missing(SP_URING_CONNECT) : NULL;
	if (lacking)
		UNAVAILABLE("%s", lacking);
	int l = sp_tcp_listener(ctx, 0), c[2], s;
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l));
	struct sp_capture cap;

	sp_capture_start(&cap);
	sp_capture_name_fd(&cap, l, "S");
	sp_capture_name(&cap, 0, "C");
	c[0] = sp_socket(ctx, SOCK_STREAM);
	ASSERT_SYS(sp_connect_through(ctx->how, c[0], (struct sockaddr *)&ss, len));
	sp_capture_mark(&cap, "connect-returned"); /* before any other call on c[0] */

	c[1] = sp_socket(ctx, SOCK_STREAM);
	sp_set_nonblock(c[1], 1);
	errno = 0;
	int r = connect(c[1], (struct sockaddr *)&ss, len), err = errno;
	RECORD_ONCE("nonblocking_connect", "%s", r == 0 ? "0 at once" : sp_errno_name(err));
	if (r < 0 && err == EAGAIN)
		sp_needs_at(__FILE__, __LINE__, "CONN-NONBLOCK-CONNECT", "a non-blocking connect()",
			    "0 or -1 (EINPROGRESS)", "-1 (EAGAIN)", err);
	ASSERT_TRUE(r == 0 || err == EINPROGRESS,
		    "a non-blocking connect() returns 0 or EINPROGRESS (got %d, %s)", r, sp_errno_name(err));
	EXPECT_EVENTS(c[1], POLLOUT, POLLOUT, "the non-blocking connect completes");
	sp_capture_mark(&cap, "pollout");
	int soerr = -1;
	socklen_t el = sizeof(soerr);
	ASSERT_SYS(getsockopt(c[1], SOL_SOCKET, SO_ERROR, &soerr, &el));
	ASSERT_EQ(0, soerr);

	/* The whole three-way handshake is on the wire before each mark, and
	 * before accept(). */
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>S S, S>C S., C>S ., M connect-returned, "
				  "C>S S, S>C S., C>S ., M pollout");
		RECORD_ONCE("handshake_before_connect_returned", "yes (wire trace)");
	} else {
		RECORD_ONCE("handshake_before_connect_returned", "unobservable (%s)", cap.why);
	}
	sp_capture_stop(&cap);

	for (int i = 0; i < 2; i++) {
		int state = sp_tcp_state(c[i]);
		if (i == 0)
			RECORD_ONCE("client_state_before_accept", "%s", sp_tcp_state_name(state));
		ASSERT_EQ(TCP_ESTABLISHED, state);
	}
	for (int i = 0; i < 2; i++) {
		s = accept_queued(l);
		ASSERT_EQ(TCP_ESTABLISHED, sp_tcp_state(s));
		close(s);
	}
	close(c[0]);
	close(c[1]);
	close(l);
}

/* Find a TIME_WAIT entry for local port `port` in /proc/net/tcp{,6}. */
static int time_wait_seen(const struct sp_ctx *ctx, unsigned port)
{
	const char *path = ctx->af == AF_INET6 ? "/proc/net/tcp6" : "/proc/net/tcp";
	FILE *f = fopen(path, "r");
	char line[512];
	int found = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':'); /* after "sl:" */
		char *local = colon ? strchr(colon + 1, ':') : NULL;
		unsigned lport, st;
		if (!local || sscanf(local + 1, "%x %*s %x", &lport, &st) != 2)
			continue;
		if (lport == port && st == 0x06)
			found = 1;
	}
	fclose(f);
	return found;
}

/* 9. The four-way close: the active closer (.end) goes FIN_WAIT1/2 ->
 * TIME_WAIT, the passive side sits in CLOSE_WAIT until it closes too;
 * the shutdown and the close made by the system calls or by io_uring
 * SHUTDOWN and CLOSE (.how). */
SP_TEST(tcp_teardown_walks_fin_wait_close_wait_time_wait, "TCP-TEARDOWN-STATES", SP_INET,
	.end = SP_BOTH_ENDS, .how = SP_NAMES("shutdown+close", "io_uring:SHUTDOWN+CLOSE"))
{
	struct sp_capture cap;
	int c, s, a, b;

	/* Known before the capture starts: a variant that ends here leaves
	 * none running. */
	const char *lacking = NULL;
	if (ctx->how && !(lacking = sp_uring_missing(SP_URING_SHUTDOWN)))
		lacking = sp_uring_missing(SP_URING_CLOSE);
	if (lacking)
		UNAVAILABLE("%s", lacking);
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &a, &b); /* a: the active closer, b: passive */
	unsigned port = sp_local_port(a);
	const char *who = sp_end_name(ctx->end);
	/* Each end's EOF is read by another call. */
	int server_active = ctx->end == SP_SERVER;

	sp_capture_start(&cap);
	sp_capture_name_fd(&cap, a, "C");
	sp_capture_name_fd(&cap, b, "S");

	ASSERT_SYS(sp_shutdown_through(ctx->how, a, SHUT_WR)); /* active close: our FIN */
	SP_FIN_ARRIVES(b, "CLOSE-HALF-WR-EOF", "shutdown(SHUT_WR)");
	int active = sp_wait_tcp_state(a, TCP_FIN_WAIT2);
	RECORD_ONCE("active_after_fin", "%s", sp_tcp_state_name(active));
	ASSERT_TRUE(active == TCP_FIN_WAIT2, "the active closer (%s) is in FIN_WAIT2 once "
		    "its FIN is acknowledged (got %s)", who, sp_tcp_state_name(active));
	SP_EXPECT_EOF_AGAIN(server_active ? SP_IO_RECV : SP_IO_READ, b); /* seen by the peek */
	int passive = sp_tcp_state(b);
	RECORD_ONCE("passive_after_fin", "%s", sp_tcp_state_name(passive));
	ASSERT_TRUE(passive == TCP_CLOSE_WAIT, "the passive side sits in CLOSE_WAIT "
		    "(active closer: %s; got %s)", who, sp_tcp_state_name(passive));

	ASSERT_SYS(sp_close_through(ctx->how, b)); /* passive close: its FIN */
	SP_EXPECT_EOF(server_active ? SP_IO_MSG : SP_IO_RECVFROM, a);
	/* FIN and ACK in each direction, in the order the states say. */
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>S F., S>C ., S>C F., C>S .");
		WIRE_LACKS(&cap, "C>S R");
		WIRE_LACKS(&cap, "S>C R");
	}
	sp_capture_stop(&cap);
	/* Linux hands the connection to a TIME_WAIT mini-socket; the fd
	 * itself reads CLOSE. /proc/net/tcp shows the TIME_WAIT entry. */
	int fdstate = sp_tcp_state(a);
	int tw = time_wait_seen(ctx, port);
	RECORD_ONCE("active_fd_after_peer_fin", "%s", sp_tcp_state_name(fdstate));
	RECORD_ONCE("time_wait_entry", "%s",
		    tw < 0 ? "unobservable (no /proc/net)" : tw ? "yes" : "no");
	if (tw < 0 && fdstate != TCP_TIME_WAIT)
		SKIP("TIME_WAIT is unobservable: no /proc/net/tcp and TCP_INFO does not show it");
	ASSERT_TRUE(fdstate == TCP_TIME_WAIT || tw == 1,
		    "the active closer (%s) ends in TIME_WAIT (fd %s, TIME_WAIT entry %s)",
		    who, sp_tcp_state_name(fdstate), tw ? "present" : "absent");
	close(a);
}

/* Same address (not port) in two sockaddrs of one family? */
static int same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr, 16);
	return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
	       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

static int is_unspecified(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)a)->sin6_addr);
	return ((const struct sockaddr_in *)a)->sin_addr.s_addr == 0; /* 0.0.0.0 */
}

static void addr_text(const struct sockaddr_storage *a, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (a->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)a)->sin6_addr, host, sizeof(host));
	else if (a->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)a)->sin_addr, host, sizeof(host));
	snprintf(out, n, "%s port %u", host, (unsigned)sp_port(a));
}

static void local_addr(int fd, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);
	memset(ss, 0, sizeof(*ss));
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)ss, &len));
}

/* 10. connect() on an unbound socket assigns a local address and an
 * ephemeral port (blocking and non-blocking connect, by the system call
 * or by io_uring CONNECT): the loopback
 * address the peer sees, never the wildcard, and the port the server's
 * accept() and getpeername() report. */
SP_TEST(tcp_connect_binds_ephemeral_port, "TCP-CONNECT-IMPLICIT-BIND", SP_INET,
	.mode = SP_BOTH_MODES, .how = SP_NAMES("connect", "io_uring:CONNECT"))
{
	int l = sp_tcp_listener(ctx, 0);
	struct sockaddr_storage ss, lo;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l));
	char text[96], want[96];

	sp_loopback(ctx, &lo, 0);
	int nonblock = ctx->nonblock;
	int c = sp_socket(ctx, SOCK_STREAM);
	struct sockaddr_storage before, after, seen, peer;
	socklen_t slen = sizeof(seen), plen = sizeof(peer);
	const char *mode = nonblock ? "non-blocking" : "blocking";

	local_addr(c, &before);
	ASSERT_EQ(0, sp_port(&before));
	addr_text(&before, text, sizeof(text));
	ASSERT_TRUE(is_unspecified(&before), "an unbound socket has the wildcard address "
		    "before connect() (got %s)", text);
	sp_set_nonblock(c, nonblock);
	errno = 0;
	/* io_uring CONNECT is bounded by its own wait (sp_entry.c). */
	int r = ctx->how ? sp_connect_through(1, c, (struct sockaddr *)&ss, len)
			 : MUST_RETURN(connect(c, (struct sockaddr *)&ss, len), "a %s connect()", mode);
	int err = errno;
	/* connect() itself completing is a mechanism here. */
	if (nonblock && r < 0 && err == EAGAIN)
		sp_needs_at(__FILE__, __LINE__, "CONN-NONBLOCK-CONNECT", "a non-blocking connect()",
			    "0 or -1 (EINPROGRESS)", "-1 (EAGAIN)", err);
	if (!nonblock && r < 0 && err != ECONNREFUSED)
		sp_needs_at(__FILE__, __LINE__, "TCP-HANDSHAKE-BEFORE-ACCEPT",
			    "a blocking connect() to a listener, before accept()", "0",
			    sp_errno_name(err), err);
	ASSERT_TRUE(r == 0 || (nonblock && err == EINPROGRESS),
		    "%s connect() succeeds%s (got %d, %s)", mode,
		    nonblock ? " or says EINPROGRESS" : "", r, sp_errno_name(err));
	/* Bound at once, even while a non-blocking connect is under way. */
	local_addr(c, &after);
	unsigned port = sp_port(&after);
	if (!nonblock && !ctx->how)
		sp_record_ephemeral("ephemeral_port", port);
	addr_text(&after, text, sizeof(text));
	addr_text(&lo, want, sizeof(want));
	if (!nonblock && !ctx->how)
		RECORD("local_address_after_connect", "%.*s", (int)strcspn(text, " "), text);
	ASSERT_TRUE(port != 0, "a non-zero local port after a %s connect()", mode);
	ASSERT_TRUE(same_host(&after, &lo), "the local address after a %s connect() is "
		    "the loopback address the peer is reached by (want %.*s, got %s)",
		    mode, (int)strcspn(want, " "), want, text);
	int s = sp_tcp_accept_from(l, (struct sockaddr *)&seen, &slen);
	ASSERT_SYS(getpeername(s, (struct sockaddr *)&peer, &plen));
	/* Recorded: the names the server sees (their agreement is
	 * CONN-NAMES-AGREE's Must, not this item's). */
	addr_text(&seen, want, sizeof(want));
	RECORD_ONCE("accept_reports_client_name", "%s",
		    same_host(&seen, &after) && sp_port(&seen) == port ? "yes" : want);
	addr_text(&peer, want, sizeof(want));
	RECORD_ONCE("server_getpeername_is_client_getsockname", "%s",
		    same_host(&peer, &after) && sp_port(&peer) == port ? "yes" : want);
	close(s);
	close(c);
	close(l);
}

/* 11. Each accept() returns a new socket for one client; the listener
 * stays a listener. accept(), accept4() and a non-blocking listener (EAGAIN
 * while nobody waits); each connection carries only its own client's
 * bytes, both ways. The clients connect and the server accepts by the
 * system calls or by io_uring CONNECT and ACCEPT (.how). */
SP_TEST(tcp_accept_gives_each_client_its_own_socket, "TCP-LISTEN-ACCEPT-SEQUENCE", SP_INET,
	.how = SP_NAMES("syscalls", "io_uring:CONNECT+ACCEPT"))
{
	enum { CLIENTS = 3 };
	int l = sp_tcp_listener(ctx, 0), c[CLIENTS], s[CLIENTS];
	struct sockaddr_storage lname;
	char buf[4];

	local_addr(l, &lname);
	sp_set_nonblock(l, 1);
	/* Nobody waiting yet: EAGAIN at once (CONN-ACCEPT-EAGAIN's Must). */
	errno = 0;
	int none = BOUNDED(accept(l, NULL, NULL)), nerr = errno;
	if (sp_bound_expired() || (none < 0 && nerr != EAGAIN))
		sp_needs_at(__FILE__, __LINE__, "CONN-ACCEPT-EAGAIN",
			    "accept() on an empty non-blocking listener", "-1 (EAGAIN)",
			    sp_bound_expired() ? "still blocked" : sp_errno_name(nerr), 0);
	ASSERT_TRUE(none < 0, "accept() with nobody waiting hands out no socket (got %d)", none);
	sp_set_nonblock(l, 0);
	for (int i = 0; i < CLIENTS; i++) {
		struct sockaddr_storage from, peer, mine, client;
		socklen_t flen = sizeof(from), len = sizeof(peer);
		if (ctx->how) {
			c[i] = sp_socket(ctx, SOCK_STREAM);
			ASSERT_SYS(sp_connect_through(1, c[i], (struct sockaddr *)&lname,
						      ctx->af == AF_INET6 ? sizeof(struct sockaddr_in6)
									  : sizeof(struct sockaddr_in)));
		} else {
			c[i] = sp_tcp_connect(ctx, l);
		}
		/* Queued: the handshake done (TCP-HANDSHAKE-BEFORE-ACCEPT) and
		 * the listener readable (MUX-LISTEN-READABLE), mechanisms. */
		if (sp_wait_tcp_state(c[i], TCP_ESTABLISHED) != TCP_ESTABLISHED)
			sp_needs_at(__FILE__, __LINE__, "TCP-HANDSHAKE-BEFORE-ACCEPT",
				    "the client's state once connect() returned", "ESTABLISHED",
				    sp_tcp_state_name(sp_tcp_state(c[i])), 0);
		int ev = sp_poll(l, POLLIN, sp_wait_ms());
		if (!(ev & POLLIN))
			sp_needs_at(__FILE__, __LINE__, "MUX-LISTEN-READABLE",
				    "poll() on a listener with a connection queued", "POLLIN",
				    sp_events_str(ev), 0);
		sp_set_nonblock(l, i == 2);
		if (ctx->how)
			s[i] = (int)ASSERT_SYS(sp_accept_through(1, l, (struct sockaddr *)&from, &flen,
								 i == 1 ? SOCK_CLOEXEC : 0));
		else
			s[i] = (int)ASSERT_SYS(i == 1 ? accept4(l, (struct sockaddr *)&from, &flen,
								SOCK_CLOEXEC)
						      : accept(l, (struct sockaddr *)&from, &flen));
		sp_set_nonblock(l, 0);
		ASSERT_TRUE(s[i] != l, "accept() %d: expected a new descriptor, observed the "
			    "listener's own (%d)", i, l);
		for (int j = 0; j < i; j++)
			ASSERT_TRUE(s[i] != s[j], "accept() %d gives a new socket, not %d's", i, j);
		/* The names (CONN-NAMES-AGREE's Musts) are recorded; that each
		 * socket is its own client's connection is shown by the bytes
		 * below. */
		ASSERT_SYS(getpeername(s[i], (struct sockaddr *)&peer, &len));
		local_addr(c[i], &client);
		RECORD_ONCE("accepted_peer_is_the_client", "%s",
			    same_host(&peer, &client) && sp_port(&peer) == sp_port(&client) ? "yes" : "no");
		RECORD_ONCE("accept_reports_the_client", "%s",
			    same_host(&from, &client) && sp_port(&from) == sp_port(&client) ? "yes" : "no");
		local_addr(s[i], &mine);
		RECORD_ONCE("accepted_name_is_listeners", "%s",
			    same_host(&mine, &lname) && sp_port(&mine) == sp_port(&lname) ? "yes" : "no");
	}
	/* The bytes go through every write and read call in turn (the two
	 * variants together make each at least once). */
	for (int i = 0; i < CLIENTS; i++) {
		char up[2] = { (char)('A' + i), 0 }, down[2] = { (char)('a' + i), 0 };
		SP_OUT_EXACT(nth_call(SP_EVERY_WRITE, 2 * i + 2 * CLIENTS * ctx->how, 1), c[i], up, 1);
		SP_OUT_EXACT(nth_call(SP_EVERY_WRITE, 2 * i + 1 + 2 * CLIENTS * ctx->how, 1), s[i],
			     down, 1);
	}
	for (int i = 0; i < CLIENTS; i++) {
		SP_IN_EXACT(nth_call(SP_EVERY_READ, 2 * i + 2 * CLIENTS * ctx->how, 0), s[i], buf, 1);
		ASSERT_EQ('A' + i, buf[0]);
		SP_IN_EXACT(nth_call(SP_EVERY_READ, 2 * i + 1 + 2 * CLIENTS * ctx->how, 0), c[i],
			    buf + 1, 1);
		ASSERT_EQ('a' + i, buf[1]);
		/* Only its own client's byte, nothing from the others. */
		ASSERT_ERRNO(recv(s[i], buf, 1, MSG_DONTWAIT), EAGAIN);
		ASSERT_ERRNO(recv(c[i], buf, 1, MSG_DONTWAIT), EAGAIN);
	}
	int acc = 0;
	socklen_t len = sizeof(acc);
	ASSERT_SYS(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len));
	ASSERT_EQ(1, acc);
}

SP_MAIN("tcp")
