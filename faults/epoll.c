/*
 * faults/epoll.c - faults of catalogue 2's EPOLL-* behaviors: level and
 * edge triggering, one-shot, RDHUP, HUP/ERR, the registry and its errors
 * (part of libspfault.so; see spfault.h).
 *
 * Interposers owned here: epoll_ctl, epoll_wait, epoll_pwait. Each is
 * transparent unless one of its faults is on and never changes errno in
 * its checks. Other families may restart epoll_wait through the
 * SPF_AGAIN hooks of SPF_POLL (faults/intr.c) and join epoll_ctl through
 * the SPF_EPOLL_CTL hooks (faults/epollx.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/stat.h>

#include "spfault.h"

static int is_regular(int fd)
{
	struct stat st;
	int saved = errno;
	int r = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	errno = saved;
	return r;
}

FAULT(epoll_edge_as_level,
      "EPOLL-EDGE,EPOLLX-ET-UNIX",
      "an epoll emulation that ignores EPOLLET and reports edge-triggered registrations like level-triggered");
FAULT(epoll_level_as_edge,
      "EPOLL-LEVEL",
      "an epoll shim over an edge-only notifier (kqueue EV_CLEAR-style) that reports level registrations only on new arrivals");
FAULT(epoll_oneshot_as_edge,
      "EPOLL-ONESHOT,EPOLLX-EXCLUSIVE",
      "an epoll emulation that implements EPOLLONESHOT as edge-triggered, so new data re-reports a disabled socket");
FAULT(epoll_oneshot_deletes,
      "EPOLL-ONESHOT",
      "an epoll shim over kqueue's EV_ONESHOT, which deletes the registration after one report instead of disabling it");
FAULT(epoll_rdhup_as_hup,
      "EPOLL-RDHUP",
      "an emulation layer that reports the peer's FIN as a hang-up (EPOLLHUP), as Winsock-based layers report a graceful close");
FAULT(epoll_hup_err_need_request,
      "EPOLL-HUP-ERR-ALWAYS",
      "an epoll emulation that filters every condition by the requested mask, so unrequested EPOLLHUP/EPOLLERR never arrive");
FAULT(epoll_registry_by_number,
      "EPOLL-CLOSE-REMOVES",
      "a user-space epoll in an LD_PRELOAD stack, keyed by descriptor number, that never learns of close()");
FAULT(epoll_ctl_add_replaces,
      "EPOLL-CTL-ERRORS,EPOLL-ONESHOT",
      "an epoll shim that merges a repeated EPOLL_CTL_ADD into a MOD instead of failing with EEXIST");
FAULT(epoll_regular_file_ready,
      "EPOLL-CTL-ERRORS",
      "an emulator that accepts regular files in epoll (always ready) instead of failing with EPERM");

FAULT(epoll_del_ignored,
      "EPOLL-CTL-ERRORS,EPOLLX-DUP",
      "an epoll shim whose EPOLL_CTL_DEL answers 0 without removing anything (and so never reports ENOENT)");
FAULT(epoll_wait_no_wakeup,
      "EPOLL-LEVEL,EPOLL-EDGE,EPOLLX-EXCLUSIVE,MUX-READABLE-DATA,SIG-INTERRUPTS-SLEEP",
      "an epoll emulation that checks readiness when epoll_wait is called and then sleeps out the timeout, never woken by arrivals");

REAL(int, epoll_ctl, int, int, int, struct epoll_event *)
REAL(int, epoll_wait, int, struct epoll_event *, int, int)
REAL(int, epoll_pwait, int, struct epoll_event *, int, int, const sigset_t *)

/* What the program registered (the shims above keep such a table). */
#define EP_REGS 256
static struct ep_reg {
	int used, ep, fd;
	ino_t ep_ino;           /* which epoll instance (its number may be reused) */
	uint32_t events;
	uint64_t data;
} ep_regs[EP_REGS];


static struct ep_reg *ep_find(int ep, int fd)
{
	ino_t ino = spfault_inode(ep);
	for (int i = 0; i < EP_REGS; i++)
		if (ep_regs[i].used && ep_regs[i].ep == ep && ep_regs[i].ep_ino == ino &&
		    ep_regs[i].fd == fd)
			return &ep_regs[i];
	return NULL;
}

static struct ep_reg *ep_find_data(int ep, uint64_t data)
{
	ino_t ino = spfault_inode(ep);
	for (int i = 0; i < EP_REGS; i++)
		if (ep_regs[i].used && ep_regs[i].ep == ep && ep_regs[i].ep_ino == ino &&
		    ep_regs[i].data == data)
			return &ep_regs[i];
	return NULL;
}

static void ep_note(int ep, int op, int fd, const struct epoll_event *ev)
{
	struct ep_reg *r = ep_find(ep, fd);

	if (op == EPOLL_CTL_DEL) {
		if (r)
			r->used = 0;
		return;
	}
	if (!r && op == EPOLL_CTL_ADD)
		for (int i = 0; i < EP_REGS && !r; i++)
			if (!ep_regs[i].used)
				r = &ep_regs[i];
	if (r && ev)
		*r = (struct ep_reg){ 1, ep, fd, spfault_inode(ep), ev->events, ev->data.u64 };
}

int epoll_ctl(int ep, int op, int fd, struct epoll_event *ev)
{
	struct epoll_event copy;
	struct spf_call c = { .op = SPF_EPOLL_CTL, .fd = fd, .flags = op, .arg = ep, .val = ev };

	load_epoll_ctl();
	if (spfault_before(&c)) /* other families join through SPF_EPOLL_CTL hooks */
		return (int)c.r;
	ev = c.val;
	if (op == EPOLL_CTL_ADD && spfault_on("epoll_registry_by_number") && ep_find(ep, fd)) {
		errno = EEXIST;
		return -1;
	}
	if (op == EPOLL_CTL_ADD && spfault_on("epoll_regular_file_ready") && is_regular(fd))
		return 0;
	if (op == EPOLL_CTL_DEL && spfault_on("epoll_del_ignored"))
		return 0;
	if (ev && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD)) {
		copy = *ev;
		if (spfault_on("epoll_edge_as_level"))
			copy.events &= ~EPOLLET;
		if (spfault_on("epoll_level_as_edge") && !(copy.events & (EPOLLET | EPOLLONESHOT)))
			copy.events |= EPOLLET;
		if (spfault_on("epoll_oneshot_as_edge") && (copy.events & EPOLLONESHOT))
			copy.events = (copy.events & ~EPOLLONESHOT) | EPOLLET;
		ev = &copy;
	}
	int r = real_epoll_ctl(ep, op, fd, ev);
	if (r < 0 && errno == EEXIST && op == EPOLL_CTL_ADD && spfault_on("epoll_ctl_add_replaces"))
		r = real_epoll_ctl(ep, op = EPOLL_CTL_MOD, fd, ev);
	if (r == 0)
		ep_note(ep, op, fd, ev);
	c.r = r;
	spfault_after(&c);
	return (int)c.r;
}

/* Rewrite what epoll_wait returned, as the faulty shims would. */
static int ep_after_wait(int ep, struct epoll_event *ev, int n)
{
	int saved = errno, out = 0;

	for (int i = 0; i < n; i++) {
		struct ep_reg *r = ep_find_data(ep, ev[i].data.u64);
		uint32_t e = ev[i].events;
		if (spfault_on("epoll_rdhup_as_hup") && (e & EPOLLRDHUP))
			e |= EPOLLHUP;
		if (spfault_on("epoll_hup_err_need_request") && r)
			e &= r->events | ~(uint32_t)(EPOLLHUP | EPOLLERR);
		if (spfault_on("epoll_oneshot_deletes") && r && (r->events & EPOLLONESHOT)) {
			real_epoll_ctl(ep, EPOLL_CTL_DEL, r->fd, NULL);
			r->used = 0;
		}
		if (!e)
			continue;
		ev[out] = ev[i];
		ev[out++].events = e;
	}
	errno = saved;
	return out;
}

/* epoll_wait_no_wakeup: sample at entry; if nothing, sleep out the timeout. */
static int ep_sleep_out(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	return 0;
}

int epoll_wait(int ep, struct epoll_event *ev, int max, int ms)
{
	load_epoll_wait();
	load_epoll_ctl();
	int nowake = ms > 0 && spfault_on("epoll_wait_no_wakeup");
	struct spf_call c = { .op = SPF_POLL, .fd = ep, .zero_timeout = ms == 0 };
	do /* SPF_AGAIN hooks of SPF_POLL may restart it (faults/intr.c) */
		c.r = real_epoll_wait(ep, ev, max, nowake ? 0 : ms);
	while (spfault_again(&c));
	int n = (int)c.r;
	if (n == 0 && nowake)
		return ep_sleep_out(ms);
	return n > 0 ? ep_after_wait(ep, ev, n) : n;
}

int epoll_pwait(int ep, struct epoll_event *ev, int max, int ms, const sigset_t *mask)
{
	load_epoll_pwait();
	load_epoll_ctl();
	int nowake = ms > 0 && spfault_on("epoll_wait_no_wakeup");
	int n = real_epoll_pwait(ep, ev, max, nowake ? 0 : ms, mask);
	if (n == 0 && nowake)
		return ep_sleep_out(ms);
	return n > 0 ? ep_after_wait(ep, ev, n) : n;
}
