/*
 * faults/stdio.c - faults of catalogue 2's STDIO-* behaviors: sockets
 * under stdio streams (fdopen, buffering and fflush, fclose, dup). Part
 * of libspfault.so; see spfault.h.
 *
 * Interposers owned here: fdopen, fgets, fflush, fclose, dup.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/socket.h>

#include "spfault.h"

REAL(int, getpeername, int, struct sockaddr *, socklen_t *)

static int mux_is_stream(int fd) { return spfault_sock_type(fd) == SOCK_STREAM; }

/* A connected stream socket (keeps errno). */
static int mux_connected(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	load_getpeername();
	int r = mux_is_stream(fd) && real_getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
	errno = saved;
	return r;
}

FAULT(fdopen_rejects_sockets,
      "STDIO-FDOPEN",
      "a libc or sandbox whose fdopen() insists on a seekable file and fails with ESPIPE on sockets");
FAULT(fgets_stops_at_read_boundary,
      "STDIO-FDOPEN",
      "a record-oriented stdio layer whose fgets() returns what one read() gave, splitting lines that arrive in pieces");
FAULT(socket_streams_unbuffered,
      "STDIO-BUFFERED-UNTIL-FLUSH",
      "a libc or runtime (stdbuf-style preload) that makes every non-tty stream unbuffered, so each fputs is a write");
FAULT(fflush_skips_sockets,
      "STDIO-BUFFERED-UNTIL-FLUSH",
      "a libc whose fflush() on a non-seekable stream keeps the data until the buffer fills or fclose()");
FAULT(fclose_leaves_socket_open,
      "STDIO-FCLOSE-CLOSES-FD",
      "an LD_PRELOAD stack that hooks close() but not libc's internal close in fclose(), so the connection stays open");
FAULT(fclose_shuts_down_socket,
      "STDIO-FCLOSE-NO-HALF-CLOSE",
      "a stdio layer that treats fclose() of a socket stream as the end of the connection and sends a FIN despite a dup()");
FAULT(dup_gives_unconnected_socket,
      "STDIO-DUP-TWO-STREAMS,EPOLLX-DUP,IOCTL-FIONBIO",
      "an LD_PRELOAD user-space stack without a dup() hook: the duplicate is a fresh kernel socket, not the connection");

REAL(FILE *, fdopen, int, const char *)
REAL(char *, fgets, char *, int, FILE *)
REAL(int, fflush, FILE *)
REAL(int, fclose, FILE *)
REAL(int, dup, int)

static int mux_stream_fd(FILE *f)
{
	int saved = errno;
	int fd = f ? fileno(f) : -1;
	errno = saved;
	return fd >= 0 && mux_is_stream(fd) ? fd : -1;
}

FILE *fdopen(int fd, const char *mode)
{
	load_fdopen();
	if (spfault_on("fdopen_rejects_sockets") && mux_is_stream(fd)) {
		errno = ESPIPE;
		return NULL;
	}
	FILE *f = real_fdopen(fd, mode);
	if (f && spfault_on("socket_streams_unbuffered") && mux_is_stream(fd)) {
		int saved = errno;
		setvbuf(f, NULL, _IONBF, 0);
		errno = saved;
	}
	return f;
}

char *fgets(char *buf, int n, FILE *f)
{
	load_fgets();
	if (!spfault_on("fgets_stops_at_read_boundary") || mux_stream_fd(f) < 0 || n < 2)
		return real_fgets(buf, n, f);
	/* Stop where the stream's buffer (the last read) runs out. */
	int i = 0;
	while (i < n - 1) {
		if (i > 0 && f->_IO_read_ptr >= f->_IO_read_end)
			break;
		int ch = fgetc(f);
		if (ch == EOF)
			break;
		buf[i++] = (char)ch;
		if (ch == '\n')
			break;
	}
	if (i == 0)
		return NULL;
	buf[i] = '\0';
	return buf;
}

int fflush(FILE *f)
{
	load_fflush();
	if (spfault_on("fflush_skips_sockets") && mux_stream_fd(f) >= 0)
		return 0;
	return real_fflush(f);
}

int fclose(FILE *f)
{
	load_fclose();
	load_dup();
	int fd = mux_stream_fd(f);
	if (fd >= 0 && spfault_on("fclose_leaves_socket_open")) {
		int saved = errno;
		real_dup(fd);            /* a reference the program never sees */
		errno = saved;
	}
	if (fd >= 0 && spfault_on("fclose_shuts_down_socket")) {
		int saved = errno;
		real_fflush(f);
		shutdown(fd, SHUT_WR);
		errno = saved;
	}
	return real_fclose(f);
}

int dup(int fd)
{
	load_dup();
	if (spfault_on("dup_gives_unconnected_socket") && mux_connected(fd)) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int saved = errno;
		if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
			int s = socket(ss.ss_family, SOCK_STREAM, 0);
			if (s >= 0)
				return s;
		}
		errno = saved;
	}
	return real_dup(fd);
}
