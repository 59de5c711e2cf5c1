/*
 * cmsg.c - ancillary data (catalogue part 3, "Ancillary data"; ip(7)
 * IP_PKTINFO and IP_RECVERR, ipv6(7) IPV6_RECVPKTINFO and IPV6_RECVERR,
 * socket(7) SO_TIMESTAMP, unix(7) SO_PASSCRED and SCM_RIGHTS, recv(2)
 * MSG_CMSG_CLOEXEC and MSG_CTRUNC, cmsg(3)).
 *
 *  1. CMSG-PKTINFO         a UDP socket bound to the wildcard address with
 *                          IP_PKTINFO (it reads 1) learns each datagram's
 *                          destination (127.0.0.1, 127.0.0.2) and lo's index,
 *                          and a reply whose IP_PKTINFO names that destination
 *                          leaves from it (a client connected to that address
 *                          gets it); without the option no control data;
 *                          IPv6: IPV6_RECVPKTINFO gives ::1 and lo's index.
 *  2. CMSG-RECVERR         Linux: with IP_RECVERR (IPV6_RECVERR) a sendto() of
 *                          7 bytes to a closed port succeeds, POLLERR follows,
 *                          MSG_ERRQUEUE returns the payload, the destination
 *                          and a sock_extended_err (ECONNREFUSED, ICMP origin,
 *                          type and code, offender the loopback address), and
 *                          the queue is then empty (EAGAIN); without the option
 *                          no POLLERR within 200 ms and an empty queue.
 *  3. CMSG-TIMESTAMP       SO_TIMESTAMP (it reads 1) gives an SCM_TIMESTAMP
 *                          timeval between the times taken before the send and
 *                          after the receive; Linux: SO_TIMESTAMPNS alone gives
 *                          an SCM_TIMESTAMPNS timespec in that window and no
 *                          SCM_TIMESTAMP; with neither, no control data.
 *  4. CMSG-PASSCRED        Linux: SO_PASSCRED reads 0, then 1 once set; a
 *                          datagram a child sent with no control message (the
 *                          child reaped before the receive) arrives with the
 *                          child's pid, uid and gid; sending one's own
 *                          credentials succeeds; without SO_PASSCRED no control
 *                          data; on a stream pair the sender's pid arrives.
 *  5. CMSG-RIGHTS-CLOEXEC  a descriptor received with SCM_RIGHTS has
 *                          FD_CLOEXEC clear even when the sender's had it set;
 *                          with MSG_CMSG_CLOEXEC every received descriptor has
 *                          it set; each refers to the pipe that was sent.
 *  6. CMSG-CTRUNC          two descriptors into room for one: the data
 *                          arrives, MSG_CTRUNC is set, exactly the descriptors
 *                          the truncated message lists are new, and the one not
 *                          delivered is closed; with no control buffer, and
 *                          through read(), no descriptor is installed and the
 *                          passed one is closed; SO_TIMESTAMP into CMSG_LEN(0)
 *                          bytes sets MSG_CTRUNC.
 *
 * Parameters: the calls that carry control data, recvmsg()/sendmsg() and
 * recvmmsg()/sendmmsg() with one message (.how). Every receive waits for
 * the data first (bounded) and is then made under MUST_RETURN.
 *
 * Platform-defined (recorded): ipi_spec_dst on receipt and the messages an
 * IPv4 datagram brings to a dual-stack socket with IPV6_RECVPKTINFO;
 * SO_ERROR, recv() and revents once the error queue is drained;
 * SO_TIMESTAMP on TCP; credentials that claim pid 1; sendmsg() with the
 * receive-only MSG_CMSG_CLOEXEC; how many descriptors fit a short buffer.
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* linux/errqueue.h's struct sock_extended_err, spelled out (a C library
 * without the kernel headers, such as musl's, builds this file too); the
 * offender's address follows it (SO_EE_OFFENDER). */
struct ext_err {
	uint32_t ee_errno;
	uint8_t ee_origin, ee_type, ee_code, ee_pad;
	uint32_t ee_info, ee_data;
};
#define ORIGIN_ICMP 2
#define ORIGIN_ICMP6 3

#define VIA_NAMES SP_NAMES("recvmsg", "recvmmsg", "io_uring:RECVMSG")
#define VIA_PAIRS SP_NAMES("recvmsg/sendmsg", "recvmmsg/sendmmsg", \
			   "io_uring:RECVMSG/io_uring:SENDMSG")

/* The calls without io_uring, for the items whose point io_uring RECVMSG
 * makes differently on Linux itself: the descriptors that do not fit a
 * short control buffer (seen here on 6.18: through io_uring both stay
 * open in the receiver, recvmsg closes the one cut off), to be looked at
 * before io_uring joins them. */
#define VIA_SYSCALLS SP_NAMES("recvmsg", "recvmmsg")

/* An io_uring request waits for readiness where the system call returns:
 * an empty error queue gives EAGAIN at once to recvmsg(MSG_ERRQUEUE), and
 * to io_uring RECVMSG only when it is asked not to wait. */
static int errq_nowait(int how)
{
	return how == 2 ? MSG_DONTWAIT : 0;
}

/* The call of .how (0 recvmsg/sendmsg, 1 recvmmsg/sendmmsg, 2 io_uring
 * RECVMSG/SENDMSG): io_uring is left out, saying why, where the system
 * refuses it (the variant is "not supported by this system"). */
static int via_api(int how, int out)
{
	char why[256];
	int api = how == 0 ? SP_IO_MSG : how == 1 ? SP_IO_MMSG : SP_IO_URING_MSG;
	if (!sp_io_available(api, out, why, sizeof(why)))
		UNAVAILABLE("%s", why);
	return api;
}

/* ---- one message through the call under test ------------------------------ */

struct rx {
	char data[64];
	struct iovec iov;
	struct sockaddr_storage from;
	union { struct cmsghdr align; unsigned char buf[512]; } ctl;
	struct msghdr mh;          /* as returned: msg_flags, msg_controllen */
};

/* A msghdr for one receive into rx: room bytes of data, ctlroom bytes of
 * control (ctlroom 0: no control buffer at all). */
static struct msghdr *rx_prepare(struct rx *x, size_t room, size_t ctlroom)
{
	memset(x, 0, sizeof(*x));
	x->iov.iov_base = x->data;
	x->iov.iov_len = room;
	x->mh.msg_name = &x->from;
	x->mh.msg_namelen = sizeof(x->from);
	x->mh.msg_iov = &x->iov;
	x->mh.msg_iovlen = 1;
	x->mh.msg_control = ctlroom ? x->ctl.buf : NULL;
	x->mh.msg_controllen = ctlroom;
	return &x->mh;
}

/* recvmsg() (how 0) or recvmmsg() of one message (how 1); the msghdr
 * comes back as the call left it. */
static ssize_t rx_call(int how, int fd, struct msghdr *mh, int flags)
{
	int api = via_api(how, 0);
	if (api != SP_IO_MMSG)
		return sp_io_msg(api, 0, fd, mh, flags);
	sp_path_used(SP_PATH_IN, api);
	struct mmsghdr mm = { .msg_hdr = *mh };
	int k = recvmmsg(fd, &mm, 1, flags, NULL);
	if (k == 0)
		BROKEN_NEEDS("MMSG-RECVMMSG", "recvmmsg(vlen 1) returned 0: no message, no error");
	if (k < 0)
		return -1;
	*mh = mm.msg_hdr;
	return (ssize_t)mm.msg_len;
}

/* Wait until fd has a message, then take it through the call under test:
 * returns the byte count; the call must return. */
static ssize_t rx_take(const struct sp_ctx *ctx, int fd, struct rx *x, size_t ctlroom, int flags,
		       const char *what)
{
	struct msghdr *mh = rx_prepare(x, sizeof(x->data), ctlroom);
	EXPECT_EVENTS(fd, POLLIN, POLLIN, "%s arrives", what);
	ssize_t r = MUST_RETURN(rx_call(ctx->how, fd, mh, flags), "%s of %s", ctx->how_name, what);
	if (r < 0)
		FAIL("%s of %s failed with %s", ctx->how_name, what, sp_errno_name(errno));
	return r;
}

/* sendmsg() (how 0) or sendmmsg() of one message (how 1). */
static ssize_t tx_call(int how, int fd, const struct msghdr *mh, int flags)
{
	int api = via_api(how, 1);
	if (api != SP_IO_MMSG) {
		struct msghdr copy = *mh;
		return sp_io_msg(api, 1, fd, &copy, flags);
	}
	sp_path_used(SP_PATH_OUT, api);
	struct mmsghdr mm = { .msg_hdr = *mh };
	int k = sendmmsg(fd, &mm, 1, flags);
	if (k == 0)
		BROKEN_NEEDS("MMSG-SENDMMSG", "sendmmsg(vlen 1) returned 0: nothing sent, no error");
	return k < 0 ? -1 : (ssize_t)mm.msg_len;
}

static struct cmsghdr *find_cmsg(struct msghdr *mh, int level, int type)
{
	if (!mh->msg_control)
		return NULL;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
		if (cm->cmsg_level == level && cm->cmsg_type == type)
			return cm;
	return NULL;
}

/* "IPPROTO_IP/8(len 28) SOL_SOCKET/29(len 32)" or "none": the messages
 * that came. */
static const char *cmsg_list(struct msghdr *mh)
{
	static char out[160];
	size_t k = 0;
	out[0] = 0;
	if (mh->msg_control && mh->msg_controllen >= sizeof(struct cmsghdr))
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm && k < sizeof(out) - 40;
		     cm = CMSG_NXTHDR(mh, cm)) {
			const char *lv = cm->cmsg_level == IPPROTO_IP ? "IPPROTO_IP" :
					 cm->cmsg_level == IPPROTO_IPV6 ? "IPPROTO_IPV6" :
					 cm->cmsg_level == SOL_SOCKET ? "SOL_SOCKET" : "level?";
			k += (size_t)snprintf(out + k, sizeof(out) - k, "%s%s/%d(len %zu)", k ? " " : "",
					      lv, cm->cmsg_type, (size_t)cm->cmsg_len);
		}
	return k ? out : "none";
}

static const char *addr_str(int af, const void *a)
{
	static char s[INET6_ADDRSTRLEN];
	return inet_ntop(af, a, s, sizeof(s)) ? s : "?";
}

/* ---- 1. CMSG-PKTINFO ----------------------------------------------------------- */

/* A UDP socket of the family bound to the wildcard address, port 0. */
static int wildcard_udp(int af)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = (sa_family_t)af;
	int fd = (int)ASSERT_SYS(socket(af, SOCK_DGRAM, 0));
	socklen_t len = af == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0)
		BROKEN("bind() to the %s wildcard address fails with %s", af == AF_INET ? "IPv4" : "IPv6",
		       sp_errno_name(errno));
	return fd;
}

/* A UDP client of family af connected to addr:port (text address), bound
 * first to the family's loopback address, port 0: its name is then
 * bind()'s, not an implicit bind's (UDP-SENDTO-IMPLICIT-BIND, not needed
 * here), for the reply that goes to it. */
static int udp_client_to(int af, const char *addr, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (af == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		len = sizeof(*a);
	}
	int fd = (int)ASSERT_SYS(socket(af, SOCK_DGRAM, 0));
	struct sockaddr_storage me;
	socklen_t ml;
	memset(&me, 0, sizeof(me));
	me.ss_family = (sa_family_t)af;
	if (af == AF_INET) {
		((struct sockaddr_in *)&me)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		ml = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&me)->sin6_addr = in6addr_loopback;
		ml = sizeof(struct sockaddr_in6);
	}
	if (bind(fd, (struct sockaddr *)&me, ml) < 0)
		BROKEN("a UDP client cannot bind to the loopback address (%s)", sp_errno_name(errno));
	if (connect(fd, (struct sockaddr *)&ss, len) < 0)
		BROKEN("a UDP client cannot connect to %s (%s)", addr, sp_errno_name(errno));
	return fd;
}

/* The reply reached client c, connected to dst:port, yet recvfrom()
 * names another source, `from`. Either the connected socket takes
 * datagrams from elsewhere (then the reply's arrival does not show where
 * it came from: needs UDP-CONNECTED), or it does not (the reply came
 * from dst, and recvfrom() misreports it: needs
 * UDP-ONE-SOCKET-MANY-PEERS). A datagram from 127.0.0.3 tells which. */
static void reply_source_misreported(int c, const char *dst, unsigned port,
				     const struct sockaddr_in *from)
{
	struct sockaddr_in me = { .sin_family = AF_INET }, other = { .sin_family = AF_INET };
	socklen_t ml = sizeof(me);
	char b[8];

	ASSERT_SYS(getsockname(c, (struct sockaddr *)&me, &ml));
	inet_pton(AF_INET, "127.0.0.3", &other.sin_addr);
	int o = (int)ASSERT_SYS(socket(AF_INET, SOCK_DGRAM, 0));
	ASSERT_SYS(bind(o, (struct sockaddr *)&other, sizeof(other)));
	ASSERT_EQ(5, sendto(o, "stray", 5, 0, (struct sockaddr *)&me, sizeof(me)));
	if (sp_poll(c, POLLIN, sp_wait_ms()) & POLLIN) {
		ssize_t n = recv(c, b, sizeof(b), MSG_DONTWAIT);
		BROKEN_NEEDS("UDP-CONNECTED", "the client connected to %s:%u took a datagram from "
			     "127.0.0.3 (%zd bytes), so the reply's arrival does not show its source "
			     "(recvfrom() named %s:%u)", dst, port, n,
			     addr_str(AF_INET, &from->sin_addr), ntohs(from->sin_port));
	}
	BROKEN_NEEDS("UDP-ONE-SOCKET-MANY-PEERS", "the reply reached the client connected to %s:%u, "
		     "which takes no datagram from elsewhere, but recvfrom() names its source %s:%u",
		     dst, port, addr_str(AF_INET, &from->sin_addr), ntohs(from->sin_port));
}

/* The IPv4 destination reported for a datagram sent to dst: ipi_addr is
 * dst, ipi_ifindex lo's index. Then a reply with ipi_spec_dst = dst
 * reaches the client connected to dst, from dst. */
static void pktinfo_v4_round(const struct sp_ctx *ctx, int s, const char *dst, unsigned lo)
{
	uint16_t port = sp_local_port(s);
	int c = udp_client_to(AF_INET, dst, port);
	struct rx x;
	struct in_addr want;
	inet_pton(AF_INET, dst, &want);
	if (send(c, "ask", 3, 0) != 3)
		BROKEN("a UDP client cannot send to %s:%u (%s)", dst, port, sp_errno_name(errno));
	ASSERT_EQ(3, rx_take(ctx, s, &x, sizeof(x.ctl.buf), 0, "a datagram to the wildcard socket"));
	struct cmsghdr *cm = find_cmsg(&x.mh, IPPROTO_IP, IP_PKTINFO);
	if (!cm)
		FAIL("a datagram to %s brought no IPPROTO_IP/IP_PKTINFO message (control data: %s)",
		     dst, cmsg_list(&x.mh));
	struct in_pktinfo pi;
	memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
	if (pi.ipi_addr.s_addr != want.s_addr)
		FAIL("IP_PKTINFO of a datagram to %s: ipi_addr %s", dst, addr_str(AF_INET, &pi.ipi_addr));
	if ((unsigned)pi.ipi_ifindex != lo)
		FAIL("IP_PKTINFO of a datagram to %s: ipi_ifindex %d, expected lo's index %u", dst,
		     pi.ipi_ifindex, lo);
	RECORD_ONCE(strcmp(dst, "127.0.0.1") ? "ipi_spec_dst_127_0_0_2" : "ipi_spec_dst_127_0_0_1",
		    "%s", addr_str(AF_INET, &pi.ipi_spec_dst));

	/* The reply leaves from dst: the client is connected to dst:port, so
	 * a reply from any other address would not reach it (UDP-CONNECTED's
	 * Must, a mechanism). It goes to the client's own name, not to the
	 * source recvmsg() reported (UDP-ONE-SOCKET-MANY-PEERS', not needed). */
	union { struct cmsghdr align; unsigned char buf[CMSG_SPACE(sizeof(struct in_pktinfo))]; } out;
	memset(&out, 0, sizeof(out));
	struct iovec iov = { "reply", 5 };
	struct sockaddr_storage cname;
	socklen_t cnl = sizeof(cname);
	ASSERT_SYS(getsockname(c, (struct sockaddr *)&cname, &cnl));
	struct msghdr mh = { .msg_name = &cname, .msg_namelen = cnl, .msg_iov = &iov,
			     .msg_iovlen = 1, .msg_control = out.buf, .msg_controllen = sizeof(out.buf) };
	struct cmsghdr *oc = CMSG_FIRSTHDR(&mh);
	oc->cmsg_level = IPPROTO_IP;
	oc->cmsg_type = IP_PKTINFO;
	oc->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
	struct in_pktinfo spec;
	memset(&spec, 0, sizeof(spec));
	spec.ipi_spec_dst = want;
	memcpy(CMSG_DATA(oc), &spec, sizeof(spec));
	ssize_t w = tx_call(ctx->how, s, &mh, 0);
	if (w != 5)
		FAIL("%s of a reply with IP_PKTINFO ipi_spec_dst %s returned %zd (%s), expected 5",
		     sp_io_out_name(via_api(ctx->how, 1)), dst, w, w < 0 ? sp_errno_name(errno) : "short");
	if (!(sp_poll(c, POLLIN, sp_wait_ms()) & POLLIN))
		FAIL("the reply sent with ipi_spec_dst %s did not reach the client connected to %s:%u "
		     "within %d ms (it left from another address)", dst, dst, port, sp_wait_ms());
	struct sockaddr_in from;
	socklen_t fl = sizeof(from);
	char b[8];
	ASSERT_EQ(5, recvfrom(c, b, sizeof(b), 0, (struct sockaddr *)&from, &fl));
	ASSERT_MEM_EQ("reply", b, 5);
	if (from.sin_addr.s_addr != want.s_addr || ntohs(from.sin_port) != port)
		reply_source_misreported(c, dst, port, &from);
	close(c);
}

/* Without the option a datagram brings no control data. */
static void no_option_no_control(const struct sp_ctx *ctx, const char *dst, const char *what)
{
	int s = wildcard_udp(ctx->af);
	int c = udp_client_to(ctx->af, dst, sp_local_port(s));
	struct rx x;
	ASSERT_EQ(3, send(c, "abc", 3, 0));
	ASSERT_EQ(3, rx_take(ctx, s, &x, sizeof(x.ctl.buf), 0, "a datagram"));
	if (x.mh.msg_controllen != 0)
		FAIL("without %s a datagram brought control data (%zu bytes: %s)", what,
		     (size_t)x.mh.msg_controllen, cmsg_list(&x.mh));
	close(c);
	close(s);
}

SP_TEST(pktinfo_gives_destination_and_chooses_reply_source, "CMSG-PKTINFO", SP_INET,
	.how = VIA_PAIRS)
{
	sp_require_private_net(); /* it binds the wildcard address */
	unsigned lo = if_nametoindex("lo");
	REQUIRE(lo > 0, "an interface named lo (if_nametoindex: %s)", sp_errno_name(errno));

	if (ctx->af == AF_INET) {
		int s = wildcard_udp(AF_INET);
		if (setsockopt(s, IPPROTO_IP, IP_PKTINFO, &(int){ 1 }, sizeof(int)) < 0)
			FAIL("setsockopt(IP_PKTINFO, 1) failed with %s", sp_errno_name(errno));
		ASSERT_EQ(1, sp_get_int(s, IPPROTO_IP, IP_PKTINFO));
		pktinfo_v4_round(ctx, s, "127.0.0.1", lo);
		pktinfo_v4_round(ctx, s, "127.0.0.2", lo);
		close(s);
		no_option_no_control(ctx, "127.0.0.1", "IP_PKTINFO");
		return;
	}

	int s = wildcard_udp(AF_INET6);
	if (setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &(int){ 1 }, sizeof(int)) < 0)
		FAIL("setsockopt(IPV6_RECVPKTINFO, 1) failed with %s", sp_errno_name(errno));
	int c = udp_client_to(AF_INET6, "::1", sp_local_port(s));
	struct rx x;
	ASSERT_EQ(3, send(c, "ask", 3, 0));
	ASSERT_EQ(3, rx_take(ctx, s, &x, sizeof(x.ctl.buf), 0, "a datagram to [::]"));
	struct cmsghdr *cm = find_cmsg(&x.mh, IPPROTO_IPV6, IPV6_PKTINFO);
	if (!cm)
		FAIL("a datagram to ::1 brought no IPPROTO_IPV6/IPV6_PKTINFO message (control data: %s)",
		     cmsg_list(&x.mh));
	struct in6_pktinfo pi;
	memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
	if (!IN6_IS_ADDR_LOOPBACK(&pi.ipi6_addr))
		FAIL("IPV6_PKTINFO of a datagram to ::1: ipi6_addr %s", addr_str(AF_INET6, &pi.ipi6_addr));
	if (pi.ipi6_ifindex != lo)
		FAIL("IPV6_PKTINFO of a datagram to ::1: ipi6_ifindex %u, expected lo's index %u",
		     pi.ipi6_ifindex, lo);
	close(c);

	/* Record: an IPv4 datagram to the dual-stack socket. */
	int v4 = udp_client_to(AF_INET, "127.0.0.1", sp_local_port(s));
	if (send(v4, "v4", 2, 0) == 2 && (sp_poll(s, POLLIN, sp_wait_ms()) & POLLIN)) {
		struct msghdr *mh = rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
		if (BOUNDED(rx_call(ctx->how, s, mh, MSG_DONTWAIT)) >= 0) {
			cm = find_cmsg(&x.mh, IPPROTO_IPV6, IPV6_PKTINFO);
			if (cm)
				memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			RECORD_ONCE("ipv4_datagram_on_dual_stack_socket", "%s%s%s", cmsg_list(&x.mh),
				    cm ? " ipi6_addr " : "", cm ? addr_str(AF_INET6, &pi.ipi6_addr) : "");
		}
	} else {
		RECORD_ONCE("ipv4_datagram_on_dual_stack_socket", "not delivered");
	}
	close(v4);
	close(s);
	no_option_no_control(ctx, "::1", "IPV6_RECVPKTINFO");
}

/* ---- 2. CMSG-RECVERR ------------------------------------------------------------ */

/* A loopback UDP port nobody has: bound once, then closed. Called after
 * the item's own sockets are bound: bind() may hand the freed port out
 * again, and a sender given it would send the datagram to itself. */
static uint16_t closed_udp_port(const struct sp_ctx *ctx)
{
	int t = sp_udp_bound(ctx);
	uint16_t p = sp_local_port(t);
	close(t);
	return p;
}

SP_TEST(recverr_queues_icmp_port_unreachable, "CMSG-RECVERR", SP_INET, .how = VIA_NAMES)
{
	int v6 = ctx->af == AF_INET6;
	int level = v6 ? IPPROTO_IPV6 : IPPROTO_IP, opt = v6 ? IPV6_RECVERR : IP_RECVERR;
	const char *oname = v6 ? "IPV6_RECVERR" : "IP_RECVERR";
	int fd = sp_udp_bound(ctx);
	uint16_t dead = closed_udp_port(ctx);
	struct sockaddr_storage to;
	socklen_t tl = sp_loopback(ctx, &to, dead);
	char buf[64];

	if (setsockopt(fd, level, opt, &(int){ 1 }, sizeof(int)) < 0)
		UNSUPPORTED("setsockopt(%s, 1) (%s)", oname, sp_errno_name(errno));
	/* On the wire (first variant): the datagram, and the port unreachable
	 * that answers it. */
	struct sp_capture cap;
	int wire = ctx->first && sp_capture_start(&cap);
	if (wire) {
		sp_capture_name(&cap, dead, "S");
		sp_capture_name_fd(&cap, fd, "C");
	}
	/* A send to a port nobody listens on succeeds (UDP-NO-ACK's Must, a
	 * mechanism here); only the ICMP answer that follows is this ID's. */
	errno = 0;
	ssize_t sent = sendto(fd, "refused", 7, 0, (struct sockaddr *)&to, tl);
	if (sent < 0)
		BROKEN_NEEDS("UDP-NO-ACK", "sendto() of 7 bytes to a port nobody listens on failed "
			     "with %s", sp_errno_name(errno));
	ASSERT_EQ(7, sent);
	int ev = sp_poll(fd, 0, sp_wait_ms());
	if (wire && sp_capture_sync(&cap))
		WIRE_EXPECT(&cap, v6 ? "C>S udp7, S>C icmp6-port-unreachable"
				     : "C>S udp7, S>C icmp-port-unreachable");
	if (wire)
		sp_capture_stop(&cap);
	if (!(ev & POLLERR))
		FAIL("with %s, a datagram to a closed port: expected POLLERR within %d ms, observed %s",
		     oname, sp_wait_ms(), sp_events_str(ev));

	struct rx x;
	struct msghdr *mh = rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
	ssize_t r = MUST_RETURN(rx_call(ctx->how, fd, mh, MSG_ERRQUEUE), "%s(MSG_ERRQUEUE)",
				ctx->how_name);
	if (r < 0)
		FAIL("%s(MSG_ERRQUEUE) after POLLERR failed with %s", ctx->how_name, sp_errno_name(errno));
	ASSERT_EQ(7, r);
	ASSERT_MEM_EQ("refused", x.data, 7);
	ASSERT_TRUE(x.mh.msg_flags & MSG_ERRQUEUE, "MSG_ERRQUEUE is set in msg_flags (got 0x%x)",
		    x.mh.msg_flags);
	if (x.from.ss_family != ctx->af || sp_port(&x.from) != dead ||
	    (v6 ? !IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&x.from)->sin6_addr)
		: ((struct sockaddr_in *)&x.from)->sin_addr.s_addr != htonl(INADDR_LOOPBACK)))
		FAIL("msg_name of the queued error is not the original destination (family %d, port "
		     "%u, expected %u)", x.from.ss_family, sp_port(&x.from), dead);
	struct cmsghdr *cm = find_cmsg(&x.mh, level, opt);
	if (!cm)
		FAIL("the queued error carries no %s/%s message (control data: %s)",
		     v6 ? "SOL_IPV6" : "SOL_IP", oname, cmsg_list(&x.mh));
	struct ext_err *ee = (struct ext_err *)CMSG_DATA(cm);
	ASSERT_ERRVAL(ECONNREFUSED, (int)ee->ee_errno);
	ASSERT_EQ(v6 ? ORIGIN_ICMP6 : ORIGIN_ICMP, ee->ee_origin);
	ASSERT_EQ(v6 ? 1 : 3, ee->ee_type);
	ASSERT_EQ(v6 ? 4 : 3, ee->ee_code);
	struct sockaddr *off = (struct sockaddr *)(ee + 1);
	if (off->sa_family != ctx->af ||
	    (v6 ? !IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)off)->sin6_addr)
		: ((struct sockaddr_in *)off)->sin_addr.s_addr != htonl(INADDR_LOOPBACK)))
		FAIL("SO_EE_OFFENDER is not %s (family %d)", v6 ? "::1" : "127.0.0.1", off->sa_family);

	mh = rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
	errno = 0;
	r = MUST_RETURN(rx_call(ctx->how, fd, mh, MSG_ERRQUEUE | errq_nowait(ctx->how)),
			"%s(MSG_ERRQUEUE) again", ctx->how_name);
	ASSERT_FAILED_WITH(r, errno, EAGAIN);

	int err = -1;
	socklen_t el = sizeof(err);
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	errno = 0;
	r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	RECORD_ONCE("after_drain", "SO_ERROR %s, recv %s, revents %s", err ? sp_errno_name(err) : "0",
		    r < 0 ? sp_errno_name(errno) : "data", sp_events_str(sp_poll(fd, POLLIN, 0)));
	close(fd);

	/* Without the option: no error at all (the 200 ms of silence once, in
	 * the first variant; the empty queue through each call). */
	fd = sp_udp_bound(ctx);
	ASSERT_EQ(7, sendto(fd, "refused", 7, 0, (struct sockaddr *)&to, tl));
	ev = sp_poll(fd, 0, ctx->first ? 200 : 0);
	if (ev)
		FAIL("without %s, a datagram to a closed port: expected no event within 200 ms, "
		     "observed %s", oname, sp_events_str(ev));
	mh = rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
	r = MUST_RETURN(rx_call(ctx->how, fd, mh, MSG_ERRQUEUE | errq_nowait(ctx->how)),
			"%s(MSG_ERRQUEUE) without %s", ctx->how_name, oname);
	ASSERT_FAILED_WITH(r, errno, EAGAIN);
	close(fd);
}

/* ---- 3. CMSG-TIMESTAMP ---------------------------------------------------------- */

/* Send one datagram from c to s and take it with its control data;
 * *before and *after are CLOCK_REALTIME in ns around the send and receive. */
static void stamped_datagram(const struct sp_ctx *ctx, int c, int s, struct rx *x, size_t ctlroom,
			     long long *before, long long *after)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	*before = t.tv_sec * 1000000000LL + t.tv_nsec;
	ASSERT_EQ(4, send(c, "tick", 4, 0));
	ASSERT_EQ(4, rx_take(ctx, s, x, ctlroom, 0, "the datagram"));
	clock_gettime(CLOCK_REALTIME, &t);
	*after = t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void udp_pair(const struct sp_ctx *ctx, int *c, int *s)
{
	struct sockaddr_storage ss;
	*s = sp_udp_bound(ctx);
	*c = sp_udp_bound(ctx);
	socklen_t len = sp_loopback(ctx, &ss, sp_local_port(*s));
	ASSERT_SYS(connect(*c, (struct sockaddr *)&ss, len));
}

SP_TEST(so_timestamp_stamps_each_datagram, "CMSG-TIMESTAMP", SP_INET, .how = VIA_NAMES)
{
	int c, s;
	struct rx x;
	long long before, after;

	/* SO_TIMESTAMP: a timeval within the window (microseconds). */
	udp_pair(ctx, &c, &s);
	sp_set_int(s, SOL_SOCKET, SO_TIMESTAMP, 1);
	ASSERT_EQ(1, sp_get_int(s, SOL_SOCKET, SO_TIMESTAMP));
	struct timeval tv0;
	gettimeofday(&tv0, NULL);
	before = tv0.tv_sec * 1000000LL + tv0.tv_usec;
	ASSERT_EQ(4, send(c, "tick", 4, 0));
	ASSERT_EQ(4, rx_take(ctx, s, &x, sizeof(x.ctl.buf), 0, "the datagram"));
	gettimeofday(&tv0, NULL);
	after = tv0.tv_sec * 1000000LL + tv0.tv_usec;
	struct cmsghdr *cm = find_cmsg(&x.mh, SOL_SOCKET, SCM_TIMESTAMP);
	if (!cm)
		FAIL("with SO_TIMESTAMP a datagram brought no SOL_SOCKET/SCM_TIMESTAMP (control data: %s)",
		     cmsg_list(&x.mh));
	struct timeval tv;
	memcpy(&tv, CMSG_DATA(cm), sizeof(tv));
	long long us = tv.tv_sec * 1000000LL + tv.tv_usec;
	if (us < before || us > after)
		FAIL("SCM_TIMESTAMP %lld.%06ld lies outside gettimeofday()'s window [%lld.%06lld, "
		     "%lld.%06lld]", (long long)tv.tv_sec, (long)tv.tv_usec, before / 1000000,
		     before % 1000000, after / 1000000, after % 1000000);
	close(c);
	close(s);

	/* Linux: SO_TIMESTAMPNS alone, a timespec and no SCM_TIMESTAMP. */
	udp_pair(ctx, &c, &s);
	if (setsockopt(s, SOL_SOCKET, SO_TIMESTAMPNS, &(int){ 1 }, sizeof(int)) < 0)
		UNSUPPORTED("SO_TIMESTAMPNS (%s)", sp_errno_name(errno));
	stamped_datagram(ctx, c, s, &x, sizeof(x.ctl.buf), &before, &after);
	cm = find_cmsg(&x.mh, SOL_SOCKET, SCM_TIMESTAMPNS);
	if (!cm)
		FAIL("with SO_TIMESTAMPNS a datagram brought no SOL_SOCKET/SCM_TIMESTAMPNS (control "
		     "data: %s)", cmsg_list(&x.mh));
	struct timespec ts;
	memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
	long long ns = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	if (ns < before - 1000 || ns > after)
		FAIL("SCM_TIMESTAMPNS %lld.%09ld lies outside the CLOCK_REALTIME window [%lld.%09lld, "
		     "%lld.%09lld]", (long long)ts.tv_sec, ts.tv_nsec, before / 1000000000,
		     before % 1000000000, after / 1000000000, after % 1000000000);
	if (find_cmsg(&x.mh, SOL_SOCKET, SCM_TIMESTAMP))
		FAIL("with SO_TIMESTAMPNS alone an SCM_TIMESTAMP came too (control data: %s)",
		     cmsg_list(&x.mh));
	close(c);
	close(s);

	/* Neither: no control data. */
	udp_pair(ctx, &c, &s);
	stamped_datagram(ctx, c, s, &x, sizeof(x.ctl.buf), &before, &after);
	if (x.mh.msg_controllen != 0)
		FAIL("without timestamp options a datagram brought control data (%s)", cmsg_list(&x.mh));
	close(c);
	close(s);

	/* Record: SO_TIMESTAMP on TCP. */
	sp_tcp_pair(ctx, &c, &s);
	sp_set_int(s, SOL_SOCKET, SO_TIMESTAMP, 1);
	if (write(c, "tcp", 3) == 3 && (sp_poll(s, POLLIN, sp_wait_ms()) & POLLIN)) {
		struct msghdr *mh = rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
		ssize_t r = BOUNDED(rx_call(ctx->how, s, mh, MSG_DONTWAIT));
		RECORD_ONCE("so_timestamp_on_tcp", "%s", r < 0 ? sp_errno_name(errno) :
			    find_cmsg(&x.mh, SOL_SOCKET, SCM_TIMESTAMP) ? "SCM_TIMESTAMP" : "none");
	}
	close(c);
	close(s);
}

/* ---- 4. CMSG-PASSCRED ----------------------------------------------------------- */

static int send_plain(void *arg)
{
	return send(*(int *)arg, "kid", 3, 0) == 3 ? 0 : 1;
}

static struct ucred creds_of(struct rx *x, const char *what)
{
	struct ucred u;
	struct cmsghdr *cm = find_cmsg(&x->mh, SOL_SOCKET, SCM_CREDENTIALS);
	if (!cm)
		FAIL("%s: with SO_PASSCRED no SCM_CREDENTIALS arrived (control data: %s)", what,
		     cmsg_list(&x->mh));
	memcpy(&u, CMSG_DATA(cm), sizeof(u));
	return u;
}

static void creds_are(struct ucred u, pid_t pid, const char *what)
{
	if (u.pid != pid || u.uid != getuid() || u.gid != getgid())
		FAIL("%s: SCM_CREDENTIALS pid %d uid %u gid %u, expected pid %d uid %u gid %u", what,
		     (int)u.pid, (unsigned)u.uid, (unsigned)u.gid, (int)pid, (unsigned)getuid(),
		     (unsigned)getgid());
}

/* sendmsg() with SCM_CREDENTIALS {pid, own uid, own gid}. */
static ssize_t send_creds(int fd, pid_t pid)
{
	union { struct cmsghdr align; unsigned char buf[CMSG_SPACE(sizeof(struct ucred))]; } out;
	memset(&out, 0, sizeof(out));
	struct iovec iov = { "me", 2 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = out.buf,
			     .msg_controllen = sizeof(out.buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_CREDENTIALS;
	cm->cmsg_len = CMSG_LEN(sizeof(struct ucred));
	struct ucred u = { .pid = pid, .uid = getuid(), .gid = getgid() };
	memcpy(CMSG_DATA(cm), &u, sizeof(u));
	return sendmsg(fd, &mh, MSG_NOSIGNAL);
}

SP_TEST(passcred_attaches_the_senders_credentials, "CMSG-PASSCRED", SP_NONE, .how = VIA_NAMES)
{
	int sv[2];
	struct rx x;

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	int was = sp_get_int(sv[1], SOL_SOCKET, SO_PASSCRED);
	if (setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)) < 0)
		UNSUPPORTED("SO_PASSCRED (%s)", sp_errno_name(errno));
	ASSERT_EQ(0, was);
	ASSERT_EQ(1, sp_get_int(sv[1], SOL_SOCKET, SO_PASSCRED));

	/* A child sends with no control message and is reaped first. */
	pid_t kid = sp_fork(send_plain, &sv[0]);
	sp_reap_exit(kid, 0);
	ASSERT_EQ(3, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), 0, "the child's datagram"));
	creds_are(creds_of(&x, "the child's datagram"), kid, "the child's datagram");

	/* One's own credentials, sent explicitly. */
	ssize_t w = send_creds(sv[0], getpid());
	if (w != 2)
		FAIL("sendmsg() with SCM_CREDENTIALS of one's own pid, uid and gid returned %zd (%s), "
		     "expected 2", w, w < 0 ? sp_errno_name(errno) : "short");
	ASSERT_EQ(2, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), 0, "the datagram with credentials"));
	creds_are(creds_of(&x, "explicit credentials"), getpid(), "explicit credentials");

	/* Record: credentials that claim pid 1. */
	errno = 0;
	w = send_creds(sv[0], 1);
	RECORD_ONCE("credentials_claiming_pid_1", "%s", w < 0 ? sp_errno_name(errno) : "sent");
	if (w > 0 && sp_poll(sv[1], POLLIN, 0)) {
		rx_prepare(&x, sizeof(x.data), sizeof(x.ctl.buf));
		BOUNDED(rx_call(ctx->how, sv[1], &x.mh, MSG_DONTWAIT));
	}
	close(sv[0]);
	close(sv[1]);

	/* Without SO_PASSCRED: no control data. */
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	kid = sp_fork(send_plain, &sv[0]);
	sp_reap_exit(kid, 0);
	ASSERT_EQ(3, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), 0, "a datagram"));
	if (x.mh.msg_controllen != 0)
		FAIL("without SO_PASSCRED a datagram brought control data (%s)", cmsg_list(&x.mh));
	close(sv[0]);
	close(sv[1]);

	/* A stream pair: the sender's pid. */
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	sp_set_int(sv[1], SOL_SOCKET, SO_PASSCRED, 1);
	ASSERT_EQ(3, write(sv[0], "abc", 3));
	ASSERT_EQ(3, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), 0, "stream data"));
	creds_are(creds_of(&x, "stream socketpair"), getpid(), "stream socketpair");
	close(sv[0]);
	close(sv[1]);
}

/* ---- descriptors in flight ------------------------------------------------------ */

/* sendmsg() of one byte with SCM_RIGHTS carrying n descriptors. */
static ssize_t send_fds(int sock, const int *fds, int n, int flags)
{
	union { struct cmsghdr align; unsigned char buf[CMSG_SPACE(4 * sizeof(int))]; } out;
	memset(&out, 0, sizeof(out));
	struct iovec iov = { "F", 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = out.buf,
			     .msg_controllen = CMSG_SPACE((size_t)n * sizeof(int)) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN((size_t)n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, (size_t)n * sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL | flags);
}

/* The descriptors an SCM_RIGHTS message lists (at most max). */
static int fds_listed(struct msghdr *mh, int *fds, int max)
{
	struct cmsghdr *cm = find_cmsg(mh, SOL_SOCKET, SCM_RIGHTS);
	if (!cm)
		return 0;
	int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
	if (n > max)
		n = max;
	memcpy(fds, CMSG_DATA(cm), (size_t)n * sizeof(int));
	return n;
}

/* Bytes written through w are read from the pipe whose read end is r. */
static void same_pipe(int w, int r, const char *what)
{
	char b[4];
	ASSERT_EQ(2, write(w, "ok", 2));
	EXPECT_EVENTS(r, POLLIN, POLLIN, "bytes written through %s reach the pipe", what);
	ASSERT_EQ(2, read(r, b, sizeof(b)));
	ASSERT_MEM_EQ("ok", b, 2);
}

static int cloexec(int fd)
{
	return (int)ASSERT_SYS(fcntl(fd, F_GETFD)) & FD_CLOEXEC;
}

/* ---- 5. CMSG-RIGHTS-CLOEXEC ----------------------------------------------------- */

SP_TEST(received_descriptor_cloexec_follows_msg_cmsg_cloexec, "CMSG-RIGHTS-CLOEXEC", SP_NONE,
	.how = VIA_NAMES)
{
	int sv[2], a[2], b[2], got[4];
	struct rx x;

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	sp_pipe(a); /* ends checked: PIPE-ENDS is a mechanism here */
	ASSERT_SYS(fcntl(a[0], F_SETFD, FD_CLOEXEC));
	ASSERT_SYS(fcntl(a[1], F_SETFD, FD_CLOEXEC));
	sp_pipe(b);

	/* The sender's copy has FD_CLOEXEC; the received one has it clear. */
	ASSERT_EQ(1, send_fds(sv[0], &a[1], 1, 0));
	ASSERT_EQ(1, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), 0, "the descriptor"));
	if (fds_listed(&x.mh, got, 4) != 1)
		BROKEN_NEEDS("UNIX-SCM-RIGHTS", "the SCM_RIGHTS message arrives listing the one "
			     "descriptor sent (control data: %s)", cmsg_list(&x.mh));
	if (cloexec(got[0]))
		FAIL("a descriptor received without MSG_CMSG_CLOEXEC has FD_CLOEXEC set (the "
		     "sender's copy had it)");
	same_pipe(got[0], a[0], "the received descriptor");
	close(got[0]);

	/* MSG_CMSG_CLOEXEC: every descriptor of the message gets it. */
	int two[2] = { b[1], a[1] };
	ASSERT_EQ(1, send_fds(sv[0], two, 2, 0));
	ASSERT_EQ(1, rx_take(ctx, sv[1], &x, sizeof(x.ctl.buf), MSG_CMSG_CLOEXEC,
			     "two descriptors"));
	if (fds_listed(&x.mh, got, 4) != 2)
		BROKEN_NEEDS("UNIX-SCM-RIGHTS", "the SCM_RIGHTS message arrives listing the two "
			     "descriptors sent (control data: %s)", cmsg_list(&x.mh));
	for (int i = 0; i < 2; i++)
		if (!cloexec(got[i]))
			FAIL("descriptor %d of 2 received with MSG_CMSG_CLOEXEC has FD_CLOEXEC clear",
			     i + 1);
	same_pipe(got[0], b[0], "the first descriptor received with MSG_CMSG_CLOEXEC");
	same_pipe(got[1], a[0], "the second descriptor received with MSG_CMSG_CLOEXEC");
	close(got[0]);
	close(got[1]);

	/* Record: MSG_CMSG_CLOEXEC on the sending side. */
	errno = 0;
	ssize_t w = send_fds(sv[0], &b[1], 1, MSG_CMSG_CLOEXEC);
	RECORD_ONCE("sendmsg_with_msg_cmsg_cloexec", "%s", w == 1 ? "sent" : sp_errno_name(errno));
	for (int i = 0; i < 2; i++) {
		close(a[i]);
		close(b[i]);
	}
	close(sv[0]);
	close(sv[1]);
}

/* ---- 6. CMSG-CTRUNC ------------------------------------------------------------- */

/* How many descriptors below 1024 are open. */
static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

/* The pipe read end r reads end of file: every write end is closed. */
static void pipe_reads_eof(int r, const char *what)
{
	char b;
	int ev = sp_poll(r, POLLIN, sp_wait_ms());
	if (!(ev & (POLLIN | POLLHUP)))
		FAIL("%s: the pipe never reads end of file (a copy of its write end stays open: "
		     "revents %s within %d ms)", what, sp_events_str(ev), sp_wait_ms());
	ssize_t r0 = read(r, &b, 1);
	if (r0 != 0)
		FAIL("%s: read() of the pipe returned %zd (%s), expected 0: a copy of its write end "
		     "stays open", what, r0, r0 < 0 ? sp_errno_name(errno) : "data");
}

SP_TEST(short_control_buffer_sets_ctrunc_and_closes_the_rest, "CMSG-CTRUNC", SP_NONE,
	.how = VIA_SYSCALLS)
{
	int sv[2], a[2], b[2], got[4];
	struct rx x;

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	sp_pipe(a); /* ends checked: PIPE-ENDS is a mechanism here */
	sp_pipe(b);
	int two[2] = { a[1], b[1] };
	ASSERT_EQ(1, send_fds(sv[0], two, 2, 0));
	close(a[1]);
	close(b[1]);

	/* Room for one: CMSG_LEN(sizeof(int)). */
	int before = open_fds();
	ASSERT_EQ(1, rx_take(ctx, sv[1], &x, CMSG_LEN(sizeof(int)), 0, "two descriptors"));
	ASSERT_EQ('F', x.data[0]);
	ASSERT_TRUE(x.mh.msg_flags & MSG_CTRUNC, "MSG_CTRUNC is set when two descriptors arrive "
		    "in room for one (msg_flags 0x%x)", x.mh.msg_flags);
	int listed = fds_listed(&x.mh, got, 1), added = open_fds() - before;
	if (added != listed)
		FAIL("the truncated message lists %d descriptor(s) but %d new descriptor(s) are "
		     "open in the receiver", listed, added);
	RECORD_ONCE("descriptors_delivered_in_room_for_one", "%d, msg_controllen %zu", listed,
		    (size_t)x.mh.msg_controllen);
	for (int i = 0; i < listed; i++)
		close(got[i]);
	pipe_reads_eof(a[0], "the first pipe, once the delivered descriptor is closed");
	pipe_reads_eof(b[0], "the second pipe, once the delivered descriptor is closed");
	close(a[0]);
	close(b[0]);

	/* No control buffer at all, and a plain read(). */
	for (int via_read = 0; via_read < 2; via_read++) {
		const char *what = via_read ? "read()" : "no control buffer";
		sp_pipe(a);
		ASSERT_EQ(1, send_fds(sv[0], &a[1], 1, 0));
		close(a[1]);
		before = open_fds();
		if (via_read) {
			char c = 0;
			EXPECT_EVENTS(sv[1], POLLIN, POLLIN, "the descriptor's message arrives");
			ASSERT_EQ(1, MUST_RETURN(read(sv[1], &c, 1), "read() of a message with SCM_RIGHTS"));
			ASSERT_EQ('F', c);
		} else {
			ASSERT_EQ(1, rx_take(ctx, sv[1], &x, 0, 0, "the descriptor"));
			ASSERT_EQ('F', x.data[0]);
			ASSERT_TRUE(x.mh.msg_flags & MSG_CTRUNC, "MSG_CTRUNC is set when a descriptor "
				    "arrives with no control buffer (msg_flags 0x%x)", x.mh.msg_flags);
		}
		added = open_fds() - before;
		if (added != 0)
			FAIL("%s: %d descriptor(s) were installed, expected none", what, added);
		pipe_reads_eof(a[0], what);
		close(a[0]);
	}
	close(sv[0]);
	close(sv[1]);
}

/* Over IPv4 loopback: the truncation is the point, not the family. */
SP_TEST(timestamp_into_cmsg_len_zero_sets_ctrunc, "CMSG-CTRUNC", SP_NONE, .how = VIA_NAMES)
{
	int c, s;
	struct rx x;
	long long before, after;
	struct sp_ctx v4 = *ctx;

	v4.fam = SP_IPV4;
	v4.af = AF_INET;
	v4.fam_name = "ipv4";
	udp_pair(&v4, &c, &s);
	sp_set_int(s, SOL_SOCKET, SO_TIMESTAMP, 1);
	stamped_datagram(&v4, c, s, &x, CMSG_LEN(0), &before, &after);
	ASSERT_TRUE(x.mh.msg_flags & MSG_CTRUNC, "MSG_CTRUNC is set when SCM_TIMESTAMP meets a "
		    "control buffer of CMSG_LEN(0) bytes (msg_flags 0x%x)", x.mh.msg_flags);
	ASSERT_MEM_EQ("tick", x.data, 4);
	close(c);
	close(s);
}

SP_MAIN("cmsg")
