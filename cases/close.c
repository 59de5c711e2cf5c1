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

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 1. Half-close: "file" one way, EOF, then a "thank you" the other way. */
SP_TEST(half_close_gives_peer_eof_and_still_receives)
{
	enum { FILE_SIZE = 20000 };
	unsigned char file[FILE_SIZE], got[FILE_SIZE + 1];
	int sender, receiver;
	char thanks[16] = "";
	struct sp_capture cap;

	sp_tcp_pair(ctx, &sender, &receiver);
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(sender), "C");
	sp_capture_name(&cap, sp_local_port(receiver), "S");
	sp_pattern(file, FILE_SIZE, 0);
	ASSERT_EQ(FILE_SIZE, sp_write_all(sender, file, FILE_SIZE));
	ASSERT_SYS(shutdown(sender, SHUT_WR));

	ASSERT_EQ(FILE_SIZE, sp_read_all(receiver, got, FILE_SIZE));
	ASSERT_EQ(FILE_SIZE, sp_pattern_check(got, FILE_SIZE, 0));
	ASSERT_TRUE(sp_poll(receiver, POLLIN, sp_wait_ms()), "EOF is signalled");
	ASSERT_EQ(0, read(receiver, got, 1)); /* EOF after everything sent */

	ASSERT_EQ(9, write(receiver, "thank you", 9));
	ASSERT_EQ(9, sp_read_all(sender, thanks, 9));
	ASSERT_MEM_EQ("thank you", thanks, 9);
	/* On the wire: our FIN, then the reply still travels back. */
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "C>S F., S>C P.9");
		WIRE_LACKS(&cap, "C>S R");
	}
	sp_capture_stop(&cap);
}

static volatile sig_atomic_t sigpipes;
static void count_sigpipe(int sig) { (void)sig; sigpipes++; }

/* 2. No more writes after SHUT_WR: EPIPE, and SIGPIPE unless suppressed. */
SP_TEST(write_after_shutdown_wr_fails_with_epipe)
{
	int a, b;
	struct sigaction sa = { .sa_handler = count_sigpipe };

	sp_tcp_pair(ctx, &a, &b);
	ASSERT_SYS(shutdown(a, SHUT_WR));
	ASSERT_ERRNO(send(a, "x", 1, MSG_NOSIGNAL), EPIPE);
	ASSERT_EQ(0, sigpipes);

	ASSERT_SYS(sigaction(SIGPIPE, &sa, NULL));
	ASSERT_ERRNO(write(a, "x", 1), EPIPE);
	RECORD("sigpipe_raised_by_write", "%d", (int)sigpipes);
	ASSERT_EQ(1, sigpipes);
}

/* 3. After SHUT_RD, read returns 0 (EOF) at once instead of blocking. */
SP_TEST(read_after_shutdown_rd_returns_eof)
{
	int a, b;
	char buf[16];

	sp_tcp_pair(ctx, &a, &b);
	ASSERT_SYS(shutdown(a, SHUT_RD));
	ASSERT_TRUE(sp_poll(a, POLLIN, sp_wait_ms()) & POLLIN,
		    "a read-shut socket is readable (EOF) at once");
	ASSERT_EQ(0, read(a, buf, sizeof(buf)));

	/* Platform-defined: data the peer sends afterwards. */
	ssize_t w = send(b, "late", 4, MSG_NOSIGNAL);
	int werr = errno;
	RECORD("peer_send_after_shut_rd", "%zd (%s)", w, w < 0 ? sp_errno_name(werr) : "ok");
	ssize_t r = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	int rerr = errno;
	RECORD("read_of_late_data", "%zd%s%s", r, r < 0 ? " " : "",
	       r < 0 ? sp_errno_name(rerr) : "");
}

/* 4. A side that close()s cannot get the reply; the replier meets a reset. */
SP_TEST(close_without_half_close_loses_reply)
{
	int closer, replier;
	char buf[16];
	struct sp_capture cap;

	sp_tcp_pair(ctx, &closer, &replier);
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(closer), "C");
	sp_capture_name(&cap, sp_local_port(replier), "S");
	ASSERT_EQ(4, write(closer, "file", 4));
	ASSERT_SYS(close(closer)); /* full close: no way to receive the reply */

	ASSERT_EQ(4, sp_read_all(replier, buf, 4));
	ASSERT_TRUE(sp_poll(replier, POLLIN, sp_wait_ms()), "EOF arrives");
	ASSERT_EQ(0, read(replier, buf, 1));
	ASSERT_EQ(9, send(replier, "thank you", 9, MSG_NOSIGNAL)); /* accepted locally... */
	ASSERT_TRUE(sp_poll(replier, POLLIN, sp_wait_ms()) & (POLLERR | POLLHUP),
		    "...but answered by a reset within %d ms", sp_wait_ms());
	/* On the wire: the closer's FIN, the reply, the closer's RST. */
	if (sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, "C>S F., S>C P.9, C>S R");
	sp_capture_stop(&cap);
	errno = 0;
	ssize_t r = send(replier, "again", 5, MSG_NOSIGNAL);
	int err = errno;
	RECORD("replier_send_after_reset", "%zd (%s)", r, sp_errno_name(err));
	ASSERT_TRUE(r < 0 && (err == EPIPE || err == ECONNRESET),
		    "the replier's next send fails with EPIPE or ECONNRESET (got %zd, %s)",
		    r, sp_errno_name(err));
}

static const struct sp_case cases[] = {
	SP_CASE(half_close_gives_peer_eof_and_still_receives, "CLOSE-HALF-WR-EOF", SP_INET),
	SP_CASE(write_after_shutdown_wr_fails_with_epipe, "CLOSE-HALF-WR-NO-MORE-WRITES", SP_INET),
	SP_CASE(read_after_shutdown_rd_returns_eof, "CLOSE-HALF-RD", SP_INET),
	SP_CASE(close_without_half_close_loses_reply, "CLOSE-FULL-LOSES-REPLY", SP_INET),
};

SP_MAIN("close", cases)
