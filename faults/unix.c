/*
 * unix.c - faults for catalogue 2's UNIX-*, THREAD-* and MCAST-* groups
 * (part of libspfault.so; see spfault.c and spfault.h).
 *
 * Interposers of this file: socketpair and the pthread functions. The
 * multicast option faults are a hook that the one setsockopt() interposer
 * (faults/opt.c) calls. Faults on functions that faults/spfault.c already
 * interposes live in spfault.c.
 *
 * Each is transparent unless its fault is named in SOCKPROBE_FAULT, and
 * touches only the sockets (or threads) its fault is about.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "spfault.h"

#define on(name) spfault_on(name)

/* ---- threads -------------------------------------------------------------- */

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

/* ---- Unix domain socket pairs ------------------------------------------- */

FAULT(socketpair_one_way,
      "UNIX-SOCKETPAIR",
      "a socketpair() emulated with a pipe: data flows only from the first "
      "descriptor to the second");
FAULT(unix_stream_pair_keeps_messages,
      "UNIX-STREAM-NO-BOUNDARY",
      "an emulator that backs AF_UNIX stream pairs with message channels, so "
      "each write stays one read");
FAULT(unix_message_pair_is_stream,
      "UNIX-DGRAM-BOUNDARY,UNIX-SEQPACKET-BOUNDARY",
      "an emulator that backs every AF_UNIX socketpair with a byte stream, "
      "losing datagram and packet boundaries");

int socketpair(int domain, int type, int proto, int sv[2])
{
	static int (*real)(int, int, int, int[2]);
	if (!real)
		real = dlsym(RTLD_NEXT, "socketpair");
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), flags = type & ~base;
	if (domain == AF_UNIX && base == SOCK_STREAM && on("unix_stream_pair_keeps_messages"))
		type = SOCK_SEQPACKET | flags;
	if (domain == AF_UNIX && (base == SOCK_DGRAM || base == SOCK_SEQPACKET) &&
	    on("unix_message_pair_is_stream"))
		type = SOCK_STREAM | flags;
	int r = real(domain, type, proto, sv);
	if (r == 0 && domain == AF_UNIX && on("socketpair_one_way")) {
		shutdown(sv[0], SHUT_RD);
		shutdown(sv[1], SHUT_WR);
	}
	return r;
}

/* ---- multicast options (called from setsockopt() in faults/opt.c) -------- */

FAULT(multicast_all_ignored,
      "MCAST-NONMEMBER",
      "a stack that accepts IP_MULTICAST_ALL=0 but still hands every group "
      "datagram to each socket bound to the port");
FAULT(drop_membership_ignored,
      "MCAST-NONMEMBER",
      "a stack whose IP_DROP_MEMBERSHIP succeeds but leaves the group joined");

/* Called by the one setsockopt() interposer (faults/opt.c): 1 when the
 * call is swallowed (reported as done, nothing set). */
int spfault_unix_setsockopt(int level, int opt)
{
	if (level == IPPROTO_IP && opt == IP_MULTICAST_ALL && on("multicast_all_ignored"))
		return 1;
	if (level == IPPROTO_IP && opt == IP_DROP_MEMBERSHIP && on("drop_membership_ignored"))
		return 1;
	return 0;
}
