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
#include <limits.h>
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
#include <stddef.h>
#include <sys/un.h>

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
FAULT(dgram_recv_keeps_tail,
      "UDP-TRUNCATE",
      "a datagram layer over a byte stream whose recv()/recvfrom()/read() keep a long datagram's tail for the next call");
FAULT(recvmsg_drops_source,
      "UDP-ONE-SOCKET-MANY-PEERS",
      "an LD_PRELOAD stack that wraps recvfrom() but returns recvmsg() without msg_name (msg_namelen 0)");
FAULT(unconnected_udp_reports_icmp,
      "UDP-NO-ACK",
      "a Windows-socket-backed layer (WSL1-like, WSAECONNRESET) whose next recvfrom()/recvmsg() on an unconnected socket fails after ICMP port unreachable");
FAULT(implicit_port_per_destination,
      "UDP-SENDTO-IMPLICIT-BIND",
      "a slirp-style user-mode network (symmetric NAT) that gives each new destination of an unbound socket its own source port");
FAULT(dgram_drops_empty,
      "UDP-BOUNDARY",
      "a datagram emulation over a byte stream that cannot carry an empty datagram: it reports 0 sent and delivers nothing");
FAULT(unconnected_write_enotconn,
      "UDP-DESTINATION-EACH-SEND",
      "socket_wrapper-style UDP over AF_UNIX datagrams: send()/write() without a destination fail with ENOTCONN, not EDESTADDRREQ");
FAULT(connected_send_refused_at_once,
      "UDP-CONNECTED",
      "socket_wrapper-style UDP over AF_UNIX datagrams: a connected send() to a closed port fails at once with ECONNREFUSED");
FAULT(dgram_limited_to_mtu,
      "UDP-BOUNDARY",
      "a userspace stack without IP fragmentation (lwIP built without IP_FRAG) that refuses datagrams over a 1500-byte MTU with EMSGSIZE");
FAULT(connected_dgram_backpressure,
      "UDP-NO-FLOW-CONTROL",
      "a UDP-over-TCP relay whose connected send()/write() wait for the receiver like a stream (blocks, or EAGAIN)");
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
/* Processes, signals and pipes (issue 11): the mechanism, not its first use. */
FAULT(waitpid_pid_reaps_any,
      "PROC-WAIT-REAPS",
      "a process emulation whose waitpid(pid) returns whichever child ended first");
FAULT(exit_status_7_bits,
      "PROC-WAIT-REAPS",
      "an emulator that keeps 7 bits of the exit code (exit(200) reads as 72)");
FAULT(signal_death_as_exit_code,
      "PROC-WAIT-REAPS",
      "a process layer that reports a child killed by signal N as exited 128+N, shell style");
FAULT(waitid_never_blocks,
      "PROC-WAIT-BLOCKS",
      "an emulator whose waitid(WEXITED) returns at once (as with WNOHANG) while children run");
FAULT(signal_one_shot,
      "SIG-HANDLER-RUNS",
      "System V signal(): the handler is reset to SIG_DFL on delivery (SA_RESETHAND|SA_NODEFER)");
FAULT(sigaction_one_shot,
      "SIG-HANDLER-RUNS",
      "an emulation layer that delivers each sigaction() handler once, as if SA_RESETHAND were set");
FAULT(alarm_never_fires,
      "SIG-HANDLER-RUNS",
      "a sandbox whose alarm() keeps the bookkeeping and return values but never raises SIGALRM");
FAULT(sa_restart_ignored,
      "SIG-INTERRUPTS-SLEEP",
      "a syscall emulation (early gVisor/WSL1 style) that never restarts: SA_RESTART calls fail with EINTR");
FAULT(sa_restart_always,
      "SIG-INTERRUPTS-SLEEP",
      "a libc or emulator that restarts every interrupted call, as if SA_RESTART were always set");
FAULT(pipe_small_write_splits,
      "PIPE-ATOMIC",
      "a pipe emulation that writes what fits of a write <= PIPE_BUF into a partly full pipe, then the rest");
FAULT(pipe_eof_drops_data,
      "PIPE-EOF",
      "a pipe emulation that reads EOF once the last writer is gone, dropping what was still unread");
FAULT(sigpipe_handler_never_runs,
      "PIPE-EPIPE",
      "a sandbox that ignores SIGPIPE behind the program's back even when it installs a handler");
FAULT(msg_nosignal_ignored,
      "PIPE-EPIPE",
      "an LD_PRELOAD socket stack that forwards send() without MSG_NOSIGNAL, so SIGPIPE is raised");
FAULT(resolver_drops_aliases,
      "DNS-BYNAME",
      "a libc whose gethostbyname() drops hosts-file aliases (musl)");
FAULT(resolver_repeats_first_answer,
      "DNS-BYNAME",
      "a caching resolver shim keyed on the wrong thing: after its first lookup, every name "
      "gets the first name's answer");
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
 * errno of the call it made. Options are asked of the real getsockopt(),
 * past any fault of faults/opt.c. */
int spfault_sockopt_int(int fd, int level, int opt)
{
	int v = 0, saved = errno;
	socklen_t len = sizeof(v);

	load_getsockopt();
	if (fd < 0 || real_getsockopt(fd, level, opt, &v, &len) < 0)
		v = 0;
	errno = saved;
	return v;
}

int spfault_sock_type(int fd)
{
	return spfault_sockopt_int(fd, SOL_SOCKET, SO_TYPE);
}

ino_t spfault_inode(int fd)
{
	struct stat st;
	int saved = errno;
	ino_t i = fd >= 0 && fstat(fd, &st) == 0 ? st.st_ino : 0;
	errno = saved;
	return i;
}

static int is_stream(int fd) { return spfault_sock_type(fd) == SOCK_STREAM; }
static int is_dgram(int fd) { return spfault_sock_type(fd) == SOCK_DGRAM; }

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
static int connected_dgram_sends;             /* connected_dgram_backpressure */
static char *dgram_tail[MAXFD];               /* dgram_recv_keeps_tail */
static size_t dgram_tail_len[MAXFD];
static char icmp_pending[MAXFD];              /* unconnected_udp_reports_icmp */
static struct sockaddr_storage nat_first[MAXFD];  /* implicit_port_per_destination */
static int nobody_listens(const struct sockaddr *to, socklen_t len);

/* ---- catalogue 2, UNIX-* (c2c): faults on functions interposed here ------ */

FAULT(unix_trunc_flag_missing,
      "UNIX-DGRAM-BOUNDARY,UNIX-SEQPACKET-BOUNDARY",
      "an AF_UNIX emulation that cuts a long message without setting MSG_TRUNC");
FAULT(scm_rights_reopens_file,
      "UNIX-SCM-RIGHTS",
      "a sandbox that passes SCM_RIGHTS files by re-opening them (/proc/self/fd), "
      "so the receiver gets a new open file description with its own offset");
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
FAULT(scm_rights_dropped,
      "UNIX-SCM-RIGHTS",
      "an LD_PRELOAD socket stack that carries the data of sendmsg() but drops "
      "SCM_RIGHTS control messages");
FAULT(abstract_name_lingers,
      "UNIX-ABSTRACT",
      "a stack that frees an abstract name only later (at process exit), so "
      "re-binding it after close() is EADDRINUSE");
FAULT(abstract_name_makes_file,
      "UNIX-ABSTRACT",
      "a stack without the abstract namespace that drops the leading NUL and makes "
      "a socket file under the rest of the name (BSD-like)");

static int is_unix(int fd) { return spfault_sockopt_int(fd, SOL_SOCKET, SO_DOMAIN) == AF_UNIX; }

/* scm_rights_reopens_file: each received regular file becomes a fresh
 * open() of the same file. */
static void reopen_passed_files(struct msghdr *mh)
{
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
}

/* unix_close_unlinks_path: remove the socket file of a pathname socket. */
static void unlink_bound_path(int fd)
{
	struct sockaddr_storage ss;
	struct sockaddr *sa = (struct sockaddr *)&ss;
	socklen_t len = sizeof(ss);
	int saved = errno;

	load_getsockname();
	memset(&ss, 0, sizeof(ss));
	if (real_getsockname(fd, sa, &len) == 0 && sa->sa_family == AF_UNIX &&
	    len > offsetof(struct sockaddr_un, sun_path) + 1 &&
	    ((struct sockaddr_un *)sa)->sun_path[0] != '\0')
		unlink(((struct sockaddr_un *)sa)->sun_path);
	errno = saved;
}

/* scm_rights_dropped: the received descriptors are closed and the control
 * data is gone. */
static void drop_passed_descriptors(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fd, saved = errno;
		for (int i = 0; cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			load_close();
			real_close(fd);
		}
		errno = saved;
	}
	mh->msg_controllen = 0;
}

/* pktinfo_reports_local_address: IP_PKTINFO's destination becomes
 * 127.0.0.1 (the interface address). */
static void pktinfo_to_loopback(struct msghdr *mh)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo pi;
			memcpy(&pi, CMSG_DATA(cm), sizeof(pi));
			pi.ipi_addr.s_addr = htonl(INADDR_LOOPBACK);
			memcpy(CMSG_DATA(cm), &pi, sizeof(pi));
		}
	}
}

/* abstract_name_lingers: after close(), another (leaked) socket holds the
 * abstract name the closed one had. */
static int hold_abstract_name(int fd)
{
	struct sockaddr_un un;
	socklen_t len = sizeof(un);
	int saved = errno;

	load_getsockname();
	load_bind();
	if (real_getsockname(fd, (struct sockaddr *)&un, &len) == 0 && un.sun_family == AF_UNIX &&
	    len > offsetof(struct sockaddr_un, sun_path) + 1 && un.sun_path[0] == '\0') {
		int holder = socket(AF_UNIX, spfault_sock_type(fd), 0);
		load_close();
		real_close(fd);
		if (holder >= 0)
			real_bind(holder, (struct sockaddr *)&un, len);
		errno = saved;
		return 1;
	}
	errno = saved;
	return 0;
}

/* abstract_name_makes_file: a socket file under the abstract name's rest. */
static void file_for_abstract_name(const struct sockaddr *a, socklen_t len)
{
	const struct sockaddr_un *un = (const struct sockaddr_un *)a;
	size_t off = offsetof(struct sockaddr_un, sun_path);
	char path[sizeof(un->sun_path)];
	int saved = errno;

	if (a->sa_family != AF_UNIX || len <= off + 1 || un->sun_path[0] != '\0')
		return;
	memcpy(path, un->sun_path + 1, len - off - 1);
	path[len - off - 1] = '\0';
	mknod(path, S_IFSOCK | 0755, 0);
	errno = saved;
}

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
		dgram_sends_since_recv = connected_dgram_sends = 0;
}

static int is_fifo(int fd)
{
	struct stat st;
	int saved = errno;
	int r = fd >= 0 && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
	errno = saved;
	return r;
}

/* ---- stream faults: one API, one blocking mode, the first time only ------------ */

FAULT(stream_recv_drops_rest,
      "TCP-BOUNDARY-SPLIT",
      "an LD_PRELOAD stack whose recv()/recvfrom()/recvmsg() path treats the stream like datagrams and drops what does not fit (read() goes to the kernel intact)");
FAULT(recv_reset_reads_as_eof,
      "TCP-CLOSE-DISCARDS-INPUT",
      "a userspace stack whose recv()-family calls map a connection reset to end-of-file (only read() reports ECONNRESET)");
FAULT(blocking_write_eagain,
      "TCP-FLOW-CONTROL",
      "an emulator that backs a blocking guest socket with a non-blocking host socket and passes EAGAIN and short counts through");
FAULT(blocking_write_short,
      "TCP-FLOW-CONTROL",
      "a userspace TCP stack whose blocking send() returns after copying one 8 KiB segment (a short count) instead of blocking for the rest");
FAULT(connect_returns_before_handshake,
      "TCP-HANDSHAKE-BEFORE-ACCEPT",
      "a stack with deferred connect (TCP_FASTOPEN_CONNECT-like, or a lazy proxy shim): connect() returns 0 at once and the SYN goes out on the next call on the socket");
FAULT(implicit_bind_reports_wildcard,
      "TCP-CONNECT-IMPLICIT-BIND",
      "an LD_PRELOAD or NAT-ing sandbox stack whose getsockname() after connect()'s implicit bind reports the wildcard address (only the port is right)");
FAULT(shut_rd_eof_once,
      "CLOSE-HALF-RD",
      "an emulator that turns shutdown(SHUT_RD) into a one-shot EOF event: the first read returns 0, later reads say EAGAIN as if the socket were open");
FAULT(eof_reported_once,
      "CLOSE-HALF-WR-EOF",
      "an emulator that delivers the peer's FIN as a one-shot EOF event: the first read returns 0, later reads say EAGAIN");
FAULT(nonblocking_close_discards_output,
      "TCP-CLOSE-FLUSHES-OUTPUT",
      "a userspace TCP stack that flushes the send queue inside close() only for blocking sockets and resets non-blocking ones (it cannot linger in the background)");
FAULT(write_hides_reset,
      "CLOSE-FULL-LOSES-REPLY,CLOSE-HALF-WR-NO-MORE-WRITES,TCP-CLOSE-DISCARDS-INPUT",
      "an LD_PRELOAD stack that buffers write() in user space and reports success even when the connection is reset or shut (send() reports the error)");
FAULT(sigpipe_once_per_socket,
      "CLOSE-HALF-WR-NO-MORE-WRITES",
      "an emulator that raises SIGPIPE only for the first failed write on a socket (a one-shot 'broken pipe' event), later writes just fail with EPIPE");

static struct sockaddr_storage lazy_peer[MAXFD]; /* connect_returns_before_handshake */
static socklen_t lazy_len[MAXFD];
static char connected_by_us[MAXFD];            /* implicit_bind_reports_wildcard */
static char shut_rd_state[MAXFD];               /* shut_rd_eof_once: 1 shut, 2 EOF given */
static char eof_given[MAXFD];                   /* eof_reported_once */
static char sigpipe_given[MAXFD];               /* sigpipe_once_per_socket */

static int fd_nonblocking(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);
	errno = saved;
	return fl >= 0 && (fl & O_NONBLOCK);
}

/* The deferred handshake happens on the next call on the socket. */
static void lazy_connect_finish(int fd)
{
	if (fd < 0 || fd >= MAXFD || !lazy_len[fd])
		return;
	int saved = errno;
	socklen_t len = lazy_len[fd];
	lazy_len[fd] = 0;
	load_connect();
	real_connect(fd, (struct sockaddr *)&lazy_peer[fd], len);
	errno = saved;
}

static int lazy_connect_start(int fd, const struct sockaddr *a, socklen_t len)
{
	if (!on("connect_returns_before_handshake") || fd < 0 || fd >= MAXFD ||
	    len > sizeof(lazy_peer[fd]) || !is_stream(fd) || fd_nonblocking(fd))
		return 0;
	memcpy(&lazy_peer[fd], a, len);
	lazy_len[fd] = len;
	return 1;
}

static void stream_state_forget(int fd)
{
	if (fd < 0 || fd >= MAXFD)
		return;
	lazy_len[fd] = 0;
	connected_by_us[fd] = shut_rd_state[fd] = eof_given[fd] = sigpipe_given[fd] = 0;
}

/* After a read-family call on a stream socket (recv_family: recv,
 * recvfrom, recvmsg; not read()). */
static ssize_t stream_in_faults(int fd, size_t n, ssize_t r, int recv_family)
{
	if (fd < 0 || fd >= MAXFD || !is_stream(fd))
		return r;
	if (recv_family && r < 0 && errno == ECONNRESET && on("recv_reset_reads_as_eof"))
		r = 0;
	if (recv_family && r > 0 && (size_t)r == n && on("stream_recv_drops_rest")) {
		char scratch[65536];
		int saved = errno;
		load_recv();
		while (real_recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT) > 0)
			;
		errno = saved;
	}
	if (r == 0 && n > 0 && shut_rd_state[fd] && on("shut_rd_eof_once")) {
		if (shut_rd_state[fd]++ >= 2) {
			errno = EAGAIN;
			return -1;
		}
	} else if (r == 0 && n > 0 && !shut_rd_state[fd] && on("eof_reported_once")) {
		if (eof_given[fd]++) {
			errno = EAGAIN;
			return -1;
		}
	}
	return r;
}

/* A write-family call on a stream socket under one of the blocking or
 * SIGPIPE faults; returns 1 with *w set when it made the call itself. */
static int stream_out_faults(int fd, const void *buf, size_t n, int flags, int via_write, ssize_t *w)
{
	if (fd < 0 || fd >= MAXFD)
		return 0;
	load_send();
	load_write();
	int blocking = !fd_nonblocking(fd) && !(flags & MSG_DONTWAIT);
	if (blocking && on("blocking_write_eagain")) {
		*w = real_send(fd, buf, n, flags | MSG_DONTWAIT);
		return 1;
	}
	if (blocking && n > 8192 && on("blocking_write_short")) {
		*w = real_send(fd, buf, 8192, flags);
		return 1;
	}
	if (via_write && on("write_hides_reset")) {
		*w = real_write(fd, buf, n);
		if (*w < 0 && (errno == EPIPE || errno == ECONNRESET))
			*w = (ssize_t)n;
		return 1;
	}
	if (on("sigpipe_once_per_socket")) {
		if (sigpipe_given[fd])
			*w = real_send(fd, buf, n, flags | MSG_NOSIGNAL);
		else
			*w = via_write ? real_write(fd, buf, n) : real_send(fd, buf, n, flags);
		if (*w < 0 && errno == EPIPE && !(flags & MSG_NOSIGNAL))
			sigpipe_given[fd] = 1;
		return 1;
	}
	return 0;
}

/* UDP faults that answer a receive themselves (1, result in *r). named:
 * the call reports a source (recvfrom/recvmsg); buf NULL: recvmsg. */
static int udp_recv_fault(int fd, void *buf, size_t n, int flags, struct sockaddr *from,
			  socklen_t *len, int named, ssize_t *r)
{
	if (fd < 0 || fd >= MAXFD ||
	    !(on("unconnected_udp_reports_icmp") || on("dgram_recv_keeps_tail")) || !is_dgram(fd))
		return 0;
	/* unconnected_udp_reports_icmp: the port unreachable an earlier
	 * sendto() provoked fails the next receive that names a source. */
	if (named && icmp_pending[fd] && on("unconnected_udp_reports_icmp")) {
		icmp_pending[fd] = 0;
		errno = ECONNREFUSED;
		*r = -1;
		return 1;
	}
	/* dgram_recv_keeps_tail: what did not fit is returned next time. */
	if (!buf || (flags & MSG_PEEK) || !on("dgram_recv_keeps_tail"))
		return 0;
	if (dgram_tail[fd]) {
		size_t k = dgram_tail_len[fd] < n ? dgram_tail_len[fd] : n;
		memcpy(buf, dgram_tail[fd], k);
		free(dgram_tail[fd]);
		dgram_tail[fd] = NULL;
		*r = (ssize_t)k;
		return 1;
	}
	char whole[65536];
	load_recvfrom();
	ssize_t got = real_recvfrom(fd, whole, sizeof(whole), flags, from, len);
	if (got > (ssize_t)n && (dgram_tail[fd] = malloc((size_t)got - n)) != NULL) {
		dgram_tail_len[fd] = (size_t)got - n;
		memcpy(dgram_tail[fd], whole + n, dgram_tail_len[fd]);
		got = (ssize_t)n;
	}
	if (got > 0)
		memcpy(buf, whole, (size_t)got < n ? (size_t)got : n);
	*r = got;
	return 1;
}

ssize_t read(int fd, void *buf, size_t n)
{
	load_read();
	spfault_tick_read(fd);
	ssize_t fr;
	if (udp_recv_fault(fd, buf, n, 0, NULL, NULL, 0, &fr))
		return fr;
	/* empty_pipe_reads_eof: an empty pipe reads as EOF instead of
	 * blocking until a writer writes. */
	if (on("empty_pipe_reads_eof") && is_fifo(fd)) {
		int avail = 0;
		if (ioctl(fd, FIONREAD, &avail) == 0 && avail == 0)
			return 0;
	}
	/* pipe_eof_drops_data: no writer left means EOF, unread data or not. */
	if (on("pipe_eof_drops_data") && is_fifo(fd)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int saved = errno;
		if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP))
			return 0;
		errno = saved;
	}
	lazy_connect_finish(fd);
	ssize_t r = real_read(fd, buf, cap_stream(fd, n));
	note_recv(fd);
	return stream_in_faults(fd, n, merge_dgrams(fd, buf, n, after_stream_read(fd, r)), 0);
}

ssize_t recv(int fd, void *buf, size_t n, int flags)
{
	load_recv();
	spfault_tick_recv(fd, flags);
	spfault_tick_read(fd);
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t fr;
	if (udp_recv_fault(fd, buf, n, flags, NULL, NULL, 0, &fr))
		return fr;
	lazy_connect_finish(fd);
	ssize_t r = real_recv(fd, buf, cap_stream(fd, n), flags);
	note_recv(fd);
	return stream_in_faults(fd, n, merge_dgrams(fd, buf, n, after_stream_read(fd, r)), 1);
}

ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *from, socklen_t *len)
{
	load_recvfrom();
	spfault_tick_recv(fd, flags);
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t fr;
	if (udp_recv_fault(fd, buf, n, flags, from, len, 1, &fr))
		return fr;
	lazy_connect_finish(fd);
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
	return stream_in_faults(fd, n, merge_dgrams(fd, buf, n, after_stream_read(fd, r)), 1);
}

ssize_t recvmsg(int fd, struct msghdr *mh, int flags)
{
	load_recvmsg();
	spfault_tick_recv(fd, flags);
	if ((flags = spfault_opt_recv_flags(fd, flags)) < 0)
		return -1;
	ssize_t fr;
	if (udp_recv_fault(fd, NULL, 0, flags, NULL, NULL, 1, &fr))
		return fr;
	lazy_connect_finish(fd);
	ssize_t r = real_recvmsg(fd, mh, flags);
	note_recv(fd);
	/* recvmsg_drops_source: msg_name is never filled in. */
	if (r >= 0 && mh->msg_name && on("recvmsg_drops_source") && is_dgram(fd))
		mh->msg_namelen = 0;
	size_t room = 0;
	for (size_t i = 0; mh && i < (size_t)mh->msg_iovlen; i++)
		room += mh->msg_iov[i].iov_len;
	r = stream_in_faults(fd, room, r, 1);
	/* dgram_no_trunc_flag: truncation goes unreported. */
	if (r >= 0 && on("dgram_no_trunc_flag"))
		mh->msg_flags &= ~MSG_TRUNC;
	if (r >= 0 && on("unix_trunc_flag_missing") && is_unix(fd))
		mh->msg_flags &= ~MSG_TRUNC;
	if (r >= 0 && on("scm_rights_reopens_file") && mh->msg_controllen)
		reopen_passed_files(mh);
	if (r >= 0 && on("scm_rights_dropped") && mh->msg_controllen)
		drop_passed_descriptors(mh);
	if (r >= 0 && on("pktinfo_reports_local_address") && mh->msg_controllen)
		pktinfo_to_loopback(mh);
	return r;
}

/* ---- catalogue 2, MCAST-* (c2c): faults on functions interposed here ----- */

FAULT(broadcast_without_so_broadcast,
      "MCAST-BROADCAST-NEEDS-OPT",
      "a stack that never checks SO_BROADCAST (lwIP-style builds without "
      "IP_SOF_BROADCAST), so broadcasts are sent without the option");
FAULT(broadcast_connect_unchecked,
      "MCAST-BROADCAST-NEEDS-OPT",
      "a stack that checks SO_BROADCAST in sendto() but lets connect() to a "
      "broadcast address through without it");
FAULT(pktinfo_reports_local_address,
      "MCAST-BROADCAST-DELIVERED,MCAST-JOIN-DELIVERS",
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

/* Send a datagram the way the mcast faults say; *done is 0 when none
 * applies (the caller sends normally). */
static ssize_t mcast_faulty_sendto(int fd, const void *buf, size_t n, int flags,
				   const struct sockaddr *to, socklen_t len, int *done)
{
	int kind = ipv4_dest_kind(to, len), v = 0, saved = errno;
	socklen_t vl = sizeof(v);

	*done = 1;
	if (kind == 'b' && on("broadcast_dropped"))
		return (ssize_t)n;
	if (kind == 'm' && on("multicast_dropped"))
		return (ssize_t)n;
	load_getsockopt();
	if (kind == 'b' && on("broadcast_without_so_broadcast") &&
	    real_getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, &vl) == 0 && !v) {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
		ssize_t r = real_sendto(fd, buf, n, flags, to, len);
		saved = errno;
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &v, sizeof(v));
		errno = saved;
		return r;
	}
	if (kind == 'm' && on("multicast_ttl_as_unicast") &&
	    real_getsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &v, &vl) == 0) {
		int ttl = 64;
		setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
		ssize_t r = real_sendto(fd, buf, n, flags, to, len);
		saved = errno;
		setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &v, sizeof(v));
		errno = saved;
		return r;
	}
	errno = saved;
	*done = 0;
	return 0;
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

/* pipe_small_write_splits: a write of at most PIPE_BUF bytes into a
 * pipe with less room than that puts in what fits first (all a
 * non-blocking writer gets), then the rest: other writers come between. */
static ssize_t split_small_pipe_write(int fd, const void *buf, size_t n)
{
	int saved = errno, inq = 0, cap = fcntl(fd, F_GETPIPE_SZ);
	int nonblock = (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;

	errno = saved;
	load_write();
	if (n > PIPE_BUF || cap <= 0 || ioctl(fd, FIONREAD, &inq) < 0 || inq <= 0 ||
	    cap - inq <= 0 || (size_t)(cap - inq) >= n) {
		errno = saved;
		return real_write(fd, buf, n);
	}
	errno = saved;
	ssize_t w = real_write(fd, buf, (size_t)(cap - inq));
	if (w <= 0 || nonblock)
		return w;
	size_t done = (size_t)w;
	while (done < n) {
		w = real_write(fd, (const char *)buf + done, n - done);
		if (w <= 0)
			return (ssize_t)done;
		done += (size_t)w;
	}
	return (ssize_t)n;
}

static ssize_t faulty_send(int fd, const void *buf, size_t n, int flags, int via_write)
{
	spfault_tick_send(fd);
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
		if (n == 0 && on("dgram_drops_empty"))
			return 0;
		if (n > 1472 && on("dgram_limited_to_mtu")) {
			errno = EMSGSIZE;
			return -1;
		}
		/* unconnected_write_enotconn, connected_send_refused_at_once:
		 * AF_UNIX datagram semantics under a UDP socket. */
		if (on("unconnected_write_enotconn") || on("connected_send_refused_at_once")) {
			struct sockaddr_storage peer;
			socklen_t pl = sizeof(peer);
			int saved = errno, connected = getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
			errno = saved;
			if (!connected && on("unconnected_write_enotconn")) {
				errno = ENOTCONN;
				return -1;
			}
			if (connected && on("connected_send_refused_at_once") &&
			    nobody_listens((struct sockaddr *)&peer, pl)) {
				errno = ECONNREFUSED;
				return -1;
			}
		}
		/* connected_dgram_backpressure: held back once the receiver is
		 * 32 datagrams behind: a blocking socket waits, else EAGAIN. */
		if (on("connected_dgram_backpressure") && ++connected_dgram_sends > 32) {
			int fl = fcntl(fd, F_GETFL);
			if (!(flags & MSG_DONTWAIT) && fl >= 0 && !(fl & O_NONBLOCK)) {
				const char *w = getenv("SOCKPROBE_WAIT_MS");
				poll(NULL, 0, 2 * (w && atoi(w) > 0 ? atoi(w) : 2000));
				errno = EINTR;
			} else {
				errno = EAGAIN;
			}
			return -1;
		}
	} else if (is_stream(fd)) {
		ssize_t w;
		lazy_connect_finish(fd);
		if (stream_out_faults(fd, buf, n, flags, via_write, &w))
			return w;
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
		if (on("pipe_small_write_splits") && is_fifo(fd))
			return split_small_pipe_write(fd, buf, n);
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
	if (on("msg_nosignal_ignored")) /* the flag is not passed on */
		flags &= ~MSG_NOSIGNAL;
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
	spfault_tick_send(fd);
	flags = spfault_opt_send_flags(fd, flags);
	if (is_dgram(fd)) {
		if (fd < MAXFD && len <= sizeof(last_dest[fd]))
			memcpy(&last_dest[fd], to, len);
		if (n == 0 && on("dgram_drops_empty"))
			return 0;
		/* dgram_limited_to_mtu: no fragmentation, so nothing over
		 * the MTU less the IP and UDP headers. */
		if (n > 1472 && on("dgram_limited_to_mtu")) {
			errno = EMSGSIZE;
			return -1;
		}
		int icmp = on("unconnected_udp_reports_icmp"), nat = on("implicit_port_per_destination");
		struct sockaddr_storage peer, dst;
		socklen_t pl = sizeof(peer);
		int saved = errno, connected = (icmp || nat) &&
			getpeername(fd, (struct sockaddr *)&peer, &pl) == 0;
		errno = saved;
		memset(&dst, 0, sizeof(dst));
		memcpy(&dst, to, len < sizeof(dst) ? len : sizeof(dst));
		if (icmp && fd < MAXFD && !connected && nobody_listens(to, len))
			icmp_pending[fd] = 1;
		/* implicit_port_per_destination: a new destination of an
		 * implicitly bound socket leaves from a fresh port. */
		if (nat && fd < MAXFD && !connected && !explicitly_bound[fd]) {
			if (!nat_first[fd].ss_family)
				nat_first[fd] = dst;
			else if (!same_addr(&nat_first[fd], &dst)) {
				int s = socket(to->sa_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
				if (s < 0)
					return -1;
				ssize_t w = real_sendto(s, buf, n, flags, to, len);
				load_close();
				real_close(s);
				return w;
			}
		}
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
	if (is_dgram(fd)) {
		int done;
		ssize_t r = mcast_faulty_sendto(fd, buf, n, flags, to, len, &done);
		if (done)
			return r;
	}
	return real_sendto(fd, buf, n, flags, to, len);
}

/* ---- connection set-up --------------------------------------------------------- */

int bind(int fd, const struct sockaddr *a, socklen_t len)
{
	load_bind();
	spfault_tick_bind(fd);
	int r = spfault_opt_bind(fd, a, len, real_bind(fd, a, len));
	if (r == 0 && fd >= 0 && fd < MAXFD)
		explicitly_bound[fd] = 1;
	if (r == 0 && on("abstract_name_makes_file"))
		file_for_abstract_name(a, len);
	return r;
}

FAULT(accepted_name_is_listeners,
      "CONN-NAMES-AGREE",
      "a socket layer that names an accepted socket by its listener's bound address, "
      "so a wildcard listener's connections report 0.0.0.0 / :: in getsockname()");

/* Accepted sockets whose listener is bound to the wildcard address. */
static unsigned char from_wildcard_listener[MAXFD];

static int is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	return 0;
}

static void note_accepted(int l, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int saved = errno;

	if (fd < 0 || fd >= MAXFD)
		return;
	load_getsockname();
	memset(&ss, 0, sizeof(ss));
	from_wildcard_listener[fd] = real_getsockname(l, (struct sockaddr *)&ss, &sl) == 0 &&
				     is_wildcard(&ss);
	errno = saved;
}

int getsockname(int fd, struct sockaddr *a, socklen_t *len)
{
	load_getsockname();
	lazy_connect_finish(fd);
	int r = real_getsockname(fd, a, len);
	/* accepted_name_is_listeners: an accepted socket of a wildcard
	 * listener reports the wildcard address. */
	if (r == 0 && on("accepted_name_is_listeners") && fd >= 0 && fd < MAXFD &&
	    from_wildcard_listener[fd]) {
		if (a->sa_family == AF_INET)
			((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (a->sa_family == AF_INET6)
			((struct sockaddr_in6 *)a)->sin6_addr = in6addr_any;
	}
	/* implicit_bind_reports_wildcard: the port is right, the address is
	 * the wildcard. */
	if (r == 0 && on("implicit_bind_reports_wildcard") && fd >= 0 && fd < MAXFD &&
	    connected_by_us[fd] && !explicitly_bound[fd]) {
		if (a->sa_family == AF_INET)
			((struct sockaddr_in *)a)->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (a->sa_family == AF_INET6)
			((struct sockaddr_in6 *)a)->sin6_addr = in6addr_any;
	}
	/* no_implicit_bind: connect()/sendto() leave an unbound socket
	 * without a local port. */
	if (r == 0 && on("no_implicit_bind") && fd >= 0 && fd < MAXFD &&
	    !explicitly_bound[fd] && spfault_sock_type(fd) != 0) {
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
	lazy_connect_finish(fd);
	int r = real_getsockopt(fd, level, opt, val, len);
	/* multicast_ttl_reads_ip_ttl: IP_MULTICAST_TTL answers with IP_TTL. */
	if (r == 0 && level == IPPROTO_IP && opt == IP_MULTICAST_TTL &&
	    on("multicast_ttl_reads_ip_ttl") && *len >= sizeof(int))
		*(int *)val = 64;
	/* peercred_reports_self: SO_PEERCRED names the caller itself. */
	if (r == 0 && level == SOL_SOCKET && opt == SO_PEERCRED && on("peercred_reports_self"))
		((struct ucred *)val)->pid = getpid();
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
	/* broadcast_connect_unchecked: connect() to a broadcast address as if
	 * SO_BROADCAST were set. */
	if (on("broadcast_connect_unchecked") && is_dgram(fd) && ipv4_dest_kind(a, len) == 'b') {
		int one = 1, was = 0, saved;
		socklen_t wl = sizeof(was);
		load_getsockopt();
		real_getsockopt(fd, SOL_SOCKET, SO_BROADCAST, &was, &wl);
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
		int r = spfault_opt_connect(fd, real_connect(fd, a, len));
		saved = errno;
		setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &was, sizeof(was));
		errno = saved;
		return r;
	}
	if (fd >= 0 && fd < MAXFD && is_stream(fd))
		connected_by_us[fd] = 1;
	/* connect_returns_before_handshake: nothing is sent yet. */
	if (lazy_connect_start(fd, a, len))
		return 0;
	int r = spfault_opt_connect(fd, real_connect(fd, a, len));
	/* unix_connect_refuses_missing_path: ENOENT becomes ECONNREFUSED. */
	if (r < 0 && errno == ENOENT && on("unix_connect_refuses_missing_path") && is_unix(fd))
		errno = ECONNREFUSED;
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
	spfault_tick_accept(l);
	int fl = spfault_opt_accept_begin(l);
	int fd = real_accept(l, a, len);
	spfault_opt_accept_end(l, fl, a, len, fd);
	note_accepted(l, fd);
	return repeat_first(l, fd);
}

int accept4(int l, struct sockaddr *a, socklen_t *len, int flags)
{
	load_accept4();
	spfault_tick_accept(l);
	int fl = spfault_opt_accept_begin(l);
	int fd = real_accept4(l, a, len, flags);
	spfault_opt_accept_end(l, fl, a, len, fd);
	note_accepted(l, fd);
	return repeat_first(l, fd);
}

/* ---- disconnecting --------------------------------------------------------------- */

FAULT(shutdown_rd_leaves_reader_blocked,
      "THREAD-SHUTDOWN-WAKES-READ",
      "a userspace stack that accepts shutdown(SHUT_RD) but leaves a reader blocked "
      "in another thread waiting for data");

int shutdown(int fd, int how)
{
	load_shutdown();
	lazy_connect_finish(fd);
	if (fd >= 0 && fd < MAXFD && (how == SHUT_RD || how == SHUT_RDWR) && is_stream(fd))
		shut_rd_state[fd] = 1;
	/* shutdown_ignored: half-close does nothing at all. */
	if (on("shutdown_ignored") && is_stream(fd))
		return 0;
	/* shutdown_rd_leaves_reader_blocked (THREAD-*): SHUT_RD is accepted
	 * but ends no read; SHUT_RDWR only shuts the write side. */
	if (on("shutdown_rd_leaves_reader_blocked") && is_stream(fd) && how != SHUT_WR)
		return how == SHUT_RD ? 0 : real_shutdown(fd, SHUT_WR);
	/* shutdown_wr_closes_both: SHUT_WR behaves like SHUT_RDWR. */
	if (on("shutdown_wr_closes_both") && how == SHUT_WR)
		how = SHUT_RDWR;
	return real_shutdown(fd, how);
}

int close(int fd)
{
	load_close();
	stream_state_forget(fd);
	if (on("unix_close_unlinks_path") && is_unix(fd))
		unlink_bound_path(fd);
	if (on("abstract_name_lingers") && is_unix(fd) && hold_abstract_name(fd))
		return 0; /* fd is closed; a leaked socket keeps its name */
	if (fd >= 0 && fd < MAXFD) {
		explicitly_bound[fd] = 0;
		from_wildcard_listener[fd] = 0;
		memset(&fake_peer[fd], 0, sizeof(fake_peer[fd]));
		memset(&last_dest[fd], 0, sizeof(last_dest[fd]));
		memset(&nat_first[fd], 0, sizeof(nat_first[fd]));
		icmp_pending[fd] = 0;
		free(dgram_tail[fd]);
		dgram_tail[fd] = NULL;
	}
	if (is_stream(fd)) {
		/* close_discards_output: close() resets, dropping queued output;
		 * nonblocking_close_discards_output: only for O_NONBLOCK sockets. */
		if (on("close_discards_output") ||
		    (on("nonblocking_close_discards_output") && fd_nonblocking(fd))) {
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
	/* exit_status_7_bits: the top bit of the exit code is lost. */
	if (on("exit_status_7_bits") && WIFEXITED(st))
		return st & ~0x8000;
	/* signal_death_as_exit_code: killed by N reads as exited 128+N. */
	if (on("signal_death_as_exit_code") && WIFSIGNALED(st))
		return ((128 + WTERMSIG(st)) & 0xff) << 8;
	return st;
}

pid_t waitpid(pid_t pid, int *st, int options)
{
	load_waitpid();
	/* waitpid_ignores_wnohang: WNOHANG blocks like a plain waitpid. */
	if (on("waitpid_ignores_wnohang"))
		options &= ~WNOHANG;
	/* waitpid_pid_reaps_any: a pid is taken as "any child". */
	if (pid > 0 && on("waitpid_pid_reaps_any"))
		pid = -1;
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
	/* waitid_never_blocks: WEXITED without WNOHANG returns at once. */
	if (on("waitid_never_blocks"))
		options |= WNOHANG;
	int r = real_waitid(type, id, si, options);
	if (r == 0 && si && si->si_code == CLD_EXITED && on("status_loses_exit_code"))
		si->si_status = 0;
	if (r == 0 && si && si->si_code == CLD_EXITED && on("exit_status_7_bits"))
		si->si_status &= 0x7f;
	if (r == 0 && si && si->si_code == CLD_KILLED && on("signal_death_as_exit_code")) {
		si->si_code = CLD_EXITED;
		si->si_status = (128 + si->si_status) & 0xff;
	}
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
	/* sigpipe_handler_never_runs: a SIGPIPE handler is swapped for SIG_IGN. */
	if (sig == SIGPIPE && h != SIG_DFL && h != SIG_IGN && h != SIG_ERR &&
	    on("sigpipe_handler_never_runs"))
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

static int is_handler(sighandler_t h)
{
	return h != SIG_DFL && h != SIG_IGN && h != SIG_ERR;
}

/* The flags a fault makes of a handler's sigaction() flags. */
static int faulty_flags(int flags)
{
	/* sigaction_one_shot: every handler is delivered once. */
	if (on("sigaction_one_shot"))
		flags |= SA_RESETHAND | SA_NODEFER;
	/* sa_restart_ignored / sa_restart_always: restart never / always. */
	if (on("sa_restart_ignored"))
		flags &= ~SA_RESTART;
	if (on("sa_restart_always"))
		flags |= SA_RESTART;
	return flags;
}

sighandler_t signal(int sig, sighandler_t h)
{
	load_signal();
	h = faulty_handler(sig, h);
	/* signal_one_shot: System V semantics (reset on delivery, not
	 * blocked while it runs, no restart). sa_restart_*: as for sigaction. */
	if (is_handler(h) && (on("signal_one_shot") || on("sa_restart_ignored") ||
			      on("sa_restart_always"))) {
		struct sigaction sa = { .sa_handler = h }, old;
		sa.sa_flags = on("signal_one_shot") ? SA_RESETHAND | SA_NODEFER : SA_RESTART;
		if (on("sa_restart_ignored"))
			sa.sa_flags &= ~SA_RESTART;
		sigemptyset(&sa.sa_mask);
		load_sigaction();
		if (real_sigaction(sig, &sa, &old) < 0)
			return SIG_ERR;
		return old.sa_handler;
	}
	return real_signal(sig, h);
}

int sigaction(int sig, const struct sigaction *sa, struct sigaction *old)
{
	load_sigaction();
	if (sa && !(sa->sa_flags & SA_SIGINFO)) {
		sighandler_t h = faulty_handler(sig, sa->sa_handler);
		int flags = is_handler(h) ? faulty_flags(sa->sa_flags) : sa->sa_flags;
		if (h != sa->sa_handler || flags != sa->sa_flags) {
			struct sigaction copy = *sa;
			copy.sa_handler = h;
			copy.sa_flags = flags;
			return real_sigaction(sig, &copy, old);
		}
	}
	return real_sigaction(sig, sa, old);
}

/* alarm_never_fires: alarm() answers with the seconds left of what it
 * was asked, but no SIGALRM ever comes. */
static struct timespec fake_alarm_at;

unsigned int alarm(unsigned int s)
{
	static unsigned int (*real_alarm)(unsigned int);
	if (!real_alarm)
		real_alarm = dlsym(RTLD_NEXT, "alarm");
	if (!on("alarm_never_fires"))
		return real_alarm(s);
	struct timespec now;
	unsigned left = 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (fake_alarm_at.tv_sec && fake_alarm_at.tv_sec > now.tv_sec)
		left = (unsigned)(fake_alarm_at.tv_sec - now.tv_sec);
	fake_alarm_at.tv_sec = s ? now.tv_sec + s : 0;
	fake_alarm_at.tv_nsec = now.tv_nsec;
	return left;
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
	/* resolver_repeats_first_answer: the first answer, kept (deep copy),
	 * comes back for every later name. */
	if (h && on("resolver_repeats_first_answer")) {
		static struct hostent first;
		static char fname[256], faddr[8][16], *faddrs[9], falias[8][256], *faliases[9];
		if (!first.h_name) {
			int i = 0, j = 0;
			snprintf(fname, sizeof(fname), "%s", h->h_name);
			for (; i < 8 && h->h_addr_list[i]; i++) {
				memcpy(faddr[i], h->h_addr_list[i], (size_t)h->h_length);
				faddrs[i] = faddr[i];
			}
			faddrs[i] = NULL;
			for (; j < 8 && h->h_aliases[j]; j++) {
				snprintf(falias[j], sizeof(falias[j]), "%s", h->h_aliases[j]);
				faliases[j] = falias[j];
			}
			faliases[j] = NULL;
			first = (struct hostent){ fname, faliases, h->h_addrtype, h->h_length, faddrs };
		}
		return &first;
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
