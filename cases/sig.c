/*
 * sig.c - signal handling (seed notes: "信号处理", "sigaction函数",
 * "基于进程").
 *
 * Checks:
 *
 *  1. SIG-HANDLER-RUNS     a handler installed with signal() and one
 *                          installed with sigaction() run for SIGALRM (from
 *                          alarm()/setitimer), SIGINT and SIGCHLD.
 *  2. SIG-INTERRUPTS-SLEEP a caught signal ends a blocking sleep early (the
 *                          remaining time is returned) and a blocking read
 *                          with EINTR.
 *  3. SIG-CHLD-REAPS-ALL   a SIGCHLD handler looping on waitpid(WNOHANG)
 *                          reaps every one of several children that end at
 *                          once, though their signals merge.
 *
 * The notes use alarm(1); the timer here is setitimer(ITIMER_REAL), which
 * raises the same SIGALRM in milliseconds (alarm() itself is checked with
 * the shortest interval it has, cancelled before it fires, for its return
 * value only). Waiting for a handler is a bounded wait for an event: the
 * handler ends a poll() with EINTR; nothing sleeps to synchronise.
 *
 * Platform-defined (recorded): how many SIGCHLD handler calls it took to
 * reap the children (fewer than the children shows merging).
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
static void count(int sig) { hits[sig]++; }

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

static void install(int sig, int with_sigaction)
{
	if (with_sigaction) {
		struct sigaction sa = { .sa_handler = count };
		sigemptyset(&sa.sa_mask);
		ASSERT_SYS(sigaction(sig, &sa, NULL));
	} else {
		ASSERT_TRUE(signal(sig, count) != SIG_ERR, "signal(%s) installs the handler",
			    sp_signal_name(sig));
	}
}

/* 1a. SIGALRM: handlers from signal() and sigaction() both run. */
SP_TEST(sigalrm_handler_runs)
{
	(void)ctx;
	/* alarm() schedules SIGALRM; a second call returns what was left. */
	ASSERT_EQ(0, alarm(30));
	unsigned left = alarm(0);
	RECORD("alarm_left_when_cancelled", "%u", left);
	ASSERT_TRUE(left > 0 && left <= 30, "alarm(0) returns the seconds left (%u)", left);

	for (int how = 0; how < 2; how++) {
		hits[SIGALRM] = 0;
		install(SIGALRM, how);
		timer_ms(5);
		ASSERT_TRUE(handled(SIGALRM, 1) == 1, "the %s handler ran for SIGALRM",
			    how ? "sigaction()" : "signal()");
	}
}

/* 1b. SIGINT (what Ctrl-C sends): the handler runs, the process lives. */
SP_TEST(sigint_handler_runs)
{
	(void)ctx;
	for (int how = 0; how < 2; how++) {
		hits[SIGINT] = 0;
		install(SIGINT, how);
		ASSERT_SYS(kill(getpid(), SIGINT));
		ASSERT_TRUE(handled(SIGINT, 1) == 1, "the %s handler ran for SIGINT",
			    how ? "sigaction()" : "signal()");
	}
}

static int exit_now(void *arg) { (void)arg; return 0; }

/* 1c. SIGCHLD: the handler runs when a child ends. */
SP_TEST(sigchld_handler_runs)
{
	(void)ctx;
	for (int how = 0; how < 2; how++) {
		hits[SIGCHLD] = 0;
		install(SIGCHLD, how);
		pid_t pid = sp_fork(exit_now, NULL);
		ASSERT_TRUE(handled(SIGCHLD, 1) >= 1, "the %s handler ran for SIGCHLD",
			    how ? "sigaction()" : "signal()");
		sp_reap(pid);
	}
}

/* 2a. A caught signal cuts a blocking sleep short. */
SP_TEST(caught_signal_cuts_sleep_short)
{
	struct timespec want = { 2, 0 }, left = { 0, 0 };
	struct sigaction sa = { .sa_handler = count }; /* no SA_RESTART */
	(void)ctx;

	ASSERT_SYS(sigaction(SIGALRM, &sa, NULL));
	timer_ms(10);
	int r = nanosleep(&want, &left); /* SIG-INTERRUPTS-SLEEP: the sleep is the behavior */
	int err = errno;
	RECORD("nanosleep_left_ms", "%ld", left.tv_sec * 1000 + left.tv_nsec / 1000000);
	ASSERT_FAILED_WITH(r, err, EINTR);
	ASSERT_TRUE(left.tv_sec > 0 || left.tv_nsec > 0, "the remaining time is returned");

	timer_ms(10);
	unsigned rest = sleep(2); /* SIG-INTERRUPTS-SLEEP: sleep() returns what is left */
	RECORD("sleep_left_s", "%u", rest);
	ASSERT_TRUE(rest > 0, "a two-second sleep ends early with seconds left (%u)", rest);
	ASSERT_EQ(2, hits[SIGALRM]);
}

/* 2b. A caught signal (no SA_RESTART) ends a blocking read with EINTR. */
SP_TEST(caught_signal_interrupts_blocking_read)
{
	int sv[2];
	char c;
	struct sigaction sa = { .sa_handler = count };
	int ms = sp_wait_ms();
	struct timeval bound = { ms / 1000, (ms % 1000) * 1000 };
	(void)ctx;

	/* A socket pair, so the read can be bounded (SO_RCVTIMEO gives
	 * EAGAIN if no signal ever comes) instead of hanging. */
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_SYS(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)));
	ASSERT_SYS(sigaction(SIGALRM, &sa, NULL));
	timer_ms(10);
	ASSERT_ERRNO(read(sv[0], &c, 1), EINTR); /* nothing to read: blocks until the signal */
	ASSERT_EQ(1, hits[SIGALRM]);
}

/* 3. The SIGCHLD handler of the notes: loop on waitpid(WNOHANG). */
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

static int all_reaped(void *arg)
{
	(void)arg;
	return reaped >= KIDS;
}

SP_TEST(sigchld_handler_reaps_children_ending_together)
{
	int gate[2], done[2];
	char c;
	struct sigaction sa = { .sa_handler = reap_all, .sa_flags = SA_RESTART };
	sigset_t chld, old;
	(void)ctx;

	ASSERT_SYS(sigaction(SIGCHLD, &sa, NULL));
	ASSERT_SYS(pipe(gate));
	ASSERT_SYS(pipe(done));
	for (int i = 0; i < KIDS; i++) {
		pid_t pid = ASSERT_SYS(fork());
		if (pid == 0) {
			close(gate[1]);
			close(done[0]);
			(void)!read(gate[0], &c, 1); /* all wait at the same gate */
			_exit(10 + i);               /* and end together */
		}
		sp_track_child(pid);
	}
	close(done[1]);
	/* Hold SIGCHLD while they end, so their signals pile up and merge. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	ASSERT_SYS(sigprocmask(SIG_BLOCK, &chld, &old));
	close(gate[1]); /* every child sees EOF at once */
	/* EOF on `done` once the last child has exited (its copy closed). */
	ASSERT_TRUE(sp_poll(done[0], POLLIN, sp_wait_ms()), "all children end");
	ASSERT_EQ(0, read(done[0], &c, 1));
	ASSERT_SYS(sigprocmask(SIG_SETMASK, &old, NULL)); /* the handler runs now */
	sp_wait_until(all_reaped, NULL, sp_wait_ms()); /* each SIGCHLD ends a tick early */

	RECORD("children", "%d", KIDS);
	RECORD("handler_calls", "%d", (int)handler_calls);
	RECORD("reaped", "%d", (int)reaped);
	ASSERT_EQ(KIDS, reaped);
	int seen = 0;
	for (int i = 0; i < KIDS; i++)
		if (statuses[i] >= 10 && statuses[i] < 10 + KIDS)
			seen |= 1 << (statuses[i] - 10);
	ASSERT_EQ((1 << KIDS) - 1, seen); /* every status collected */
	ASSERT_ERRNO(waitpid(-1, NULL, WNOHANG), ECHILD); /* no zombie left */
}

static const struct sp_case cases[] = {
	SP_CASE(sigalrm_handler_runs, "SIG-HANDLER-RUNS", SP_NONE),
	SP_CASE(sigint_handler_runs, "SIG-HANDLER-RUNS", SP_NONE),
	SP_CASE(sigchld_handler_runs, "SIG-HANDLER-RUNS", SP_NONE),
	SP_CASE(caught_signal_cuts_sleep_short, "SIG-INTERRUPTS-SLEEP", SP_NONE),
	SP_CASE(caught_signal_interrupts_blocking_read, "SIG-INTERRUPTS-SLEEP", SP_NONE),
	SP_CASE(sigchld_handler_reaps_children_ending_together, "SIG-CHLD-REAPS-ALL", SP_NONE),
};

SP_MAIN("sig", cases)
