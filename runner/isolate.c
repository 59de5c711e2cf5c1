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
 * As much of that as the system allows, and the first line out says
 * exactly what is in effect:
 *   @SP1 isolation mode=namespaces|partial|host reason=... user=0|1
 *        net=0|1|run pid=0|1 mount=0|1 proc=own|outer|shared
 * mode: namespaces when net, pid and mount are all the item's own (the
 * user namespace is optional: as root the others are made without one
 * where one is in the way), partial when some are, host when none is.
 * Each attempt is made in a child; where a part cannot be made, that
 * child ends with its half-made namespaces and the rest is tried again
 * in a fresh one, the reason naming each part left out and why: no probe
 * ever runs in namespaces the line does not name. Parts are checked, not
 * assumed (fixtures/sp_ns.c): a network namespace must have a stack and
 * lo up (gVisor's hostinet gives it none), a mount namespace must hold
 * copies of the mounts (gVisor of 2022: its mounts show outside), mounts
 * are made private mount by mount where MS_REC is refused (gVisor).
 * Without a mount namespace the pid namespace is left out too: no /proc
 * of its own could be mounted, and the /proc of the pid namespace the
 * probe runs in shows its own pids (proc=shared); the item's process
 * group then ends with it.
 * net=run: the item has no network namespace of its own, but the whole
 * run has one the runner made (SOCKPROBE_RUN_NETNS=private: gVisor's
 * hostinet inside `unshare --net`), which items share one after another.
 * SOCKPROBE_NETNS=private tells the probe its network is private (net 1
 * or run). proc=outer: a pid namespace of its own whose /proc could not
 * be mounted (a user namespace may not mount procfs where the outer
 * /proc has read-only submounts, as in containers), so the probe sees
 * the outer /proc, whose pids are not its own; SOCKPROBE_PROC=outer then
 * tells the probe (sp_have_proc() is false), and the reason says why. As
 * root, where a user namespace could not mount its /proc, the namespaces
 * are made without one, which can. SOCKPROBE_ROOT=throwaway (the runner's
 * word that the root is the run's own and items run in it one at a time:
 * gVisor) and no mount namespace: root stays out of a user namespace, so
 * that a fixture can mount in the root's mount namespace for one item.
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

/* What an item's isolation is made of: each part in effect or not. */
struct parts {
	int user, net, pid, mount; /* net: 1, 0, or NET_RUN */
	const char *proc;          /* own, outer or shared */
};
#define NET_RUN 2 /* no namespace of the item's own, but the run's network namespace is private to it */

static void escape(char *esc, size_t room, const char *s)
{
	size_t n = 0;

	for (const char *p = s; *p && n + 4 < room; p++) {
		if (*p == ' ' || *p == '%' || *p == '\n')
			n += (size_t)snprintf(esc + n, room - n, "%%%02X", (unsigned char)*p);
		else
			esc[n++] = *p;
	}
	esc[n] = '\0';
}

/* The protocol line: mode (namespaces: net, pid and mount all the item's
 * own; partial: some of them; host: none), why, and each part. */
static void say_isolation(const char *mode, const char *reason, const struct parts *p)
{
	char line[1400], esc[1100];
	size_t n;

	escape(esc, sizeof(esc), reason);
	n = (size_t)snprintf(line, sizeof(line), "@SP1 isolation mode=%s reason=%s user=%d net=%s pid=%d "
			     "mount=%d proc=%s\n", mode, esc, p->user,
			     p->net == NET_RUN ? "run" : p->net ? "1" : "0", p->pid, p->mount, p->proc);
	if (n >= sizeof(line))
		n = sizeof(line) - 1, line[n - 1] = '\n';
	if (write(STDOUT_FILENO, line, n) < 0)
		_exit(125);
}

/* The runner says the whole run has a network namespace of its own
 * (SOCKPROBE_RUN_NETNS=private: gVisor's hostinet run inside one the
 * runner made): where an item cannot have one, it shares that one. */
static int run_netns_private(void)
{
	const char *r = getenv("SOCKPROBE_RUN_NETNS");
	return r && strcmp(r, "private") == 0;
}

/* The runner says the whole root is the run's own, discarded after it,
 * and items run in it one at a time (SOCKPROBE_ROOT=throwaway: a gVisor
 * sandbox). Where no mount namespace can be had, root then stays out of
 * a user namespace so that a fixture can mount in the root's own mount
 * namespace (undone when the item ends; fixtures/sp_fixtures.c). */
static int root_throwaway(void)
{
	const char *r = getenv("SOCKPROBE_ROOT");
	return r && strcmp(r, "throwaway") == 0;
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

/* An attempt at the item's namespaces: what it is made of and why. */
struct plan {
	int user;          /* inside a new user namespace */
	int flags;         /* CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, or fewer */
	char notes[700];   /* the parts left out, and why */
};

static void note(struct plan *pl, const char *fmt, const char *a, const char *b)
{
	size_t n = strlen(pl->notes);
	if (n + 2 >= sizeof(pl->notes))
		return;
	if (n)
		pl->notes[n++] = ';', pl->notes[n++] = ' ';
	snprintf(pl->notes + n, sizeof(pl->notes) - n, fmt, a, b);
}

/* The init of the item (pid 1 of its pid namespace where it has one):
 * its /proc, the fixture binds, the isolation line; then it runs the
 * probe, reaps, and reports the probe's status over status_fd. */
static void init_main(char **argv, char **binds, int nbinds, int status_fd, const struct plan *pl)
{
	struct parts p = { pl->user, !!(pl->flags & CLONE_NEWNET), !!(pl->flags & CLONE_NEWPID),
			   !!(pl->flags & CLONE_NEWNS), "shared" };
	char reason[1100], made[64] = "";
	pid_t probe;
	int status = 0;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (p.user)
		strcat(made, "user+");
	if (p.net)
		strcat(made, "net+");
	if (p.pid)
		strcat(made, "pid+");
	if (p.mount)
		strcat(made, "mount+");
	made[strlen(made) - 1] = '\0';
	snprintf(reason, sizeof(reason), "%s%s%s%s", made, p.user ? "" : " as root",
		 pl->notes[0] ? "; " : "", pl->notes);
	if (p.pid && p.mount) {
		/* mounts are private already (sp_ns_make): a /proc of this pid ns */
		if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
			p.proc = "own";
		} else {
			int err = errno;
			p.proc = "outer";
			snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason),
				 "; no /proc of its own (mount proc: %s%s), the probe sees the outer /proc",
				 strerror(err), err == EPERM ?
				 ": the outer /proc has read-only submounts, as in a container" : "");
		}
	} else if (p.pid) {
		p.proc = "outer";
		snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason),
			 "; no /proc of its own (no mount namespace to mount one in), "
			 "the probe sees the outer /proc");
	}
	if (!strcmp(p.proc, "outer"))
		setenv("SOCKPROBE_PROC", "outer", 1);
	if (!p.net && run_netns_private()) {
		p.net = NET_RUN;
		snprintf(reason + strlen(reason), sizeof(reason) - strlen(reason),
			 "; it shares the run's own network namespace (SOCKPROBE_RUN_NETNS=private)");
	}
	/* Tells the probe its network namespace is its own (packet capture
	 * on lo then sees nothing but the probe's traffic). */
	if (p.net)
		setenv("SOCKPROBE_NETNS", "private", 1);
	say_isolation(p.net && p.pid && p.mount ? "namespaces" : "partial", reason, &p);
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
		if (!p.pid) /* no namespace to end it with init: it ends with init */
			prctl(PR_SET_PDEATHSIG, SIGKILL);
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

/* How an attempt went, from the child that made it. */
struct outcome {
	int ok, failed;
	char why[256];
};

/* The child that made the namespaces: runs the item's init in them,
 * passes the probe's status on as its own. */
static void item_main(char **argv, char **binds, int nbinds, const struct plan *pl)
{
	int sp[2], st, status;

	if (pipe2(sp, O_CLOEXEC) != 0)
		_exit(125);
	pid_t init = fork();
	if (init < 0) {
		fprintf(stderr, "sp-isolate: fork: %s\n", strerror(errno));
		_exit(125);
	}
	if (init == 0) {
		close(sp[0]);
		init_main(argv, binds, nbinds, sp[1], pl);
	}
	close(sp[1]);
	while (waitpid(init, &st, 0) < 0 && errno == EINTR)
		;
	if (read(sp[0], &status, sizeof(status)) != sizeof(status)) {
		fprintf(stderr, "sp-isolate: the namespace's init died before the probe ended\n");
		_exit(125);
	}
	pass_on(status);
}

/* Make the plan's namespaces in a child. Where it works, the child goes
 * on to run the item and its pid is returned, with *status_fd the pipe
 * its init reports the probe's status on (-1: the child passes it on as
 * its own exit); where a part fails, the child ends (taking its
 * half-made namespaces along) and *out says which part and why: nothing
 * ever runs in them. The quick way: one clone() into every namespace,
 * the child the item's init. Where the system refuses that, a forked
 * child makes them one kind at a time (the refused one is then known)
 * and its init is a child of its own. */
static pid_t attempt(const struct plan *pl, char **argv, char **binds, int nbinds, struct outcome *out,
		     int *status_fd)
{
	int p[2], sp[2], st;
	pid_t me = getpid(), c;
	struct outcome o = { 0, 0, "" };

	memset(out, 0, sizeof(*out));
	*status_fd = -1;
	if (pipe2(p, O_CLOEXEC) != 0 || pipe2(sp, O_CLOEXEC) != 0)
		return -1;
	c = sp_ns_clone(pl->flags, pl->user, &o.failed, o.why, sizeof(o.why));
	if (c <= 0 && getpid() != me) { /* the child, in its namespaces or not */
		close(p[0]);
		close(sp[0]);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != me && getppid() != 0) /* 0: the parent is outside its pid ns */
			_exit(125);
		o.ok = c == 0;
		(void)!write(p[1], &o, sizeof(o));
		if (!o.ok)
			_exit(0);
		close(p[1]);
		init_main(argv, binds, nbinds, sp[1], pl);
	}
	if (c < 0) {
		c = fork();
		if (c < 0) {
			snprintf(out->why, sizeof(out->why), "fork: %s", strerror(errno));
			return -1;
		}
		if (c == 0) {
			close(p[0]);
			close(sp[0]);
			close(sp[1]);
			setpgid(0, 0);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != me)
				_exit(125);
			memset(&o, 0, sizeof(o));
			o.ok = sp_ns_make(pl->flags, pl->user, &o.failed, o.why, sizeof(o.why)) == 0;
			(void)!write(p[1], &o, sizeof(o));
			if (!o.ok)
				_exit(0);
			close(p[1]);
			item_main(argv, binds, nbinds, pl);
		}
		close(sp[0]);
		sp[0] = -1;
	}
	setpgid(c, c);
	close(p[1]);
	close(sp[1]);
	if (read(p[0], out, sizeof(*out)) != sizeof(*out)) {
		out->ok = 0;
		snprintf(out->why, sizeof(out->why), "the child making the namespaces died");
	}
	close(p[0]);
	if (out->ok) {
		*status_fd = sp[0];
		return c;
	}
	if (sp[0] >= 0)
		close(sp[0]);
	while (waitpid(c, &st, 0) < 0 && errno == EINTR)
		;
	return -1;
}

/* The item runs in child c (its process group): bound it, wait, pass
 * the probe's status on (from status_fd where the child is the init
 * itself, else the child's own). */
static void supervise(pid_t c, int status_fd, unsigned timeout)
{
	int st, status;

	victim = c; /* its group; its death takes init and the namespace along */
	victim_is_group = 1;
	arm_timeout(timeout);
	while (waitpid(c, &st, 0) < 0 && errno == EINTR)
		;
	kill(-c, SIGKILL); /* whatever it left in its group (no pid namespace) */
	if (status_fd >= 0) {
		if (read(status_fd, &status, sizeof(status)) != sizeof(status)) {
			fprintf(stderr, "sp-isolate: the namespace's init died before the probe ended\n");
			report_health();
			_exit(125);
		}
		st = status;
	}
	report_health();
	pass_on(st);
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
		if (sp_ns_make(CLONE_NEWNS | CLONE_NEWPID, 1, NULL, why, sizeof(why)) != 0)
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
	unsetenv("SOCKPROBE_PROC");
	if (host) {
		struct parts none = { 0, run_netns_private() ? NET_RUN : 0, 0, 0, "shared" };
		if (none.net)
			setenv("SOCKPROBE_NETNS", "private", 1);
		say_isolation("host", "isolation turned off (--host)", &none);
		run_on_host(argv, timeout);
	}
	/* As much of the isolation as the system allows: each part that
	 * cannot be made is left out, said, and the rest tried again in a
	 * fresh child. As root, a part that fails inside a user namespace
	 * (gVisor: no mounts there) is tried without one first. */
	struct plan pl = { 1, CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWPID, "" };
	struct outcome o = { 0, 0, "" };
	char user_why[256] = ""; /* a part failed inside a user namespace: trying without */
	int root = geteuid() == 0, user_off = 0;
	if (root && !userns_mounts_proc()) {
		pl.user = 0, user_off = 1;
		note(&pl, "no user namespace: one could not mount its own /proc here%s%s", "", "");
	}
	for (int tries = 0; tries < 10 && pl.flags; tries++) {
		struct plan now = pl;
		if (user_why[0])
			note(&now, "no user namespace: in one, %s%s", user_why, "");
		int status_fd;
		pid_t c = attempt(&now, argv, binds, nbinds, &o, &status_fd);
		if (c > 0)
			supervise(c, status_fd, timeout);
		if (!o.failed)
			break; /* no part to blame (fork failed): no namespaces */
		if (o.failed == CLONE_NEWUSER) {
			if (!root)
				break; /* nothing else is allowed without one */
			pl.user = 0, user_off = 1;
			note(&pl, "no user namespace: %s%s", o.why, "");
			continue;
		}
		if (pl.user && root) {
			/* The user namespace may be to blame (gVisor mounts
			 * nothing inside one): the same parts without it. */
			pl.user = 0;
			snprintf(user_why, sizeof(user_why), "%s", o.why);
			continue;
		}
		/* This part is not to be had: left out, the rest tried again
		 * (in a user namespace again, which was not to blame). */
		note(&pl, "no %s namespace: %s", sp_ns_part(o.failed), o.why);
		pl.flags &= ~o.failed;
		if (o.failed == CLONE_NEWNS && (pl.flags & CLONE_NEWPID)) {
			/* No /proc of its own can be mounted; outside a pid
			 * namespace the /proc it sees shows the probe's own
			 * pids, which items need more: the item's process
			 * group ends with it instead. */
			note(&pl, "no pid namespace: without a mount namespace for a /proc of its own, "
			     "the probe keeps the /proc that shows its pids%s%s", "", "");
			pl.flags &= ~CLONE_NEWPID;
		}
		if (o.failed == CLONE_NEWNS && root && root_throwaway()) {
			/* a user namespace would keep the item from the
			 * fixture mounts it may still make in this root */
			pl.user = 0, user_off = 1;
			note(&pl, "no user namespace: root in a throwaway root (SOCKPROBE_ROOT=throwaway) "
			     "keeps the right to mount fixtures in it%s%s", "", "");
		}
		if (user_why[0] && !user_off)
			pl.user = 1, user_why[0] = '\0';
	}
	if (nbinds) {
		fprintf(stderr, "sp-isolate: namespaces needed for fixture mounts: %s\n", o.why);
		return 3;
	}
	/* Nothing could be made: the host's loopback, and the line says why. */
	{
		struct parts none = { 0, run_netns_private() ? NET_RUN : 0, 0, 0, "shared" };
		char reason[1000];
		/* the last failure, unless the notes say it already */
		const char *last = o.why[0] && !strstr(pl.notes, o.why) ? o.why : "";
		snprintf(reason, sizeof(reason), "%s%s%s%s", pl.notes, pl.notes[0] && last[0] ? "; " : "",
			 last, none.net ? "; it shares the run's own network namespace "
			 "(SOCKPROBE_RUN_NETNS=private)" : "");
		if (none.net)
			setenv("SOCKPROBE_NETNS", "private", 1);
		say_isolation("host", reason, &none);
	}
	run_on_host(argv, timeout);
	return 125;
}
