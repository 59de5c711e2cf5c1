/*
 * sp-isolate - run one probe command in its own namespaces.
 *
 *   sp-isolate [--host] [--health FILE] [--timeout SECS] [--bind SRC:DST]... -- PROBE ARGS...
 *
 * Creates a user, network, mount and pid namespace (no real root needed
 * where unprivileged user namespaces are allowed), brings up `lo`, mounts
 * a /proc for the new pid namespace, applies --bind mounts (fixture
 * files), and runs PROBE as pid 2 under a minimal init (pid 1). When the
 * probe ends, init ends, and the kernel kills whatever the probe left in
 * the namespace: no child, zombie or socket of a probe outlives it.
 *
 * The probe's wait status is passed back: sp-isolate exits with the
 * probe's exit code, or dies by the probe's signal, so the runner sees the
 * same thing as if the probe had run directly.
 *
 * Where namespaces cannot be made (or with --host) the probe runs on the
 * host's loopback. Either way the first line out is the protocol line
 *   @SP1 isolation mode=namespaces|host reason=... [proc=own|outer]
 * proc=outer: the namespace's own /proc could not be mounted (a user
 * namespace may not mount procfs where the outer /proc has read-only
 * submounts, as in containers), so the probe sees the outer /proc, whose
 * pids are not its own; SOCKPROBE_PROC=outer then tells the probe
 * (sp_have_proc() is false), and the reason says why. As root, where a
 * user namespace could not mount its /proc, the namespaces are made
 * without one, which can.
 *
 * With --timeout, a probe still running after SECS is killed with its whole
 * namespace (or process group, on the host) and sp-isolate exits with
 * status 143 (128 + SIGTERM), the guest runner's mark of a timeout.
 *
 * With --health FILE, the kernel's taint flags (/proc/sys/kernel/tainted)
 * as they are when the item is over are written over FILE: the guest
 * runner watches the kernel's health around every item with its shell's
 * own `read`, without a process more per item (a sysctl file answers only
 * a shell's first one-byte read).
 *
 * SOCKPROBE_PRELOAD, if set, becomes the probe's LD_PRELOAD (appended to
 * any LD_PRELOAD already there), so the runner and this helper never load
 * the library under test themselves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "sp_ns.h"

#define MAX_BINDS 16
#define TIMEOUT_STATUS (128 + SIGTERM)

static volatile pid_t victim; /* init (namespaces) or the probe's group */
static volatile int victim_is_group;
static int health_fd = -1; /* --health FILE */

/* /proc/sys/kernel/tainted, or -1. Only open/read/close: it also runs in
 * the timeout's signal handler. */
static long read_taint(void)
{
	char b[32];
	long v = 0;
	int fd = open("/proc/sys/kernel/tainted", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, b, sizeof(b) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	for (ssize_t i = 0; i < n && b[i] >= '0' && b[i] <= '9'; i++)
		v = v * 10 + (b[i] - '0');
	return v;
}

/* The item is over: with --health FILE, the taint flags now, written
 * over FILE ("N\n"), opened before the namespaces were entered. Only
 * write and friends: it also runs in the timeout's signal handler. */
static void report_health(void)
{
	char num[24], *p = num + sizeof(num);
	long t = read_taint();
	size_t n;

	if (health_fd < 0)
		return;
	if (t < 0) {
		p = (char *)"unreadable\n";
		n = strlen(p);
	} else {
		*--p = '\n';
		do
			*--p = (char)('0' + t % 10);
		while (t /= 10);
		n = (size_t)(num + sizeof(num) - p);
	}
	if (ftruncate(health_fd, 0) != 0 || pwrite(health_fd, p, n, 0) != (ssize_t)n)
		return; /* the runner then sees no change: nothing better to do */
}

static void on_timeout(int sig)
{
	(void)sig;
	if (victim > 0)
		kill(victim_is_group ? -victim : victim, SIGKILL);
	report_health();
	_exit(TIMEOUT_STATUS);
}

static void arm_timeout(unsigned secs)
{
	if (!secs)
		return;
	signal(SIGALRM, on_timeout);
	alarm(secs);
}

static void say_isolation_proc(const char *mode, const char *reason, const char *proc)
{
	char line[600], esc[400];
	size_t n = 0;

	for (const char *p = reason; *p && n + 4 < sizeof(esc); p++) {
		if (*p == ' ' || *p == '%' || *p == '\n') {
			n += (size_t)snprintf(esc + n, sizeof(esc) - n, "%%%02X", (unsigned char)*p);
		} else {
			esc[n++] = *p;
		}
	}
	esc[n] = '\0';
	n = (size_t)snprintf(line, sizeof(line), "@SP1 isolation mode=%s reason=%s%s%s\n", mode, esc,
			     proc ? " proc=" : "", proc ? proc : "");
	if (write(STDOUT_FILENO, line, n) < 0)
		_exit(125);
}

static void say_isolation(const char *mode, const char *reason)
{
	say_isolation_proc(mode, reason, NULL);
}

static void set_preload(void)
{
	const char *lib = getenv("SOCKPROBE_PRELOAD");
	const char *old = getenv("LD_PRELOAD");
	char buf[4096];

	if (!lib || !*lib)
		return;
	if (old && *old)
		snprintf(buf, sizeof(buf), "%s:%s", old, lib);
	else
		snprintf(buf, sizeof(buf), "%s", lib);
	setenv("LD_PRELOAD", buf, 1);
}

static void exec_probe(char **argv)
{
	set_preload();
	execvp(argv[0], argv);
	fprintf(stderr, "sp-isolate: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Die the way the probe died, or exit with its code. */
static void pass_on(int status)
{
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		sigset_t set;
		signal(sig, SIG_DFL);
		sigemptyset(&set);
		sigaddset(&set, sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		prctl(PR_SET_DUMPABLE, 0); /* no core file from the re-raise */
		kill(getpid(), sig);
		_exit(128 + sig);
	}
	_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
}

/* pid 1 of the new namespace: set up, run the probe, reap, report. */
static void init_main(char **argv, char **binds, int nbinds, int status_fd, const char *kinds)
{
	pid_t probe;
	int status = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* mounts are private already (sp_ns_enter): a /proc of this pid ns */
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
		say_isolation_proc("namespaces", kinds, "own");
	} else {
		char reason[300];
		snprintf(reason, sizeof(reason), "%s; no /proc of its own (mount proc: %s%s), "
			 "the probe sees the outer /proc", kinds, strerror(errno),
			 errno == EPERM ? ": the outer /proc has read-only submounts, as in a container" : "");
		say_isolation_proc("namespaces", reason, "outer");
		setenv("SOCKPROBE_PROC", "outer", 1);
	}
	for (int i = 0; i < nbinds; i++) {
		char *dst = strchr(binds[i], ':');
		*dst++ = '\0';
		if (mount(binds[i], dst, NULL, MS_BIND, NULL) != 0) {
			fprintf(stderr, "sp-isolate: cannot bind %s on %s: %s\n",
				binds[i], dst, strerror(errno));
			_exit(126);
		}
	}
	probe = fork();
	if (probe < 0)
		_exit(125);
	if (probe == 0) {
		close(status_fd);
		exec_probe(argv);
	}
	for (;;) {
		int st;
		pid_t r = waitpid(-1, &st, 0);
		if (r == probe) {
			status = st;
			break;
		}
		if (r < 0 && errno != EINTR)
			break;
	}
	if (write(status_fd, &status, sizeof(status)) != sizeof(status))
		_exit(125);
	_exit(0); /* the kernel now kills everything left in the namespace */
}

/* Is anything mounted below /proc? Where nothing is, /proc is fully
 * visible and a user namespace may mount its own: the question below
 * needs no trial (a file read, not two processes and a namespace per
 * item: guest kernels run as root and feel every process). */
static int proc_has_submounts(void)
{
	char line[4096];
	int found = 1; /* unreadable: ask the long way */
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return found;
	found = 0;
	while (!found && fgets(line, sizeof(line), f)) {
		/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...": the fifth field */
		char *p = line;
		for (int field = 0; field < 4 && p; field++)
			p = strchr(p, ' '), p = p ? p + 1 : NULL;
		found = p && strncmp(p, "/proc/", 6) == 0;
	}
	fclose(f);
	return found;
}

/* Can a user namespace of ours mount a /proc for its pid namespace? Not
 * where the outer /proc is not fully visible (read-only submounts over
 * its files, as container runtimes make): the kernel refuses with EPERM.
 * Tried in a throw-away child where /proc has submounts; only asked as
 * root, who has another way. */
static int userns_mounts_proc(void)
{
	if (!proc_has_submounts())
		return 1;
	int st = 0;
	pid_t pid = fork();

	if (pid < 0)
		return 1;
	if (pid == 0) {
		char why[256];
		if (sp_ns_enter(CLONE_NEWNS | CLONE_NEWPID, why, sizeof(why)) != 0)
			_exit(0); /* the real attempt will say why */
		pid_t c = fork();
		if (c == 0)
			_exit(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0 ? 0 : 1);
		if (c < 0 || waitpid(c, &st, 0) != c)
			_exit(0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 0);
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return !(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

/* No namespaces: exec the probe, or, with a timeout, run it in a process
 * group of its own that the timeout can kill whole. */
static void run_on_host(char **argv, unsigned timeout)
{
	int st;

	if (!timeout && health_fd < 0)
		exec_probe(argv);
	pid_t pid = fork();
	if (pid < 0)
		_exit(125);
	if (pid == 0) {
		setpgid(0, 0);
		exec_probe(argv);
	}
	setpgid(pid, pid);
	victim = pid;
	victim_is_group = 1;
	arm_timeout(timeout);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	kill(-pid, SIGKILL); /* whatever it left in its group */
	report_health();
	pass_on(st);
}

int main(int argc, char **argv)
{
	char *binds[MAX_BINDS];
	int nbinds = 0, host = 0, i;
	unsigned timeout = 0;
	char why[256] = "";

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "--host") == 0) {
			host = 1;
		} else if (strcmp(argv[i], "--health") == 0 && i + 1 < argc) {
			health_fd = open(argv[++i], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
			if (health_fd < 0) {
				fprintf(stderr, "sp-isolate: --health %s: %s\n", argv[i], strerror(errno));
				return 2;
			}
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			timeout = (unsigned)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc &&
			   strchr(argv[i + 1], ':') && nbinds < MAX_BINDS) {
			binds[nbinds++] = argv[++i];
		} else {
			fprintf(stderr, "sp-isolate: bad argument '%s'\n"
				"usage: sp-isolate [--host] [--health FILE] [--timeout SECS] [--bind SRC:DST]... -- PROBE ARGS...\n",
				argv[i]);
			return 2;
		}
	}
	if (i >= argc) {
		fprintf(stderr, "sp-isolate: no probe command given after --\n");
		return 2;
	}
	argv += i;

	unsetenv("SOCKPROBE_NETNS");
	if (host) {
		say_isolation("host", "isolation turned off (--host)");
		run_on_host(argv, timeout);
	}
	const char *kinds = "user+net+pid+mount";
	int entered;
	if (geteuid() == 0 && !userns_mounts_proc()) {
		kinds = "net+pid+mount as root (no user namespace: one could not mount its own /proc here)";
		entered = sp_ns_enter_without_user(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, why, sizeof(why));
	} else {
		entered = sp_ns_enter(CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, why, sizeof(why));
	}
	if (entered != 0) {
		if (nbinds) {
			fprintf(stderr, "sp-isolate: namespaces needed for fixture mounts: %s\n", why);
			say_isolation("host", why);
			return 3;
		}
		say_isolation("host", why);
		run_on_host(argv, timeout);
	}
	/* init says the isolation line, once it knows about /proc. Tells the probe its network namespace is its own (packet capture
	 * on lo then sees nothing but the probe's traffic). */
	setenv("SOCKPROBE_NETNS", "private", 1);

	int sp[2];
	if (pipe2(sp, O_CLOEXEC) != 0)
		return 125;
	pid_t init = fork();
	if (init < 0) {
		fprintf(stderr, "sp-isolate: fork: %s\n", strerror(errno));
		return 125;
	}
	if (init == 0) {
		close(sp[0]);
		init_main(argv, binds, nbinds, sp[1], kinds);
	}
	victim = init; /* killing init kills the whole namespace */
	arm_timeout(timeout);
	close(sp[1]);
	int st, status;
	while (waitpid(init, &st, 0) < 0 && errno == EINTR)
		;
	if (read(sp[0], &status, sizeof(status)) != sizeof(status)) {
		fprintf(stderr, "sp-isolate: the namespace's init died before the probe ended\n");
		report_health();
		return 125;
	}
	report_health();
	pass_on(status);
	return 125;
}
