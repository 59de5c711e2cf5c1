/*
 * faults/tcpopt.c - faults of catalogue 3's TCPOPT-* behaviors (the
 * keepalive knobs, TCP_USER_TIMEOUT, TCP_SYNCNT, TCP_INFO). Part of
 * libspfault.so; see spfault.h for the conventions.
 *
 * This file interposes nothing itself: it joins setsockopt, getsockopt
 * and accept (faults/core.c) through hooks. Every hook is transparent
 * while no fault of this file is on and keeps errno unless it changes the
 * call's outcome. Calls the faults make themselves go to the kernel
 * directly (SPF_SYSCALL), past every interposer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(accept_drops_keepalive,
      "TCPOPT-KEEPALIVE-KNOBS",
      "gVisor (issue 1095): an accepted socket does not inherit its listener's options: "
      "SO_KEEPALIVE reads 0 and TCP_KEEPIDLE the default (7200) although the listener had 1 "
      "and 42");
FAULT(keepalive_zero_accepted,
      "TCPOPT-KEEPALIVE-KNOBS",
      "a BSD-derived stack that keeps the keepalive knobs as unsigned counts without a lower "
      "bound: TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT 0 are accepted instead of EINVAL");
FAULT(user_timeout_negative_accepted,
      "TCPOPT-USER-TIMEOUT",
      "Linux before the negative-value check of TCP_USER_TIMEOUT (2013): setsockopt(-1) "
      "succeeds and the option reads back -1 instead of failing with EINVAL");
FAULT(syncnt_ignored,
      "TCPOPT-SYNCNT",
      "a stack that takes TCP_SYNCNT (checks the range, reads it back) without applying it, "
      "so a connect that gets no SYN-ACK retries for the default two minutes (gVisor's "
      "TCP_SYNCNT: a stub since issue 2625, after issue 1441)");
FAULT(tcp_info_short_len_einval,
      "TCPOPT-INFO",
      "gVisor host networking (PR 7947): getsockopt(TCP_INFO) with a buffer shorter than the "
      "struct fails with EINVAL instead of filling what fits (broke iperf3)");
FAULT(tcp_info_mss_zero,
      "TCPOPT-INFO",
      "gVisor's netstack (runsc 2022-12, seen by the confirm program): TCP_INFO of a connection "
      "that moved data has tcpi_snd_mss 0");
FAULT(tcp_info_counters_zero,
      "TCPOPT-INFO",
      "a stack whose TCP_INFO leaves the byte counters (tcpi_bytes_acked, tcpi_bytes_received) "
      "at 0 although data moved");

/* The kernel's struct tcp_info: tcpi_snd_mss; glibc's ends at 104; the counters. */
enum { SND_MSS = 16, GLIBC_TCP_INFO = 104, BYTES_ACKED = 120, BYTES_RECEIVED = 128 };

static int is_tcp(int fd)
{
	return spfault_sock_type(fd) == SOCK_STREAM &&
	       spfault_sockopt_int(fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP;
}

static int int_arg(const struct spf_call *c, int *v)
{
	if (!c->val || c->setlen < sizeof(int))
		return 0;
	memcpy(v, c->val, sizeof(int));
	return 1;
}

/* ---- setsockopt ------------------------------------------------------------------ */

SPF_HOOK(tcpopt_set, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 20)
{
	int v;
	if (c->level != IPPROTO_TCP || !int_arg(c, &v))
		return 0;
	if ((c->opt == TCP_KEEPIDLE || c->opt == TCP_KEEPINTVL || c->opt == TCP_KEEPCNT) &&
	    v == 0 && on("keepalive_zero_accepted") && is_tcp(c->fd)) {
		spfault_store_opt(c->fd, IPPROTO_TCP, c->opt, &v, sizeof(v));
		c->r = 0;
		return 1;
	}
	if (c->opt == TCP_USER_TIMEOUT && v < 0 && on("user_timeout_negative_accepted")) {
		spfault_store_opt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &v, sizeof(v));
		c->r = 0;
		return 1;
	}
	if (c->opt == TCP_SYNCNT && on("syncnt_ignored") && is_tcp(c->fd)) {
		if (v < 1 || v > 127) {
			errno = EINVAL;
			c->r = -1;
		} else {
			spfault_store_opt(c->fd, IPPROTO_TCP, TCP_SYNCNT, &v, sizeof(v));
			c->r = 0;
		}
		return 1;
	}
	return 0;
}

/* ---- getsockopt(TCP_INFO) ---------------------------------------------------------- */

SPF_HOOK(tcpopt_info_pre, SPF_OP(SPF_GETSOCKOPT), SPF_BEFORE, 20)
{
	if (c->level == IPPROTO_TCP && c->opt == TCP_INFO && c->vallen &&
	    *c->vallen < GLIBC_TCP_INFO && on("tcp_info_short_len_einval")) {
		errno = EINVAL;
		c->r = -1;
		return 1;
	}
	return 0;
}

SPF_HOOK(tcpopt_info_post, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 20)
{
	if (c->r == 0 && c->level == IPPROTO_TCP && c->opt == TCP_INFO && c->val && c->vallen &&
	    *c->vallen >= BYTES_RECEIVED + 8 && on("tcp_info_counters_zero")) {
		memset((char *)c->val + BYTES_ACKED, 0, 8);
		memset((char *)c->val + BYTES_RECEIVED, 0, 8);
	}
	if (c->r == 0 && c->level == IPPROTO_TCP && c->opt == TCP_INFO && c->val && c->vallen &&
	    *c->vallen >= SND_MSS + 4 && on("tcp_info_mss_zero"))
		memset((char *)c->val + SND_MSS, 0, 4);
	return 0;
}

/* ---- accept: the listener's keepalive settings lost ------------------------------- */

SPF_HOOK(tcpopt_accept, SPF_OP(SPF_ACCEPT), SPF_AFTER, 20)
{
	if (c->r < 0 || !on("accept_drops_keepalive") || !is_tcp((int)c->r))
		return 0;
	int saved = errno, off = 0, idle = 7200;
	SPF_SYSCALL(SYS_setsockopt, c->r, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof(off));
	SPF_SYSCALL(SYS_setsockopt, c->r, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	errno = saved;
	return 0;
}
