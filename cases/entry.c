/*
 * entry.c - what the signal-mask wait calls add to waiting (pselect(2),
 * ppoll(2), epoll_pwait(2), epoll_pwait2(2)).
 *
 * The other entry points (io_uring, recvmmsg/sendmmsg, splice, sendfile,
 * io_uring POLL_ADD) are values of the .read/.write/.call/.wait axes and
 * run inside the items of the other case files; this file holds the one
 * point only the mask-taking calls have: the mask they install for the
 * wait alone. It checks, through each of the four calls (.wait):
 *
 *  1. SIG-INTERRUPTS-SLEEP  a caught signal that the thread blocks, already
 *                           pending, ends the wait with EINTR as soon as the
 *                           call's own mask lets it through (the handler
 *                           ran once); on return the thread's mask is its
 *                           own again (the signal blocked); with the
 *                           thread's mask given instead, the signal stays
 *                           pending and does not end the wait.
 *  2. MUX-READABLE-DATA     through every wait call (.wait: select, pselect,
 *     MUX-READABLE-EOF      poll, ppoll, epoll_wait, epoll_pwait,
 *                           epoll_pwait2, io_uring POLL_ADD), on every kind
 *                           of stream socket: not readable while nothing has
 *                           arrived, readable once data has (also when it
 *                           arrives while the call waits), not readable
 *                           once read; after the peer's shutdown(SHUT_WR)
 *                           readable, and read returns 0. (mux.c and
 *                           epoll.c hold each call's own details.)
 *  3. MUX-READABLE-DATA     the same through io_uring POLL_ADD, in a process
 *     MUX-READABLE-EOF      of its own (see the item).
 *
 * Where io_uring is refused (a seccomp profile, kernel.io_uring_disabled,
 * an old kernel) or epoll_pwait2 is missing (before Linux 5.11), those
 * variants are reported "not supported by this system"; the others run.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <sys/wait.h>
#include "sp_entry.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t caught;
static void on_usr1(int sig)
{
	(void)sig;
	caught++;
}

/* A wait with a zero timeout, which returns at once: that is
 * MUX-SELECT-TIMEOUT's Must, a mechanism here (a call still blocked at
 * the bound is broken, needs it). */
static int zero_wait(int api, int fd, const sigset_t *mask, const char *what)
{
	int r = BOUNDED(sp_wait_on(api, fd, POLLIN, 0, mask));
	int err = errno;
	if (sp_bound_expired())
		BROKEN_NEEDS("MUX-SELECT-TIMEOUT", "%s() with a zero timeout (%s) is still blocked "
			     "after %d ms", sp_waitcall_name(api), what, sp_wait_ms());
	errno = err;
	return r;
}

/* 1. The call's mask, and only for the wait. */
SP_TEST(mask_wait_admits_a_blocked_signal_only_while_waiting, "SIG-INTERRUPTS-SLEEP", SP_NONE,
	.wait = SP_VALUES(SP_WAIT_PSELECT, SP_WAIT_PPOLL, SP_WAIT_EPOLL_PWAIT, SP_WAIT_EPOLL_PWAIT2))
{
	const char *call = sp_waitcall_name(ctx->wait);
	struct sigaction sa = { .sa_handler = on_usr1 }, old_sa;
	sigset_t usr1, own, during, now, pending;
	int p[2], r, err;

	ASSERT_SYS(pipe(p));
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	ASSERT_SYS(sigaction(SIGUSR1, &sa, &old_sa)); /* no SA_RESTART */
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, &usr1, &own));
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, NULL, &own)); /* own: SIGUSR1 blocked */
	caught = 0;
	ASSERT_SYS(raise(SIGUSR1));
	ASSERT_SYS(sigpending(&pending));
	REQUIRE(sigismember(&pending, SIGUSR1) && caught == 0,
		"SIGUSR1 raised while blocked stays pending (pending %d, handled %d times)",
		sigismember(&pending, SIGUSR1), (int)caught);

	/* The thread's own mask given: the signal stays out, the call polls
	 * the empty pipe and returns 0. */
	r = zero_wait(ctx->wait, p[0], &own, "the thread's own mask");
	err = errno;
	ASSERT_TRUE(r == 0 && caught == 0,
		    "%s() with the thread's own mask (SIGUSR1 blocked) and a zero timeout returns 0 "
		    "and runs no handler (got %d%s%s, handler ran %d times)", call, r,
		    r < 0 ? " " : "", r < 0 ? sp_errno_name(err) : "", (int)caught);

	/* A mask without SIGUSR1: the pending signal ends the wait. */
	during = own;
	sigdelset(&during, SIGUSR1);
	errno = 0;
	r = MUST_RETURN(sp_wait_on(ctx->wait, p[0], POLLIN, sp_wait_ms(), &during),
			"%s() on an empty pipe with SIGUSR1 pending and let through by its mask", call);
	err = errno;
	ASSERT_TRUE(r == -1 && err == EINTR && caught == 1,
		    "%s() whose mask lets the pending SIGUSR1 through fails with EINTR after the "
		    "handler ran once (got %d%s%s, handler ran %d times)", call, r, r < 0 ? " " : "",
		    r < 0 ? sp_errno_name(err) : "", (int)caught);
	ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, NULL, &now));
	ASSERT_TRUE(sigismember(&now, SIGUSR1),
		    "after %s() returns, the thread's own mask is back: SIGUSR1 blocked again", call);

	ASSERT_EQ(0, pthread_sigmask(SIG_UNBLOCK, &usr1, NULL));
	ASSERT_SYS(sigaction(SIGUSR1, &old_sa, NULL));
	close(p[0]);
	close(p[1]);
}

struct late { int fd; pid_t waiter; };

/* A child that writes once the parent sleeps in its wait. */
static int write_when_parent_waits(void *p)
{
	struct late *w = p;
	int saw_sleep = sp_have_proc() && sp_wait_proc_state(w->waiter, 'S');
	if (write(w->fd, "late!", 5) != 5)
		return 1;
	return saw_sleep ? 0 : 2;
}

static void readable_on_data_and_eof(const struct sp_ctx *ctx);

/* 2. Readable when data or the peer's FIN is there, through every wait
 * system call. */
SP_TEST(every_wait_call_reports_readable_on_data_and_eof, "MUX-READABLE-DATA,MUX-READABLE-EOF",
	SP_INET, .kind = SP_EVERY_KIND,
	.wait = SP_VALUES(SP_WAIT_SELECT, SP_WAIT_PSELECT, SP_WAIT_POLL, SP_WAIT_PPOLL, SP_WAIT_EPOLL,
			  SP_WAIT_EPOLL_PWAIT, SP_WAIT_EPOLL_PWAIT2))
{
	readable_on_data_and_eof(ctx);
}

/* 3. The same through io_uring POLL_ADD, in an item (a process) of its
 * own: a process that has used io_uring can see a later epoll_wait end
 * with EINTR when the ring's work notifies the task, which would be the
 * harness's doing, not the system's behavior. */
SP_TEST(io_uring_poll_reports_readable_on_data_and_eof, "MUX-READABLE-DATA,MUX-READABLE-EOF",
	SP_INET, .kind = SP_EVERY_KIND, .wait = SP_VALUES(SP_WAIT_URING_POLL))
{
	readable_on_data_and_eof(ctx);
}

static void readable_on_data_and_eof(const struct sp_ctx *ctx)
{
	const char *call = sp_waitcall_name(ctx->wait);
	int c, s, r;
	char buf[8];

	sp_pair(ctx, &c, &s);
	r = zero_wait(ctx->wait, s, NULL, "nothing arrived");
	ASSERT_TRUE(r == 0, "%s() reports nothing on a socket where nothing has arrived (got %d%s%s)",
		    call, r, r < 0 ? " " : "", r < 0 ? sp_errno_name(errno) : "");

	/* Data arriving while the call waits ends the wait. */
	struct late w = { c, getpid() };
	pid_t kid = sp_fork(write_when_parent_waits, &w);
	r = MUST_RETURN(sp_wait_on(ctx->wait, s, POLLIN, sp_wait_ms(), NULL),
			"%s() while data arrives", call);
	ASSERT_TRUE(r > 0 && (r & POLLIN), "%s() reports readable once data arrives while it waits "
		    "(got %d%s%s)", call, r, r < 0 ? " " : "", r < 0 ? sp_errno_name(errno) : "");
	r = zero_wait(ctx->wait, s, NULL, "data queued");
	ASSERT_TRUE(r & POLLIN, "%s() still reports readable while the data is unread (got %d)",
		    call, r);
	ASSERT_EQ(5, read(s, buf, sizeof(buf)));
	/* 0: the child saw this process asleep before it wrote; 2: it could
	 * not tell (no /proc of this pid namespace, or ptrace hiding the
	 * state), so the data may have come just before the wait: recorded,
	 * the Must (readable once data is there) is asserted either way.
	 * Reaped once the data is read: a write that returns only then is
	 * TCP-WRITE-RETURNS-BUFFERED's deviation, not this ID's. */
	int st = sp_reap(kid);
	ASSERT_TRUE(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 2),
		    "the child wrote its 5 bytes to the peer (wait status 0x%x)", st);
	RECORD_ONCE("late_data_arrived", "%s", WEXITSTATUS(st) == 0 ? "while the call waited" :
		    "not observable here (before or during the wait)");
	r = zero_wait(ctx->wait, s, NULL, "after the read");
	ASSERT_TRUE(r == 0, "%s() reports nothing once the data is read (got %d)", call, r);

	/* The peer's FIN: readable, and the read returns 0. */
	ASSERT_SYS(shutdown(c, SHUT_WR));
	r = BOUNDED(sp_wait_on(ctx->wait, s, POLLIN, sp_wait_ms(), NULL));
	if (sp_bound_expired() || r == 0) {
		/* Is the FIN there? That shutdown(SHUT_WR) sends it is
		 * CLOSE-HALF-WR-EOF's behavior, a mechanism here. */
		char b;
		ssize_t peek = recv(s, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		if (peek < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "no end of stream at the peer %d ms after "
				     "shutdown(SHUT_WR)", sp_wait_ms());
		FAIL("%s() after the peer's shutdown(SHUT_WR), with the EOF there (a read returns "
		     "%zd): expected readable, observed %s", call, peek,
		     sp_bound_expired() ? "still blocked at the bound" : "nothing (0)");
	}
	ASSERT_TRUE(r > 0 && (r & POLLIN), "%s() reports readable after the peer's shutdown(SHUT_WR) "
		    "(got %d)", call, r);
	ASSERT_EQ(0, read(s, buf, sizeof(buf)));
	close(c);
	close(s);
}

SP_MAIN("entry")
