/*
 * state.c - faults for catalogue 3's STATE-*, UNIXX-*, ADDR-* and RECV-*
 * behaviors (connection state errors, Unix domain specifics, IPv6 scope
 * and mapped addresses, zero-length and peeked reads). Part of
 * libspfault.so; see spfault.h for the conventions.
 *
 * This file interposes nothing itself: it joins connect, bind, shutdown,
 * read/recv/recvfrom/recvmsg, write/send, sendto, getsockopt, accept,
 * accept4 and socket (faults/core.c) through hooks. Every hook is
 * transparent while no fault of this file is on, and a check it makes
 * never changes errno. Calls the faults make themselves go to the
 * kernel directly (syscall()), past every interposer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(connect_to_connected_succeeds,
      "STATE-CONNECT-AGAIN",
      "a socket layer that treats connect() on a connected TCP socket as done (returns 0) "
      "instead of failing with EISCONN, as some emulation layers do for retry loops");
/* INTR-CONNECT's Must reads the interrupted attempt's survival through
 * the same EALREADY, so its items fail here too. */
FAULT(pending_connect_says_inprogress,
      "STATE-CONNECT-AGAIN,INTR-CONNECT",
      "a stack that answers every connect() on a pending non-blocking socket with "
      "EINPROGRESS again instead of EALREADY");
FAULT(refused_connect_keeps_so_error,
      "STATE-RECONNECT",
      "a stack that leaves ECONNREFUSED pending in SO_ERROR although the blocking connect() "
      "already returned it (libctru left SO_ERROR set)");
FAULT(bind_twice_succeeds,
      "STATE-BIND-TWICE",
      "a stack that lets bind() succeed on a socket already bound (NuttX allowed a second "
      "bind), keeping the first address");
FAULT(shutdown_unconnected_succeeds,
      "STATE-SHUTDOWN-UNCONNECTED",
      "Windows-style shutdown(): 0 on a socket that was never connected instead of ENOTCONN");
FAULT(listener_reads_eof,
      "STATE-LISTENER-IO",
      "a stack that answers a read on a listening socket with 0 (end of file) instead of "
      "ENOTCONN");
FAULT(unspec_connect_unsupported,
      "STATE-UDP-DISCONNECT",
      "IBM i / macOS: connect() with AF_UNSPEC fails (EAFNOSUPPORT) and the UDP association "
      "stays");
FAULT(so_protocol_as_given,
      "UNIXX-OPTIONS",
      "an emulator that stores socket()'s protocol argument and reports it for SO_PROTOCOL: "
      "0 for TCP and UDP sockets made with protocol 0 and for accepted ones");
FAULT(autobind_name_per_process,
      "UNIXX-AUTOBIND",
      "an emulator that derives the autobind name from the process id alone, so a second "
      "socket of the process cannot autobind (EADDRINUSE)");
FAULT(unix_dgram_full_drops,
      "UNIXX-DGRAM-QLEN",
      "an AF_UNIX datagram emulation without flow control: a send to a full receive queue "
      "reports success and the datagram is dropped, as UDP would");
FAULT(unix_connect_einprogress,
      "UNIXX-CONNECT-EAGAIN",
      "a stack whose non-blocking AF_UNIX connect to a full backlog fails with EINPROGRESS "
      "(the TCP answer) instead of EAGAIN");
FAULT(linklocal_scope_guessed,
      "ADDR-V6-LINKLOCAL-SCOPE",
      "a stack that binds a link-local address without a scope id to the first interface "
      "that has it, instead of failing with EINVAL");
FAULT(accept_drops_scope_id,
      "ADDR-V6-LINKLOCAL-SCOPE",
      "a socket layer that drops sin6_scope_id from accept()'s address (gRPC Swift lost the "
      "scope id)");
FAULT(mapped_sendto_einval,
      "ADDR-V6-MAPPED-CONNECT",
      "FreeBSD-style IPv6 UDP: sendto() to a v4-mapped address fails with EINVAL although "
      "IPV6_V6ONLY is 0");
FAULT(zero_length_recv_peeks,
      "RECV-ZERO-LENGTH",
      "a stack that returns early for a receive into no buffer and leaves the datagram queued "
      "instead of consuming it");
FAULT(unix_peek_unsupported,
      "RECV-PEEK-ACROSS-WRITES",
      "Mystikos / early Gramine: MSG_PEEK on an AF_UNIX stream socket fails with EOPNOTSUPP");

/* ---- what a socket is (errno kept) ------------------------------------------ */

/* Bound: an inet socket with a port, a unix socket with a name. */
static int is_bound(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	memset(&ss, 0, sizeof(ss));
	int r = (int)SPF_SYSCALL(SYS_getsockname, fd, &ss, &len);
	errno = saved;
	if (r != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ((struct sockaddr_in *)&ss)->sin_port != 0;
	if (ss.ss_family == AF_INET6)
		return ((struct sockaddr_in6 *)&ss)->sin6_port != 0;
	if (ss.ss_family == AF_UNIX)
		return len > sizeof(sa_family_t);
	return 0;
}

static int is_connected(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int saved = errno;
	int r = (int)SPF_SYSCALL(SYS_getpeername, fd, &ss, &len);
	errno = saved;
	return r == 0;
}

static int fail_with(int e, struct spf_call *c)
{
	errno = e;
	c->r = -1;
	return 1;
}

#define MAXFD 4096
static unsigned char refused[MAXFD];     /* ECONNREFUSED to report once more */
static unsigned char protocol_arg[MAXFD]; /* socket()'s protocol argument + 1 */

/* ---- connect ----------------------------------------------------------------- */

/* Before every other family's connect faults, as before the move. */
SPF_HOOK(state_connect_pre, SPF_OP(SPF_CONNECT), SPF_BEFORE, 5)
{
	int fd = c->fd;
	const struct sockaddr *a = c->to;
	int type = spfault_sock_type(fd);
	if (on("unspec_connect_unsupported") && a && a->sa_family == AF_UNSPEC &&
	    type == SOCK_DGRAM)
		return fail_with(EAFNOSUPPORT, c);
	if (on("connect_to_connected_succeeds") && type == SOCK_STREAM && spfault_family(fd) != AF_UNIX &&
	    is_connected(fd)) {
		c->r = 0;
		return 1;
	}
	return 0;
}

/* After conn.c's errors, before unix.c's, as before the move. */
SPF_HOOK(state_connect_post, SPF_OP(SPF_CONNECT), SPF_AFTER, 12)
{
	int fd = c->fd;
	if (c->r == 0 || fd < 0)
		return 0;
	int e = errno, type = spfault_sock_type(fd);
	if (e == EALREADY && on("pending_connect_says_inprogress") && type == SOCK_STREAM)
		e = EINPROGRESS;
	if (e == EAGAIN && on("unix_connect_einprogress") && type == SOCK_STREAM &&
	    spfault_family(fd) == AF_UNIX)
		e = EINPROGRESS;
	if (e == ECONNREFUSED && on("refused_connect_keeps_so_error") && fd < MAXFD) {
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && !(fl & O_NONBLOCK))
			refused[fd] = 1;
	}
	errno = e;
	return 0;
}

/* ---- bind -------------------------------------------------------------------- */

static int is_linklocal(const struct sockaddr *a, socklen_t len)
{
	const struct sockaddr_in6 *s = (const void *)a;
	return a && len >= sizeof(*s) && a->sa_family == AF_INET6 &&
	       IN6_IS_ADDR_LINKLOCAL(&s->sin6_addr);
}

/* After tick.c's bind, as before the move. */
SPF_HOOK(state_bind_pre, SPF_OP(SPF_BIND), SPF_BEFORE, 15)
{
	int fd = c->fd;
	const struct sockaddr *a = c->to;
	socklen_t len = c->tolen;
	if (on("autobind_name_per_process") && a && a->sa_family == AF_UNIX &&
	    len == sizeof(sa_family_t)) {
		struct sockaddr_un un = { .sun_family = AF_UNIX };
		static const char hex[] = "0123456789abcdef";
		unsigned id = (unsigned)getpid();
		for (int i = 5; i >= 1; i--, id >>= 4)
			un.sun_path[i] = hex[id & 15];
		c->r = SPF_SYSCALL(SYS_bind, fd, &un, offsetof(struct sockaddr_un, sun_path) + 6);
		return 1;
	}
	if (on("bind_twice_succeeds") && spfault_sock_type(fd) && is_bound(fd)) {
		c->r = 0;
		return 1;
	}
	if (on("linklocal_scope_guessed") && is_linklocal(a, len) &&
	    ((const struct sockaddr_in6 *)a)->sin6_scope_id == 0) {
		struct sockaddr_in6 fixed;
		memcpy(&fixed, a, sizeof(fixed));
		int saved = errno;
		fixed.sin6_scope_id = if_nametoindex("lo");
		errno = saved;
		c->r = SPF_SYSCALL(SYS_bind, fd, &fixed, sizeof(fixed));
		return 1;
	}
	return 0;
}

/* ---- shutdown ------------------------------------------------------------------ */

SPF_HOOK(shutdown_unconnected_succeeds, SPF_OP(SPF_SHUTDOWN), SPF_AFTER, 10)
{
	if (c->r < 0 && errno == ENOTCONN && on("shutdown_unconnected_succeeds"))
		c->r = 0;
	return 0;
}

/* ---- receiving ----------------------------------------------------------------- */

/* After udp.c's answers, as before the move. read() with a flag to add
 * is made here as recv() with it. */
SPF_HOOK(state_recv_pre, SPF_RECEIVING, SPF_BEFORE, 35)
{
	int fd = c->fd, type;
	size_t room = c->n;
	int rf = 0, *flags = c->op == SPF_READ ? &rf : &c->flags;
	if (!on("listener_reads_eof") && !on("zero_length_recv_peeks") &&
	    !on("unix_peek_unsupported"))
		return 0;
	type = spfault_sock_type(fd);
	if (!type)
		return 0;
	if (on("listener_reads_eof") && type == SOCK_STREAM &&
	    spfault_sockopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN)) {
		c->r = 0;
		return 1;
	}
	if (on("zero_length_recv_peeks") && room == 0 && type == SOCK_DGRAM)
		*flags |= MSG_PEEK;
	if (on("unix_peek_unsupported") && (*flags & MSG_PEEK) && type == SOCK_STREAM &&
	    spfault_family(fd) == AF_UNIX) {
		errno = EOPNOTSUPP;
		c->r = -1;
		return 1;
	}
	if (rf) {
		c->r = recv(fd, c->buf, c->n, rf);
		return 1;
	}
	return 0;
}

/* ---- sending -------------------------------------------------------------------- */

SPF_HOOK(unix_dgram_full_drops, SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO),
	 SPF_AFTER, 80)
{
	int fd = c->fd;
	if (c->op == SPF_SENDTO && c->to)
		return 0;
	if (c->r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && on("unix_dgram_full_drops") &&
	    spfault_sock_type(fd) == SOCK_DGRAM && spfault_family(fd) == AF_UNIX)
		c->r = (ssize_t)c->n;
	return 0;
}

/* Before tick.c's sendto, as before the move. */
SPF_HOOK(mapped_sendto_einval, SPF_OP(SPF_SENDTO), SPF_BEFORE, 8)
{
	const struct sockaddr *to = c->to;
	socklen_t len = c->tolen;
	if (on("mapped_sendto_einval") && to && len >= sizeof(struct sockaddr_in6) &&
	    to->sa_family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)to)->sin6_addr)) {
		errno = EINVAL;
		c->r = -1;
		return 1;
	}
	return 0;
}

/* ---- options and names ----------------------------------------------------------- */

/* After opt.c's and listen.c's, as before the move. */
SPF_HOOK(state_getsockopt_post, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 34)
{
	int fd = c->fd, level = c->level, opt = c->opt;
	void *val = c->val;
	socklen_t *len = c->vallen;
	if (c->r != 0 || level != SOL_SOCKET || !val || !len || *len < sizeof(int))
		return 0;
	if (opt == SO_ERROR && fd >= 0 && fd < MAXFD && refused[fd]) {
		refused[fd] = 0;
		if (*(int *)val == 0)
			*(int *)val = ECONNREFUSED;
	}
	if (opt == SO_PROTOCOL && on("so_protocol_as_given")) {
		int fam = spfault_family(fd);
		if ((fam == AF_INET || fam == AF_INET6) && fd < MAXFD && protocol_arg[fd] <= 1)
			*(int *)val = 0;
	}
	return 0;
}

SPF_HOOK(state_accept_post, SPF_OP(SPF_ACCEPT), SPF_AFTER, 21)
{
	int fd = (int)c->r;
	struct sockaddr *a = c->addr;
	socklen_t *len = c->addrlen;
	if (fd >= 0 && a && len && *len >= sizeof(struct sockaddr_in6) &&
	    a->sa_family == AF_INET6 && on("accept_drops_scope_id"))
		((struct sockaddr_in6 *)a)->sin6_scope_id = 0;
	if (fd >= 0 && fd < MAXFD)
		refused[fd] = protocol_arg[fd] = 0;
	return 0;
}

/* A new socket from socket(): its protocol argument; a reused descriptor
 * number forgets what a fault noted about it. */
SPF_HOOK(state_socket, SPF_OP(SPF_SOCKET), SPF_AFTER, 10)
{
	int fd = (int)c->r, protocol = c->protocol;
	if (fd >= 0 && fd < MAXFD) {
		refused[fd] = 0;
		protocol_arg[fd] = (unsigned char)(protocol >= 0 && protocol < 255 ? protocol + 1 : 255);
	}
	return 0;
}
