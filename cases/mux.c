/*
 * mux.c - I/O multiplexing with select() and poll() (textbook ch. 12;
 * select(2), poll(2)).
 *
 * Each test runs over IPv4 and IPv6 loopback (tests 1, 2 and 6 on every
 * kind of stream socket in turn: TCP, TCP on the v4-mapped address in the
 * ipv6 item, and an AF_UNIX socketpair) and makes every check through
 * all four calls in turn (test 10 also through epoll and io_uring
 * POLL_ADD): select(), pselect(), poll() and ppoll() (for
 * select a descriptor is "readable"/"writable"/"exceptional" when it is in
 * the returned read/write/except set; poll's revents are compared exactly,
 * and each call's return count must agree with what it reported). It
 * checks:
 *
 *  1. MUX-READABLE-DATA   a connected socket is not readable while nothing
 *                         has arrived, readable once data arrives (also when
 *                         the data arrives while the call is blocked), and
 *                         not readable again once read.
 *  2. MUX-READABLE-EOF    after the peer's shutdown(SHUT_WR) or close() the
 *                         socket is readable, read/recv return 0, and it
 *                         stays readable.
 *  3. MUX-LISTEN-READABLE a listener is not readable with an empty accept
 *                         queue (accept gives EAGAIN), readable with a
 *                         connection pending; accept then does not block, on
 *                         a non-blocking and on a blocking listener.
 *  4. MUX-WRITABLE        writable with room in the send buffer, not writable
 *                         once non-blocking writes got EAGAIN, writable again
 *                         after the peer drained everything (and then a
 *                         blocking write returns at once).
 *  5. MUX-POLLHUP         no POLLHUP on an open or half-closed connection;
 *                         POLLHUP on each end once both have shut down
 *                         writing and received the other's FIN, and on an
 *                         AF_UNIX socket whose peer closed; POLLHUP with
 *                         POLLERR after the peer's reset (select: readable and
 *                         writable).
 *  6. MUX-POLLRDHUP       Linux: after the peer's shutdown(SHUT_WR), POLLRDHUP
 *                         requested gives POLLRDHUP|POLLIN and no POLLHUP, and
 *                         not requested is not reported; the socket still
 *                         sends (select: readable and writable).
 *  7. MUX-POLLERR-REFUSED a non-blocking connect to a closed port gives
 *                         EINPROGRESS (or ECONNREFUSED at once); then poll
 *                         reports POLLERR, select reports it writable, and
 *                         SO_ERROR is ECONNREFUSED.
 *  8. MUX-SELECT-SETS-MODIFIED select rewrites its sets: with two sockets
 *                         watched and one ready it returns 1, the ready one
 *                         set, the idle one (and every other bit) cleared, so
 *                         the unrebuilt set no longer watches the idle one.
 *                         poll's counterpart: revents written for every entry
 *                         (0 for the idle one).
 *  9. MUX-SELECT-TIMEOUT  nothing ready: the call returns 0 after at least
 *                         its timeout (measured on CLOCK_MONOTONIC; the lower
 *                         bound is the behavior, no upper bound is asserted),
 *                         with the sets cleared / revents 0; a zero timeout
 *                         returns 0 without blocking (a watchdog would
 *                         interrupt it).
 * 10. MUX-CLOSED-FD       a closed descriptor is an error, not a hang: poll
 *                         and ppoll report POLLNVAL for it (and 0 for a
 *                         valid idle one), select and pselect fail with
 *                         EBADF; epoll_ctl(EPOLL_CTL_ADD) of it fails, and
 *                         io_uring POLL_ADD on it fails or reports POLLNVAL
 *                         (which error they give is recorded).
 *
 * Platform-defined (recorded, not asserted): bytes accepted before EAGAIN,
 * revents after a local shutdown(SHUT_RDWR) alone (Linux: POLLIN|POLLHUP),
 * the full revents after a reset and after a refused connect (Linux:
 * POLLOUT|POLLERR|POLLHUP), whether select also reports the refused socket
 * readable (Linux: yes), what select leaves in its timeout after a ready
 * return (Linux with glibc: the time left; musl leaves it unchanged) and
 * after expiry (glibc: 0; musl: unchanged), pselect's timespec (const:
 * unchanged), whether the wake-up of a blocked call could be shown (needs
 * /proc to see the caller asleep), whether poll leaves pollfd.events as
 * given (gVisor ORs POLLERR|POLLHUP into it), the revents after the peer's
 * close() (Linux: POLLIN, with POLLHUP on AF_UNIX) and after its
 * shutdown(SHUT_WR), a second SO_ERROR read after the refused connect
 * (clearing is OPT-SO-ERROR-CLEARS'), POLLRDHUP reported though not asked
 * for (MUX-POLLRDHUP's item asserts it is not), and whether the accepted
 * connection's peer is the client's port (CONN-NAMES-AGREE's Must).
 *
 * Mechanisms: where a check of another ID's behavior only sets the scene
 * (the peer's FIN or reset arriving, select's zero timeout, readability
 * of a socket this item is not about, accept()), its deviation makes the
 * item broken, naming that ID, never failed.
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
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/wait.h>

/* ---- the four calls, one descriptor at a time -------------------------- */

/* The .wait values of every item here: the four calls, each check made
 * through each (sp_waitcall_name() names them in messages). */
#define MUX_CALLS SP_VALUES(SP_WAIT_SELECT, SP_WAIT_PSELECT, SP_WAIT_POLL, SP_WAIT_PPOLL)
static int is_select(int api) { return api == SP_WAIT_SELECT || api == SP_WAIT_PSELECT; }

static const char *bits_str(int api, int b)
{
	static char buf[4][128];
	static int slot;
	char *s = buf[slot++ % 4];
	static const struct { int bit; const char *p, *sel; } names[] = {
		{ POLLIN, "POLLIN", "readable" }, { POLLOUT, "POLLOUT", "writable" },
		{ POLLPRI, "POLLPRI", "exceptional" }, { POLLERR, "POLLERR", "?" },
		{ POLLHUP, "POLLHUP", "?" }, { POLLNVAL, "POLLNVAL", "?" },
		{ POLLRDHUP, "POLLRDHUP", "?" },
	};

	s[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (b & names[i].bit) {
			if (s[0])
				strcat(s, "|");
			strcat(s, is_select(api) ? names[i].sel : names[i].p);
			b &= ~names[i].bit;
		}
	if (b)
		snprintf(s + strlen(s), 32, "%s0x%x", s[0] ? "|" : "", b);
	if (!s[0])
		strcpy(s, is_select(api) ? "nothing" : "0");
	return s;
}

/*
 * Wait up to ms (0: do not block) for `events` on fd through `api`.
 * Returns what was reported, in poll terms: poll's revents, or for select
 * POLLIN/POLLOUT/POLLPRI for membership of the returned read/write/except
 * set (asked for by POLLIN, POLLOUT, POLLPRI in events). The call's return
 * count must agree with what it reported.
 * A failed call returns -1 with errno set.
 */
static int m_wait_once(int api, int fd, short events, int ms);
static int m_wait(int api, int fd, short events, int ms)
{
	/* A call that ignores its timeout fails with EINTR instead of hanging. */
	sp_watchdog(ms + sp_wait_ms());
	int r = m_wait_once(api, fd, events, ms);
	int err = errno;
	sp_watchdog(0);
	/* A zero timeout polls (MUX-SELECT-TIMEOUT): the checks of the
	 * other items use it as a mechanism. */
	if (r < 0 && err == EINTR && ms == 0) {
		char obs[64];
		snprintf(obs, sizeof(obs), "still blocked after %d ms", sp_wait_ms());
		sp_needs_at(__FILE__, __LINE__, "MUX-SELECT-TIMEOUT",
			    is_select(api) ? "select() with a zero timeout" : "poll() with a zero timeout",
			    "returns at once", obs, 0);
	}
	errno = err;
	return r;
}

static int m_wait_once(int api, int fd, short events, int ms)
{
	int r;
	short events_after;
	/* The one dispatcher of every wait call (fixtures/sp_entry.c); the
	 * checks of the call's own return are made here. */
	int got = sp_wait_seen(api, fd, events, ms, NULL, &r, &events_after);

	if (got < 0)
		return -1;
	if (is_select(api)) {
		int count = !!(got & POLLIN) + !!(got & POLLOUT) + !!(got & POLLPRI);
		/* Fewer ready than the sets still say: the sets were left as
		 * passed, not rewritten to the ready ones (at the timeout:
		 * MUX-SELECT-TIMEOUT's "sets cleared"; else
		 * MUX-SELECT-SETS-MODIFIED's), a mechanism of every check here. */
		if (r >= 0 && r < count) {
			char obs[96];
			snprintf(obs, sizeof(obs), "%d, with the sets still saying %s", r, bits_str(api, got));
			sp_needs_at(__FILE__, __LINE__, r == 0 ? "MUX-SELECT-TIMEOUT" : "MUX-SELECT-SETS-MODIFIED",
				    r == 0 ? "select() at its timeout clears the sets"
					   : "select() leaves only the ready descriptors set",
				    "a count that agrees with the sets", obs, 0);
		}
		ASSERT_TRUE(r == count, "%s returned %d but reported %s", sp_waitcall_name(api), r,
			    bits_str(api, got));
		return got;
	}
	ASSERT_TRUE(r == (got != 0), "%s returned %d with revents %s", sp_waitcall_name(api), r,
		    bits_str(api, got));
	/* events is the caller's input; no Must says the call leaves it alone
	 * (gVisor ORs POLLERR|POLLHUP into it): recorded, not asserted. */
	RECORD_ONCE("poll_events_after_call", "%s", events_after == events ? "unchanged" : "rewritten");
	/* POLLRDHUP not asked for is MUX-POLLRDHUP's business (its item
	 * asserts it is not reported): recorded and left out elsewhere. */
	if ((got & POLLRDHUP) && !(events & POLLRDHUP) && !sp_item_covers("MUX-POLLRDHUP")) {
		RECORD_ONCE("pollrdhup_unrequested", "reported");
		return got & ~POLLRDHUP;
	}
	return got;
}

/* A report that differs from the expected one in a bit another ID is
 * about, where this item uses that bit only as a mechanism: readability
 * with nothing to read or readable (MUX-READABLE-DATA, MUX-LISTEN-
 * READABLE), no readability with data or EOF there (MUX-READABLE-DATA,
 * MUX-READABLE-EOF): broken, needs that ID (its own item fails). A
 * POLLRDHUP reported though not asked for is no Must of other items:
 * recorded and left out. */
static void mux_mechanism(const char *file, int line, int api, int fd, short events, int want,
			  int *got, const char *what)
{
	char b, obs[160];
	int listening = 0;
	socklen_t ol = sizeof(listening);

	if ((*got & POLLRDHUP) && !(events & POLLRDHUP) && !sp_item_covers("MUX-POLLRDHUP")) {
		RECORD_ONCE("pollrdhup_unrequested", "reported (%s)", what);
		*got &= ~POLLRDHUP;
	}
	if ((*got & POLLIN) == (want & POLLIN))
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ol) != 0)
		listening = 0;
	snprintf(obs, sizeof(obs), "%s (%s)", bits_str(api, *got), what);
	if (listening) {
		sp_needs_at(file, line, "MUX-LISTEN-READABLE", "readability of a listener",
			    bits_str(api, want), obs, 0);
	}
	errno = 0;
	ssize_t r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	int err = errno;
	if ((*got & POLLIN) && r < 0 && (err == EAGAIN || err == EWOULDBLOCK))
		sp_needs_at(file, line, "MUX-READABLE-DATA", "readability with nothing queued",
			    bits_str(api, want), obs, 0);
	if (!(*got & POLLIN) && r == 0)
		sp_needs_at(file, line, "MUX-READABLE-EOF", "readability at the peer's FIN (a read "
			    "returns 0)", bits_str(api, want), obs, 0);
	if (!(*got & POLLIN) && r > 0)
		sp_needs_at(file, line, "MUX-READABLE-DATA", "readability with data queued",
			    bits_str(api, want), obs, 0);
}

/* The call reports exactly `want_poll` (poll, ppoll) or `want_select`
 * (select, pselect) for fd, waiting at most ms. */
#define EXPECT_MUX(api, fd, events, ms, want_poll, want_select, what)                 \
	expect_mux(__FILE__, __LINE__, api, fd, events, ms, want_poll, want_select, what)
static int expect_mux(const char *file, int line, int api, int fd, short events, int ms,
		      int want_poll, int want_select, const char *what)
{
	int want = is_select(api) ? want_select : want_poll;
	int got = m_wait(api, fd, events, ms);
	if (got < 0)
		sp_failf(file, line, "%s on %s (%s) failed: %s", sp_waitcall_name(api), sp_kind_current(), what,
			 sp_errno_name(errno));
	if (got != want)
		mux_mechanism(file, line, api, fd, events, want, &got, what);
	if (got != want)
		sp_failf(file, line, "%s on %s %s: expected %s, got %s", sp_waitcall_name(api), sp_kind_current(), what,
			 bits_str(api, want), bits_str(api, got));
	return got;
}
/* Nothing reported, without blocking. */
#define EXPECT_IDLE(api, fd, events, what) EXPECT_MUX(api, fd, events, 0, 0, 0, what)

/* ---- socket kinds -------------------------------------------------------- */

/* Stream behaviors run over every socket kind the item offers (TCP,
 * TCP on the v4-mapped address, AF_UNIX): the items declare
 * .kind = SP_EVERY_KIND and make the pair with sp_pair(); the fail line
 * names the variant, and messages the kind (sp_kind_current()). */

/* ---- 1. MUX-READABLE-DATA ------------------------------------------------ */

struct late_writer { int fd; pid_t waiter; };

/* A child that writes once the parent sleeps (blocked in the call). */
static int write_when_parent_blocked(void *p)
{
	struct late_writer *w = p;
	int saw_sleep = sp_have_proc() && sp_wait_proc_state(w->waiter, 'S');
	SP_OUT_EXACT(SP_IO_READ, w->fd, "late!", 5); /* bounded: needs TCP-WRITE-RETURNS-BUFFERED */
	return saw_sleep ? 0 : 2;
}

/* 1. Readable only once data has arrived, including while blocked. */
SP_TEST(mux_readable_only_when_data_arrives, "MUX-READABLE-DATA", SP_INET,
	.kind = SP_EVERY_KIND, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	int c, s;
	char buf[16];

	sp_pair(ctx, &c, &s);
	EXPECT_IDLE(api, s, POLLIN, "before any data");
	SP_OUT_EXACT(SP_IO_READ, c, "abc", 3);
	EXPECT_MUX(api, s, POLLIN, sp_wait_ms(), POLLIN, POLLIN, "once data arrived");
	ASSERT_EQ(3, read(s, buf, sizeof(buf)));
	EXPECT_IDLE(api, s, POLLIN, "once the data was read");

	/* The data arrives while the call is blocked: it must wake. */
	struct late_writer w = { c, getpid() };
	pid_t pid = sp_fork(write_when_parent_blocked, &w);
	EXPECT_MUX(api, s, POLLIN, sp_wait_ms(), POLLIN, POLLIN,
		   "for data that arrived while it was blocked");
	int st = sp_reap(pid);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 1, "the late writer wrote 5 bytes (it %s)",
		    sp_status_str(st));
	if (ctx->first)
		RECORD("wakeup_while_blocked", "%s", WEXITSTATUS(st) == 0
		       ? "shown (writer waited until the caller slept)"
		       : "not shown (caller's sleep not observable)");
	ASSERT_EQ(5, recv(s, buf, sizeof(buf), 0)); /* a blocking read that does not block */
	ASSERT_MEM_EQ("late!", buf, 5);
	EXPECT_IDLE(api, s, POLLIN, "once drained again");
	close(c);
	close(s);
}

/* ---- 2. MUX-READABLE-EOF ---------------------------------------------------- */

/* The peer's FIN, sent by shutdown(SHUT_WR) or close(), is a mechanism
 * here (SP_FIN_ARRIVES): CLOSE-HALF-WR-EOF's; a close() that resets
 * instead deviates from TCP-CLOSE-FLUSHES-OUTPUT's "followed by EOF". */
/* Readable at EOF: select's read set, or POLLIN from poll (POLLHUP and
 * POLLRDHUP besides are other IDs' business: recorded once). */
static void expect_readable_eof(int api, int fd, const char *what, int kind, const char *rec)
{
	if (is_select(api)) {
		EXPECT_MUX(api, fd, POLLIN, sp_wait_ms(), POLLIN, POLLIN, what);
		return;
	}
	int got = m_wait(api, fd, POLLIN, sp_wait_ms());
	ASSERT_SYS(got);
	if (!(got & POLLIN))
		EXPECT_MUX(api, fd, POLLIN, 0, POLLIN, POLLIN, what); /* says why */
	ASSERT_TRUE(!(got & ~(POLLIN | POLLHUP | POLLRDHUP)),
		    "%s on %s %s: expected POLLIN (POLLHUP allowed), got %s", sp_waitcall_name(api),
		    sp_kind_current(), what, bits_str(api, got));
	if (rec && api == SP_WAIT_POLL) {
		char key[64];
		snprintf(key, sizeof(key), "revents_%s_after_peer_%s",
			 kind == SP_KIND_UNIX ? "unix" : "tcp", rec);
		RECORD_ONCE(key, "%s", bits_str(api, got));
	}
}

/* 2. The peer's FIN (shutdown or close) makes the socket readable; read gives 0. */
SP_TEST(mux_readable_at_peer_eof, "MUX-READABLE-EOF", SP_INET,
	.kind = SP_EVERY_KIND, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	int c, s, c2, s2;
	char buf[8];

	sp_pair(ctx, &c, &s);
	sp_pair(ctx, &c2, &s2);
	EXPECT_IDLE(api, s, POLLIN, "on an open idle connection");
	ASSERT_SYS(shutdown(c, SHUT_WR));
	SP_FIN_ARRIVES(s, "CLOSE-HALF-WR-EOF", "shutdown(SHUT_WR)");
	/* Readable; POLLHUP besides is no Must of this ID (MUX-POLLHUP's
	 * and MUX-POLLRDHUP's items say when it may come): recorded. */
	expect_readable_eof(api, s, "after the peer's shutdown(SHUT_WR)", ctx->kind, "shutdown");
	SP_EXPECT_EOF_AGAIN(SP_IO_READ, s); /* the peek above saw the EOF first */
	expect_readable_eof(api, s, "still, after read returned 0", ctx->kind, NULL);
	SP_EXPECT_EOF_AGAIN(SP_IO_RECV, s); /* EOF staying EOF: CLOSE-HALF-WR-EOF's */

	/* After the peer's close() too. (A closed AF_UNIX peer ends
	 * both directions, so Linux adds POLLHUP there: that is
	 * MUX-POLLHUP's, checked in its item; recorded here.) */
	ASSERT_SYS(close(c2));
	SP_FIN_ARRIVES(s2, "TCP-CLOSE-FLUSHES-OUTPUT", "close()");
	expect_readable_eof(api, s2, "after the peer's close()", ctx->kind, "close");
	ASSERT_EQ(0, recv(s2, buf, sizeof(buf), 0));
	SP_EXPECT_EOF_AGAIN(SP_IO_READ, s2);
	close(c);
	close(s);
	close(s2);
}

/* ---- 3. MUX-LISTEN-READABLE --------------------------------------------------- */

/* 3. A listener is readable exactly when a connection waits to be accepted. */
SP_TEST(mux_listener_readable_when_connection_pending, "MUX-LISTEN-READABLE", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	int l = sp_tcp_listener(ctx, 0);

	int blocking = api == SP_WAIT_PSELECT || api == SP_WAIT_PPOLL;

	sp_set_nonblock(l, 1);
	EXPECT_IDLE(api, l, POLLIN, "for a listener with an empty accept queue");
	/* Nothing to accept: EAGAIN at once (CONN-ACCEPT-EAGAIN's Must, a
	 * mechanism here: that the queue is empty). */
	errno = 0;
	int none = BOUNDED(accept(l, NULL, NULL));
	int nerr = errno;
	if (sp_bound_expired() || none >= 0 || nerr != EAGAIN) {
		char obs[64];
		snprintf(obs, sizeof(obs), sp_bound_expired() ? "still blocked after %d ms" : "%d (%s)",
			 sp_bound_expired() ? sp_wait_ms() : none, sp_errno_name(nerr));
		sp_needs_at(__FILE__, __LINE__, "CONN-ACCEPT-EAGAIN",
			    "accept() on an empty non-blocking listener", "-1 (EAGAIN)", obs, 0);
	}
	int c = sp_tcp_connect(ctx, l);
	/* The handshake done before the listener is asked (deferred
	 * connects exist: TCP-HANDSHAKE-BEFORE-ACCEPT). */
	if (sp_wait_tcp_state(c, TCP_ESTABLISHED) != TCP_ESTABLISHED)
		sp_needs_at(__FILE__, __LINE__, "TCP-HANDSHAKE-BEFORE-ACCEPT",
			    "the client's state after connect() returned", "ESTABLISHED",
			    sp_tcp_state_name(sp_tcp_state(c)), 0);
	EXPECT_MUX(api, l, POLLIN, sp_wait_ms(), POLLIN, POLLIN, "with a connection pending");
	/* Readable means accept does not block: the non-blocking one
	 * succeeds, the blocking one returns (a watchdog bounds it). */
	sp_set_nonblock(l, !blocking);
	errno = 0;
	long m = sp_block_mark(); /* not even for a while */
	int s = MUST_RETURN(blocking ? accept(l, NULL, NULL) : accept4(l, NULL, NULL, SOCK_CLOEXEC),
			    "%s accept() on a listener %s reported readable",
			    blocking ? "a blocking" : "a non-blocking", sp_waitcall_name(api));
	int err = errno;
	/* Readable, and then an error other than "nothing to accept": accept
	 * handing out connections is TCP-LISTEN-ACCEPT-SEQUENCE's. */
	if (s < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
		char obs[48];
		snprintf(obs, sizeof(obs), "-1 (%s)", sp_errno_name(err));
		sp_needs_at(__FILE__, __LINE__, "TCP-LISTEN-ACCEPT-SEQUENCE",
			    "accept() with a connection queued", "a new socket", obs, err);
	}
	if (s < 0)
		FAIL("%s reported the %s listener readable but accept failed: %s",
		     sp_waitcall_name(api), blocking ? "blocking" : "non-blocking", sp_errno_name(err));
	ASSERT_NO_BLOCK(m, "%s accept on a listener %s reported readable",
			blocking ? "a blocking" : "a non-blocking", sp_waitcall_name(api));
	/* That it is the client's connection: names agreeing is
	 * CONN-NAMES-AGREE's Must, recorded here. */
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	ASSERT_SYS(getpeername(s, (struct sockaddr *)&peer, &len));
	RECORD_ONCE("accepted_peer_is_the_client", "%s",
		    sp_local_port(c) == sp_port(&peer) ? "yes" : "no");
	EXPECT_IDLE(api, l, POLLIN, "once the pending connection was accepted");
	close(c);
	close(s);
	close(l);
}

/* ---- 4. MUX-WRITABLE -------------------------------------------------------------- */

/* 4. Writable while the send buffer has room, not once full, again once drained. */
SP_TEST(mux_writable_until_send_buffer_full, "MUX-WRITABLE", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	enum { SMALL = 4096, LIMIT = 1 << 24 };
	int l = sp_tcp_listener(ctx, SMALL);

	int c = sp_tcp_connect(ctx, l), small = SMALL;
	int s = sp_tcp_accept(l);
	unsigned char chunk[4096];
	size_t total = 0;

	ASSERT_SYS(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
	EXPECT_MUX(api, c, POLLOUT, sp_wait_ms(), POLLOUT, POLLOUT, "with an empty send buffer");
	sp_set_nonblock(c, 1);
	/* Fill until EAGAIN; then the call must not say writable. If it
	 * does, the next write must take bytes (room was freed). */
	for (int round = 0;; round++) {
		ssize_t w;
		size_t before = total;
		while (total < LIMIT) {
			sp_pattern(chunk, sizeof(chunk), total);
			w = BOUNDED(write(c, chunk, sizeof(chunk)));
			if (sp_bound_expired()) {
				char obs[64];
				snprintf(obs, sizeof(obs), "still blocked after %d ms", sp_wait_ms());
				sp_needs_at(__FILE__, __LINE__, "TCP-WRITE-RETURNS-BUFFERED",
					    "a non-blocking write() while the peer does not read",
					    "returns at once (bytes or EAGAIN)", obs, 0);
			}
			if (w < 0 && errno == EAGAIN)
				break;
			ASSERT_SYS(w);
			total += (size_t)w;
		}
		REQUIRE(total < LIMIT, "write() to a peer that does not read ends in EAGAIN "
			"(%d bytes taken)", LIMIT);
		if (round == 0 && api == SP_WAIT_SELECT)
			RECORD("bytes_accepted_before_eagain", "%zu", total);
		int got = m_wait(api, c, POLLOUT, 0);
		ASSERT_SYS(got);
		if (!got)
			break;
		ASSERT_TRUE(round == 0 || total > before,
			    "%s: a socket reported writable accepts bytes (write gave EAGAIN at once)",
			    sp_waitcall_name(api));
		ASSERT_TRUE(round < 32, "%s: not writable once write() gave EAGAIN (still %s)",
			    sp_waitcall_name(api), bits_str(api, got));
	}
	sp_set_nonblock(c, 0);
	/* The peer drains every byte: room again. */
	unsigned char *in = malloc(total);
	/* Read in pieces: that the stream splits across reads, every byte
	 * kept, is TCP-BOUNDARY-SPLIT's (a mechanism here): bytes the
	 * sender no longer holds (TIOCOUTQ 0) that no read returned were
	 * lost by the reads. */
	size_t got = 0;
	while (got < total) {
		size_t want = total - got < 4096 ? total - got : 4096;
		if (!(sp_poll(s, POLLIN, sp_wait_ms()) & POLLIN))
			break;
		ssize_t r = MUST_RETURN(read(s, in + got, want), "read() with data queued");
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	int unsent = -1;
	if (got < total && ioctl(c, TIOCOUTQ, &unsent) == 0 && unsent == 0) {
		char exp[48], obs[64];
		snprintf(exp, sizeof(exp), "%zu bytes", total);
		snprintf(obs, sizeof(obs), "%zu, the sender holding none", got);
		sp_needs_at(__FILE__, __LINE__, "TCP-BOUNDARY-SPLIT", "the reads of what was written",
			    exp, obs, 0);
	}
	ASSERT_EQ(total, got);
	ASSERT_EQ(total, sp_pattern_check(in, total, 0));
	free(in);
	EXPECT_MUX(api, c, POLLOUT, sp_wait_ms(), POLLOUT, POLLOUT, "once the peer drained the data");
	/* Writable means a blocking write does not block (a watchdog
	 * would interrupt it). */
	ssize_t w = MUST_RETURN(write(c, "+", 1), "%s: a blocking write() to a socket reported writable",
				sp_waitcall_name(api));
	int err = errno;
	ASSERT_TRUE(w == 1, "%s: a blocking write to the writable socket returns 1 (got %zd, %s)",
		    sp_waitcall_name(api), w, w < 0 ? sp_errno_name(err) : "");
	close(c);
	close(s);
	close(l);
}

/* ---- 5. MUX-POLLHUP ------------------------------------------------------------------ */

/* The peer's shutdown(SHUT_WR) reached fd (a mechanism: the EOF read). */
static void wait_eof(int fd)
{
	SP_PEER_FIN(fd, "CLOSE-HALF-WR-EOF");
}

/* Both directions shut, nothing failed: POLLHUP (readable and writable for
 * select). A POLLERR beside it (gVisor) is no Must of this ID, which
 * names POLLERR for a reset only: recorded with the rest of revents
 * (Linux: POLLIN|POLLOUT|POLLHUP). poll with no events wakes only for a
 * hang-up or an error, so the hang-up is waited for (bounded) before the
 * call is asked: a stack may take the last ACK before it reports it. */
static void expect_hangup(int api, int fd, const char *what)
{
	const short io = POLLIN | POLLOUT;
	sp_poll(fd, 0, sp_wait_ms());
	int got = m_wait(api, fd, io, 0);
	ASSERT_SYS(got);
	if (got & POLLRDHUP) { /* not asked for: MUX-POLLRDHUP's business */
		RECORD_ONCE("pollrdhup_unrequested", "reported (both directions shut)");
		got &= ~POLLRDHUP;
	}
	if (is_select(api)) {
		EXPECT_MUX(api, fd, io, 0, POLLIN | POLLOUT | POLLHUP, POLLIN | POLLOUT, what);
		return;
	}
	int err = -1;
	socklen_t len = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	RECORD_ONCE("revents_after_clean_hangup", "%s (SO_ERROR %s)", bits_str(api, got),
		    err ? sp_errno_name(err) : "0");
	if (!(got & POLLHUP))
		FAIL("%s on tcp %s: expected POLLHUP, got %s (SO_ERROR %s)", sp_waitcall_name(api),
		     what, bits_str(api, got), err ? sp_errno_name(err) : "0");
}

/* 5. POLLHUP once both directions are shut, and with POLLERR after a reset. */
SP_TEST(mux_pollhup_when_both_directions_shut, "MUX-POLLHUP", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	const short io = POLLIN | POLLOUT;

	int c, s, c2, s2;
	struct linger lg = { 1, 0 };

	sp_tcp_pair(ctx, &c, &s);
	EXPECT_MUX(api, s, io, sp_wait_ms(), POLLOUT, POLLOUT, "on an open connection");
	ASSERT_SYS(shutdown(c, SHUT_WR));
	wait_eof(s);
	EXPECT_MUX(api, s, io, 0, POLLIN | POLLOUT, POLLIN | POLLOUT,
		   "after the peer's FIN only (half-closed, no POLLHUP)");
	ASSERT_SYS(shutdown(s, SHUT_WR));
	wait_eof(c);
	expect_hangup(api, s, "on the end that shut down last, both FINs exchanged");
	expect_hangup(api, c, "on the end that shut down first, both FINs exchanged");

	/* A reset: POLLHUP with POLLERR; for select readable and writable. */
	sp_tcp_pair(ctx, &c2, &s2);
	ASSERT_SYS(setsockopt(c2, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	/* The reset is OPT-LINGER-ZERO-RST's mechanism: a stack that drops
	 * the option closes with a FIN, and this item cannot be set up. */
	struct linger back = { 0, -1 };
	socklen_t bl = sizeof(back);
	ASSERT_SYS(getsockopt(c2, SOL_SOCKET, SO_LINGER, &back, &bl));
	if (!back.l_onoff || back.l_linger != 0)
		BROKEN_NEEDS("OPT-LINGER-ZERO-RST", "SO_LINGER {1,0} to reset the connection at "
			     "close(): it reads back {%d,%d}", back.l_onoff, back.l_linger);
	ASSERT_SYS(close(c2));
	int rst = sp_poll(s2, POLLIN, sp_wait_ms());
	REQUIRE(rst, "the peer's reset to arrive: poll(POLLIN) reported nothing within %d ms",
		sp_wait_ms());
	/* A reset ends the connection (TCP_INFO CLOSE); a FIN in its place
	 * (CLOSE_WAIT) is the option not applied. */
	int st = sp_tcp_state(s2);
	if (st != TCP_CLOSE)
		sp_needs_at(__FILE__, __LINE__, "OPT-LINGER-ZERO-RST",
			    "the peer's close() with SO_LINGER {1,0}", "a reset (state CLOSE)",
			    sp_tcp_state_name(st), 0);
	int got = m_wait(api, s2, io, 0);
	ASSERT_SYS(got);
	if (api == SP_WAIT_POLL)
		RECORD("revents_after_reset", "%s", bits_str(api, got));
	if (got & POLLRDHUP) { /* not asked for: MUX-POLLRDHUP's business */
		RECORD_ONCE("pollrdhup_unrequested", "reported (after a reset)");
		got &= ~POLLRDHUP;
	}
	if (is_select(api))
		ASSERT_TRUE(got == (POLLIN | POLLOUT),
			    "%s after the peer's reset: expected readable|writable, got %s",
			    sp_waitcall_name(api), bits_str(api, got));
	else
		ASSERT_TRUE((got & (POLLHUP | POLLERR)) == (POLLHUP | POLLERR) &&
			    !(got & ~(POLLIN | POLLOUT | POLLERR | POLLHUP)),
			    "%s after the peer's reset: expected POLLERR|POLLHUP (and at most "
			    "POLLIN|POLLOUT besides), got %s", sp_waitcall_name(api), bits_str(api, got));
	int err = 0;
	socklen_t len = sizeof(err);
	ASSERT_SYS(getsockopt(s2, SOL_SOCKET, SO_ERROR, &err, &len));
	/* EPIPE: the reset came after a FIN (the peer in CLOSE_WAIT): the
	 * close() sent a FIN first, which SO_LINGER {1,0} must not. */
	if (err == EPIPE)
		sp_needs_at(__FILE__, __LINE__, "OPT-LINGER-ZERO-RST",
			    "the peer's close() with SO_LINGER {1,0}", "a reset without a FIN",
			    "a FIN, then a reset (SO_ERROR EPIPE)", 0);
	ASSERT_ERRVAL(ECONNRESET, err);

	/* An AF_UNIX stream pair whose peer is closed: both directions
	 * are shut, so POLLHUP (the socket stays readable: EOF). */
	int u[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, u));
	ASSERT_SYS(close(u[0]));
	got = m_wait(api, u[1], io, 0);
	ASSERT_SYS(got);
	if (is_select(api))
		ASSERT_TRUE(got == (POLLIN | POLLOUT), "%s on an AF_UNIX socket whose peer closed: "
			    "expected readable|writable, got %s", sp_waitcall_name(api), bits_str(api, got));
	else {
		/* POLLHUP is the Must; the rest (Linux POLLIN|POLLOUT|POLLHUP)
		 * is recorded: POLLIN at EOF is MUX-READABLE-EOF's. */
		RECORD_ONCE("revents_unix_peer_closed", "%s", bits_str(api, got));
		ASSERT_TRUE(got & POLLHUP, "%s on an AF_UNIX socket whose peer closed: expected "
			    "POLLHUP, got %s", sp_waitcall_name(api), bits_str(api, got));
	}
	close(u[1]);
	close(c);
	close(s);
	close(s2);
	/* Record: only the local end shut both ways, nothing from the peer. */
	int c3, s3;
	sp_tcp_pair(ctx, &c3, &s3);
	ASSERT_SYS(shutdown(s3, SHUT_RDWR));
	RECORD("revents_after_local_shut_rdwr", "%s", bits_str(SP_WAIT_POLL, m_wait(SP_WAIT_POLL, s3, POLLIN, 0)));
	close(c3);
	close(s3);
}

/* ---- 6. MUX-POLLRDHUP ------------------------------------------------------------------ */

/* 6. Linux: the peer's half-close is POLLRDHUP|POLLIN, not POLLHUP. */
SP_TEST(mux_pollrdhup_on_peer_half_close, "MUX-POLLRDHUP", SP_INET,
	.kind = SP_EVERY_KIND, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	int c, s;
	char buf[8];
	const short rd = POLLIN | POLLRDHUP | POLLOUT;

	sp_pair(ctx, &c, &s);
	EXPECT_MUX(api, s, rd, 0, POLLOUT, POLLOUT, "on an open connection");
	ASSERT_SYS(shutdown(c, SHUT_WR));
	SP_FIN_ARRIVES(s, "CLOSE-HALF-WR-EOF", "shutdown(SHUT_WR)");
	if (!is_select(api)) {
		int got = m_wait(api, s, rd, 0);
		ASSERT_SYS(got);
		if (got == (POLLIN | POLLOUT))
			UNSUPPORTED("POLLRDHUP (%s reports the half-close as %s only)",
				    sp_waitcall_name(api), bits_str(api, got));
	}
	EXPECT_MUX(api, s, rd, 0, POLLIN | POLLOUT | POLLRDHUP, POLLIN | POLLOUT,
		   "after the peer's shutdown(SHUT_WR), POLLRDHUP requested");
	EXPECT_MUX(api, s, POLLIN, 0, POLLIN, POLLIN,
		   "after the peer's shutdown(SHUT_WR), POLLRDHUP not requested");
	SP_EXPECT_EOF_AGAIN(SP_IO_READ, s); /* the peek above saw the EOF first */
	/* Only one direction is shut: the socket still sends, and the
	 * half-closed peer still receives (CLOSE-HALF-WR-EOF's Must, and
	 * the socketpair's both ways, UNIX-SOCKETPAIR's: mechanisms here). */
	const char *way = ctx->kind == SP_KIND_UNIX ? "UNIX-SOCKETPAIR" : "CLOSE-HALF-WR-EOF";
	errno = 0;
	ssize_t w = BOUNDED(send(s, "reply", 5, MSG_NOSIGNAL));
	int werr = errno;
	if (sp_bound_expired())
		sp_needs_at(__FILE__, __LINE__, "TCP-WRITE-RETURNS-BUFFERED", "send() of 5 bytes",
			    "returns at once", "still blocked", 0);
	if (w != 5) {
		char obs[48];
		snprintf(obs, sizeof(obs), "%zd (%s)", w, w < 0 ? sp_errno_name(werr) : "short");
		sp_needs_at(__FILE__, __LINE__, way, "send() back to the half-closed peer", "5", obs, 0);
	}
	if (sp_read_all(c, buf, 5) != 5)
		sp_needs_at(__FILE__, __LINE__, way, "the half-closed peer reads the reply",
			    "5 bytes", "fewer", 0);
	ASSERT_MEM_EQ("reply", buf, 5);
	close(c);
	close(s);
}

/* ---- 7. MUX-POLLERR-REFUSED ------------------------------------------------------------ */

/* 7. A refused non-blocking connect: POLLERR, writable for select, SO_ERROR once. */
SP_TEST(mux_pollerr_after_refused_connect, "MUX-POLLERR-REFUSED", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	/* A port that is bound but not listening: connects to it are refused. */
	int closed = sp_socket(ctx, SOCK_STREAM);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, 0);
	ASSERT_SYS(bind(closed, (struct sockaddr *)&ss, len));
	len = sp_loopback(ctx, &ss, sp_local_port(closed));

	int fd = sp_socket(ctx, SOCK_STREAM), err = 0;
	socklen_t elen = sizeof(err);

	sp_set_nonblock(fd, 1);
	errno = 0;
	int r = connect(fd, (struct sockaddr *)&ss, len);
	int cerr = errno;
	if (api == SP_WAIT_SELECT)
		RECORD("nonblocking_connect_to_closed_port", "%s", r == 0 ? "0" : sp_errno_name(cerr));
	ASSERT_TRUE(r < 0 && (cerr == EINPROGRESS || cerr == ECONNREFUSED),
		    "connect() gives EINPROGRESS or ECONNREFUSED (got %d, %s)", r,
		    sp_errno_name(cerr));
	if (cerr == ECONNREFUSED) {     /* refused at once: nothing pending */
		close(fd);
		close(closed);
		return;
	}
	if (is_select(api)) {
		int got = m_wait(api, fd, POLLIN | POLLOUT, sp_wait_ms());
		ASSERT_SYS(got);
		ASSERT_TRUE(got & POLLOUT, "%s reports the refused socket writable (got %s)",
			    sp_waitcall_name(api), bits_str(api, got));
		if (api == SP_WAIT_SELECT)
			RECORD("select_refused_also_readable", "%s", got & POLLIN ? "yes" : "no");
	} else {
		int got = m_wait(api, fd, POLLOUT, sp_wait_ms());
		ASSERT_SYS(got);
		if (api == SP_WAIT_POLL)
			RECORD("revents_after_refused_connect", "%s", bits_str(api, got));
		/* POLLRDHUP, not asked for: MUX-POLLRDHUP's business, recorded. */
		if (got & POLLRDHUP) {
			RECORD_ONCE("pollrdhup_unrequested", "reported (refused connect)");
			got &= ~POLLRDHUP;
		}
		ASSERT_TRUE((got & POLLERR) && !(got & ~(POLLOUT | POLLERR | POLLHUP)),
			    "%s reports POLLERR for the refused connect (and at most POLLOUT|POLLHUP "
			    "besides), got %s", sp_waitcall_name(api), bits_str(api, got));
	}
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen));
	ASSERT_TRUE(err == ECONNREFUSED, "%s: SO_ERROR after the refused connect: expected "
		    "ECONNREFUSED, observed %s", sp_waitcall_name(api), err ? sp_errno_name(err) : "0");
	/* That it then reads 0 is OPT-SO-ERROR-CLEARS' Must: recorded here. */
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen));
	RECORD_ONCE("so_error_second_read", "%s", err ? sp_errno_name(err) : "0");
	close(fd);
	close(closed);
}

/* An idle socket's revents: POLLIN there with nothing to read is
 * MUX-READABLE-DATA's deviation, a mechanism of the items below (their
 * idle socket is the one that must not be reported). */
static void idle_not_readable(int fd, int revents, const char *what)
{
	char b, obs[96];
	if (!(revents & POLLIN))
		return;
	errno = 0;
	if (recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		snprintf(obs, sizeof(obs), "%s (%s)", bits_str(SP_WAIT_POLL, revents), what);
		sp_needs_at(__FILE__, __LINE__, "MUX-READABLE-DATA",
			    "poll() on a connected socket with nothing queued", "no POLLIN", obs, 0);
	}
}

/* ---- 8. MUX-SELECT-SETS-MODIFIED -------------------------------------------------------- */

/* Is fd the only descriptor below nfds in the set (-1: none is)? */
static int only_bit(const fd_set *set, int nfds, int fd)
{
	for (int i = 0; i < nfds; i++)
		if (!!FD_ISSET(i, set) != (i == fd))
			return 0;
	return 1;
}

/* 8. select rewrites its sets to the ready descriptors; poll writes revents. */
SP_TEST(mux_select_rewrites_fd_sets, "MUX-SELECT-SETS-MODIFIED", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	int c1, s1, c2, s2;
	char buf[8];

	sp_tcp_pair(ctx, &c1, &s1);
	sp_tcp_pair(ctx, &c2, &s2);
	SP_OUT_EXACT(SP_IO_READ, c1, "x", 1);
	ASSERT_EQ(1, sp_wait_inq(s1, 1));
	int nfds = (s1 > s2 ? s1 : s2) + 1;
	/* Two descriptors in one call: made here, not by sp_wait_on (one
	 * descriptor), and noted for the table of entry points. */
	sp_path_used(SP_PATH_WAIT, api);

	if (is_select(api)) {
		fd_set rs;
		FD_ZERO(&rs);
		FD_SET(s1, &rs);
		FD_SET(s2, &rs);
		struct timeval tv = { 2, 0 };
		struct timespec ts = { 2, 0 };
		int r = api == SP_WAIT_SELECT ? select(nfds, &rs, NULL, NULL, &tv)
					      : pselect(nfds, &rs, NULL, NULL, &ts, NULL);
		ASSERT_TRUE(r == 1, "%s with one of two sockets ready returns 1 (got %d)", sp_waitcall_name(api), r);
		ASSERT_TRUE(FD_ISSET(s1, &rs), "%s leaves the ready socket set", sp_waitcall_name(api));
		ASSERT_TRUE(!FD_ISSET(s2, &rs), "%s clears the idle socket from the set", sp_waitcall_name(api));
		ASSERT_TRUE(only_bit(&rs, nfds, s1), "%s: only the ready socket is set", sp_waitcall_name(api));
		if (api == SP_WAIT_SELECT)
			RECORD("select_timeout_after_ready_return", "%s",
			       tv.tv_sec == 2 && tv.tv_usec == 0 ? "unchanged" :
			       tv.tv_sec < 2 ? "time left" : "other");
		else
			RECORD("pselect_timespec_after_return", "%s",
			       ts.tv_sec == 2 && ts.tv_nsec == 0 ? "unchanged" : "changed");

		/* The rewritten set, reused without rebuilding, no longer
		 * watches s2 even when s2 has data: the reason to copy the
		 * set before each call. */
		ASSERT_EQ(1, read(s1, buf, sizeof(buf)));
		SP_OUT_EXACT(SP_IO_READ, c2, "y", 1);
		ASSERT_EQ(1, sp_wait_inq(s2, 1));
		struct timeval zero = { 0, 0 };
		struct timespec zts = { 0, 0 };
		sp_watchdog(sp_wait_ms());
		r = api == SP_WAIT_SELECT ? select(nfds, &rs, NULL, NULL, &zero)
					  : pselect(nfds, &rs, NULL, NULL, &zts, NULL);
		int zerr = errno;
		sp_watchdog(0);
		/* A zero timeout polls, and at the timeout the sets are
		 * cleared: MUX-SELECT-TIMEOUT's Musts, mechanisms here. */
		if (r < 0 && zerr == EINTR)
			sp_needs_at(__FILE__, __LINE__, "MUX-SELECT-TIMEOUT", "select() with a zero timeout",
				    "returns at once", "still blocked", 0);
		if (r == 0 && !only_bit(&rs, nfds, -1))
			sp_needs_at(__FILE__, __LINE__, "MUX-SELECT-TIMEOUT", "select() returning 0",
				    "the sets cleared", "bits still set", 0);
		ASSERT_TRUE(r == 0, "%s on the unrebuilt set (s2 ready but no longer in it) returns 0 "
			    "(got %d)", sp_waitcall_name(api), r);
		ASSERT_TRUE(only_bit(&rs, nfds, -1), "%s on the unrebuilt set: nothing set",
			    sp_waitcall_name(api));
	} else {
		/* poll and ppoll: revents written for every entry. */
		struct pollfd p[2] = {
			{ .fd = s1, .events = POLLIN, .revents = (short)0x7fff },
			{ .fd = s2, .events = POLLIN, .revents = (short)0x7fff },
		};
		struct timespec ts = { 2, 0 };
		int r = api == SP_WAIT_POLL ? poll(p, 2, 2000) : ppoll(p, 2, &ts, NULL);
		idle_not_readable(s2, p[1].revents, "the idle socket");
		ASSERT_TRUE(r == 1, "%s with one of two sockets ready returns 1 (got %d)", sp_waitcall_name(api), r);
		ASSERT_TRUE(p[0].revents == POLLIN, "%s: revents of the ready socket is POLLIN (got %s)",
			    sp_waitcall_name(api), bits_str(api, p[0].revents));
		ASSERT_TRUE(p[1].revents == 0, "%s: revents of the idle socket is 0 (got %s)",
			    sp_waitcall_name(api), bits_str(api, p[1].revents));
		/* events is input only; no Must says it is left alone. */
		RECORD_ONCE("poll_events_after_call", "%s",
			    p[0].events == POLLIN && p[1].events == POLLIN ? "unchanged" : "rewritten");
	}
	close(c1);
	close(s1);
	close(c2);
	close(s2);
}

/* ---- 9. MUX-SELECT-TIMEOUT ------------------------------------------------------------- */

static long long now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* One call through api on an idle socket, timeout ms; returns its result,
 * the elapsed time in *us, and whether the socket is still marked. */
static int idle_call(int api, int fd, int ms, long long *us, int *marked, long *left_us)
{
	fd_set rs;
	/* revents starts at 0: that poll writes it for every entry is
	 * MUX-SELECT-SETS-MODIFIED's poll counterpart, not this item's. */
	struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	int r;

	FD_ZERO(&rs);
	FD_SET(fd, &rs);
	/* The call's own timing and what select leaves in its timeval:
	 * made here, not by sp_wait_on, and noted for the table. */
	sp_path_used(SP_PATH_WAIT, api);
	long long t0 = now_us();
	switch (api) {
	case SP_WAIT_SELECT: r = select(fd + 1, &rs, NULL, NULL, &tv); break;
	case SP_WAIT_PSELECT: r = pselect(fd + 1, &rs, NULL, NULL, &ts, NULL); break;
	case SP_WAIT_POLL: r = poll(&p, 1, ms); break;
	default: r = ppoll(&p, 1, &ts, NULL); break;
	}
	int err = errno;
	*us = now_us() - t0;
	*marked = is_select(api) ? FD_ISSET(fd, &rs) != 0 : p.revents != 0;
	if (!is_select(api))
		idle_not_readable(fd, p.revents, "the idle socket at the timeout");
	*left_us = api == SP_WAIT_SELECT ? tv.tv_sec * 1000000L + tv.tv_usec : -1;
	errno = err;
	return r;
}

/* 9. Nothing ready: 0 after at least the timeout, sets cleared; 0 polls. */
SP_TEST(mux_select_timeout_returns_zero, "MUX-SELECT-TIMEOUT", SP_INET, .wait = MUX_CALLS)
{
	const int api = ctx->wait;
	enum { TIMEOUT_MS = 3 };
	int c, s;

	sp_tcp_pair(ctx, &c, &s);
	long long us;
	int marked;
	long left;

	errno = 0;
	int r = idle_call(api, s, TIMEOUT_MS, &us, &marked, &left);
	ASSERT_TRUE(r == 0, "%s on an idle socket returns 0 at its timeout (got %d, %s)",
		    sp_waitcall_name(api), r, r < 0 ? sp_errno_name(errno) : "");
	ASSERT_TRUE(!marked, "%s leaves nothing marked after the timeout (%s)", sp_waitcall_name(api),
		    is_select(api) ? "the read set is cleared" : "revents 0");
	ASSERT_TRUE(us >= TIMEOUT_MS * 1000, "%s returned after at least %d ms (took %lld us)",
		    sp_waitcall_name(api), TIMEOUT_MS, us);
	if (api == SP_WAIT_SELECT)
		RECORD("select_timeval_after_timeout_us", "%ld", left);

	/* A zero timeout polls: no wait (a watchdog interrupts a wait). */
	sp_watchdog(sp_wait_ms());
	errno = 0;
	long m = sp_block_mark(); /* and a short wait (a timer tick) is seen */
	r = idle_call(api, s, 0, &us, &marked, &left);
	int err = errno;
	sp_watchdog(0);
	ASSERT_NO_BLOCK(m, "%s with a zero timeout on an idle socket", sp_waitcall_name(api));
	ASSERT_TRUE(r == 0, "%s with a zero timeout returns 0 at once (got %d, %s)",
		    sp_waitcall_name(api), r, r < 0 ? sp_errno_name(err) : "");
	ASSERT_TRUE(!marked, "%s with a zero timeout leaves nothing marked", sp_waitcall_name(api));
	close(c);
	close(s);
}

/* ---- 10. MUX-CLOSED-FD ----------------------------------------------------------------- */

/* The wait calls of item 10: the four, epoll (its descriptors are
 * watched through epoll_ctl, which epoll_wait, epoll_pwait and
 * epoll_pwait2 share: one value) and io_uring POLL_ADD (last: a process
 * that has used io_uring can see a later wait end with EINTR). */
#define CLOSED_FD_CALLS SP_VALUES(SP_WAIT_SELECT, SP_WAIT_PSELECT, SP_WAIT_POLL, SP_WAIT_PPOLL, \
				  SP_WAIT_EPOLL, SP_WAIT_URING_POLL)

/* 10. A closed descriptor: POLLNVAL from poll, EBADF from select, no
 * hang; through epoll and io_uring POLL_ADD "an error, not a hang" (the
 * catalogue's words): which error is recorded. */
SP_TEST(mux_closed_fd_is_an_error, "MUX-CLOSED-FD", SP_INET, .wait = CLOSED_FD_CALLS)
{
	const int api = ctx->wait;
	int c, s;

	sp_tcp_pair(ctx, &c, &s);
	/* The epoll set and the thread's io_uring are made before the
	 * descriptor is closed: made later, they would take its number. */
	int ep = api == SP_WAIT_EPOLL ? (int)ASSERT_SYS(epoll_create1(EPOLL_CLOEXEC)) : -1;
	if (api == SP_WAIT_URING_POLL)
		ASSERT_SYS(sp_uring_poll(s, POLLIN, 0));
	int bad = sp_socket(ctx, SOCK_STREAM);
	ASSERT_SYS(close(bad));
	errno = 0;
	REQUIRE(fcntl(bad, F_GETFD) == -1 && errno == EBADF, "descriptor %d stays closed", bad);
	int nfds = (bad > s ? bad : s) + 1;

	/* Two descriptors in one call where the call takes several: made
	 * here, not by sp_wait_on, and noted for the table. */
	sp_path_used(SP_PATH_WAIT, api);
	sp_watchdog(2 * sp_wait_ms());
	if (is_select(api)) {
		fd_set rs, ws;
		struct timeval tv = { 2, 0 };
		struct timespec ts = { 2, 0 };
		FD_ZERO(&rs);
		FD_SET(bad, &rs);
		FD_SET(s, &rs);
		if (api == SP_WAIT_SELECT)
			ASSERT_ERRNO(select(nfds, &rs, NULL, NULL, &tv), EBADF);
		else
			ASSERT_ERRNO(pselect(nfds, &rs, NULL, NULL, &ts, NULL), EBADF);
		FD_ZERO(&ws);
		FD_SET(bad, &ws);
		tv.tv_sec = 2;
		if (api == SP_WAIT_SELECT)
			ASSERT_ERRNO(select(nfds, NULL, &ws, NULL, &tv), EBADF);
		else
			ASSERT_ERRNO(pselect(nfds, NULL, &ws, NULL, &ts, NULL), EBADF);
	} else if (api == SP_WAIT_POLL || api == SP_WAIT_PPOLL) {
		struct pollfd p[2] = {
			{ .fd = bad, .events = POLLIN },
			{ .fd = s, .events = POLLIN },
		};
		struct timespec ts = { 2, 0 };
		int r = api == SP_WAIT_POLL ? poll(p, 2, sp_wait_ms()) : ppoll(p, 2, &ts, NULL);
		idle_not_readable(s, p[1].revents, "the valid idle socket");
		ASSERT_TRUE(r == 1, "%s with a closed descriptor returns 1 (got %d, %s)",
			    sp_waitcall_name(api), r, r < 0 ? sp_errno_name(errno) : "");
		ASSERT_TRUE(p[0].revents == POLLNVAL, "%s: revents of the closed fd is POLLNVAL "
			    "(got %s)", sp_waitcall_name(api), bits_str(api, p[0].revents));
		ASSERT_TRUE(p[1].revents == 0, "%s: revents of the idle socket is 0 (got %s)",
			    sp_waitcall_name(api), bits_str(api, p[1].revents));
	} else if (api == SP_WAIT_EPOLL) {
		/* Watching it is epoll_ctl(EPOLL_CTL_ADD): an error (Linux
		 * EBADF, recorded); the set then holds only the idle socket. */
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = bad }, out[2];
		errno = 0;
		int r = epoll_ctl(ep, EPOLL_CTL_ADD, bad, &ev);
		int err = errno;
		RECORD_ONCE("epoll_ctl_add_closed_fd", "%s", r < 0 ? sp_errno_name(err) : "0 (taken)");
		ASSERT_TRUE(r == -1, "epoll_ctl(EPOLL_CTL_ADD) of a closed descriptor is an error "
			    "(got %d)", r);
		ev.data.fd = s;
		ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev));
		int n = sp_epoll_wait_through(api, ep, out, 2, 0, NULL);
		ASSERT_SYS(n);
		for (int i = 0; i < n; i++) {
			ASSERT_TRUE(out[i].data.fd == s, "%s reports only descriptors the set holds "
				    "(got data %d)", sp_waitcall_name(api), out[i].data.fd);
			idle_not_readable(s, (int)(out[i].events & 0xffff), "the valid idle socket");
		}
		close(ep);
	} else {
		/* io_uring POLL_ADD: the request fails (Linux -EBADF) or
		 * reports POLLNVAL, within its bound (a request that waits
		 * is the hang the catalogue rules out). */
		errno = 0;
		int r = sp_uring_poll(bad, POLLIN, sp_wait_ms());
		int err = errno;
		RECORD_ONCE("uring_poll_add_closed_fd", "%s", r < 0 ? sp_errno_name(err) : bits_str(api, r));
		ASSERT_TRUE(r < 0 ? err != EINTR : (r & POLLNVAL) != 0,
			    "io_uring POLL_ADD on a closed descriptor is an error (a failed request or "
			    "POLLNVAL), not a wait: got %s", r < 0 ? sp_errno_name(err) :
			    r == 0 ? "no completion within the timeout" : bits_str(api, r));
	}
	sp_watchdog(0);
	close(c);
	close(s);
}

SP_MAIN("mux")
