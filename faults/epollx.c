/*
 * faults/epollx.c - faults of catalogue 3's EPOLLX-* behaviors (epoll
 * details: EPOLLEXCLUSIVE, dup'ed descriptors, nested sets, edge
 * triggering on AF_UNIX, SO_ERROR clearing EPOLLERR). Part of
 * libspfault.so; see spfault.h for the conventions.
 *
 * This file interposes nothing itself: it joins epoll_ctl (faults/epoll.c,
 * SPF_EPOLL_CTL), close and getsockopt (faults/core.c) through hooks.
 * Every hook is transparent while no fault of this file is on and keeps
 * errno unless it changes the call's outcome. Calls the faults make
 * themselves go to the kernel directly (SPF_SYSCALL), past every
 * interposer.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(epoll_exclusive_ignored,
      "EPOLLX-EXCLUSIVE",
      "Linux before 4.5 (and emulators that copied it): epoll_ctl() ignores flag bits it does "
      "not know, so EPOLLEXCLUSIVE is accepted everywhere (MOD, with EPOLLONESHOT, on an epoll "
      "descriptor) and has no effect; gRPC detects this by expecting EINVAL");
FAULT(epoll_close_drops_registration,
      "EPOLLX-DUP",
      "an epoll emulation over kqueue (epoll-shim, elfuse): close() of a descriptor removes its "
      "registrations at once, although a dup() still holds the socket open");
FAULT(epoll_loop_eagain,
      "EPOLLX-NESTED",
      "iSH: adding an epoll descriptor to one it contains (a loop) fails with EAGAIN instead "
      "of ELOOP");
FAULT(nested_epoll_unreported,
      "EPOLLX-NESTED",
      "gVisor before PR 6428: an epoll set inside another never reports its readiness to the "
      "outer set (the events were missed), although it holds a ready socket");
FAULT(unix_et_as_level,
      "EPOLLX-ET-UNIX,EPOLL-EDGE",
      "WSL1: EPOLLET on an AF_UNIX stream socket is ignored for input, so data left after a "
      "partial read is reported again (EPOLL-EDGE's AF_UNIX variants break with it)");
FAULT(unix_et_no_write_edge,
      "EPOLLX-ET-UNIX",
      "WSL1: an edge-triggered EPOLLOUT registration of an AF_UNIX stream socket gets no edge "
      "when the peer drains the buffer (nginx stalled talking to PHP-FPM)");
FAULT(so_error_keeps_pollerr,
      "EPOLLX-SOERROR-CLEARS",
      "gVisor: reading SO_ERROR returns the pending error but POLLERR and EPOLLERR stay set "
      "(here: for a connected UDP socket in an epoll set, the refusal is raised again at once)");


static int is_epoll(int fd)
{
	char path[64], link[64];
	int saved = errno;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	ssize_t n = (ssize_t)SPF_SYSCALL(SYS_readlink, path, link, sizeof(link) - 1);
	errno = saved;
	if (n <= 0)
		return 0;
	link[n] = '\0';
	return strcmp(link, "anon_inode:[eventpoll]") == 0;
}

/* ---- the registrations the program made (for close) -------------------------- */

#define REGS 256
static struct reg {
	int used, ep, fd;
	ino_t ep_ino, fd_ino;
} regs[REGS];

static void note(int ep, int op, int fd)
{
	ino_t ei = spfault_inode(ep), fi = spfault_inode(fd);
	struct reg *free_slot = NULL;
	for (int i = 0; i < REGS; i++) {
		struct reg *r = &regs[i];
		if (r->used && r->ep == ep && r->ep_ino == ei && r->fd == fd && r->fd_ino == fi) {
			if (op == EPOLL_CTL_DEL)
				r->used = 0;
			return;
		}
		if (!r->used && !free_slot)
			free_slot = r;
	}
	if (op == EPOLL_CTL_ADD && free_slot)
		*free_slot = (struct reg){ 1, ep, fd, ei, fi };
}

/* ---- epoll_ctl ----------------------------------------------------------------- */

static __thread struct epoll_event rewritten;

SPF_HOOK(epollx_ctl_pre, SPF_OP(SPF_EPOLL_CTL), SPF_BEFORE, 10)
{
	struct epoll_event *ev = c->val;
	int op = c->flags;
	if (!ev || (op != EPOLL_CTL_ADD && op != EPOLL_CTL_MOD))
		return 0;
	rewritten = *ev;
	if (on("epoll_exclusive_ignored") && (ev->events & EPOLLEXCLUSIVE))
		rewritten.events &= ~EPOLLEXCLUSIVE;
	if (on("nested_epoll_unreported") && is_epoll(c->fd))
		rewritten.events &= ~(uint32_t)(EPOLLIN | EPOLLOUT | EPOLLPRI);
	if (on("unix_et_as_level") && (ev->events & (EPOLLET | EPOLLIN)) == (EPOLLET | EPOLLIN) &&
	    spfault_sock_type(c->fd) == SOCK_STREAM && spfault_family(c->fd) == AF_UNIX)
		rewritten.events &= ~(uint32_t)EPOLLET;
	if (on("unix_et_no_write_edge") && (ev->events & (EPOLLET | EPOLLOUT)) ==
	    (EPOLLET | EPOLLOUT) && spfault_sock_type(c->fd) == SOCK_STREAM &&
	    spfault_family(c->fd) == AF_UNIX)
		rewritten.events &= ~EPOLLOUT;
	if (rewritten.events != ev->events)
		c->val = &rewritten;
	return 0;
}

SPF_HOOK(epollx_ctl_post, SPF_OP(SPF_EPOLL_CTL), SPF_AFTER, 10)
{
	if (c->r == 0 && (on("epoll_close_drops_registration") || on("so_error_keeps_pollerr")))
		note((int)c->arg, c->flags, c->fd);
	if (c->r < 0 && errno == ELOOP && on("epoll_loop_eagain") && is_epoll(c->fd))
		errno = EAGAIN;
	return 0;
}

static int registered(int fd)
{
	ino_t fi = spfault_inode(fd);
	for (int i = 0; i < REGS; i++)
		if (regs[i].used && regs[i].fd == fd && regs[i].fd_ino == fi)
			return 1;
	return 0;
}

/* ---- close: the registrations of the number go with it --------------------------- */

SPF_HOOK(epollx_close, SPF_OP(SPF_CLOSE), SPF_BEFORE, 20)
{
	if (!(on("epoll_close_drops_registration") || on("so_error_keeps_pollerr")) || c->fd < 0)
		return 0;
	int saved = errno;
	ino_t fi = spfault_inode(c->fd);
	for (int i = 0; i < REGS; i++) {
		struct reg *r = &regs[i];
		if (!r->used)
			continue;
		if (r->ep == c->fd) {            /* the set itself goes */
			r->used = 0;
			continue;
		}
		if (r->fd != c->fd || r->fd_ino != fi)
			continue;
		r->used = 0;
		if (on("epoll_close_drops_registration") && spfault_inode(r->ep) == r->ep_ino)
			SPF_SYSCALL(SYS_epoll_ctl, r->ep, EPOLL_CTL_DEL, r->fd, 0);
	}
	errno = saved;
	return 0;
}

/* ---- SO_ERROR: the error read, the condition left ------------------------------ */

SPF_HOOK(epollx_so_error, SPF_OP(SPF_GETSOCKOPT), SPF_AFTER, 10)
{
	if (!on("so_error_keeps_pollerr") || c->r != 0 || c->level != SOL_SOCKET ||
	    c->opt != SO_ERROR || !c->val || *(int *)c->val != ECONNREFUSED ||
	    spfault_sock_type(c->fd) != SOCK_DGRAM || !registered(c->fd))
		return 0;
	int saved = errno;
	/* A connected UDP socket: send again to the refusing port and wait
	 * (bounded) until the refusal is back. */
	if (SPF_SYSCALL(SYS_sendto, c->fd, "", 0, MSG_DONTWAIT, 0, 0) == 0) {
		struct pollfd p = { c->fd, 0, 0 };
		struct timespec ts = { 0, 200 * 1000000L };
		SPF_SYSCALL(SYS_ppoll, &p, 1, &ts, 0, 8);
	}
	errno = saved;
	return 0;
}
