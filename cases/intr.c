/*
 * intr.c - signals and blocking socket calls, socket timeouts (catalogue
 * part 3, "Signals and blocking calls"; signal(7), socket(7)).
 *
 *  1. INTR-RESTART-SOCKET-CALLS  with an SA_RESTART handler, a recv()
 *                                blocked on an empty TCP socket (through
 *                                read, recv, recvfrom, recvmsg, readv,
 *                                recvmmsg and splice)
 *                                returns the 5 bytes sent after the
 *                                handler ran, accept() and accept4() the
 *                                connection made after it, waitpid() the
 *                                child's status; without SA_RESTART each
 *                                fails with EINTR.
 *  2. INTR-CONNECT               a blocking connect() to a full accept
 *                                queue: restarted under SA_RESTART, it
 *                                returns 0 once one accept() made room;
 *                                without SA_RESTART it fails with EINTR and
 *                                the attempt goes on (EALREADY, not
 *                                writable while the queue is full, then
 *                                writable with SO_ERROR 0 and a peer).
 *  3. INTR-TIMEOUT-NO-RESTART    with SO_RCVTIMEO/SO_SNDTIMEO at 5 s, recv
 *                                (every system call that reads), accept,
 *                                send (buffer full; every system call that
 *                                writes) and connect (queue full) fail
 *                                with EINTR at the signal even under
 *                                SA_RESTART.
 *  4. INTR-MUX-NO-RESTART        poll(-1), select(NULL), epoll_wait(-1)
 *                                and poll(5000) fail with EINTR under
 *                                SA_RESTART (and ppoll, pselect,
 *                                epoll_pwait, epoll_pwait2; each with no
 *                                limit and with 5 s).
 *  5. INTR-PARTIAL-TRANSFER      recv(20, MSG_WAITALL) with 5 bytes queued
 *                                (recv, recvfrom, recvmsg, recvmmsg) and a
 *                                blocking send() of 32 MiB (write, send,
 *                                sendto, sendmsg, writev, sendmmsg) return
 *                                their count when interrupted (with and
 *                                without SA_RESTART), and the peer reads
 *                                exactly that many bytes, in order, then
 *                                EOF; with nothing moved, EINTR.
 *  6. TIMEO-RCVTIMEO             SO_RCVTIMEO reads {0,0}, then {0,200000}
 *                                as set; recv() (through read, recv,
 *                                recvfrom, recvmsg, readv, recvmmsg and
 *                                splice), accept()
 *                                and accept4() then fail with EAGAIN after
 *                                180 ms to 2 s (all at once, one thread
 *                                each); {0,0} reads back {0,0}.
 *  7. TIMEO-SNDTIMEO             SO_SNDTIMEO reads {0,0}, then {0,200000};
 *                                with 64 KiB buffers a blocking send() of
 *                                32 MiB (through write, send, sendto,
 *                                sendmsg, writev and sendmmsg, at once)
 *                                returns a partial count after 180 ms to
 *                                3 s, the next one EAGAIN after 180 ms.
 *  8. TIMEO-CONNECT              Linux: SO_SNDTIMEO of 200 ms bounds a
 *                                blocking connect() to a full queue (fails
 *                                after 180 ms to 2 s).
 *
 * Signals without guesswork: a helper thread (all signals blocked) waits
 * until the calling thread is asleep in the call (/proc/self/task/TID/stat
 * in state S and /proc/self/task/TID/syscall naming the call; where that
 * file cannot be read, the state alone, recorded as block_seen), then
 * sends SIGALRM to that thread. What must happen "after the handler ran"
 * (the peer's bytes, the connection, the child's exit, an accept()) is
 * done by the helper once the handler has run. A call that should return
 * and does not is ended by a guard: SIGUSR2 (no SA_RESTART) 2 s after the
 * signal, and the item fails naming the call. Every wait is bounded.
 *
 * The full accept queue (catalogue convention): listen(fd, 1), filled with
 * non-blocking connects until one stays in progress for 150 ms (that one
 * is closed); a further connect then waits in SYN_SENT until the SYN
 * retransmission after an accept(). Lower time bounds are measured on
 * CLOCK_MONOTONIC; upper bounds are the guard's.
 *
 * Platform-defined (recorded): how the blocked call was seen; the time a
 * restarted connect took and what a retried or repeated connect returns;
 * the partial send count; the SO_RCVTIMEO value read back for {0,150001},
 * the errno for tv_usec = 1000000, elapsed times (in 100 ms steps), and
 * what recv(8, MSG_WAITALL) returns with 3 bytes queued at the timeout;
 * connect's errno at SO_SNDTIMEO.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>

/* ---- the calls, and the system calls that may carry them --------------- */

enum call { C_READ, C_RECV, C_RECVFROM, C_RECVMSG, C_READV, C_RECVMMSG, C_SPLICE, C_ACCEPT,
	    C_ACCEPT4, C_WAITPID, C_CONNECT, C_SEND, C_WRITE, C_WRITEV, C_SENDMMSG, C_POLL,
	    C_SELECT, C_EPOLL, C_CALLS };

static const char *const call_name[C_CALLS] = {
	"read()", "recv()", "recvfrom()", "recvmsg()", "readv()", "recvmmsg()", "splice()",
	"accept()", "accept4()",
	"waitpid()", "connect()", "send()", "write()", "writev()", "sendmmsg()", "poll()", "select()", "epoll_wait()",
};

/* System call numbers that may carry the call (libc's choice), -1 ends. */
static void call_nrs(enum call c, long nr[6])
{
	int n = 0;
#define NR(x) nr[n++] = (x)
	switch (c) {
	case C_READ: NR(SYS_read); break;
	case C_RECV: case C_RECVFROM:
#ifdef SYS_recvfrom
		NR(SYS_recvfrom);
#endif
#ifdef SYS_recv
		NR(SYS_recv);
#endif
		break;
	case C_RECVMSG: NR(SYS_recvmsg); break;
	case C_READV: NR(SYS_readv); break;
	case C_RECVMMSG:
#ifdef SYS_recvmmsg
		NR(SYS_recvmmsg);
#endif
#ifdef SYS_recvmmsg_time64
		NR(SYS_recvmmsg_time64);
#endif
		break;
	case C_SPLICE: NR(SYS_splice); break;
	case C_ACCEPT: case C_ACCEPT4:
#ifdef SYS_accept
		NR(SYS_accept);
#endif
		NR(SYS_accept4);
		break;
	case C_WAITPID: NR(SYS_wait4); NR(SYS_waitid); break;
	case C_CONNECT: NR(SYS_connect); break;
	case C_SEND:
#ifdef SYS_sendto
		NR(SYS_sendto);
#endif
#ifdef SYS_send
		NR(SYS_send);
#endif
		NR(SYS_sendmsg);
		break;
	case C_WRITE: NR(SYS_write); break;
	case C_WRITEV: NR(SYS_writev); break;
	case C_SENDMMSG: NR(SYS_sendmmsg); break;
	case C_POLL:
#ifdef SYS_poll
		NR(SYS_poll);
#endif
#ifdef SYS_ppoll
		NR(SYS_ppoll);
#endif
#ifdef SYS_ppoll_time64
		NR(SYS_ppoll_time64);
#endif
		break;
	case C_SELECT:
#ifdef SYS_select
		NR(SYS_select);
#endif
#ifdef SYS__newselect
		NR(SYS__newselect);
#endif
#ifdef SYS_pselect6
		NR(SYS_pselect6);
#endif
#ifdef SYS_pselect6_time64
		NR(SYS_pselect6_time64);
#endif
		break;
	case C_EPOLL:
#ifdef SYS_epoll_wait
		NR(SYS_epoll_wait);
#endif
		NR(SYS_epoll_pwait);
#ifdef SYS_epoll_pwait2
		NR(SYS_epoll_pwait2);
#endif
		break;
	default: break;
	}
#ifdef SYS_socketcall
	NR(SYS_socketcall); /* i386: socket calls may all go through it */
#endif
#undef NR
	nr[n] = -1;
}

/* ---- signal handlers ------------------------------------------------------ */

static volatile sig_atomic_t alrm_hits, guard_hits;

static void on_alrm(int sig) { (void)sig; alrm_hits++; }
static void on_guard(int sig) { (void)sig; guard_hits++; }

/* SIGALRM's handler, with or without SA_RESTART; SIGUSR2 the guard (never
 * restarts: it turns a hang into EINTR). */
static void install(int restart)
{
	struct sigaction sa = { .sa_handler = on_alrm, .sa_flags = restart ? SA_RESTART : 0 };
	struct sigaction g = { .sa_handler = on_guard };
	sigset_t both;

	sigemptyset(&sa.sa_mask);
	sigemptyset(&g.sa_mask);
	ASSERT_SYS(sigaction(SIGALRM, &sa, NULL));
	ASSERT_SYS(sigaction(SIGUSR2, &g, NULL));
	sigemptyset(&both);
	sigaddset(&both, SIGALRM);
	sigaddset(&both, SIGUSR2);
	ASSERT_EQ(0, pthread_sigmask(SIG_UNBLOCK, &both, NULL));
	alrm_hits = guard_hits = 0;
}

static const char *restart_name(int restart)
{
	return restart ? "with SA_RESTART" : "without SA_RESTART";
}

static long long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}

/* Elapsed times are recorded in 100 ms steps (they vary from run to run). */
static void record_ms(const char *key, long long ms)
{
	RECORD(key, "%lld-%lld ms", ms / 100 * 100, ms / 100 * 100 + 100);
}

/* ---- a signal while the call is really blocked ------------------------ */

/* Is thread tid asleep in one of the system calls nr[]? 1 yes, 0 not (yet);
 * *evidence says how it was seen. A thread asleep in one other system call
 * for 50 looks in a row is taken as blocked too (an LD_PRELOAD stack or an
 * emulator may carry the call by another one): evidence 3, *other it. */
static int asleep_in(pid_t tid, const long *nr, int *evidence, long *other, int *streak)
{
	char path[64], buf[512];
	FILE *f;

	if (sp_proc_state(tid) != 'S') {
		*streak = 0;
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		*evidence = 1; /* state only: the syscall file cannot be read */
		return 1;
	}
	fclose(f);
	long got = strtol(buf, NULL, 10);
	for (int i = 0; nr[i] >= 0; i++)
		if (got == nr[i]) {
			*evidence = 2;
			return 1;
		}
	*streak = got == *other ? *streak + 1 : 1;
	*other = got;
	if (*streak >= 50) {
		*evidence = 3;
		return 1;
	}
	return 0;
}

struct interrupter {
	pid_t tid;                 /* the thread making the call */
	enum call call;
	long nr[8];
	void (*after)(struct interrupter *); /* once the handler has run */
	void *arg;
	int guard_ms;              /* how long after the signal the call may take */
	volatile int done;         /* the call has returned */
	/* results, read once the helper has been joined */
	int evidence;              /* 0 never seen blocked, 1 state S, 2 state and syscall,
				      3 state S in another system call (other) */
	long other;
	int streak;
	int handled;               /* the handler ran */
	int guarded;               /* the guard had to end the call */
	volatile int finished;     /* the helper has returned */
	pthread_t th;
};

static int call_done(void *p) { return ((struct interrupter *)p)->done; }

static int blocked_or_done(void *p)
{
	struct interrupter *in = p;
	return in->done || asleep_in(in->tid, in->nr, &in->evidence, &in->other, &in->streak);
}

static int handled_or_done(void *p)
{
	(void)p;
	return alrm_hits > 0;
}

static void *interrupt_when_blocked_run(struct interrupter *in);

static void *interrupt_when_blocked(void *p)
{
	struct interrupter *in = p;
	void *r = interrupt_when_blocked_run(in);
	__atomic_store_n(&in->finished, 1, __ATOMIC_RELEASE);
	return r;
}

static int helper_finished(void *p)
{
	return __atomic_load_n(&((struct interrupter *)p)->finished, __ATOMIC_ACQUIRE);
}

static void *interrupt_when_blocked_run(struct interrupter *in)
{

	if (!sp_wait_until(blocked_or_done, in, sp_wait_ms()) || in->done) {
		in->evidence = 0; /* returned first, or never seen blocked */
		/* A call still going on is ended by the guard: never a hang. */
		for (int tries = 0; tries < 20 && !in->done; tries++) {
			in->guarded = 1;
			syscall(SYS_tgkill, getpid(), in->tid, SIGUSR2);
			sp_wait_until(call_done, in, 100);
		}
		return NULL;
	}
	syscall(SYS_tgkill, getpid(), in->tid, SIGALRM);
	in->handled = sp_wait_until(handled_or_done, in, sp_wait_ms());
	if (in->handled && in->after)
		in->after(in);
	/* The guard: a call still blocked long after the signal is ended by
	 * SIGUSR2 (no SA_RESTART), again every 100 ms should it restart. */
	for (int tries = 0; !sp_wait_until(call_done, in, tries ? 100 : in->guard_ms); tries++) {
		if (tries == 20)
			break;
		in->guarded = 1;
		syscall(SYS_tgkill, getpid(), in->tid, SIGUSR2);
	}
	return NULL;
}

/* Start the helper for the call this thread is about to make. */
static void arm_guarded(struct interrupter *in, enum call c, void (*after)(struct interrupter *),
			void *arg, int guard_ms)
{
	sigset_t all, old;

	memset(in, 0, sizeof(*in));
	in->tid = (pid_t)syscall(SYS_gettid);
	in->call = c;
	call_nrs(c, in->nr);
	in->after = after;
	in->arg = arg;
	in->guard_ms = guard_ms;
	alrm_hits = guard_hits = 0;
	sigfillset(&all);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &all, &old)); /* the helper blocks all */
	ASSERT_EQ(0, pthread_create(&in->th, NULL, interrupt_when_blocked, in));
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &old, NULL));
}

static void arm(struct interrupter *in, enum call c, void (*after)(struct interrupter *),
		void *arg)
{
	arm_guarded(in, c, after, arg, sp_wait_ms());
}

/* The call has returned (r, err): join the helper and judge how the
 * interruption went. A call never seen blocked is broken (the situation
 * was not made); one the guard had to end fails, naming the call. */
static int disarm_at(const char *file, int line, struct interrupter *in, long long r, int err,
		     int may_retry)
{
	in->done = 1;
	ASSERT_EQ(0, pthread_join(in->th, NULL));
	/* pthread_join waiting for the helper is THREAD-JOIN-RETURNS'
	 * behavior, a mechanism here (the helper is let finish first). */
	if (!helper_finished(in)) {
		sp_wait_until(helper_finished, in, 3 * sp_wait_ms() + 2500);
		sp_broken_needs(file, line, "THREAD-JOIN-RETURNS", "pthread_join() returned while "
				"the helper thread was still running");
	}
	if (!in->evidence && !in->guarded && may_retry)
		return 0; /* it returned before it blocked: the caller makes the situation again */
	if (!in->evidence) /* never returns */
		sp_broken(file, line, "%s %s (%lld, %s) before it was seen blocked in it "
			  "within %d ms", call_name[in->call], in->guarded ? "was ended by the guard"
			  : "returned", r, r < 0 ? sp_errno_name(err) : "-", sp_wait_ms());
	RECORD_ONCE("block_seen", "%s", in->evidence == 2 ? "state S and the system call in /proc" :
		       in->evidence == 3 ? "state S in another system call (an LD_PRELOAD or emulated call)" :
		       "state S in /proc (no syscall file)");
	/* That the installed handler runs is SIG-HANDLER-RUNS', a mechanism. */
	if (!in->handled)
		sp_broken_needs(file, line, "SIG-HANDLER-RUNS", "the SIGALRM handler never ran for "
				"the signal sent while %s was blocked", call_name[in->call]);
	if (in->guarded || guard_hits)
		sp_failf(file, line, "%s did not return at the signal: it was still blocked %d ms "
			 "later and the guard ended it (%lld, %s)", call_name[in->call],
			 in->guard_ms, r, r < 0 ? sp_errno_name(err) : "-");
	return 1;
}
#define disarm(in, r, err) disarm_at(__FILE__, __LINE__, in, r, err, 0)
/* The same, but 0 when the call returned before it was seen blocked (the
 * situation did not hold: make it again). */
#define disarm_or_retry(in, r, err) disarm_at(__FILE__, __LINE__, in, r, err, 1)

/* ---- fixtures ----------------------------------------------------------- */

static void need_proc(void)
{
	if (!sp_have_proc())
		SKIP("needs /proc of this pid namespace to see the call blocked before the signal");
}

static void set_tv(int fd, int opt, long sec, long usec)
{
	struct timeval tv = { sec, usec };
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)));
}

/* A timeout that an item uses as its mechanism (INTR-TIMEOUT-NO-RESTART
 * needs calls that have one): a stack that does not keep it makes the
 * item broken, needing the timeout's own ID. */
static void set_tv_as_mechanism(int fd, int opt, long sec, long usec)
{
	struct timeval tv = { sec, usec }, back = { -1, -1 };
	socklen_t len = sizeof(back);
	ASSERT_SYS(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)));
	if (getsockopt(fd, SOL_SOCKET, opt, &back, &len) != 0 ||
	    (back.tv_sec == 0 && back.tv_usec == 0)) /* kept, if rounded (Linux: to jiffies) */
		BROKEN_NEEDS(opt == SO_SNDTIMEO ? "TIMEO-SNDTIMEO" : "TIMEO-RCVTIMEO",
			     "%s {%ld, %ld} kept on the socket: it reads back {%ld, %ld}",
			     opt == SO_SNDTIMEO ? "SO_SNDTIMEO" : "SO_RCVTIMEO", sec, usec,
			     (long)back.tv_sec, (long)back.tv_usec);
}

static struct timeval get_tv(int fd, int opt)
{
	struct timeval tv = { -1, -1 };
	socklen_t len = sizeof(tv);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, opt, &tv, &len));
	ASSERT_EQ(sizeof(tv), len);
	return tv;
}

#define ASSERT_TV(fd, opt, sec, usec) do {                                      \
		struct timeval tv_ = get_tv(fd, opt);                             \
		ASSERT_TRUE(tv_.tv_sec == (sec) && tv_.tv_usec == (usec),         \
			    "%s reads {%ld, %ld} (got {%ld, %ld})", #opt,         \
			    (long)(sec), (long)(usec), (long)tv_.tv_sec, (long)tv_.tv_usec); \
	} while (0)

/* A listener with listen(fd, backlog) on loopback port 0. */
static int listener_with_backlog(const struct sp_ctx *ctx, int backlog)
{
	int l = sp_socket(ctx, SOCK_STREAM);

	sp_bind_loopback(ctx, l);
	ASSERT_SYS(listen(l, backlog));
	return l;
}

/* Full accept queues (catalogue convention), n listeners at once: each
 * listen(fd, 1), filled with non-blocking connects until one stays in
 * progress for 150 ms; that one is closed, the completed ones stay queued
 * (fill[] gets them, -1 ended). Broken if a queue never fills. */
enum { FILL_MAX = 16 };
struct full_queue { int l; int fill[FILL_MAX + 1]; int n; struct sockaddr_storage to; socklen_t tolen; };

static void fill_queues(const struct sp_ctx *ctx, struct full_queue *q, int n)
{
	int full = 0;

	for (int i = 0; i < n; i++) {
		q[i].l = listener_with_backlog(ctx, 1);
		q[i].n = 0;
		q[i].fill[0] = -1;
		q[i].tolen = sp_loopback(ctx, &q[i].to, sp_local_port(q[i].l));
	}
	while (full < n) {
		struct pollfd p[8];
		int who[8], k = 0;
		for (int i = 0; i < n; i++) {
			if (q[i].n < 0)
				continue;
			REQUIRE(q[i].n < FILL_MAX, "the accept queue of listen(fd, 1) fills: "
				"%d non-blocking connects all completed", FILL_MAX);
			int c = sp_socket(ctx, SOCK_STREAM);
			sp_set_nonblock(c, 1);
			errno = 0;
			int r = connect(c, (struct sockaddr *)&q[i].to, q[i].tolen);
			if (r != 0 && errno != EINPROGRESS)
				BROKEN_NEEDS("LISTEN-FULL-QUEUE-PENDS", "a non-blocking connect to a "
					     "listener whose queue may be full fails with %s",
					     sp_errno_name(errno));
			p[k] = (struct pollfd){ .fd = c, .events = POLLOUT };
			who[k++] = i;
		}
		/* Every connect of this round completes, or 150 ms pass. */
		long long until = now_ms() + 150;
		for (;;) {
			int pending = 0;
			for (int j = 0; j < k; j++) {
				p[j].revents = 0;
				if (poll(&p[j], 1, 0) != 1)
					pending++;
				else if (p[j].revents & (POLLERR | POLLHUP))
					BROKEN_NEEDS("LISTEN-FULL-QUEUE-PENDS", "a connect to a "
						     "listener whose queue may be full is refused "
						     "(%s, SO_ERROR %s)", sp_events_str(p[j].revents),
						     sp_errno_name(sp_get_int(p[j].fd, SOL_SOCKET,
									      SO_ERROR)));
			}
			long long left = until - now_ms();
			if (!pending || left <= 0)
				break;
			poll(NULL, 0, left > 5 ? 5 : (int)left); /* bounded: 150 ms */
		}
		for (int j = 0; j < k; j++) {
			struct full_queue *f = &q[who[j]];
			if (p[j].revents & POLLOUT) {
				f->fill[f->n++] = p[j].fd;
				f->fill[f->n] = -1;
				sp_set_nonblock(p[j].fd, 0);
			} else {
				close(p[j].fd); /* in progress for 150 ms: full */
				RECORD_ONCE("full_queue_completed", "%d", f->n);
				f->n = -f->n - 1;
				full++;
			}
		}
	}
	for (int i = 0; i < n; i++)
		q[i].n = -q[i].n - 1;
}

static void close_queue(struct full_queue *q)
{
	for (int i = 0; q->fill[i] >= 0; i++)
		close(q->fill[i]);
	close(q->l);
}

/* A connected TCP pair whose buffers cannot grow: SO_SNDBUF of the client
 * and SO_RCVBUF of the listener (inherited by the accepted socket) at
 * `size` before connecting. */
static void small_pair(const struct sp_ctx *ctx, int size, int *c, int *s)
{
	int l = sp_tcp_listener(ctx, size);
	struct sockaddr_storage ss;
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(l));

	*c = sp_socket(ctx, SOCK_STREAM);
	ASSERT_SYS(setsockopt(*c, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)));
	/* connect() completing before accept() and accept() handing out the
	 * new connection are mechanisms here (sp_tcp_accept checks the
	 * second). */
	if (BOUNDED(connect(*c, (struct sockaddr *)&ss, len)) != 0)
		BROKEN_NEEDS("TCP-HANDSHAKE-BEFORE-ACCEPT", "blocking connect() to a loopback "
			     "listener: %s", sp_bound_expired() ? "still blocked at the bound" :
			     sp_errno_name(errno));
	*s = sp_tcp_accept(l);
	close(l);
}

/* Fill the send side to the last byte: non-blocking sends until EAGAIN,
 * then 1-byte sends, again until one fails after the socket has not been
 * writable for 20 ms (loopback moves data to the peer a moment later). */
static void fill_send_buffer(int c)
{
	static char chunk[65536];
	for (int round = 0; round < 1000; round++) {
		size_t n = sizeof(chunk);
		for (int i = 0; i < 8192; i++) {
			ssize_t w = send(c, chunk, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (w >= 0)
				continue;
			REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK,
				"the send buffer fills to EAGAIN (got %s)", sp_errno_name(errno));
			if (n == 1)
				break;
			n = 1;
		}
		if (sp_poll(c, POLLOUT, 20) & POLLOUT)
			continue;
		if (send(c, chunk, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			/* Full; and it stays full: the limit drops below what is
			 * queued, so a window the peer opens later frees no room. */
			int small = 4096;
			ASSERT_SYS(setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)));
			return;
		}
	}
	BROKEN("the send buffer never filled (a peer that reads nothing kept taking data)");
}

/* ---- 1. INTR-RESTART-SOCKET-CALLS ------------------------------------------ */

/* The system calls that read and write, with the call the helper sees
 * them blocked in. io_uring is left out: a request is no system call a
 * signal interrupts, the signal ends only the wait for its completion. */
static const struct { int api; enum call call; } reads[] = {
	{ SP_IO_READ, C_READ }, { SP_IO_RECV, C_RECV }, { SP_IO_RECVFROM, C_RECVFROM },
	{ SP_IO_MSG, C_RECVMSG }, { SP_IO_VEC, C_READV }, { SP_IO_MMSG, C_RECVMMSG },
	{ SP_IO_SPLICE, C_SPLICE } };
static const struct { int api; enum call call; } writes[] = {
	{ SP_IO_READ, C_WRITE }, { SP_IO_RECV, C_SEND }, { SP_IO_RECVFROM, C_SEND },
	{ SP_IO_MSG, C_SEND }, { SP_IO_VEC, C_WRITEV }, { SP_IO_MMSG, C_SENDMMSG } };

static void send_five(struct interrupter *in)
{
	(void)!write(*(int *)in->arg, "hello", 5);
}

struct conn_after { const struct sp_ctx *ctx; int l, c; uint16_t port; };

/* The client's port is read in the helper thread itself: reading the
 * helper's socket from the main thread by number would be
 * THREAD-SHARED-FDS' behavior, not this ID's. */
static void connect_client(struct interrupter *in)
{
	struct conn_after *a = in->arg;
	struct sockaddr_storage ss, name;
	socklen_t len = sp_loopback(a->ctx, &ss, sp_local_port(a->l)), nl = sizeof(name);

	a->c = socket(a->ctx->af, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (a->c >= 0) {
		(void)connect(a->c, (struct sockaddr *)&ss, len); /* completes over loopback */
		if (getsockname(a->c, (struct sockaddr *)&name, &nl) == 0)
			a->port = sp_port(&name);
	}
}

/* A byte, not a close(): a close in the helper thread ending the pipe
 * for the whole process would be THREAD-SHARED-FDS' behavior. */
static void let_child_exit(struct interrupter *in)
{
	(void)!write(*(int *)in->arg, "x", 1);
}

static int exit_when_told(void *arg)
{
	int *fds = arg;
	char b;
	close(fds[1]);
	(void)!read(fds[0], &b, 1); /* the byte, or EOF */
	return 7;
}

SP_TEST(sa_restart_resumes_blocked_socket_calls, "INTR-RESTART-SOCKET-CALLS", SP_INET,
	.how = SP_NAMES("with SA_RESTART", "without SA_RESTART"))
{
	int restart = ctx->how == 0;

	need_proc();
	{
		install(restart);
		struct interrupter in;
		char buf[16];

		/* recv() on an empty connected TCP socket, through every system
		 * call that reads (io_uring is left out: a request is no system
		 * call a signal interrupts, the signal ends only the wait for
		 * its completion). */
		for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++) {
			int api = reads[k].api;
			int c, s;
			if (!sp_io_use(api, 0))
				continue;
			sp_tcp_pair(ctx, &c, &s);
			arm(&in, reads[k].call, send_five, &c);
			errno = 0;
			ssize_t r = sp_io_in(api, s, buf, sizeof(buf), 0);
			int err = errno;
			disarm(&in, r, err);
			if (restart) {
				ASSERT_TRUE(r == 5 && !memcmp(buf, "hello", 5),
					    "%s blocked on an empty socket, interrupted %s, returns the "
					    "5 bytes sent after the handler ran (got %zd, %s)",
					    sp_io_in_name(api), restart_name(restart), r,
					    r < 0 ? sp_errno_name(err) : "-");
			} else {
				ASSERT_TRUE(r == -1 && err == EINTR,
					    "%s interrupted %s fails with EINTR (got %zd, %s)",
					    sp_io_in_name(api), restart_name(restart), r,
					    r < 0 ? sp_errno_name(err) : "-");
			}
			close(c);
			close(s);
		}

		/* accept() and accept4() on an empty listener */
		for (int four = 0; four <= 1; four++) {
			struct conn_after a = { ctx, sp_tcp_listener(ctx, 0), -1, 0 };
			struct sockaddr_storage from;
			socklen_t fl = sizeof(from);
			arm(&in, four ? C_ACCEPT4 : C_ACCEPT, connect_client, &a);
			errno = 0;
			int s = four ? accept4(a.l, (struct sockaddr *)&from, &fl, SOCK_CLOEXEC)
				     : accept(a.l, (struct sockaddr *)&from, &fl);
			int err = errno;
			disarm(&in, s, err);
			REQUIRE(a.c >= 0, "the helper's client socket is made (%s)", sp_errno_name(errno));
			if (restart) {
				ASSERT_TRUE(s >= 0, "%s blocked on an empty listener, interrupted %s, "
					    "returns the connection made after the handler ran (got %s)",
					    call_name[in.call], restart_name(restart), sp_errno_name(err));
				if (a.port == 0)
					BROKEN_NEEDS("TCP-CONNECT-IMPLICIT-BIND", "the helper's connected "
						     "client socket's getsockname() gives port 0");
				ASSERT_EQ(a.port, sp_port(&from));
				close(s);
			} else {
				ASSERT_TRUE(s == -1 && err == EINTR, "%s interrupted %s fails with "
					    "EINTR (got %d, %s)", call_name[in.call],
					    restart_name(restart), s, sp_errno_name(err));
			}
			close(a.c);
			close(a.l);
		}

		/* waitpid() on a running child */
		int fds[2], st = 0;
		sp_pipe(fds); /* ends checked: PIPE-ENDS is a mechanism here */
		ASSERT_SYS(fcntl(fds[0], F_SETFD, FD_CLOEXEC));
		ASSERT_SYS(fcntl(fds[1], F_SETFD, FD_CLOEXEC));
		pid_t kid = sp_fork(exit_when_told, fds);
		close(fds[0]);
		arm(&in, C_WAITPID, let_child_exit, &fds[1]);
		errno = 0;
		pid_t w = waitpid(kid, &st, 0);
		int err = errno;
		disarm(&in, w, err);
		close(fds[1]);
		if (restart) {
			/* The child kept for collection (PROC-ZOMBIE) and its status
			 * (PROC-WAIT-REAPS) are mechanisms here. */
			if (w < 0 && err == ECHILD)
				BROKEN_NEEDS("PROC-ZOMBIE", "waitpid() on the child failed with ECHILD "
					     "once it ended: its status was not kept");
			if (w == kid && !(WIFEXITED(st) && WEXITSTATUS(st) == 7))
				BROKEN_NEEDS("PROC-WAIT-REAPS", "waitpid() returned the child that exited "
					     "7 with the status %s", sp_status_str(st));
			ASSERT_TRUE(w == kid && WIFEXITED(st) && WEXITSTATUS(st) == 7,
				    "waitpid() on a running child, interrupted %s, returns its exit "
				    "status 7 (got %d, %s, %s)", restart_name(restart), (int)w,
				    w < 0 ? sp_errno_name(err) : "-", w == kid ? sp_status_str(st) : "-");
			sp_untrack_child(kid);
		} else {
			ASSERT_TRUE(w == -1 && err == EINTR, "waitpid() interrupted %s fails with "
				    "EINTR (got %d, %s)", restart_name(restart), (int)w,
				    sp_errno_name(err));
			sp_reap_exit(kid, 7);
		}
	}
}

/* ---- 2. INTR-CONNECT --------------------------------------------------------- */

struct retry { int fd; struct sockaddr_storage to; socklen_t len; int r, err; volatile int done; };

static void *retry_connect(void *p)
{
	struct retry *rt = p;
	errno = 0;
	rt->r = connect(rt->fd, (struct sockaddr *)&rt->to, rt->len);
	rt->err = errno;
	rt->done = 1;
	return NULL;
}

static int retry_done(void *p) { return ((struct retry *)p)->done; }

struct restart_after { struct full_queue *q; struct sp_capture *cap; int s; };

static void make_room(struct interrupter *in)
{
	struct restart_after *ra = in->arg;
	sp_capture_mark(ra->cap, "accept");
	ra->s = accept(ra->q->l, NULL, NULL);
}

/* A blocking connect() to the queue of q; returns the socket, *r, *err. */
static int blocking_connect(const struct sp_ctx *ctx, struct full_queue *q,
			    struct interrupter *in, void (*after)(struct interrupter *), void *arg,
			    struct sp_capture *cap, int *r, int *err, long long *took)
{
	int c = sp_socket(ctx, SOCK_STREAM);
	struct sockaddr_storage me;
	socklen_t ml = sp_loopback(ctx, &me, 0);

	if (cap) { /* its port names it in the trace */
		ASSERT_SYS(bind(c, (struct sockaddr *)&me, ml));
		sp_capture_name(cap, sp_local_port(c), "B");
	}
	/* A restarted connect waits for the SYN retransmission (about 1 s). */
	arm_guarded(in, C_CONNECT, after, arg, sp_wait_ms() > 3000 ? sp_wait_ms() : 3000);
	long long t0 = now_ms();
	errno = 0;
	*r = connect(c, (struct sockaddr *)&q->to, q->tolen);
	*err = errno;
	*took = now_ms() - t0;
	disarm(in, *r, *err);
	return c;
}

SP_TEST(interrupted_connect_is_not_aborted, "INTR-CONNECT", SP_INET, .slow = 1)
{
	struct full_queue q[3]; /* 0: SA_RESTART, 1: EINTR then async, 2: EINTR then retried */
	struct interrupter in;
	struct sp_capture cap;
	int r, err;
	long long took;

	need_proc();
	fill_queues(ctx, q, 3);
	int cap_on = sp_capture_start(&cap);
	sp_capture_name(&cap, sp_local_port(q[0].l), "S");
	sp_capture_name(&cap, 0, "o");

	/* Without SA_RESTART: EINTR, and the attempt goes on. */
	install(0);
	int a = blocking_connect(ctx, &q[1], &in, NULL, NULL, NULL, &r, &err, &took);
	ASSERT_TRUE(r == -1 && err == EINTR, "a blocking connect() to a full accept queue, "
		    "interrupted without SA_RESTART, fails with EINTR (got %d, %s)", r,
		    sp_errno_name(err));
	sp_set_nonblock(a, 1);
	ASSERT_ERRNO(connect(a, (struct sockaddr *)&q[1].to, q[1].tolen), EALREADY);
	struct retry rt = { .len = q[2].tolen };
	rt.to = q[2].to;
	rt.fd = blocking_connect(ctx, &q[2], &in, NULL, NULL, NULL, &r, &err, &took);
	REQUIRE(r == -1 && err == EINTR, "the second interrupted connect() fails with EINTR "
		"(got %d, %s)", r, sp_errno_name(err));
	pthread_t rth;
	sigset_t all, old;
	sigfillset(&all);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &all, &old));
	ASSERT_EQ(0, pthread_create(&rth, NULL, retry_connect, &rt)); /* Record: retried */
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &old, NULL));
	int ev = sp_poll(a, POLLOUT, 100);
	ASSERT_TRUE(!(ev & POLLOUT), "the interrupted attempt is not writable while the queue "
		    "stays full (%s within 100 ms)", sp_events_str(ev));
	int s1 = (int)ASSERT_SYS(accept(q[1].l, NULL, NULL)); /* room for a */
	int s2 = (int)ASSERT_SYS(accept(q[2].l, NULL, NULL)); /* room for the retried one */

	/* With SA_RESTART: restarted, 0 once one accept() (after the handler)
	 * made room: the SYN retransmission completes it. */
	install(1);
	struct restart_after ra = { &q[0], &cap, -1 };
	int b = blocking_connect(ctx, &q[0], &in, make_room, &ra, &cap, &r, &err, &took);
	REQUIRE(ra.s >= 0, "accept() on the full queue after the handler ran (%s)",
		sp_errno_name(errno));
	/* The restarted connect's connection waits unaccepted in the queue:
	 * connect() returning then is TCP-HANDSHAKE-BEFORE-ACCEPT's Must, a
	 * mechanism here, told apart before the failure is this ID's. */
	if (r != 0)
		sp_need_handshake_before_accept(ctx);
	ASSERT_TRUE(r == 0, "a blocking connect() to a full queue, interrupted with SA_RESTART, "
		    "is restarted and returns 0 once accept() made room (got %d, %s)", r,
		    sp_errno_name(err));
	record_ms("restarted_connect_took", took);
	struct sockaddr_storage peer;
	socklen_t pl = sizeof(peer);
	ASSERT_SYS(getpeername(b, (struct sockaddr *)&peer, &pl));
	/* Wire: the SYN dropped, the accept, the retransmitted SYN answered. */
	if (cap_on && sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, "B>S S, M accept, B>S S, S>B S., B>S .");
	sp_capture_stop(&cap);

	/* The interrupted attempt completes on its own. */
	ev = sp_poll(a, POLLOUT, 5000);
	ASSERT_TRUE(ev & POLLOUT, "the interrupted connect completes within 5 s of the accept() "
		    "that made room (%s)", sp_events_str(ev));
	ASSERT_EQ(0, ev & POLLERR);
	ASSERT_EQ(0, sp_get_int(a, SOL_SOCKET, SO_ERROR));
	pl = sizeof(peer);
	ASSERT_SYS(getpeername(a, (struct sockaddr *)&peer, &pl));
	/* getpeername() naming the peer is CONN-NAMES-AGREE's, a mechanism. */
	if (sp_port(&peer) != sp_local_port(q[1].l) && sp_port(&peer) == sp_local_port(a))
		BROKEN_NEEDS("CONN-NAMES-AGREE", "getpeername() of the connected socket gives its own "
			     "port %u, not the listener's %u", sp_port(&peer), sp_local_port(q[1].l));
	ASSERT_EQ(sp_local_port(q[1].l), sp_port(&peer));
	errno = 0;
	r = connect(a, (struct sockaddr *)&q[1].to, q[1].tolen);
	err = errno;
	errno = 0;
	int r2 = connect(a, (struct sockaddr *)&q[1].to, q[1].tolen);
	RECORD("connect_after_async_completion", "%s then %s", r ? sp_errno_name(err) : "0",
	       r2 ? sp_errno_name(errno) : "0");
	sp_wait_until(retry_done, &rt, sp_wait_ms());
	if (!rt.done) {
		shutdown(rt.fd, SHUT_RDWR);
		sp_wait_until(retry_done, &rt, sp_wait_ms());
	}
	RECORD("blocking_connect_retried_after_eintr", "%s", !rt.done ? "still blocked" :
	       rt.r == 0 ? "0" : sp_errno_name(rt.err));
	if (rt.done)
		pthread_join(rth, NULL);
	else
		pthread_detach(rth);
	close(s1);
	close(s2);
	close(ra.s);
	close(a);
	close(b);
	close(rt.fd);
	for (int i = 0; i < 3; i++)
		close_queue(&q[i]);
}

/* ---- 3. INTR-TIMEOUT-NO-RESTART -------------------------------------------- */

static int no_more_than_2s(const char *what, long long took)
{
	ASSERT_TRUE(took < 2000, "%s returns at the signal, not at its 5 s timeout (took "
		    "%lld ms)", what, took);
	return 1;
}

SP_TEST(timed_socket_calls_are_never_restarted, "INTR-TIMEOUT-NO-RESTART", SP_INET)
{
	struct interrupter in;
	int c, s, r, err;
	char b[8];
	long long t0;

	need_proc();
	install(1);

	/* recv() with SO_RCVTIMEO 5 s on an empty socket, through every
	 * system call that reads */
	for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++) {
		int api = reads[k].api;
		char what[64];
		if (!sp_io_use(api, 0))
			continue;
		snprintf(what, sizeof(what), "%s() with SO_RCVTIMEO", sp_io_in_name(api));
		sp_tcp_pair(ctx, &c, &s);
		set_tv_as_mechanism(s, SO_RCVTIMEO, 5, 0);
		arm(&in, reads[k].call, NULL, NULL);
		t0 = now_ms();
		errno = 0;
		r = (int)sp_io_in(api, s, b, sizeof(b), 0);
		err = errno;
		disarm(&in, r, err);
		no_more_than_2s(what, now_ms() - t0);
		ASSERT_TRUE(r == -1 && err == EINTR, "%s() with SO_RCVTIMEO 5 s, interrupted with "
			    "SA_RESTART, fails with EINTR (got %d, %s)", sp_io_in_name(api), r,
			    sp_errno_name(err));
		close(c);
		close(s);
	}
	sp_tcp_pair(ctx, &c, &s);

	/* accept() with SO_RCVTIMEO 5 s on an empty listener */
	int l = sp_tcp_listener(ctx, 0);
	set_tv_as_mechanism(l, SO_RCVTIMEO, 5, 0);
	arm(&in, C_ACCEPT, NULL, NULL);
	t0 = now_ms();
	errno = 0;
	r = accept(l, NULL, NULL);
	err = errno;
	disarm(&in, r, err);
	no_more_than_2s("accept() with SO_RCVTIMEO", now_ms() - t0);
	ASSERT_TRUE(r == -1 && err == EINTR, "accept() with SO_RCVTIMEO 5 s, interrupted with "
		    "SA_RESTART, fails with EINTR (got %d, %s)", r, sp_errno_name(err));
	close(l);
	close(c);
	close(s);

	/* send() of 1 byte with SO_SNDTIMEO 5 s on a full send buffer,
	 * through every system call that writes, one after the other on the
	 * same full buffer (an interrupted call moved nothing). The peer's
	 * window may open a little after the fill: a send that takes its
	 * byte before blocking is made again on a refilled buffer. */
	c = s = -1;
	for (size_t k = 0; k < sizeof(writes) / sizeof(writes[0]); k++) {
		int api = writes[k].api;
		char what[64];
		if (!sp_io_use(api, 1))
			continue;
		snprintf(what, sizeof(what), "%s() with SO_SNDTIMEO", sp_io_out_name(api));
		for (int tries = 1;; tries++) {
			if (c < 0) {
				small_pair(ctx, 65536, &c, &s);
				fill_send_buffer(c);
				set_tv_as_mechanism(c, SO_SNDTIMEO, 5, 0);
			}
			arm(&in, writes[k].call, NULL, NULL);
			t0 = now_ms();
			errno = 0;
			r = (int)sp_io_out(api, c, "x", 1, MSG_NOSIGNAL);
			err = errno;
			if (disarm_at(__FILE__, __LINE__, &in, r, err, tries < 5))
				break;
			close(c);
			close(s);
			c = s = -1;
		}
		no_more_than_2s(what, now_ms() - t0);
		ASSERT_TRUE(r == -1 && err == EINTR, "%s() of 1 byte with SO_SNDTIMEO 5 s on a full "
			    "buffer, interrupted with SA_RESTART, fails with EINTR (got %d, %s)",
			    sp_io_out_name(api), r, sp_errno_name(err));
	}
	close(c);
	close(s);

	/* connect() with SO_SNDTIMEO 5 s to a full accept queue */
	struct full_queue q;
	fill_queues(ctx, &q, 1);
	c = sp_socket(ctx, SOCK_STREAM);
	set_tv_as_mechanism(c, SO_SNDTIMEO, 5, 0);
	arm(&in, C_CONNECT, NULL, NULL);
	t0 = now_ms();
	errno = 0;
	r = connect(c, (struct sockaddr *)&q.to, q.tolen);
	err = errno;
	disarm(&in, r, err);
	no_more_than_2s("connect() with SO_SNDTIMEO", now_ms() - t0);
	ASSERT_TRUE(r == -1 && err == EINTR, "connect() with SO_SNDTIMEO 5 s to a full accept "
		    "queue, interrupted with SA_RESTART, fails with EINTR (got %d, %s)", r,
		    sp_errno_name(err));
	close(c);
	close_queue(&q);
}

/* ---- 4. INTR-MUX-NO-RESTART ----------------------------------------------- */

/* Every wait call that is a system call (.wait), with no limit and with a
 * 5 s one (.how). io_uring POLL_ADD is left out: a request is no system
 * call a signal interrupts, the signal ends only the wait for its
 * completion. */
SP_TEST(multiplexers_are_never_restarted, "INTR-MUX-NO-RESTART", SP_INET,
	.how = SP_NAMES("no timeout", "a 5 s timeout"),
	.wait = SP_VALUES(SP_WAIT_SELECT, SP_WAIT_PSELECT, SP_WAIT_POLL, SP_WAIT_PPOLL, SP_WAIT_EPOLL,
			  SP_WAIT_EPOLL_PWAIT, SP_WAIT_EPOLL_PWAIT2))
{
	struct interrupter in;
	int c, s, r, err, w = ctx->wait;
	enum call call = w == SP_WAIT_SELECT || w == SP_WAIT_PSELECT ? C_SELECT :
			 w == SP_WAIT_POLL || w == SP_WAIT_PPOLL ? C_POLL : C_EPOLL;

	need_proc();
	install(1);
	sp_tcp_pair(ctx, &c, &s); /* nothing ready: s has no input */
	arm(&in, call, NULL, NULL);
	errno = 0;
	r = sp_wait_on(w, s, POLLIN, ctx->how == 0 ? -1 : 5000, NULL);
	err = errno;
	disarm(&in, r, err);
	ASSERT_TRUE(r == -1 && err == EINTR, "%s() with %s and nothing ready, interrupted by a "
		    "handler with SA_RESTART, fails with EINTR (got %d, %s)", sp_waitcall_name(w),
		    ctx->how_name, r, r < 0 ? sp_errno_name(err) : "-");
	close(c);
	close(s);
}

/* ---- 5. INTR-PARTIAL-TRANSFER --------------------------------------------- */

enum { BIG = 32 << 20 };
static unsigned char big[BIG]; /* the pattern, 32 MiB */

struct drain { int fd; size_t got, bad_at; int eof; int err; int vanished; };

/* The peer's side: read everything until EOF, checking the pattern. What
 * was queued and not read must stay queued (TCP-BOUNDARY-SPLIT's Must, a
 * mechanism): fewer bytes queued after a read than before it, less the
 * read, is noted (FIONREAD; never on a conforming stack, where data only
 * arrives). */
static void *drain_all(void *p)
{
	struct drain *d = p;
	static unsigned char buf[1 << 16];
	d->bad_at = (size_t)-1;
	for (;;) {
		int before = -1, after = -1;
		if (ioctl(d->fd, FIONREAD, &before) < 0)
			before = -1;
		ssize_t n = read(d->fd, buf, sizeof(buf));
		if (n > 0 && before > n && ioctl(d->fd, FIONREAD, &after) == 0 && after < before - n)
			d->vanished = 1;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			d->err = errno;
			return NULL;
		}
		if (n == 0) {
			d->eof = 1;
			return NULL;
		}
		size_t k = sp_pattern_check(buf, (size_t)n, d->got);
		if (k != (size_t)n && d->bad_at == (size_t)-1)
			d->bad_at = d->got + k;
		d->got += (size_t)n;
	}
}

SP_TEST(interrupted_transfer_returns_its_count, "INTR-PARTIAL-TRANSFER", SP_INET,
	.how = SP_NAMES("with SA_RESTART", "without SA_RESTART"))
{
	struct interrupter in;
	char buf[20];
	int c, s, err;
	ssize_t r;

	int restart = ctx->how == 0;

	need_proc();
	sp_pattern(big, BIG, 0);
	{
		install(restart);

		/* recv(20, MSG_WAITALL) with 5 bytes queued, through every system
		 * call that reads and takes the flag */
		for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++) {
			int api = reads[k].api;
			if (!sp_io_takes_flags(api) || !sp_io_use(api, 0))
				continue;
			sp_tcp_pair(ctx, &c, &s);
			ASSERT_EQ(5, write(c, "early", 5));
			ASSERT_EQ(5, sp_wait_inq(s, 5));
			arm(&in, reads[k].call, NULL, NULL);
			errno = 0;
			r = sp_io_in(api, s, buf, 20, MSG_WAITALL);
			err = errno;
			/* Its own Must names this call: one that fails at once
			 * (gVisor hostinet: EINVAL) never waited for the signal. */
			int seen = r < 0 && err != EINTR ? disarm_or_retry(&in, r, err)
							 : disarm(&in, r, err);
			if (!seen)
				FAIL("%s(20, MSG_WAITALL) with 5 bytes queued: expected it to wait and "
				     "return those 5 at the signal, observed -1 (%s) at once",
				     sp_io_in_name(api), sp_errno_name(err));
			ASSERT_TRUE(r == 5 && !memcmp(buf, "early", 5), "%s(20, MSG_WAITALL) with 5 "
				    "bytes queued, interrupted %s, returns those 5 (got %zd, %s)",
				    sp_io_in_name(api), restart_name(restart), r,
				    r < 0 ? sp_errno_name(err) : "-");
			close(c);
			close(s);
		}

		/* a blocking send() of 32 MiB to a peer that reads nothing,
		 * through every system call that writes */
		for (size_t k = 0; k < sizeof(writes) / sizeof(writes[0]); k++) {
			int api = writes[k].api;
			const char *name = sp_io_out_name(api);
			if (!sp_io_use(api, 1))
				continue;
			sp_tcp_pair(ctx, &c, &s);
			arm(&in, writes[k].call, NULL, NULL);
			errno = 0;
			r = sp_io_out(api, c, big, BIG, MSG_NOSIGNAL);
			err = errno;
			disarm(&in, r, err);
			ASSERT_TRUE(r >= 1 && r <= BIG - 1, "a blocking %s() of 32 MiB to a peer that "
				    "reads nothing, interrupted %s, returns the count it moved, 1 to "
				    "32 MiB-1 (got %zd, %s)", name, restart_name(restart), r,
				    r < 0 ? sp_errno_name(err) : "-");
			if (restart && api == SP_IO_RECV) /* send() */
				RECORD("partial_send_count", "%zd MB", r / 1000000); /* Linux: about 3.9 MB */
			ASSERT_SYS(shutdown(c, SHUT_WR));
			struct drain d = { .fd = s };
			set_tv(s, SO_RCVTIMEO, sp_wait_ms() / 1000, sp_wait_ms() % 1000 * 1000); /* bounded */
			drain_all(&d);
			if (d.vanished && d.got < (size_t)r)
				BROKEN_NEEDS("TCP-BOUNDARY-SPLIT", "the peer's reads lost queued bytes "
					     "beyond what they returned (read %zu of %zd)", d.got, r);
			if (!d.eof && d.got == (size_t)r && d.bad_at == (size_t)-1)
				BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "the peer read all %zd bytes, then no "
					     "EOF after shutdown(SHUT_WR) (%s)", r, sp_errno_name(d.err));
			ASSERT_TRUE(d.eof && d.got == (size_t)r && d.bad_at == (size_t)-1,
				    "the peer reads exactly the %zd bytes %s() sent, intact and in "
				    "order, then EOF (read %zu, first wrong byte at %zd, %s)", r, name,
				    d.got, d.bad_at == (size_t)-1 ? (ssize_t)-1 : (ssize_t)d.bad_at,
				    d.eof ? "EOF" : sp_errno_name(d.err));
			close(c);
			close(s);
		}
	}

	/* Nothing moved yet: EINTR without SA_RESTART. */
	if (restart)
		return;
	for (size_t k = 0; k < sizeof(reads) / sizeof(reads[0]); k++) {
		int api = reads[k].api;
		if (!sp_io_takes_flags(api) || !sp_io_use(api, 0))
			continue;
		sp_tcp_pair(ctx, &c, &s);
		arm(&in, reads[k].call, NULL, NULL);
		errno = 0;
		r = sp_io_in(api, s, buf, 20, MSG_WAITALL);
		err = errno;
		disarm(&in, r, err);
		ASSERT_TRUE(r == -1 && err == EINTR, "%s(20, MSG_WAITALL) with nothing queued, "
			    "interrupted without SA_RESTART, fails with EINTR (got %zd, %s)",
			    sp_io_in_name(api), r, r < 0 ? sp_errno_name(err) : "-");
		close(c);
		close(s);
	}
}

/* ---- 6. TIMEO-RCVTIMEO ------------------------------------------------------ */

/* A call that should time out: guarded, timed. */
struct timed { long long ms; int r, err; };

static void guard_on(void)
{
	install(0); /* SIGALRM: the guard, no SA_RESTART */
	struct itimerval it = { .it_value = { sp_wait_ms() / 1000, (sp_wait_ms() % 1000) * 1000 } };
	ASSERT_SYS(setitimer(ITIMER_REAL, &it, NULL));
}

static void guard_off(void)
{
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	ASSERT_SYS(setitimer(ITIMER_REAL, &off, NULL));
}

/* The timed calls run at once, one thread each (all signals blocked):
 * every system call that reads, accept() and accept4(), and the
 * MSG_WAITALL Record, so the item waits one timeout, not ten. A call
 * still blocked at the bound is ended by shutdown() of its socket and
 * fails, named. io_uring is left out: its requests do not take the
 * socket's timeouts (they wait on the socket's readiness, without limit).
 * A call this system lacks is passed over (sp_io_use). */
static const int timed_reads[] = { SP_IO_READ, SP_IO_RECV, SP_IO_RECVFROM, SP_IO_MSG, SP_IO_VEC,
				   SP_IO_MMSG, SP_IO_SPLICE };
enum { T_READS = sizeof(timed_reads) / sizeof(timed_reads[0]), T_ACCEPT = T_READS, T_ACCEPT4,
       T_WAITALL, T_CALLS };

struct timed_call {
	int kind, fd, unused;
	long long ms;
	ssize_t r;
	int err;
	volatile int done;
	pthread_t th;
};

static const char *timed_name(int kind)
{
	return kind < T_READS ? sp_io_in_name(timed_reads[kind]) : kind == T_ACCEPT ? "accept" :
	       kind == T_ACCEPT4 ? "accept4" : "recv(8, MSG_WAITALL)";
}

static void *timed_call_run(void *p)
{
	struct timed_call *t = p;
	char b[8];
	long long t0 = now_ms();
	errno = 0;
	t->r = t->kind < T_READS ? sp_io_in(timed_reads[t->kind], t->fd, b, sizeof(b), 0) :
	       t->kind == T_ACCEPT ? accept(t->fd, NULL, NULL) :
	       t->kind == T_ACCEPT4 ? accept4(t->fd, NULL, NULL, SOCK_CLOEXEC) :
	       recv(t->fd, b, 8, MSG_WAITALL);
	t->err = errno;
	t->ms = now_ms() - t0;
	t->done = 1;
	return NULL;
}

static int all_done(void *p)
{
	struct timed_call *t = p;
	for (int k = 0; k < T_CALLS; k++)
		if (!t[k].done)
			return 0;
	return 1;
}

SP_TEST(rcvtimeo_bounds_recv_and_accept, "TIMEO-RCVTIMEO", SP_INET)
{
	struct timed_call t[T_CALLS];
	int peer[T_CALLS];
	sigset_t all, old;

	memset(t, 0, sizeof(t));
	for (int k = 0; k < T_CALLS; k++) {
		t[k].kind = k;
		peer[k] = -1;
		t[k].fd = -1;
		if (k < T_READS && !sp_io_use(timed_reads[k], 0)) {
			t[k].unused = 1;
			t[k].done = 1;
			continue;
		}
		if (k == T_ACCEPT || k == T_ACCEPT4)
			t[k].fd = sp_tcp_listener(ctx, 0);
		else
			sp_tcp_pair(ctx, &peer[k], &t[k].fd);
		ASSERT_TV(t[k].fd, SO_RCVTIMEO, 0, 0);        /* no timeout on a new socket */
		set_tv(t[k].fd, SO_RCVTIMEO, 0, 200000);
		ASSERT_TV(t[k].fd, SO_RCVTIMEO, 0, 200000);
	}
	/* Record: recv(8, MSG_WAITALL) with 3 bytes queued at the timeout. */
	ASSERT_EQ(3, write(peer[T_WAITALL], "abc", 3));
	ASSERT_EQ(3, sp_wait_inq(t[T_WAITALL].fd, 3));

	sigfillset(&all);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &all, &old));
	for (int k = 0; k < T_CALLS; k++)
		if (!t[k].unused)
			ASSERT_EQ(0, pthread_create(&t[k].th, NULL, timed_call_run, &t[k]));
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &old, NULL));
	sp_wait_until(all_done, t, sp_wait_ms());
	int stuck[T_CALLS];
	for (int k = 0; k < T_CALLS; k++) {
		stuck[k] = !t[k].done;
		if (stuck[k])
			shutdown(t[k].fd, SHUT_RDWR); /* ends the call: it failed already */
	}
	sp_wait_until(all_done, t, sp_wait_ms());
	for (int k = 0; k < T_CALLS; k++) {
		if (t[k].unused)
			continue;
		if (t[k].done)
			pthread_join(t[k].th, NULL);
		else
			pthread_detach(t[k].th); /* still blocked after shutdown(): the probe ends */
	}

	RECORD("waitall_3_of_8_at_timeout", "%s", stuck[T_WAITALL] ? "still blocked" :
	       t[T_WAITALL].r == 3 ? "3" : t[T_WAITALL].r >= 0 ? "other count" :
	       sp_errno_name(t[T_WAITALL].err));
	record_ms("recv_timeout_elapsed", t[1].ms); /* timed_reads[1]: recv() */
	record_ms("accept_timeout_elapsed", t[T_ACCEPT].ms);
	for (int k = 0; k < T_WAITALL; k++) {
		const char *what = timed_name(k);
		const char *on = k < T_READS ? "an empty socket" : "an empty listener";
		if (t[k].unused)
			continue;
		ASSERT_TRUE(!stuck[k], "%s() on %s with SO_RCVTIMEO 200 ms returns within %d ms "
			    "(still blocked)", what, on, sp_wait_ms());
		ASSERT_TRUE(t[k].r == -1 && (t[k].err == EAGAIN || t[k].err == EWOULDBLOCK),
			    "%s() on %s with SO_RCVTIMEO 200 ms fails with EAGAIN (got %zd, %s)",
			    what, on, t[k].r, sp_errno_name(t[k].err));
		ASSERT_TRUE(t[k].ms >= 180, "%s() waits for SO_RCVTIMEO: no sooner than 180 ms "
			    "(took %lld ms)", what, t[k].ms);
		ASSERT_TRUE(t[k].ms <= 2000, "%s() returns within 2 s (took %lld ms)", what, t[k].ms);
	}

	int s = t[1].fd; /* recv()'s */
	set_tv(s, SO_RCVTIMEO, 0, 0);
	ASSERT_TV(s, SO_RCVTIMEO, 0, 0);
	set_tv(s, SO_RCVTIMEO, 0, 150001);
	struct timeval tv = get_tv(s, SO_RCVTIMEO);
	RECORD("rcvtimeo_read_back_for_150001us", "{%ld, %ld}", (long)tv.tv_sec, (long)tv.tv_usec);
	struct timeval bad = { 0, 1000000 };
	errno = 0;
	int br = setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &bad, sizeof(bad));
	RECORD("rcvtimeo_usec_1000000", "%s", br == 0 ? "0" : errno == EDOM ? "EDOM" :
	       sp_errno_name(errno));
	for (int k = 0; k < T_CALLS; k++) {
		if (t[k].fd >= 0)
			close(t[k].fd);
		if (peer[k] >= 0)
			close(peer[k]);
	}
}

/* ---- 7. TIMEO-SNDTIMEO ------------------------------------------------------ */

/* One thread per system call that writes (all signals blocked), on a
 * pair of its own: the 32 MiB send, whether the socket is writable after
 * it, the next send. The item waits two timeouts, not twelve. Left out:
 * io_uring (its requests do not take the socket's timeouts); splice and
 * sendfile, which Linux 6.18 hands to the socket a pipe buffer at a time,
 * returning their partial count only after four timeouts (0.8 s, within
 * the Must's 3 s but past this item's time). A call this system lacks is
 * passed over (sp_io_use). */
static const int timed_writes[] = { SP_IO_READ, SP_IO_RECV, SP_IO_RECVFROM, SP_IO_MSG, SP_IO_VEC,
				    SP_IO_MMSG };
enum { TW = sizeof(timed_writes) / sizeof(timed_writes[0]) };

struct timed_send {
	int api, c, unused;
	ssize_t r1, r2;
	int err1, err2, writable;
	volatile int stage;        /* 1 in the 32 MiB send, 2 in the next one */
	long long ms1, ms2;
	volatile int done;
	pthread_t th;
};

static void *timed_send_run(void *p)
{
	struct timed_send *t = p;
	long long t0 = now_ms();
	errno = 0;
	t->stage = 1;
	t->r1 = sp_io_out(t->api, t->c, big, BIG, MSG_NOSIGNAL);
	t->err1 = errno;
	t->ms1 = now_ms() - t0;
	struct pollfd p1 = { .fd = t->c, .events = POLLOUT };
	t->writable = poll(&p1, 1, 0) == 1 && (p1.revents & POLLOUT);
	t0 = now_ms();
	errno = 0;
	t->stage = 2;
	t->r2 = sp_io_out(t->api, t->c, big, 1024, MSG_NOSIGNAL);
	t->err2 = errno;
	t->ms2 = now_ms() - t0;
	t->done = 1;
	return NULL;
}

static int sends_done(void *p)
{
	struct timed_send *t = p;
	for (int k = 0; k < TW; k++)
		if (!t[k].done)
			return 0;
	return 1;
}

/* The partial send came back sooner than its timeout: the timeout's
 * doing, or does a blocking send here never wait for room? That it waits
 * is TCP-FLOW-CONTROL's Must ("a blocking writer stays blocked until the
 * reader reads"), a mechanism here: a short count while the send buffer
 * still had room (writable), or, on full buffers, a blocking send
 * without a timeout that says EAGAIN at once, is broken, needs it. Only
 * on this deviating path (a send that blocks costs one bound). */
static void flow_control_held(const char *w, int c, int writable, ssize_t r1)
{
	if (writable)
		BROKEN_NEEDS("TCP-FLOW-CONTROL", "a blocking %s() of 32 MiB returned %zd before its "
			     "timeout with room left in the send buffer (writable)", w, r1);
	set_tv(c, SO_SNDTIMEO, 0, 0);
	for (int i = 0; i < 1024; i++) { /* up to 16 MiB: the window may still open a little */
		errno = 0;
		ssize_t r = BOUNDED(send(c, big, 16384, MSG_NOSIGNAL));
		if (sp_bound_expired() || r == 0)
			return; /* it blocks: returning early was the timeout's */
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			BROKEN_NEEDS("TCP-FLOW-CONTROL", "a blocking send() without a timeout on full "
				     "buffers fails with EAGAIN at once (the %s() with SO_SNDTIMEO "
				     "returned early)", w);
		if (r < 0)
			return;
	}
}

/* .bound: on a stack whose sends ignore the timeout the item waits 3.5 s,
 * then 0.5 s for the calls shutdown() ends, then judges. */
SP_TEST(sndtimeo_bounds_blocking_send, "TIMEO-SNDTIMEO", SP_INET, .bound = 6)
{
	struct timed_send t[TW];
	int peer[TW], stuck[TW];
	sigset_t all, old;

	memset(t, 0, sizeof(t));
	for (int k = 0; k < TW; k++) {
		t[k].api = timed_writes[k];
		if (!sp_io_use(t[k].api, 1)) {
			t[k].unused = t[k].done = 1;
			t[k].c = peer[k] = -1;
			continue;
		}
		small_pair(ctx, 65536, &t[k].c, &peer[k]);
		ASSERT_TV(t[k].c, SO_SNDTIMEO, 0, 0);
		set_tv(t[k].c, SO_SNDTIMEO, 0, 200000);
		ASSERT_TV(t[k].c, SO_SNDTIMEO, 0, 200000);
	}
	sigfillset(&all);
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &all, &old));
	for (int k = 0; k < TW; k++)
		if (!t[k].unused)
			ASSERT_EQ(0, pthread_create(&t[k].th, NULL, timed_send_run, &t[k]));
	ASSERT_EQ(0, pthread_sigmask(SIG_SETMASK, &old, NULL));
	/* The partial send returns within 3 s, the next one 200 ms later (the
	 * item declares the whole wait as its .bound for the runner). */
	int bound = sp_wait_ms() > 3500 ? sp_wait_ms() : 3500;
	sp_wait_until(sends_done, t, bound);
	for (int k = 0; k < TW; k++) {
		stuck[k] = t[k].done ? 0 : t[k].stage == 2 ? 2 : 1;
		if (stuck[k])
			shutdown(t[k].c, SHUT_RDWR); /* ends the call: it failed already */
	}
	sp_wait_until(sends_done, t, 500); /* joined if it ended, else left behind */
	for (int k = 0; k < TW; k++) {
		if (t[k].unused)
			continue;
		if (t[k].done)
			pthread_join(t[k].th, NULL);
		else
			pthread_detach(t[k].th);
	}

	RECORD("partial_send_count", "%zd KiB", t[SP_IO_RECV].r1 / 1024); /* send() */
	for (int k = 0; k < TW; k++) {
		const char *w = sp_io_out_name(t[k].api);
		if (t[k].unused)
			continue;
		ASSERT_TRUE(!stuck[k], "a blocking %s() of 32 MiB with SO_SNDTIMEO 200 ms to a peer "
			    "that reads nothing returns, and so does the next one, within %d ms "
			    "(still blocked in the %s)", w, bound, stuck[k] == 2 ? "second" : "first");
		/* A peer that reads nothing and buffers of 64 KiB: the send
		 * blocks only through flow control (TCP-FLOW-CONTROL's Must, a
		 * mechanism here); taking all 32 MiB means it never did. */
		if (t[k].r1 == BIG)
			BROKEN_NEEDS("TCP-FLOW-CONTROL", "a blocking %s() of 32 MiB to a peer that "
				     "reads nothing, with 64 KiB buffers, took all of it in %lld ms", w,
				     t[k].ms1);
		ASSERT_TRUE(t[k].r1 > 0 && t[k].r1 < BIG, "a blocking %s() of 32 MiB with SO_SNDTIMEO "
			    "200 ms to a peer that reads nothing returns the partial count (got %zd, "
			    "%s)", w, t[k].r1, t[k].r1 < 0 ? sp_errno_name(t[k].err1) : "-");
		if (t[k].ms1 < 180)
			flow_control_held(w, t[k].c, t[k].writable, t[k].r1);
		ASSERT_TRUE(t[k].ms1 >= 180, "the partial %s() waits for its timeout: no sooner "
			    "than 180 ms (took %lld ms)", w, t[k].ms1);
		ASSERT_TRUE(t[k].ms1 <= 3000, "the partial %s() returns within 3 s (took %lld ms)",
			    w, t[k].ms1);
		REQUIRE(!t[k].writable, "the buffers stay full after the partial %s() (the socket "
			"is writable: the stack did not keep SO_SNDBUF/SO_RCVBUF at 64 KiB)", w);
		/* Not writable for poll() is not full: a stack may still take
		 * 1024 bytes (seen on Linux 6.1, UML and QEMU), and then the
		 * premise of this check was never there. */
		REQUIRE(t[k].r2 <= 0, "the buffers still full at the next %s() (it took %zd of "
			"1024 bytes after %lld ms: the stack had room again)", w, t[k].r2, t[k].ms2);
		ASSERT_TRUE(t[k].r2 == -1 && (t[k].err2 == EAGAIN || t[k].err2 == EWOULDBLOCK),
			    "the next %s(), with the buffers still full, fails with EAGAIN at its "
			    "timeout (got %zd, %s)", w, t[k].r2, sp_errno_name(t[k].err2));
		ASSERT_TRUE(t[k].ms2 >= 180, "the next %s() waits for its timeout: no sooner than "
			    "180 ms (took %lld ms)", w, t[k].ms2);
	}
	for (int k = 0; k < TW; k++) {
		if (t[k].unused)
			continue;
		close(t[k].c);
		close(peer[k]);
	}
}

/* ---- 8. TIMEO-CONNECT ------------------------------------------------------- */

SP_TEST(sndtimeo_bounds_blocking_connect, "TIMEO-CONNECT", SP_INET, .slow = 1)
{
	struct full_queue q;
	struct timed t;

	fill_queues(ctx, &q, 1);
	int c = sp_socket(ctx, SOCK_STREAM);
	set_tv(c, SO_SNDTIMEO, 0, 200000);
	guard_on();
	long long t0 = now_ms();
	errno = 0;
	t.r = connect(c, (struct sockaddr *)&q.to, q.tolen);
	t.err = errno;
	t.ms = now_ms() - t0;
	guard_off();
	ASSERT_TRUE(alrm_hits == 0, "a blocking connect() to a full accept queue with SO_SNDTIMEO "
		    "200 ms returns within %d ms (the guard ended it after %lld ms)", sp_wait_ms(),
		    t.ms);
	ASSERT_TRUE(t.r == -1, "a blocking connect() to a full accept queue with SO_SNDTIMEO "
		    "200 ms fails at the timeout (got %d)", t.r);
	ASSERT_TRUE(t.ms >= 180, "connect() waits for SO_SNDTIMEO: no sooner than 180 ms (took "
		    "%lld ms, %s)", t.ms, sp_errno_name(t.err));
	ASSERT_TRUE(t.ms <= 2000, "connect() returns within 2 s (took %lld ms)", t.ms);
	RECORD("connect_sndtimeo_errno", "%s", sp_errno_name(t.err));

	/* Record: the attempt goes on. */
	sp_set_nonblock(c, 1);
	errno = 0;
	int r = connect(c, (struct sockaddr *)&q.to, q.tolen);
	RECORD("second_connect", "%s", r == 0 ? "0" : sp_errno_name(errno));
	int s = accept(q.l, NULL, NULL);
	int ev = sp_poll(c, POLLOUT, sp_wait_ms());
	RECORD("after_accept", "%s, SO_ERROR %s", ev & POLLOUT ? "writable" : "not writable",
	       sp_errno_name(sp_get_int(c, SOL_SOCKET, SO_ERROR)));
	if (s >= 0)
		close(s);
	close(c);
	close_queue(&q);
}

SP_MAIN("intr")
