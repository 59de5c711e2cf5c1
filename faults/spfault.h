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
 * runs for, when the fault is on; an item of other IDs that fails under
 * it is counted as collateral by make mutate. "ID[ipv4]" (or "[none]",
 * "[ipv4|ipv6]") limits an ID to those families: the fault breaks its
 * Musts there alone (an IPv4-only option), and an item of the ID in
 * another family that fails under it is collateral.
 *
 *   FAULT_EQUIVALENT(name, "ID", "models", "why no program can observe it")
 *
 * declares a fault that changes nothing a program can observe; the
 * campaign lists it as equivalent instead of requiring a failure.
 *
 * The library is one core (faults/core.c: the table, the shared helpers
 * below and the interposers of calls that faults of several families
 * change) and one file per behavior family (faults/tcp.c, udp.c, ...).
 * A family file declares its rows, interposes the calls only it changes
 * (REAL() below), and joins a shared call with SPF_HOOK(). The core
 * calls no family by name: hooks are found through a linker section,
 * so a new faults/NAME.c needs no change anywhere else (the Makefile
 * builds every .c file of faults/).
 */
#ifndef SOCKPROBE_SPFAULT_H
#define SOCKPROBE_SPFAULT_H

#include <dlfcn.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
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

/* REAL(ret, name, args...): real_NAME, the next definition of NAME (the
 * C library's), looked up on first use by load_NAME(). */
#define REAL(ret, name, ...)                                                \
	static ret (*real_##name)(__VA_ARGS__);                             \
	static void load_##name(void)                                       \
	{                                                                   \
		if (!real_##name)                                           \
			real_##name = dlsym(RTLD_NEXT, #name);              \
	}

/* Is the named fault on (SOCKPROBE_FAULT, comma separated)? */
int spfault_on(const char *name);

/* ---- shared helpers (faults/core.c). None of them changes errno. ---- */

/* An int option of fd from the real getsockopt() (past every fault), 0
 * when it cannot be read; SO_TYPE (0: no socket); the inode of fd (0:
 * none). */
int spfault_sockopt_int(int fd, int level, int opt);
int spfault_sock_type(int fd);
int spfault_family(int fd);      /* AF_INET, AF_UNIX, ...; 0 for no socket */
ino_t spfault_inode(int fd);
/* O_NONBLOCK set on fd; fd a pipe or FIFO. */
int spfault_nonblocking(int fd);
int spfault_is_fifo(int fd);
/* Same family, address and port (AF_INET, AF_INET6). */
int spfault_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b);
/* bind() succeeded on fd (since it was last closed): its local address
 * was chosen by the program, not by an implicit bind. */
int spfault_explicitly_bound(int fd);
/* A fault that claims an option without applying it stores what the
 * program set (at most 16 bytes); getsockopt() of that option on this
 * very socket reads it back. */
void spfault_store_opt(int fd, int level, int opt, const void *val, socklen_t len);
/* syscall(2) straight to the kernel, past every interposer (faults/entry.c
 * watches syscall() for io_uring): SPF_SYSCALL(SYS_connect, fd, addr, len). */
long spfault_syscall(long nr, long a, long b, long c, long d, long e, long f);
#define SPF_SYSCALL_(nr, a, b, c, d, e, f, ...) \
	spfault_syscall((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))
#define SPF_SYSCALL(...) SPF_SYSCALL_(__VA_ARGS__, 0, 0, 0, 0, 0, 0, 0)

/* The waiting faults of faults/tick.c. */
void spfault_tick_recv(int fd, int flags);
void spfault_tick_zero_timeout(int zero);
void spfault_tick_send(int fd);
void spfault_tick_read(int fd);
void spfault_tick_accept(int l);
void spfault_tick_bind(int fd);

/* ---- hooks: the calls that faults of several families change ---------
 *
 * Each such call has one interposer (faults/core.c, or the family file
 * that owns the call and lets others join: SPF_POLL in faults/mux.c). It
 * fills a struct spf_call, runs the SPF_BEFORE hooks of that call, the
 * real call (unless a hook answered it), then the SPF_AFTER hooks, in
 * ascending order within each stage. A hook touches only the sockets its
 * fault is about and keeps errno unless it changes the call's outcome.
 */
enum spf_op {
	SPF_READ, SPF_RECV, SPF_RECVFROM, SPF_RECVMSG,     /* receiving */
	SPF_WRITE, SPF_SEND, SPF_SENDTO, SPF_SENDMSG,      /* sending */
	SPF_CONNECT, SPF_BIND, SPF_ACCEPT, SPF_SHUTDOWN, SPF_CLOSE,
	SPF_GETSOCKNAME, SPF_GETSOCKOPT, SPF_SETSOCKOPT,
	SPF_SIGNAL, SPF_SIGACTION,                         /* installing a handler */
	SPF_POLL,                      /* poll, ppoll, select, pselect (again: epoll_wait too) */
	SPF_LISTEN, SPF_SOCKET, SPF_FCNTL, SPF_IOCTL,
	SPF_EPOLL_CTL,                 /* faults/epoll.c: fd the target, flags the op,
					  arg the epoll descriptor, val the event */
};
#define SPF_OP(op) (1u << (op))
#define SPF_RECEIVING (SPF_OP(SPF_READ) | SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM) | SPF_OP(SPF_RECVMSG))
#define SPF_SENDING (SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO) | SPF_OP(SPF_SENDMSG))

/* SPF_AGAIN: after a failed real call (c->r -1, errno set), before the
 * SPF_AFTER hooks; a hook returning 1 makes the real call again (a
 * restart). Run by the receiving, sending, connect, accept and SPF_POLL
 * interposers. */
enum spf_stage { SPF_BEFORE, SPF_AGAIN, SPF_AFTER };

/* One call being made, as its hooks see and change it. */
struct spf_call {
	enum spf_op op;
	int fd;                     /* the descriptor (accept: the listener) */
	void *buf;                  /* receiving: the caller's buffer (recvmsg: NULL) */
	const void *data;           /* sending: the caller's bytes */
	size_t n;                   /* the caller's length (recvmsg: room of the iovecs) */
	size_t ask;                 /* receiving: the length the real call asks for */
	int flags;                  /* MSG_* flags; accept4's flags; shutdown's how;
				       a handler's sa_flags (signal(): -1, signal()'s own);
				       listen's backlog; fcntl's command */
	int domain, type, protocol; /* socket */
	long arg;                   /* fcntl's argument */
	unsigned long req;          /* ioctl's request (its argument: val) */
	int via_write;              /* sending: write() semantics (no flags) */
	struct sockaddr *addr;      /* recvfrom: the source; accept, getsockname: the name */
	socklen_t *addrlen;
	const struct sockaddr *to;  /* sendto (NULL: none), connect, bind: the address */
	socklen_t tolen;
	struct msghdr *msg;         /* recvmsg */
	const struct msghdr *out;   /* sendmsg */
	int level, opt;             /* getsockopt, setsockopt */
	void *val;                  /* getsockopt: the value; setsockopt: const; ioctl's argument */
	socklen_t *vallen;          /* getsockopt */
	socklen_t setlen;           /* setsockopt */
	int sig;                    /* signal, sigaction */
	sighandler_t handler;
	int zero_timeout;           /* SPF_POLL: the timeout is zero */
	ssize_t r;                  /* the result (errno set when it is -1) */
};

struct spf_hook {
	unsigned ops;               /* SPF_OP() of the calls it joins */
	enum spf_stage stage;
	int order;                  /* lower first within a stage */
	int (*fn)(struct spf_call *); /* SPF_BEFORE: 1 answers the call (c->r) */
};

/* SPF_HOOK(name, ops, stage, order) { body }: a hook function named name. */
#define SPF_HOOK(name_, ops_, stage_, order_)                               \
	static int name_(struct spf_call *c);                               \
	static const struct spf_hook spfault_hook_##name_                   \
	__attribute__((used, section("spfault_hooks"), aligned(sizeof(void *)))) = \
		{ ops_, stage_, order_, name_ };                            \
	static int name_(struct spf_call *c)

/* For an interposer that lets other families join its call: run the
 * hooks of c->op (spfault_before: 1 when one answered, c->r set;
 * spfault_again: 1 when c->r is -1 and a hook asks for a restart). */
int spfault_before(struct spf_call *c);
int spfault_again(struct spf_call *c);
void spfault_after(struct spf_call *c);

#endif
