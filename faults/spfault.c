/*
 * libspfault.so - sockprobe's own fault injector.
 *
 * LD_PRELOADed into a probe (make check PRELOAD=... or the project's
 * fault self-test), it breaks exactly the semantics named in
 * SOCKPROBE_FAULT (comma separated) and is transparent otherwise. Each
 * fault imitates a plausible wrong system: a stack that keeps datagram
 * boundaries on a stream, a close() that resets, a waitpid that ignores
 * WNOHANG... The self-test (tests/test_faults.py) shows that every
 * behavior's case fails under at least one of them.
 *
 * Only sockets/pipes of the kind a fault is about are touched; the probe
 * protocol's own writes to stdout pass straight through.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <netdb.h>
#include <arpa/inet.h>

#include "spfault.h"

#define MAXFD 1024

/* ---- the fault table (see spfault.h) ------------------------------------ */

FAULT(read_caps_at_10,
      "TCP-BOUNDARY-COALESCE",
      "a message-oriented stack (SCTP-like emulation) that returns one write per read");
FAULT(stream_read_drops_rest,
      "TCP-BOUNDARY-SPLIT",
      "a userspace TCP stack that drops what does not fit the caller's buffer");
FAULT(sockets_start_without_buffers,
      "TCP-BUFFERS-AT-CREATION",
      "an emulator that allocates buffers only at connect() and reports 0 before");
FAULT(close_discards_output,
      "TCP-CLOSE-FLUSHES-OUTPUT,TCP-TEARDOWN-STATES,CLOSE-FULL-LOSES-REPLY",
      "a stack whose close() frees the send queue instead of flushing it");
FAULT(close_drains_input,
      "TCP-CLOSE-DISCARDS-INPUT",
      "a stack that drains unread input on close() and sends FIN instead of RST");
FAULT(write_ignores_full_buffer,
      "TCP-FLOW-CONTROL,PROC-SPLIT-IO",
      "a stack without flow control that drops what the window cannot take");
FAULT(write_waits_for_peer_read,
      "TCP-WRITE-RETURNS-BUFFERED",
      "a synchronous RPC-style transport whose write waits for the peer's read");
FAULT(connect_needs_accept,
      "TCP-HANDSHAKE-BEFORE-ACCEPT",
      "a sandbox that completes connect() only when the server accepts");
FAULT(no_implicit_bind,
      "TCP-CONNECT-IMPLICIT-BIND,UDP-SENDTO-IMPLICIT-BIND",
      "an LD_PRELOAD stack whose getsockname() reports port 0 after an implicit bind");
FAULT(accept_repeats_first,
      "TCP-LISTEN-ACCEPT-SEQUENCE",
      "a broken accept() that hands out the same connection again");
FAULT(dgram_recv_merges,
      "UDP-BOUNDARY",
      "a datagram emulation over a byte stream that merges queued datagrams");
FAULT(dgram_no_trunc_flag,
      "UDP-TRUNCATE",
      "a stack that truncates a datagram without setting MSG_TRUNC");
FAULT(dgram_send_backpressure,
      "UDP-NO-FLOW-CONTROL",
      "a UDP emulation that blocks senders like a stream (EAGAIN when the peer is slow)");
FAULT(dgram_send_refused,
      "UDP-NO-ACK",
      "a UDP emulation that refuses sendto() when nobody listens, as if it waited for an ACK");
FAULT(recvfrom_hides_source,
      "UDP-ONE-SOCKET-MANY-PEERS",
      "an LD_PRELOAD stack that does not fill in recvfrom()'s source address");
FAULT(dgram_remembers_destination,
      "UDP-DESTINATION-EACH-SEND",
      "a stack that keeps sending to the first destination of an unconnected socket");
FAULT(udp_connect_noop,
      "UDP-CONNECTED",
      "a stack whose connect() on UDP registers nothing");
FAULT(shutdown_wr_closes_both,
      "CLOSE-HALF-WR-EOF",
      "a stack whose shutdown(SHUT_WR) closes both directions");
FAULT(shutdown_ignored,
      "CLOSE-HALF-WR-NO-MORE-WRITES,CLOSE-HALF-RD",
      "an emulator that accepts shutdown() and does nothing");
FAULT(close_is_half_close,
      "CLOSE-FULL-LOSES-REPLY",
      "a stack whose close() only shuts down writing, so late replies still arrive");
FAULT(fork_child_gets_pid,
      "PROC-FORK-RETURNS",
      "a process emulation whose fork() returns the pid in the child too");
FAULT(private_memory_shared,
      "PROC-FORK-COPIES",
      "a vfork-style fork() whose private memory stays shared");
FAULT(close_shuts_down_shared_socket,
      "PROC-FORK-SHARES-FDS,PROC-FORKING-SERVER",
      "a stack whose close() of one descriptor shuts the connection for every process");
FAULT(sigchld_ignored,
      "PROC-ZOMBIE,SIG-CHLD-REAPS-ALL",
      "a sandbox that runs programs with SIGCHLD ignored (children auto-reaped)");
FAULT(status_loses_exit_code,
      "PROC-WAIT-REAPS,PROC-WAITPID-WNOHANG,SIG-CHLD-REAPS-ALL",
      "an emulator that reports every exit as status 0");
FAULT(wait_never_blocks,
      "PROC-WAIT-BLOCKS",
      "a wait() that returns at once with ECHILD-like emptiness while children run");
FAULT(waitpid_ignores_wnohang,
      "PROC-WAITPID-WNOHANG",
      "a waitpid() that ignores WNOHANG and blocks");
FAULT(handlers_not_installed,
      "SIG-HANDLER-RUNS,SIG-INTERRUPTS-SLEEP",
      "a sandbox that accepts sigaction() but never delivers to the handler");
FAULT(sleep_restarts,
      "SIG-INTERRUPTS-SLEEP",
      "a sleep() that restarts after a handled signal instead of returning early");
FAULT(pipe_ends_swapped,
      "PIPE-ENDS,PIPE-TWO-WAY",
      "a pipe() emulation that returns the ends the wrong way round");
FAULT(empty_pipe_reads_eof,
      "PIPE-ACROSS-FORK,PIPE-EOF",
      "a pipe emulation whose empty pipe reads EOF while writers exist");
FAULT(sigpipe_ignored,
      "PIPE-EPIPE",
      "a runtime that ignores SIGPIPE for every program");
FAULT(pipe_writes_in_pieces,
      "PIPE-ATOMIC",
      "a pipe emulation that splits writes of PIPE_BUF bytes or less");
FAULT(resolver_drops_aliases,
      "DNS-BYNAME",
      "a libc whose gethostbyname() drops hosts-file aliases (musl)");
FAULT(resolver_answers_without_server,
      "DNS-FIXTURE-SERVER",
      "a resolver that answers from a cache or built-in table without asking the server");
FAULT(reverse_lookup_fails,
      "DNS-BYADDR",
      "a resolver without reverse (PTR) lookups");
FAULT(unknown_name_try_again,
      "DNS-NOT-FOUND",
      "a resolver that reports TRY_AGAIN for a name that does not exist");

/* The table, for the self-test and make mutate (called through dlopen or
 * ctypes, never by a probe). */
extern const struct spfault __start_spfault_rows[], __stop_spfault_rows[];
const struct spfault *spfault_table(int *n)
{
	*n = (int)(__stop_spfault_rows - __start_spfault_rows);
	return __start_spfault_rows;
}

/* ---- which faults are on ------------------------------------------------ */

static const char *faults;

int spfault_on(const char *name)
{
	if (!faults) {
		faults = getenv("SOCKPROBE_FAULT");
		if (!faults)
			faults = "";
	}
	size_t n = strlen(name);
	for (const char *p = faults; (p = strstr(p, name)) != NULL; p += n)
		if ((p == faults || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return 1;
	return 0;
}

#define on(name) spfault_on(name)

/* Hooks of faults/opt.c (catalogue 2: OPT-*, CONN-*, FLAG-*). */
int spfault_opt_recv_flags(int fd, int flags);
int spfault_opt_send_flags(int fd, int flags);
void spfault_opt_getsockopt(int fd, int level, int opt, void *val, socklen_t *len);
int spfault_opt_connect(int fd, int r);
int spfault_opt_accept_begin(int l);
void spfault_opt_accept_end(int l, int fl, struct sockaddr *a, socklen_t *len, int fd);
int spfault_opt_bind(int fd, const struct sockaddr *a, socklen_t len, int r);

#define REAL(ret, name, ...)                                                \
	static ret (*real_##name)(__VA_ARGS__);                             \
	static void load_##name(void)                                       \
	{                                                                   \
		if (!real_##name)                                           \
			real_##name = dlsym(RTLD_NEXT, #name);              \
	}

REAL(ssize_t, read, int, void *, size_t)
REAL(ssize_t, write, int, const void *, size_t)
REAL(ssize_t, recv, int, void *, size_t, int)
REAL(ssize_t, recvfrom, int, void *, size_t, int, struct sockaddr *, socklen_t *)
REAL(ssize_t, recvmsg, int, struct msghdr *, int)
REAL(ssize_t, send, int, const void *, size_t, int)
REAL(ssize_t, sendto, int, const void *, size_t, int, const struct sockaddr *, socklen_t)
REAL(int, close, int)
REAL(int, connect, int, const struct sockaddr *, socklen_t)
REAL(int, accept, int, struct sockaddr *, socklen_t *)
REAL(int, accept4, int, struct sockaddr *, socklen_t *, int)
REAL(int, bind, int, const struct sockaddr *, socklen_t)
REAL(int, getsockname, int, struct sockaddr *, socklen_t *)
REAL(int, getsockopt, int, int, int, void *, socklen_t *)
REAL(int, shutdown, int, int)

/* The checks a fault makes never change errno: the probe must see the
 * errno of the call it made. */
static int sock_type(int fd)
{
	int t = 0, saved = errno;
	socklen_t len = sizeof(t);

	load_getsockopt();
	if (fd < 0 || real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &len) < 0)
		t = 0;
	errno = saved;
	return t;
}

static int is_stream(int fd) { return sock_type(fd) == SOCK_STREAM; }
static int is_dgram(int fd) { return sock_type(fd) == SOCK_DGRAM; }

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return 0;
	if (a->ss_family == AF_INET)
		return memcmp(&((struct sockaddr_in *)a)->sin_addr, &((struct sockaddr_in *)b)->sin_addr, 4) == 0 &&
		       ((struct sockaddr_in *)a)->sin_port == ((struct sockaddr_in *)b)->sin_port;
	return memcmp(&((struct sockaddr_in6 *)a)->sin6_addr, &((struct sockaddr_in6 *)b)->sin6_addr, 16) == 0 &&
	       ((struct sockaddr_in6 *)a)->sin6_port == ((struct sockaddr_in6 *)b)->sin6_port;
}

/* A socket of this process whose local address is `addr` (the peer of a
 * loopback connection made inside the same probe), or -1. */
static int local_socket_at(const struct sockaddr_storage *addr, int want_listener, int not_fd)
{
	load_getsockname();
	for (int fd = 3; fd < MAXFD; fd++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (fd == not_fd || !is_stream(fd))
			continue;
		memset(&ss, 0, sizeof(ss));
		if (real_getsockname(fd, (struct sockaddr *)&ss, &len) < 0 || !same_addr(&ss, addr))
			continue;
		int acc = 0;
		socklen_t alen = sizeof(acc);
		real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen);
		if (!!acc == !!want_listener)
			return fd;
	}
	return -1;
}

/* ---- per-descriptor state ------------------------------------------------- */

static char explicitly_bound[MAXFD];
static int first_accepted[MAXFD];              /* accept_repeats_first, +1 */
static struct sockaddr_storage fake_peer[MAXFD];  /* udp_connect_noop */
static struct sockaddr_storage last_dest[MAXFD];  /* dgram_remembers_destination */
static struct sockaddr_storage first_src;     /* recvfrom_hides_source */
static int dgram_sends_since_recv;

/* ---- reading ---------------------------------------------------------------- */

static ssize_t after_stream_read(int fd, ssize_t r)
{
	/* stream_read_drops_rest: a short read throws away what was left,
	 * as if the stream kept message boundaries. */
	if (r > 0 && on("stream_read_drops_rest") && is_stream(fd)) {
		char scratch[65536];
		load_recv();
		while (real_recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
			;
	}
	return r;
}

static size_t cap_stream(int fd, size_t n)
{
	/* read_caps_at_10: a read never returns more than one 10-byte write. */
	if (n > 10 && on("read_caps_at_10") && is_stream(fd))
		return 10;
	return n;
}

/* dgram_recv_merges: one receive returns several datagrams glued together. */
static ssize_t merge_dgrams(int fd, char *buf, size_t n, ssize_t r)
{
	if (r <= 0 || !on("dgram_recv_merges") || !is_dgram(fd))
		return r;
	load_recv();
	while ((size_t)r < n) {
		ssize_t more = real_recv(fd, buf + r, n - (size_t)r, MSG_DONTWAIT);
		if (more <= 0)
			break;
		r += more;
	}
	return r;
}

static void note_recv(int fd)
{
	if (is_dgram(fd))
		dgram_sends_since_recv = 0;
}

static int is_fifo(int fd)
{
	struct stat st;
	int saved = errno;
	int r = fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	errno = saved;
	return r;
}

ssize_t read(int fd, void *buf, size_t n)
{
	load_read();
	/* empty_pipe_reads_eof: an empty pipe reads as EOF instead of
	 * blocking until a writer writes. */
	if (on("empty_pipe_reads_eof") && is_fifo(fd)) {
		int avail = 0;
		if (ioctl(fd, FIONREAD, &avail) == 0 && avail == 0)
			return 0;
	}
	ssize_t r = real_read(fd, buf, cap_stream(fd, n));
	note_recv(fd);
	return merge_dgrams(fd, buf, n, after_stream_read(fd, r));
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	load_recv();
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t r = real_recv(fd, buf, cap_stream(fd, n), flags);
	note_recv(fd);
	return merge_dgrams(fd, buf, n, after_stream_read(fd, r));
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *len)
{
	load_recvfrom();
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t r = real_recvfrom(fd, buf, cap_stream(fd, n), flags, from, len);
	note_recv(fd);
	/* recvfrom_hides_source: every datagram seems to come from the first
	 * peer ever heard from. */
	if (r >= 0 && from && len && on("recvfrom_hides_source") && is_dgram(fd)) {
		if (first_src.ss_family == 0)
			memcpy(&first_src, from, *len < sizeof(first_src) ? *len : sizeof(first_src));
		else
			memcpy(from, &first_src, *len);
	}
	return merge_dgrams(fd, buf, n, after_stream_read(fd, r));
}

ssize_t recvmsg(int fd, struct msghdr *mh, int flags)
{
	load_recvmsg();
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t r = real_recvmsg(fd, mh, flags);
	note_recv(fd);
	/* dgram_no_trunc_flag: truncation goes unreported. */
	if (r >= 0 && on("dgram_no_trunc_flag"))
		mh->msg_flags &= ~MSG_TRUNC;
	return r;
}

/* ---- writing ------------------------------------------------------------------- */

/* write_ignores_full_buffer: a full send buffer silently drops data
 * instead of blocking the writer or answering EAGAIN. */
static ssize_t lossy_stream_send(int fd, const void *buf, size_t n, int flags)
{
	load_send();
	ssize_t w = real_send(fd, buf, n, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
	if (w < 0 && errno != EAGAIN)
		return w;
	return (ssize_t)n;
}

struct peer_wait { int peer; };

/* write_waits_for_peer_read: write() returns only once the peer
 * application has read the data (what the notes claim). */
static void wait_for_peer_read(int fd)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	memset(&peer, 0, sizeof(peer));
	if (getpeername(fd, (struct sockaddr *)&peer, &len) < 0)
		return;
	int p = local_socket_at(&peer, 0, fd);
	if (p < 0)
		return;
	const char *w = getenv("SOCKPROBE_WAIT_MS");
	int bound = 2 * (w && atoi(w) > 0 ? atoi(w) : 2000);
	for (int i = 0; i < bound; i++) {
		int inq = 0;
		if (ioctl(p, FIONREAD, &inq) < 0 || inq == 0)
			return;
		poll(NULL, 0, 1);
	}
}

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

static socklen_t ss_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static ssize_t faulty_send(int fd, const void *buf, size_t n, int flags, int via_write)
{
	int opt_flags = spfault_opt_send_flags(fd, flags); /* faults/opt.c */
	if (opt_flags != flags) {
		flags = opt_flags;
		via_write = 0; /* write() on a socket is send(..., 0) */
	}
	if (fd >= 0 && fd < MAXFD && is_dgram(fd)) {
		struct sockaddr_storage to;
		if (dgram_dest(fd, &to)) {
			load_sendto();
			return real_sendto(fd, buf, n, flags, (struct sockaddr *)&to, ss_len(&to));
		}
	} else if (is_stream(fd)) {
		if (on("write_ignores_full_buffer"))
			return lossy_stream_send(fd, buf, n, flags);
		if (on("write_waits_for_peer_read")) {
			load_send();
			ssize_t w = real_send(fd, buf, n, flags);
			if (w > 0)
				wait_for_peer_read(fd);
			return w;
		}
	}
	if (via_write) {
		load_write();
		/* pipe_writes_in_pieces: no PIPE_BUF atomicity; a write goes
		 * out in 64-byte pieces that other writers can come between. */
		if (on("pipe_writes_in_pieces") && is_fifo(fd) && n > 64) {
			size_t done = 0;
			while (done < n) {
				size_t piece = n - done < 64 ? n - done : 64;
				ssize_t w = real_write(fd, (const char *)buf + done, piece);
				if (w <= 0)
					return done ? (ssize_t)done : w;
				done += (size_t)w;
			}
			return (ssize_t)n;
		}
		return real_write(fd, buf, n);
	}
	load_send();
	return real_send(fd, buf, n, flags);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	return faulty_send(fd, buf, n, 0, 1);
}

ssize_t send(int fd, const void *buf, size_t n, int flags)
{
	return faulty_send(fd, buf, n, flags, 0);
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

ssize_t sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *to, socklen_t len)
{
	load_sendto();
	if (!to)
		return faulty_send(fd, buf, n, flags, 0);
	flags = spfault_opt_send_flags(fd, flags);
	if (is_dgram(fd)) {
		if (fd < MAXFD && len <= sizeof(last_dest[fd]))
			memcpy(&last_dest[fd], to, len);
		/* dgram_send_refused: an acknowledging datagram service. */
		if (on("dgram_send_refused") && nobody_listens(to, len)) {
			errno = ECONNREFUSED;
			return -1;
		}
		/* dgram_send_backpressure: the sender is held back once the
		 * receiver has fallen 32 datagrams behind. */
		if (on("dgram_send_backpressure") && ++dgram_sends_since_recv > 32) {
			errno = EAGAIN;
			return -1;
		}
	}
	return real_sendto(fd, buf, n, flags, to, len);
}

/* ---- connection set-up --------------------------------------------------------- */

int bind(int fd, const struct sockaddr *a, socklen_t len)
{
	load_bind();
	int r = spfault_opt_bind(fd, a, len, real_bind(fd, a, len));
	if (r == 0 && fd >= 0 && fd < MAXFD)
		explicitly_bound[fd] = 1;
	return r;
}

int getsockname(int fd, struct sockaddr *a, socklen_t *len)
{
	load_getsockname();
	int r = real_getsockname(fd, a, len);
	/* no_implicit_bind: connect()/sendto() leave an unbound socket
	 * without a local port. */
	if (r == 0 && on("no_implicit_bind") && fd >= 0 && fd < MAXFD &&
	    !explicitly_bound[fd] && sock_type(fd) != 0) {
		int acc = 0;
		socklen_t alen = sizeof(acc);
		real_getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &alen);
		if (!acc && a->sa_family == AF_INET)
			((struct sockaddr_in *)a)->sin_port = 0;
		else if (!acc && a->sa_family == AF_INET6)
			((struct sockaddr_in6 *)a)->sin6_port = 0;
	}
	return r;
}

int getsockopt(int fd, int level, int opt, void *val, socklen_t *len)
{
	load_getsockopt();
	int r = real_getsockopt(fd, level, opt, val, len);
	if (r == 0)
		spfault_opt_getsockopt(fd, level, opt, val, len);
	/* sockets_start_without_buffers: buffers appear only once connected. */
	if (r == 0 && level == SOL_SOCKET && (opt == SO_SNDBUF || opt == SO_RCVBUF) &&
	    on("sockets_start_without_buffers")) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
			*(int *)val = 0;
	}
	return r;
}

int connect(int fd, const struct sockaddr *a, socklen_t len)
{
	load_connect();
	/* udp_connect_noop: connect() on UDP only remembers the address in
	 * user space: no filtering, no ICMP errors. */
	if (on("udp_connect_noop") && is_dgram(fd) && fd < MAXFD && len <= sizeof(fake_peer[fd])) {
		memcpy(&fake_peer[fd], a, len);
		return 0;
	}
	int r = spfault_opt_connect(fd, real_connect(fd, a, len));
	/* connect_needs_accept: connect() does not complete while the
	 * connection waits, unaccepted, in the listen queue. */
	if (r == 0 && on("connect_needs_accept") && is_stream(fd)) {
		struct sockaddr_storage dst;
		memset(&dst, 0, sizeof(dst));
		memcpy(&dst, a, len < sizeof(dst) ? len : sizeof(dst));
		int l = local_socket_at(&dst, 1, fd);
		struct pollfd p = { .fd = l, .events = POLLIN };
		if (l >= 0 && poll(&p, 1, 0) == 1) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return r;
}

static int repeat_first(int l, int fd)
{
	/* accept_repeats_first: every accept() hands out the first connection. */
	if (fd < 0 || !on("accept_repeats_first") || l >= MAXFD)
		return fd;
	if (!first_accepted[l]) {
		first_accepted[l] = fd + 1;
		return fd;
	}
	load_close();
	real_close(fd);
	return dup(first_accepted[l] - 1);
}

int accept(int l, struct sockaddr *a, socklen_t *len)
{
	load_accept();
	int fl = spfault_opt_accept_begin(l);
	int fd = real_accept(l, a, len);
	spfault_opt_accept_end(l, fl, a, len, fd);
	return repeat_first(l, fd);
}

int accept4(int l, struct sockaddr *a, socklen_t *len, int flags)
{
	load_accept4();
	int fl = spfault_opt_accept_begin(l);
	int fd = real_accept4(l, a, len, flags);
	spfault_opt_accept_end(l, fl, a, len, fd);
	return repeat_first(l, fd);
}

/* ---- disconnecting --------------------------------------------------------------- */

int shutdown(int fd, int how)
{
	load_shutdown();
	/* shutdown_ignored: half-close does nothing at all. */
	if (on("shutdown_ignored") && is_stream(fd))
		return 0;
	/* shutdown_wr_closes_both: SHUT_WR behaves like SHUT_RDWR. */
	if (on("shutdown_wr_closes_both") && how == SHUT_WR)
		how = SHUT_RDWR;
	return real_shutdown(fd, how);
}

int close(int fd)
{
	load_close();
	if (fd >= 0 && fd < MAXFD) {
		explicitly_bound[fd] = 0;
		memset(&fake_peer[fd], 0, sizeof(fake_peer[fd]));
		memset(&last_dest[fd], 0, sizeof(last_dest[fd]));
	}
	if (is_stream(fd)) {
		/* close_discards_output: close() resets, dropping queued output. */
		if (on("close_discards_output")) {
			struct linger lg = { 1, 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		/* close_drains_input: unread input is consumed, so the peer
		 * gets a clean FIN instead of a reset. */
		if (on("close_drains_input")) {
			char scratch[65536];
			load_recv();
			while (real_recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
				;
		}
		/* close_shuts_down_shared_socket: close() ends the connection
		 * even while another descriptor (a forked copy) still refers
		 * to it. */
		if (on("close_shuts_down_shared_socket")) {
			load_shutdown();
			real_shutdown(fd, SHUT_RDWR);
		}
		/* close_is_half_close: close() only shuts the write side and
		 * keeps the socket, so the peer's reply is never refused. */
		if (on("close_is_half_close")) {
			load_shutdown();
			return real_shutdown(fd, SHUT_WR);
		}
	}
	return real_close(fd);
}

/* ---- processes ------------------------------------------------------------------ */

REAL(pid_t, fork, void)
REAL(pid_t, wait, int *)
REAL(pid_t, waitpid, pid_t, int *, int)
REAL(int, waitid, idtype_t, id_t, siginfo_t *, int)
REAL(void *, mmap, void *, size_t, int, int, int, off_t)
REAL(sighandler_t, signal, int, sighandler_t)
REAL(int, sigaction, int, const struct sigaction *, struct sigaction *)
REAL(int, nanosleep, const struct timespec *, struct timespec *)
REAL(int, pipe, int *)
REAL(int, pipe2, int *, int)

/* fork_child_gets_pid: the child is told its own pid, not 0. */
pid_t fork(void)
{
	load_fork();
	pid_t r = real_fork();
	if (r == 0 && on("fork_child_gets_pid"))
		return getpid();
	return r;
}

/* private_memory_shared: private anonymous mappings are shared with
 * forked children (a fork that copies nothing). */
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	load_mmap();
	if (on("private_memory_shared") && (flags & MAP_ANONYMOUS) && (flags & MAP_PRIVATE))
		flags = (flags & ~MAP_PRIVATE) | MAP_SHARED;
	return real_mmap(addr, len, prot, flags, fd, off);
}

/* status_loses_exit_code: the exit code never reaches the parent. */
static int lose_code(int st)
{
	if (on("status_loses_exit_code") && WIFEXITED(st))
		return st & ~0xff00;
	return st;
}

pid_t waitpid(pid_t pid, int *st, int options)
{
	load_waitpid();
	/* waitpid_ignores_wnohang: WNOHANG blocks like a plain waitpid. */
	if (on("waitpid_ignores_wnohang"))
		options &= ~WNOHANG;
	pid_t r = real_waitpid(pid, st, options);
	if (r > 0 && st)
		*st = lose_code(*st);
	return r;
}

pid_t wait(int *st)
{
	load_wait();
	/* wait_never_blocks: wait() returns at once even with live children. */
	if (on("wait_never_blocks"))
		return waitpid(-1, st, WNOHANG);
	pid_t r = real_wait(st);
	if (r > 0 && st)
		*st = lose_code(*st);
	return r;
}

int waitid(idtype_t type, id_t id, siginfo_t *si, int options)
{
	load_waitid();
	int r = real_waitid(type, id, si, options);
	if (r == 0 && si && si->si_code == CLD_EXITED && on("status_loses_exit_code"))
		si->si_status = 0;
	return r;
}

/* ---- signals ---------------------------------------------------------------------- */

/* What a fault makes of a handler about to be installed for sig. */
static sighandler_t faulty_handler(int sig, sighandler_t h)
{
	/* sigchld_ignored: SIGCHLD stays ignored, so children never become
	 * zombies and no SIGCHLD handler runs. */
	if (sig == SIGCHLD && on("sigchld_ignored"))
		return SIG_IGN;
	/* sigpipe_ignored: SIGPIPE can never kill. */
	if (sig == SIGPIPE && on("sigpipe_ignored"))
		return SIG_IGN;
	/* sigurg_never_sent (faults/opt.c): no SIGURG handler ever runs. */
	if (sig == SIGURG && on("sigurg_never_sent"))
		return SIG_IGN;
	/* handlers_not_installed: a handler is accepted but never runs. */
	if (h != SIG_DFL && h != SIG_IGN && h != SIG_ERR && on("handlers_not_installed") &&
	    (sig == SIGALRM || sig == SIGINT || sig == SIGCHLD))
		return SIG_IGN;
	return h;
}

sighandler_t signal(int sig, sighandler_t h)
{
	load_signal();
	return real_signal(sig, faulty_handler(sig, h));
}

int sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	load_sigaction();
	if (sa && !(sa->sa_flags & SA_SIGINFO)) {
		sighandler_t h = faulty_handler(sig, sa->sa_handler);
		if (h != sa->sa_handler) {
			struct sigaction copy = *sa;
			copy.sa_handler = h;
			return real_sigaction(sig, &copy, old);
		}
	}
	return real_sigaction(sig, sa, old);
}

__attribute__((constructor)) static void spfault_init(void)
{
	load_signal();
	if (on("sigchld_ignored"))
		real_signal(SIGCHLD, SIG_IGN);
	if (on("sigpipe_ignored"))
		real_signal(SIGPIPE, SIG_IGN);
}

/* sleep_restarts: a caught signal does not end a sleep early. */
int nanosleep(const struct timespec *req, struct timespec *rem)
{
	load_nanosleep();
	if (!on("sleep_restarts"))
		return real_nanosleep(req, rem);
	struct timespec left = *req;
	while (real_nanosleep(&left, &left) < 0 && errno == EINTR)
		;
	if (rem)
		rem->tv_sec = rem->tv_nsec = 0;
	return 0;
}

unsigned int sleep(unsigned int s)
{
	struct timespec req = { (time_t)s, 0 }, rem = { 0, 0 };
	if (nanosleep(&req, &rem) < 0)
		return (unsigned)rem.tv_sec + (rem.tv_nsec > 0);
	return 0;
}

/* ---- pipes ------------------------------------------------------------------------- */

/* pipe_ends_swapped: fds[0] is handed back as the write end. */
static void swap_ends(int *fds)
{
	if (on("pipe_ends_swapped")) {
		int t = fds[0];
		fds[0] = fds[1];
		fds[1] = t;
	}
}

int pipe(int fds[2])
{
	load_pipe();
	int r = real_pipe(fds);
	if (r == 0)
		swap_ends(fds);
	return r;
}

int pipe2(int fds[2], int flags)
{
	load_pipe2();
	int r = real_pipe2(fds, flags);
	if (r == 0)
		swap_ends(fds);
	return r;
}

/* ---- names ----------------------------------------------------------------------------- */

REAL(struct hostent *, gethostbyname, const char *)
REAL(struct hostent *, gethostbyaddr, const void *, socklen_t, int)

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

struct hostent *gethostbyname(const char *name)
{
	load_gethostbyname();
	struct hostent *h = real_gethostbyname(name);
	/* resolver_drops_aliases: only the first address, no aliases. */
	if (h && on("resolver_drops_aliases")) {
		if (h->h_addr_list[0])
			h->h_addr_list[1] = NULL;
		h->h_aliases[0] = NULL;
	}
	/* resolver_answers_without_server: a stale cache answers for the
	 * fixture domain even when no server does. */
	if (!h && h_errno == TRY_AGAIN && on("resolver_answers_without_server") &&
	    ends_with(name, ".sockprobe.test")) {
		static struct in_addr addr;
		static char *addrs[2] = { (char *)&addr, NULL }, *aliases[1] = { NULL };
		static struct hostent canned;
		static char cname[256];
		inet_pton(AF_INET, "192.0.2.30", &addr);
		snprintf(cname, sizeof(cname), "%s", name);
		canned = (struct hostent){ cname, aliases, AF_INET, 4, addrs };
		return &canned;
	}
	/* unknown_name_try_again: "not found" is reported as a temporary
	 * failure. */
	if (!h && h_errno == HOST_NOT_FOUND && on("unknown_name_try_again"))
		h_errno = TRY_AGAIN;
	return h;
}

/* reverse_lookup_fails: no address maps back to a name. */
struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{
	load_gethostbyaddr();
	if (on("reverse_lookup_fails")) {
		h_errno = HOST_NOT_FOUND;
		return NULL;
	}
	return real_gethostbyaddr(addr, len, type);
}
