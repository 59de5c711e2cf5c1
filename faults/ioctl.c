/*
 * ioctl.c - faults for catalogue 3's IOCTL-* behaviors (FIONREAD/SIOCINQ,
 * SIOCOUTQ/TIOCOUTQ, FIONBIO). Part of libspfault.so; see spfault.h for
 * the conventions.
 *
 * Joins ioctl() (faults/core.c: the other fault files call it too, e.g.
 * for FIONREAD on pipes) through hooks. They are transparent while no
 * fault of this file is on; checks they make go to the kernel directly
 * and keep errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/sockios.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(fionread_counts_fin,
      "IOCTL-INQ-STREAM",
      "a stack that counts the peer's FIN in the sequence space it reports, so FIONREAD "
      "reads 1 at end of file with no data left");
FAULT(fionread_dgram_counts_headers,
      "IOCTL-INQ-DGRAM",
      "BSD-style FIONREAD on a datagram socket that counts the address header stored with "
      "the datagram (FreeBSD counts the headers, asio#54)");
FAULT(outq_always_zero,
      "IOCTL-OUTQ",
      "a stack that accepts SIOCOUTQ/TIOCOUTQ on TCP but keeps no count of unacknowledged "
      "bytes: it always reads 0");
FAULT(fionbio_pointer_as_value,
      "IOCTL-FIONBIO",
      "SerenityOS: FIONBIO reads the pointer, not the int it points to, so FIONBIO 0 sets "
      "non-blocking mode too");

static int kind(int fd, int *family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	*family = syscall(SYS_getsockname, fd, &ss, &len) == 0 ? ss.ss_family : -1;
	errno = saved;
	return spfault_sock_type(fd);
}

SPF_HOOK(fionbio_pointer_as_value, SPF_OP(SPF_IOCTL), SPF_BEFORE, 10)
{
	int fam, fd = c->fd;
	if (c->req == FIONBIO && c->val && on("fionbio_pointer_as_value") && kind(fd, &fam)) {
		int fl = fcntl(fd, F_GETFL);
		c->r = fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
		return 1;
	}
	return 0;
}

SPF_HOOK(ioctl_counts, SPF_OP(SPF_IOCTL), SPF_AFTER, 10)
{
	int fam, type, fd = c->fd, *arg = c->val;
	unsigned long req = c->req;
	if (c->r != 0 || !arg)
		return 0;
	if (req == FIONREAD && on("fionread_counts_fin") && kind(fd, &fam) == SOCK_STREAM &&
	    *arg == 0) {
		char b;
		int saved = errno;
		if (syscall(SYS_recvfrom, fd, &b, 1, MSG_PEEK | MSG_DONTWAIT, NULL, NULL) == 0)
			*arg = 1;
		errno = saved;
	}
	if (req == FIONREAD && on("fionread_dgram_counts_headers") && *arg > 0 &&
	    (type = kind(fd, &fam)) == SOCK_DGRAM)
		*arg += fam == AF_INET6 ? (int)sizeof(struct sockaddr_in6) :
			fam == AF_INET ? (int)sizeof(struct sockaddr_in) :
			(int)sizeof(struct sockaddr_un);
	if (req == SIOCOUTQ && on("outq_always_zero") && kind(fd, &fam) == SOCK_STREAM &&
	    (fam == AF_INET || fam == AF_INET6))
		*arg = 0;
	return 0;
}
