/*
 * close.c - disconnecting: full close vs half-close (seed notes:
 * "7断开套接字连接", "基于TCP的半连接").
 *
 * Each test runs over IPv4 and IPv6 loopback and checks:
 *
 *  1. CLOSE-HALF-WR-EOF            after shutdown(SHUT_WR) the peer reads all
 *                                  data then EOF, and its reply still reaches
 *                                  the half-closed side ("file, then thank you").
 *  2. CLOSE-HALF-WR-NO-MORE-WRITES a write after SHUT_WR fails with EPIPE and
 *                                  raises SIGPIPE unless suppressed.
 *  3. CLOSE-HALF-RD                after SHUT_RD a read returns 0 at once.
 *  4. CLOSE-FULL-LOSES-REPLY       after close() the peer's reply cannot be
 *                                  received; its later send meets a reset.
 *
 * Every API: the data, the EOF and the reply go through every read and
 * write call (read/recv/recvfrom/recvmsg/readv, write/send/sendto/sendmsg/
 * writev, and the entry points: io_uring READ/READV/RECV/RECVMSG and
 * WRITE/WRITEV/SEND/SENDMSG, recvmmsg/sendmmsg, splice, sendfile), with
 * the client and then the server as the side that shuts
 * down or closes, on blocking and non-blocking sockets; each point is
 * asserted on every call, not only the first (EOF stays EOF, EPIPE and
 * SIGPIPE come on every write).
 *
 * Wire (where the item has its own network namespace): the half-close
 * sends a FIN and the reply still crosses; the full close answers the
 * late reply with an RST.
 *
 * Platform-defined (recorded): what happens to data arriving after
 * SHUT_RD (Linux still queues it and lets it be read; BSDs discard it),
 * and which errno the replying peer sees (EPIPE or ECONNRESET).
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

/* Parameters: .end is the side that shuts down or closes; .how whether it
 * does so by the system call or by its io_uring opcode (SHUTDOWN, CLOSE). */

/* The k-th call of a set, cycling over the calls this system has. */
#define nth_call(set, k, out) sp_io_nth(set, k, out, SP_IO_READ)

/* 1. Half-close: "file" one way, EOF, then a "thank you" the other way.
 * The file goes out through every write call and is read through every
 * read call; the EOF is seen by every read call, blocking and
 * non-blocking, again and again; the replies come back through every
 * write call and the half-closed side reads each through every read
 * call. */
SP_TEST(half_close_gives_peer_eof_and_still_receives, "CLOSE-HALF-WR-EOF", SP_INET,
	.end = SP_BOTH_ENDS, .how = SP_NAMES("shutdown", "io_uring:SHUTDOWN"))
{
	enum { FILE_SIZE = 24000, PARTS = 12, PART = FILE_SIZE / PARTS }; /* a part per write call */
	unsigned char file[FILE_SIZE], got[FILE_SIZE];
	char thanks[16];
	int c, s, sender, receiver;
	struct sp_capture cap;

	sp_pattern(file, FILE_SIZE, 0);
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &sender, &receiver);
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, sender, "C");
		sp_capture_name_fd(&cap, receiver, "S");
	}
	/* The file goes out non-blocking: short counts are normal there
	 * (blocking writes are TCP-FLOW-CONTROL's business). */
	sp_set_nonblock(sender, 1);
	for (int k = 0; k < PARTS; k++)
		SP_OUT_EXACT(nth_call(SP_EVERY_WRITE, k, 1), sender, file + k * PART, PART);
	sp_set_nonblock(sender, 0);
	ASSERT_SYS(sp_shutdown_through(ctx->how, sender, SHUT_WR));

	memset(got, 0, sizeof(got));
	for (int k = 0; k < PARTS; k++)
		SP_IN_EXACT(nth_call(SP_EVERY_READ, k, 0), receiver, got + k * PART, PART);
	ASSERT_TRUE(sp_pattern_check(got, FILE_SIZE, 0) == FILE_SIZE,
		    "the whole file arrives intact before EOF (%s half-closed)", sp_end_name(ctx->end));
	/* EOF after everything sent: every read call, twice, blocking
	 * then non-blocking. */
	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(receiver, nb);
		for (int api = 0; api < SP_IO_ALL; api++) {
			if (!sp_io_use(api, 0))
				continue;
			SP_EXPECT_EOF(api, receiver);
			SP_EXPECT_EOF(api, receiver);
		}
	}
	sp_set_nonblock(receiver, 0);

	/* The reply still reaches the half-closed side, every way. */
	for (int k = 0; k < PARTS; k++) {
		int api = nth_call(SP_EVERY_WRITE, k, 1);
		int rapi = nth_call(SP_EVERY_READ, k + 1 + ctx->end, 0); /* each end: other pairs */
		sp_set_nonblock(sender, k % 2);
		SP_OUT_EXACT(api, receiver, "thank you", 9);
		memset(thanks, 0, sizeof(thanks));
		SP_IN_EXACT(rapi, sender, thanks, 9);
		ASSERT_MEM_EQ("thank you", thanks, 9);
	}
	/* On the wire: our FIN, then the reply still travels back. */
	if (ctx->first) {
		if (sp_capture_sync(&cap)) {
			WIRE_EXPECT(&cap, "C>S F, S>C P.9"); /* a FIN, bare or on the last data */
			WIRE_LACKS(&cap, "C>S R");
		}
		sp_capture_stop(&cap);
	}
	close(c);
	close(s);
}

static volatile sig_atomic_t sigpipes;
static void count_sigpipe(int sig) { (void)sig; sigpipes++; }

/* SIGPIPE reaches this process's handler at all: a write to a pipe
 * whose reader is gone raises it (PIPE-EPIPE's Must), the mechanism
 * by which this item counts the socket's. */
static void sigpipe_is_delivered(void)
{
	int p[2];
	ASSERT_SYS(pipe(p));
	ASSERT_SYS(close(p[0]));
	int before = sigpipes;
	errno = 0;
	ssize_t w = write(p[1], "x", 1);
	int err = errno;
	close(p[1]);
	if (w < 0 && err == EBADF)
		sp_needs_at(__FILE__, __LINE__, "PIPE-ENDS", "write() to pipe end fds[1]",
			    "-1 (EPIPE)", "-1 (EBADF)", err);
	if (sigpipes - before != 1) {
		char obs[64];
		snprintf(obs, sizeof(obs), "%d times (write gave %zd, %s)", (int)(sigpipes - before), w,
			 sp_errno_name(err));
		sp_needs_at(__FILE__, __LINE__, "PIPE-EPIPE",
			    "SIGPIPE from a write to a pipe without readers", "raised once", obs, 0);
	}
}

/* 2. No more writes after SHUT_WR: every write call fails with EPIPE,
 * every time, blocking or not; each one raises SIGPIPE unless suppressed
 * with MSG_NOSIGNAL (write()/writev(), sendfile and splice cannot
 * suppress it; io_uring SEND/SENDMSG always do); the peer gets
 * none of it, only EOF. Every call in turn on the same shut socket. */
SP_TEST(write_after_shutdown_wr_fails_with_epipe, "CLOSE-HALF-WR-NO-MORE-WRITES", SP_INET,
	.end = SP_BOTH_ENDS, .how = SP_NAMES("shutdown", "io_uring:SHUTDOWN"))
{
	struct sigaction sa = { .sa_handler = count_sigpipe };

	ASSERT_SYS(sigaction(SIGPIPE, &sa, NULL));
	sigpipes = 0;
	sigpipe_is_delivered();
	int c, s, a, b, unsuppressed = 0;
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &a, &b);
	ASSERT_SYS(sp_shutdown_through(ctx->how, a, SHUT_WR));
	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(a, nb);
		for (const int *w = SP_EVERY_WRITE; *w >= 0; w++) {
			int api = *w;
			const char *call = sp_io_out_name(api);
			int takes_flags = sp_io_takes_flags(api);
			/* io_uring SEND/SENDMSG: Linux makes every such request
			 * with MSG_NOSIGNAL (EPIPE, no SIGPIPE, whatever the
			 * flags), so an unsuppressed SIGPIPE cannot be asked for
			 * there (recorded); EPIPE is asserted all the same. */
			int never_signals = api >= SP_IO_APIS && takes_flags &&
					    (sp_entry_io_takes(api) & SP_EP_URING);
			if (!sp_io_use(api, 1))
				continue;
			for (int nosig = takes_flags ? 0 : 1; nosig < 2; nosig++) {
				int before = sigpipes;
				unsuppressed += nosig && !never_signals;
				/* Installed again each time: a handler that runs only
				 * once (SIG-HANDLER-RUNS' deviation) must not kill. */
				ASSERT_SYS(sigaction(SIGPIPE, &sa, NULL));
				errno = 0;
				ssize_t r = sp_io_out(api, a, "x", 1, nosig ? 0 : MSG_NOSIGNAL);
				int err = errno;
				/* writev() of 1 byte moving nothing: its first buffer
				 * is empty, the second not gathered. */
				if (api == SP_IO_VEC && r == 0)
					sp_needs_at(__FILE__, __LINE__, "FLAG-WRITEV-GATHER",
						    "writev() of 1 byte in two buffers", "the byte or an error",
						    "0", 0);
				/* MSG_NOSIGNAL suppressing it is FLAG-NOSIGNAL's Must. */
				if (!nosig && sigpipes != before)
					sp_needs_at(__FILE__, __LINE__, "FLAG-NOSIGNAL", "a send with MSG_NOSIGNAL",
						    "no SIGPIPE", "SIGPIPE raised", 0);
				ASSERT_TRUE(r == -1 && err == EPIPE, "%s() after shutdown(SHUT_WR) "
					    "by the %s (%s) fails with EPIPE (got %zd, %s)", call,
					    sp_end_name(ctx->end), nb ? "non-blocking" : "blocking", r,
					    r < 0 ? sp_errno_name(err) : "accepted");
				int want = nosig ? 1 : 0;
				if (nosig && never_signals) {
					RECORD_ONCE("sigpipe_from_io_uring_send", "%d", (int)(sigpipes - before));
					sigpipes = before;
					continue;
				}
				ASSERT_TRUE(sigpipes - before == want, "%s()%s after shutdown(SHUT_WR) "
					    "by the %s: SIGPIPE raised %d times, expected %d", call,
					    nosig ? "" : " with MSG_NOSIGNAL", sp_end_name(ctx->end),
					    (int)(sigpipes - before), want);
			}
		}
	}
	RECORD_ONCE("sigpipe_raised_by_write", "%d of %d calls without MSG_NOSIGNAL",
		    (int)sigpipes, unsuppressed);
	/* None of it reached the peer: only the EOF (read once; EOF
	 * staying EOF is CLOSE-HALF-WR-EOF's). */
	SP_EXPECT_EOF(SP_IO_RECV, b);
	close(c);
	close(s);
}

/* 3. After SHUT_RD, a read returns 0 (EOF) at once instead of blocking:
 * every read call, several times each, blocking and non-blocking. */
SP_TEST(read_after_shutdown_rd_returns_eof, "CLOSE-HALF-RD", SP_INET,
	.end = SP_BOTH_ENDS, .how = SP_NAMES("shutdown", "io_uring:SHUTDOWN"))
{
	char buf[16];

	int c, s, a, b;
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &a, &b);
	ASSERT_SYS(sp_shutdown_through(ctx->how, a, SHUT_RD));
	/* Readability is MUX-READABLE-EOF's business: recorded; the reads
	 * below are this ID's Must (0, at once). */
	RECORD_ONCE("readable_after_shut_rd", "%s", sp_events_str(sp_poll(a, POLLIN, 0)));
	for (int nb = 0; nb < 2; nb++) {
		sp_set_nonblock(a, nb);
		for (int api = 0; api < SP_IO_ALL; api++) {
			if (!sp_io_use(api, 0))
				continue;
			for (int again = 0; again < 2; again++) {
				long m = sp_block_mark();
				errno = 0;
				ssize_t r = MUST_RETURN(sp_io_in(api, a, buf, sizeof(buf), 0),
							"%s() number %d after shutdown(SHUT_RD) by the %s (%s)",
							sp_io_in_name(api), again + 1,
							sp_end_name(ctx->end),
							nb ? "non-blocking" : "blocking");
				int err = errno;
				ASSERT_NO_BLOCK(m, "%s() number %d after shutdown(SHUT_RD) by the %s (%s)",
						sp_io_in_name(api), again + 1, sp_end_name(ctx->end),
						nb ? "non-blocking" : "blocking");
				ASSERT_TRUE(r == 0, "%s() number %d after shutdown(SHUT_RD) by the "
					    "%s (%s) returns 0 at once (got %zd, %s)",
					    sp_io_in_name(api), again + 1, sp_end_name(ctx->end),
					    nb ? "non-blocking" : "blocking", r,
					    r < 0 ? sp_errno_name(err) : r ? "data" : "EOF");
			}
		}
	}

	/* Platform-defined: data the peer sends afterwards (once). */
	if (ctx->first) {
		errno = 0;
		ssize_t w = BOUNDED(send(b, "late", 4, MSG_NOSIGNAL));
		int werr = sp_bound_expired() ? EINTR : errno;
		ssize_t r = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
		int rerr = errno;
		RECORD("peer_send_after_shut_rd", "%zd (%s)", w, w < 0 ? sp_errno_name(werr) : "ok");
		RECORD("read_of_late_data", "%zd%s%s", r, r < 0 ? " " : "",
		       r < 0 ? sp_errno_name(rerr) : "");
	}
	close(c);
	close(s);
}

/* 4. A side that close()s cannot get the reply; the replier meets a reset.
 * The file, its EOF and the reply go through one pair of calls (.write:
 * write/read, send/recv, ...); the replier's next write fails. */
SP_TEST(close_without_half_close_loses_reply, "CLOSE-FULL-LOSES-REPLY", SP_INET,
	.end = SP_BOTH_ENDS, .write = SP_EVERY_WRITE, .how = SP_NAMES("close", "io_uring:CLOSE"))
{
	char buf[16];

	int api = ctx->write, c, s, closer, replier;
	const char *call = sp_io_out_name(api);
	struct sigaction ign = { .sa_handler = SIG_IGN };
	struct sp_capture cap;

	ASSERT_SYS(sigaction(SIGPIPE, &ign, NULL)); /* write()/writev() */
	sp_tcp_pair(ctx, &c, &s);
	sp_ends(ctx, c, s, &closer, &replier);
	if (ctx->first) {
		sp_capture_start(&cap);
		sp_capture_name_fd(&cap, closer, "C");
		sp_capture_name_fd(&cap, replier, "S");
	}
	SP_OUT_EXACT(api, closer, "file", 4);
	ASSERT_SYS(sp_close_through(ctx->how, closer)); /* full close: no way to receive the reply */

	SP_IN_EXACT(sp_io_reader(api), replier, buf, 4);
	ASSERT_MEM_EQ("file", buf, 4);
	SP_EXPECT_EOF(sp_io_reader(api), replier);
	errno = 0;
	ssize_t r = sp_io_out(api, replier, "thank you", 9, MSG_NOSIGNAL);
	int err = errno;
	/* A vectored write moving only its first buffer (4 of 9) is
	 * FLAG-WRITEV-GATHER's deviation, a mechanism here. */
	if ((api == SP_IO_VEC || api == SP_IO_URING_VEC) && r == 4)
		sp_needs_at(__FILE__, __LINE__, "FLAG-WRITEV-GATHER", "writev() of 9 bytes in two buffers",
			    "9", "4: only the first buffer", 0);
	RECORD_ONCE("replier_first_send", "%zd (%s)", r, r < 0 ? sp_errno_name(err) : "accepted");
	if (r == 9) {
		/* Accepted locally, then answered by a reset. No event
		 * asked for: the EOF already read makes POLLIN ready at
		 * once, only the reset's POLLERR/POLLHUP end this wait. */
		EXPECT_EVENTS(replier, 0, POLLERR | POLLHUP,
			      "...the %s() reply is answered by a reset", call);
		if (ctx->first && sp_capture_sync(&cap))
			WIRE_EXPECT(&cap, "C>S F, S>C P.9, C>S R"); /* FIN bare or on data */
		errno = 0;
		r = sp_io_out(api, replier, "again", 5, MSG_NOSIGNAL);
		err = errno;
	}
	if (ctx->first) {
		sp_capture_stop(&cap);
		RECORD("replier_send_after_reset", "%zd (%s)", r, sp_errno_name(err));
	}
	ASSERT_TRUE(r < 0 && (err == EPIPE || err == ECONNRESET),
		    "the replier's %s() after the %s closed fails with EPIPE or ECONNRESET "
		    "(got %zd, %s)", call, sp_end_name(ctx->end), r,
		    r < 0 ? sp_errno_name(err) : "accepted");
	close(replier);
}

SP_MAIN("close")
