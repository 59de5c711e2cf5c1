/*
 * faults/sig.c - faults of SIG-* behaviors: handlers that run, once or
 * every time, restarted and interrupted calls, alarm() and sleeping
 * (part of libspfault.so; see spfault.h).
 *
 * Interposes alarm, nanosleep and sleep; joins installing a handler
 * (signal, sigaction) through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(handlers_not_installed,
      "SIG-HANDLER-RUNS,SIG-INTERRUPTS-SLEEP,SIG-CHLD-REAPS-ALL",
      "a sandbox that accepts sigaction() but never delivers to the handler");
FAULT(signal_one_shot,
      "SIG-HANDLER-RUNS",
      "System V signal(): the handler is reset to SIG_DFL on delivery (SA_RESETHAND|SA_NODEFER)");
FAULT(sigaction_one_shot,
      "SIG-HANDLER-RUNS",
      "an emulation layer that delivers each sigaction() handler once, as if SA_RESETHAND were set");
FAULT(alarm_never_fires,
      "SIG-HANDLER-RUNS",
      "a sandbox whose alarm() keeps the bookkeeping and return values but never raises SIGALRM");
FAULT(sleep_restarts,
      "SIG-INTERRUPTS-SLEEP",
      "a sleep() that restarts after a handled signal instead of returning early");
FAULT(sa_restart_ignored,
      "INTR-RESTART-SOCKET-CALLS,INTR-CONNECT",
      "a syscall emulation (early gVisor/WSL1 style) that never restarts: SA_RESTART calls fail with EINTR");
FAULT(sa_restart_always,
      "SIG-INTERRUPTS-SLEEP,INTR-RESTART-SOCKET-CALLS",
      "a libc or emulator that restarts every interrupted call, as if SA_RESTART were always set");

REAL(int, nanosleep, const struct timespec *, struct timespec *)
REAL(unsigned int, alarm, unsigned int)

static int is_handler(sighandler_t h)
{
	return h != SIG_DFL && h != SIG_IGN && h != SIG_ERR;
}

/* ---- installing a handler ----------------------------------------------------- */

/* handlers_not_installed: a handler is accepted but never runs. */
SPF_HOOK(handlers_not_installed, SPF_OP(SPF_SIGNAL) | SPF_OP(SPF_SIGACTION), SPF_BEFORE, 20)
{
	if (is_handler(c->handler) && on("handlers_not_installed") &&
	    (c->sig == SIGALRM || c->sig == SIGINT || c->sig == SIGCHLD))
		c->handler = SIG_IGN;
	return 0;
}

/* The flags a handler is installed with (after the hooks that swap it). */
SPF_HOOK(handler_flags, SPF_OP(SPF_SIGNAL) | SPF_OP(SPF_SIGACTION), SPF_BEFORE, 50)
{
	if (!is_handler(c->handler))
		return 0;
	if (c->op == SPF_SIGNAL) {
		/* signal_one_shot: System V semantics (reset on delivery, not
		 * blocked while it runs, no restart). sa_restart_*: as for
		 * sigaction. */
		if (!(on("signal_one_shot") || on("sa_restart_ignored") || on("sa_restart_always")))
			return 0;
		c->flags = on("signal_one_shot") ? SA_RESETHAND | SA_NODEFER : SA_RESTART;
		if (on("sa_restart_ignored"))
			c->flags &= ~SA_RESTART;
		return 0;
	}
	/* sigaction_one_shot: every handler is delivered once. */
	if (on("sigaction_one_shot"))
		c->flags |= SA_RESETHAND | SA_NODEFER;
	/* sa_restart_ignored / sa_restart_always: restart never / always. */
	if (on("sa_restart_ignored"))
		c->flags &= ~SA_RESTART;
	if (on("sa_restart_always"))
		c->flags |= SA_RESTART;
	return 0;
}

/* ---- alarm and sleeping ---------------------------------------------------------- */

/* alarm_never_fires: alarm() answers with the seconds left of what it
 * was asked, but no SIGALRM ever comes. */
static struct timespec fake_alarm_at;

unsigned int alarm(unsigned int s)
{
	load_alarm();
	if (!on("alarm_never_fires"))
		return real_alarm(s);
	struct timespec now;
	unsigned left = 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (fake_alarm_at.tv_sec && fake_alarm_at.tv_sec > now.tv_sec)
		left = (unsigned)(fake_alarm_at.tv_sec - now.tv_sec);
	fake_alarm_at.tv_sec = s ? now.tv_sec + s : 0;
	fake_alarm_at.tv_nsec = now.tv_nsec;
	return left;
}

/* sleep_restarts: a caught signal does not end a sleep early. */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
	load_nanosleep();
	if (!on("sleep_restarts"))
		return real_nanosleep(req, rem);
	struct timespec left = *req;
	while (real_nanosleep(&left, &left) < 0 && errno == EINTR)
		;
	if (rem)
		rem->tv_sec = rem->tv_nsec = 0;
	return 0;
}

unsigned int sleep(unsigned int s)
{
	struct timespec req = { (time_t)s, 0 }, rem = { 0, 0 };
	if (nanosleep(&req, &rem) < 0)
		return (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
	return 0;
}
