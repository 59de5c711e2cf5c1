/*
 * faults/pipe.c - faults of PIPE-* behaviors: which end is which, EOF
 * and empty pipes, PIPE_BUF atomicity, EPIPE and SIGPIPE (part of
 * libspfault.so; see spfault.h).
 *
 * Interposes pipe and pipe2; joins read, write, send and installing a
 * SIGPIPE handler through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(pipe_ends_swapped,
      "PIPE-ENDS,PIPE-TWO-WAY",
      "a pipe() emulation that returns the ends the wrong way round");
FAULT(empty_pipe_reads_eof,
      "PIPE-ACROSS-FORK,PIPE-EOF",
      "a pipe emulation whose empty pipe reads EOF while writers exist");
FAULT(pipe_eof_drops_data,
      "PIPE-EOF",
      "a pipe emulation that reads EOF once the last writer is gone, dropping what was still unread");
FAULT(pipe_writes_in_pieces,
      "PIPE-ATOMIC",
      "a pipe emulation that splits writes of PIPE_BUF bytes or less");
FAULT(pipe_small_write_splits,
      "PIPE-ATOMIC",
      "a pipe emulation that writes what fits of a write <= PIPE_BUF into a partly full pipe, then the rest");
FAULT(sigpipe_ignored,
      "PIPE-EPIPE,FLAG-NOSIGNAL",
      "a runtime that ignores SIGPIPE for every program");
FAULT(sigpipe_handler_never_runs,
      "PIPE-EPIPE,FLAG-NOSIGNAL",
      "a sandbox that ignores SIGPIPE behind the program's back even when it installs a handler");
FAULT(msg_nosignal_ignored,
      "FLAG-NOSIGNAL",
      "an LD_PRELOAD socket stack that forwards send() without MSG_NOSIGNAL, so SIGPIPE is raised");

REAL(int, pipe, int *)
REAL(int, pipe2, int *, int)
REAL(ssize_t, write, int, const void *, size_t)
REAL(sighandler_t, signal, int, sighandler_t)
REAL(int, poll, struct pollfd *, nfds_t, int)

/* ---- the ends ------------------------------------------------------------------ */

/* pipe_ends_swapped: fds[0] is handed back as the write end. */
static void swap_ends(int *fds)
{
	if (on("pipe_ends_swapped")) {
		int t = fds[0];
		fds[0] = fds[1];
		fds[1] = t;
	}
}

int pipe(int fds[2])
{
	load_pipe();
	int r = real_pipe(fds);
	if (r == 0)
		swap_ends(fds);
	return r;
}

int pipe2(int fds[2], int flags)
{
	load_pipe2();
	int r = real_pipe2(fds, flags);
	if (r == 0)
		swap_ends(fds);
	return r;
}

/* ---- reading ------------------------------------------------------------------------ */

/* A pipe's read end (its write end refuses reads: EBADF, left alone). */
static int pipe_read_end(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);

	errno = saved;
	return spfault_is_fifo(fd) && fl >= 0 && (fl & O_ACCMODE) == O_RDONLY;
}

SPF_HOOK(pipe_read, SPF_OP(SPF_READ), SPF_BEFORE, 40)
{
	int fd = c->fd;

	if (!pipe_read_end(fd))
		return 0;

	/* empty_pipe_reads_eof: an empty pipe reads as EOF instead of
	 * blocking until a writer writes. */
	if (on("empty_pipe_reads_eof")) {
		int avail = 0;
		if (ioctl(fd, FIONREAD, &avail) == 0 && avail == 0) {
			c->r = 0;
			return 1;
		}
	}
	/* pipe_eof_drops_data: no writer left means EOF, unread data or not. */
	if (on("pipe_eof_drops_data")) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int saved = errno;
		load_poll();
		if (real_poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
			c->r = 0;
			return 1;
		}
		errno = saved;
	}
	return 0;
}

/* ---- writing ------------------------------------------------------------------------ */

/* pipe_small_write_splits: a write of at most PIPE_BUF bytes into a pipe
 * with less room than that puts in what fits first (all a non-blocking
 * writer gets), then the rest: other writers come between. */
static ssize_t split_small_pipe_write(int fd, const void *buf, size_t n)
{
	int saved = errno, inq = 0, cap = fcntl(fd, F_GETPIPE_SZ);
	int nonblock = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;

	errno = saved;
	load_write();
	if (n > PIPE_BUF || cap <= 0 || ioctl(fd, FIONREAD, &inq) < 0 || inq <= 0 ||
	    cap - inq <= 0 || (size_t)(cap - inq) >= n) {
		errno = saved;
		return real_write(fd, buf, n);
	}
	errno = saved;
	ssize_t w = real_write(fd, buf, (size_t)(cap - inq));
	if (w <= 0 || nonblock)
		return w;
	size_t done = (size_t)w;
	while (done < n) {
		w = real_write(fd, (const char *)buf + done, n - done);
		if (w <= 0)
			return (ssize_t)done;
		done += (size_t)w;
	}
	return (ssize_t)n;
}

SPF_HOOK(pipe_write, SPF_OP(SPF_WRITE), SPF_BEFORE, 50)
{
	if (!c->via_write || !spfault_is_fifo(c->fd))
		return 0;
	load_write();
	/* pipe_writes_in_pieces: no PIPE_BUF atomicity; a write goes out in
	 * 64-byte pieces that other writers can come between. */
	if (on("pipe_writes_in_pieces") && c->n > 64) {
		size_t done = 0;
		while (done < c->n) {
			size_t piece = c->n - done < 64 ? c->n - done : 64;
			ssize_t w = real_write(c->fd, (const char *)c->data + done, piece);
			if (w <= 0) {
				c->r = done ? (ssize_t)done : w;
				return 1;
			}
			done += (size_t)w;
		}
		c->r = (ssize_t)c->n;
		return 1;
	}
	if (on("pipe_small_write_splits")) {
		c->r = split_small_pipe_write(c->fd, c->data, c->n);
		return 1;
	}
	return 0;
}

/* ---- SIGPIPE -------------------------------------------------------------------------- */

/* msg_nosignal_ignored: send()'s MSG_NOSIGNAL is not passed on. */
SPF_HOOK(msg_nosignal_ignored, SPF_OP(SPF_SEND), SPF_BEFORE, 15)
{
	if (on("msg_nosignal_ignored"))
		c->flags &= ~MSG_NOSIGNAL;
	return 0;
}

/* sigpipe_ignored: SIGPIPE can never kill; sigpipe_handler_never_runs: a
 * SIGPIPE handler is swapped for SIG_IGN. */
SPF_HOOK(sigpipe_faults, SPF_OP(SPF_SIGNAL) | SPF_OP(SPF_SIGACTION), SPF_BEFORE, 11)
{
	if (c->sig != SIGPIPE)
		return 0;
	if (on("sigpipe_ignored"))
		c->handler = SIG_IGN;
	if (c->handler != SIG_DFL && c->handler != SIG_IGN && c->handler != SIG_ERR &&
	    on("sigpipe_handler_never_runs"))
		c->handler = SIG_IGN;
	return 0;
}

__attribute__((constructor)) static void sigpipe_ignored_at_start(void)
{
	load_signal();
	if (on("sigpipe_ignored"))
		real_signal(SIGPIPE, SIG_IGN);
}
