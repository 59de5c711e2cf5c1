/*
 * faults/udp.c - faults of UDP-* behaviors: datagram boundaries and
 * truncation, no flow control and no acknowledgement, destinations,
 * sources and connected UDP (part of libspfault.so; see spfault.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)
#define MAXFD 1024

FAULT(dgram_recv_merges,
      "UDP-BOUNDARY",
      "a datagram emulation over a byte stream that merges queued datagrams");
FAULT(dgram_drops_empty,
      "UDP-BOUNDARY,RECV-ZERO-LENGTH",
      "a datagram emulation over a byte stream that cannot carry an empty datagram: it reports 0 sent and delivers nothing");
FAULT(dgram_limited_to_mtu,
      "UDP-BOUNDARY",
      "a userspace stack without IP fragmentation (lwIP built without IP_FRAG) that refuses datagrams over a 1500-byte MTU with EMSGSIZE");
FAULT(dgram_no_trunc_flag,
      "UDP-TRUNCATE,RECV-ZERO-LENGTH",
      "a stack that truncates a datagram without setting MSG_TRUNC");
FAULT(dgram_recv_keeps_tail,
      "UDP-TRUNCATE,FLAG-TRUNC-UDP",
      "a datagram layer over a byte stream whose recv()/recvfrom()/read() keep a long datagram's tail for the next call");
FAULT(dgram_send_backpressure,
      "UDP-NO-FLOW-CONTROL",
      "a UDP emulation that blocks senders like a stream (EAGAIN when the peer is slow)");
FAULT(connected_dgram_backpressure,
      "UDP-NO-FLOW-CONTROL",
      "a UDP-over-TCP relay whose connected send()/write() wait for the receiver like a stream (blocks, or EAGAIN)");
FAULT(dgram_send_refused,
      "UDP-NO-ACK",
      "a UDP emulation that refuses sendto() when nobody listens, as if it waited for an ACK");
FAULT(unconnected_udp_reports_icmp,
      "UDP-NO-ACK",
      "a Windows-socket-backed layer (WSL1-like, WSAECONNRESET) whose next recvfrom()/recvmsg() on an unconnected socket fails after ICMP port unreachable");
FAULT(recvfrom_hides_source,
      "UDP-ONE-SOCKET-MANY-PEERS",
      "an LD_PRELOAD stack that does not fill in recvfrom()'s source address");
FAULT(recvmsg_drops_source,
      "UDP-ONE-SOCKET-MANY-PEERS",
      "an LD_PRELOAD stack that wraps recvfrom() but returns recvmsg() without msg_name (msg_namelen 0)");
FAULT(dgram_remembers_destination,
      "UDP-DESTINATION-EACH-SEND",
      "a stack that keeps sending to the first destination of an unconnected socket");
FAULT(unconnected_write_enotconn,
      "UDP-DESTINATION-EACH-SEND,STATE-UDP-DISCONNECT",
      "socket_wrapper-style UDP over AF_UNIX datagrams: send()/write() without a destination fail with ENOTCONN, not EDESTADDRREQ");
FAULT(udp_connect_noop,
      "UDP-CONNECTED",
      "a stack whose connect() on UDP registers nothing");
FAULT(connected_send_refused_at_once,
      "UDP-CONNECTED",
      "socket_wrapper-style UDP over AF_UNIX datagrams: a connected send() to a closed port fails at once with ECONNREFUSED");
FAULT(implicit_port_per_destination,
      "UDP-SENDTO-IMPLICIT-BIND",
      "a slirp-style user-mode network (symmetric NAT) that gives each new destination of an unbound socket its own source port");

REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, recvfrom, int, void *, size_t, int, struct sockaddr *, socklen_t *)
REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t)
REAL(int, bind, int, const struct sockaddr *, socklen_t)
REAL(int, close, int)
REAL(int, getpeername, int, struct sockaddr *, socklen_t *)
REAL(int, poll, struct pollfd *, nfds_t, int)
REAL(int, connect, int, const struct sockaddr *, socklen_t)

/* A UDP socket: the faults here model UDP stacks and leave AF_UNIX alone. */
static int is_dgram(int fd)
{
	int domain = spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN);
	return spfault_sock_type(fd) == SOCK_DGRAM && (domain == AF_INET || domain == AF_INET6);
}

static struct sockaddr_storage fake_peer[MAXFD];  /* udp_connect_noop */
static struct sockaddr_storage last_dest[MAXFD];  /* dgram_remembers_destination */
static struct sockaddr_storage first_src;         /* recvfrom_hides_source */
static int dgram_sends_since_recv;                /* dgram_send_backpressure */
static int connected_dgram_sends;                 /* connected_dgram_backpressure */
static char *dgram_tail[MAXFD];                   /* dgram_recv_keeps_tail */
static size_t dgram_tail_len[MAXFD];
static char icmp_pending[MAXFD];                  /* unconnected_udp_reports_icmp */
static struct sockaddr_storage nat_first[MAXFD];  /* implicit_port_per_destination */

SPF_HOOK(udp_forget, SPF_OP(SPF_CLOSE), SPF_BEFORE, 0)
{
	int fd = c->fd;

	if (fd < 0 || fd >= MAXFD)
		return 0;
	memset(&fake_peer[fd], 0, sizeof(fake_peer[fd]));
	memset(&last_dest[fd], 0, sizeof(last_dest[fd]));
	memset(&nat_first[fd], 0, sizeof(nat_first[fd]));
	icmp_pending[fd] = 0;
	free(dgram_tail[fd]);
	dgram_tail[fd] = NULL;
	return 0;
}

/* Is anybody bound at this address? (Can we bind it ourselves?) */
static int nobody_listens(const struct sockaddr *to, socklen_t len)
{
	int s = socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	load_bind();
	load_close();
	int free_port = s >= 0 && real_bind(s, to, len) == 0;
	if (s >= 0)
		real_close(s);
	return free_port;
}

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* ---- receiving ------------------------------------------------------------ */

/* Faults that answer a receive themselves. */
SPF_HOOK(udp_recv_answers, SPF_RECEIVING, SPF_BEFORE, 30)
{
	int fd = c->fd, named = c->op == SPF_RECVFROM || c->op == SPF_RECVMSG;

	if (fd < 0 || fd >= MAXFD ||
	    !(on("unconnected_udp_reports_icmp") || on("dgram_recv_keeps_tail")) || !is_dgram(fd))
		return 0;
	/* unconnected_udp_reports_icmp: the port unreachable an earlier
	 * sendto() provoked fails the next receive that names a source. */
	if (named && icmp_pending[fd] && !(c->flags & MSG_ERRQUEUE) &&
	    on("unconnected_udp_reports_icmp")) { /* the error queue is not a receive */
		icmp_pending[fd] = 0;
		errno = ECONNREFUSED;
		c->r = -1;
		return 1;
	}
	/* dgram_recv_keeps_tail: what did not fit is returned next time. */
	if (!c->buf || (c->flags & MSG_PEEK) || !on("dgram_recv_keeps_tail"))
		return 0;
	if (dgram_tail[fd]) {
		size_t k = dgram_tail_len[fd] < c->n ? dgram_tail_len[fd] : c->n;
		memcpy(c->buf, dgram_tail[fd], k);
		free(dgram_tail[fd]);
		dgram_tail[fd] = NULL;
		c->r = (ssize_t)k;
		return 1;
	}
	char whole[65536];
	load_recvfrom();
	ssize_t got = real_recvfrom(fd, whole, sizeof(whole), c->flags, c->addr, c->addrlen);
	if (got > (ssize_t)c->n && (dgram_tail[fd] = malloc((size_t)got - c->n)) != NULL) {
		dgram_tail_len[fd] = (size_t)got - c->n;
		memcpy(dgram_tail[fd], whole + c->n, dgram_tail_len[fd]);
		got = (ssize_t)c->n;
	}
	if (got > 0)
		memcpy(c->buf, whole, (size_t)got < c->n ? (size_t)got : c->n);
	c->r = got;
	return 1;
}

/* A receive lets the senders of the backpressure faults go on. */
SPF_HOOK(udp_note_recv, SPF_RECEIVING, SPF_AFTER, 10)
{
	if (is_dgram(c->fd))
		dgram_sends_since_recv = connected_dgram_sends = 0;
	return 0;
}

SPF_HOOK(udp_hide_source, SPF_OP(SPF_RECVFROM) | SPF_OP(SPF_RECVMSG), SPF_AFTER, 20)
{
	/* recvfrom_hides_source: every datagram seems to come from the first
	 * peer ever heard from. */
	if (c->op == SPF_RECVFROM && c->r >= 0 && c->addr && c->addrlen &&
	    on("recvfrom_hides_source") && is_dgram(c->fd)) {
		socklen_t len = *c->addrlen;
		if (first_src.ss_family == 0)
			memcpy(&first_src, c->addr, len < sizeof(first_src) ? len : sizeof(first_src));
		else
			memcpy(c->addr, &first_src, len);
	}
	/* recvmsg_drops_source: msg_name is never filled in. */
	if (c->op == SPF_RECVMSG && c->r >= 0 && c->msg->msg_name && on("recvmsg_drops_source") &&
	    is_dgram(c->fd))
		c->msg->msg_namelen = 0;
	return 0;
}

/* dgram_recv_merges: one receive returns several datagrams glued together. */
SPF_HOOK(dgram_recv_merges, SPF_OP(SPF_READ) | SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM),
	 SPF_AFTER, 40)
{
	if (c->r <= 0 || !on("dgram_recv_merges") || !is_dgram(c->fd))
		return 0;
	load_recv();
	while ((size_t)c->r < c->n) {
		ssize_t more = real_recv(c->fd, (char *)c->buf + c->r, c->n - (size_t)c->r, MSG_DONTWAIT);
		if (more <= 0)
			break;
		c->r += more;
	}
	return 0;
}

/* dgram_no_trunc_flag: truncation goes unreported. */
SPF_HOOK(dgram_no_trunc_flag, SPF_OP(SPF_RECVMSG), SPF_AFTER, 60)
{
	if (c->r >= 0 && on("dgram_no_trunc_flag") && is_dgram(c->fd))
		c->msg->msg_flags &= ~MSG_TRUNC;
	return 0;
}

/* ---- sending ---------------------------------------------------------------- */

static int dgram_dest(int fd, struct sockaddr_storage *to)
{
	if (fake_peer[fd].ss_family) {
		*to = fake_peer[fd];
		return 1;
	}
	if (on("dgram_remembers_destination") && last_dest[fd].ss_family) {
		*to = last_dest[fd];
		return 1;
	}
	return 0;
}

/* write(), send(), sendto() without an address. */
SPF_HOOK(udp_send_unaddressed, SPF_OP(SPF_WRITE) | SPF_OP(SPF_SEND) | SPF_OP(SPF_SENDTO),
	 SPF_BEFORE, 30)
{
	int fd = c->fd;
	struct sockaddr_storage to;

	if ((c->op == SPF_SENDTO && c->to) || fd < 0 || fd >= MAXFD || !is_dgram(fd))
		return 0;
	if (dgram_dest(fd, &to)) {
		load_sendto();
		c->r = real_sendto(fd, c->data, c->n, c->flags, (struct sockaddr *)&to, ss_len(&to));
		return 1;
	}
	if (c->n == 0 && on("dgram_drops_empty")) {
		c->r = 0;
		return 1;
	}
	if (c->n > 1472 && on("dgram_limited_to_mtu")) {
		errno = EMSGSIZE;
		c->r = -1;
		return 1;
	}
	/* unconnected_write_enotconn, connected_send_refused_at_once:
	 * AF_UNIX datagram semantics under a UDP socket. */
	if (on("unconnected_write_enotconn") || on("connected_send_refused_at_once")) {
		struct sockaddr_storage peer;
		socklen_t pl = sizeof(peer);
		load_getpeername();
		int saved = errno, connected = real_getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
		errno = saved;
		if (!connected && on("unconnected_write_enotconn")) {
			errno = ENOTCONN;
			c->r = -1;
			return 1;
		}
		if (connected && on("connected_send_refused_at_once") &&
		    nobody_listens((struct sockaddr *)&peer, pl)) {
			errno = ECONNREFUSED;
			c->r = -1;
			return 1;
		}
	}
	/* connected_dgram_backpressure: held back once the receiver is 32
	 * datagrams behind: a blocking socket waits, else EAGAIN. */
	if (on("connected_dgram_backpressure") && ++connected_dgram_sends > 32) {
		int fl = fcntl(fd, F_GETFL);
		if (!(c->flags & MSG_DONTWAIT) && fl >= 0 && !(fl & O_NONBLOCK)) {
			const char *w = getenv("SOCKPROBE_WAIT_MS");
			load_poll();
			real_poll(NULL, 0, 2 * (w && atoi(w) > 0 ? atoi(w) : 2000));
			errno = EINTR;
		} else {
			errno = EAGAIN;
		}
		c->r = -1;
		return 1;
	}
	return 0;
}

/* sendto() with an address. */
SPF_HOOK(udp_sendto, SPF_OP(SPF_SENDTO), SPF_BEFORE, 30)
{
	int fd = c->fd;
	const struct sockaddr *to = c->to;
	socklen_t len = c->tolen;

	if (!to || !is_dgram(fd))
		return 0;
	if (fd < MAXFD && len <= sizeof(last_dest[fd]))
		memcpy(&last_dest[fd], to, len);
	if (c->n == 0 && on("dgram_drops_empty")) {
		c->r = 0;
		return 1;
	}
	/* dgram_limited_to_mtu: no fragmentation, so nothing over the MTU
	 * less the IP and UDP headers. */
	if (c->n > 1472 && on("dgram_limited_to_mtu")) {
		errno = EMSGSIZE;
		c->r = -1;
		return 1;
	}
	int icmp = on("unconnected_udp_reports_icmp"), nat = on("implicit_port_per_destination");
	struct sockaddr_storage peer, dst;
	socklen_t pl = sizeof(peer);
	load_getpeername();
	int saved = errno, connected = (icmp || nat) &&
		real_getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
	errno = saved;
	memset(&dst, 0, sizeof(dst));
	memcpy(&dst, to, len < sizeof(dst) ? len : sizeof(dst));
	if (icmp && fd < MAXFD && !connected && nobody_listens(to, len))
		icmp_pending[fd] = 1;
	/* implicit_port_per_destination: a new destination of an implicitly
	 * bound socket leaves from a fresh port. */
	if (nat && fd < MAXFD && !connected && !spfault_explicitly_bound(fd)) {
		if (!nat_first[fd].ss_family) {
			nat_first[fd] = dst;
		} else if (!spfault_same_addr(&nat_first[fd], &dst)) {
			int s = socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			if (s < 0) {
				c->r = -1;
				return 1;
			}
			load_sendto();
			load_close();
			c->r = real_sendto(s, c->data, c->n, c->flags, to, len);
			real_close(s);
			return 1;
		}
	}
	/* dgram_send_refused: an acknowledging datagram service. */
	if (on("dgram_send_refused") && nobody_listens(to, len)) {
		errno = ECONNREFUSED;
		c->r = -1;
		return 1;
	}
	/* dgram_send_backpressure: the sender is held back once the receiver
	 * has fallen 32 datagrams behind. */
	if (on("dgram_send_backpressure") && ++dgram_sends_since_recv > 32) {
		errno = EAGAIN;
		c->r = -1;
		return 1;
	}
	return 0;
}

/* udp_connect_noop: connect() on UDP only remembers the address in user
 * space: no filtering, no ICMP errors. */
SPF_HOOK(udp_connect_noop, SPF_OP(SPF_CONNECT), SPF_BEFORE, 10)
{
	int fd = c->fd;

	if (on("udp_connect_noop") && is_dgram(fd) && fd < MAXFD && c->tolen <= sizeof(fake_peer[fd])) {
		/* A destination connect() refuses (a broadcast address without
		 * SO_BROADCAST) is still refused: only what it registers is
		 * dropped, undone with AF_UNSPEC. */
		struct sockaddr unspec = { .sa_family = AF_UNSPEC };
		int saved = errno;
		load_connect();
		c->r = real_connect(fd, c->to, c->tolen);
		if (c->r < 0)
			return 1;
		/* The implicit bind stays (the port connect() chose), only
		 * the peer goes: AF_UNSPEC drops both, so the port is bound
		 * again on the wildcard address. */
		struct sockaddr_storage me, now;
		socklen_t ml = sizeof(me), nl = sizeof(now);
		int had = getsockname(fd, (struct sockaddr *)&me, &ml) == 0;
		real_connect(fd, &unspec, sizeof(unspec));
		/* The address kept (an explicit bind's) or the wildcard, and
		 * the port connect() had. */
		if (had && getsockname(fd, (struct sockaddr *)&now, &nl) == 0 &&
		    now.ss_family == me.ss_family) {
			if (now.ss_family == AF_INET && !((struct sockaddr_in *)&now)->sin_port) {
				((struct sockaddr_in *)&now)->sin_port = ((struct sockaddr_in *)&me)->sin_port;
				load_bind();
				real_bind(fd, (struct sockaddr *)&now, nl);
			} else if (now.ss_family == AF_INET6 && !((struct sockaddr_in6 *)&now)->sin6_port) {
				((struct sockaddr_in6 *)&now)->sin6_port = ((struct sockaddr_in6 *)&me)->sin6_port;
				load_bind();
				real_bind(fd, (struct sockaddr *)&now, nl);
			}
		}
		errno = saved;
		memcpy(&fake_peer[fd], c->to, c->tolen);
		c->r = 0;
		return 1;
	}
	return 0;
}
