/*
 * pipe.c - pipes between processes (seed notes: "11进程通讯", "管道").
 *
 * Checks:
 *
 *  1. PIPE-ENDS        fds[0] reads, fds[1] writes (pipe() and pipe2());
 *                      bytes come out in order, in any pieces; the wrong
 *                      end refuses (EBADF).
 *  2. PIPE-ACROSS-FORK the pipe belongs to the kernel: after fork parent
 *                      and child talk through it, both ways; the child's
 *                      read blocks until the parent writes, and the
 *                      parent's until the child writes.
 *  3. PIPE-TWO-WAY     with one pipe a process reads back its own message;
 *                      with two, each side gets only the other's.
 *  4. PIPE-EOF         while any write end is open the reader waits; once
 *                      the last is closed it gets the rest (in pieces),
 *                      then EOF, and EOF again.
 *  5. PIPE-EPIPE       writing to a pipe with no reader left raises
 *                      SIGPIPE: the default kills; a handler (from signal()
 *                      or sigaction()) runs once per write, which fails
 *                      with EPIPE; ignored or blocked, EPIPE.
 *  5c. FLAG-NOSIGNAL   the same on a stream socket whose peer is gone,
 *                      through write() and send(); send(MSG_NOSIGNAL) and
 *                      sendmmsg(MSG_NOSIGNAL) give EPIPE alone.
 *
 * PIPE-ENDS, PIPE-EOF and PIPE-EPIPE go through every call that reads or
 * writes a pipe: read/readv, write/writev, splice, sendfile (to the pipe),
 * io_uring READ/READV/WRITE/WRITEV; PIPE-ATOMIC through the write calls
 * that promise atomicity (write, writev and their io_uring opcodes).
 *
 *  6. PIPE-ATOMIC      a write of at most PIPE_BUF bytes is never split: a
 *                      non-blocking one into a partly full pipe writes all
 *                      or nothing (EAGAIN); blocking ones of several sizes
 *                      from four writers into a pipe kept partly full never
 *                      interleave.
 *
 * Platform-defined (recorded): PIPE_BUF (POSIX minimum 512; Linux 4096),
 * the pipe's capacity (Linux: 16 pages by default, F_GETPIPE_SZ) and the
 * bytes a non-blocking writer could put in before EAGAIN.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>

/* The calls that read and write a pipe (.read, .write): read/readv,
 * write/writev, splice (through a pipe of the fixture's: pipe to pipe),
 * sendfile (memfd to pipe), io_uring READ/READV and WRITE/WRITEV, io_uring
 * last. recv/send and their kin are socket calls (ENOTSOCK on a pipe). */
#define PIPE_READS SP_VALUES(SP_IO_READ, SP_IO_VEC, SP_IO_SPLICE, SP_IO_URING_RW, SP_IO_URING_VEC)
#define PIPE_WRITES SP_VALUES(SP_IO_READ, SP_IO_VEC, SP_IO_SPLICE, SP_IO_SENDFILE, SP_IO_URING_RW, \
	SP_IO_URING_VEC)

static int uring_call(int api);

/* 1. fds[1] is the write end, fds[0] the read end; order is kept: every
 * write call into every read call (.write, .read). */
SP_TEST(pipe_fd1_writes_fd0_reads_in_order, "PIPE-ENDS", SP_NONE,
	.how = SP_NAMES("pipe()", "pipe2(O_CLOEXEC)"), .write = PIPE_WRITES, .read = PIPE_READS)
{
	int fds[2];
	char buf[16];

	if (ctx->how == 1)
		ASSERT_SYS(pipe2(fds, O_CLOEXEC));
	else
		ASSERT_SYS(pipe(fds));
	ASSERT_EQ(3, sp_io_out(ctx->write, fds[1], "abc", 3, 0));
	ASSERT_EQ(3, sp_io_out(ctx->write, fds[1], "def", 3, 0));
	ASSERT_EQ(2, sp_io_in(ctx->read, fds[0], buf, 2, 0)); /* in order, in any pieces */
	ASSERT_MEM_EQ("ab", buf, 2);
	ASSERT_EQ(4, sp_io_in(ctx->read, fds[0], buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("cdef", buf, 4);
	ASSERT_ERRNO(sp_io_out(ctx->write, fds[0], "x", 1, 0), EBADF);
	ASSERT_ERRNO(sp_io_in(ctx->read, fds[1], buf, 1, 0), EBADF);
	close(fds[0]);
	close(fds[1]);
}

/* pipe() for the items of the other PIPE-* behaviors: which end is
 * which is PIPE-ENDS' behavior, a mechanism there, checked once with one
 * byte (broken, needs PIPE-ENDS, when fds[1] does not write to fds[0]). */
static void pipe_ends_checked(int fds[2])
{
	char c = 'e';

	ASSERT_SYS(pipe(fds));
	ssize_t w = write(fds[1], &c, 1);
	if (w != 1) {
		char obs[64];
		int err = errno;
		snprintf(obs, sizeof(obs), "%zd (%s)", w, w < 0 ? sp_errno_name(err) : "-");
		sp_needs_at(__FILE__, __LINE__, "PIPE-ENDS", "write() of 1 byte to fds[1] of a new pipe",
			    "1", obs, w < 0 ? err : 0);
	}
	sp_set_nonblock(fds[0], 1);
	ssize_t r = read(fds[0], &c, 1);
	int err = errno;
	sp_set_nonblock(fds[0], 0);
	if (r != 1 || c != 'e') {
		char obs[64];
		snprintf(obs, sizeof(obs), "%zd (%s)", r, r < 0 ? sp_errno_name(err) : "-");
		sp_needs_at(__FILE__, __LINE__, "PIPE-ENDS", "read() at fds[0] of the byte written to fds[1]",
			    "1 ('e')", obs, r < 0 ? err : 0);
	}
}

/* 2. After fork both processes use the same pipe; a read blocks until the
 * other process writes. */
struct across { int down[2], up[2]; };

static int echo_upper(void *arg)
{
	struct across *a = arg;
	char buf[8];
	ssize_t n = read(a->down[0], buf, sizeof(buf)); /* blocks: pipe is empty */
	for (ssize_t i = 0; i < n; i++)
		buf[i] = (char)(buf[i] - 'a' + 'A');
	if (n != 4 || write(a->up[1], buf, 4) != 4)
		return 1;
	/* The other way: the parent's read blocks until this write. */
	if (sp_have_proc() && !sp_wait_proc_state(getppid(), 'S'))
		return 2;
	return write(a->up[1], "pong", 4) == 4 ? 0 : 3;
}

SP_TEST(pipe_connects_parent_and_child, "PIPE-ACROSS-FORK", SP_NONE)
{
	(void)ctx;
	struct across a;
	char buf[8];

	pipe_ends_checked(a.down);
	pipe_ends_checked(a.up);
	pid_t child = sp_fork(echo_upper, &a);
	if (sp_have_proc()) {
		ASSERT_TRUE(sp_wait_proc_state(child, 'S'),
			    "the child sleeps in read() on the empty pipe (state %c)",
			    sp_proc_state(child));
		RECORD("reader_state_before_write", "S");
	}
	ASSERT_EQ(0, sp_poll(a.up[0], POLLIN, 0)); /* it has not read anything */
	ASSERT_EQ(4, write(a.down[1], "ping", 4));
	ASSERT_EQ(4, sp_read_all(a.up[0], buf, 4));
	ASSERT_MEM_EQ("PING", buf, 4);
	/* Parent side: a plain blocking read() waits for the child's write. */
	ssize_t n = MUST_RETURN(read(a.up[0], buf, 4), "the parent's read() once the child wrote");
	int err = errno;
	ASSERT_TRUE(n == 4, "the parent's blocking read returns the child's write (got %zd, %s)",
		    n, n < 0 ? sp_errno_name(err) : "-");
	ASSERT_MEM_EQ("pong", buf, 4);
	sp_reap_exit(child, 0); /* the child read and answered */
	/* Without /proc of our own pid namespace the child may simply have
	 * read after the write: the data checks above still fail a broken
	 * pipe, but the block on the empty pipe was not shown, so no pass. */
	if (!sp_have_proc())
		SKIP("needs /proc of this pid namespace to see the reader block on the empty pipe");
}

/* 3. One pipe for two-way talk reads back one's own message; two work. */
struct two_way { int to_child[2], to_parent[2]; };

static int answer_child(void *arg)
{
	struct two_way *t = arg;
	char buf[8];
	if (sp_read_all(t->to_child[0], buf, 5) != 5 || memcmp(buf, "hello", 5))
		return 1;
	return write(t->to_parent[1], "world", 5) == 5 ? 0 : 2;
}

SP_TEST(one_pipe_reads_back_own_message_two_pipes_do_not, "PIPE-TWO-WAY", SP_NONE)
{
	(void)ctx;
	int one[2];
	char buf[8];
	struct two_way t;

	/* The pitfall: write, then read the same pipe: our own words come back. */
	ASSERT_SYS(pipe(one));
	ASSERT_EQ(5, write(one[1], "hello", 5));
	ASSERT_EQ(5, read(one[0], buf, sizeof(buf)));
	ASSERT_MEM_EQ("hello", buf, 5);
	RECORD("one_pipe_read_back", "%.5s", buf);

	ASSERT_SYS(pipe(t.to_child));
	ASSERT_SYS(pipe(t.to_parent));
	pid_t child = sp_fork(answer_child, &t);
	ASSERT_EQ(5, write(t.to_child[1], "hello", 5));
	ASSERT_EQ(5, sp_read_all(t.to_parent[0], buf, 5));
	ASSERT_MEM_EQ("world", buf, 5);
	/* Only the other side's words: our "hello" is not there as well. */
	ASSERT_EQ(0, sp_poll(t.to_parent[0], POLLIN, 0));
	int left = -1;
	ASSERT_SYS(ioctl(t.to_child[0], FIONREAD, &left));
	ASSERT_EQ(0, left); /* the child took it all */
	sp_reap_exit(child, 0); /* the child got "hello", not its own words */
}

/* 4. EOF only once every write end is closed, after the remaining data. */
struct tail_writer { int *fds; struct sp_barrier go; };
static int write_tail_and_exit(void *arg)
{
	struct tail_writer *w = arg;
	close(w->fds[0]);
	sp_barrier_wait(&w->go); /* its copy of the write end stays open till then */
	return write(w->fds[1], "tail", 4) == 4 ? 0 : 1;
}

SP_TEST(pipe_reader_gets_eof_after_last_writer_closes, "PIPE-EOF", SP_NONE,
	.read = PIPE_READS)
{
	int fds[2], api = ctx->read;
	/* "No EOF yet" is shown by a non-blocking read's EAGAIN; an io_uring
	 * READ cannot show it on every kernel (Linux 6.1 keeps the request
	 * waiting on a non-blocking pipe), so read() makes those probes. */
	const int nb_api = uring_call(api) ? SP_IO_READ : api;
	char buf[8];

	pipe_ends_checked(fds);
	ASSERT_EQ(4, write(fds[1], "head", 4));
	ASSERT_EQ(4, sp_io_in(api, fds[0], buf, sizeof(buf), 0));
	/* Our write end is still open: no EOF; the read would block. */
	sp_set_nonblock(fds[0], 1);
	ASSERT_ERRNO(sp_io_in(nb_api, fds[0], buf, sizeof(buf), 0), EAGAIN);
	sp_set_nonblock(fds[0], 0);

	struct tail_writer w = { fds, { { -1, -1 } } };
	sp_barrier_init(&w.go);
	pid_t child = sp_fork(write_tail_and_exit, &w);
	ASSERT_SYS(close(fds[1])); /* now only the child's copy is open... */
	sp_set_nonblock(fds[0], 1); /* ...and while it is: still no EOF */
	ASSERT_ERRNO(sp_io_in(nb_api, fds[0], buf, sizeof(buf), 0), EAGAIN);
	ASSERT_EQ(0, sp_poll(fds[0], POLLIN, 0) & (POLLIN | POLLHUP));
	sp_set_nonblock(fds[0], 0);
	sp_barrier_pass(&w.go);
	sp_reap_exit(child, 0);    /* it wrote, and its copy closed at exit */
	int ev = sp_poll(fds[0], POLLIN, 0);
	ASSERT_TRUE(ev & POLLIN, "the tail is readable at once: poll reported %s", sp_events_str(ev));
	ASSERT_EQ(2, sp_io_in(api, fds[0], buf, 2, 0)); /* the rest first, in pieces */
	ASSERT_MEM_EQ("ta", buf, 2);
	ASSERT_EQ(2, sp_io_in(api, fds[0], buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("il", buf, 2);
	EXPECT_EVENTS(fds[0], POLLIN, POLLIN | POLLHUP,
		    "EOF is signalled once the data is read");
	ASSERT_EQ(0, MUST_RETURN(sp_io_in(api, fds[0], buf, sizeof(buf), 0),
				 "%s() at EOF", sp_io_in_name(api))); /* then EOF */
	ASSERT_EQ(0, MUST_RETURN(sp_io_in(api, fds[0], buf, sizeof(buf), 0),
				 "%s() at EOF again", sp_io_in_name(api))); /* and EOF again */
}

/* 5. No reader left: SIGPIPE kills by default; caught, the handler runs
 * once per write and the write fails with EPIPE; ignored or blocked,
 * EPIPE. The same mechanism on a stream socket whose peer is gone is
 * FLAG-NOSIGNAL's (item 5c): send(MSG_NOSIGNAL) never raises SIGPIPE,
 * write() and send() without it do. */
enum { VIA_PIPE_WRITE, VIA_SOCK_WRITE, VIA_SOCK_SEND, VIA_SOCK_SEND_NOSIGNAL,
       VIA_SOCK_SENDMMSG_NOSIGNAL };
static const char *const via_name[] = {
	"a write to a pipe (the variant's call)", "write() to a socket", "send() on a socket",
	"send(MSG_NOSIGNAL) on a socket", "sendmmsg(MSG_NOSIGNAL) on a socket",
};
static int nosignal(int via) { return via >= VIA_SOCK_SEND_NOSIGNAL; }

/* A write end whose every read end is closed: a pipe or a socket pair. */
static int broken_end(int via)
{
	int fds[2];
	if (via == VIA_PIPE_WRITE)
		pipe_ends_checked(fds);
	else
		ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
	ASSERT_SYS(close(fds[0]));
	return fds[1];
}

/* The call that writes to the pipe (VIA_PIPE_WRITE): the item's .write. */
static int pipe_write = SP_IO_READ;

/* An io_uring request (READ/READV/WRITE/WRITEV on a pipe)? */
static int uring_call(int api)
{
	return api >= SP_IO_APIS && (sp_entry_io_takes(api) & SP_EP_URING);
}

/* Does the write promise SIGPIPE? An io_uring WRITE fails with EPIPE, but
 * whether SIGPIPE comes depends on where the kernel runs the request: in
 * the submitting task it does (Linux 6.18), in an io_uring worker it is
 * lost (Linux 6.1, where pipes take no NOWAIT attempt). Recorded there. */
static int sigpipe_promised(int via)
{
	return via != VIA_PIPE_WRITE || !uring_call(pipe_write);
}

static ssize_t write_via(int via, int fd)
{
	static const int api[] = { SP_IO_READ, SP_IO_READ, SP_IO_RECV, SP_IO_RECV, SP_IO_MMSG };
	return sp_io_out(via == VIA_PIPE_WRITE ? pipe_write : api[via], fd, "x", 1,
			 nosignal(via) ? MSG_NOSIGNAL : 0);
}

struct broken_writer { int via, fd; };

static int write_to_broken_end(void *arg)
{
	struct broken_writer *b = arg;
	signal(SIGPIPE, SIG_DFL);
	errno = 0;
	ssize_t r = write_via(b->via, b->fd);
	/* reached only if SIGPIPE did not kill us: 0 for -1 EPIPE */
	return r == -1 && errno == EPIPE ? 0 : 1;
}

/* With the default disposition, ignored, and blocked. */
static void sigpipe_by_disposition(int via)
{
	int raises = !nosignal(via);
	struct broken_writer b = { via, broken_end(via) };
	pid_t pid = sp_fork(write_to_broken_end, &b);
	int st = sp_reap(pid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGPIPE)
		BROKEN_NEEDS("PROC-WAIT-REAPS", "the writer's wait status says exited %d, which it "
			     "never exits with: a death by SIGPIPE reported as an exit code",
			     128 + SIGPIPE);
	if (!sigpipe_promised(via)) {
		RECORD_ONCE("io_uring_write_default_sigpipe", "%s", sp_status_str(st));
		ASSERT_TRUE((WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE) ||
			    (WIFEXITED(st) && WEXITSTATUS(st) == 0),
			    "%s with SIGPIPE at its default: expected the writer killed by SIGPIPE "
			    "or -1 EPIPE, observed %s (1: not EPIPE)", via_name[via], sp_status_str(st));
	} else if (raises)
		ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE,
			    "%s with SIGPIPE at its default: expected the writer killed by SIGPIPE, "
			    "observed %s", via_name[via], sp_status_str(st));
	else
		ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			    "%s with SIGPIPE at its default: expected -1 EPIPE and the writer alive, "
			    "observed %s (1: not EPIPE)", via_name[via], sp_status_str(st));
	close(b.fd);
	RECORD_ONCE("default_action", "%s", sp_status_str(st));

	/* Ignored: EPIPE instead, nothing else. */
	REQUIRE(signal(SIGPIPE, SIG_IGN) != SIG_ERR, "SIGPIPE ignored: signal(SIGPIPE, SIG_IGN) "
		"failed with %s", sp_errno_name(errno));
	int fd = broken_end(via);
	ASSERT_ERRNO(write_via(via, fd), EPIPE);
	close(fd);

	/* Blocked: EPIPE, and the SIGPIPE stays pending (except MSG_NOSIGNAL). */
	sigset_t pipe_set, pending;
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	REQUIRE(signal(SIGPIPE, SIG_DFL) != SIG_ERR, "SIGPIPE back at its default: "
		"signal(SIGPIPE, SIG_DFL) failed with %s", sp_errno_name(errno));
	ASSERT_SYS(sigprocmask(SIG_BLOCK, &pipe_set, NULL));
	fd = broken_end(via);
	ASSERT_ERRNO(write_via(via, fd), EPIPE);
	ASSERT_SYS(sigpending(&pending));
	int raised = sigismember(&pending, SIGPIPE);
	if (!sigpipe_promised(via))
		RECORD_ONCE("io_uring_write_sigpipe_pending", "%s", raised ? "yes" : "no");
	else
		ASSERT_TRUE(raised == raises, "%s while SIGPIPE is blocked: expected %s, observed %s",
		    via_name[via], raises ? "a SIGPIPE pending" : "no SIGPIPE",
		    raised ? "a SIGPIPE pending" : "none pending");
	if (raised) {
		struct timespec zero = { 0, 0 };
		ASSERT_EQ(SIGPIPE, sigtimedwait(&pipe_set, NULL, &zero)); /* consume it */
	}
	close(fd);
	ASSERT_SYS(sigprocmask(SIG_UNBLOCK, &pipe_set, NULL));
}

/* A handler (from signal() or sigaction()) runs once per failed write,
 * which returns EPIPE. */
static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig) { (void)sig; sigpipes++; }

static void sigpipe_handler_per_write(int via, int by_sigaction)
{
	if (by_sigaction) {
		struct sigaction sa = { .sa_handler = on_sigpipe };
		sigemptyset(&sa.sa_mask);
		ASSERT_SYS(sigaction(SIGPIPE, &sa, NULL));
	} else {
		if (signal(SIGPIPE, on_sigpipe) == SIG_ERR)
			BROKEN_NEEDS("SIG-HANDLER-RUNS", "signal(SIGPIPE, handler) failed with %s, "
				     "expected the handler installed", sp_errno_name(errno));
	}
	int fd = broken_end(via);
	for (int i = 0; i < 2; i++) { /* every write, not just the first */
		sigpipes = 0;
		ASSERT_ERRNO(write_via(via, fd), EPIPE);
		int want = nosignal(via) ? 0 : 1;
		if (!sigpipe_promised(via)) {
			RECORD_ONCE("io_uring_write_sigpipe_handler_runs", "%d", (int)sigpipes);
			continue;
		}
		ASSERT_TRUE(sigpipes == want,
			    "%s (write %d, handler from %s): the SIGPIPE handler ran %d "
			    "times, expected %d", via_name[via], i + 1,
			    by_sigaction ? "sigaction()" : "signal()", (int)sigpipes, want);
	}
	close(fd);
	signal(SIGPIPE, SIG_DFL);
}

/* 5a. A pipe without a reader: SIGPIPE by default, EPIPE when ignored or
 * blocked (the signal then pending); every call that writes a pipe. */
SP_TEST(write_to_pipe_without_reader_raises_sigpipe, "PIPE-EPIPE", SP_NONE,
	.write = PIPE_WRITES)
{
	pipe_write = ctx->write;
	sigpipe_by_disposition(VIA_PIPE_WRITE);
}

/* 5b. A SIGPIPE handler runs once per failed write to the pipe, which
 * returns EPIPE; installed through signal() and through sigaction(). */
SP_TEST(sigpipe_handler_runs_and_write_fails_with_epipe, "PIPE-EPIPE", SP_NONE,
	.how = SP_NAMES("signal()", "sigaction()"), .write = PIPE_WRITES)
{
	pipe_write = ctx->write;
	sigpipe_handler_per_write(VIA_PIPE_WRITE, ctx->how);
}

/* 5c. The same on a stream socket whose peer is gone (an AF_UNIX pair):
 * write() and send() raise SIGPIPE, send(MSG_NOSIGNAL) gives EPIPE alone;
 * by disposition and through a handler of either kind. */
SP_TEST(socket_without_peer_raises_sigpipe_unless_nosignal, "FLAG-NOSIGNAL", SP_NONE,
	.how = SP_NAMES("write() to a socket", "send() on a socket",
			"send(MSG_NOSIGNAL) on a socket", "sendmmsg(MSG_NOSIGNAL) on a socket"))
{
	static const int via_of[] = { VIA_SOCK_WRITE, VIA_SOCK_SEND, VIA_SOCK_SEND_NOSIGNAL,
				      VIA_SOCK_SENDMMSG_NOSIGNAL };
	const int via = via_of[ctx->how];
	sigpipe_by_disposition(via);
	sigpipe_handler_per_write(via, 0);
	sigpipe_handler_per_write(via, 1);
}

/* 6. Writes of at most PIPE_BUF bytes are atomic: never split, even when
 * the pipe is partly full, and never interleaved among several writers;
 * through write, writev and io_uring WRITE/WRITEV (.write). splice and
 * sendfile are left out: the atomicity of PIPE_BUF is promised to
 * write(2), and a splice into a pipe moves buffers, not one record. */
enum { WRITERS = 4, RECORDS = 48, PREFILL = 1000 };
struct atomic_writer { int fd; int id; size_t size; int api; };

static int write_records(void *arg)
{
	struct atomic_writer *w = arg;
	char *rec = malloc(w->size);
	memset(rec, 'A' + w->id, w->size);
	for (int i = 0; i < RECORDS; i++)
		if (sp_io_out(w->api, w->fd, rec, w->size, 0) != (ssize_t)w->size)
			return 1; /* a short count is a split record */
	return 0;
}

/* Fill a non-blocking pipe with PIPE_BUF writes until EAGAIN; returns bytes. */
static long fill_pipe(int fd, int api, long pipe_buf, char *block)
{
	long fit = 0;
	ssize_t n;
	while ((n = sp_io_out(api, fd, block, (size_t)pipe_buf, 0)) > 0)
		fit += n;
	ASSERT_TRUE(n < 0 && errno == EAGAIN, "a full non-blocking pipe says EAGAIN (%s)",
		    sp_errno_name(errno));
	return fit;
}

SP_TEST(small_pipe_writes_are_atomic, "PIPE-ATOMIC", SP_NONE,
	.write = SP_VALUES(SP_IO_READ, SP_IO_VEC, SP_IO_URING_RW, SP_IO_URING_VEC))
{
	int fds[2], inq = 0, api = ctx->write;
	/* (a) is a non-blocking write's all-or-nothing: an io_uring WRITE
	 * cannot ask for it on every kernel (Linux 6.1 keeps the request
	 * waiting on a full non-blocking pipe), so write() makes (a) there;
	 * the blocking writers of (b) go through the item's call. */
	const int nb_api = uring_call(api) ? SP_IO_READ : api;
	struct atomic_writer w[WRITERS];
	pid_t pids[WRITERS];

	pipe_ends_checked(fds);
	long pipe_buf = fpathconf(fds[1], _PC_PIPE_BUF);
	RECORD_ONCE("PIPE_BUF", "%ld", pipe_buf);
	ASSERT_TRUE(pipe_buf >= 512, "PIPE_BUF is at least POSIX's 512 (%ld)", pipe_buf);
#ifdef F_GETPIPE_SZ
	RECORD_ONCE("capacity_F_GETPIPE_SZ", "%d", fcntl(fds[1], F_GETPIPE_SZ));
#endif
	char *block = malloc((size_t)pipe_buf), *scratch = malloc((size_t)pipe_buf);
	memset(block, 'x', (size_t)pipe_buf);

	/* (a) Non-blocking, partly full: fill, take one record out, put
	 * PREFILL bytes back. Less than PIPE_BUF is free now, so a write of
	 * PIPE_BUF must write all or nothing: EAGAIN, never a short count. */
	sp_set_nonblock(fds[1], 1);
	long cap = fill_pipe(fds[1], nb_api, pipe_buf, block);
	RECORD_ONCE("capacity_before_eagain", "%ld", cap);
	ASSERT_EQ(pipe_buf, read(fds[0], scratch, (size_t)pipe_buf));
	ASSERT_EQ(PREFILL, write(fds[1], block, PREFILL));
	ASSERT_SYS(ioctl(fds[0], FIONREAD, &inq));
	long free_now = cap - inq;
	REQUIRE(free_now > 0 && free_now < pipe_buf,
		"a pipe with room for less than PIPE_BUF bytes (room %ld)", free_now);
	errno = 0;
	ssize_t r = sp_io_out(nb_api, fds[1], block, (size_t)pipe_buf, 0);
	int err = errno;
	RECORD_ONCE("nonblocking_write_partly_full", "%s", r < 0 ? sp_errno_name(err) : "written");
	ASSERT_TRUE(r == pipe_buf || (r == -1 && err == EAGAIN),
		    "a non-blocking %s() of PIPE_BUF with %ld bytes free writes all or nothing "
		    "(got %zd, %s)", sp_io_out_name(nb_api), free_now, r, r < 0 ? sp_errno_name(err) : "-");
	int after = 0;
	ASSERT_SYS(ioctl(fds[0], FIONREAD, &after));
	ASSERT_EQ(r == pipe_buf ? inq + pipe_buf : inq, after);
	/* With room for it again, the whole record goes in at once. */
	if (r < 0) {
		ASSERT_EQ(pipe_buf, read(fds[0], scratch, (size_t)pipe_buf));
		ASSERT_EQ(pipe_buf, write(fds[1], block, (size_t)pipe_buf));
	}
	/* Empty it again. */
	sp_set_nonblock(fds[0], 1);
	while (read(fds[0], scratch, (size_t)pipe_buf) > 0)
		;
	sp_set_nonblock(fds[0], 0);
	sp_set_nonblock(fds[1], 0);

	/* (b) Blocking, several writers, records of different sizes up to
	 * PIPE_BUF, the pipe started partly full (PREFILL bytes) and read in
	 * odd-sized pieces, so free space is never a multiple of a record. */
	size_t sizes[WRITERS] = { (size_t)pipe_buf, (size_t)pipe_buf - 1,
				  (size_t)pipe_buf / 2 + 3, 1000 };
	memset(block, 'P', PREFILL);
	ASSERT_EQ(PREFILL, write(fds[1], block, PREFILL));
	for (int i = 0; i < WRITERS; i++) {
		w[i] = (struct atomic_writer){ fds[1], i, sizes[i], api };
		pids[i] = sp_fork(write_records, &w[i]);
	}
	ASSERT_SYS(close(fds[1]));
	size_t total = PREFILL;
	for (int i = 0; i < WRITERS; i++)
		total += RECORDS * sizes[i];
	char *all = malloc(total);
	size_t got = 0;
	while (got < total) {
		REQUIRE(sp_poll(fds[0], POLLIN, sp_wait_ms()) & (POLLIN | POLLHUP),
			"the writers keep writing (%zu of %zu bytes)", got, total);
		size_t want = total - got < 3001 ? total - got : 3001;
		ssize_t n = read(fds[0], all + got, want);
		if (n == 0) {
			/* EOF early: did a writer come up short (a split record),
			 * or did the pipe drop what was left when the last writer
			 * went (PIPE-EOF's behavior, a mechanism here)? */
			for (int i = 0; i < WRITERS; i++)
				sp_reap_exit(pids[i], 0);
			BROKEN_NEEDS("PIPE-EOF", "EOF after %zu of %zu bytes, though every writer "
				     "wrote all its records: the rest was lost when the last writer "
				     "closed", got, total);
		}
		ASSERT_TRUE(n > 0, "read %zu of %zu bytes before EOF (%s)", got, total,
			    sp_errno_name(errno));
		got += (size_t)n;
	}
	ASSERT_EQ(0, read(fds[0], scratch, 1)); /* nothing more */
	for (size_t i = 0; i < PREFILL; i++)
		ASSERT_TRUE(all[i] == 'P', "byte %zu read: expected 'P' (the prefill comes first, "
			    "whole), observed '%c'", i, all[i]);
	int counts[WRITERS] = { 0 };
	for (size_t off = PREFILL; off < total;) {
		char who = all[off];
		ASSERT_TRUE(who >= 'A' && who < 'A' + WRITERS, "a record of a known writer at byte %zu",
			    off);
		size_t n = sizes[who - 'A'];
		for (size_t i = 1; i < n; i++)
			if (off + i >= total || all[off + i] != who)
				FAIL("the %zu-byte record of writer '%c' at byte %zu is split (byte %zu "
				     "is '%c')", n, who, off, off + i, off + i < total ? all[off + i] : '?');
		counts[who - 'A']++;
		off += n;
	}
	for (int i = 0; i < WRITERS; i++) {
		ASSERT_EQ(RECORDS, counts[i]);
		sp_reap_exit(pids[i], 0);
	}
	free(all);
	free(block);
	free(scratch);
}

SP_MAIN("pipe")
