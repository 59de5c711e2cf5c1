/*
 * faults/tick.c - faults that only wait.
 *
 * Each call still does what it should and returns what it should, but a
 * call the catalogue says returns "at once" or "without blocking" first
 * sleeps a little, as emulators and userspace stacks that serve sockets
 * from a timer do. Results, errno and verdicts stay right: only the
 * suite's no-blocking checks (the calling thread's voluntary context
 * switches, fixtures sp_block_mark) can see these. Each joins its call
 * through a hook (faults/core.c; poll and select: faults/mux.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <sys/socket.h>

#include "spfault.h"

REAL(int, nanosleep, const struct timespec *, struct timespec *)

enum { TICK_NS = 10 * 1000 * 1000, PACE_NS = 1000 * 1000, MAXFD = 1024 };

static void sleep_ns(long ns)
{
	struct timespec t = { 0, ns };
	int saved = errno;
	load_nanosleep();
	real_nanosleep(&t, NULL);
	errno = saved;
}

static int blocking(int fd)
{
	int saved = errno, fl = fcntl(fd, F_GETFL);
	errno = saved;
	return fl >= 0 && !(fl & O_NONBLOCK);
}

FAULT(dontwait_waits_a_tick,
      "FLAG-DONTWAIT",
      "an LD_PRELOAD stack that emulates MSG_DONTWAIT on a blocking socket with a short receive "
      "timeout: EAGAIN comes, but after a wait");
void spfault_tick_recv(int fd, int flags)
{
	if ((flags & MSG_DONTWAIT) && spfault_on("dontwait_waits_a_tick") &&
	    spfault_sock_type(fd) && blocking(fd))
		sleep_ns(TICK_NS);
}
SPF_HOOK(tick_recv, SPF_OP(SPF_RECV) | SPF_OP(SPF_RECVFROM) | SPF_OP(SPF_RECVMSG), SPF_BEFORE, 10)
{
	spfault_tick_recv(c->fd, c->flags);
	return 0;
}

FAULT(zero_timeout_waits_a_tick,
      "MUX-SELECT-TIMEOUT",
      "an emulator that rounds every timeout up to its timer tick, so select or poll with a "
      "zero timeout sleeps one tick before it reports");
void spfault_tick_zero_timeout(int zero)
{
	if (zero && spfault_on("zero_timeout_waits_a_tick"))
		sleep_ns(TICK_NS);
}
SPF_HOOK(tick_poll, SPF_OP(SPF_POLL), SPF_BEFORE, 10)
{
	spfault_tick_zero_timeout(c->zero_timeout);
	return 0;
}

FAULT(udp_sends_paced,
      "UDP-NO-FLOW-CONTROL",
      "an emulator that gives loopback UDP the flow control of AF_UNIX datagram sockets: past "
      "a burst of 32, each send waits a moment for the receiver");
void spfault_tick_send(int fd)
{
	static unsigned sent[MAXFD];

	if (spfault_on("udp_sends_paced") && fd >= 0 && fd < MAXFD &&
	    spfault_sock_type(fd) == SOCK_DGRAM && ++sent[fd] > 32)
		sleep_ns(PACE_NS);
}
SPF_HOOK(tick_send, SPF_SENDING, SPF_BEFORE, 10)
{
	spfault_tick_send(c->fd);
	return 0;
}

FAULT(lowat_read_on_a_tick,
      "OPT-RCVLOWAT",
      "a stack that serves SO_RCVLOWAT reads from a timer: a blocking read whose low-water mark "
      "is already met still waits a tick");
void spfault_tick_read(int fd)
{
	if (spfault_on("lowat_read_on_a_tick") && spfault_sock_type(fd) == SOCK_STREAM &&
	    blocking(fd) && spfault_sockopt_int(fd, SOL_SOCKET, SO_RCVLOWAT) > 1)
		sleep_ns(TICK_NS);
}
SPF_HOOK(tick_read, SPF_OP(SPF_READ) | SPF_OP(SPF_RECV), SPF_BEFORE, 11)
{
	spfault_tick_read(c->fd);
	return 0;
}

FAULT(accept_queue_on_a_tick,
      "MUX-LISTEN-READABLE",
      "a stack that publishes its accept queue on a timer tick: a blocking accept on a listener "
      "already reported readable still waits");
void spfault_tick_accept(int l)
{
	/* A listening socket (its queue): one shut down is no listener. */
	if (spfault_on("accept_queue_on_a_tick") && blocking(l) &&
	    spfault_sockopt_int(l, SOL_SOCKET, SO_ACCEPTCONN))
		sleep_ns(TICK_NS);
}
SPF_HOOK(tick_accept, SPF_OP(SPF_ACCEPT), SPF_BEFORE, 10)
{
	spfault_tick_accept(c->fd);
	return 0;
}

FAULT(bind_waits_a_tick,
      "OPT-LINGER-ZERO-RST,OPT-REUSEADDR-TIME-WAIT",
      "a stack that frees the ports of closed connections from a timer: a bind to one waits "
      "a tick before it succeeds");
void spfault_tick_bind(int fd)
{
	if (spfault_on("bind_waits_a_tick") && spfault_sock_type(fd) == SOCK_STREAM)
		sleep_ns(TICK_NS);
}
SPF_HOOK(tick_bind, SPF_OP(SPF_BIND), SPF_BEFORE, 10)
{
	spfault_tick_bind(c->fd);
	return 0;
}
