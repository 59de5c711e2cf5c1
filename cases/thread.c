/*
 * thread.c - threads and sockets (catalogue part 2, "Threads", textbook
 * ch. 18).
 *
 *  1. THREAD-SHARED-FDS           threads share one descriptor table: a
 *                                 socket made in a thread works in main by
 *                                 its number, a thread serves a connection
 *                                 main accepted, a close in a thread closes
 *                                 the descriptor for main too.
 *  2. THREAD-SHUTDOWN-WAKES-READ  Linux: a read blocked in one thread
 *                                 returns 0 when another thread calls
 *                                 shutdown(SHUT_RD) or shutdown(SHUT_RDWR)
 *                                 (the system call or io_uring SHUTDOWN);
 *                                 after SHUT_RD the socket still sends.
 *                                 Each read call (read, recv, recvfrom,
 *                                 recvmsg, readv, recvmmsg, splice, io_uring
 *                                 READ/READV/RECV/RECVMSG) with each
 *                                 shutdown, on TCP and on an AF_UNIX
 *                                 stream pair.
 *  3. THREAD-MUTEX-EXCLUSION      4 threads x 200000 locked increments give
 *                                 exactly 800000; while one thread holds
 *                                 the mutex, trylock in another gives EBUSY
 *                                 and lock in another waits.
 *  4. THREAD-JOIN-RETURNS         pthread_join waits for a thread that is
 *                                 still running, and returns the value its
 *                                 function returned or gave pthread_exit.
 *
 * Threads never call the assertions (a failed check ends the test's
 * thread): they hand results back and main checks them. Every thread is
 * joined; every wait is bounded; a thread blocked on purpose is woken by
 * the test itself if the behavior under test does not wake it.
 *
 * Platform-defined (recorded): whether close() from another thread wakes
 * a blocked read (Linux: no, the read stays blocked and returns the
 * peer's data later).
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/uio.h>

static pid_t thread_id(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Is a thread asleep in the kernel (state S in /proc)? */
static int task_sleeping(void *arg)
{
	return sp_proc_state(*(volatile pid_t *)arg) == 'S';
}

/* Wait (bounded) until the thread with *tid is asleep; 0 without /proc. */
static int wait_asleep(volatile pid_t *tid)
{
	if (!sp_have_proc())
		return 0;
	return sp_wait_until(task_sleeping, (void *)tid, sp_wait_ms());
}

/* A pipe used as a channel between threads. Its ends are PIPE-ENDS'
 * behavior, a mechanism here: the fixture barrier is such a pipe, checked
 * once (broken, needs PIPE-ENDS, when fds[1] does not write to fds[0]). */
static void channel_pipe(int fds[2])
{
	struct sp_barrier b;

	sp_barrier_init(&b);
	fds[0] = b.fd[0];
	fds[1] = b.fd[1];
}

/* pthread_join() waits for the thread (THREAD-JOIN-RETURNS' behavior, a
 * mechanism for the other items): *finished, set as the thread's last
 * act, must be there once it returns. */
static void join_finished(pthread_t t, volatile int *finished, const char *what)
{
	ASSERT_EQ(0, pthread_join(t, NULL));
	if (!__atomic_load_n(finished, __ATOMIC_ACQUIRE))
		BROKEN_NEEDS("THREAD-JOIN-RETURNS", "pthread_join() returned before the thread that "
			     "%s had finished", what);
}

/* ---- 1. THREAD-SHARED-FDS --------------------------------------------- */

struct made_socket { const struct sp_ctx *ctx; int fd, err; volatile int finished; };

static void *make_bound_udp_socket(void *arg)
{
	struct made_socket *m = arg;
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(m->ctx, &ss, 0);

	m->fd = socket(m->ctx->af, SOCK_DGRAM, 0);
	if (m->fd < 0 || bind(m->fd, (struct sockaddr *)&ss, len) < 0)
		m->err = errno;
	__atomic_store_n(&m->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

struct served { int fd; ssize_t got, sent; char buf[16]; int err; volatile int finished; };

static void *serve_accepted(void *arg)
{
	struct served *s = arg;
	struct pollfd p = { .fd = s->fd, .events = POLLIN };

	s->got = s->sent = -1;
	if (poll(&p, 1, sp_wait_ms()) != 1) {
		s->err = ETIMEDOUT;
		return NULL;
	}
	s->got = read(s->fd, s->buf, sizeof(s->buf));
	s->err = errno;
	s->sent = write(s->fd, "pong", 4);
	__atomic_store_n(&s->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

struct closer { int fd, ret, err; volatile int finished; };

static void *close_descriptor(void *arg)
{
	struct closer *c = arg;
	c->ret = close(c->fd);
	c->err = errno;
	__atomic_store_n(&c->finished, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* 1. A descriptor means the same socket in every thread of a process. */
SP_TEST(thread_descriptors_are_shared_by_all_threads, "THREAD-SHARED-FDS", SP_INET)
{
	pthread_t t;
	char buf[16];

	/* A socket a thread made works in main by its number. */
	struct made_socket m = { ctx, -1, 0, 0 };
	ASSERT_EQ(0, pthread_create(&t, NULL, make_bound_udp_socket, &m));
	join_finished(t, &m.finished, "makes and binds a UDP socket");
	ASSERT_TRUE(m.fd >= 0 && m.err == 0, "the thread made and bound a UDP socket (%s)",
		    sp_errno_name(m.err));
	struct sockaddr_storage self;
	socklen_t len = sizeof(self);
	ASSERT_SYS(getsockname(m.fd, (struct sockaddr *)&self, &len));
	ASSERT_TRUE(sp_port(&self) != 0, "getsockname() in main of the socket the thread bound: "
		    "expected its port, observed port 0");
	ASSERT_EQ(4, sendto(m.fd, "self", 4, 0, (struct sockaddr *)&self, len));
	EXPECT_EVENTS(m.fd, POLLIN, POLLIN, "the datagram arrives");
	ASSERT_EQ(4, recv(m.fd, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("self", buf, 4);
	ASSERT_SYS(close(m.fd));

	/* A thread reads and answers on the connection main accepted. */
	int c, s;
	sp_tcp_pair(ctx, &c, &s);
	struct served sv = { .fd = s };
	ASSERT_EQ(4, write(c, "ping", 4));
	ASSERT_EQ(0, pthread_create(&t, NULL, serve_accepted, &sv));
	join_finished(t, &sv.finished, "serves the accepted connection");
	ASSERT_TRUE(sv.got == 4, "the thread read main's accepted socket: %zd bytes (%s)",
		    sv.got, sp_errno_name(sv.err));
	ASSERT_MEM_EQ("ping", sv.buf, 4);
	ASSERT_EQ(4, sv.sent);
	ASSERT_EQ(4, sp_read_all(c, buf, 4));
	ASSERT_MEM_EQ("pong", buf, 4);

	/* A close in a thread closes main's descriptor (not a copy). */
	struct closer cl = { .fd = ASSERT_SYS(socket(ctx->af, SOCK_DGRAM, 0)) };
	ASSERT_EQ(0, pthread_create(&t, NULL, close_descriptor, &cl));
	join_finished(t, &cl.finished, "closes the descriptor");
	ASSERT_EQ(0, cl.ret);
	ASSERT_ERRNO(fcntl(cl.fd, F_GETFD), EBADF);
}

/* ---- 2. THREAD-SHUTDOWN-WAKES-READ ------------------------------------ */

struct blocked_read {
	int fd, done[2];
	int api;        /* the read call, enum sp_io */
	volatile pid_t tid;
	ssize_t n;
	int err;
	char buf[16];
};

static void *read_until_woken(void *arg)
{
	struct blocked_read *b = arg;

	b->tid = thread_id();
	b->n = sp_io_in(b->api, b->fd, b->buf, sizeof(b->buf), 0);
	b->err = errno;
	(void)!write(b->done[1], "x", 1);
	return NULL;
}

/* Start a thread blocked in a read on fd (asleep when /proc can tell). */
static void start_blocked_read(struct blocked_read *b, pthread_t *t, int fd, int api)
{
	memset(b, 0, sizeof(*b));
	b->fd = fd;
	b->api = api;
	channel_pipe(b->done);
	ASSERT_EQ(0, pthread_create(t, NULL, read_until_woken, b));
	wait_asleep(&b->tid);
	ASSERT_TRUE(!(sp_poll(b->done[0], POLLIN, 0) & POLLIN),
		    "%s on an empty socket blocks (returned %zd, %s)", sp_io_in_name(api), b->n,
		    sp_errno_name(b->err));
}

/* Has the blocked read returned (its thread wrote to `done`) within the
 * bound? */
static int read_returned(struct blocked_read *b)
{
	return (sp_poll(b->done[0], POLLIN, sp_wait_ms()) & POLLIN) != 0;
}

/* Join the reader; if its read has not returned (woke == 0), wake it with
 * data from the peer first. Returns woke. */
static int finish_blocked_read(struct blocked_read *b, pthread_t t, int peer, int woke)
{
	if (!woke) {
		(void)!send(peer, "wake", 4, MSG_NOSIGNAL);
		shutdown(peer, SHUT_WR);
		sp_poll(b->done[0], POLLIN, sp_wait_ms());
	}
	ASSERT_EQ(0, pthread_join(t, NULL));
	close(b->done[0]);
	close(b->done[1]);
	return woke;
}

/* 2. shutdown() in one thread ends a read blocked in another with 0. */
SP_TEST(thread_shutdown_wakes_blocked_read, "THREAD-SHUTDOWN-WAKES-READ", SP_INET,
	.kind = SP_VALUES(SP_KIND_TCP, SP_KIND_UNIX),
	.read = SP_EVERY_READ, .how = SP_NAMES("SHUT_RD", "SHUT_RDWR", "io_uring:SHUTDOWN(SHUT_RD)",
					       "io_uring:SHUTDOWN(SHUT_RDWR)"))
{
	const char *kname = sp_kind_name(ctx->kind), *hname = ctx->how_name;
	const int api = ctx->read, how = ctx->how % 2 ? SHUT_RDWR : SHUT_RD, uring = ctx->how >= 2;
	struct blocked_read b;
	pthread_t t;
	int c, s;
	char buf[16];

	/* Known before a thread blocks: a variant that ends here leaves none. */
	const char *missing = uring ? sp_uring_missing(SP_URING_SHUTDOWN) : NULL;
	if (missing)
		UNAVAILABLE("%s", missing);
	sp_pair(ctx, &c, &s);
	start_blocked_read(&b, &t, s, api);
	int sr = sp_shutdown_through(uring, s, how);
	int serr = errno;
	int woke = read_returned(&b);
	/* Not woken: does a new read on the socket return 0? shutdown()
	 * making reads return 0 is CLOSE-HALF-RD's behavior, a mechanism
	 * here; this ID is that it also ends a read already blocked. */
	ssize_t fresh = 0;
	int ferr = 0;
	if (!woke && sr == 0) {
		sp_set_nonblock(s, 1);
		fresh = read(s, buf, sizeof(buf));
		ferr = errno;
		sp_set_nonblock(s, 0);
	}
	finish_blocked_read(&b, t, c, woke);
	if (sr != 0 && (serr == EOPNOTSUPP || serr == EINVAL))
		UNSUPPORTED("shutdown(%s) on a %s stream (%s)", hname, kname,
			    sp_errno_name(serr));
	if (sr != 0)
		FAIL("%s: shutdown(%s) failed: %s", kname, hname, sp_errno_name(serr));
	if (!woke && fresh != 0)
		BROKEN_NEEDS("CLOSE-HALF-RD", "%s: after shutdown(%s) a new read() does not return 0 "
			     "either (%zd, %s): the socket's reading side was not shut", kname, hname,
			     fresh, fresh < 0 ? sp_errno_name(ferr) : "data");
	if (!woke)
		FAIL("%s: %s blocked in another thread did not return within %d ms "
		     "of shutdown(%s), though a new read() then returned 0", kname,
		     sp_io_in_name(api), sp_wait_ms(), hname);
	if (b.n != 0)
		FAIL("%s: %s woken by shutdown(%s) returned %zd (%s), expected 0",
		     kname, sp_io_in_name(api), hname, b.n, sp_errno_name(b.err));
	/* And every later read sees end of input, without blocking (reads
	 * returning 0 after SHUT_RD are CLOSE-HALF-RD's Must, checked here
	 * only as what follows the wake-up). */
	sp_set_nonblock(s, 1);
	errno = 0;
	ssize_t later = sp_io_in(api, s, buf, sizeof(buf), 0);
	int lerr = errno;
	sp_set_nonblock(s, 0);
	if (later < 0 && lerr == EAGAIN)
		BROKEN_NEEDS("CLOSE-HALF-RD", "%s: after shutdown(%s) the read that followed the "
			     "woken one says EAGAIN, not 0", kname, hname);
	ASSERT_EQ(0, later);
	if (how == SHUT_RD) {
		/* Reading is shut; sending is not. */
		ASSERT_EQ(5, send(s, "after", 5, MSG_NOSIGNAL));
		ASSERT_EQ(5, sp_read_all(c, buf, 5));
		ASSERT_MEM_EQ("after", buf, 5);
	} else {
		ASSERT_ERRNO(send(s, "after", 5, MSG_NOSIGNAL), EPIPE);
	}
	close(c);
	close(s);

	/* Record: does close() from another thread wake a blocked read? */
	if (!ctx->first)
		return;
	sp_tcp_pair(ctx, &c, &s);
	start_blocked_read(&b, &t, s, SP_IO_READ);
	ASSERT_SYS(close(s));
	int woke_by_close = (sp_poll(b.done[0], POLLIN, 0) & POLLIN) != 0;
	ASSERT_EQ(4, write(c, "late", 4));
	finish_blocked_read(&b, t, c, read_returned(&b));
	if (woke_by_close)
		RECORD("close_from_other_thread", "wakes the read: returned %zd (%s)", b.n,
		       b.n < 0 ? sp_errno_name(b.err) : "");
	else if (b.n == 4)
		RECORD("close_from_other_thread", "does not wake the read; it returned the peer's "
		       "later data");
	else
		RECORD("close_from_other_thread", "read returned %zd (%s) after the peer wrote",
		       b.n, b.n < 0 ? sp_errno_name(b.err) : "");
	close(c);
}

/* ---- 3. THREAD-MUTEX-EXCLUSION ---------------------------------------- */

enum { THREADS = 4, INCREMENTS = 200000 };

static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static pthread_barrier_t start_line;

static void *add_under_lock(void *arg)
{
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < INCREMENTS; i++) {
		pthread_mutex_lock(&counter_lock);
		counter++;
		pthread_mutex_unlock(&counter_lock);
	}
	__atomic_store_n((volatile int *)arg, 1, __ATOMIC_RELEASE);
	return NULL;
}

struct contender { pthread_mutex_t *m; int trylock; volatile int tried, locked; volatile pid_t tid; };

static void *try_then_lock(void *arg)
{
	struct contender *k = arg;

	k->tid = thread_id();
	k->trylock = pthread_mutex_trylock(k->m);
	if (k->trylock == 0)
		pthread_mutex_unlock(k->m);
	__atomic_store_n(&k->tried, 1, __ATOMIC_RELEASE);
	pthread_mutex_lock(k->m);
	k->locked = 1;
	pthread_mutex_unlock(k->m);
	return NULL;
}

static int contender_tried(void *arg)
{
	struct contender *k = arg;
	return __atomic_load_n(&k->tried, __ATOMIC_ACQUIRE);
}

static int contender_locked_or_asleep(void *arg)
{
	struct contender *k = arg;
	return k->locked || (k->tid && sp_proc_state(k->tid) == 'S');
}

/* 3. A mutex excludes: no increment is lost, a second locker waits. */
SP_TEST(thread_mutex_keeps_every_increment, "THREAD-MUTEX-EXCLUSION", SP_NONE)
{
	(void)ctx;
	pthread_t t[THREADS];

	counter = 0;
	ASSERT_EQ(0, pthread_barrier_init(&start_line, NULL, THREADS));
	static volatile int added[THREADS];
	for (int i = 0; i < THREADS; i++) {
		added[i] = 0;
		ASSERT_EQ(0, pthread_create(&t[i], NULL, add_under_lock, (void *)&added[i]));
	}
	for (int i = 0; i < THREADS; i++)
		join_finished(t[i], &added[i], "adds under the lock");
	pthread_barrier_destroy(&start_line);
	RECORD("counter", "%ld", counter);
	ASSERT_EQ((long)THREADS * INCREMENTS, counter);

	/* While main holds the mutex: trylock elsewhere is EBUSY, lock waits. */
	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	struct contender k = { .m = &m };
	pthread_t ct;
	ASSERT_EQ(0, pthread_mutex_lock(&m));
	ASSERT_EQ(0, pthread_create(&ct, NULL, try_then_lock, &k));
	/* The trylock must happen while main holds the mutex, /proc or not. */
	int tried = sp_wait_until(contender_tried, &k, sp_wait_ms());
	int seen = sp_have_proc() ? sp_wait_until(contender_locked_or_asleep, &k, sp_wait_ms()) : 0;
	int locked_while_held = k.locked;
	ASSERT_EQ(0, pthread_mutex_unlock(&m));
	ASSERT_EQ(0, pthread_join(ct, NULL));
	ASSERT_TRUE(tried, "the other thread's pthread_mutex_trylock() while main held the mutex: "
		    "expected it to return within %d ms, observed it still in the call",
		    sp_wait_ms());
	ASSERT_ERRVAL(EBUSY, k.trylock);
	if (seen)
		ASSERT_TRUE(!locked_while_held,
			    "pthread_mutex_lock() in another thread while main held the mutex: "
			    "expected it to wait, observed it took the mutex");
	else
		RECORD("second_locker_waits", "not observed (no /proc state)");
	ASSERT_EQ(1, k.locked);
}

/* ---- 4. THREAD-JOIN-RETURNS ------------------------------------------- */

struct gated { int gate[2]; volatile int finished; int use_exit; };

static void *finish_after_gate(void *arg)
{
	struct gated *g = arg;
	char x;

	(void)!read(g->gate[0], &x, 1); /* released by the test */
	g->finished = 1;
	if (g->use_exit)
		pthread_exit((void *)0x5e11);
	return (void *)0xca11;
}

struct opener { volatile pid_t *waiter; int fd; };

/* Opens the gate once the joining thread sleeps (in pthread_join). */
static void *open_gate_when_joiner_sleeps(void *arg)
{
	struct opener *o = arg;
	wait_asleep(o->waiter);
	(void)!write(o->fd, "g", 1);
	return NULL;
}

/* 4. pthread_join waits for the thread and hands back its result. */
SP_TEST(thread_join_waits_and_returns_value, "THREAD-JOIN-RETURNS", SP_NONE,
	.how = SP_NAMES("return", "pthread_exit()"))
{
	const int use_exit = ctx->how;
	struct gated g = { .use_exit = use_exit };
	volatile pid_t me = thread_id();
	pthread_t worker, opener_t;
	void *ret = NULL;

	channel_pipe(g.gate);
	ASSERT_EQ(0, pthread_create(&worker, NULL, finish_after_gate, &g));
	struct opener o = { &me, g.gate[1] };
	ASSERT_EQ(0, pthread_create(&opener_t, NULL, open_gate_when_joiner_sleeps, &o));
	ASSERT_EQ(0, pthread_join(worker, &ret));
	int finished = g.finished;
	ASSERT_EQ(0, pthread_join(opener_t, NULL));
	ASSERT_TRUE(finished, "pthread_join(): expected it to return after the thread finished, "
		    "observed it returned before");
	ASSERT_EQ(use_exit ? 0x5e11 : 0xca11, (long)(intptr_t)ret);
	close(g.gate[0]);
	close(g.gate[1]);

	/* A thread that already ended: join returns its value at once. */
	struct gated done = { .use_exit = use_exit };
	pthread_t ended;
	ret = NULL;
	channel_pipe(done.gate);
	ASSERT_EQ(1, write(done.gate[1], "g", 1));
	ASSERT_EQ(0, pthread_create(&ended, NULL, finish_after_gate, &done));
	ASSERT_EQ(0, pthread_join(ended, &ret));
	ASSERT_EQ(1, done.finished);
	ASSERT_EQ(use_exit ? 0x5e11 : 0xca11, (long)(intptr_t)ret);
	close(done.gate[0]);
	close(done.gate[1]);
}

SP_MAIN("thread")
