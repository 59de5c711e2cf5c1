/*
 * unixx.c - Unix domain specifics (catalogue part 3, "Unix domain
 * specifics"; unix(7), socket(7), connect(2), send(2)).
 *
 *  1. UNIXX-OPTIONS         SO_DOMAIN, SO_PROTOCOL and SO_TYPE identify
 *                           AF_UNIX stream and datagram sockets, TCP and
 *                           UDP (over the item's family, protocol given as 0
 *                           or explicitly, on created, accepted and paired
 *                           sockets); SO_SNDBUF on AF_UNIX is positive; an
 *                           AF_UNIX stream still carries data whatever the
 *                           TCP options set on it returned.
 *  2. UNIXX-AUTOBIND        Linux: bind() with only sun_family autobinds to
 *                           an abstract name of length 8 (NUL and 5 hex
 *                           digits), different per socket, connectable; an
 *                           unbound SO_PASSCRED datagram sender is
 *                           autobound when it sends, and the receiver sees
 *                           that name.
 *  3. UNIXX-DGRAM-QLEN      non-blocking datagram sends to a receiver that
 *                           reads nothing stop with EAGAIN; Linux: the
 *                           sender is then not writable (poll, epoll) until
 *                           the receiver reads one, then it is and the next
 *                           send succeeds, and every datagram sent arrives;
 *                           a blocking send with SO_SNDTIMEO 200 ms fails
 *                           with EAGAIN no sooner than 180 ms.
 *  4. UNIXX-CONNECT-EAGAIN  Linux: a non-blocking connect to a stream
 *                           listener with a full backlog fails with EAGAIN
 *                           (not EINPROGRESS), again when retried, and
 *                           succeeds once one connection is accepted.
 *
 * Socket files live in a private directory made with mkdtemp() under
 * $TMPDIR (or /tmp), removed when the item ends.
 *
 * Platform-defined (recorded): TCP_NODELAY, TCP_KEEPIDLE and SO_KEEPALIVE
 * on AF_UNIX; the names an unbound stream client and an unbound datagram
 * sender without SO_PASSCRED get; datagrams queued before EAGAIN, and on a
 * socketpair; connects before EAGAIN; a blocking connect to the full
 * listener with SO_SNDTIMEO; whether a connected, unaccepted client is
 * writable.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/un.h>

static int unix_socket(int type)
{
	return (int)ASSERT_SYS(socket(AF_UNIX, type, 0));
}

/* ---- a private directory for socket files ------------------------------------ */

static char dir[PATH_MAX / 2];

static void remove_dir(void)
{
	if (!dir[0] || sp_in_child())
		return;
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *e;
		char p[PATH_MAX + 256];
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
				unlink(p);
			}
		}
		closedir(d);
	}
	rmdir(dir);
	dir[0] = '\0';
}

/* A socket file `tag` in the item's private directory (made on first use). */
static socklen_t path_name(struct sockaddr_un *sa, const char *tag)
{
	if (!dir[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/sp-unixx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		REQUIRE(mkdtemp(dir) != NULL, "a private directory for socket files (mkdtemp: %s)",
			sp_errno_name(errno));
		atexit(remove_dir);
	}
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	int n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", dir, tag);
	REQUIRE(n > 0 && (size_t)n < sizeof(sa->sun_path), "a socket path shorter than sun_path");
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
}

static int bound_at(int type, const char *tag, struct sockaddr_un *sa, socklen_t *len)
{
	int fd = unix_socket(type);
	*len = path_name(sa, tag);
	ASSERT_SYS(bind(fd, (struct sockaddr *)sa, *len));
	return fd;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* ---- 1. UNIXX-OPTIONS ---------------------------------------------------------- */

static int sockopt(int fd, int opt, const char *name, const char *what)
{
	int v = -1;
	socklen_t len = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) < 0)
		FAIL("%s: getsockopt(%s) failed with %s", what, name, sp_errno_name(errno));
	ASSERT_EQ(sizeof(int), len);
	return v;
}

static void identifies(int fd, int domain, int protocol, int type, const char *what)
{
	int d = sockopt(fd, SO_DOMAIN, "SO_DOMAIN", what);
	int p = sockopt(fd, SO_PROTOCOL, "SO_PROTOCOL", what);
	int t = sockopt(fd, SO_TYPE, "SO_TYPE", what);
	if (d != domain || p != protocol || t != type)
		FAIL("%s: SO_DOMAIN, SO_PROTOCOL, SO_TYPE read %d, %d, %d, expected %d, %d, %d", what,
		     d, p, t, domain, protocol, type);
}

SP_TEST(socket_options_identify_unix_and_inet_sockets, "UNIXX-OPTIONS", SP_INET)
{
	int af = ctx->af;
	const char *fam = ctx->fam_name;
	char what[64];

	/* AF_UNIX: created, paired and accepted. */
	int us = unix_socket(SOCK_STREAM), ud = unix_socket(SOCK_DGRAM), sv[2];
	identifies(us, AF_UNIX, 0, SOCK_STREAM, "AF_UNIX stream");
	identifies(ud, AF_UNIX, 0, SOCK_DGRAM, "AF_UNIX datagram");
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	identifies(sv[1], AF_UNIX, 0, SOCK_DGRAM, "AF_UNIX datagram socketpair end");
	close(sv[0]);
	close(sv[1]);
	int sndbuf = sockopt(us, SO_SNDBUF, "SO_SNDBUF", "AF_UNIX stream");
	ASSERT_TRUE(sndbuf > 0, "SO_SNDBUF on an AF_UNIX stream socket: expected positive, "
		    "observed %d", sndbuf);
	sndbuf = sockopt(ud, SO_SNDBUF, "SO_SNDBUF", "AF_UNIX datagram");
	ASSERT_TRUE(sndbuf > 0, "SO_SNDBUF on an AF_UNIX datagram socket: expected positive, "
		    "observed %d", sndbuf);
	close(us);
	close(ud);

	/* TCP and UDP over the family, protocol 0 or named. */
	for (int named = 0; named < 2; named++) {
		int t = (int)ASSERT_SYS(socket(af, SOCK_STREAM, named ? IPPROTO_TCP : 0));
		int u = (int)ASSERT_SYS(socket(af, SOCK_DGRAM, named ? IPPROTO_UDP : 0));
		snprintf(what, sizeof(what), "TCP over %s (protocol %s)", fam, named ? "named" : "0");
		identifies(t, af, IPPROTO_TCP, SOCK_STREAM, what);
		snprintf(what, sizeof(what), "UDP over %s (protocol %s)", fam, named ? "named" : "0");
		identifies(u, af, IPPROTO_UDP, SOCK_DGRAM, what);
		close(t);
		close(u);
	}
	int c, s;
	sp_tcp_pair(ctx, &c, &s);
	snprintf(what, sizeof(what), "accepted TCP over %s", fam);
	identifies(s, af, IPPROTO_TCP, SOCK_STREAM, what);
	close(c);
	close(s);

	/* TCP options on an AF_UNIX stream: whatever they return, data flows. */
	struct sockaddr_un sa;
	socklen_t len;
	int l = bound_at(SOCK_STREAM, "opts", &sa, &len);
	ASSERT_SYS(listen(l, 2));
	c = unix_socket(SOCK_STREAM);
	int one = 1, idle = 30;
	errno = 0;
	int rn = setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	RECORD("unix_tcp_nodelay", "%s", rn == 0 ? "0" : sp_errno_name(errno));
	errno = 0;
	int rk = setsockopt(c, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	RECORD("unix_tcp_keepidle", "%s", rk == 0 ? "0" : sp_errno_name(errno));
	errno = 0;
	int ra = setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	RECORD("unix_so_keepalive", "%s", ra == 0 ? "0" : sp_errno_name(errno));
	ASSERT_SYS(connect(c, (struct sockaddr *)&sa, len));
	s = (int)ASSERT_SYS(accept(l, NULL, NULL));
	identifies(s, AF_UNIX, 0, SOCK_STREAM, "accepted AF_UNIX stream");
	char buf[8];
	ASSERT_EQ(5, send(c, "hello", 5, MSG_NOSIGNAL));
	EXPECT_EVENTS(s, POLLIN, POLLIN, "the AF_UNIX stream with TCP "
		    "options carries data");
	ASSERT_EQ(5, recv(s, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("hello", buf, 5);
	ASSERT_EQ(3, send(s, "bye", 3, MSG_NOSIGNAL));
	EXPECT_EVENTS(c, POLLIN, POLLIN, "and back");
	ASSERT_EQ(3, recv(c, buf, sizeof(buf), 0));
	ASSERT_MEM_EQ("bye", buf, 3);
	close(c);
	close(s);
	close(l);
}

/* ---- 2. UNIXX-AUTOBIND ----------------------------------------------------------- */

#define AUTOBOUND_LEN ((socklen_t)(offsetof(struct sockaddr_un, sun_path) + 6))

/* An autobound name: length 8, a NUL, 5 characters of [0-9a-f]. */
static void is_autobound_name(const struct sockaddr_un *sa, socklen_t len, const char *what)
{
	if (len != AUTOBOUND_LEN)
		FAIL("%s: the name has length %u, expected %u (a NUL and 5 characters)", what,
		     (unsigned)len, (unsigned)AUTOBOUND_LEN);
	ASSERT_EQ(AF_UNIX, sa->sun_family);
	ASSERT_TRUE(sa->sun_path[0] == '\0', "%s: the name is abstract (starts with NUL)", what);
	for (int i = 1; i < 6; i++) {
		char ch = sa->sun_path[i];
		ASSERT_TRUE((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'),
			    "%s: character %d of the name is one of [0-9a-f] (0x%02x)", what, i,
			    (unsigned char)ch);
	}
}

static socklen_t name_of(int fd, struct sockaddr_un *sa, int peer)
{
	socklen_t len = sizeof(*sa);
	memset(sa, 0x55, sizeof(*sa));
	if (peer)
		ASSERT_SYS(getpeername(fd, (struct sockaddr *)sa, &len));
	else
		ASSERT_SYS(getsockname(fd, (struct sockaddr *)sa, &len));
	return len;
}

SP_TEST(unix_bind_without_name_autobinds, "UNIXX-AUTOBIND", SP_NONE)
{
	(void)ctx;
	struct sockaddr_un a, b, got;
	sa_family_t fam = AF_UNIX;
	int l = unix_socket(SOCK_STREAM), o = unix_socket(SOCK_STREAM);

	if (bind(l, (struct sockaddr *)&fam, sizeof(fam)) < 0)
		UNSUPPORTED("autobind (bind with an address of sizeof(sa_family_t): %s)",
			    sp_errno_name(errno));
	socklen_t al = name_of(l, &a, 0);
	is_autobound_name(&a, al, "autobound stream socket");
	ASSERT_SYS(bind(o, (struct sockaddr *)&fam, sizeof(fam)));
	socklen_t bl = name_of(o, &b, 0);
	is_autobound_name(&b, bl, "second autobound socket");
	ASSERT_TRUE(memcmp(a.sun_path, b.sun_path, 6) != 0, "two sockets autobind to different "
		    "names (both \"\\0%.5s\")", a.sun_path + 1);

	/* A client connects to the autobound name. */
	ASSERT_SYS(listen(l, 2));
	int c = unix_socket(SOCK_STREAM);
	if (connect(c, (struct sockaddr *)&a, al) < 0)
		FAIL("connect() to the autobound name \"\\0%.5s\" failed with %s", a.sun_path + 1,
		     sp_errno_name(errno));
	int s = (int)ASSERT_SYS(accept(l, NULL, NULL));
	socklen_t gl = name_of(c, &got, 1);
	ASSERT_EQ(al, gl);
	ASSERT_MEM_EQ(a.sun_path, got.sun_path, 6);
	ASSERT_EQ(2, send(c, "hi", 2, MSG_NOSIGNAL));
	char buf[8];
	EXPECT_EVENTS(s, POLLIN, POLLIN, "data over the autobound name");
	ASSERT_EQ(2, recv(s, buf, sizeof(buf), 0));
	/* Record: the unbound connecting client's names. */
	socklen_t cl = name_of(c, &got, 0), pl = name_of(s, &got, 1);
	RECORD("unbound_stream_client_name", "getsockname length %u, server's getpeername "
	       "length %u", (unsigned)cl, (unsigned)pl);
	close(c);
	close(s);
	close(l);
	close(o);

	/* An unbound SO_PASSCRED datagram sender is autobound by sending. */
	int rx = unix_socket(SOCK_DGRAM), tx = unix_socket(SOCK_DGRAM), one = 1;
	ASSERT_SYS(bind(rx, (struct sockaddr *)&fam, sizeof(fam)));
	socklen_t rl = name_of(rx, &a, 0);
	ASSERT_SYS(setsockopt(tx, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)));
	ASSERT_EQ(1, sendto(tx, "d", 1, 0, (struct sockaddr *)&a, rl));
	struct sockaddr_un from, mine;
	socklen_t fl = sizeof(from);
	memset(&from, 0x55, sizeof(from));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the datagram arrives");
	ASSERT_EQ(1, recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl));
	is_autobound_name(&from, fl, "the SO_PASSCRED sender's address as recvfrom() gives it");
	socklen_t ml = name_of(tx, &mine, 0);
	ASSERT_EQ(fl, ml);
	ASSERT_TRUE(!memcmp(mine.sun_path, from.sun_path, 6), "recvfrom() gives the sender's own "
		    "name (\"\\0%.5s\" vs getsockname \"\\0%.5s\")", from.sun_path + 1,
		    mine.sun_path + 1);
	close(tx);
	/* Record: without SO_PASSCRED. */
	tx = unix_socket(SOCK_DGRAM);
	ASSERT_EQ(1, sendto(tx, "e", 1, 0, (struct sockaddr *)&a, rl));
	fl = sizeof(from);
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the datagram arrives");
	ASSERT_EQ(1, recvfrom(rx, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl));
	RECORD("unbound_dgram_sender_name", "recvfrom address length %u", (unsigned)fl);
	close(tx);
	close(rx);
}

/* ---- 3. UNIXX-DGRAM-QLEN ---------------------------------------------------------- */

#define QLEN_BOUND 2048

SP_TEST(unix_datagrams_have_flow_control, "UNIXX-DGRAM-QLEN", SP_NONE)
{
	(void)ctx;
	struct sockaddr_un sa;
	socklen_t len;
	int rx = bound_at(SOCK_DGRAM, "qlen", &sa, &len);
	int tx = unix_socket(SOCK_DGRAM | SOCK_NONBLOCK);
	char b = 'q', buf[8];

	ASSERT_SYS(connect(tx, (struct sockaddr *)&sa, len));
	int sent = 0;
	for (;;) {
		errno = 0;
		ssize_t r = send(tx, &b, 1, 0);
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r != 1)
			FAIL("non-blocking send #%d to a receiver that reads nothing returned %zd (%s), "
			     "expected 1 or EAGAIN", sent + 1, r, sp_errno_name(errno));
		if (++sent >= QLEN_BOUND)
			FAIL("%d non-blocking sends to a receiver that reads nothing all succeeded: no "
			     "flow control (expected EAGAIN)", sent);
	}
	RECORD("queued_before_eagain", "%d", sent);

	/* Linux: not writable while full, by poll and by epoll. */
	struct pollfd p = { tx, POLLOUT, 0 };
	ASSERT_SYS(poll(&p, 1, 0));
	if (p.revents & POLLOUT)
		FAIL("poll() shows the sender writable (revents 0x%x) while the receiver's queue is "
		     "full", p.revents);
	int ep = (int)ASSERT_SYS(epoll_create1(EPOLL_CLOEXEC));
	struct epoll_event ev = { .events = EPOLLOUT, .data.fd = tx }, out;
	ASSERT_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, tx, &ev));
	int n = (int)ASSERT_SYS(epoll_wait(ep, &out, 1, 0));
	if (n != 0)
		FAIL("epoll reports the sender (events 0x%x) while the receiver's queue is full",
		     out.events);

	/* A blocking send waits for its SO_SNDTIMEO, then EAGAIN. */
	struct timeval tv = { 0, 200000 };
	ASSERT_SYS(setsockopt(tx, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	sp_set_nonblock(tx, 0);
	long long t0 = now_ms();
	errno = 0;
	ssize_t r = MUST_RETURN(send(tx, &b, 1, 0), "send() to the full queue with SO_SNDTIMEO "
				"200 ms");
	int e = errno;
	long long took = now_ms() - t0;
	if (r != -1 || (e != EAGAIN && e != EWOULDBLOCK))
		FAIL("a blocking send to the full queue with SO_SNDTIMEO 200 ms returned %zd (%s), "
		     "expected EAGAIN", r, r < 0 ? sp_errno_name(e) : "sent");
	if (took < 180)
		FAIL("a blocking send to the full queue failed with EAGAIN after %lld ms, expected "
		     "no sooner than 180 ms (SO_SNDTIMEO 200 ms)", took);
	sp_set_nonblock(tx, 1);

	/* The receiver reads one: writable, and the next send goes. */
	ASSERT_EQ(1, recv(rx, buf, sizeof(buf), 0));
	int rev = sp_poll(tx, POLLOUT, sp_wait_ms());
	if (!(rev & POLLOUT))
		FAIL("the sender is not writable within %d ms after the receiver read a datagram",
		     sp_wait_ms());
	n = (int)ASSERT_SYS(epoll_wait(ep, &out, 1, sp_wait_ms()));
	if (n != 1 || !(out.events & EPOLLOUT))
		FAIL("epoll does not report EPOLLOUT after the receiver read a datagram (%d events)",
		     n);
	ASSERT_EQ(1, send(tx, &b, 1, 0));
	close(ep);

	/* Every datagram sent arrives. */
	int got = 1;
	while (recv(rx, buf, sizeof(buf), MSG_DONTWAIT) == 1)
		got++;
	if (got != sent + 1)
		FAIL("the receiver got %d datagrams, %d were sent (none may be dropped)", got,
		     sent + 1);
	close(tx);
	close(rx);

	/* Record: a socketpair. */
	int sv[2], m = 0;
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv));
	while (m < QLEN_BOUND && send(sv[0], &b, 1, 0) == 1)
		m++;
	RECORD("socketpair_queued_before_eagain", "%d (%s)", m, sp_errno_name(errno));
	close(sv[0]);
	close(sv[1]);
}

/* ---- 4. UNIXX-CONNECT-EAGAIN ------------------------------------------------------- */

#define MAXCONN 64

SP_TEST(unix_connect_to_full_backlog_fails_with_eagain, "UNIXX-CONNECT-EAGAIN", SP_NONE)
{
	(void)ctx;
	struct sockaddr_un sa;
	socklen_t len;
	int l = bound_at(SOCK_STREAM, "backlog", &sa, &len);
	int fds[MAXCONN], n = 0, last = -1;

	ASSERT_SYS(listen(l, 1));
	for (; n < MAXCONN; n++) {
		fds[n] = unix_socket(SOCK_STREAM | SOCK_NONBLOCK);
		errno = 0;
		if (connect(fds[n], (struct sockaddr *)&sa, len) == 0)
			continue;
		if (errno == EINPROGRESS)
			FAIL("non-blocking connect #%d to a full AF_UNIX listener failed with "
			     "EINPROGRESS, expected EAGAIN", n + 1);
		if (errno != EAGAIN)
			FAIL("non-blocking connect #%d to a full AF_UNIX listener failed with %s, "
			     "expected EAGAIN", n + 1, sp_errno_name(errno));
		last = fds[n++];
		break;
	}
	REQUIRE(last >= 0, "a full backlog: %d connects to listen(fd, 1) all succeeded", MAXCONN);
	RECORD("connects_before_eagain", "%d", n - 1);
	if (n >= 2) {
		int ev = sp_poll(fds[0], POLLOUT, 0);
		RECORD("unaccepted_client_writable", "%s", ev & POLLOUT ? "POLLOUT" : "no POLLOUT");
	}
	ASSERT_ERRNO(connect(last, (struct sockaddr *)&sa, len), EAGAIN);

	int a = (int)ASSERT_SYS(accept(l, NULL, NULL));
	errno = 0;
	int r = connect(last, (struct sockaddr *)&sa, len);
	if (r != 0)
		FAIL("connect() retried after one accept() returned %d (%s), expected 0", r,
		     sp_errno_name(errno));
	/* Record: a blocking connect to the full listener with SO_SNDTIMEO. */
	int b = unix_socket(SOCK_STREAM);
	struct timeval tv = { 0, 50000 };
	ASSERT_SYS(setsockopt(b, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)));
	long long t0 = now_ms();
	errno = 0;
	r = BOUNDED(connect(b, (struct sockaddr *)&sa, len));
	int e = errno;
	long long took = now_ms() - t0;
	RECORD("blocking_connect_full_sndtimeo", "%s after %s", sp_bound_expired() ?
	       "still blocked" : r == 0 ? "0" : sp_errno_name(e),
	       took >= 40 ? "its 50 ms timeout" : "no wait");
	close(b);
	/* The retried one is in the queue: accept it and talk. */
	int a2 = (int)ASSERT_SYS(accept(l, NULL, NULL));
	int a3 = accept4(l, NULL, NULL, SOCK_NONBLOCK);
	int peer = -1;
	char buf[4];
	ASSERT_EQ(1, send(last, "z", 1, MSG_NOSIGNAL));
	int cand[] = { a, a2, a3 };
	for (int i = 0; i < 3 && peer < 0; i++)
		if (cand[i] >= 0 && recv(cand[i], buf, 1, MSG_DONTWAIT) == 1)
			peer = cand[i];
	ASSERT_TRUE(peer >= 0, "a byte sent on the retried connection: expected at one of the "
		    "accepted sockets, observed at none");
	for (int i = 0; i < 3; i++)
		if (cand[i] >= 0)
			close(cand[i]);
	for (int i = 0; i < n; i++)
		close(fds[i]);
	close(l);
}

SP_MAIN("unixx")
