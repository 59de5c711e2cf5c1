/*
 * ioctl.c - faults for catalogue 3's IOCTL-* behaviors (FIONREAD/SIOCINQ,
 * SIOCOUTQ/TIOCOUTQ, FIONBIO). Part of libspfault.so; see spfault.c for
 * the conventions.
 *
 * This file owns the ioctl() interposer. It is transparent while no fault
 * of this file is on (the other fault files call ioctl() too, e.g. for
 * FIONREAD on pipes); checks it makes go to the kernel directly and keep
 * errno.
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

REAL(int, ioctl, int, unsigned long, ...)

static int kind(int fd, int *family)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	*family = syscall(SYS_getsockname, fd, &ss, &len) == 0 ? ss.ss_family : -1;
	errno = saved;
	return spfault_sock_type(fd);
}

int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	load_ioctl();

	int fam, type;
	if (req == FIONBIO && arg && on("fionbio_pointer_as_value") && kind(fd, &fam)) {
		int fl = fcntl(fd, F_GETFL);
		if (fl < 0)
			return -1;
		return fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -1 : 0;
	}
	int r = real_ioctl(fd, req, arg);
	if (r != 0 || !arg)
		return r;
	if (req == FIONREAD && on("fionread_counts_fin") && kind(fd, &fam) == SOCK_STREAM &&
	    *(int *)arg == 0) {
		char c;
		int saved = errno;
		if (syscall(SYS_recvfrom, fd, &c, 1, MSG_PEEK | MSG_DONTWAIT, NULL, NULL) == 0)
			*(int *)arg = 1;
		errno = saved;
	}
	if (req == FIONREAD && on("fionread_dgram_counts_headers") && *(int *)arg > 0 &&
	    (type = kind(fd, &fam)) == SOCK_DGRAM)
		*(int *)arg += fam == AF_INET6 ? (int)sizeof(struct sockaddr_in6) :
			       fam == AF_INET ? (int)sizeof(struct sockaddr_in) :
			       (int)sizeof(struct sockaddr_un);
	if (req == SIOCOUTQ && on("outq_always_zero") && kind(fd, &fam) == SOCK_STREAM &&
	    (fam == AF_INET || fam == AF_INET6))
		*(int *)arg = 0;
	return r;
}
