/*
 * faults/unix.c - faults of UNIX-* behaviors: socket pairs, message
 * boundaries, passing descriptors, peer credentials, pathname and
 * abstract names (part of libspfault.so; see spfault.h).
 *
 * Interposes socketpair(); joins receiving, getsockopt, connect, bind
 * and close through hooks (faults/core.c).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(socketpair_one_way,
      "UNIX-SOCKETPAIR",
      "a socketpair() emulated with a pipe: data flows only from the first "
      "descriptor to the second");
/* The message channel under it is a SOCK_SEQPACKET pair, which on Linux
 * raises no SIGPIPE when the peer has closed (-1 EPIPE only): a stream
 * pair's write to a closed peer then breaks FLAG-NOSIGNAL's Must too, in
 * the one item that writes to a Unix stream pair (family-less, pipe.c). */
FAULT(unix_stream_pair_keeps_messages,
      "UNIX-STREAM-NO-BOUNDARY,RECV-ZERO-LENGTH,FLAG-NOSIGNAL[none]",
      "an emulator that backs AF_UNIX stream pairs with message channels, so "
      "each write stays one read");
FAULT(unix_message_pair_is_stream,
      "UNIX-DGRAM-BOUNDARY,UNIX-SEQPACKET-BOUNDARY,IOCTL-INQ-DGRAM,RECV-ZERO-LENGTH,UNIXX-OPTIONS",
      "an emulator that backs every AF_UNIX socketpair with a byte stream, "
      "losing datagram and packet boundaries");
FAULT(unix_trunc_flag_missing,
      "UNIX-DGRAM-BOUNDARY,UNIX-SEQPACKET-BOUNDARY",
      "an AF_UNIX emulation that cuts a long message without setting MSG_TRUNC");
FAULT(scm_rights_reopens_file,
      "UNIX-SCM-RIGHTS",
      "a sandbox that passes SCM_RIGHTS files by re-opening them (/proc/self/fd), "
      "so the receiver gets a new open file description with its own offset");
FAULT(scm_rights_dropped,
      "UNIX-SCM-RIGHTS",
      "an LD_PRELOAD socket stack that carries the data of sendmsg() but drops "
      "SCM_RIGHTS control messages");
FAULT(peercred_reports_self,
      "UNIX-PEERCRED",
      "an emulator that fills SO_PEERCRED with the caller's own credentials instead "
      "of the peer's");
FAULT(unix_close_unlinks_path,
      "UNIX-PATH-FILE,UNIX-CONNECT-ERRORS",
      "a runtime whose close() of a Unix socket removes its socket file (as Go's "
      "UnixListener.Close does)");
FAULT(unix_connect_refuses_missing_path,
      "UNIX-CONNECT-ERRORS",
      "a stack that reports every failed AF_UNIX connect as ECONNREFUSED, even for "
      "a path that does not exist");
FAULT(abstract_name_lingers,
      "UNIX-ABSTRACT",
      "a stack that frees an abstract name only later (at process exit), so "
      "re-binding it after close() is EADDRINUSE");
FAULT(abstract_name_makes_file,
      "UNIX-ABSTRACT",
      "a stack without the abstract namespace that drops the leading NUL and makes "
      "a socket file under the rest of the name (BSD-like)");

REAL(int, socketpair, int, int, int, int *)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(int, bind, int, const struct sockaddr *, socklen_t)
REAL(int, close, int)

static int is_unix(int fd) { return spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX; }

/* ---- socket pairs -------------------------------------------------------- */

int socketpair(int domain, int type, int proto, int sv[2])
{
	load_socketpair();
	int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC), flags = type & ~base;
	if (domain == AF_UNIX && base == SOCK_STREAM && on("unix_stream_pair_keeps_messages"))
		type = SOCK_SEQPACKET | flags;
	if (domain == AF_UNIX && (base == SOCK_DGRAM || base == SOCK_SEQPACKET) &&
	    on("unix_message_pair_is_stream"))
		type = SOCK_STREAM | flags;
	int r = real_socketpair(domain, type, proto, sv);
	if (r == 0 && domain == AF_UNIX && on("socketpair_one_way")) {
		shutdown(sv[0], SHUT_RD);
		shutdown(sv[1], SHUT_WR);
	}
	return r;
}

/* ---- messages and passed descriptors ------------------------------------------ */

SPF_HOOK(unix_trunc_flag_missing, SPF_OP(SPF_RECVMSG), SPF_AFTER, 60)
{
	if (c->r >= 0 && on("unix_trunc_flag_missing") && is_unix(c->fd))
		c->msg->msg_flags &= ~MSG_TRUNC;
	return 0;
}

/* scm_rights_reopens_file: each received regular file becomes a fresh
 * open() of the same file. */
SPF_HOOK(scm_rights_reopens_file, SPF_OP(SPF_RECVMSG), SPF_AFTER, 61)
{
	struct msghdr *mh = c->msg;

	if (c->r < 0 || !on("scm_rights_reopens_file") || !mh->msg_controllen)
		return 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < n; i++) {
			int fd, saved = errno;
			struct stat st;
			char p[64];
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
				snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
				int nfd = open(p, fcntl(fd, F_GETFL) & ~(O_CREAT | O_TRUNC));
				if (nfd >= 0) {
					dup2(nfd, fd);
					load_close();
					real_close(nfd);
				}
			}
			errno = saved;
		}
	}
	return 0;
}

/* scm_rights_dropped: the received descriptors are closed and the control
 * data is gone. */
SPF_HOOK(scm_rights_dropped, SPF_OP(SPF_RECVMSG), SPF_AFTER, 62)
{
	struct msghdr *mh = c->msg;

	if (c->r < 0 || !on("scm_rights_dropped") || !mh->msg_controllen)
		return 0;
	int rights = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fd, saved = errno;
		for (int i = 0; cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			load_close();
			real_close(fd);
			rights = 1;
		}
		errno = saved;
	}
	/* Only a message that carried descriptors loses its control data:
	 * other ancillary data (credentials, PKTINFO, timestamps, queued
	 * errors) is not what this stack drops. */
	if (rights)
		mh->msg_controllen = 0;
	return 0;
}

/* peercred_reports_self: SO_PEERCRED names the caller itself. */
SPF_HOOK(peercred_reports_self, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 20)
{
	if (c->r == 0 && c->level == SOL_SOCKET && c->opt == SO_PEERCRED && on("peercred_reports_self"))
		((struct ucred *)c->val)->pid = getpid();
	return 0;
}

/* ---- names ---------------------------------------------------------------------- */

/* unix_connect_refuses_missing_path: ENOENT becomes ECONNREFUSED. */
SPF_HOOK(unix_connect_refuses_missing_path, SPF_OP(SPF_CONNECT), SPF_AFTER, 20)
{
	if (c->r < 0 && errno == ENOENT && on("unix_connect_refuses_missing_path") && is_unix(c->fd))
		errno = ECONNREFUSED;
	return 0;
}

/* abstract_name_makes_file: a socket file under the abstract name's rest. */
SPF_HOOK(abstract_name_makes_file, SPF_OP(SPF_BIND), SPF_AFTER, 20)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)c->to;
	size_t off = offsetof(struct sockaddr_un, sun_path);
	char path[sizeof(un->sun_path)];
	int saved = errno;

	if (c->r != 0 || !on("abstract_name_makes_file") || c->to->sa_family != AF_UNIX ||
	    c->tolen <= off + 1 || un->sun_path[0] != '\0')
		return 0;
	memcpy(path, un->sun_path + 1, c->tolen - off - 1);
	path[c->tolen - off - 1] = '\0';
	mknod(path, S_IFSOCK | 0755, 0);
	errno = saved;
	return 0;
}

/* At close(): unix_close_unlinks_path removes the socket file of a
 * pathname socket; abstract_name_lingers leaves another (leaked) socket
 * holding the abstract name the closed one had. */
SPF_HOOK(unix_close_names, SPF_OP(SPF_CLOSE), SPF_BEFORE, 20)
{
	struct sockaddr_un un;
	socklen_t len = sizeof(un);
	int fd = c->fd, saved = errno;

	if (!(on("unix_close_unlinks_path") || on("abstract_name_lingers")) || !is_unix(fd))
		return 0;
	load_getsockname();
	memset(&un, 0, sizeof(un));
	if (real_getsockname(fd, (struct sockaddr *)&un, &len) < 0 || un.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path) + 1) {
		errno = saved;
		return 0;
	}
	if (on("unix_close_unlinks_path") && un.sun_path[0] != '\0')
		unlink(un.sun_path);
	if (on("abstract_name_lingers") && un.sun_path[0] == '\0') {
		int holder = socket(AF_UNIX, spfault_sock_type(fd), 0);
		load_close();
		load_bind();
		real_close(fd);
		if (holder >= 0)
			real_bind(holder, (struct sockaddr *)&un, len);
		errno = saved;
		c->r = 0;
		return 1;
	}
	errno = saved;
	return 0;
}
