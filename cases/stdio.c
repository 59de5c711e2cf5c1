/*
 * stdio.c - sockets under standard I/O (textbook ch. 15-16; fdopen(3),
 * setvbuf(3), fflush(3), fclose(3), dup(2), shutdown(2)).
 *
 * Each test runs over IPv4 and IPv6 loopback on a connected TCP pair. The
 * stream side writes with fputs, fprintf, fwrite and fputc and reads with
 * fgets, getline and fread; the raw side uses read/recv/write so the peer
 * sees exactly what reached the socket. It checks:
 *
 *  1. STDIO-FDOPEN               fdopen(sock, "w") / fdopen(sock, "r") give
 *                                working streams both ways: lines written and
 *                                flushed are read whole by fgets/getline, also
 *                                when a line reaches the reader in two pieces
 *                                while it is blocked in fgets.
 *  2. STDIO-BUFFERED-UNTIL-FLUSH output on a socket stream stays in the
 *                                stream until fflush: a byte sent directly on
 *                                the descriptor after fputs/fprintf/fwrite/
 *                                fputc overtakes it; fflush then delivers it.
 *  3. STDIO-FCLOSE-CLOSES-FD     fclose of a write stream flushes it and closes
 *                                the descriptor (F_GETFD: EBADF); the peer
 *                                reads the data, then EOF. The same for a read
 *                                stream: its peer reads EOF.
 *  4. STDIO-DUP-TWO-STREAMS      a read stream on the socket and a write stream
 *                                on dup() of it (different descriptors) work
 *                                side by side: lines go out through one and
 *                                the peer's echo comes back through the other.
 *  5. STDIO-FCLOSE-NO-HALF-CLOSE fclose of the write stream while the read
 *                                stream's descriptor is open sends no FIN (the
 *                                peer gets the data, then EAGAIN, and the
 *                                socket still sends); shutdown(fileno(read
 *                                stream), SHUT_WR) does: the peer reads EOF and
 *                                its reply still comes in through the read
 *                                stream.
 *
 * "Nothing arrived yet" is shown by ordering (a byte sent directly after
 * the buffered line arrives first), never by waiting for nothing. Wire
 * (where the item has its own network namespace; else skipped with the
 * reason): fclose sends the flushed data then a FIN (test 3); fclose of the
 * write stream sends no FIN, the later shutdown does (test 5).
 *
 * Platform-defined (recorded, not asserted): whether a newline alone
 * flushes a socket stream (glibc, musl: no, fully buffered) and BUFSIZ.
 */
#define _GNU_SOURCE
#include "sp.h"

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
#include <sys/wait.h>

/* fdopen() of a connected socket: STDIO-FDOPEN's behavior, a mechanism
 * for the other items (broken, needs it, where it fails). */
static FILE *stream(int fd, const char *mode)
{
	FILE *f = fdopen(fd, mode);
	if (!f)
		BROKEN_NEEDS("STDIO-FDOPEN", "fdopen(%d, \"%s\") on a connected socket failed: %s",
			     fd, mode, sp_errno_name(errno));
	return f;
}

/* dup() of a connected socket is the same connection (STDIO-DUP-TWO-
 * STREAMS' behavior, a mechanism for the other items). */
static int dup_connection(int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	int d = (int)ASSERT_SYS(dup(fd));

	if (getpeername(d, (struct sockaddr *)&peer, &len) != 0)
		BROKEN_NEEDS("STDIO-DUP-TWO-STREAMS", "dup() of a connected socket gives a socket "
			     "that is not connected (getpeername: %s)", sp_errno_name(errno));
	return d;
}

/* fflush() sends what the stream holds: STDIO-BUFFERED-UNTIL-FLUSH's
 * behavior, a mechanism for the other items. The peer then has the n
 * bytes queued (bounded wait). */
static void flush_to(FILE *f, int peer, int n)
{
	ASSERT_EQ(0, fflush(f));
	int inq = sp_wait_inq(peer, n);
	if (inq < n)
		BROKEN_NEEDS("STDIO-BUFFERED-UNTIL-FLUSH", "fflush() returned 0 but the peer has %d "
			     "of the %d bytes %d ms later", inq, n, sp_wait_ms());
}

/* Write failures must come back as errors, not kill the probe. */
static void no_sigpipe(void)
{
	REQUIRE(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "SIGPIPE ignored: signal(SIGPIPE, SIG_IGN) "
		"failed with %s", sp_errno_name(errno));
}

/* Blocking stream reads, bounded: a watchdog interrupts a read() that
 * would never return (the stream then reports an error, and the check
 * fails instead of hanging). */
static char *fgets_bounded(char *buf, int n, FILE *f)
{
	return MUST_RETURN(fgets(buf, n, f), "fgets() on a socket stream with a line sent");
}

static ssize_t getline_bounded(char **line, size_t *cap, FILE *f)
{
	return MUST_RETURN(getline(line, cap, f), "getline() on a socket stream with a line sent");
}

static size_t fread_bounded(void *buf, size_t size, size_t n, FILE *f)
{
	return MUST_RETURN(fread(buf, size, n, f), "fread() on a socket stream with the data sent");
}

/* Read exactly n raw bytes at the peer and compare them. */
#define EXPECT_RAW(fd, text) expect_raw(__FILE__, __LINE__, fd, text)
static void expect_raw(const char *file, int line, int fd, const char *text)
{
	size_t n = strlen(text);
	char buf[256] = "";
	size_t got = sp_read_all(fd, buf, n);
	if (got != n || memcmp(buf, text, n) != 0)
		sp_failf(file, line, "the peer reads \"%s\" (got %zu bytes: \"%.*s\")", text, got,
			 (int)got, buf);
}

/* The peer has nothing more to read right now (and no EOF). */
static void expect_nothing_more(int fd, const char *why)
{
	char b;
	errno = 0;
	ssize_t r = recv(fd, &b, 1, MSG_DONTWAIT);
	int err = errno;
	ASSERT_TRUE(r < 0 && (err == EAGAIN || err == EWOULDBLOCK),
		    "nothing more to read %s: recv gives EAGAIN (got %zd, %s)", why, r,
		    r < 0 ? sp_errno_name(err) : r == 0 ? "EOF" : "data");
}

/* What the peer's next read gives once the other side has closed or shut
 * down (bounded): 0 at EOF, -1 with errno (EAGAIN: nothing came), or 1 for
 * data. The wait is a poll(), but a read that does not wait decides:
 * readiness at EOF is MUX-READABLE-EOF's behavior, not this item's. */
static ssize_t after_end(int fd, int *err)
{
	char b;

	sp_poll(fd, POLLIN, sp_wait_ms());
	sp_set_nonblock(fd, 1);
	errno = 0;
	ssize_t r = read(fd, &b, 1);
	*err = errno;
	sp_set_nonblock(fd, 0);
	return r;
}

static const char *end_str(ssize_t r, int err)
{
	return r == 0 ? "EOF" : r > 0 ? "data" : err == EAGAIN ? "nothing (EAGAIN) within the bound" :
	       sp_errno_name(err);
}

/* ---- 1. STDIO-FDOPEN ------------------------------------------------------- */

struct line_reader { FILE *in; struct sp_barrier started; };

/* Child: fgets one line (it arrives in two pieces) and check it. */
static int read_split_line(void *p)
{
	struct line_reader *r = p;
	char line[64];

	sp_barrier_pass(&r->started);
	if (!fgets_bounded(line, sizeof(line), r->in))
		return 2;
	return strcmp(line, "first half, second half\n") == 0 ? 0 : 1;
}

/* The reader has taken every byte queued so far and sleeps (in fgets),
 * or has already ended (fgets returned without the newline, perhaps
 * before the first piece came: the status says which). */
struct half_taken { int fd; pid_t reader; };
static int half_line_taken(void *p)
{
	struct half_taken *h = p;
	siginfo_t si = { 0 };
	if (waitid(P_PID, (id_t)h->reader, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid)
		return 1;
	int inq = -1;
	ASSERT_SYS(ioctl(h->fd, FIONREAD, &inq));
	if (!sp_have_proc())
		return inq == 0; /* the first piece left the socket: the reader has it */
	char st = sp_proc_state(h->reader);
	return inq == 0 && (st == 'S' || st == 'Z'); /* Z: fgets returned early */
}

/* 1. fdopen'd socket streams carry whole lines, both ways. */
SP_TEST(stdio_fdopen_streams_carry_lines, "STDIO-FDOPEN", SP_INET)
{
	int c, s;
	char line[64], *gl = NULL;
	size_t cap = 0;

	no_sigpipe();
	sp_tcp_pair(ctx, &c, &s);
	/* The pieces of the split line go out at once, not held by Nagle
	 * until a delayed ACK (that would only make the test slow). */
	int one = 1;
	ASSERT_SYS(setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)));
	FILE *cw = stream(c, "w"), *sr = stream(s, "r");
	FILE *sw = stream(dup_connection(s), "w"), *cr = stream(dup_connection(c), "r");

	ASSERT_TRUE(fputs("hello, stdio\n", cw) >= 0, "fputs() on the client's write stream: "
		    "expected success, observed EOF (%s)", sp_errno_name(errno));
	ASSERT_TRUE(fprintf(cw, "line %d of %s\n", 2, "three") > 0, "fprintf() on the client's "
		    "write stream: expected 16, observed a failure (%s)", sp_errno_name(errno));
	ASSERT_EQ(1, fwrite("raw bytes\n", 10, 1, cw));
	flush_to(cw, s, 13 + 16 + 10);
	ASSERT_TRUE(fgets_bounded(line, sizeof(line), sr) != NULL, "fgets() of the first line: "
		    "expected \"hello, stdio\\n\", observed NULL (%s)",
		    feof(sr) ? "EOF" : sp_errno_name(errno));
	ASSERT_STR("hello, stdio\n", line);
	ASSERT_EQ(16, getline_bounded(&gl, &cap, sr));
	ASSERT_STR("line 2 of three\n", gl);
	ASSERT_EQ(10, fread_bounded(line, 1, 10, sr));
	ASSERT_MEM_EQ("raw bytes\n", line, 10);
	free(gl);

	/* The other way round, on the other socket. */
	ASSERT_TRUE(fputs("and back\n", sw) >= 0, "fputs() on the server's write stream: "
		    "expected success, observed EOF (%s)", sp_errno_name(errno));
	flush_to(sw, c, 9);
	ASSERT_TRUE(fgets_bounded(line, sizeof(line), cr) != NULL, "fgets() on the client's read "
		    "stream: expected \"and back\\n\", observed NULL (%s)",
		    feof(cr) ? "EOF" : sp_errno_name(errno));
	ASSERT_STR("and back\n", line);

	/* A line that arrives in two pieces while the reader is blocked in
	 * fgets: fgets keeps reading until the newline. */
	struct line_reader r = { .in = sr };
	sp_barrier_init(&r.started);
	pid_t pid = sp_fork(read_split_line, &r);
	sp_barrier_wait(&r.started);
	ASSERT_TRUE(fputs("first half, ", cw) >= 0 && fflush(cw) == 0, "fputs() and fflush() of "
		    "the first piece: expected success, observed a failure (%s)",
		    sp_errno_name(errno));
	struct half_taken h = { s, pid };
	/* Without /proc only the socket shows it: the first piece was read. */
	REQUIRE(sp_wait_until(half_line_taken, &h, sp_wait_ms()), "the reader asleep in fgets() "
		"with the first piece taken: %d ms after it was sent, the piece is still queued "
		"or the reader is not asleep", sp_wait_ms());
	ASSERT_TRUE(fputs("second half\n", cw) >= 0 && fflush(cw) == 0, "fputs() and fflush() of "
		    "the second piece: expected success, observed a failure (%s)",
		    sp_errno_name(errno));
	int st = sp_reap(pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("fgets() of a line sent in two pieces: expected the whole line \"first half, "
		     "second half\\n\", observed %s (the reader %s)",
		     WIFEXITED(st) && WEXITSTATUS(st) == 1 ? "a different line" :
		     WIFEXITED(st) && WEXITSTATUS(st) == 2 ? "NULL" : "no line", sp_status_str(st));
	fclose(cw);
	fclose(sr);
	fclose(sw);
	fclose(cr);
}

/* ---- 2. STDIO-BUFFERED-UNTIL-FLUSH ------------------------------------------ */

/* 2. A socket stream holds its output until fflush. */
SP_TEST(stdio_socket_stream_buffers_until_fflush, "STDIO-BUFFERED-UNTIL-FLUSH", SP_INET)
{
	int c, s;

	no_sigpipe();
	sp_tcp_pair(ctx, &c, &s);
	FILE *w = stream(c, "w");

	/* Each writing call leaves its bytes in the stream: a byte sent
	 * directly on the descriptor afterwards reaches the peer first. */
	ASSERT_TRUE(fputs("abc", w) >= 0, "fputs() on the socket stream: expected success, "
		    "observed EOF (%s)", sp_errno_name(errno));
	ASSERT_EQ(3, fprintf(w, "%d", 123));
	ASSERT_EQ(1, fwrite("xyz", 3, 1, w));
	ASSERT_EQ('!', fputc('!', w));
	ASSERT_EQ(1, send(c, "#", 1, 0));
	int inq = sp_wait_inq(s, 1);
	REQUIRE(inq >= 1, "the byte sent directly on the descriptor at the peer: %d bytes queued "
		"%d ms later", inq, sp_wait_ms());
	EXPECT_RAW(s, "#");
	expect_nothing_more(s, "before fflush (the stream holds \"abc123xyz!\")");

	ASSERT_EQ(0, fflush(w));
	EXPECT_RAW(s, "abc123xyz!");
	expect_nothing_more(s, "after the flushed bytes");

	/* Record: does a newline alone flush a socket stream? */
	ASSERT_TRUE(fputs("line\n", w) >= 0, "fputs() of a line: expected success, observed "
		    "EOF (%s)", sp_errno_name(errno));
	ASSERT_EQ(1, send(c, "#", 1, 0));
	inq = sp_wait_inq(s, 1);
	REQUIRE(inq >= 1, "a byte at the peer after fputs() of a line and a direct send(): %d "
		"bytes queued %d ms later", inq, sp_wait_ms());
	char first = 0;
	ASSERT_EQ(1, recv(s, &first, 1, 0));
	RECORD("newline_flushes_socket_stream", "%s", first == 'l' ? "yes" : "no");
	RECORD("BUFSIZ", "%d", BUFSIZ);
	ASSERT_EQ(0, fflush(w));
	EXPECT_RAW(s, first == 'l' ? "ine\n#" : "line\n");
	fclose(w);
	close(s);
}

/* ---- 3. STDIO-FCLOSE-CLOSES-FD ---------------------------------------------- */

/* 3. fclose flushes and closes the descriptor; the peer reads EOF. */
SP_TEST(stdio_fclose_flushes_and_closes_fd, "STDIO-FCLOSE-CLOSES-FD", SP_INET)
{
	int c, s, c2, s2;
	struct sp_capture cap;

	no_sigpipe();
	sp_tcp_pair(ctx, &c, &s);
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(c), "C");
	sp_capture_name(&cap, sp_local_port(s), "S");
	FILE *w = stream(c, "w");
	ASSERT_TRUE(fputs("last words", w) >= 0, "fputs() on the socket stream: expected success, "
		    "observed EOF (%s)", sp_errno_name(errno));
	ASSERT_EQ(0, fclose(w));
	ASSERT_ERRNO(fcntl(c, F_GETFD), EBADF);
	EXPECT_RAW(s, "last words");
	int err;
	ssize_t n = after_end(s, &err);
	ASSERT_TRUE(n == 0, "EOF follows the flushed data: expected EOF, observed %s",
		    end_str(n, err));
	/* On the wire: the flushed bytes, then the FIN of the close. */
	if (sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, "C>S P.10, C>S F");
	sp_capture_stop(&cap);

	/* A read stream: fclose closes its descriptor too. */
	sp_tcp_pair(ctx, &c2, &s2);
	FILE *r = stream(s2, "r");
	ASSERT_EQ(5, write(c2, "hello", 5));
	ASSERT_EQ('h', fgetc(r));     /* the stream has read ahead */
	ASSERT_EQ(0, fclose(r));
	ASSERT_ERRNO(fcntl(s2, F_GETFD), EBADF);
	n = after_end(c2, &err);
	ASSERT_TRUE(n == 0 || (n < 0 && err == ECONNRESET),
		    "the peer of the closed read stream reads EOF (or a reset, unread data was "
		    "dropped): observed %s", end_str(n, err));
	close(s);
	close(c2);
}

/* ---- 4. STDIO-DUP-TWO-STREAMS ----------------------------------------------- */

/* 4. A read stream on the socket and a write stream on its dup(). */
SP_TEST(stdio_read_and_write_streams_on_dup, "STDIO-DUP-TWO-STREAMS", SP_INET)
{
	int c, s;
	char line[64];
	static const char *const lines[] = { "one\n", "two two\n", "three 3 3\n" };

	no_sigpipe();
	sp_tcp_pair(ctx, &c, &s);
	FILE *in = stream(s, "r");
	FILE *out = stream((int)ASSERT_SYS(dup(s)), "w");  /* the dup is this ID's own */
	ASSERT_TRUE(fileno(in) != fileno(out), "the two streams use different descriptors (%d, %d)",
		    fileno(in), fileno(out));

	for (int i = 0; i < 3; i++) {
		/* Out through the write stream ... */
		ASSERT_TRUE(i == 1 ? fprintf(out, "%s", lines[i]) > 0 : fputs(lines[i], out) >= 0,
			    "writing line %d", i + 1);
		size_t n = strlen(lines[i]);
		flush_to(out, c, (int)n);
		/* ... echoed by the peer ... */
		EXPECT_RAW(c, lines[i]);
		ASSERT_EQ((ssize_t)n, write(c, lines[i], n));
		/* ... and back in through the read stream. */
		ASSERT_TRUE(fgets_bounded(line, sizeof(line), in) != NULL, "fgets reads the echo of line %d", i + 1);
		ASSERT_STR(lines[i], line);
	}
	fclose(out);
	fclose(in);
	close(c);
}

/* ---- 5. STDIO-FCLOSE-NO-HALF-CLOSE ------------------------------------------ */

/* 5. fclose of the write stream does not half-close; shutdown does. */
SP_TEST(stdio_fclose_of_write_stream_is_no_half_close, "STDIO-FCLOSE-NO-HALF-CLOSE", SP_INET)
{
	int c, s;
	char line[64];
	struct sp_capture cap;

	no_sigpipe();
	sp_tcp_pair(ctx, &c, &s);
	FILE *in = stream(s, "r");
	FILE *out = stream(dup_connection(s), "w");
	sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(c), "C");
	sp_capture_name(&cap, sp_local_port(s), "S");

	ASSERT_TRUE(fputs("data\n", out) >= 0, "fputs() on the write stream: expected success, "
		    "observed EOF (%s)", sp_errno_name(errno));
	ASSERT_EQ(0, fclose(out));             /* flushes; the read stream's fd stays */
	/* The socket still sends: a byte after the fclose goes through and is
	 * read right after the data, with no EOF before or after it. */
	ASSERT_EQ(1, send(fileno(in), "#", 1, MSG_NOSIGNAL));
	EXPECT_RAW(c, "data\n#");
	expect_nothing_more(c, "after fclose of the write stream (no FIN)");
	ASSERT_EQ(TCP_ESTABLISHED, sp_tcp_state(c));
	/* On the wire: data, no FIN from the fclose. */
	if (sp_capture_sync(&cap)) {
		WIRE_EXPECT(&cap, "S>C P.");
		WIRE_LACKS(&cap, "S>C F");
	}

	/* shutdown on the read stream's descriptor half-closes. */
	ASSERT_SYS(shutdown(fileno(in), SHUT_WR));
	int err;
	ssize_t n = after_end(c, &err);
	/* That shutdown(SHUT_WR) sends the FIN is CLOSE-HALF-WR-EOF's Must;
	 * this item's is what fclose does beside it. */
	if (n < 0 && err == EAGAIN)
		BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "the peer saw no EOF within %d ms of "
			     "shutdown(fileno(read stream), SHUT_WR)", sp_wait_ms());
	ASSERT_TRUE(n == 0, "the peer reads EOF after shutdown(SHUT_WR): observed %s",
		    end_str(n, err));
	if (sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, "S>C P., S>C F");
	sp_capture_stop(&cap);
	/* The reply still comes in through the read stream. That the
	 * half-closed socket still receives is CLOSE-HALF-WR-EOF's. */
	ASSERT_EQ(6, write(c, "reply\n", 6));
	int inq = sp_wait_inq(fileno(in), 6);
	if (inq < 6)
		BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "after shutdown(SHUT_WR) the socket has %d of the "
			     "peer's 6 reply bytes %d ms later: it no longer receives", inq, sp_wait_ms());
	ASSERT_TRUE(fgets_bounded(line, sizeof(line), in) != NULL, "fgets() of the reply after "
		    "shutdown(SHUT_WR): expected \"reply\\n\", observed NULL (%s)",
		    feof(in) ? "EOF" : sp_errno_name(errno));
	ASSERT_STR("reply\n", line);
	/* Record: the read stream once the peer has closed (EOF there is
	 * the peer's close, no Must of this ID). */
	ASSERT_SYS(close(c));
	char *last = fgets_bounded(line, sizeof(line), in);
	RECORD("read_stream_after_peer_close", "%s", last ? "a line" : feof(in) ? "EOF" : "an error");
	fclose(in);
}

SP_MAIN("stdio")
