/*
 * exec.c - faults for catalogue 3's EXEC-* behaviors (close-on-exec of
 * sockets). Part of libspfault.so; see spfault.h for the conventions.
 *
 * This file owns the interposers of execv and execve (the probes
 * re-execute themselves with execv(); glibc's execv() calls execve
 * internally, so both are interposed) and joins socket and fcntl
 * (faults/core.c: other families make those calls too) through hooks.
 * Everything is transparent while no fault of this file is on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(sock_cloexec_ignored,
      "EXEC-SOCK-CLOEXEC",
      "an old kernel or emulation layer that accepts SOCK_CLOEXEC in socket()'s type but "
      "drops it: the descriptor survives execve()");
FAULT(setfl_cloexec_sets_fd_flag,
      "EXEC-FCNTL-CLOEXEC",
      "a libc or emulator that maps O_CLOEXEC given to F_SETFL onto the descriptor's "
      "FD_CLOEXEC (what a LuaSocket patch assumed)");
FAULT(dupfd_cloexec_ignored,
      "EXEC-FCNTL-CLOEXEC",
      "an emulator that handles F_DUPFD_CLOEXEC as F_DUPFD: the duplicate is inherited "
      "across execve()");
FAULT(exec_keeps_cloexec_sockets,
      "EXEC-SOCK-CLOEXEC,EXEC-FCNTL-CLOEXEC",
      "a sandbox whose execve() keeps every socket open in the new program, close-on-exec "
      "or not (an emulator's children kept its ports busy)");
FAULT(exec_keeps_hidden_socket_copy,
      "EXEC-PEER-EOF",
      "a runtime that keeps its own copy of each socket across execve(): the descriptor "
      "closes in the new program but the connection stays open until the process exits "
      "(CGI children kept clients' connections open)");

REAL(int, fcntl, int, int, ...)
REAL(int, execve, const char *, char *const[], char *const[])
REAL(int, execv, const char *, char *const[])

SPF_HOOK(sock_cloexec_ignored, SPF_OP(SPF_SOCKET), SPF_BEFORE, 10)
{
	if (on("sock_cloexec_ignored"))
		c->type &= ~SOCK_CLOEXEC;
	return 0;
}

SPF_HOOK(dupfd_cloexec_ignored, SPF_OP(SPF_FCNTL), SPF_BEFORE, 10)
{
	if (c->flags == F_DUPFD_CLOEXEC && on("dupfd_cloexec_ignored"))
		c->flags = F_DUPFD;
	return 0;
}

SPF_HOOK(setfl_cloexec_sets_fd_flag, SPF_OP(SPF_FCNTL), SPF_AFTER, 10)
{
	if (c->r == 0 && c->flags == F_SETFL && (c->arg & O_CLOEXEC) &&
	    on("setfl_cloexec_sets_fd_flag")) {
		load_fcntl();
		real_fcntl(c->fd, F_SETFD, FD_CLOEXEC);
	}
	return 0;
}

/* Before the exec: what the sandbox does to the process's sockets. */
static void before_exec(void)
{
	int keep = on("exec_keeps_cloexec_sockets"), hide = on("exec_keeps_hidden_socket_copy");
	if (!keep && !hide)
		return;
	load_fcntl();
	int saved = errno;
	for (int fd = 0; fd < 512; fd++) {
		struct stat st;
		int fl = real_fcntl(fd, F_GETFD);
		if (fl < 0 || !(fl & FD_CLOEXEC) || fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (keep)
			real_fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC);
		else
			real_fcntl(fd, F_DUPFD, 600); /* inherited, at a number nobody looks at */
	}
	errno = saved;
}

int execve(const char *path, char *const argv[], char *const envp[])
{
	load_execve();
	before_exec();
	return real_execve(path, argv, envp);
}

int execv(const char *path, char *const argv[])
{
	load_execv();
	before_exec();
	return real_execv(path, argv);
}
