/*
 * faults/thread.c - faults of THREAD-* behaviors: threads share the
 * descriptor table, mutexes exclude, join waits and returns the value,
 * shutdown() wakes a blocked reader (part of libspfault.so; see
 * spfault.h).
 *
 * Interposes pthread_create, the mutex calls and pthread_join; joins
 * shutdown through a hook (faults/core.c).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(threads_copy_fd_table,
      "THREAD-SHARED-FDS",
      "a thread emulation that runs each thread as a clone without CLONE_FILES "
      "(LinuxThreads-style), so threads get copies of the descriptor table");
FAULT(mutex_does_not_exclude,
      "THREAD-MUTEX-EXCLUSION",
      "a libc whose pthread mutexes are single-thread stubs (lock/trylock/unlock "
      "return 0 and do nothing) while threads really run in parallel");
FAULT(join_does_not_wait,
      "THREAD-JOIN-RETURNS",
      "a thread library whose pthread_join() detaches a running thread and "
      "returns at once, with no value");
FAULT(join_loses_value,
      "THREAD-JOIN-RETURNS",
      "a green-thread runtime whose pthread_join() waits but never stores the "
      "thread's return value");

struct start { void *(*fn)(void *); void *arg; };

static void *start_with_own_fd_table(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	unshare(CLONE_FILES);
	return s.fn(s.arg);
}

int pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
	if (!real)
		real = dlsym(RTLD_NEXT, "pthread_create");
	if (on("threads_copy_fd_table")) {
		struct start *s = malloc(sizeof(*s));
		if (s) {
			s->fn = fn;
			s->arg = arg;
			return real(t, attr, start_with_own_fd_table, s);
		}
	}
	return real(t, attr, fn, arg);
}

int pthread_mutex_lock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = dlsym(RTLD_NEXT, "pthread_mutex_lock");
	return on("mutex_does_not_exclude") ? 0 : real(m);
}

int pthread_mutex_trylock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = dlsym(RTLD_NEXT, "pthread_mutex_trylock");
	return on("mutex_does_not_exclude") ? 0 : real(m);
}

int pthread_mutex_unlock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);
	if (!real)
		real = dlsym(RTLD_NEXT, "pthread_mutex_unlock");
	return on("mutex_does_not_exclude") ? 0 : real(m);
}

int pthread_join(pthread_t t, void **ret)
{
	static int (*real)(pthread_t, void **);
	if (!real)
		real = dlsym(RTLD_NEXT, "pthread_join");
	if (on("join_does_not_wait")) {
		int r = pthread_tryjoin_np(t, ret);
		if (r != EBUSY)
			return r;
		if (ret)
			*ret = NULL;
		return pthread_detach(t);
	}
	int r = real(t, ret);
	if (r == 0 && ret && on("join_loses_value"))
		*ret = NULL;
	return r;
}

FAULT(shutdown_rd_leaves_reader_blocked,
      "THREAD-SHUTDOWN-WAKES-READ,CLOSE-HALF-RD",
      "a userspace stack that accepts shutdown(SHUT_RD) but leaves a reader blocked "
      "in another thread waiting for data");

REAL(int, shutdown, int, int)

/* shutdown_rd_leaves_reader_blocked: SHUT_RD is accepted and later reads
 * return 0 (the stack keeps the "read side shut" in user space), but the
 * kernel socket is not shut, so a read already blocked in another thread
 * waits on for data. SHUT_RDWR shuts only the write side in the kernel. */
enum { RD_SHUT_MAX = 1024 };
static volatile char rd_shut[RD_SHUT_MAX];

SPF_HOOK(shutdown_rd_leaves_reader_blocked, SPF_OP(SPF_SHUTDOWN), SPF_BEFORE, 30)
{
	/* Connections only: a listener's shutdown is accept()'s business
	 * (LISTEN-SHUTDOWN-WAKES-ACCEPT), not a reader's. */
	if (!on("shutdown_rd_leaves_reader_blocked") || spfault_sock_type(c->fd) != SOCK_STREAM ||
	    c->flags == SHUT_WR || spfault_sockopt_int(c->fd, SOL_SOCKET, SO_ACCEPTCONN))
		return 0;
	load_shutdown();
	c->r = c->flags == SHUT_RD ? 0 : real_shutdown(c->fd, SHUT_WR);
	if (c->r == 0 && c->fd >= 0 && c->fd < RD_SHUT_MAX)
		rd_shut[c->fd] = 1;
	return 1;
}

/* A read that starts after the shutdown sees the end of input at once. */
SPF_HOOK(shut_rd_reads_return_eof, SPF_RECEIVING, SPF_BEFORE, 30)
{
	if (!on("shutdown_rd_leaves_reader_blocked") || c->fd < 0 || c->fd >= RD_SHUT_MAX ||
	    !rd_shut[c->fd])
		return 0;
	c->r = 0;
	return 1;
}

SPF_HOOK(shut_rd_forget, SPF_OP(SPF_CLOSE), SPF_BEFORE, 0)
{
	if (c->fd >= 0 && c->fd < RD_SHUT_MAX)
		rd_shut[c->fd] = 0;
	return 0;
}
