/*
 * addr.c - IPv6 address details (catalogue part 3, "IPv6 details"; ipv6(7),
 * bind(2), connect(2)).
 *
 *  1. ADDR-V6-LINKLOCAL-SCOPE  with fe80::1/64 on lo (the item's own network
 *                              namespace): bind() to fe80::1 with scope id 0
 *                              is EINVAL (TCP and UDP); with lo's index it
 *                              binds and getsockname() shows it; a client
 *                              connecting with the scope id is accepted, and
 *                              accept() names it with the same scope id.
 *  2. ADDR-V6-MAPPED-CONNECT   an AF_INET6 socket with IPV6_V6ONLY 0 connects
 *                              to ::ffff:127.0.0.1 and an AF_INET listener
 *                              accepts it; names on both sides agree (mapped
 *                              on the client, AF_INET on the server); data
 *                              flows; with IPV6_V6ONLY 1 the connect fails;
 *                              UDP sendto() a mapped address reaches an
 *                              AF_INET socket; IPV6_V6ONLY reads back what
 *                              was set; Linux: it cannot change after bind
 *                              (EINVAL) and the socket still takes IPv4.
 *
 * The link-local address is added by rtnetlink (RTM_NEWADDR, IFA_F_NODAD, as
 * `ip -6 addr add fe80::1/64 dev lo nodad`) inside a network namespace of
 * the item's own (sp-isolate's, or one made here); where it cannot be added
 * the ID is reported unsupported with the reason.
 *
 * Platform-defined (recorded): bind with a scope id naming no interface;
 * connect and UDP sendto to fe80::1 with scope id 0; the default of
 * IPV6_V6ONLY; the errno of the V6ONLY connect to a mapped address;
 * IPV6_V6ONLY on a UDP socket bound implicitly by connect().
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_ns.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>

/* rtnetlink's RTM_NEWADDR request, written out here (the kernel ABI) so the
 * probe builds where no kernel headers are installed (musl). */
struct nl_hdr { uint32_t len; uint16_t type, flags; uint32_t seq, pid; };
struct nl_err { int error; struct nl_hdr msg; };
struct nl_ifaddr { uint8_t family, prefixlen, flags, scope; uint32_t index; };
struct nl_attr { uint16_t len, type; };
struct nl_addr { sa_family_t family; unsigned short pad; uint32_t pid, groups; };
enum {
	NL_ROUTE = 0, NL_NEWADDR = 20, NL_ERROR = 2,
	NL_REQUEST = 0x1, NL_ACK = 0x4, NL_EXCL = 0x200, NL_CREATE = 0x400,
	NL_IFA_ADDRESS = 1, NL_IFA_LOCAL = 2, NL_IFA_NODAD = 0x02, NL_SCOPE_LINK = 253,
};

/* ---- 1. ADDR-V6-LINKLOCAL-SCOPE ---------------------------------------------- */

/* Add fe80::1/64 to lo without duplicate address detection; 0 or -errno. */
static int add_linklocal(unsigned ifindex)
{
	struct {
		struct nl_hdr nh;
		struct nl_ifaddr ifa;
		struct nl_attr local;
		unsigned char local_addr[16];
		struct nl_attr address;
		unsigned char address_addr[16];
	} req;
	memset(&req, 0, sizeof(req));
	req.nh.len = sizeof(req);
	req.nh.type = NL_NEWADDR;
	req.nh.flags = NL_REQUEST | NL_ACK | NL_CREATE | NL_EXCL;
	req.nh.seq = 1;
	req.ifa.family = AF_INET6;
	req.ifa.prefixlen = 64;
	req.ifa.flags = NL_IFA_NODAD;
	req.ifa.scope = NL_SCOPE_LINK;
	req.ifa.index = ifindex;
	req.local.type = NL_IFA_LOCAL;
	req.local.len = sizeof(req.local) + 16;
	inet_pton(AF_INET6, "fe80::1", req.local_addr);
	req.address.type = NL_IFA_ADDRESS;
	req.address.len = sizeof(req.address) + 16;
	inet_pton(AF_INET6, "fe80::1", req.address_addr);

	int nl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NL_ROUTE);
	if (nl < 0)
		return -errno;
	struct nl_addr kernel = { .family = AF_NETLINK };
	if (sendto(nl, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
		int e = errno;
		close(nl);
		return -e;
	}
	union { struct nl_hdr h; char buf[512]; } ack;
	if (!(sp_poll(nl, POLLIN, sp_wait_ms()) & POLLIN)) {
		close(nl);
		return -ETIMEDOUT;
	}
	ssize_t n = recv(nl, &ack, sizeof(ack), 0);
	close(nl);
	if (n < (ssize_t)(sizeof(struct nl_hdr) + sizeof(struct nl_err)) || ack.h.type != NL_ERROR)
		return -EPROTO;
	struct nl_err err;
	memcpy(&err, ack.buf + sizeof(struct nl_hdr), sizeof(err));
	return err.error;
}

static socklen_t linklocal(struct sockaddr_in6 *a, uint16_t port, uint32_t scope)
{
	memset(a, 0, sizeof(*a));
	a->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "fe80::1", &a->sin6_addr);
	a->sin6_port = htons(port);
	a->sin6_scope_id = scope;
	return sizeof(*a);
}

static int v6_socket(int type)
{
	return (int)ASSERT_SYS(socket(AF_INET6, type, 0));
}

/* The new address is in use: a TCP connect() to fe80::1%lo on a port
 * nobody listens on is refused by the local stack (not ENETUNREACH, which
 * it is until the kernel has installed the address's routes, just after
 * RTM_NEWADDR returns). */
static int linklocal_routable(void *arg)
{
	unsigned lo = *(unsigned *)arg;
	struct sockaddr_in6 a;
	memset(&a, 0, sizeof(a));
	a.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "fe80::1", &a.sin6_addr);
	a.sin6_port = htons(9);
	a.sin6_scope_id = lo;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
	socklen_t el = sizeof(err);
	if (fd < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		err = errno;
		if (err == EINPROGRESS && sp_poll(fd, POLLOUT, 50))
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	}
	close(fd);
	return err == ECONNREFUSED;
}

SP_TEST(linklocal_address_needs_a_scope_id, "ADDR-V6-LINKLOCAL-SCOPE", SP_IPV6)
{
	(void)ctx;
	const char *netns = getenv("SOCKPROBE_NETNS");
	char why[256];
	if (!netns || strcmp(netns, "private") != 0) {
		if (sp_ns_enter(CLONE_NEWNET, why, sizeof(why)) != 0)
			UNSUPPORTED("a link-local address on lo: no network namespace of this item's "
				    "own to add it in (%s)", why);
	}
	unsigned lo = if_nametoindex("lo");
	REQUIRE(lo != 0, "the index of lo (if_nametoindex: %s)", sp_errno_name(errno));
	int e = add_linklocal(lo);
	if (e != 0 && e != -EEXIST)
		UNSUPPORTED("a link-local address on lo (RTM_NEWADDR fe80::1/64 nodad: %s)",
			    sp_errno_name(-e));
	REQUIRE(sp_wait_until(linklocal_routable, &lo, sp_wait_ms()), "fe80::1 on lo becomes "
		"routable within %d ms of being added", sp_wait_ms());

	struct sockaddr_in6 a, got;
	socklen_t len, gl;
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM };
	for (int i = 0; i < 2; i++) {
		int fd = v6_socket(types[i]);
		len = linklocal(&a, 0, 0);
		errno = 0;
		int r = bind(fd, (struct sockaddr *)&a, len);
		if (r != -1 || errno != EINVAL)
			FAIL("%s bind() to fe80::1 with sin6_scope_id 0 returned %d (%s), expected "
			     "EINVAL", i ? "UDP" : "TCP", r, r < 0 ? sp_errno_name(errno) : "success");
		close(fd);
	}
	/* Records: no such interface; connect and sendto without a scope. */
	int fd = v6_socket(SOCK_STREAM);
	len = linklocal(&a, 0, 9999);
	errno = 0;
	int r = bind(fd, (struct sockaddr *)&a, len);
	RECORD("bind_scope_no_interface", "%s", r == 0 ? "succeeds" : sp_errno_name(errno));
	close(fd);

	/* With lo's index: bound, named with it, connectable, accepted with it. */
	int l = v6_socket(SOCK_STREAM);
	len = linklocal(&a, 0, lo);
	if (bind(l, (struct sockaddr *)&a, len) < 0)
		FAIL("bind() to fe80::1 with sin6_scope_id %u (lo) failed with %s, expected success",
		     lo, sp_errno_name(errno));
	gl = sizeof(got);
	ASSERT_SYS(getsockname(l, (struct sockaddr *)&got, &gl));
	ASSERT_EQ(lo, got.sin6_scope_id);
	char seen[INET6_ADDRSTRLEN] = "?";
	inet_ntop(AF_INET6, &got.sin6_addr, seen, sizeof(seen));
	ASSERT_TRUE(!memcmp(&got.sin6_addr, &a.sin6_addr, 16),
		    "getsockname() after bind() to fe80::1: expected fe80::1, observed %s", seen);
	uint16_t port = ntohs(got.sin6_port);
	ASSERT_SYS(listen(l, 4));

	fd = v6_socket(SOCK_STREAM);
	len = linklocal(&a, port, 0);
	errno = 0;
	r = connect(fd, (struct sockaddr *)&a, len);
	RECORD("connect_scope_zero", "%s", r == 0 ? "succeeds" : sp_errno_name(errno));
	close(fd);
	if (r == 0 && sp_poll(l, POLLIN, 0))
		close((int)ASSERT_SYS(accept(l, NULL, NULL)));
	int u = v6_socket(SOCK_DGRAM);
	errno = 0;
	ssize_t w = sendto(u, "x", 1, 0, (struct sockaddr *)&a, len);
	RECORD("udp_sendto_scope_zero", "%s", w == 1 ? "succeeds" : sp_errno_name(errno));
	close(u);

	int c = v6_socket(SOCK_STREAM);
	len = linklocal(&a, port, lo);
	if (BOUNDED(connect(c, (struct sockaddr *)&a, len)) < 0) {
		if (sp_bound_expired() || errno == ETIMEDOUT)
			BROKEN_NEEDS("TCP-HANDSHAKE-BEFORE-ACCEPT", "connect() to fe80::1%%lo did not "
				     "complete before accept() (%s)", sp_bound_expired() ?
				     "still blocked at the bound" : sp_errno_name(errno));
		FAIL("connect() to fe80::1 with sin6_scope_id %u (lo) failed with %s, expected "
		     "success", lo, sp_errno_name(errno));
	}
	sp_need_connection_queued(l, sp_wait_ms()); /* TCP-HANDSHAKE-BEFORE-ACCEPT's, a mechanism */
	struct sockaddr_in6 from, mine;
	socklen_t fl = sizeof(from), ml = sizeof(mine);
	memset(&from, 0, sizeof(from));
	int s = (int)ASSERT_SYS(accept(l, (struct sockaddr *)&from, &fl));
	ASSERT_SYS(getsockname(c, (struct sockaddr *)&mine, &ml));
	ASSERT_EQ(AF_INET6, from.sin6_family);
	/* The port accept() names is CONN-NAMES-AGREE's Must: recorded. */
	RECORD("accepted_port_is_the_clients", "%s",
	       ntohs(mine.sin6_port) == ntohs(from.sin6_port) ? "yes" : "no");
	if (from.sin6_scope_id != lo)
		FAIL("accept() names the link-local client with sin6_scope_id %u, expected %u (lo)",
		     from.sin6_scope_id, lo);
	char buf[4];
	ASSERT_EQ(2, send(c, "ll", 2, MSG_NOSIGNAL));
	EXPECT_EVENTS(s, POLLIN, POLLIN, "data over the link-local address");
	ASSERT_EQ(2, recv(s, buf, sizeof(buf), 0));
	close(s);
	close(c);
	close(l);
}

/* ---- 2. ADDR-V6-MAPPED-CONNECT ------------------------------------------------- */

static socklen_t mapped(struct sockaddr_in6 *a, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	a->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &a->sin6_addr);
	a->sin6_port = htons(port);
	return sizeof(*a);
}

static int is_mapped_loopback(const struct sockaddr_in6 *a)
{
	struct sockaddr_in6 m;
	mapped(&m, 0);
	return a->sin6_family == AF_INET6 && !memcmp(&a->sin6_addr, &m.sin6_addr, 16);
}

static int v4_bound(int type, uint16_t port)
{
	int fd = (int)ASSERT_SYS(socket(AF_INET, type, 0));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	ASSERT_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

static int v6only(int fd)
{
	int v = -1;
	socklen_t len = sizeof(v);
	ASSERT_SYS(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &len));
	return v;
}

static void set_v6only(int fd, int on)
{
	ASSERT_SYS(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)));
}

SP_TEST(v6_socket_connects_to_v4_through_mapped_address, "ADDR-V6-MAPPED-CONNECT", SP_IPV6)
{
	(void)ctx;
	int l = v4_bound(SOCK_STREAM, 0);
	uint16_t lport = sp_local_port(l);
	ASSERT_SYS(listen(l, 4));

	int c = v6_socket(SOCK_STREAM), dflt = -1;
	socklen_t dl = sizeof(dflt);
	if (getsockopt(c, IPPROTO_IPV6, IPV6_V6ONLY, &dflt, &dl) < 0)
		RECORD("v6only_default", "getsockopt fails with %s", sp_errno_name(errno));
	else
		RECORD("v6only_default", "%d", dflt);
	/* Before bind it reads back what was set: 1, then 0. */
	set_v6only(c, 1);
	ASSERT_EQ(1, v6only(c));
	set_v6only(c, 0);
	ASSERT_EQ(0, v6only(c));

	struct sockaddr_in6 to, name;
	socklen_t tl = mapped(&to, lport), nl;
	if (connect(c, (struct sockaddr *)&to, tl) < 0)
		FAIL("connect() of an AF_INET6 socket (IPV6_V6ONLY 0) to ::ffff:127.0.0.1 failed "
		     "with %s, expected success", sp_errno_name(errno));
	sp_need_connection_queued(l, sp_wait_ms()); /* TCP-HANDSHAKE-BEFORE-ACCEPT's, a mechanism */
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	int s = (int)ASSERT_SYS(accept(l, (struct sockaddr *)&from, &fl));
	nl = sizeof(name);
	ASSERT_SYS(getsockname(c, (struct sockaddr *)&name, &nl));
	ASSERT_TRUE(is_mapped_loopback(&name), "the client's getsockname() is ::ffff:127.0.0.1 "
		    "(AF_INET6; family %d)", name.sin6_family);
	uint16_t cport = ntohs(name.sin6_port);
	/* The port connect() bound implicitly is TCP-CONNECT-IMPLICIT-BIND's
	 * Must, the mechanism for comparing it with the AF_INET side's view. */
	if (cport == 0)
		BROKEN_NEEDS("TCP-CONNECT-IMPLICIT-BIND", "the connected client's getsockname() "
			     "gives port 0");
	nl = sizeof(name);
	ASSERT_SYS(getpeername(c, (struct sockaddr *)&name, &nl));
	ASSERT_TRUE(is_mapped_loopback(&name), "the client's getpeername() is ::ffff:127.0.0.1 "
		    "(AF_INET6; family %d)", name.sin6_family);
	ASSERT_EQ(lport, ntohs(name.sin6_port));
	ASSERT_EQ(AF_INET, from.sin_family);
	ASSERT_EQ(htonl(INADDR_LOOPBACK), from.sin_addr.s_addr);
	ASSERT_EQ(cport, ntohs(from.sin_port));
	char buf[8];
	ASSERT_EQ(4, send(c, "v6v4", 4, MSG_NOSIGNAL));
	EXPECT_EVENTS(s, POLLIN, POLLIN, "data reaches the AF_INET side");
	ASSERT_EQ(4, recv(s, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("v6v4", buf, 4);
	ASSERT_EQ(4, send(s, "back", 4, MSG_NOSIGNAL));
	EXPECT_EVENTS(c, POLLIN, POLLIN, "data reaches the AF_INET6 side");
	ASSERT_EQ(4, recv(c, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("back", buf, 4);
	close(c);
	close(s);

	/* IPV6_V6ONLY 1: the same connect fails, and nothing reaches the listener. */
	c = v6_socket(SOCK_STREAM);
	set_v6only(c, 1);
	errno = 0;
	int r = connect(c, (struct sockaddr *)&to, tl);
	int e = errno;
	if (r == 0)
		FAIL("connect() with IPV6_V6ONLY 1 to ::ffff:127.0.0.1 succeeded, expected it to fail");
	RECORD("v6only_mapped_connect", "%s", sp_errno_name(e));
	/* Nothing queued: a non-blocking accept() says EAGAIN (read directly,
	 * not through poll(), whose listener readiness is MUX-LISTEN-READABLE's). */
	sp_set_nonblock(l, 1);
	errno = 0;
	int stray = accept(l, NULL, NULL);
	int serr = errno;
	sp_set_nonblock(l, 0);
	ASSERT_TRUE(stray < 0 && (serr == EAGAIN || serr == EWOULDBLOCK),
		    "nothing reached the AF_INET listener from the refused connect: accept() "
		    "gives EAGAIN (got %d, %s)", stray, stray < 0 ? sp_errno_name(serr) : "a connection");
	close(c);
	close(l);

	/* UDP: sendto() a mapped address reaches an AF_INET socket. */
	int rx = v4_bound(SOCK_DGRAM, 0), tx = v6_socket(SOCK_DGRAM);
	set_v6only(tx, 0);
	tl = mapped(&to, sp_local_port(rx));
	if (sendto(tx, "udp", 3, 0, (struct sockaddr *)&to, tl) != 3)
		FAIL("UDP sendto() from an AF_INET6 socket to ::ffff:127.0.0.1 failed with %s, "
		     "expected 3 bytes sent", sp_errno_name(errno));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the datagram reaches the AF_INET "
		    "socket");
	fl = sizeof(from);
	ASSERT_EQ(3, recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl));
	ASSERT_MEM_EQ("udp", buf, 3);
	ASSERT_EQ(AF_INET, from.sin_family);
	ASSERT_EQ(htonl(INADDR_LOOPBACK), from.sin_addr.s_addr);
	ASSERT_EQ(sp_local_port(tx), ntohs(from.sin_port));
	close(tx);
	close(rx);

	/* Linux: after bind IPV6_V6ONLY cannot change; IPv4 clients still come. */
	int d = v6_socket(SOCK_STREAM);
	set_v6only(d, 0);
	struct sockaddr_in6 b;
	socklen_t bl = mapped(&b, 0);
	ASSERT_SYS(bind(d, (struct sockaddr *)&b, bl));
	int one = 1;
	errno = 0;
	r = setsockopt(d, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (r != -1 || errno != EINVAL)
		FAIL("setsockopt(IPV6_V6ONLY, 1) after bind returned %d (%s), expected EINVAL", r,
		     r < 0 ? sp_errno_name(errno) : "success");
	ASSERT_EQ(0, v6only(d));
	ASSERT_SYS(listen(d, 4));
	int v4c = (int)ASSERT_SYS(socket(AF_INET, SOCK_STREAM, 0));
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(sp_local_port(d)),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (connect(v4c, (struct sockaddr *)&dst, sizeof(dst)) < 0)
		FAIL("an IPv4 client could not connect to the AF_INET6 listener after the refused "
		     "IPV6_V6ONLY change (%s)", sp_errno_name(errno));
	close(sp_tcp_accept(d)); /* the AF_INET6 listener takes the IPv4 client */
	close(v4c);
	close(d);

	/* Record: IPV6_V6ONLY on a UDP socket bound implicitly by connect(). */
	int k = v6_socket(SOCK_DGRAM);
	struct sockaddr_in6 lo6 = { .sin6_family = AF_INET6, .sin6_port = htons(9),
				    .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	ASSERT_SYS(connect(k, (struct sockaddr *)&lo6, sizeof(lo6)));
	errno = 0;
	r = setsockopt(k, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	RECORD("v6only_after_implicit_bind", "%s", r == 0 ? "0" : sp_errno_name(errno));
	close(k);
}

SP_MAIN("addr")
