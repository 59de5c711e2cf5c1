/*
 * cmsg.c - faults for catalogue 3's CMSG-* behaviors (ancillary data).
 * Part of libspfault.so; see spfault.h for the conventions.
 *
 * This file interposes nothing itself: it joins recvmsg, sendmsg and
 * setsockopt (faults/core.c) through hooks. Every hook is transparent
 * while no fault of this file is on and keeps errno. What the faults do
 * to descriptors themselves goes to the kernel directly (SPF_SYSCALL).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "spfault.h"

#define on(name) spfault_on(name)

FAULT(pktinfo_synthesized,
      "CMSG-PKTINFO",
      "an LD_PRELOAD stack that makes up IP_PKTINFO/IPV6_PKTINFO from the socket's own "
      "names (socket_wrapper-style) and has no interface to name, so ipi_ifindex and "
      "ipi6_ifindex are 0, and that accepts IP_PKTINFO on sendmsg() but ignores it (WSL1, "
      "early gVisor): a reply leaves from the routing's source, not ipi_spec_dst");
FAULT(recverr_never_queued,
      "CMSG-RECVERR",
      "a stack without ICMP errors for UDP (Shadow, early gVisor): IP_RECVERR/IPV6_RECVERR "
      "is accepted and reads back, but a port unreachable never reaches the socket");
FAULT(timestamp_not_translated,
      "CMSG-TIMESTAMP",
      "an emulator that does not translate SCM_TIMESTAMP/SCM_TIMESTAMPNS (qemu-bsd-user): "
      "SO_TIMESTAMP is set, but the timestamp message never reaches the program");
FAULT(passcred_from_pair_creation,
      "CMSG-PASSCRED",
      "a stack that attaches the credentials taken when the socket pair was made (what "
      "SO_PEERCRED reports) instead of the sending process's, so a child's datagram "
      "carries its parent's pid");
FAULT(cmsg_cloexec_first_only,
      "CMSG-RIGHTS-CLOEXEC",
      "a runtime or emulation layer that applies MSG_CMSG_CLOEXEC to the first descriptor of "
      "an SCM_RIGHTS message only, leaving later ones inheritable (Dart's bug)");
FAULT(ctrunc_flag_missing,
      "CMSG-CTRUNC",
      "a kernel that truncates control data without setting MSG_CTRUNC in msg_flags "
      "(YurtOS), so the program cannot tell that something was cut");
FAULT(ctrunc_installs_all,
      "CMSG-CTRUNC",
      "macOS: every descriptor of an SCM_RIGHTS message is installed in the receiver, then "
      "the control data is truncated to the buffer, so the descriptors that did not fit are "
      "leaked");

/* ---- control messages of a received msghdr ----------------------------------- */

/* Remove every message of (level, type) from mh's control data. */
static void drop_cmsgs(struct msghdr *mh, int level, int type)
{
	if (!mh->msg_control || mh->msg_controllen < sizeof(struct cmsghdr))
		return;
	unsigned char keep[512];
	size_t k = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t sp = CMSG_ALIGN(cm->cmsg_len);
		if (cm->cmsg_level == level && cm->cmsg_type == type)
			continue;
		if ((unsigned char *)cm + sp > (unsigned char *)mh->msg_control + mh->msg_controllen)
			sp = cm->cmsg_len;
		if (k + sp > sizeof(keep))
			return;
		memcpy(keep + k, cm, sp);
		k += sp;
	}
	memcpy(mh->msg_control, keep, k);
	mh->msg_controllen = k;
}

static struct cmsghdr *rights_of(struct msghdr *mh)
{
	if (!mh->msg_control || mh->msg_controllen < sizeof(struct cmsghdr))
		return NULL;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			return cm;
	return NULL;
}

/* ---- receiving ---------------------------------------------------------------- */

SPF_HOOK(cmsg_received, SPF_OP(SPF_RECVMSG), SPF_AFTER, 40)
{
	struct msghdr *mh = c->msg;
	int saved = errno;

	if (c->r < 0 || !mh)
		return 0;
	if (on("timestamp_not_translated")) {
		drop_cmsgs(mh, SOL_SOCKET, SCM_TIMESTAMP);
		drop_cmsgs(mh, SOL_SOCKET, SCM_TIMESTAMPNS);
	}
	if (on("pktinfo_synthesized") && mh->msg_control && mh->msg_controllen >= sizeof(struct cmsghdr))
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
			if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO)
				((struct in_pktinfo *)CMSG_DATA(cm))->ipi_ifindex = 0;
			if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO)
				((struct in6_pktinfo *)CMSG_DATA(cm))->ipi6_ifindex = 0;
		}
	if (on("passcred_from_pair_creation") && mh->msg_control &&
	    mh->msg_controllen >= sizeof(struct cmsghdr))
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
				struct ucred u;
				memcpy(&u, CMSG_DATA(cm), sizeof(u));
				u.pid = getpid();
				memcpy(CMSG_DATA(cm), &u, sizeof(u));
			}
	struct cmsghdr *cm;
	if (on("cmsg_cloexec_first_only") && (c->flags & MSG_CMSG_CLOEXEC) && (cm = rights_of(mh))) {
		int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fd;
		for (int i = 1; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + (size_t)i * sizeof(int), sizeof(int));
			SPF_SYSCALL(SYS_fcntl, fd, F_SETFD, 0);
		}
	}
	if (on("ctrunc_flag_missing"))
		mh->msg_flags &= ~MSG_CTRUNC;
	errno = saved;
	return 0;
}

/* ctrunc_installs_all: a receive on an AF_UNIX socket is made with room
 * for every descriptor; what the program's buffer holds is copied to it,
 * cut to its size, and the descriptors past it stay open. */
SPF_HOOK(rights_all_installed, SPF_OP(SPF_RECVMSG), SPF_BEFORE, 40)
{
	struct msghdr *mh = c->msg;
	int saved = errno;

	if (!on("ctrunc_installs_all") || !mh || spfault_sockopt_int(c->fd, SOL_SOCKET, SO_DOMAIN) != AF_UNIX)
		return 0;
	union { struct cmsghdr align; unsigned char buf[512]; } big;
	struct msghdr m = *mh;
	size_t room = mh->msg_control ? mh->msg_controllen : 0;
	m.msg_control = big.buf;
	m.msg_controllen = sizeof(big.buf);
	errno = saved;
	c->r = SPF_SYSCALL(SYS_recvmsg, c->fd, &m, c->flags);
	if (c->r < 0)
		return 1;
	size_t got = m.msg_controllen;
	if (got > room) {
		m.msg_flags |= MSG_CTRUNC;
		got = room;
		if (got >= sizeof(struct cmsghdr)) {
			struct cmsghdr *cm = (struct cmsghdr *)big.buf;
			if (cm->cmsg_len > got)
				cm->cmsg_len = got;
		}
	}
	if (got)
		memcpy(mh->msg_control, big.buf, got);
	mh->msg_controllen = got;
	mh->msg_flags = m.msg_flags;
	mh->msg_namelen = m.msg_namelen;
	errno = saved;
	return 1;
}

/* ---- sending ------------------------------------------------------------------ */

/* pktinfo_synthesized: an IP_PKTINFO message on sendmsg() is dropped
 * before the call, as a stack that ignores it would. */
static __thread struct msghdr pktinfo_stripped;
static __thread unsigned char pktinfo_ctl[512];

SPF_HOOK(pktinfo_send, SPF_OP(SPF_SENDMSG), SPF_BEFORE, 40)
{
	if (!on("pktinfo_synthesized") || !c->out || !c->out->msg_control ||
	    c->out->msg_controllen > sizeof(pktinfo_ctl))
		return 0;
	pktinfo_stripped = *c->out;
	memcpy(pktinfo_ctl, c->out->msg_control, c->out->msg_controllen);
	pktinfo_stripped.msg_control = pktinfo_ctl;
	drop_cmsgs(&pktinfo_stripped, IPPROTO_IP, IP_PKTINFO);
	if (!pktinfo_stripped.msg_controllen)
		pktinfo_stripped.msg_control = NULL;
	c->out = &pktinfo_stripped;
	return 0;
}

/* ---- options ------------------------------------------------------------------ */

SPF_HOOK(recverr_accepted, SPF_OP(SPF_SETSOCKOPT), SPF_BEFORE, 40)
{
	if (!on("recverr_never_queued") ||
	    !((c->level == IPPROTO_IP && c->opt == IP_RECVERR) ||
	      (c->level == IPPROTO_IPV6 && c->opt == IPV6_RECVERR)))
		return 0;
	int v = c->val && c->setlen >= sizeof(int) ? *(const int *)c->val : 0;
	spfault_store_opt(c->fd, c->level, c->opt, &v, sizeof(v));
	c->r = 0;
	return 1;
}
