/*
 * faults/entry.c - deviations on one entry point only (issue 21).
 *
 * Real systems break socket semantics on one path while the classic calls
 * stay right: an io_uring opcode that drops a flag, a multi-message call
 * that loses a message flag, a zero-copy call that returns short, a
 * signal-mask wait that leaves its mask behind. Each fault below changes
 * one entry point of fixtures/sp_entry.c and nothing else; the items that
 * run the behavior through that entry point must fail on it.
 *
 * io_uring is reached through libc's syscall() (sp_entry.c), so the
 * faults see io_uring_setup() and io_uring_enter(): at setup they map
 * the new ring's submission queue themselves (the same shared pages the
 * program maps), and before each enter they rewrite the entries not yet
 * submitted, as a kernel that ignored a field would.
 *
 * Interposers owned here: syscall, recvmmsg, sendfile, sendfile64,
 * splice (no other family changes them). The ring is mapped with the C
 * library's mmap (REAL), not through faults/proc.c's interposer: the
 * library's own bookkeeping is no call of the program's.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "spfault.h"

#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif

FAULT(uring_recv_ignores_waitall,
      "FLAG-WAITALL",
      "an io_uring whose IORING_OP_RECV/RECVMSG drops MSG_WAITALL (a kernel or emulator that "
      "completes the request with the first bytes that arrive)");
FAULT(uring_shutdown_shuts_both,
      "CLOSE-HALF-WR-EOF,THREAD-SHUTDOWN-WAKES-READ",
      "an io_uring whose IORING_OP_SHUTDOWN ignores `how` and shuts both directions, so a "
      "half-closed side can no longer read the reply");
FAULT(uring_sendmsg_refuses_rights,
      "UNIX-SCM-RIGHTS",
      "an io_uring whose IORING_OP_SENDMSG refuses a message carrying SCM_RIGHTS with EINVAL "
      "(as early io_uring kernels did), while sendmsg() passes the descriptor");
FAULT(recvmmsg_drops_trunc,
      "UDP-TRUNCATE,UNIX-DGRAM-BOUNDARY,UNIX-SEQPACKET-BOUNDARY,MMSG-RECVMMSG",
      "a recvmmsg() (an LD_PRELOAD stack or an emulator's batch path) that copies the first "
      "part of a long datagram but does not set MSG_TRUNC in the message's msg_flags");
FAULT(sendfile_eagain_on_blocking,
      "TCP-FLOW-CONTROL",
      "a sendfile() to a blocking stream socket whose send buffer is full fails with EAGAIN "
      "instead of waiting for room (a stack that emulates it with read() and a non-blocking "
      "send; Nanos mishandled a full TCP window). A short count is no deviation: sendfile(2) "
      "tells callers to retry");
FAULT(splice_eagain_on_blocking,
      "TCP-CLOSE-DISCARDS-INPUT,CLOSE-FULL-LOSES-REPLY,ZC-SPLICE,CLOSE-HALF-RD,CLOSE-HALF-WR-EOF,"
      "TCP-CLOSE-FLUSHES-OUTPUT,TCP-FLOW-CONTROL,THREAD-SHUTDOWN-WAKES-READ,OPT-LINGER-ZERO-RST",
      "a splice() from a blocking socket that fails with EAGAIN whenever nothing is queued "
      "(the socket treated as if SPLICE_F_NONBLOCK applied to it), so EOF never reads as 0");
FAULT(recvmmsg_one_per_call,
      "MMSG-RECVMMSG",
      "a recvmmsg() that is one recvmsg() underneath (an emulation layer's stub): it returns "
      "at most one message per call whatever is queued and whatever vlen says");
FAULT(sendfile_moves_file_offset,
      "ZC-SENDFILE",
      "a sendfile() emulated with read() and write() (an LD_PRELOAD stack, a small kernel) "
      "that moves the file's own offset even when an offset pointer is given");
FAULT(uring_accept_ignores_dontwait,
      "CONN-ACCEPT-EAGAIN",
      "an io_uring whose IORING_OP_ACCEPT takes IORING_ACCEPT_DONTWAIT but drops it (as it drops "
      "the listener's O_NONBLOCK), so a request on an empty non-blocking listener waits for a "
      "connection");
FAULT(uring_poll_closed_fd_waits,
      "MUX-CLOSED-FD",
      "an io_uring (an emulator's) whose IORING_OP_POLL_ADD on a descriptor that is not open "
      "parks the request like one on an idle descriptor instead of failing it");
FAULT(uring_bind_loses_address_length,
      "UNIX-PATH-FILE",
      "an io_uring whose IORING_OP_BIND reads the address length from the wrong field and binds "
      "an AF_UNIX socket with the family alone (Linux then autobinds an abstract name), so no "
      "socket file is made");
FAULT(uring_send_drops_oob,
      "FLAG-OOB-URGENT-BYTE,FLAG-OOB-SIGURG",
      "an io_uring (a kernel or emulator) whose IORING_OP_SEND/SENDMSG passes on only the flags "
      "it knows and drops MSG_OOB: the urgent byte goes out as normal data, no SIGURG");
FAULT(recvmmsg_polls_first,
      "INTR-RESTART-SOCKET-CALLS,TIMEO-RCVTIMEO",
      "a recvmmsg() emulated as a poll() without a timeout and then a non-blocking receive (an "
      "LD_PRELOAD stack's batch path) on a blocking socket: it waits past SO_RCVTIMEO, and a "
      "signal ends it with EINTR even under SA_RESTART (poll is never restarted)");
FAULT(epoll_pwait2_keeps_its_mask,
      "SIG-INTERRUPTS-SLEEP",
      "an epoll_pwait2() emulated by sigprocmask() and a wait that does not put the caller's "
      "signal mask back on return");

/* ---- io_uring: the submission queue, as the program sees it ---- */

REAL(void *, mmap, void *, size_t, int, int, int, off_t)

enum { RINGS = 16 };
static struct ring {
	int fd;
	pid_t pid;
	unsigned *head, *tail, *mask, *array;
	struct io_uring_sqe *sqes;
} rings[RINGS];

static void ring_note(int fd, const struct io_uring_params *p)
{
	int saved = errno;
	struct ring *r = NULL;

	for (int i = 0; i < RINGS; i++)
		if (rings[i].fd <= 0 || rings[i].pid != getpid()) {
			r = &rings[i];
			break;
		}
	if (r) {
		size_t sq_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
		load_mmap();
		unsigned char *sq = real_mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
					 IORING_OFF_SQ_RING);
		void *sqes = real_mmap(NULL, p->sq_entries * sizeof(struct io_uring_sqe),
				  PROT_READ | PROT_WRITE, MAP_SHARED, fd, IORING_OFF_SQES);
		if (sq != MAP_FAILED && sqes != MAP_FAILED) {
			r->fd = fd;
			r->pid = getpid();
			r->head = (unsigned *)(sq + p->sq_off.head);
			r->tail = (unsigned *)(sq + p->sq_off.tail);
			r->mask = (unsigned *)(sq + p->sq_off.ring_mask);
			r->array = (unsigned *)(sq + p->sq_off.array);
			r->sqes = sqes;
		}
	}
	errno = saved;
}

/* Does a SENDMSG entry's msghdr (the program's memory) carry SCM_RIGHTS? */
static int carries_rights(const struct io_uring_sqe *s)
{
	const struct msghdr *m = (const struct msghdr *)(uintptr_t)s->addr;
	struct msghdr copy;

	if (!m)
		return 0;
	copy = *m;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&copy); c; c = CMSG_NXTHDR(&copy, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			return 1;
	return 0;
}

static int not_open(int fd)
{
	int saved = errno, r = fd >= 0 && fcntl(fd, F_GETFD) < 0 && errno == EBADF;
	errno = saved;
	return r;
}

/* A descriptor that never becomes ready: a pipe's read end nobody writes
 * (one per process, kept open). */
static int idle_fd(void)
{
	static pid_t pid;
	static int p[2] = { -1, -1 };
	int saved = errno;

	if (pid != getpid()) {
		if (SPF_SYSCALL(SYS_pipe2, p, O_CLOEXEC) < 0) /* not faults/pipe.c's pipe2 */
			p[0] = -1;
		pid = getpid();
	}
	errno = saved;
	return p[0];
}

/* Before io_uring_enter(): the entries between the kernel's head and the
 * program's tail are about to be submitted. */
static void ring_before_enter(int fd)
{
	int waitall = spfault_on("uring_recv_ignores_waitall"),
	    shut = spfault_on("uring_shutdown_shuts_both"),
	    rights = spfault_on("uring_sendmsg_refuses_rights"),
	    oob = spfault_on("uring_send_drops_oob"),
	    dontwait = spfault_on("uring_accept_ignores_dontwait"),
	    closed = spfault_on("uring_poll_closed_fd_waits"),
	    bindlen = spfault_on("uring_bind_loses_address_length");

	if (!waitall && !shut && !rights && !oob && !dontwait && !closed && !bindlen)
		return;
	for (int i = 0; i < RINGS; i++) {
		struct ring *r = &rings[i];
		if (r->fd != fd || r->pid != getpid())
			continue;
		unsigned tail = __atomic_load_n(r->tail, __ATOMIC_ACQUIRE);
		for (unsigned k = __atomic_load_n(r->head, __ATOMIC_ACQUIRE); k != tail; k++) {
			struct io_uring_sqe *s = &r->sqes[r->array[k & *r->mask]];
			if (waitall && (s->opcode == IORING_OP_RECV || s->opcode == IORING_OP_RECVMSG))
				s->msg_flags &= ~(unsigned)MSG_WAITALL;
			if (oob && (s->opcode == IORING_OP_SEND || s->opcode == IORING_OP_SENDMSG))
				s->msg_flags &= ~(unsigned)MSG_OOB;
			if (shut && s->opcode == IORING_OP_SHUTDOWN)
				s->len = SHUT_RDWR;
			if (rights && s->opcode == IORING_OP_SENDMSG && carries_rights(s))
				s->ioprio = (__u16)~0u; /* flags the kernel rejects: -EINVAL */
			if (dontwait && s->opcode == IORING_OP_ACCEPT)
				s->ioprio &= (__u16)~2u; /* IORING_ACCEPT_DONTWAIT */
			if (closed && s->opcode == IORING_OP_POLL_ADD && not_open(s->fd))
				s->fd = idle_fd(); /* polled like an idle descriptor */
			if (bindlen && s->opcode == 56 /* IORING_OP_BIND, Linux 6.11 */)
				s->addr2 = sizeof(sa_family_t);
		}
	}
}

REAL(long, syscall, long, ...)
long syscall(long nr, ...)
{
	va_list ap;
	long a[6];

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	load_syscall();
	if (nr == __NR_io_uring_setup) {
		long fd = real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		if (fd >= 0)
			ring_note((int)fd, (const struct io_uring_params *)a[1]);
		return fd;
	}
	if (nr == __NR_io_uring_enter && a[1] > 0)
		ring_before_enter((int)a[0]);
	if (nr == __NR_epoll_pwait2 && a[4] && spfault_on("epoll_pwait2_keeps_its_mask")) {
		/* The mask goes on and stays on. */
		sigprocmask(SIG_SETMASK, (const sigset_t *)a[4], NULL);
		return real_syscall(nr, a[0], a[1], a[2], a[3], 0L, 0L);
	}
	return real_syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/* ---- recvmmsg ---- */

REAL(int, recvmmsg, int, struct mmsghdr *, unsigned int, int, struct timespec *)
int recvmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags, struct timespec *t)
{
	load_recvmmsg();
	/* Plain blocking receives only: the error queue, MSG_WAITALL and a
	 * listener are other IDs' business (CMSG-RECVERR, FLAG-WAITALL,
	 * STATE-LISTENER-IO). */
	if (spfault_on("recvmmsg_polls_first") &&
	    !(flags & (MSG_DONTWAIT | MSG_ERRQUEUE | MSG_WAITALL)) && spfault_sock_type(fd) &&
	    !spfault_nonblocking(fd) && spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN) != 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (SPF_SYSCALL(SYS_ppoll, &p, 1, NULL, NULL, 0) < 0)
			return -1; /* EINTR at a signal, whatever SA_RESTART says */
		flags |= MSG_DONTWAIT;
	}
	if (n > 1 && spfault_on("recvmmsg_one_per_call"))
		n = 1;
	int r = real_recvmmsg(fd, v, n, flags, t);
	if (r > 0 && spfault_on("recvmmsg_drops_trunc"))
		for (int i = 0; i < r; i++)
			v[i].msg_hdr.msg_flags &= ~MSG_TRUNC;
	return r;
}

/* ---- sendfile ---- */

static int blocking_stream(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);
	errno = saved;
	return fl >= 0 && !(fl & O_NONBLOCK) && spfault_sock_type(fd) == SOCK_STREAM;
}

/* sendfile() emulated as a stack without a blocking path would: read up
 * to 64 KiB of the file, then send(MSG_DONTWAIT): a short count where the
 * buffer fills, EAGAIN where it is full already. */
static ssize_t as_if_nonblocking(int out, int in, off_t *off, size_t count)
{
	static char buf[65536];
	size_t n = count < sizeof(buf) ? count : sizeof(buf);
	long got = off ? SPF_SYSCALL(SYS_pread64, in, buf, n, *off) : SPF_SYSCALL(SYS_read, in, buf, n);
	if (got <= 0)
		return got;
	long w = SPF_SYSCALL(SYS_sendto, out, buf, got, MSG_DONTWAIT, NULL, 0);
	int saved = errno;
	long sent = w > 0 ? w : 0;
	if (off)
		*off += sent;
	else if (sent < got)
		SPF_SYSCALL(SYS_lseek, in, sent - got, SEEK_CUR);
	errno = saved;
	return w;
}

REAL(ssize_t, sendfile, int, int, off_t *, size_t)
ssize_t sendfile(int out, int in, off_t *off, size_t count)
{
	load_sendfile();
	ssize_t r;
	if (spfault_on("sendfile_eagain_on_blocking") && blocking_stream(out))
		r = as_if_nonblocking(out, in, off, count);
	else
		r = real_sendfile(out, in, off, count);
	if (r > 0 && off && spfault_on("sendfile_moves_file_offset")) {
		int saved = errno;
		SPF_SYSCALL(SYS_lseek, in, r, SEEK_CUR);
		errno = saved;
	}
	return r;
}

REAL(ssize_t, sendfile64, int, int, off_t *, size_t)
ssize_t sendfile64(int out, int in, off_t *off, size_t count)
{
	load_sendfile64();
	ssize_t r;
	if (spfault_on("sendfile_eagain_on_blocking") && blocking_stream(out))
		r = as_if_nonblocking(out, in, off, count);
	else
		r = real_sendfile64(out, in, off, count);
	if (r > 0 && off && spfault_on("sendfile_moves_file_offset")) {
		int saved = errno;
		SPF_SYSCALL(SYS_lseek, in, r, SEEK_CUR);
		errno = saved;
	}
	return r;
}

/* ---- splice ---- */

REAL(ssize_t, splice, int, loff_t *, int, loff_t *, size_t, unsigned int)
ssize_t splice(int in, loff_t *oin, int out, loff_t *oout, size_t len, unsigned int flags)
{
	load_splice();
	if (spfault_on("splice_eagain_on_blocking") && blocking_stream(in)) {
		int saved = errno, q = 0;
		if (ioctl(in, FIONREAD, &q) == 0 && q == 0) {
			/* Nothing queued: the call made as if non-blocking. Its
			 * end of stream or reset reads as EAGAIN; a socket with
			 * no connection at all (a listener, one never connected)
			 * keeps its own error (ENOTCONN, EINVAL). */
			errno = saved;
			ssize_t r = real_splice(in, oin, out, oout, len, flags | SPLICE_F_NONBLOCK);
			if (r == 0 || (r < 0 && (errno == ECONNRESET || errno == EPIPE))) {
				errno = EAGAIN;
				return -1;
			}
			return r;
		}
		errno = saved;
	}
	return real_splice(in, oin, out, oout, len, flags);
}
