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
#include <sys/socket.h>

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

/* The hooks of faults/state.c (catalogue 3: STATE-, UNIXX-, ADDR-, RECV-),
 * called by the interposers of spfault.c. A _pre hook returns 1 when it
 * replaces the call (the result in *r, errno set); a _post hook returns the
 * result the program sees. spfault_state_socket: a socket() result and its
 * protocol argument (faults/exec.c). */
struct sockaddr;
int spfault_state_connect_pre(int fd, const struct sockaddr *a, socklen_t len, int *r);
int spfault_state_connect_post(int fd, int r);
int spfault_state_bind_pre(int fd, const struct sockaddr *a, socklen_t len, int *r);
int spfault_state_shutdown_post(int fd, int how, int r);
int spfault_state_recv_pre(int fd, size_t room, int *flags, ssize_t *r);
ssize_t spfault_state_send_post(int fd, size_t n, ssize_t r);
int spfault_state_sendto_pre(int fd, const struct sockaddr *to, socklen_t len, ssize_t *r);
void spfault_state_getsockopt_post(int fd, int level, int opt, void *val, socklen_t *len);
void spfault_state_accept_post(int fd, struct sockaddr *a, socklen_t *len);
void spfault_state_socket(int fd, int protocol);

/* Is the named fault on (SOCKPROBE_FAULT, comma separated)? */
int spfault_on(const char *name);

#endif
