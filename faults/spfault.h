/*
 * spfault.h - how a fault of libspfault.so is declared.
 *
 *   FAULT(name, "ID1,ID2", "what real system or bug it models")
 *
 * puts one row into the library's fault table (a linker section, so rows
 * can stand next to the code that implements them, in any file of the
 * library). The table is the one list of faults: the fault self-test
 * (tests/test_faults.py) and the mutation campaign (make mutate) read it
 * through spfault_table(). Every named ID must fail, in every family it
 * runs for, when the fault is on.
 *
 *   FAULT_EQUIVALENT(name, "ID", "models", "why no program can observe it")
 *
 * declares a fault that changes nothing a program can observe; the
 * campaign lists it as equivalent instead of requiring a failure.
 */
#ifndef SOCKPROBE_SPFAULT_H
#define SOCKPROBE_SPFAULT_H

#include <dlfcn.h>
#include <sys/types.h>

struct spfault {
	const char *name;
	const char *ids;        /* catalogue IDs it must make fail, comma separated */
	const char *models;     /* one line: the kind of system or bug it imitates */
	const char *equivalent; /* NULL, or why nothing observable changes */
};

#define SPFAULT_ROW_(name_, ids_, models_, equiv_)                           \
	static const struct spfault spfault_row_##name_                     \
	__attribute__((used, section("spfault_rows"), aligned(sizeof(void *)))) = \
		{ #name_, ids_, models_, equiv_ }
#define FAULT(name_, ids_, models_) SPFAULT_ROW_(name_, ids_, models_, 0)
#define FAULT_EQUIVALENT(name_, ids_, models_, why_) \
	SPFAULT_ROW_(name_, ids_, models_, why_)

/* The multicast option faults of faults/unix.c, for the one setsockopt()
 * interposer in faults/opt.c: 1 when the call is swallowed. */
int spfault_unix_setsockopt(int level, int opt);

/* REAL(ret, name, args...): real_NAME, the next definition of NAME (the
 * C library's), looked up on first use by load_NAME(). */
#define REAL(ret, name, ...)                                                \
	static ret (*real_##name)(__VA_ARGS__);                             \
	static void load_##name(void)                                       \
	{                                                                   \
		if (!real_##name)                                           \
			real_##name = dlsym(RTLD_NEXT, #name);              \
	}

/* An int option of fd from the real getsockopt() (past faults/opt.c),
 * 0 when it cannot be read; SO_TYPE (0: no socket); the inode of fd (0:
 * none). None of them changes errno. */
int spfault_sockopt_int(int fd, int level, int opt);
int spfault_sock_type(int fd);
ino_t spfault_inode(int fd);

/* The waiting faults of faults/tick.c, called by the interposers. */
void spfault_tick_recv(int fd, int flags);
void spfault_tick_zero_timeout(int zero);
void spfault_tick_send(int fd);
void spfault_tick_read(int fd);
void spfault_tick_accept(int l);
void spfault_tick_bind(int fd);

/* The faults of faults/intr.c (catalogue 3: signals and blocking calls,
 * socket timeouts), called by the interposers of spfault.c and mux.c.
 * spfault_intr_before: 1 when the fault made the call (*r its result,
 * errno set); spfault_intr_again: after a failed call, 1 to make it again
 * (a restart); spfault_intr_after: the result the caller sees;
 * spfault_intr_connect: connect() through real() or the fault's own. */
enum { SPF_RECV, SPF_ACCEPT, SPF_SEND, SPF_CONNECT, SPF_MUX };
struct sockaddr;
int spfault_intr_before(int call, int fd, long *r);
int spfault_intr_again(int call, int fd);
long spfault_intr_after(int call, int fd, long r, size_t n);
int spfault_intr_connect(int fd, const struct sockaddr *a, unsigned len,
			 int (*real)(int, const struct sockaddr *, unsigned));

/* The faults of faults/listen.c (catalogue 3: listening sockets, the accept
 * queue, SO_REUSEPORT). getsockopt: may change what was read (r the real
 * result); setsockopt: 1 when the fault took the option (the call returns
 * 0); shutdown: 1 when the call fails (errno set); accepted: after accept
 * and accept4; listen: -1 fails (errno set), 1 returns 0 without listening;
 * bind and connect: the result the caller sees. */
void spfault_listen_getsockopt(int fd, int level, int opt, void *val, unsigned *len, int r);
int spfault_listen_setsockopt(int fd, int level, int opt, const void *val, unsigned len);
int spfault_listen_shutdown(int fd);
void spfault_listen_accepted(int l, int fd);
int spfault_listen_listen(int fd);
int spfault_listen_bind(int fd, const struct sockaddr *a, unsigned len, int r);
int spfault_listen_connect(int fd, int r);

/* Is the named fault on (SOCKPROBE_FAULT, comma separated)? */
int spfault_on(const char *name);

#endif
