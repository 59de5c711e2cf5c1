/*
 * mmsg.c - faults for catalogue 3's MMSG-SENDMMSG (several messages in
 * one call), and sendmmsg's own path of FLAG-NOSIGNAL. Part of libspfault.so; see spfault.h for the conventions.
 *
 * Interposer owned here: sendmmsg (no other family changes it). With no
 * fault of this file on it is the C library's sendmmsg, unchanged. The
 * recvmmsg, sendfile and splice faults of the same catalogue section
 * (MMSG-RECVMMSG, ZC-SENDFILE, ZC-SPLICE) live beside those calls'
 * interposers in faults/entry.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "spfault.h"

FAULT(sendmmsg_reports_first_error,
      "MMSG-SENDMMSG",
      "a sendmmsg() emulated by a loop of sendmsg() calls (an LD_PRELOAD stack, FEX's "
      "socketcall path) that returns the first error, -1, even after earlier messages went "
      "out, instead of the number sent");

FAULT(sendmmsg_drops_nosignal,
      "FLAG-NOSIGNAL",
      "a sendmmsg() that passes the messages on without the call's MSG_NOSIGNAL (a batch path "
      "that forwards only the flags it knows), so SIGPIPE is raised where send() raises none");

REAL(int, sendmmsg, int, struct mmsghdr *, unsigned int, int)
int sendmmsg(int fd, struct mmsghdr *v, unsigned int n, int flags)
{
	if (spfault_on("sendmmsg_drops_nosignal"))
		flags &= ~MSG_NOSIGNAL;
	if (!spfault_on("sendmmsg_reports_first_error")) {
		load_sendmmsg();
		return real_sendmmsg(fd, v, n, flags);
	}
	for (unsigned int i = 0; i < n; i++) {
		long r = SPF_SYSCALL(SYS_sendmsg, fd, &v[i].msg_hdr, flags);
		if (r < 0)
			return -1;
		v[i].msg_len = (unsigned int)r;
	}
	return (int)n;
}
