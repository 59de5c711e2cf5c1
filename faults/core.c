/*
 * libspfault.so - sockprobe's own fault injector: the core.
 *
 * LD_PRELOADed into a probe (make check PRELOAD=... or the project's
 * fault self-test), it breaks exactly the semantics named in
 * SOCKPROBE_FAULT (comma separated) and is transparent otherwise. Each
 * fault imitates a plausible wrong system: a stack that keeps datagram
 * boundaries on a stream, a close() that resets, a waitpid that ignores
 * WNOHANG... The self-test (tests/test_faults.py) shows that every
 * behavior's case fails under at least one of them.
 *
 * This file holds no fault. It has the fault table, the shared helpers
 * of spfault.h, and the interposers of the calls that faults of several
 * families change (reading, sending, connection set-up, options, close,
 * installing a signal handler): each runs the hooks the family files
 * (faults/tcp.c, udp.c, ...) declare with SPF_HOOK(). The family files
 * use this file; it never names them.
 *
 * Only sockets/pipes of the kind a fault is about are touched; the probe
 * protocol's own writes to stdout pass straight through.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "spfault.h"

#define MAXFD 1024

/* ---- the fault table (see spfault.h) ---------------------------------- */

/* The table, for the self-test and make mutate (called through dlopen or
 * ctypes, never by a probe). */
extern const struct spfault __start_spfault_rows[], __stop_spfault_rows[];
const struct spfault *spfault_table(int *n)
{
	*n = (int)(__stop_spfault_rows - __start_spfault_rows);
	return __start_spfault_rows;
}

static const char *faults;

int spfault_on(const char *name)
{
	if (!faults) {
		faults = getenv("SOCKPROBE_FAULT");
		if (!faults)
			faults = "";
	}
	size_t n = strlen(name);
	for (const char *p = faults; (p = strstr(p, name)) != NULL; p += n)
		if ((p == faults || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

/* ---- hooks ------------------------------------------------------------ */

extern const struct spf_hook __start_spfault_hooks[], __stop_spfault_hooks[];
/* Every hook, by stage, then order, then link order. */
static const struct spf_hook **hooks;
static int nhooks;
static pthread_once_t hooks_sorted = PTHREAD_ONCE_INIT;

static int hook_before(const struct spf_hook *a, const struct spf_hook *b)
{
	return a->stage != b->stage ? a->stage < b->stage : a->order < b->order;
}

static void sort_hooks(void)
{
	static const struct spf_hook *all[256];
	int n = (int)(__stop_spfault_hooks - __start_spfault_hooks);

	if (n > (int)(sizeof(all) / sizeof(all[0])))
		abort(); /* more hooks than room: raise the bound above */
	for (int i = 0; i < n; i++) {
		int j = i;
		for (; j > 0 && hook_before(&__start_spfault_hooks[i], all[j - 1]); j--)
			all[j] = all[j - 1];
		all[j] = &__start_spfault_hooks[i];
	}
	hooks = all;
	nhooks = n;
}

static int run_hooks(struct spf_call *c, enum spf_stage stage)
{
	pthread_once(&hooks_sorted, sort_hooks);
	for (int i = 0; i < nhooks; i++)
		if (hooks[i]->stage == stage && (hooks[i]->ops & SPF_OP(c->op)) &&
		    hooks[i]->fn(c) && stage != SPF_AFTER)
			return 1;
	return 0;
}

int spfault_before(struct spf_call *c)
{
	return run_hooks(c, SPF_BEFORE);
}

int spfault_again(struct spf_call *c)
{
	return c->r < 0 && run_hooks(c, SPF_AGAIN);
}

void spfault_after(struct spf_call *c)
{
	run_hooks(c, SPF_AFTER);
}

/* ---- shared helpers: none changes errno ----------------------------------- */

REAL(int, getsockopt, int, int, int, void *, socklen_t *)

int spfault_sockopt_int(int fd, int level, int opt)
{
	int v = 0, saved = errno;
	socklen_t len = sizeof(v);

	load_getsockopt();
	if (fd < 0 || real_getsockopt(fd, level, opt, &v, &len) < 0)
		v = 0;
	errno = saved;
	return v;
}

int spfault_sock_type(int fd)
{
	return spfault_sockopt_int(fd, SOL_SOCKET, SO_TYPE);
}

int spfault_family(int fd)
{
	return spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN);
}

ino_t spfault_inode(int fd)
{
	struct stat st;
	int saved = errno;
	ino_t i = fd >= 0 && fstat(fd, &st) == 0 ? st.st_ino : 0;
	errno = saved;
	return i;
}

int spfault_nonblocking(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);
	errno = saved;
	return fl >= 0 && (fl & O_NONBLOCK);
}

int spfault_is_fifo(int fd)
{
	struct stat st;
	int saved = errno;
	int r = fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	errno = saved;
	return r;
}

int spfault_same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(&((struct sockaddr_in *)a)->sin_addr, &((struct sockaddr_in *)b)->sin_addr, 4) == 0 &&
		       ((struct sockaddr_in *)a)->sin_port == ((struct sockaddr_in *)b)->sin_port;
	return memcmp(&((struct sockaddr_in6 *)a)->sin6_addr, &((struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
	       ((struct sockaddr_in6 *)a)->sin6_port == ((struct sockaddr_in6 *)b)->sin6_port;
}

static char explicitly_bound[MAXFD];

int spfault_explicitly_bound(int fd)
{
	return fd >= 0 && fd < MAXFD && explicitly_bound[fd];
}

/* Options a fault stores instead of applying, per descriptor (and its
 * inode: the number may be reused by another socket). */
enum { STORED = 8 };
static struct stored_opt {
	ino_t ino;
	int level, opt;
	socklen_t len;
	unsigned char val[16];
} stored[MAXFD][STORED];

static struct stored_opt *stored_find(int fd, int level, int opt, int make)
{
	ino_t ino = spfault_inode(fd);
	struct stored_opt *free_slot = NULL;

	if (fd < 0 || fd >= MAXFD)
		return NULL;
	for (int i = 0; i < STORED; i++) {
		struct stored_opt *s = &stored[fd][i];
		if (s->len && s->ino == ino && s->level == level && s->opt == opt)
			return s;
		if (!free_slot && (!s->len || s->ino != ino))
			free_slot = s;
	}
	if (!make || !free_slot)
		return NULL;
	*free_slot = (struct stored_opt){ .ino = ino, .level = level, .opt = opt };
	return free_slot;
}

void spfault_store_opt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct stored_opt *s = stored_find(fd, level, opt, 1);

	if (s && len > 0 && len <= sizeof(s->val)) {
		memcpy(s->val, val, len);
		s->len = len;
	}
}

/* ---- receiving ---------------------------------------------------------------- */

REAL(ssize_t, read, int, void *, size_t)
REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, recvfrom, int, void *, size_t, int, struct sockaddr *, socklen_t *)
REAL(ssize_t, recvmsg, int, struct msghdr *, int)

static ssize_t receive(struct spf_call *c)
{
	if (spfault_before(c))
		return c->r;
	do {
		switch (c->op) {
		case SPF_READ:
			load_read();
			c->r = real_read(c->fd, c->buf, c->ask);
			break;
		case SPF_RECV:
			load_recv();
			c->r = real_recv(c->fd, c->buf, c->ask, c->flags);
			break;
		case SPF_RECVFROM:
			load_recvfrom();
			c->r = real_recvfrom(c->fd, c->buf, c->ask, c->flags, c->addr, c->addrlen);
			break;
		default:
			load_recvmsg();
			c->r = real_recvmsg(c->fd, c->msg, c->flags);
			break;
		}
	} while (spfault_again(c));
	spfault_after(c);
	return c->r;
}

ssize_t read(int fd, void *buf, size_t n)
{
	struct spf_call c = { .op = SPF_READ, .fd = fd, .buf = buf, .n = n, .ask = n };
	return receive(&c);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	struct spf_call c = { .op = SPF_RECV, .fd = fd, .buf = buf, .n = n, .ask = n,
			      .flags = flags };
	return receive(&c);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *len)
{
	struct spf_call c = { .op = SPF_RECVFROM, .fd = fd, .buf = buf, .n = n, .ask = n,
			      .flags = flags, .addr = from, .addrlen = len };
	return receive(&c);
}

ssize_t recvmsg(int fd, struct msghdr *mh, int flags)
{
	size_t room = 0;
	for (size_t i = 0; mh && i < (size_t)mh->msg_iovlen; i++)
		room += mh->msg_iov[i].iov_len;
	struct spf_call c = { .op = SPF_RECVMSG, .fd = fd, .n = room, .ask = room,
			      .flags = flags, .msg = mh };
	return receive(&c);
}

/* ---- sending -------------------------------------------------------------------- */

REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t)
REAL(ssize_t, sendmsg, int, const struct msghdr *, int)

static ssize_t emit(struct spf_call *c)
{
	if (spfault_before(c))
		return c->r;
	load_sendmsg();
	load_write();
	load_sendto();
	load_send();
	do
		c->r = c->op == SPF_SENDMSG ? real_sendmsg(c->fd, c->out, c->flags)
		     : c->via_write ? real_write(c->fd, c->data, c->n)
		     : c->to ? real_sendto(c->fd, c->data, c->n, c->flags, c->to, c->tolen)
			     : real_send(c->fd, c->data, c->n, c->flags);
	while (spfault_again(c));
	spfault_after(c);
	return c->r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
	struct spf_call c = { .op = SPF_WRITE, .fd = fd, .data = buf, .n = n, .via_write = 1 };
	return emit(&c);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	struct spf_call c = { .op = SPF_SEND, .fd = fd, .data = buf, .n = n, .flags = flags };
	return emit(&c);
}

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t len)
{
	struct spf_call c = { .op = SPF_SENDTO, .fd = fd, .data = buf, .n = n, .flags = flags,
			      .to = to, .tolen = len };
	return emit(&c);
}

ssize_t sendmsg(int fd, const struct msghdr *mh, int flags)
{
	struct spf_call c = { .op = SPF_SENDMSG, .fd = fd, .out = mh, .flags = flags };
	return emit(&c);
}

/* ---- connection set-up ------------------------------------------------------------ */

REAL(int, connect, int, const struct sockaddr *, socklen_t)
REAL(int, bind, int, const struct sockaddr *, socklen_t)
REAL(int, accept, int, struct sockaddr *, socklen_t *)
REAL(int, accept4, int, struct sockaddr *, socklen_t *, int)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)

int connect(int fd, const struct sockaddr *a, socklen_t len)
{
	struct spf_call c = { .op = SPF_CONNECT, .fd = fd, .to = a, .tolen = len };

	if (spfault_before(&c))
		return (int)c.r;
	load_connect();
	do
		c.r = real_connect(fd, a, len);
	while (spfault_again(&c));
	spfault_after(&c);
	return (int)c.r;
}

int bind(int fd, const struct sockaddr *a, socklen_t len)
{
	struct spf_call c = { .op = SPF_BIND, .fd = fd, .to = a, .tolen = len };

	if (spfault_before(&c))
		return (int)c.r;
	load_bind();
	c.r = real_bind(fd, a, len);
	spfault_after(&c);
	if (c.r == 0 && fd >= 0 && fd < MAXFD)
		explicitly_bound[fd] = 1;
	return (int)c.r;
}

static int accept_call(struct spf_call *c, int four)
{
	if (spfault_before(c))
		return (int)c->r;
	load_accept();
	load_accept4();
	do
		c->r = four ? real_accept4(c->fd, c->addr, c->addrlen, c->flags)
			    : real_accept(c->fd, c->addr, c->addrlen);
	while (spfault_again(c));
	spfault_after(c);
	return (int)c->r;
}

int accept(int l, struct sockaddr *a, socklen_t *len)
{
	struct spf_call c = { .op = SPF_ACCEPT, .fd = l, .addr = a, .addrlen = len };
	return accept_call(&c, 0);
}

int accept4(int l, struct sockaddr *a, socklen_t *len, int flags)
{
	struct spf_call c = { .op = SPF_ACCEPT, .fd = l, .addr = a, .addrlen = len, .flags = flags };
	return accept_call(&c, 1);
}

int getsockname(int fd, struct sockaddr *a, socklen_t *len)
{
	struct spf_call c = { .op = SPF_GETSOCKNAME, .fd = fd, .addr = a, .addrlen = len };

	if (spfault_before(&c))
		return (int)c.r;
	load_getsockname();
	c.r = real_getsockname(fd, a, len);
	spfault_after(&c);
	return (int)c.r;
}

REAL(int, listen, int, int)

int listen(int fd, int backlog)
{
	struct spf_call c = { .op = SPF_LISTEN, .fd = fd, .flags = backlog };

	if (spfault_before(&c))
		return (int)c.r;
	load_listen();
	c.r = real_listen(fd, c.flags);
	spfault_after(&c);
	return (int)c.r;
}

/* ---- options ------------------------------------------------------------------------- */

REAL(int, setsockopt, int, int, int, const void *, socklen_t)

int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	struct spf_call c = { .op = SPF_GETSOCKOPT, .fd = fd, .level = level, .opt = opt,
			      .val = val, .vallen = len };

	if (spfault_before(&c))
		return (int)c.r;
	load_getsockopt();
	c.r = real_getsockopt(fd, level, opt, val, len);
	spfault_after(&c);
	/* What a fault stored instead of applying reads back as set. */
	struct stored_opt *s;
	if (c.r == 0 && val && len && (s = stored_find(fd, level, opt, 0)) != NULL &&
	    *len >= s->len)
		memcpy(val, s->val, s->len);
	return (int)c.r;
}

int setsockopt(int fd, int level, int opt, const void *val, socklen_t len)
{
	struct spf_call c = { .op = SPF_SETSOCKOPT, .fd = fd, .level = level, .opt = opt,
			      .val = (void *)val, .setlen = len };

	if (spfault_before(&c))
		return (int)c.r;
	load_setsockopt();
	c.r = real_setsockopt(fd, level, opt, val, len);
	spfault_after(&c);
	return (int)c.r;
}

/* ---- descriptors: socket, fcntl, ioctl --------------------------------------------- */

REAL(int, socket, int, int, int)
REAL(int, fcntl, int, int, ...)
REAL(int, ioctl, int, unsigned long, ...)

int socket(int domain, int type, int protocol)
{
	struct spf_call c = { .op = SPF_SOCKET, .fd = -1, .domain = domain, .type = type,
			      .protocol = protocol };

	if (spfault_before(&c))
		return (int)c.r;
	load_socket();
	c.r = c.fd = real_socket(domain, c.type, protocol);
	spfault_after(&c);
	return (int)c.r;
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	struct spf_call c = { .op = SPF_FCNTL, .fd = fd, .flags = cmd, .arg = va_arg(ap, long) };
	va_end(ap);

	if (spfault_before(&c))
		return (int)c.r;
	load_fcntl();
	c.r = real_fcntl(fd, c.flags, c.arg);
	spfault_after(&c);
	return (int)c.r;
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	struct spf_call c = { .op = SPF_IOCTL, .fd = fd, .req = req, .val = va_arg(ap, void *) };
	va_end(ap);

	if (spfault_before(&c))
		return (int)c.r;
	load_ioctl();
	c.r = real_ioctl(fd, req, c.val);
	spfault_after(&c);
	return (int)c.r;
}

/* ---- disconnecting --------------------------------------------------------------------- */

REAL(int, shutdown, int, int)
REAL(int, close, int)

int shutdown(int fd, int how)
{
	struct spf_call c = { .op = SPF_SHUTDOWN, .fd = fd, .flags = how };

	if (spfault_before(&c))
		return (int)c.r;
	load_shutdown();
	c.r = real_shutdown(fd, c.flags);
	spfault_after(&c);
	return (int)c.r;
}

/* The SPF_BEFORE hooks of close forget what their family kept about fd
 * (order < 10), then may change how it closes. */
int close(int fd)
{
	struct spf_call c = { .op = SPF_CLOSE, .fd = fd };

	if (fd >= 0 && fd < MAXFD)
		explicitly_bound[fd] = 0;
	if (spfault_before(&c))
		return (int)c.r;
	load_close();
	c.r = real_close(fd);
	spfault_after(&c);
	return (int)c.r;
}

/* ---- installing a signal handler --------------------------------------------------------- */

REAL(sighandler_t, signal, int, sighandler_t)
REAL(int, sigaction, int, const struct sigaction *, struct sigaction *)

/* Hooks may swap the handler; a hook that sets flags (anything but -1)
 * makes signal() install it with sigaction() and those flags. */
sighandler_t signal(int sig, sighandler_t h)
{
	struct spf_call c = { .op = SPF_SIGNAL, .sig = sig, .handler = h, .flags = -1 };

	load_signal();
	spfault_before(&c);
	if (c.flags != -1) {
		struct sigaction sa = { .sa_handler = c.handler, .sa_flags = c.flags }, old;
		sigemptyset(&sa.sa_mask);
		load_sigaction();
		if (real_sigaction(sig, &sa, &old) < 0)
			return SIG_ERR;
		return old.sa_handler;
	}
	return real_signal(sig, c.handler);
}

int sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	load_sigaction();
	if (sa && !(sa->sa_flags & SA_SIGINFO)) {
		struct spf_call c = { .op = SPF_SIGACTION, .sig = sig, .handler = sa->sa_handler,
				      .flags = sa->sa_flags };
		spfault_before(&c);
		if (c.handler != sa->sa_handler || c.flags != sa->sa_flags) {
			struct sigaction copy = *sa;
			copy.sa_handler = c.handler;
			copy.sa_flags = c.flags;
			return real_sigaction(sig, &copy, old);
		}
	}
	return real_sigaction(sig, sa, old);
}

/* The C library's syscall(), past faults/entry.c's interposer: fault code
 * that must reach the kernel itself calls this, never another file's. */
REAL(long, syscall, long, ...)
long spfault_syscall(long nr, long a, long b, long c, long d, long e, long f)
{
	load_syscall();
	return real_syscall(nr, a, b, c, d, e, f);
}
