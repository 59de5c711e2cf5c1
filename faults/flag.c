/*
 * faults/flag.c - faults of catalogue 2's FLAG-* behaviors: the flags of
 * send and receive calls (MSG_PEEK, MSG_WAITALL, MSG_DONTWAIT,
 * MSG_NOSIGNAL, MSG_OOB and SIGURG, MSG_TRUNC) and vectored I/O. Part of
 * libspfault.so; see spfault.h.
 *
 * Interposes writev() and readv(); joins receiving, sending, sendmsg and
 * installing a handler through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(peek_consumes,
      "FLAG-PEEK",
      "an LD_PRELOAD stack that drops MSG_PEEK, so a peek consumes the data");
FAULT(waitall_ignored,
      "FLAG-WAITALL",
      "a userspace stack that ignores MSG_WAITALL and returns whatever has arrived");
FAULT(dontwait_sets_nonblock,
      "FLAG-DONTWAIT",
      "a layer that emulates MSG_DONTWAIT by setting O_NONBLOCK on the descriptor and never restoring it");
FAULT(nosignal_ignored,
      "FLAG-NOSIGNAL",
      "a libc or emulator that drops MSG_NOSIGNAL, so SIGPIPE is raised anyway");
FAULT(sigpipe_never_raised,
      "FLAG-NOSIGNAL,CLOSE-HALF-WR-NO-MORE-WRITES",
      "a sandbox that never raises SIGPIPE on a socket (every send behaves as with MSG_NOSIGNAL)");
FAULT(oob_unsupported,
      "FLAG-OOB-URGENT-BYTE,FLAG-OOB-SIGURG,FLAG-OOB-ATMARK",
      "a userspace stack without urgent data: MSG_OOB is sent as normal data and recv(MSG_OOB) fails");
FAULT(sigurg_never_sent,
      "FLAG-OOB-SIGURG",
      "a sandbox that accepts F_SETOWN and delivers urgent data but never raises SIGURG");
FAULT(gather_as_separate_sends,
      "FLAG-WRITEV-GATHER,INTR-PARTIAL-TRANSFER",
      "an LD_PRELOAD stack that implements writev()/sendmsg() as one send() per buffer (an "
      "interrupted send that moved part of one buffer is followed by the next buffer's send, "
      "so the call does not return its count at the signal)");
FAULT(writev_first_buffer_only,
      "FLAG-WRITEV-GATHER,UNIX-SOCKETPAIR,UNIX-STREAM-NO-BOUNDARY",
      "a vectored write that sends only the first buffer and returns its length");
FAULT(scatter_as_separate_reads,
      "FLAG-READV-SCATTER",
      "an LD_PRELOAD stack that implements readv() as one read() per buffer");
FAULT(readv_first_buffer_only,
      "FLAG-READV-SCATTER,UNIX-STREAM-NO-BOUNDARY",
      "a vectored read that fills only the first buffer");
FAULT(trunc_flag_ignored,
      "FLAG-TRUNC-UDP",
      "a BSD-style stack where MSG_TRUNC is only an output flag: recv returns the bytes copied");

REAL(ssize_t, sendmsg, int, const struct msghdr *, int)
REAL(ssize_t, readv, int, const struct iovec *, int)
REAL(ssize_t, writev, int, const struct iovec *, int)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, read, int, void *, size_t)

/* ---- the flags of receive and send calls ------------------------------------ */

SPF_HOOK(recv_flags, SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM) | SPF_OP(SPF_RECVMSG),
	 SPF_BEFORE, 20)
{
	int fd = c->fd;

	if ((c->flags & MSG_PEEK) && on("peek_consumes"))
		c->flags &= ~MSG_PEEK;
	if ((c->flags & MSG_WAITALL) && on("waitall_ignored"))
		c->flags &= ~MSG_WAITALL;
	if ((c->flags & MSG_TRUNC) && on("trunc_flag_ignored") && spfault_sock_type(fd) == SOCK_DGRAM)
		c->flags &= ~MSG_TRUNC;
	if ((c->flags & MSG_DONTWAIT) && on("dontwait_sets_nonblock") && spfault_sock_type(fd)) {
		int saved = errno, fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		errno = saved;
		c->flags &= ~MSG_DONTWAIT;
	}
	if ((c->flags & MSG_OOB) && on("oob_unsupported") && spfault_sock_type(fd) == SOCK_STREAM) {
		errno = EINVAL;
		c->r = -1;
		return 1;
	}
	return 0;
}

/* A write() whose flags a fault changes becomes a send(). */
SPF_HOOK(send_flags, SPF_SENDING, SPF_BEFORE, 20)
{
	int flags = c->flags;

	if ((flags & MSG_NOSIGNAL) && on("nosignal_ignored"))
		flags &= ~MSG_NOSIGNAL;
	if (on("sigpipe_never_raised") && spfault_sock_type(c->fd) == SOCK_STREAM)
		flags |= MSG_NOSIGNAL;
	if ((flags & MSG_OOB) && on("oob_unsupported"))
		flags &= ~MSG_OOB;
	if (flags != c->flags) {
		c->flags = flags;
		c->via_write = 0;
	}
	return 0;
}

/* sigurg_never_sent: no SIGURG handler ever runs. */
SPF_HOOK(sigurg_never_sent, SPF_OP(SPF_SIGNAL) | SPF_OP(SPF_SIGACTION), SPF_BEFORE, 10)
{
	if (c->sig == SIGURG && on("sigurg_never_sent"))
		c->handler = SIG_IGN;
	return 0;
}

/* ---- vectored I/O ------------------------------------------------------------- */

/* One send() per buffer (gather_as_separate_sends). */
static ssize_t send_each(int fd, const struct iovec *iov, int n, int flags)
{
	ssize_t total = 0;
	load_send();
	for (int i = 0; i < n; i++) {
		ssize_t w = real_send(fd, iov[i].iov_base, iov[i].iov_len, flags);
		if (w < 0)
			return total ? total : w;
		total += w;
	}
	return total;
}

SPF_HOOK(sendmsg_gather, SPF_OP(SPF_SENDMSG), SPF_BEFORE, 30)
{
	const struct msghdr *mh = c->out;

	if (mh && !mh->msg_name && !mh->msg_controllen && on("gather_as_separate_sends") &&
	    spfault_sock_type(c->fd)) {
		c->r = send_each(c->fd, mh->msg_iov, (int)mh->msg_iovlen, c->flags);
		return 1;
	}
	if (mh && mh->msg_iovlen > 1 && on("writev_first_buffer_only") && spfault_sock_type(c->fd)) {
		struct msghdr one = *mh;
		one.msg_iovlen = 1;
		load_sendmsg();
		c->r = real_sendmsg(c->fd, &one, c->flags);
		return 1;
	}
	return 0;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
	load_writev();
	if (on("gather_as_separate_sends") && spfault_sock_type(fd))
		return send_each(fd, iov, n, 0);
	if (n > 1 && on("writev_first_buffer_only") && spfault_sock_type(fd))
		n = 1;
	return real_writev(fd, iov, n);
}

ssize_t readv(int fd, const struct iovec *iov, int n)
{
	load_readv();
	if (n > 1 && on("readv_first_buffer_only") && spfault_sock_type(fd))
		n = 1;
	if (on("scatter_as_separate_reads") && spfault_sock_type(fd)) {
		ssize_t total = 0;
		load_read();
		for (int i = 0; i < n; i++) {
			/* later buffers take only what is already there */
			int fl = i ? fcntl(fd, F_GETFL) : -1;
			if (fl >= 0)
				fcntl(fd, F_SETFL, fl | O_NONBLOCK);
			ssize_t r = real_read(fd, iov[i].iov_base, iov[i].iov_len);
			if (fl >= 0)
				fcntl(fd, F_SETFL, fl);
			if (r < 0)
				return total ? total : r;
			total += r;
			if ((size_t)r < iov[i].iov_len)
				break;
		}
		return total;
	}
	return real_readv(fd, iov, n);
}
