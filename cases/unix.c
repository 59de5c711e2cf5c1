/*
 * unix.c - Unix domain sockets (catalogue part 2, "Unix domain sockets";
 * unix(7), socketpair(2), cmsg(3)).
 *
 *  1. UNIX-SOCKETPAIR          socketpair(AF_UNIX, SOCK_STREAM) gives two
 *                              connected sockets; data flows both ways
 *                              (every send call into every receive call,
 *                              io_uring, splice, sendfile and the
 *                              multi-message calls included); the peer's
 *                              close reads as 0.
 *  2. UNIX-STREAM-NO-BOUNDARY  4 writes of 10 bytes are read as 40 by one
 *                              read, and one write of 40 by four reads of
 *                              10 (a socketpair and a bound/connected pair,
 *                              every read call).
 *  3. UNIX-DGRAM-BOUNDARY      writes of 3, 5 and 10 bytes are read as 3, 5
 *                              and (into a 4-byte buffer) 4 with MSG_TRUNC;
 *                              the rest of that message is gone.
 *  4. UNIX-SEQPACKET-BOUNDARY  the same reads on SOCK_SEQPACKET, which is
 *                              connection-oriented: send before connect is
 *                              ENOTCONN, after the peer closes every read
 *                              call returns 0 and send is EPIPE.
 *  5. UNIX-SCM-RIGHTS          a descriptor sent with SCM_RIGHTS to another
 *                              process is the same open file description:
 *                              reads through either end move one offset
 *                              (sent and received through every call that
 *                              carries control messages: sendmsg/recvmsg,
 *                              sendmmsg/recvmmsg, io_uring SENDMSG/RECVMSG).
 *  6. UNIX-PEERCRED            Linux: SO_PEERCRED on an accepted connection
 *                              gives the connecting process's pid, uid and
 *                              gid; on the client, the listener's.
 *  7. UNIX-PATH-FILE           bind() to a path creates a socket file that
 *                              stays after close(): a new bind is
 *                              EADDRINUSE until unlink() (stream and dgram;
 *                              bind() and io_uring BIND, Linux 6.11).
 *  8. UNIX-CONNECT-ERRORS      connect() to a stale socket file is
 *                              ECONNREFUSED, to a missing path ENOENT,
 *                              blocking or not (stream, seqpacket, dgram),
 *                              by the system call and by io_uring CONNECT.
 *  9. UNIX-ABSTRACT            Linux: a name whose first byte is NUL creates
 *                              no file, connects (by connect/accept or io_uring
 *                              CONNECT/ACCEPT) and carries data (every write
 *                              and read call), is EADDRINUSE while bound and
 *                              free once closed.
 *
 * Pathname sockets live in a private directory made with mkdtemp() under
 * $TMPDIR (or /tmp), which each test removes; UNIX-ABSTRACT uses the
 * abstract namespace, with a name built from that directory's path so it
 * is unique to the run.
 *
 * Platform-defined (recorded): SO_TYPE of a socketpair's ends (asserted
 * by OPT-SO-TYPE for TCP and UDP); what getpeername() returns on a socketpair
 * (Linux: success, unnamed, length 2); what recv(MSG_TRUNC) returns on a
 * datagram (Linux: the full length); SEQPACKET support; whether abstract
 * names are per network namespace (Linux: yes); what a datagram sendto()
 * to a stale socket file and to a missing path gives (Linux: ECONNREFUSED,
 * ENOENT; the Must names connect()).
 */
#define _GNU_SOURCE
#include "sp.h"
#include "sp_entry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>

/* ---- the private directory -------------------------------------------- */

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

/* A path inside the test's private directory (made on first use). */
static const char *in_dir(const char *name)
{
	static char paths[4][PATH_MAX];
	static int next;

	if (!dir[0]) {
		const char *tmp = getenv("TMPDIR");
		snprintf(dir, sizeof(dir), "%s/sp-unix-XXXXXX", tmp && *tmp ? tmp : "/tmp");
		REQUIRE(mkdtemp(dir) != NULL, "a private directory for socket files (mkdtemp: %s)",
			sp_errno_name(errno));
		atexit(remove_dir);
	}
	char *p = paths[next++ % 4];
	snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

static socklen_t path_addr(struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	REQUIRE(strlen(path) < sizeof(sa->sun_path), "a socket path shorter than sun_path: %s",
		path);
	strcpy(sa->sun_path, path);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
}

static int unix_socket(int type)
{
	return (int)ASSERT_SYS(socket(AF_UNIX, type, 0));
}

static int bound_at(int type, const char *path)
{
	struct sockaddr_un sa;
	socklen_t len = path_addr(&sa, path);
	int fd = unix_socket(type);
	ASSERT_SYS(bind(fd, (struct sockaddr *)&sa, len));
	return fd;
}

static void connect_to(int fd, const char *path)
{
	struct sockaddr_un sa;
	socklen_t len = path_addr(&sa, path);
	ASSERT_SYS(connect(fd, (struct sockaddr *)&sa, len));
}

/* A connected pair of the type through a listener bound to a path. */
static void path_pair(int type, const char *name, int *client, int *server)
{
	const char *path = in_dir(name);
	int l = bound_at(type, path);
	ASSERT_SYS(listen(l, 4));
	*client = unix_socket(type);
	connect_to(*client, path);
	errno = 0;
	*server = accept(l, NULL, NULL);
	/* accept() handing out the connection is a mechanism here (the
	 * catalogue's TCP-LISTEN-ACCEPT-SEQUENCE, for any listener). */
	if (*server < 0 && errno != EINTR) {
		char obs[48];
		snprintf(obs, sizeof(obs), "-1 (%s)", sp_errno_name(errno));
		sp_needs_at(__FILE__, __LINE__, "TCP-LISTEN-ACCEPT-SEQUENCE",
			    "accept() with a connection queued", "a new socket", obs, errno);
	}
	ASSERT_SYS(*server);
	close(l);
}

/* The pair carries bytes both ways (UNIX-SOCKETPAIR's Must, a mechanism
 * of the items that use a pair): one byte each way before they start. */
static void pair_both_ways(const int sv[2])
{
	for (int d = 0; d < 2; d++) {
		char k = 'k', got = 0;
		ssize_t w = send(sv[d], &k, 1, MSG_NOSIGNAL | MSG_DONTWAIT), r = -1;
		if (w == 1 && (sp_poll(sv[1 - d], POLLIN, sp_wait_ms()) & POLLIN))
			r = recv(sv[1 - d], &got, 1, MSG_DONTWAIT);
		if (w != 1 || r != 1)
			sp_needs_at(__FILE__, __LINE__, "UNIX-SOCKETPAIR", d ? "a byte from sv[1] to sv[0]"
				    : "a byte from sv[0] to sv[1]", "it arrives", "it did not", 0);
	}
}

/* ---- every send and receive call --------------------------------------- */

/* The calls (enum sp_io, the .read axis), made by sp_io_send/sp_io_recv:
 * on streams every call (SP_EVERY_READ/SP_EVERY_WRITE: the classic five,
 * recvmmsg/sendmmsg, splice, sendfile, io_uring READ/READV/RECV/RECVMSG
 * and their write twins); on message sockets the calls that keep a
 * message whole (SP_DGRAM_READS/WRITES: readv/writev, splice and sendfile
 * are left out, they know no boundaries). */

/* The k-th call of a set, cycling over the calls this system has. */
#define nth_call(set, k, out) sp_io_nth(set, k, out, SP_IO_RECV)

static ssize_t send_via(int api, int fd, const void *buf, size_t n)
{
	return sp_io_send(api, fd, buf, n, MSG_NOSIGNAL, NULL, 0);
}

/* Receive through api once something is there (bounded wait); *flags gets
 * recvmsg's msg_flags, -1 from the other calls. */
static ssize_t recv_via(int api, int fd, void *buf, size_t n, int *flags)
{
	struct sp_got got;
	EXPECT_EVENTS(fd, POLLIN, POLLIN | POLLHUP,
		    "something to %s", sp_io_in_name(api));
	ssize_t r = sp_io_recv(api, fd, buf, n, 0, &got);
	*flags = got.has_flags ? got.msg_flags : -1;
	return r;
}

/* Nothing more is queued: a non-blocking receive is EAGAIN (not EOF). */
static void nothing_queued(int fd)
{
	char c;
	ASSERT_ERRNO(recv(fd, &c, 1, MSG_DONTWAIT), EAGAIN);
}

/* 1. A socketpair is two connected sockets; data flows both ways. */
SP_TEST(unix_socketpair_is_connected_both_ways, "UNIX-SOCKETPAIR", SP_NONE)
{
	(void)ctx;
	int sv[2], type = 0;
	socklen_t tl = sizeof(type);
	char buf[16];

	/* SIGPIPE is not this ID's business (MSG_NOSIGNAL's suppression is
	 * FLAG-NOSIGNAL's): ignored. */
	struct sigaction ign = { .sa_handler = SIG_IGN };
	ASSERT_SYS(sigaction(SIGPIPE, &ign, NULL));
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	ASSERT_TRUE(sv[0] != sv[1], "two distinct descriptors (observed %d and %d)", sv[0], sv[1]);
	/* SO_TYPE is OPT-SO-TYPE's: recorded. */
	for (int i = 0; i < 2; i++) {
		ASSERT_SYS(getsockopt(sv[i], SOL_SOCKET, SO_TYPE, &type, &tl));
		RECORD_ONCE("socketpair_so_type", "%s", type == SOCK_STREAM ? "SOCK_STREAM" : "other");
	}
	/* Both directions, every send call into every receive call. */
	enum { CALLS = 12 }; /* the write calls of SP_EVERY_WRITE */
	for (int d = 0; d < 2; d++) {
		int a = sv[d], b = sv[1 - d];
		for (int i = 0; i < CALLS; i++) {
			char msg[4] = { (char)('0' + d), '>', (char)('1' - d), (char)('a' + i) };
			int flags, wapi = nth_call(SP_EVERY_WRITE, i + 1, 1);
			nothing_queued(b);
			/* a short writev is FLAG-WRITEV-GATHER's (SP_OUT_EXACT says so) */
			SP_OUT_EXACT(wapi, a, msg, 4);
			ASSERT_EQ(4, recv_via(nth_call(SP_EVERY_READ, i, 0), b, buf, sizeof(buf), &flags));
			ASSERT_MEM_EQ(msg, buf, 4);
		}
	}
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	int pr = getpeername(sv[0], (struct sockaddr *)&peer, &plen);
	if (pr == 0)
		RECORD("getpeername", "success, family %d, length %u", peer.ss_family, (unsigned)plen);
	else
		RECORD("getpeername", "fails with %s", sp_errno_name(errno));
	/* Connected: the peer's close reads as end of input, sends fail. */
	ASSERT_SYS(close(sv[1]));
	int flags;
	ASSERT_EQ(0, recv_via(SP_IO_READ, sv[0], buf, sizeof(buf), &flags));
	ASSERT_ERRNO(send(sv[0], "x", 1, MSG_NOSIGNAL), EPIPE);
	close(sv[0]);
}

/* Four writes of ten bytes, one read of 40; one write of 40, four reads. */
static void check_stream_no_boundaries(const char *kind, int a, int b, int api)
{
	char buf[1024];
	int flags;

	for (int i = 0; i < 4; i++) {
		char rec[11] = "abcdefgh";
		rec[8] = (char)('0' + api % 10);
		rec[9] = (char)('0' + i);
		SP_OUT_EXACT(nth_call(SP_EVERY_WRITE, api + i, 1), a, rec, 10);
	}
	ASSERT_EQ(40, sp_wait_inq(b, 40));
	ssize_t n = recv_via(api, b, buf, sizeof(buf), &flags);
	if (n != 40)
		FAIL("%s: 4 writes of 10 bytes, one %s of 1024 returned %zd, expected 40",
		     kind, sp_io_in_name(api), n);
	for (int i = 0; i < 4; i++) {
		ASSERT_MEM_EQ("abcdefgh", buf + 10 * i, 8);
		ASSERT_EQ('0' + i, buf[10 * i + 9]);
	}
	nothing_queued(b);

	char one[41];
	for (int i = 0; i < 40; i++)
		one[i] = (char)('A' + i);
	SP_OUT_EXACT(api, b, one, 40);
	for (int i = 0; i < 4; i++) {
		n = recv_via(api, a, buf, 10, &flags);
		/* readv filling its first buffer only (5 of 5 + 5) is
		 * FLAG-READV-SCATTER's deviation, not this ID's */
		if (api == SP_IO_VEC && n == 5)
			BROKEN_NEEDS("FLAG-READV-SCATTER", "%s: readv() into two buffers of 5 returned 5 "
				     "with 10 bytes queued: only the first buffer", kind);
		if (n != 10)
			FAIL("%s: one write of 40, %s #%d of 10 returned %zd, expected 10",
			     kind, sp_io_in_name(api), i + 1, n);
		ASSERT_MEM_EQ(one + 10 * i, buf, 10);
	}
	nothing_queued(a);
}

/* 2. An AF_UNIX stream keeps no message boundaries. */
SP_TEST(unix_stream_keeps_no_boundaries, "UNIX-STREAM-NO-BOUNDARY", SP_NONE, .read = SP_EVERY_READ)
{
	int sv[2], c, s;

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	pair_both_ways(sv);
	check_stream_no_boundaries("socketpair", sv[0], sv[1], ctx->read);
	close(sv[0]);
	close(sv[1]);
	path_pair(SOCK_STREAM, "stream", &c, &s);
	check_stream_no_boundaries("connected path", c, s, ctx->read);
	close(c);
	close(s);
	remove_dir();
}

/* Messages of 3, 5 and 10 bytes read as 3, 5 and (4-byte buffer) 4 with
 * MSG_TRUNC; the 10-byte message's rest is gone: the next read is the
 * next message. Every send and receive call. */
static void check_message_boundaries(const char *kind, int tx, int rx, int api)
{
	static const char *const msgs[] = { "abc", "defgh", "ijklmnopqr", "zz" };
	char buf[64];
	int flags;

	for (int i = 0; i < 4; i++) {
		size_t len = strlen(msgs[i]);
		int wapi = nth_call(SP_DGRAM_WRITES, api + i, 1);
		ssize_t w = send_via(wapi, tx, msgs[i], len);
		if (w != (ssize_t)len)
			FAIL("%s: %s of %zu bytes returned %zd (%s)", kind,
			     sp_io_out_name(wapi), len, w, sp_errno_name(errno));
	}
	ssize_t n = recv_via(api, rx, buf, sizeof(buf), &flags);
	if (n != 3)
		FAIL("%s: first %s returned %zd bytes, expected the 3-byte message", kind,
		     sp_io_in_name(api), n);
	ASSERT_MEM_EQ("abc", buf, 3);
	if (flags != -1)
		ASSERT_EQ(0, flags & MSG_TRUNC);
	n = recv_via(api, rx, buf, sizeof(buf), &flags);
	if (n != 5)
		FAIL("%s: second %s returned %zd bytes, expected the 5-byte message", kind,
		     sp_io_in_name(api), n);
	ASSERT_MEM_EQ("defgh", buf, 5);
	n = recv_via(api, rx, buf, 4, &flags);
	if (n != 4)
		FAIL("%s: %s into 4 bytes returned %zd, expected 4", kind, sp_io_in_name(api), n);
	ASSERT_MEM_EQ("ijkl", buf, 4);
	if (flags != -1)
		ASSERT_TRUE(flags & MSG_TRUNC, "%s: %s flags the cut message MSG_TRUNC "
			    "(flags 0x%x)", kind, sp_io_in_name(api), flags);
	n = recv_via(api, rx, buf, sizeof(buf), &flags);
	if (n != 2 || memcmp(buf, "zz", 2) != 0)
		FAIL("%s: after the cut message, %s returned %zd bytes ('%.*s'), expected the "
		     "next message 'zz' (the rest is discarded)", kind, sp_io_in_name(api), n,
		     n > 0 ? (int)n : 0, buf);
	nothing_queued(rx);
	/* Record: recv(MSG_TRUNC) reports the message's real length (Linux). */
	static int recorded;
	if (recorded++)
		return;
	char small[4];
	ASSERT_EQ(10, send(tx, "0123456789", 10, MSG_NOSIGNAL));
	EXPECT_EVENTS(rx, POLLIN, POLLIN, "the message arrives");
	ssize_t full = recv(rx, small, sizeof(small), MSG_TRUNC);
	RECORD("recv_msg_trunc_returns", "%zd for a 10-byte message into 4 bytes", full);
}

/* 3. AF_UNIX SOCK_DGRAM keeps boundaries and cuts long messages. */
SP_TEST(unix_dgram_keeps_boundaries, "UNIX-DGRAM-BOUNDARY", SP_NONE, .read = SP_DGRAM_READS)
{
	int sv[2];

	ASSERT_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	check_message_boundaries("dgram socketpair", sv[0], sv[1], ctx->read);
	close(sv[0]);
	close(sv[1]);

	/* A receiver bound to a path, a sender connected to it. */
	const char *path = in_dir("dgram");
	int rx = bound_at(SOCK_DGRAM, path), tx = unix_socket(SOCK_DGRAM);
	connect_to(tx, path);
	check_message_boundaries("dgram by path", tx, rx, ctx->read);
	close(tx);
	close(rx);
	remove_dir();
}

/* 4. SOCK_SEQPACKET: boundaries like datagrams, a connection like streams. */
SP_TEST(unix_seqpacket_keeps_boundaries_and_connection, "UNIX-SEQPACKET-BOUNDARY", SP_NONE,
	.read = SP_DGRAM_READS)
{
	int probe = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (probe < 0) {
		RECORD_ONCE("seqpacket", "unsupported: socket() fails with %s", sp_errno_name(errno));
		UNSUPPORTED("AF_UNIX SOCK_SEQPACKET (socket: %s)", sp_errno_name(errno));
	}
	RECORD_ONCE("seqpacket", "supported");
	/* Connection-oriented: an unconnected socket cannot send. */
	ASSERT_ERRNO(send(probe, "x", 1, MSG_NOSIGNAL), ENOTCONN);
	close(probe);

	int sv[2], c, s;
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	check_message_boundaries("seqpacket socketpair", sv[0], sv[1], ctx->read);
	close(sv[0]);
	close(sv[1]);

	path_pair(SOCK_SEQPACKET, "seqpacket", &c, &s);
	check_message_boundaries("seqpacket by path", c, s, ctx->read);
	check_message_boundaries("seqpacket by path, reverse", s, c, ctx->read);

	/* After the peer closes, every read call returns 0; send is EPIPE. */
	ASSERT_SYS(close(c));
	char buf[8];
	int flags;
	ssize_t n = recv_via(ctx->read, s, buf, sizeof(buf), &flags);
	if (n != 0)
		FAIL("%s after the peer closed returned %zd (%s), expected 0",
		     sp_io_in_name(ctx->read), n, n < 0 ? sp_errno_name(errno) : "data");
	ASSERT_ERRNO(send(s, "x", 1, MSG_NOSIGNAL), EPIPE);
	close(s);
	remove_dir();
}

/* ---- 5. UNIX-SCM-RIGHTS ----------------------------------------------- */

struct rights { int sock, file, api; /* api: the receiving call (.read) */ };

/* Receive one descriptor through the message call `api` and return it
 * (child side; asserts end the child). */
static int receive_descriptor(int sock, int api)
{
	char data, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };

	memset(cbuf, 0, sizeof(cbuf));
	EXPECT_EVENTS(sock, POLLIN, POLLIN, "the descriptor arrives");
	ssize_t n = MUST_RETURN(sp_io_msg(api, 0, sock, &mh, 0), "%s() of the descriptor",
				sp_io_in_name(api));
	ASSERT_TRUE(n == 1, "%s() returns the 1 byte the descriptor came with (got %zd, %s)",
		    sp_io_in_name(api), n, n < 0 ? sp_errno_name(errno) : "-");
	ASSERT_EQ('F', data);
	ASSERT_EQ(0, mh.msg_flags & MSG_CTRUNC);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	ASSERT_TRUE(cm != NULL, "a control message came with the byte through %s()",
		    sp_io_in_name(api));
	ASSERT_EQ(SOL_SOCKET, cm->cmsg_level);
	ASSERT_EQ(SCM_RIGHTS, cm->cmsg_type);
	ASSERT_EQ(CMSG_LEN(sizeof(int)), cm->cmsg_len);
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
	ASSERT_TRUE(fd >= 0, "a descriptor number (%d)", fd);
	return fd;
}

/* The child: gets the file only through the socket, reads 4 bytes, then
 * (when told) 2 more, and sends back what it read. */
static int reader_of_passed_file(void *arg)
{
	struct rights *r = arg;
	char buf[4], go;

	close(r->file); /* only the passed descriptor remains */
	int fd = receive_descriptor(r->sock, r->api);
	ASSERT_EQ(4, read(fd, buf, 4));
	ASSERT_EQ(4, write(r->sock, buf, 4));
	ASSERT_EQ(1, sp_read_all(r->sock, &go, 1));
	ASSERT_EQ(2, read(fd, buf, 2));
	ASSERT_EQ(2, write(r->sock, buf, 2));
	return 0;
}

/* 5. SCM_RIGHTS passes an open file description to another process: sent
 * with sendmsg, sendmmsg or io_uring SENDMSG (.write), received with
 * recvmsg, recvmmsg or io_uring RECVMSG (.read), the calls that carry
 * control messages (sp_io_msg). */
#define RIGHTS_CALLS SP_VALUES(SP_IO_MSG, SP_IO_MMSG, SP_IO_URING_MSG)
SP_TEST(unix_scm_rights_passes_open_file, "UNIX-SCM-RIGHTS", SP_NONE,
	.write = RIGHTS_CALLS, .read = RIGHTS_CALLS)
{
	const char *path = in_dir("file");
	int file = (int)ASSERT_SYS(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
	ASSERT_EQ(10, write(file, "0123456789", 10));
	ASSERT_EQ(0, lseek(file, 0, SEEK_SET));

	int sv[2];
	ASSERT_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	pair_both_ways(sv);
	struct rights r = { sv[1], file, ctx->read };
	pid_t child = sp_fork(reader_of_passed_file, &r);
	close(sv[1]);

	char data = 'F', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &data, 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	memset(cbuf, 0, sizeof(cbuf));
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &file, sizeof(int));
	errno = 0;
	ssize_t w = MUST_RETURN(sp_io_msg(ctx->write, 1, sv[0], &mh, MSG_NOSIGNAL),
				"%s() of the descriptor", sp_io_out_name(ctx->write));
	int werr = errno;
	/* The child's copy of sv[1] keeps the pair connected after ours is
	 * closed (PROC-FORK-SHARES-FDS's Must, a mechanism here). */
	if (w < 0 && (werr == EPIPE || werr == ECONNRESET))
		sp_needs_at(__FILE__, __LINE__, "PROC-FORK-SHARES-FDS", "sendmsg() to the child's "
			    "end after the parent closed its copy", "1", sp_errno_name(werr), werr);
	ASSERT_TRUE(w == 1, "%s() with SCM_RIGHTS sends its 1 byte and the descriptor (got %zd, %s)",
		    sp_io_out_name(ctx->write), w, w < 0 ? sp_errno_name(werr) : "-");

	/* The receiver reads through its descriptor: our offset moves. */
	char buf[4];
	ASSERT_EQ(4, sp_read_all(sv[0], buf, 4));
	ASSERT_MEM_EQ("0123", buf, 4);
	ASSERT_EQ(4, lseek(file, 0, SEEK_CUR));
	/* We read on: the receiver's next read continues after us. */
	ASSERT_EQ(2, read(file, buf, 2));
	ASSERT_MEM_EQ("45", buf, 2);
	ASSERT_EQ(1, write(sv[0], "g", 1));
	ASSERT_EQ(2, sp_read_all(sv[0], buf, 2));
	ASSERT_MEM_EQ("67", buf, 2);
	ASSERT_EQ(8, lseek(file, 0, SEEK_CUR));

	int st = sp_reap(child);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the receiving child's checks held "
		    "(status 0x%x)", st);
	close(sv[0]);
	close(file);
	remove_dir();
}

/* ---- 6. UNIX-PEERCRED ------------------------------------------------- */

struct dialer { const char *path; };

/* Connect, then wait for the server to close (bounded). */
static int connect_and_wait(void *arg)
{
	struct dialer *d = arg;
	char c;
	int fd = unix_socket(SOCK_STREAM);
	connect_to(fd, d->path);
	struct ucred cr;
	socklen_t len = sizeof(cr);
	ASSERT_SYS(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len));
	/* the client sees the listener's process */
	ASSERT_TRUE(cr.pid == getppid(), "SO_PEERCRED on the connecting socket: expected the "
		    "listener's pid %d, observed %d%s", (int)getppid(), (int)cr.pid,
		    cr.pid == getpid() ? " (the client's own pid)" : "");
	EXPECT_EVENTS(fd, POLLIN, POLLIN | POLLERR | POLLHUP, "the server closes");
	ASSERT_EQ(0, read(fd, &c, 1));
	return 0;
}

/* 6. SO_PEERCRED names the process at the other end. */
SP_TEST(unix_peercred_names_connecting_process, "UNIX-PEERCRED", SP_NONE)
{
	(void)ctx;
	const char *path = in_dir("cred");
	int l = bound_at(SOCK_STREAM, path);
	ASSERT_SYS(listen(l, 1));

	struct dialer d = { path };
	pid_t child = sp_fork(connect_and_wait, &d);
	int s = (int)ASSERT_SYS(accept(l, NULL, NULL));
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		UNSUPPORTED("SO_PEERCRED (getsockopt: %s)", sp_errno_name(errno));
	ASSERT_EQ(sizeof(cr), len);
	ASSERT_TRUE(cr.pid == child, "SO_PEERCRED on the accepted socket: expected the connecting "
		    "child's pid %d, observed %d%s", (int)child, (int)cr.pid,
		    cr.pid == getpid() ? " (the reader's own pid)" : "");
	ASSERT_EQ(getuid(), cr.uid);
	ASSERT_EQ(getgid(), cr.gid);
	close(s);
	int st = sp_reap(child);
	ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the client's checks held (status 0x%x)",
		    st);
	close(l);
	remove_dir();
}

/* ---- 7. UNIX-PATH-FILE ------------------------------------------------ */

/* 7. bind() makes a socket file that outlives the socket until unlink()
 * (.how: the type, then the call: bind() or io_uring BIND). */
SP_TEST(unix_bind_creates_socket_file, "UNIX-PATH-FILE", SP_NONE,
	.how = SP_NAMES("stream", "dgram", "stream, io_uring:BIND", "dgram, io_uring:BIND"))
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM };
	static const char *const type_names[] = { "stream", "dgram" };
	const int i = ctx->how % 2, uring = ctx->how >= 2;
	const char *call = uring ? "io_uring BIND" : "bind()";
	/* Known before any file is made: a variant that ends here leaves none. */
	const char *lacking = uring ? sp_uring_missing(SP_URING_BIND) : NULL;
	if (lacking)
		UNAVAILABLE("%s", lacking);
	char name[32];
	snprintf(name, sizeof(name), "file-%s-%d", type_names[i], uring);
	const char *path = in_dir(name);
	struct sockaddr_un sa0;
	socklen_t len0 = path_addr(&sa0, path);
	struct stat st;
	ASSERT_ERRNO(lstat(path, &st), ENOENT);
	int fd = unix_socket(types[i]);
	errno = 0;
	if (sp_bind_through(uring, fd, (struct sockaddr *)&sa0, len0) < 0)
		FAIL("%s of a %s socket to a new path failed: %s", call, type_names[i], sp_errno_name(errno));
	ASSERT_SYS(lstat(path, &st));
	ASSERT_TRUE(S_ISSOCK(st.st_mode), "%s is a socket file (mode 0%o)", path, st.st_mode);

	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	ASSERT_SYS(getsockname(fd, (struct sockaddr *)&sa, &len));
	ASSERT_EQ(AF_UNIX, sa.sun_family);
	ASSERT_STR(path, sa.sun_path);

	ASSERT_SYS(close(fd));
	ASSERT_SYS(lstat(path, &st));
	ASSERT_TRUE(S_ISSOCK(st.st_mode), "lstat() of the path after close(): expected a socket "
		    "file, observed mode 0%o", (unsigned)st.st_mode);

	struct sockaddr_un again;
	socklen_t alen = path_addr(&again, path);
	int fd2 = unix_socket(types[i]);
	errno = 0;
	int r = sp_bind_through(uring, fd2, (struct sockaddr *)&again, alen);
	ASSERT_TRUE(r == -1 && errno == EADDRINUSE, "%s to the path of the closed socket's file fails "
		    "with EADDRINUSE (got %d, %s)", call, r, r < 0 ? sp_errno_name(errno) : "bound");
	ASSERT_SYS(unlink(path));
	errno = 0;
	if (sp_bind_through(uring, fd2, (struct sockaddr *)&again, alen) < 0)
		FAIL("%s to the path after unlink() failed: %s", call, sp_errno_name(errno));
	ASSERT_SYS(lstat(path, &st));
	ASSERT_TRUE(S_ISSOCK(st.st_mode), "lstat() of the path after the new bind: expected a "
		    "socket file, observed mode 0%o", (unsigned)st.st_mode);
	close(fd2);
	remove_dir();
}

/* ---- 8. UNIX-CONNECT-ERRORS ------------------------------------------- */

/* 8. A stale socket file refuses; a missing path does not exist. The
 * connect is the system call or io_uring CONNECT (.how: the type, then
 * the call). */
SP_TEST(unix_connect_errors_name_the_cause, "UNIX-CONNECT-ERRORS", SP_NONE,
	.how = SP_NAMES("stream", "seqpacket", "dgram", "stream, io_uring:CONNECT",
			"seqpacket, io_uring:CONNECT", "dgram, io_uring:CONNECT"),
	.mode = SP_BOTH_MODES)
{
	static const int types[] = { SOCK_STREAM, SOCK_SEQPACKET, SOCK_DGRAM };
	static const char *const type_names[] = { "stream", "seqpacket", "dgram" };
	const int type = types[ctx->how % 3], uring = ctx->how >= 3;
	const char *mode = ctx->nonblock ? "non-blocking " : "";
	char name[32];

	/* Known before any file is made: a variant that ends here leaves none. */
	const char *lacking = uring ? sp_uring_missing(SP_URING_CONNECT) : NULL;
	if (lacking)
		UNAVAILABLE("%s", lacking);

	snprintf(name, sizeof(name), "stale-%s", type_names[ctx->how % 3]);
	const char *stale = in_dir(name);
	snprintf(name, sizeof(name), "missing-%s", type_names[ctx->how % 3]);
	const char *missing = in_dir(name);
	int l = socket(AF_UNIX, type, 0);
	if (l < 0 && type == SOCK_SEQPACKET)
		UNAVAILABLE("AF_UNIX SOCK_SEQPACKET (socket: %s)", sp_errno_name(errno));
	ASSERT_SYS(l);
	close(l);
	l = bound_at(type, stale);
	if (type != SOCK_DGRAM)
		ASSERT_SYS(listen(l, 1));
	ASSERT_SYS(close(l)); /* the file stays, nobody behind it */

	struct sockaddr_un sa, sm;
	socklen_t slen = path_addr(&sa, stale), mlen = path_addr(&sm, missing);
	int fd = unix_socket(type | (ctx->nonblock ? SOCK_NONBLOCK : 0));
	errno = 0;
	int r = sp_connect_through(uring, fd, (struct sockaddr *)&sa, slen);
	if (r != -1 || errno != ECONNREFUSED)
		FAIL("%s%s connect to a stale socket file: %d (%s), expected ECONNREFUSED", mode,
		     ctx->how_name, r, sp_errno_name(errno));
	errno = 0;
	r = sp_connect_through(uring, fd, (struct sockaddr *)&sm, mlen);
	if (r != -1 || errno != ENOENT)
		FAIL("%s%s connect to a missing path: %d (%s), expected ENOENT", mode, ctx->how_name,
		     r, sp_errno_name(errno));
	if (type == SOCK_DGRAM) {
		/* The Must names connect(); what sendto() to the same names
		 * gives is recorded (Linux: ECONNREFUSED, ENOENT; gVisor:
		 * EINVAL for the stale file). */
		errno = 0;
		r = (int)sendto(fd, "x", 1, MSG_NOSIGNAL, (struct sockaddr *)&sa, slen);
		RECORD_ONCE("dgram_sendto_stale_file", "%d %s", r, r < 0 ? sp_errno_name(errno) : "");
		errno = 0;
		r = (int)sendto(fd, "x", 1, MSG_NOSIGNAL, (struct sockaddr *)&sm, mlen);
		RECORD_ONCE("dgram_sendto_missing_path", "%d %s", r, r < 0 ? sp_errno_name(errno) : "");
	}
	close(fd);
	remove_dir();
}

/* ---- 9. UNIX-ABSTRACT ------------------------------------------------- */

/* An abstract address: a NUL, then `name` (no terminating NUL counted). */
static socklen_t abstract_addr(struct sockaddr_un *sa, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	REQUIRE(strlen(name) + 1 < sizeof(sa->sun_path), "an abstract name that fits sun_path");
	memcpy(sa->sun_path + 1, name, strlen(name));
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

struct abstract_try { struct sockaddr_un sa; socklen_t len; };

/* In a new network namespace: 0 if the name binds there, 1 if in use,
 * 2 if no namespace could be made. */
static int bind_in_new_netns(void *arg)
{
	struct abstract_try *t = arg;
	if (unshare(CLONE_NEWNET) < 0)
		return 2;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (bind(fd, (struct sockaddr *)&t->sa, t->len) == 0)
		return 0;
	return errno == EADDRINUSE ? 1 : 3;
}

/* 9. Linux abstract names: no file, in use while bound, free after close
 * (.how: the connection made by connect() and accept(), or by io_uring
 * CONNECT and ACCEPT; its data through every write and read call). */
SP_TEST(unix_abstract_names_make_no_file, "UNIX-ABSTRACT", SP_NONE,
	.how = SP_NAMES("connect, accept", "io_uring:CONNECT+ACCEPT"))
{
	const int uring = ctx->how == 1;
	/* Known before any name is bound: a variant that ends here leaves none. */
	const char *lacking = uring ? sp_uring_missing(SP_URING_CONNECT) : NULL;
	if (!lacking && uring)
		lacking = sp_uring_missing(SP_URING_ACCEPT);
	if (lacking)
		UNAVAILABLE("%s", lacking);
	const char *shadow = in_dir("abstract"); /* the name, as a path */
	struct sockaddr_un sa;
	socklen_t len = abstract_addr(&sa, shadow);
	int l = unix_socket(SOCK_STREAM);

	if (bind(l, (struct sockaddr *)&sa, len) < 0) {
		const char *ns = getenv("SOCKPROBE_NETNS");
		UNSUPPORTED("abstract AF_UNIX names (bind: %s%s)", sp_errno_name(errno),
			    ns && strcmp(ns, "private") == 0 ? ", in the item's own network namespace" : "");
	}
	struct stat st;
	ASSERT_ERRNO(lstat(shadow, &st), ENOENT);

	struct sockaddr_un got;
	socklen_t glen = sizeof(got);
	ASSERT_SYS(getsockname(l, (struct sockaddr *)&got, &glen));
	ASSERT_EQ(len, glen);
	ASSERT_EQ(0, got.sun_path[0]);
	ASSERT_MEM_EQ(sa.sun_path, got.sun_path, len - offsetof(struct sockaddr_un, sun_path));

	/* Connect and data, both ways: every write call into every read
	 * call in turn (SIGPIPE is no business of this ID's: ignored). */
	struct sigaction ign = { .sa_handler = SIG_IGN };
	ASSERT_SYS(sigaction(SIGPIPE, &ign, NULL));
	ASSERT_SYS(listen(l, 1));
	int c = unix_socket(SOCK_STREAM);
	ASSERT_SYS(MUST_RETURN(sp_connect_through(uring, c, (struct sockaddr *)&sa, len),
			       "%s to the abstract name", uring ? "io_uring CONNECT" : "connect()"));
	int s = (int)ASSERT_SYS(MUST_RETURN(sp_accept_through(uring, l, NULL, NULL, SOCK_CLOEXEC),
					    "%s of the queued connection",
					    uring ? "io_uring ACCEPT" : "accept4()"));
	char buf[16];
	enum { CALLS = 12 }; /* the write calls of SP_EVERY_WRITE */
	for (int i = 0; i < CALLS; i++) {
		int d = i % 2, from = d ? s : c, to = d ? c : s;
		const char *msg = d ? "bye" : "hello";
		size_t n = strlen(msg);
		SP_OUT_EXACT(nth_call(SP_EVERY_WRITE, i, 1), from, msg, n);
		SP_IN_EXACT(nth_call(SP_EVERY_READ, i, 0), to, buf, n);
		ASSERT_MEM_EQ(msg, buf, n);
	}

	/* In use while bound; free again once the socket is closed. */
	int l2 = unix_socket(SOCK_STREAM);
	ASSERT_ERRNO(bind(l2, (struct sockaddr *)&sa, len), EADDRINUSE);

	if (ctx->first) {
		struct abstract_try t = { sa, len };
		pid_t child = sp_fork(bind_in_new_netns, &t);
		int cst = sp_reap(child);
		int how = WIFEXITED(cst) ? WEXITSTATUS(cst) : -1;
		RECORD("per_network_namespace", "%s",
		       how == 0 ? "yes (the name is free in a new network namespace)" :
		       how == 1 ? "no (in use in a new network namespace too)" :
		       how == 2 ? "unknown (no new network namespace)" : "unknown (bind failed)");
	}

	ASSERT_SYS(close(s));
	ASSERT_SYS(close(c));
	ASSERT_SYS(close(l));
	ASSERT_SYS(bind(l2, (struct sockaddr *)&sa, len));
	ASSERT_ERRNO(lstat(shadow, &st), ENOENT);
	close(l2);
	remove_dir();
}

SP_MAIN("unix")
