/*
 * zc.c - bytes moved by the kernel between a file or pipe and a socket
 * (catalogue part 3, "Multi-message and zero-copy I/O"; sendfile(2),
 * splice(2)).
 *
 *  1. ZC-SENDFILE  sendfile() of a 1 MiB + 17 byte regular file to a
 *                  connected TCP socket, with an offset pointer and looping
 *                  on short counts, delivers exactly the file, advances
 *                  *offset to its size and leaves the file offset at 0;
 *                  100 bytes asked 5 before the end give 5, at the end 0;
 *                  with a NULL offset it sends from the file offset (1000),
 *                  advances it (1100), and the peer gets bytes 1000-1099;
 *                  Linux: to an AF_UNIX stream socket too (4096 bytes, the
 *                  same offsets).
 *  2. ZC-SPLICE    Linux: splice() from a TCP socket into a pipe moves the
 *                  1000 bytes the peer sent, and from a pipe into a TCP
 *                  socket delivers 1000 bytes, unchanged; from an empty
 *                  O_NONBLOCK socket it fails with EAGAIN, after the peer's
 *                  FIN it returns 0.
 *
 * Parameters: the socket's blocking mode (sendfile's short counts and
 * EAGAIN on a non-blocking socket are waited out with poll()).
 *
 * Platform-defined (recorded): sendfile() to a connected UDP socket;
 * SPLICE_F_NONBLOCK from an empty blocking socket (a guard signal at
 * 100 ms ends a call that blocks); splice() from a UDP socket.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#define FILE_SIZE (1024 * 1024 + 17)

/* A regular file holding the pattern, unlinked (a memfd where no
 * temporary directory takes files). */
static int pattern_file(size_t size)
{
	char path[] = "/tmp/sockprobe-zc-XXXXXX";
	int fd = mkstemp(path);
	if (fd >= 0)
		unlink(path);
	else
		fd = (int)syscall(SYS_memfd_create, "sockprobe-zc", 0u);
	REQUIRE(fd >= 0, "a temporary regular file (mkstemp and memfd_create: %s)",
		sp_errno_name(errno));
	unsigned char *buf = malloc(size);
	REQUIRE(buf != NULL, "%zu bytes of memory", size);
	sp_pattern(buf, size, 0);
	REQUIRE(pwrite(fd, buf, size, 0) == (ssize_t)size, "the %zu-byte file is written", size);
	free(buf);
	struct stat st;
	REQUIRE(fstat(fd, &st) == 0 && S_ISREG(st.st_mode), "the file is a regular file");
	return fd;
}

struct reader { int fd; size_t n; unsigned char *buf; size_t got; int done; };

static void *read_everything(void *arg)
{
	struct reader *r = arg;
	r->got = sp_read_all(r->fd, r->buf, r->n);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int reader_done(void *arg)
{
	return __atomic_load_n(&((struct reader *)arg)->done, __ATOMIC_ACQUIRE);
}

/* sendfile() of n bytes from *off, looping on short counts (and, on a
 * non-blocking socket, waiting for POLLOUT on EAGAIN). */
static void sendfile_all(int sock, int file, off_t *off, size_t n)
{
	size_t done = 0;
	while (done < n) {
		errno = 0;
		ssize_t w = MUST_RETURN(sendfile(sock, file, off, n - done), "sendfile() with %zu of %zu "
					"bytes left", n - done, n);
		if (w < 0 && errno == EAGAIN && sp_is_nonblock(sock)) {
			EXPECT_EVENTS(sock, POLLOUT, POLLOUT, "the socket takes more after EAGAIN");
			continue;
		}
		if (w <= 0)
			FAIL("sendfile() with %zu of %zu bytes left returned %zd (%s)", n - done, n, w,
			     w < 0 ? sp_errno_name(errno) : "nothing");
		done += (size_t)w;
	}
}

/* ---- 1. ZC-SENDFILE ------------------------------------------------------------- */

SP_TEST(sendfile_delivers_the_file_and_keeps_offsets, "ZC-SENDFILE", SP_INET, .mode = SP_BOTH_MODES)
{
	sp_path_used(SP_PATH_OUT, SP_IO_SENDFILE); /* the calls below, made by name */
	int c, s, f = pattern_file(FILE_SIZE);
	sp_tcp_pair(ctx, &c, &s);
	sp_set_nonblock(c, ctx->nonblock);

	/* The whole file, through an offset pointer. */
	struct reader rd = { s, FILE_SIZE, malloc(FILE_SIZE), 0, 0 };
	REQUIRE(rd.buf != NULL, "memory for the peer's copy");
	pthread_t t;
	REQUIRE(pthread_create(&t, NULL, read_everything, &rd) == 0, "a reader thread");
	off_t off = 0;
	sendfile_all(c, f, &off, FILE_SIZE);
	pthread_join(t, NULL);
	/* pthread_join() waiting for the reader is THREAD-JOIN-RETURNS', a
	 * mechanism here. */
	if (!reader_done(&rd)) {
		sp_wait_until(reader_done, &rd, sp_wait_ms());
		BROKEN_NEEDS("THREAD-JOIN-RETURNS", "pthread_join() returned while the reader "
			     "thread was still reading");
	}
	if (rd.got != FILE_SIZE)
		FAIL("the peer received %zu bytes of the %d-byte file", rd.got, FILE_SIZE);
	size_t bad = sp_pattern_check(rd.buf, FILE_SIZE, 0);
	if (bad != FILE_SIZE)
		FAIL("the peer's copy differs from the file at byte %zu", bad);
	free(rd.buf);
	ASSERT_EQ(FILE_SIZE, off);
	ASSERT_EQ(0, lseek(f, 0, SEEK_CUR));

	/* 100 bytes asked 5 before the end: 5; at the end: 0. */
	unsigned char b[128];
	off = FILE_SIZE - 5;
	ASSERT_EQ(5, MUST_RETURN(sendfile(c, f, &off, 100), "sendfile() of 100 bytes 5 before the end"));
	ASSERT_EQ(FILE_SIZE, off);
	ASSERT_EQ(5, sp_read_all(s, b, 5));
	ASSERT_EQ(5, sp_pattern_check(b, 5, FILE_SIZE - 5));
	ASSERT_EQ(0, MUST_RETURN(sendfile(c, f, &off, 100), "sendfile() of 100 bytes at the end"));
	ASSERT_EQ(FILE_SIZE, off);

	/* NULL offset: from the file offset, which advances (looping on
	 * short counts, as for the whole file). */
	ASSERT_EQ(1000, lseek(f, 1000, SEEK_SET));
	sendfile_all(c, f, NULL, 100);
	ASSERT_EQ(1100, lseek(f, 0, SEEK_CUR));
	ASSERT_EQ(100, sp_read_all(s, b, 100));
	if (sp_pattern_check(b, 100, 1000) != 100)
		FAIL("sendfile() with a NULL offset at 1000 did not send bytes 1000-1099");
	/* Nothing more than asked: a non-blocking peek finds nothing (not
	 * poll(), MUX-READABLE-DATA's). */
	sp_set_nonblock(s, 1);
	errno = 0;
	ssize_t more = recv(s, b, 1, MSG_PEEK);
	int merr = errno;
	sp_set_nonblock(s, 0);
	ASSERT_TRUE(more < 0 && (merr == EAGAIN || merr == EWOULDBLOCK), "nothing follows the 100 "
		    "bytes sendfile() was asked for (a peek got %zd, %s)", more,
		    more < 0 ? sp_errno_name(merr) : "data");
	close(c);
	close(s);

	/* Record: a connected UDP socket. */
	int u = sp_udp_bound(ctx), r = sp_udp_bound(ctx);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(r));
	ASSERT_SYS(connect(u, (struct sockaddr *)&ss, len));
	off = 0;
	errno = 0;
	ssize_t w = BOUNDED(sendfile(u, f, &off, 1000));
	if (w < 0) {
		RECORD_ONCE("sendfile_to_connected_udp", "%s", sp_errno_name(errno));
	} else {
		unsigned char big[2048];
		ssize_t n = (sp_poll(r, POLLIN, sp_wait_ms()) & POLLIN) ? recv(r, big, sizeof(big), MSG_DONTWAIT)
								       : -1;
		RECORD_ONCE("sendfile_to_connected_udp", "%zd bytes sent, first datagram %zd bytes", w, n);
	}
	close(u);
	close(r);
	close(f);
}

SP_TEST(sendfile_to_unix_stream_socket_delivers_the_bytes, "ZC-SENDFILE", SP_NONE)
{
	sp_path_used(SP_PATH_OUT, SP_IO_SENDFILE); /* the call below, made by name */
	int sv[2], f = pattern_file(4096);
	unsigned char b[4096];
	off_t off = 0;

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	errno = 0;
	ssize_t w = MUST_RETURN(sendfile(sv[0], f, &off, 4096), "sendfile() to an AF_UNIX stream socket");
	if (w < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
		UNSUPPORTED("sendfile() to an AF_UNIX stream socket (%s)", sp_errno_name(errno));
	if (w <= 0)
		FAIL("sendfile() of 4096 bytes to an AF_UNIX stream socket returned %zd (%s)", w,
		     w < 0 ? sp_errno_name(errno) : "nothing");
	if (w < 4096) /* a short count: the rest, looping */
		sendfile_all(sv[0], f, &off, 4096 - (size_t)w);
	ASSERT_EQ(4096, off);
	ASSERT_EQ(0, lseek(f, 0, SEEK_CUR)); /* the file's own offset stays */
	ASSERT_EQ(4096, sp_read_all(sv[1], b, 4096));
	if (sp_pattern_check(b, 4096, 0) != 4096)
		FAIL("the bytes read from the AF_UNIX socket differ from the file");
	close(sv[0]);
	close(sv[1]);
	close(f);
}

/* ---- 2. ZC-SPLICE --------------------------------------------------------------- */

static void no_op(int sig)
{
	(void)sig;
}

/* splice() of n bytes from in to out, looping on short counts. */
static void splice_all(int in, int out, size_t n, const char *what)
{
	size_t done = 0;
	while (done < n) {
		errno = 0;
		ssize_t k = MUST_RETURN(splice(in, NULL, out, NULL, n - done, 0), "splice() %s", what);
		if (k < 0 && (errno == EINVAL || errno == ENOSYS) && done == 0)
			UNSUPPORTED("splice() %s (%s)", what, sp_errno_name(errno));
		if (k <= 0)
			FAIL("splice() %s with %zu of %zu bytes left returned %zd (%s)", what, n - done, n,
			     k, k < 0 ? sp_errno_name(errno) : "end of file");
		done += (size_t)k;
	}
}

SP_TEST(splice_moves_bytes_between_socket_and_pipe, "ZC-SPLICE", SP_INET)
{
	sp_path_used(SP_PATH_IN, SP_IO_SPLICE); /* the calls below, made by name */
	sp_path_used(SP_PATH_OUT, SP_IO_SPLICE);
	int c, s, p[2];
	unsigned char out[1000], in[1000];

	sp_tcp_pair(ctx, &c, &s);
	sp_pipe(p); /* ends checked: PIPE-ENDS is a mechanism here */
	sp_pattern(out, sizeof(out), 7);

	/* Socket to pipe. */
	ASSERT_EQ(1000, sp_write_all(c, out, 1000));
	EXPECT_EVENTS(s, POLLIN, POLLIN, "the peer's 1000 bytes arrive");
	splice_all(s, p[1], 1000, "from a TCP socket into a pipe");
	ASSERT_EQ(1000, sp_read_all(p[0], in, 1000));
	ASSERT_MEM_EQ(out, in, 1000);

	/* Pipe to socket. */
	ASSERT_EQ(1000, write(p[1], out, 1000));
	splice_all(p[0], s, 1000, "from a pipe into a TCP socket");
	ASSERT_EQ(1000, sp_read_all(c, in, 1000));
	ASSERT_MEM_EQ(out, in, 1000);

	/* Empty, O_NONBLOCK: EAGAIN. */
	sp_set_nonblock(s, 1);
	errno = 0;
	ssize_t k = MUST_RETURN(splice(s, NULL, p[1], NULL, 1000, 0),
				"splice() from an empty O_NONBLOCK socket");
	if (k != -1 || errno != EAGAIN)
		FAIL("splice() from an empty O_NONBLOCK TCP socket returned %zd (%s), expected EAGAIN",
		     k, k < 0 ? sp_errno_name(errno) : "bytes or end of file");
	sp_set_nonblock(s, 0);

	/* Record: SPLICE_F_NONBLOCK on an empty blocking socket. */
	struct sigaction sa = { .sa_handler = no_op }, old;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, &old);
	struct itimerval guard = { .it_value = { 0, 100000 } }, off = { { 0, 0 }, { 0, 0 } }, left;
	setitimer(ITIMER_REAL, &guard, NULL);
	errno = 0;
	k = splice(s, NULL, p[1], NULL, 1000, SPLICE_F_NONBLOCK);
	int e = errno;
	setitimer(ITIMER_REAL, &off, &left);
	sigaction(SIGALRM, &old, NULL);
	RECORD_ONCE("splice_f_nonblock_from_empty_blocking_socket", "%zd %s%s", k,
		    k < 0 ? sp_errno_name(e) : "",
		    !left.it_value.tv_sec && !left.it_value.tv_usec ? " (blocked until the guard "
		    "signal at 100 ms)" : "");

	/* After the peer's FIN: 0. */
	ASSERT_SYS(shutdown(c, SHUT_WR));
	/* That the FIN is sent is CLOSE-HALF-WR-EOF's, a mechanism here. */
	SP_FIN_ARRIVES(s, "CLOSE-HALF-WR-EOF", "shutdown(SHUT_WR)");
	errno = 0;
	k = MUST_RETURN(splice(s, NULL, p[1], NULL, 1000, 0), "splice() after the peer's FIN");
	if (k != 0)
		FAIL("splice() from a TCP socket after the peer's FIN returned %zd (%s), expected 0", k,
		     k < 0 ? sp_errno_name(errno) : "bytes");
	close(c);
	close(s);

	/* Record: a UDP socket into a pipe. */
	int u = sp_udp_bound(ctx), r = sp_udp_bound(ctx);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(r));
	ASSERT_EQ(7, sendto(u, "udp7byt", 7, 0, (struct sockaddr *)&ss, len));
	if (sp_poll(r, POLLIN, sp_wait_ms()) & POLLIN) {
		errno = 0;
		k = BOUNDED(splice(r, NULL, p[1], NULL, 1000, SPLICE_F_NONBLOCK));
		RECORD_ONCE("splice_from_udp", "%zd%s%s", k, k < 0 ? " " : " bytes",
			    k < 0 ? sp_errno_name(errno) : "");
	}
	close(u);
	close(r);
	close(p[0]);
	close(p[1]);
}

SP_MAIN("zc")
