/*
 * faults/proc.c - faults of PROC-* behaviors: fork(), copied memory and
 * shared descriptors, zombies and the wait family (part of
 * libspfault.so; see spfault.h).
 *
 * Interposes fork, mmap, wait, waitpid and waitid; joins close and
 * installing a SIGCHLD handler through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(fork_child_gets_pid,
      "PROC-FORK-RETURNS",
      "a process emulation whose fork() returns the pid in the child too");
FAULT(private_memory_shared,
      "PROC-FORK-COPIES",
      "a vfork-style fork() whose private memory stays shared");
FAULT(close_shuts_down_shared_socket,
      "PROC-FORK-SHARES-FDS,PROC-FORKING-SERVER,EXEC-PEER-EOF,EPOLLX-DUP,OPT-LINGER-ZERO-RST,"
      "TCP-CLOSE-DISCARDS-INPUT",
      "a stack whose close() of one descriptor shuts the connection for every process");
FAULT(sigchld_ignored,
      "PROC-ZOMBIE,SIG-CHLD-REAPS-ALL,SIG-HANDLER-RUNS",
      "a sandbox that runs programs with SIGCHLD ignored (children auto-reaped)");
FAULT(status_loses_exit_code,
      "PROC-WAIT-REAPS,PROC-WAITPID-WNOHANG,SIG-CHLD-REAPS-ALL",
      "an emulator that reports every exit as status 0");
FAULT(exit_status_7_bits,
      "PROC-WAIT-REAPS",
      "an emulator that keeps 7 bits of the exit code (exit(200) reads as 72)");
FAULT(signal_death_as_exit_code,
      "PROC-WAIT-REAPS",
      "a process layer that reports a child killed by signal N as exited 128+N, shell style");
FAULT(waitpid_pid_reaps_any,
      "PROC-WAIT-REAPS",
      "a process emulation whose waitpid(pid) returns whichever child ended first");
FAULT(wait_never_blocks,
      "PROC-WAIT-BLOCKS",
      "a wait() that returns at once with ECHILD-like emptiness while children run");
FAULT(waitid_never_blocks,
      "PROC-WAIT-BLOCKS",
      "an emulator whose waitid(WEXITED) returns at once (as with WNOHANG) while children run");
FAULT(waitpid_ignores_wnohang,
      "PROC-WAITPID-WNOHANG",
      "a waitpid() that ignores WNOHANG and blocks");

REAL(pid_t, fork, void)
REAL(void *, mmap, void *, size_t, int, int, int, off_t)
REAL(pid_t, wait, int *)
REAL(pid_t, waitpid, pid_t, int *, int)
REAL(int, waitid, idtype_t, id_t, siginfo_t *, int)
REAL(sighandler_t, signal, int, sighandler_t)
REAL(int, shutdown, int, int)

/* fork_child_gets_pid: the child is told its own pid, not 0. */
pid_t fork(void)
{
	load_fork();
	pid_t r = real_fork();
	if (r == 0 && on("fork_child_gets_pid"))
		return getpid();
	return r;
}

/* private_memory_shared: private anonymous mappings are shared with
 * forked children (a fork that copies nothing). */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	load_mmap();
	if (on("private_memory_shared") && (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE))
		flags = (flags & ~MAP_PRIVATE) | MAP_SHARED;
	return real_mmap(addr, len, prot, flags, fd, off);
}

/* close_shuts_down_shared_socket: close() ends the connection even while
 * another descriptor (a forked copy) still refers to it. */
SPF_HOOK(close_shuts_down_shared_socket, SPF_OP(SPF_CLOSE), SPF_BEFORE, 40)
{
	if (on("close_shuts_down_shared_socket") && spfault_sock_type(c->fd) == SOCK_STREAM) {
		load_shutdown();
		real_shutdown(c->fd, SHUT_RDWR);
	}
	return 0;
}

/* ---- SIGCHLD ------------------------------------------------------------- */

/* sigchld_ignored: SIGCHLD stays ignored, so children never become
 * zombies and no SIGCHLD handler runs. */
SPF_HOOK(sigchld_ignored, SPF_OP(SPF_SIGNAL) | SPF_OP(SPF_SIGACTION), SPF_BEFORE, 10)
{
	if (c->sig == SIGCHLD && on("sigchld_ignored"))
		c->handler = SIG_IGN;
	return 0;
}

__attribute__((constructor)) static void sigchld_ignored_at_start(void)
{
	load_signal();
	if (on("sigchld_ignored"))
		real_signal(SIGCHLD, SIG_IGN);
}

/* ---- the wait family ------------------------------------------------------------- */

/* status_loses_exit_code: the exit code never reaches the parent. */
static int lose_code(int st)
{
	if (on("status_loses_exit_code") && WIFEXITED(st))
		return st & ~0xff00;
	/* exit_status_7_bits: the top bit of the exit code is lost. */
	if (on("exit_status_7_bits") && WIFEXITED(st))
		return st & ~0x8000;
	/* signal_death_as_exit_code: killed by N reads as exited 128+N. */
	if (on("signal_death_as_exit_code") && WIFSIGNALED(st))
		return ((128 + WTERMSIG(st)) & 0xff) << 8;
	return st;
}

pid_t waitpid(pid_t pid, int *st, int options)
{
	load_waitpid();
	/* waitpid_ignores_wnohang: WNOHANG blocks like a plain waitpid. */
	if (on("waitpid_ignores_wnohang"))
		options &= ~WNOHANG;
	/* waitpid_pid_reaps_any: a pid is taken as "any child". */
	if (pid > 0 && on("waitpid_pid_reaps_any"))
		pid = -1;
	pid_t r = real_waitpid(pid, st, options);
	if (r > 0 && st)
		*st = lose_code(*st);
	return r;
}

pid_t wait(int *st)
{
	load_wait();
	/* wait_never_blocks: wait() returns at once even with live children. */
	if (on("wait_never_blocks"))
		return waitpid(-1, st, WNOHANG);
	pid_t r = real_wait(st);
	if (r > 0 && st)
		*st = lose_code(*st);
	return r;
}

int waitid(idtype_t type, id_t id, siginfo_t *si, int options)
{
	load_waitid();
	/* waitid_never_blocks: WEXITED without WNOHANG returns at once. */
	if (on("waitid_never_blocks"))
		options |= WNOHANG;
	int r = real_waitid(type, id, si, options);
	if (r == 0 && si && si->si_code == CLD_EXITED && on("status_loses_exit_code"))
		si->si_status = 0;
	if (r == 0 && si && si->si_code == CLD_EXITED && on("exit_status_7_bits"))
		si->si_status &= 0x7f;
	if (r == 0 && si && si->si_code == CLD_KILLED && on("signal_death_as_exit_code")) {
		si->si_code = CLD_EXITED;
		si->si_status = (128 + si->si_status) & 0xff;
	}
	return r;
}
