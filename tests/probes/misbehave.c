/*
 * misbehave.c - a probe that misbehaves on purpose, for the runner's own
 * tests: each test is one way a probe can go wrong. Never part of the suite.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <poll.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/wait.h>

SP_TEST(passes) { RECORD("answer", "%d", 42); (void)ctx; }
SP_TEST(fails_a_check) { (void)ctx; ASSERT_EQ(1, 2); }
SP_TEST(crashes) { (void)ctx; *(volatile int *)0 = 1; }
SP_TEST(hangs) { (void)ctx; poll(NULL, 0, -1); }
SP_TEST(skips) { (void)ctx; SKIP("nothing to see here"); }
SP_TEST(cannot_set_up) { (void)ctx; REQUIRE(1 == 2, "an option the stack lacks"); }

static int failing_child(void *arg) { (void)arg; ASSERT_EQ(3, 4); return 0; }

SP_TEST(child_check_fails)
{
	(void)ctx;
	int st = sp_reap(sp_fork(failing_child, NULL));
	ASSERT_EQ(0, WEXITSTATUS(st));
}

/* A child that never exits, in the probe's process group (untracked). */
SP_TEST(leaves_child_running)
{
	(void)ctx;
	pid_t pid = fork();
	if (pid == 0) {
		for (;;)
			pause();
	}
	RECORD("child", "%d", (int)pid);
	RECORD("ns_pid_of_probe", "%d", (int)getpid());
}

/* A grandchild that leaves the process group and session (a daemon). */
SP_TEST(leaves_daemon_running)
{
	(void)ctx;
	int p[2];
	ASSERT_SYS(pipe(p));
	if (fork() == 0) {
		setsid();
		if (fork() == 0) {
			char c = 'x';
			if (write(p[1], &c, 1) < 0)
				_exit(1);
			for (;;)
				pause();
		}
		_exit(0);
	}
	char c;
	ASSERT_EQ(1, read(p[0], &c, 1));
}

static const struct sp_case cases[] = {
	SP_CASE(passes, "SELF-PASS", SP_NONE),
	SP_CASE(fails_a_check, "SELF-FAIL", SP_NONE),
	SP_CASE(crashes, "SELF-CRASH", SP_NONE),
	SP_CASE(hangs, "SELF-HANG", SP_NONE),
	SP_CASE(skips, "SELF-SKIP", SP_NONE),
	SP_CASE(cannot_set_up, "SELF-BROKEN", SP_NONE),
	SP_CASE(child_check_fails, "SELF-CHILD", SP_NONE),
	SP_CASE(leaves_child_running, "SELF-LINGER", SP_NONE),
	SP_CASE(leaves_daemon_running, "SELF-DAEMON", SP_INET),
};

SP_MAIN("misbehave", cases)
