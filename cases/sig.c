/*
 * sig.c - signal handling (seed notes: "信号处理", "sigaction函数",
 * "基于进程").
 *
 * Checks:
 *
 *  1. SIG-HANDLER-RUNS     a real alarm(1) fires once, into a handler
 *                          installed with signal(), and is not re-armed.
 *  2. SIG-HANDLER-RUNS     one installed handler runs on every delivery,
 *                          not just the first (no System V one-shot
 *                          reset): SIGALRM from setitimer, SIGINT from
 *                          kill(), SIGCHLD from exiting children, each
 *                          through signal() and through sigaction(); the
 *                          disposition stays the handler and the signal is
 *                          blocked while its handler runs. SA_RESETHAND, asked
 *                          for, does reset after one delivery.
 *  3. SIG-INTERRUPTS-SLEEP a caught signal ends the sleeps (nanosleep,
 *                          sleep, clock_nanosleep) early with the time left,
 *                          with or without SA_RESTART (they never restart).
 *  4. SIG-INTERRUPTS-SLEEP a blocking read() on a pipe and recv() on a
 *                          socket (no timeout set) fail with EINTR when the
 *                          handler has no SA_RESTART.
 *  5. SIG-CHLD-REAPS-ALL   a SIGCHLD handler looping on waitpid(WNOHANG)
 *                          reaps every one of several children that end at
 *                          once, though their signals merge; installed with
 *                          signal() and with sigaction().
 *
 * Waiting for a handler is a bounded wait for an event: the handler ends a
 * poll() with EINTR; nothing sleeps to synchronise (the sleeps of check 3
 * are the behavior under test). An interrupting signal is sent only once
 * /proc shows the target asleep in its call (else the check is broken).
 *
 * Platform-defined (recorded): whether a read interrupted under a handler
 * from signal() restarts (glibc: yes, BSD semantics; System V: no), and
 * under one from sigaction() with SA_RESTART (Linux: yes; the restart of
 * socket calls is INTR-RESTART-SOCKET-CALLS' Must, catalogue part 3); how
 * many SIGCHLD handler calls it took to reap the children.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>
#include <sys/wait.h>

static volatile sig_atomic_t hits[NSIG];
static volatile sig_atomic_t blocked_inside[NSIG]; /* sig was masked in its handler */

static void count(int sig)
{
	sigset_t now;
	hits[sig]++;
	if (sigprocmask(SIG_BLOCK, NULL, &now) == 0 && sigismember(&now, sig))
		blocked_inside[sig]++;
}

/* Wait (bounded) until the handler for sig has run `want` times. */
struct want_hits { int sig, want; };

static int hits_reached(void *p)
{
	struct want_hits *w = p;
	return hits[w->sig] >= w->want;
}

static int handled(int sig, int want)
{
	struct want_hits w = { sig, want };
	sp_wait_until(hits_reached, &w, sp_wait_ms()); /* a signal ends each tick early */
	return hits[sig];
}

static void timer_ms(int ms)
{
	struct itimerval it = { .it_value = { ms / 1000, (ms % 1000) * 1000 } };
	ASSERT_SYS(setitimer(ITIMER_REAL, &it, NULL));
}

/* SIGALRM every ms until disarmed (timer_ms(0)): a sleep started after
 * the first one (the process was not scheduled in between: a loaded
 * machine, a ptrace sandbox) is still cut short by the next. */
static void timer_every_ms(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	struct itimerval it = { .it_value = tv, .it_interval = tv };
	ASSERT_SYS(setitimer(ITIMER_REAL, &it, NULL));
}

static const char *how_name(int with_sigaction)
{
	return with_sigaction ? "sigaction()" : "signal()";
}

/* Install `count` for sig, through signal() or sigaction() (flags). */
static void install_flags(int sig, int with_sigaction, int flags)
{
	if (with_sigaction) {
		struct sigaction sa = { .sa_handler = count, .sa_flags = flags };
		sigemptyset(&sa.sa_mask);
		ASSERT_SYS(sigaction(sig, &sa, NULL));
	} else {
		ASSERT_TRUE(signal(sig, count) != SIG_ERR, "signal(%s) installs the handler",
			    sp_signal_name(sig));
	}
	hits[sig] = blocked_inside[sig] = 0;
}

static void install(int sig, int with_sigaction)
{
	install_flags(sig, with_sigaction, 0);
}

/* The disposition now in force for sig must still be the handler. */
static void still_installed(int sig, int with_sigaction, int after)
{
	struct sigaction now;
	ASSERT_SYS(sigaction(sig, NULL, &now));
	ASSERT_TRUE(now.sa_handler == count,
		    "the %s handler for %s is still installed after %d deliveries "
		    "(disposition %s)", how_name(with_sigaction), sp_signal_name(sig), after,
		    now.sa_handler == SIG_DFL ? "SIG_DFL" :
		    now.sa_handler == SIG_IGN ? "SIG_IGN" : "another handler");
}

/* A pipe used as a channel. Its ends are PIPE-ENDS' behavior, a mechanism
 * here: the fixture barrier is such a pipe, checked once (broken, needs
 * PIPE-ENDS, when fds[1] does not write to fds[0]). */
static void channel_pipe(int fds[2])
{
	struct sp_barrier b;

	sp_barrier_init(&b);
	fds[0] = b.fd[0];
	fds[1] = b.fd[1];
}

/* 1. alarm(1) really fires, once, into the handler. */
SP_TEST(alarm_fires_its_handler_once, "SIG-HANDLER-RUNS", SP_NONE, .slow = 1)
{
	(void)ctx;
	sigset_t alrm, open_mask;

	ASSERT_TRUE(signal(SIGALRM, count) != SIG_ERR, "signal(SIGALRM, handler): expected the "
		    "handler installed, observed SIG_ERR (%s)", sp_errno_name(errno));
	hits[SIGALRM] = 0;
	/* Held until ppoll() below opens the mask atomically: the handler
	 * cannot run between a check and the wait. */
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	ASSERT_SYS(sigprocmask(SIG_BLOCK, &alrm, &open_mask));
	sigdelset(&open_mask, SIGALRM);
	ASSERT_EQ(0, alarm(1)); /* nothing was scheduled before */
	ASSERT_EQ(0, hits[SIGALRM]); /* not at once */

	/* Wait for it: a second of alarm plus the usual bound. ppoll() ends
	 * with EINTR when the handler has run. */
	struct timespec start, now;
	long waited_ms = 0, bound_ms = 1000 + sp_wait_ms();
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (hits[SIGALRM] == 0 && waited_ms < bound_ms) {
		struct timespec ts = { (bound_ms - waited_ms) / 1000,
				       ((bound_ms - waited_ms) % 1000) * 1000000 };
		ppoll(NULL, 0, &ts, &open_mask);
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited_ms = (now.tv_sec - start.tv_sec) * 1000 +
			    (now.tv_nsec - start.tv_nsec) / 1000000;
	}
	ASSERT_SYS(sigprocmask(SIG_UNBLOCK, &alrm, NULL));
	RECORD("alarm_1_fired_after_ms", "%s", hits[SIGALRM] ? (waited_ms >= 900 ? ">=900" : "<900")
								: "never");
	ASSERT_TRUE(hits[SIGALRM] == 1, "alarm(1) ran the handler once within %ld ms (ran %d times)",
		    bound_ms, (int)hits[SIGALRM]);
	/* One-shot: nothing is left scheduled. */
	ASSERT_EQ(0, alarm(0));

	/* alarm() replaces a pending alarm and returns the seconds left. */
	ASSERT_EQ(0, alarm(30));
	unsigned left = alarm(0);
	RECORD("alarm_left_when_cancelled", "%u", left);
	ASSERT_TRUE(left > 0 && left <= 30, "alarm(0) returns the seconds left (%u)", left);
	ASSERT_EQ(0, alarm(0));
	ASSERT_EQ(1, hits[SIGALRM]); /* a cancelled alarm never fires */
}

enum { DELIVERIES = 3 };

/* 2a. SIGALRM from setitimer: one handler, every delivery. */
SP_TEST(sigalrm_handler_runs_on_every_delivery, "SIG-HANDLER-RUNS", SP_NONE,
	.how = SP_NAMES("signal()", "sigaction()"))
{
	const int how = ctx->how; /* 1: sigaction() */
	install(SIGALRM, how);
	for (int i = 1; i <= DELIVERIES; i++) {
		timer_ms(2);
		ASSERT_TRUE(handled(SIGALRM, i) == i, "the %s handler ran for SIGALRM %d of %d",
			    how_name(how), i, DELIVERIES);
		still_installed(SIGALRM, how, i);
	}
	ASSERT_EQ(DELIVERIES, blocked_inside[SIGALRM]); /* masked while it runs */
}

/* 2b. SIGINT (what Ctrl-C sends): the handler runs each time, the process
 * lives. */
SP_TEST(sigint_handler_runs_on_every_delivery, "SIG-HANDLER-RUNS", SP_NONE,
	.how = SP_NAMES("signal()", "sigaction()"))
{
	const int how = ctx->how; /* 1: sigaction() */
	install(SIGINT, how);
	for (int i = 1; i <= DELIVERIES; i++) {
		ASSERT_SYS(kill(getpid(), SIGINT));
		ASSERT_TRUE(handled(SIGINT, i) == i, "the %s handler ran for SIGINT %d of %d",
			    how_name(how), i, DELIVERIES);
		still_installed(SIGINT, how, i);
	}
	ASSERT_EQ(DELIVERIES, blocked_inside[SIGINT]);
}

static int exit_now(void *arg) { (void)arg; return 0; }

/* 2c. SIGCHLD: the handler runs each time a child ends. */
SP_TEST(sigchld_handler_runs_on_every_delivery, "SIG-HANDLER-RUNS", SP_NONE,
	.how = SP_NAMES("signal()", "sigaction()"))
{
	const int how = ctx->how; /* 1: sigaction() */
	install(SIGCHLD, how);
	for (int i = 1; i <= DELIVERIES; i++) {
		pid_t pid = sp_fork(exit_now, NULL);
		ASSERT_TRUE(handled(SIGCHLD, i) == i, "the %s handler ran for SIGCHLD %d of %d",
			    how_name(how), i, DELIVERIES);
		sp_reap_exit(pid, 0);
		still_installed(SIGCHLD, how, i);
	}
}

/* 2d. The one-shot reset happens only when asked for (SA_RESETHAND). */
SP_TEST(sa_resethand_resets_after_one_delivery, "SIG-HANDLER-RUNS", SP_NONE)
{
	(void)ctx;
	struct sigaction now;

	install_flags(SIGINT, 1, SA_RESETHAND);
	ASSERT_SYS(kill(getpid(), SIGINT));
	ASSERT_EQ(1, handled(SIGINT, 1));
	ASSERT_SYS(sigaction(SIGINT, NULL, &now));
	ASSERT_TRUE(now.sa_handler == SIG_DFL, "SA_RESETHAND: SIGINT is back to SIG_DFL after one "
		    "delivery (observed %s)", now.sa_handler == SIG_IGN ? "SIG_IGN" : "the handler");
}

/* 3. A caught signal cuts a sleep short, whatever SA_RESTART says. */
SP_TEST(caught_signal_cuts_sleep_short, "SIG-INTERRUPTS-SLEEP", SP_NONE,
	.how = SP_NAMES("without SA_RESTART", "with SA_RESTART"))
{
	const int restart = ctx->how;
	struct timespec want = { 2, 0 }, left = { 0, 0 };
	/* Installed again before each signal: that a handler stays
	 * installed after it ran is SIG-HANDLER-RUNS', not this ID's. */
	install_flags(SIGALRM, 1, restart ? SA_RESTART : 0);

	timer_every_ms(10);
	int r = nanosleep(&want, &left); /* SIG-INTERRUPTS-SLEEP: the behavior */
	int err = errno;
	timer_ms(0);
	RECORD(restart ? "nanosleep_left_ms_sa_restart" : "nanosleep_left_ms", "%s",
	       left.tv_sec * 1000 + left.tv_nsec / 1000000 > 1000 ? ">1000" : "<=1000");
	ASSERT_FAILED_WITH(r, err, EINTR);
	ASSERT_TRUE(left.tv_sec > 0 || left.tv_nsec > 0, "nanosleep returns the remaining time "
		    "(observed %ld.%09ld s)", (long)left.tv_sec, left.tv_nsec);

	install_flags(SIGALRM, 1, restart ? SA_RESTART : 0);
	timer_every_ms(10);
	unsigned rest = sleep(2); /* SIG-INTERRUPTS-SLEEP: returns what is left */
	timer_ms(0);
	ASSERT_TRUE(rest > 0, "a two-second sleep ends early with seconds left (%u)", rest);

	/* clock_nanosleep returns the error number itself. */
	left.tv_sec = left.tv_nsec = 0;
	install_flags(SIGALRM, 1, restart ? SA_RESTART : 0);
	timer_every_ms(10);
	r = clock_nanosleep(CLOCK_MONOTONIC, 0, &want, &left); /* SIG-INTERRUPTS-SLEEP */
	timer_ms(0);
	ASSERT_TRUE(r == EINTR, "clock_nanosleep() of 2 s with SIGALRM every 10 ms: expected "
		    "EINTR, observed %s", r ? sp_errno_name(r) : "0 (it slept the whole time)");
	ASSERT_TRUE(left.tv_sec > 0 || left.tv_nsec > 0,
		    "clock_nanosleep returns the remaining time (observed %ld.%09ld s)",
		    (long)left.tv_sec, left.tv_nsec);
	ASSERT_TRUE(hits[SIGALRM] >= 1, "the handler ran for the SIGALRM that cut the sleep short "
		    "(observed it ran %d times)", hits[SIGALRM]);
}

/* 4. A blocking read()/recv() and SA_RESTART. The interrupting signal
 * comes from a child once /proc shows us asleep in the call; the
 * handler writes one byte into what we read from, so a restarted call
 * returns it. A child that never sees us interrupted writes 'L' (late)
 * to end the call within the bound. */
static int feed_fd = -1;

static void feed(int sig)
{
	count(sig);
	if (write(feed_fd, "H", 1) != 1)
		hits[sig] += 100; /* shows up as a wrong count */
}

struct interrupter { pid_t target; int fd; struct sp_barrier done; };

static int interrupt_when_blocked(void *arg)
{
	struct interrupter *in = arg;
	if (!sp_wait_proc_state(in->target, 'S'))
		return 2;
	if (kill(in->target, SIGUSR1) != 0)
		return 3;
	/* If the call is still blocked after the bound, end it. */
	if (!(sp_poll(in->done.fd[0], POLLIN, sp_wait_ms()) & POLLIN))
		return write(in->fd, "L", 1) == 1 ? 4 : 5;
	return 0;
}

/* One interrupted call: mode 0 read() on a pipe, 1 recv() on a socket;
 * via 0 signal(), 1 sigaction() without SA_RESTART, 2 with. Returns the
 * call's result; *got holds the byte, *err its errno. */
static ssize_t interrupted_call(int mode, int via, char *got, int *err)
{
	int fds[2];
	struct interrupter in = { .target = getpid() };

	if (mode == 0)
		channel_pipe(fds);
	else
		ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, fds)); /* no SO_RCVTIMEO */
	feed_fd = in.fd = fds[1];
	sp_barrier_init(&in.done);
	if (via == 0) {
		if (signal(SIGUSR1, feed) == SIG_ERR)
			BROKEN_NEEDS("SIG-HANDLER-RUNS", "signal(SIGUSR1, handler) failed with %s, "
				     "expected the handler installed", sp_errno_name(errno));
	} else {
		struct sigaction sa = { .sa_handler = feed, .sa_flags = via == 2 ? SA_RESTART : 0 };
		sigemptyset(&sa.sa_mask);
		ASSERT_SYS(sigaction(SIGUSR1, &sa, NULL));
	}
	hits[SIGUSR1] = 0;
	pid_t kid = sp_fork(interrupt_when_blocked, &in);
	*got = 0;
	errno = 0;
	ssize_t r = mode == 0 ? read(fds[0], got, 1) : recv(fds[0], got, 1, 0);
	*err = errno;
	/* An empty pipe (or socket) whose writer is open reads EOF: the call
	 * never blocked, so there was nothing to interrupt. Blocking there is
	 * PIPE-EOF's behavior (a socket's: its peer has not shut down). */
	if (r == 0)
		BROKEN_NEEDS(mode == 0 ? "PIPE-EOF" : "CLOSE-HALF-WR-EOF",
			     "%s on an empty %s whose writer is open returned 0 (EOF) instead of "
			     "blocking", mode ? "recv()" : "read()", mode ? "socket" : "pipe");
	sp_barrier_pass(&in.done);
	int st = sp_reap(kid);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 2)
		BROKEN("/proc never showed the probe asleep in %s", mode ? "recv()" : "read()");
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		    "the %s call ended after the signal (interrupter %s; 4 = it wrote 'L' after "
		    "%d ms)", mode ? "recv()" : "read()", sp_status_str(st), sp_wait_ms());
	ASSERT_EQ(1, hits[SIGUSR1]);
	/* Whatever the handler wrote is there, once, after any restart. */
	char rest = 0;
	sp_set_nonblock(fds[0], 1);
	ssize_t more = read(fds[0], &rest, 1);
	if (r == 1)
		ASSERT_TRUE(more < 0 || rest != 'H', "a second read after the handler's byte: "
			    "expected nothing (it is read only once), observed the byte again");
	close(fds[0]);
	close(fds[1]);
	return r;
}

SP_TEST(signal_interrupts_blocking_read_unless_sa_restart, "SIG-INTERRUPTS-SLEEP", SP_NONE,
	.how = SP_NAMES("read() on a pipe", "recv() on a socket"))
{
	const int mode = ctx->how; /* 1: recv() on a socket */
	/* An environment without its own /proc (a container's read-only
	 * /proc) cannot show the call asleep before the signal: skip, as for
	 * any item that needs /proc, rather than blame the test set-up. */
	if (!sp_have_proc())
	SKIP("needs /proc of this pid namespace to see the probe asleep in the call "
	     "before interrupting it");
	char got;
	int err;
	/* Without SA_RESTART: EINTR. */
	ssize_t r = interrupted_call(mode, 1, &got, &err);
	ASSERT_TRUE(r == -1 && err == EINTR,
		    "%s interrupted by a handler without SA_RESTART: -1 EINTR "
		    "(got %zd, %s, byte '%c')", ctx->how_name, r, sp_errno_name(err), got);
	/* With SA_RESTART: recorded. That the call then goes on and returns
	 * the handler's byte is signal(7)'s restart rule, no Must of
	 * SIG-INTERRUPTS-SLEEP (INTR-RESTART-SOCKET-CALLS has it for socket
	 * calls); gVisor 2022 fails recv() with EINTR here. */
	r = interrupted_call(mode, 2, &got, &err);
	RECORD(mode ? "sa_restart_handler_recv" : "sa_restart_handler_read", "%s",
	       r == 1 && got == 'H' ? "restarted, returned the handler's byte" :
	       r < 0 && err == EINTR ? "EINTR" : "other");
	/* signal(): libc-defined (glibc: BSD semantics, restarts). */
	r = interrupted_call(mode, 0, &got, &err);
	RECORD(mode ? "signal_handler_recv" : "signal_handler_read", "%s",
	       r == 1 ? "restarted" : r < 0 && err == EINTR ? "EINTR" : "other");
	ASSERT_TRUE(r == 1 || (r < 0 && err == EINTR),
		    "%s under a signal() handler restarts or fails with EINTR (got %zd, %s)",
		    ctx->how_name, r, sp_errno_name(err));
}

/* 5. The SIGCHLD handler of the notes: loop on waitpid(WNOHANG). */
enum { KIDS = 8 };
static volatile sig_atomic_t reaped, handler_calls;
static int statuses[KIDS];

static void reap_all(int sig)
{
	int saved = errno, st;
	pid_t pid;
	(void)sig;
	handler_calls++;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
		if (reaped < KIDS)
			statuses[reaped++] = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	errno = saved;
}

struct gated_kid { int *gate, *done, code; };

/* A child that waits at the gate (EOF once the test closes its end) and
 * exits with its code; its copy of done[1] closes as it exits. */
static int exit_at_gate(void *arg)
{
	struct gated_kid *k = arg;
	char c;

	close(k->gate[1]);
	close(k->done[0]);
	(void)!read(k->gate[0], &c, 1); /* all wait at the same gate */
	return k->code;                 /* and end together */
}

static int all_reaped(void *arg)
{
	(void)arg;
	return reaped >= KIDS;
}

SP_TEST(sigchld_handler_reaps_children_ending_together, "SIG-CHLD-REAPS-ALL", SP_NONE,
	.how = SP_NAMES("signal()", "sigaction()"))
{
	const int how = ctx->how; /* 1: sigaction() */
	int gate[2], done[2];
	char c;
	sigset_t chld, old;

	reaped = handler_calls = 0;
	if (how) {
		struct sigaction sa = { .sa_handler = reap_all, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		ASSERT_SYS(sigaction(SIGCHLD, &sa, NULL));
	} else {
		if (signal(SIGCHLD, reap_all) == SIG_ERR)
			BROKEN_NEEDS("SIG-HANDLER-RUNS", "signal(SIGCHLD, handler) failed with %s, "
				     "expected the handler installed", sp_errno_name(errno));
	}
	channel_pipe(gate);
	channel_pipe(done);
	struct gated_kid kid[KIDS];
	pid_t pids[KIDS];
	for (int i = 0; i < KIDS; i++) {
		kid[i] = (struct gated_kid){ gate, done, 10 + i };
		pids[i] = sp_fork(exit_at_gate, &kid[i]); /* fork() itself is PROC-FORK-RETURNS' */
	}
	close(done[1]);
	close(gate[0]);
	/* Hold SIGCHLD while they end, so their signals pile up and merge. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	ASSERT_SYS(sigprocmask(SIG_BLOCK, &chld, &old));
	close(gate[1]); /* every child sees EOF at once */
	/* EOF on `done` once the last child has exited (its copy closed). */
	EXPECT_EVENTS(done[0], POLLIN, POLLIN | POLLERR | POLLHUP, "all children end");
	ASSERT_EQ(0, read(done[0], &c, 1));
	close(done[0]);
	/* A child closes its files before it can be waited for: wait until
	 * each one can (without collecting it), so all have ended and their
	 * SIGCHLDs are merged into the one pending. (ECHILD: not kept for
	 * collection at all; the handler's count below tells.) */
	for (int i = 0; i < KIDS; i++) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		(void)BOUNDED(waitid(P_PID, (id_t)pids[i], &si, WEXITED | WNOWAIT));
	}
	ASSERT_SYS(sigprocmask(SIG_SETMASK, &old, NULL)); /* the handler runs now */
	sp_wait_until(all_reaped, NULL, sp_wait_ms()); /* each SIGCHLD ends a tick early */

	RECORD(how ? "handler_calls_sigaction" : "handler_calls_signal", "%s",
	       handler_calls < KIDS ? "fewer than children (merged)" : "one per child");

	ASSERT_EQ(KIDS, reaped);
	int seen = 0;
	for (int i = 0; i < KIDS; i++)
		if (statuses[i] >= 10 && statuses[i] < 10 + KIDS)
			seen |= 1 << (statuses[i] - 10);
	ASSERT_EQ((1 << KIDS) - 1, seen); /* every status collected */
	ASSERT_ERRNO(waitpid(-1, NULL, WNOHANG), ECHILD); /* no zombie left */
	RECORD_ONCE("children", "%d", KIDS);
}

SP_MAIN("sig")
