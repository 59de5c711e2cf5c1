/*
 * no-io-uring - run a command with io_uring_setup() refused, as container
 * runtimes' default seccomp profiles refuse it:
 *
 *   no-io-uring ENOSYS|EPERM COMMAND [ARGS...]
 *
 * installs a seccomp filter on this process alone (inherited by COMMAND
 * and its children, nothing else) that fails io_uring_setup() with the
 * errno given, then execs COMMAND. Used as WRAP by tests/test_entry.py;
 * never a machine-wide setting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define SP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SP_ARCH AUDIT_ARCH_AARCH64
#elif defined(__i386__)
#define SP_ARCH AUDIT_ARCH_I386
#elif defined(__riscv) && __riscv_xlen == 64
#define SP_ARCH AUDIT_ARCH_RISCV64
#elif defined(__arm__)
#define SP_ARCH AUDIT_ARCH_ARM
#endif
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

int main(int argc, char **argv)
{
	int err;

	if (argc < 3 || (strcmp(argv[1], "ENOSYS") && strcmp(argv[1], "EPERM"))) {
		fprintf(stderr, "usage: no-io-uring ENOSYS|EPERM COMMAND [ARGS...]\n");
		return 2;
	}
	err = strcmp(argv[1], "EPERM") ? ENOSYS : EPERM;
	struct sock_filter f[] = {
		/* Another architecture's system call numbers: let it through. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SP_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		fprintf(stderr, "no-io-uring: cannot install the seccomp filter: %s\n", strerror(errno));
		return 2;
	}
	execvp(argv[2], argv + 2);
	fprintf(stderr, "no-io-uring: cannot run %s: %s\n", argv[2], strerror(errno));
	return 127;
}
