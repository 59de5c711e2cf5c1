/*
 * faults/mcast.c - faults of MCAST-* behaviors: broadcast and its
 * option, multicast delivery, TTL and membership (part of libspfault.so;
 * see spfault.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(broadcast_without_so_broadcast,
      "MCAST-BROADCAST-NEEDS-OPT",
      "a stack that never checks SO_BROADCAST (lwIP-style builds without "
      "IP_SOF_BROADCAST), so broadcasts are sent without the option");
FAULT(broadcast_connect_unchecked,
      "MCAST-BROADCAST-NEEDS-OPT",
      "a stack that checks SO_BROADCAST in sendto() but lets connect() to a "
      "broadcast address through without it");
FAULT(pktinfo_reports_local_address,
      "MCAST-BROADCAST-DELIVERED,MCAST-JOIN-DELIVERS,CMSG-PKTINFO[ipv4]",
      "a stack whose IP_PKTINFO reports the interface's address instead of the "
      "broadcast or group address the datagram was sent to");
FAULT(broadcast_dropped,
      "MCAST-BROADCAST-DELIVERED",
      "a user-mode network (slirp-like) that accepts broadcasts and delivers none");
FAULT(multicast_dropped,
      "MCAST-JOIN-DELIVERS",
      "a user-mode network (slirp-like) that accepts multicast sends and delivers "
      "nothing to the group's members");
FAULT(multicast_ttl_as_unicast,
      "MCAST-TTL",
      "a stack that sends multicast with the unicast TTL (IP_TTL, 64) instead of "
      "IP_MULTICAST_TTL");
FAULT(multicast_ttl_reads_ip_ttl,
      "MCAST-TTL",
      "an emulator that answers IP_MULTICAST_TTL with IP_TTL's value");
FAULT(multicast_all_ignored,
      "MCAST-NONMEMBER",
      "a stack that accepts IP_MULTICAST_ALL=0 but still hands every group "
      "datagram to each socket bound to the port");
FAULT(drop_membership_ignored,
      "MCAST-NONMEMBER",
      "a stack whose IP_DROP_MEMBERSHIP succeeds but leaves the group joined");

REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t)

/* Which IPv4 faults apply to a datagram to `to`: 'b' broadcast (lo's or
 * the limited one), 'm' multicast, 0 neither. */
static int ipv4_dest_kind(const struct sockaddr *to, socklen_t len)
{
	if (!to || to->sa_family != AF_INET || len < sizeof(struct sockaddr_in))
		return 0;
	uint32_t a = ntohl(((const struct sockaddr_in *)to)->sin_addr.s_addr);
	if (a == 0xffffffffu || a == 0x7fffffffu)
		return 'b';
	return (a >> 28) == 0xe ? 'm' : 0;
}

/* sendto() of a datagram to a broadcast or group address. */
SPF_HOOK(mcast_sendto, SPF_OP(SPF_SENDTO), SPF_BEFORE, 35)
{
	int fd = c->fd, kind = ipv4_dest_kind(c->to, c->tolen), v = 0;

	if (!kind || spfault_sock_type(fd) != SOCK_DGRAM)
		return 0;
	/* Dropped once sent: a broadcast the stack refuses (no SO_BROADCAST)
	 * is still refused. */
	if ((kind == 'b' && on("broadcast_dropped") && spfault_sockopt_int(fd, SOL_SOCKET, SO_BROADCAST)) ||
	    (kind == 'm' && on("multicast_dropped"))) {
		c->r = (ssize_t)c->n;
		return 1;
	}
	load_sendto();
	/* broadcast_without_so_broadcast: sent as if the option were set. */
	if (kind == 'b' && on("broadcast_without_so_broadcast") &&
	    !spfault_sockopt_int(fd, SOL_SOCKET, SO_BROADCAST)) {
		int one = 1, saved;
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
		c->r = real_sendto(fd, c->data, c->n, c->flags, c->to, c->tolen);
		saved = errno;
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, sizeof(v));
		errno = saved;
		return 1;
	}
	/* multicast_ttl_as_unicast: sent with the unicast TTL. */
	if (kind == 'm' && on("multicast_ttl_as_unicast")) {
		int ttl = 64, saved;
		v = spfault_sockopt_int(fd, IPPROTO_IP, IP_MULTICAST_TTL);
		setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
		c->r = real_sendto(fd, c->data, c->n, c->flags, c->to, c->tolen);
		saved = errno;
		setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &v, sizeof(v));
		errno = saved;
		return 1;
	}
	return 0;
}

/* broadcast_connect_unchecked: connect() to a broadcast address as if
 * SO_BROADCAST were set (and restored after the call). */
static __thread int broadcast_was = -1;

SPF_HOOK(broadcast_connect_set, SPF_OP(SPF_CONNECT), SPF_BEFORE, 20)
{
	int one = 1;

	if (!on("broadcast_connect_unchecked") || spfault_sock_type(c->fd) != SOCK_DGRAM ||
	    ipv4_dest_kind(c->to, c->tolen) != 'b')
		return 0;
	broadcast_was = spfault_sockopt_int(c->fd, SOL_SOCKET, SO_BROADCAST);
	setsockopt(c->fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
	return 0;
}

SPF_HOOK(broadcast_connect_restore, SPF_OP(SPF_CONNECT), SPF_AFTER, 15)
{
	if (broadcast_was >= 0) {
		int saved = errno;
		setsockopt(c->fd, SOL_SOCKET, SO_BROADCAST, &broadcast_was, sizeof(broadcast_was));
		broadcast_was = -1;
		errno = saved;
	}
	return 0;
}

/* pktinfo_reports_local_address: IP_PKTINFO's destination becomes
 * 127.0.0.1 (the interface address). */
SPF_HOOK(pktinfo_reports_local_address, SPF_OP(SPF_RECVMSG), SPF_AFTER, 63)
{
	struct msghdr *mh = c->msg;

	if (c->r < 0 || !on("pktinfo_reports_local_address") || !mh->msg_controllen)
		return 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			pi.ipi_addr.s_addr = htonl(INADDR_LOOPBACK);
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		}
	}
	return 0;
}

/* multicast_ttl_reads_ip_ttl: IP_MULTICAST_TTL answers with IP_TTL. */
SPF_HOOK(multicast_ttl_reads_ip_ttl, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 10)
{
	if (c->r == 0 && c->level == IPPROTO_IP && c->opt == IP_MULTICAST_TTL &&
	    on("multicast_ttl_reads_ip_ttl") && *c->vallen >= sizeof(int))
		*(int *)c->val = 64;
	return 0;
}

/* multicast_all_ignored, drop_membership_ignored: the option is reported
 * as set and nothing changes. */
SPF_HOOK(membership_ignored, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 10)
{
	if (c->level == IPPROTO_IP &&
	    ((c->opt == IP_MULTICAST_ALL && on("multicast_all_ignored")) ||
	     (c->opt == IP_DROP_MEMBERSHIP && on("drop_membership_ignored")))) {
		c->r = 0;
		return 1;
	}
	return 0;
}
