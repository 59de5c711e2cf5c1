/*
 * exec.c - close-on-exec (catalogue part 3, "Close-on-exec"; socket(2)
 * SOCK_CLOEXEC, socketpair(2), accept4(2), fcntl(2) F_SETFD/F_DUPFD_CLOEXEC,
 * dup(2), dup3(2), execve(2)).
 *
 *  1. EXEC-SOCK-CLOEXEC    socket(SOCK_CLOEXEC), socketpair(SOCK_CLOEXEC)
 *                          (both ends) and accept4(SOCK_CLOEXEC) give
 *                          FD_CLOEXEC set, the calls without it clear; after
 *                          execve() the first are closed, the others are
 *                          open sockets.
 *  2. EXEC-FCNTL-CLOEXEC   F_SETFL with O_CLOEXEC sets nothing, F_SETFD
 *                          FD_CLOEXEC does; dup() gives it clear,
 *                          F_DUPFD_CLOEXEC and (Linux) dup3(O_CLOEXEC) set;
 *                          the flag is each descriptor's own; after execve()
 *                          exactly the FD_CLOEXEC ones are closed.
 *  3. EXEC-PEER-EOF        the only other copy of a connected TCP socket,
 *                          FD_CLOEXEC in a child that calls execve(): the
 *                          peer reads EOF at the exec while the child still
 *                          runs; without FD_CLOEXEC no EOF (200 ms) until the
 *                          exec'd child exits.
 *
 * The new program is this probe itself, re-executed in a helper mode
 * (`--exec-report FD HOLD fd...`): it writes one letter per descriptor to
 * FD (C closed, S an open socket, O open but no socket), then, where HOLD
 * is a descriptor, waits until it reads EOF there and exits 0. The moment of
 * the exec is seen through a close-on-exec pipe, which reads EOF then (and
 * carries the errno if the exec failed).
 *
 * Platform-defined (recorded): socket() with an unknown type flag.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ---- the exec'd helper ------------------------------------------------------ */

static int exec_report(int argc, char **argv)
{
	int out = atoi(argv[2]), hold = atoi(argv[3]);
	for (int i = 4; i < argc; i++) {
		int fd = atoi(argv[i]);
		struct stat st;
		char c = fcntl(fd, F_GETFD) < 0 && errno == EBADF ? 'C' :
			 fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? 'S' : 'O';
		if (write(out, &c, 1) != 1)
			return 3;
	}
	close(out);
	if (hold >= 0) {
		char c;
		while (read(hold, &c, 1) > 0)
			;
	}
	return 0;
}

/* ---- exec from a child ------------------------------------------------------- */

/* This probe's own path: what /proc/self/exe names (readlink, which
 * valgrind answers with the probe, where an exec of /proc/self/exe itself
 * would start valgrind's tool), else sp_self_exe(). */
static const char *self_path(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n > 0) {
		path[n] = '\0';
		if (access(path, X_OK) == 0)
			return path;
	}
	return sp_self_exe();
}

#define MAXFDS 12
struct exec_plan {
	int fds[MAXFDS], n;  /* descriptors the new program reports on */
	int report;          /* write end of the report pipe (inherited) */
	int hold;            /* read end the new program waits on, or -1 */
	int seen;            /* write end of the close-on-exec exec pipe */
};

static int exec_self(void *arg)
{
	struct exec_plan *p = arg;
	char a[MAXFDS + 4][16], *argv[MAXFDS + 6];
	int k = 0;

	argv[k++] = "probe";
	argv[k++] = "--exec-report";
	snprintf(a[0], sizeof(a[0]), "%d", p->report);
	snprintf(a[1], sizeof(a[1]), "%d", p->hold);
	argv[k++] = a[0];
	argv[k++] = a[1];
	for (int i = 0; i < p->n; i++) {
		snprintf(a[i + 2], sizeof(a[i + 2]), "%d", p->fds[i]);
		argv[k++] = a[i + 2];
	}
	argv[k] = NULL;
	execv(self_path(), argv);
	int e = errno;
	if (write(p->seen, &e, sizeof(e)) < 0)
		return 98;
	return 99;
}

/* pipe2() whose ends are checked once with a byte: PIPE-ENDS' behavior,
 * a mechanism here (broken, needs it, when fds[1] does not write to
 * fds[0]). */
static void checked_pipe(int fds[2], int flags)
{
	char c = 'e';
	ASSERT_SYS(pipe2(fds, flags));
	ssize_t w = write(fds[1], &c, 1);
	int fl = fcntl(fds[0], F_GETFL);
	fcntl(fds[0], F_SETFL, fl | O_NONBLOCK);
	ssize_t r = w == 1 ? read(fds[0], &c, 1) : -1;
	fcntl(fds[0], F_SETFL, fl);
	if (w != 1 || r != 1)
		BROKEN_NEEDS("PIPE-ENDS", "a byte written to a new pipe's fds[1] %s", w != 1 ?
			     "could not be written" : "did not come out of fds[0]");
}

/* What the peer's next read gives, after a bounded wait for it to become
 * readable: 0 at EOF, -1 with errno (EAGAIN: nothing), 1 for data. Read
 * directly: readiness at EOF is MUX-READABLE-EOF's behavior. */
static ssize_t peer_end(int fd, int wait_ms, int *err)
{
	char b;
	sp_poll(fd, POLLIN, wait_ms);
	errno = 0;
	ssize_t r = recv(fd, &b, 1, MSG_DONTWAIT);
	*err = errno;
	return r;
}

/* Has the child ended (waitable, not collected)? */
static int child_ended(void *arg)
{
	pid_t pid = *(pid_t *)arg;
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Start the child that execs; returns its pid once the exec happened
 * (the exec pipe read EOF). The report pipe's read end is *report_rd. */
static pid_t start_exec(struct exec_plan *p, int *report_rd)
{
	int rp[2], sp[2];
	checked_pipe(rp, 0);         /* the report: inherited by the new program */
	checked_pipe(sp, O_CLOEXEC); /* the exec: closes at execve() */
	p->report = rp[1];
	p->seen = sp[1];
	pid_t pid = sp_fork(exec_self, p);
	close(rp[1]);
	close(sp[1]);
	int e = 0;
	EXPECT_EVENTS(sp[0], POLLIN, POLLIN | POLLHUP, "the child execs");
	ssize_t r = read(sp[0], &e, sizeof(e));
	close(sp[0]);
	REQUIRE(r == 0, "the child re-executes this probe (%s: %s)", self_path(),
		r > 0 ? sp_errno_name(e) : "exec pipe error");
	*report_rd = rp[0];
	return pid;
}

/* What the new program saw: one letter per planned descriptor. */
static void read_report(int rd, char *seen, int n)
{
	int got = 0;
	while (got < n) {
		EXPECT_EVENTS(rd, POLLIN, POLLIN | POLLHUP, "the new program reports");
		ssize_t r = read(rd, seen + got, (size_t)(n - got));
		REQUIRE(r > 0, "the new program's report (%d of %d letters)", got, n);
		got += (int)r;
	}
	seen[n] = '\0';
	close(rd);
}

static int cloexec(int fd)
{
	return (int)ASSERT_SYS(fcntl(fd, F_GETFD)) & FD_CLOEXEC;
}

static const char *letter(char c)
{
	return c == 'C' ? "closed" : c == 'S' ? "an open socket" : "open, not a socket";
}

/* Run the plan; expect[i] is what descriptor i must be in the new program. */
static void exec_and_expect(struct exec_plan *p, const char *const *names, const char *expect)
{
	int rd;
	char seen[MAXFDS + 1];
	p->hold = -1;
	pid_t pid = start_exec(p, &rd);
	read_report(rd, seen, p->n);
	sp_reap_exit(pid, 0);
	for (int i = 0; i < p->n; i++)
		if (seen[i] != expect[i])
			FAIL("after execve(), %s (fd %d) is %s, expected %s", names[i], p->fds[i],
			     letter(seen[i]), letter(expect[i]));
}

/* ---- 1. EXEC-SOCK-CLOEXEC ---------------------------------------------------- */

SP_TEST(sock_cloexec_descriptors_close_at_exec, "EXEC-SOCK-CLOEXEC", SP_INET)
{
	struct exec_plan p = { .n = 0 };
	const char *names[MAXFDS];
	char expect[MAXFDS + 1];
#define PLAN(fd, name, e) (p.fds[p.n] = (fd), names[p.n] = (name), expect[p.n++] = (e))

	int t1 = (int)ASSERT_SYS(socket(ctx->af, SOCK_STREAM | SOCK_CLOEXEC, 0));
	int t0 = (int)ASSERT_SYS(socket(ctx->af, SOCK_STREAM, 0));
	int u1 = (int)ASSERT_SYS(socket(ctx->af, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	int u0 = (int)ASSERT_SYS(socket(ctx->af, SOCK_DGRAM, 0));
	ASSERT_TRUE(cloexec(t1), "socket(SOCK_STREAM | SOCK_CLOEXEC): expected FD_CLOEXEC set, "
		    "observed clear");
	ASSERT_TRUE(cloexec(u1), "socket(SOCK_DGRAM | SOCK_CLOEXEC): expected FD_CLOEXEC set, "
		    "observed clear");
	ASSERT_TRUE(!cloexec(t0), "socket(SOCK_STREAM): expected FD_CLOEXEC clear, observed set");
	ASSERT_TRUE(!cloexec(u0), "socket(SOCK_DGRAM): expected FD_CLOEXEC clear, observed set");
	PLAN(t1, "socket(SOCK_STREAM | SOCK_CLOEXEC)", 'C');
	PLAN(t0, "socket(SOCK_STREAM)", 'S');
	PLAN(u1, "socket(SOCK_DGRAM | SOCK_CLOEXEC)", 'C');
	PLAN(u0, "socket(SOCK_DGRAM)", 'S');

	int sv1[2], sv0[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv1));
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv0));
	for (int i = 0; i < 2; i++) {
		ASSERT_TRUE(cloexec(sv1[i]), "socketpair(SOCK_CLOEXEC) end %d has FD_CLOEXEC set", i);
		ASSERT_TRUE(!cloexec(sv0[i]), "socketpair() end %d has FD_CLOEXEC clear", i);
	}
	PLAN(sv1[0], "socketpair(SOCK_CLOEXEC) end 0", 'C');
	PLAN(sv1[1], "socketpair(SOCK_CLOEXEC) end 1", 'C');
	PLAN(sv0[0], "socketpair() end 0", 'S');

	int l = sp_tcp_listener(ctx, 0);
	int c1 = sp_tcp_connect(ctx, l), c0 = sp_tcp_connect(ctx, l);
	/* The connections queued at the listener: connect() completing
	 * through the listen queue is TCP-HANDSHAKE-BEFORE-ACCEPT's. */
	int ev = sp_poll(l, POLLIN, sp_wait_ms());
	if (!(ev & POLLIN))
		BROKEN_NEEDS("TCP-HANDSHAKE-BEFORE-ACCEPT", "no connection queued at the listener "
			     "%d ms after connect() returned (poll: %s)", sp_wait_ms(),
			     sp_events_str(ev));
	int a1 = (int)ASSERT_SYS(accept4(l, NULL, NULL, SOCK_CLOEXEC));
	int a0 = (int)ASSERT_SYS(accept4(l, NULL, NULL, 0));
	ASSERT_TRUE(cloexec(a1), "accept4(SOCK_CLOEXEC): expected FD_CLOEXEC set, observed clear");
	if (cloexec(a0)) /* the listener's FD_CLOEXEC was inherited */
		BROKEN_NEEDS("LISTEN-ACCEPT4-FLAGS", "accept4(0) gave a socket with FD_CLOEXEC set, "
			     "so no accepted socket without it can cross the execve()");
	PLAN(a1, "accept4(SOCK_CLOEXEC)", 'C');
	PLAN(a0, "accept4(0)", 'S');
#undef PLAN
	exec_and_expect(&p, names, expect);

	errno = 0;
	int bad = socket(ctx->af, SOCK_STREAM | 0x40000000, 0);
	RECORD("socket_unknown_type_flag", "%s", bad >= 0 ? "succeeds" : sp_errno_name(errno));
	if (bad >= 0)
		close(bad);
	int fds[] = { t1, t0, u1, u0, sv1[0], sv1[1], sv0[0], sv0[1], l, c1, c0, a1, a0 };
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		close(fds[i]);
}

/* ---- 2. EXEC-FCNTL-CLOEXEC --------------------------------------------------- */

SP_TEST(fd_cloexec_is_set_by_setfd_not_setfl, "EXEC-FCNTL-CLOEXEC", SP_NONE)
{
	(void)ctx;
	int sv[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	int fd = sv[0];

	int fl = (int)ASSERT_SYS(fcntl(fd, F_GETFL));
	ASSERT_SYS(fcntl(fd, F_SETFL, fl | O_CLOEXEC));
	if (cloexec(fd))
		FAIL("fcntl(F_SETFL, flags | O_CLOEXEC) set FD_CLOEXEC, expected F_GETFD to stay 0 "
		     "(F_SETFL ignores file creation flags)");
	ASSERT_EQ(0, fcntl(fd, F_GETFD));

	int set = (int)ASSERT_SYS(socket(AF_UNIX, SOCK_DGRAM, 0));
	ASSERT_SYS(fcntl(set, F_SETFD, FD_CLOEXEC));
	ASSERT_TRUE(cloexec(set), "F_GETFD after fcntl(F_SETFD, FD_CLOEXEC): expected FD_CLOEXEC "
		    "set, observed clear");

	int d = (int)ASSERT_SYS(dup(set));
	ASSERT_TRUE(!cloexec(d), "dup() of a FD_CLOEXEC descriptor: expected FD_CLOEXEC clear, "
		    "observed set");
	int dc = (int)ASSERT_SYS(fcntl(fd, F_DUPFD_CLOEXEC, 0));
	ASSERT_TRUE(cloexec(dc), "fcntl(F_DUPFD_CLOEXEC): expected FD_CLOEXEC set, observed clear");
	int df = (int)ASSERT_SYS(fcntl(set, F_DUPFD, 0));
	ASSERT_TRUE(!cloexec(df), "fcntl(F_DUPFD) of a FD_CLOEXEC descriptor: expected FD_CLOEXEC "
		    "clear, observed set");

	/* Linux: dup3(O_CLOEXEC). The target number is a free one. */
	int d3 = (int)ASSERT_SYS(dup(fd));
	close(d3);
	int have_dup3 = dup3(fd, d3, O_CLOEXEC) == d3;
	if (!have_dup3)
		RECORD("dup3", "fails with %s", sp_errno_name(errno));
	else
		ASSERT_TRUE(cloexec(d3), "dup3(O_CLOEXEC): expected FD_CLOEXEC set, "
			    "observed clear");

	/* Each descriptor's own: clearing it on the original leaves the dup's. */
	int orig = (int)ASSERT_SYS(fcntl(sv[1], F_DUPFD_CLOEXEC, 0));
	int copy = (int)ASSERT_SYS(fcntl(orig, F_DUPFD_CLOEXEC, 0));
	ASSERT_SYS(fcntl(orig, F_SETFD, 0));
	ASSERT_TRUE(!cloexec(orig), "F_GETFD after fcntl(F_SETFD, 0): expected FD_CLOEXEC clear, "
		    "observed set");
	ASSERT_TRUE(cloexec(copy), "the F_DUPFD_CLOEXEC duplicate after F_SETFD 0 on the original: "
		    "expected FD_CLOEXEC still set (the flag is the descriptor's, not the open "
		    "file's), observed clear");

	struct exec_plan p = { .n = 0 };
	const char *names[MAXFDS];
	char expect[MAXFDS + 1];
#define PLAN(f, name, e) (p.fds[p.n] = (f), names[p.n] = (name), expect[p.n++] = (e))
	PLAN(fd, "the F_SETFL O_CLOEXEC descriptor", 'S');
	PLAN(set, "the F_SETFD FD_CLOEXEC descriptor", 'C');
	PLAN(d, "its dup()", 'S');
	PLAN(dc, "the F_DUPFD_CLOEXEC descriptor", 'C');
	PLAN(df, "the F_DUPFD descriptor", 'S');
	PLAN(orig, "the descriptor whose FD_CLOEXEC was cleared", 'S');
	PLAN(copy, "its F_DUPFD_CLOEXEC duplicate", 'C');
	if (have_dup3)
		PLAN(d3, "the dup3(O_CLOEXEC) descriptor", 'C');
#undef PLAN
	exec_and_expect(&p, names, expect);
	int all[] = { sv[0], sv[1], set, d, dc, df, orig, copy };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		close(all[i]);
	if (have_dup3)
		close(d3);
}

/* ---- 3. EXEC-PEER-EOF ---------------------------------------------------------- */

/* The child keeps s across fork; `keep` decides FD_CLOEXEC on it. The new
 * program waits on the hold pipe. Returns the child; *release the write
 * end of the hold pipe. */
static pid_t exec_with_copy(int s, int keep, int *release)
{
	int hold[2], rd;
	checked_pipe(hold, O_CLOEXEC);
	ASSERT_SYS(fcntl(hold[0], F_SETFD, 0)); /* the new program waits on it */
	ASSERT_SYS(fcntl(s, F_SETFD, keep ? 0 : FD_CLOEXEC));
	struct exec_plan p = { .fds = { s }, .n = 1, .hold = hold[0] };
	pid_t pid = start_exec(&p, &rd);
	close(hold[0]);
	char seen[2];
	read_report(rd, seen, 1);
	if (seen[0] != (keep ? 'S' : 'C'))
		BROKEN_NEEDS("EXEC-FCNTL-CLOEXEC", "the socket is %s in the new program (it is %s)",
			     keep ? "open" : "closed", letter(seen[0]));
	*release = hold[1];
	return pid;
}

SP_TEST(peer_reads_eof_when_cloexec_copy_execs, "EXEC-PEER-EOF", SP_INET)
{
	int c, s, release, st;

	/* FD_CLOEXEC: EOF at the exec, the child still running. */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(fcntl(c, F_SETFD, FD_CLOEXEC));
	pid_t pid = exec_with_copy(s, 0, &release);
	close(s); /* the child's copy is now the only one */
	int err;
	ssize_t r = peer_end(c, sp_wait_ms(), &err);
	/* A close that resets instead of ending the connection is
	 * TCP-CLOSE-FLUSHES-OUTPUT's deviation, a mechanism here. */
	if (r < 0 && err == ECONNRESET)
		BROKEN_NEEDS("TCP-CLOSE-FLUSHES-OUTPUT", "the close of the last copy at the exec "
			     "reset the connection (the peer's recv(): ECONNRESET) instead of ending it");
	if (r != 0)
		FAIL("the peer reads EOF within %d ms of the exec that closed the only other copy "
		     "(FD_CLOEXEC): recv() returned %zd (%s)", sp_wait_ms(), r,
		     r < 0 ? sp_errno_name(err) : "data");
	/* The exec'd program still runs: it waits on the hold pipe (a
	 * blocking read of an empty pipe, PIPE-EOF's behavior). */
	if (child_ended(&pid))
		BROKEN_NEEDS("PIPE-EOF", "the exec'd program ended before it was released: its "
			     "read of the empty hold pipe returned at once");
	ASSERT_EQ(0, waitpid(pid, &st, WNOHANG));
	close(release);
	sp_reap_exit(pid, 0);
	close(c);

	/* No FD_CLOEXEC: the exec'd child keeps the connection; EOF at its exit. */
	sp_tcp_pair(ctx, &c, &s);
	ASSERT_SYS(fcntl(c, F_SETFD, FD_CLOEXEC));
	pid = exec_with_copy(s, 1, &release);
	close(s);
	r = peer_end(c, 200, &err);
	/* The exec'd program waits on the hold pipe (a blocking read of an
	 * empty pipe: PIPE-EOF's behavior); if it ended, its copy went. */
	if (r == 0 && sp_wait_until(child_ended, &pid, sp_wait_ms()))
		BROKEN_NEEDS("PIPE-EOF", "the exec'd program holding the socket ended before it was "
			     "released: its read of the empty hold pipe returned at once");
	if (!(r < 0 && (err == EAGAIN || err == EWOULDBLOCK)))
		FAIL("the peer has nothing to read and no EOF while the exec'd child still holds "
		     "the socket (no FD_CLOEXEC): recv() returned %zd (%s)", r,
		     r < 0 ? sp_errno_name(err) : r == 0 ? "EOF" : "data");
	ASSERT_EQ(0, waitpid(pid, &st, WNOHANG));
	close(release);
	sp_reap_exit(pid, 0);
	r = peer_end(c, sp_wait_ms(), &err);
	if (r != 0)
		FAIL("the peer reads EOF within %d ms of the exec'd child's exit: recv() returned "
		     "%zd (%s)", sp_wait_ms(), r, r < 0 ? sp_errno_name(err) : "data");
	close(c);
}

/* SP_MAIN, with the helper mode the exec'd program runs in. */
int main(int argc, char **argv)
{
	if (argc >= 4 && strcmp(argv[1], "--exec-report") == 0)
		return exec_report(argc, argv);
	return sp_main(argc, argv, "exec", NULL, 0);
}
