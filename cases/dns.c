/*
 * dns.c - names and addresses through the system resolver (seed notes:
 * "8域名及网络地址", "8.2域名与ip地址之间的转换").
 *
 * Checks, each against the suite's own DNS server, never the machine's:
 *
 *  1. DNS-BYNAME, DNS-FIXTURE-SERVER  gethostbyname: AF_INET, length 4, the
 *     exact addresses and aliases of a name with several A records reached
 *     through a CNAME; a name only in the hosts file with its aliases; a
 *     name only in DNS, which stops resolving once the server is stopped.
 *  2. DNS-BYADDR     gethostbyaddr maps an address back to its name (from
 *                    the server's PTR, and from the hosts file).
 *  3. DNS-NOT-FOUND  an unknown name fails with h_errno HOST_NOT_FOUND;
 *                    getaddrinfo says EAI_NONAME; a name with only an AAAA
 *                    record gives NO_DATA (resolver-defined: musl says
 *                    HOST_NOT_FOUND, and the case reports that deviation).
 *  4. The same answers through getaddrinfo/getnameinfo, the calls new code
 *     uses (results compared as sets: their order is not guaranteed).
 *
 * The fixture: each test moves into a network + mount namespace of its own
 * (sp_private_net), bind-mounts fixtures/dns/{hosts,resolv.conf,
 * nsswitch.conf} over /etc, and runs dnsmasq in the foreground on
 * 127.0.0.1:53 with fixtures/dns/zone.conf. The server is a child of the
 * test: killed and reaped with it. Without namespaces or dnsmasq the tests
 * skip and say why.
 *
 * Aliases must include the expected ones; extra entries (musl lists the
 * canonical name too) are recorded, not failed.
 *
 * Platform-defined (recorded): how this machine's own configuration
 * resolves "localhost" (looked up before the fixture is in place); the
 * h_errno for a name with only an AAAA record.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/wait.h>

static const char *dnsmasq_path(void)
{
	static const char *where[] = { "/usr/sbin/dnsmasq", "/usr/bin/dnsmasq", "/sbin/dnsmasq" };
	const char *env = getenv("SOCKPROBE_DNSMASQ");

	if (env && access(env, X_OK) == 0)
		return env;
	for (size_t i = 0; i < sizeof(where) / sizeof(where[0]); i++)
		if (access(where[i], X_OK) == 0)
			return where[i];
	return NULL;
}

/* Does the server on 127.0.0.1:53 answer a query? Asked through the same
 * socket calls the probe uses, so it also holds under an LD_PRELOAD stack.
 * The query: id 0x5350, RD, one question "sockprobe.test" SOA IN. */
static int dns_answers(void *arg)
{
	static const unsigned char q[] = {
		0x53, 0x50, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
		9, 's', 'o', 'c', 'k', 'p', 'r', 'o', 'b', 'e', 4, 't', 'e', 's', 't', 0,
		0, 6, 0, 1,
	};
	struct sockaddr_in srv = { .sin_family = AF_INET, .sin_port = htons(53),
				   .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char reply[512];
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ok = 0;
	(void)arg;

	if (fd < 0)
		return 0;
	if (sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&srv, sizeof(srv)) == sizeof(q) &&
	    sp_poll(fd, POLLIN, 20) & POLLIN)
		ok = recv(fd, reply, sizeof(reply), MSG_DONTWAIT) >= 12 && reply[0] == 0x53 &&
		     reply[1] == 0x50;
	close(fd);
	return ok;
}

static pid_t dns_server;
static int dns_server_status = -1; /* its wait status once it has exited */

/* The server answers, or it is gone (it could not start: no use waiting). */
static int dns_answers_or_exited(void *arg)
{
	int st;
	if (waitpid(dns_server, &st, WNOHANG) == dns_server) {
		dns_server_status = st;
		return 1;
	}
	return dns_answers(arg);
}

/* Record how the machine's own configuration resolves localhost, in a
 * child, before the fixture replaces it (the resolver reads its
 * configuration once per process). */
static int report_localhost(void *arg)
{
	int *p = arg;
	struct hostent *h;
	char out[256] = "unresolved";

	close(p[0]);
	h = gethostbyname("localhost");
	if (h && h->h_addr_list[0]) {
		size_t n = 0;
		out[0] = '\0';
		for (char **a = h->h_addr_list; *a && n < 200; a++) {
			char txt[INET6_ADDRSTRLEN];
			inet_ntop(h->h_addrtype, *a, txt, sizeof(txt));
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s%s", n ? " " : "", txt);
		}
	}
	return write(p[1], out, strlen(out)) < 0;
}

static void record_host_localhost(void)
{
	int p[2];
	char buf[256] = "";

	ASSERT_SYS(pipe(p)); /* a record: a pipe that does not work leaves it "no answer" */
	pid_t pid = sp_fork(report_localhost, p);
	close(p[1]);
	/* An observation only: a slow host resolver is recorded, not waited
	 * for past the bound (teardown kills the child). */
	if (sp_poll(p[0], POLLIN, sp_wait_ms()) & (POLLIN | POLLHUP)) {
		ssize_t n = read(p[0], buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		sp_reap(pid);
	} else {
		snprintf(buf, sizeof(buf), "no answer within %d ms", sp_wait_ms());
	}
	close(p[0]);
	RECORD("host_config_localhost", "%s", buf);
}

/* The fixture server. It is the suite's, not the system under test: a
 * fault library preloaded into the probe (LD_PRELOAD, faults/) is not
 * passed on to it, so a fault changes the resolver's side only. */
struct dns_server_run { const char *path; int err_fd; };
static int run_dnsmasq(void *arg)
{
	const struct dns_server_run *run = arg;
	const char *dnsmasq = run->path;
	char conf[1100];

	/* Its complaints, if it cannot start, go to the item's reason. */
	if (run->err_fd >= 0)
		dup2(run->err_fd, STDERR_FILENO);

	snprintf(conf, sizeof(conf), "--conf-file=%s", sp_fixture("dns/zone.conf"));
	unsetenv("LD_PRELOAD");
	execl(dnsmasq, "dnsmasq", "--keep-in-foreground", conf,
	      "--listen-address=127.0.0.1", "--bind-interfaces", "--port=53",
	      /* stay who we are: inside a user namespace setgroups()
	       * is denied, and "--group=" skips the group change */
	      "--user=root", "--group=", "--pid-file=", "--log-facility=-",
	      (char *)NULL);
	return 127;
}

/* The fixture: private namespaces, fixture /etc files, and (with_server)
 * dnsmasq running. An item that reads only the hosts file needs no
 * server (nsswitch.conf says files first). */
enum { HOSTS_FILE_ONLY = 0, WITH_SERVER = 1 };
static void dns_fixture(int record_localhost, int with_server)
{
	const char *dnsmasq = dnsmasq_path();

	if (!dnsmasq && with_server)
		SKIP("dnsmasq is not available on this system (Debian: apt-get install dnsmasq-base)");
	if (record_localhost)
		record_host_localhost();
	sp_private_net();
	sp_bind_file(sp_fixture("dns/hosts"), "/etc/hosts");
	sp_bind_file(sp_fixture("dns/resolv.conf"), "/etc/resolv.conf");
	sp_bind_file(sp_fixture("dns/nsswitch.conf"), "/etc/nsswitch.conf");
	if (!with_server)
		return;

	int err[2] = { -1, -1 };
	if (pipe2(err, O_CLOEXEC) != 0)
		err[0] = err[1] = -1;
	struct dns_server_run run = { dnsmasq, err[1] };
	dns_server = sp_fork(run_dnsmasq, &run);
	if (err[1] >= 0)
		close(err[1]);
	/* The fixture server is the precondition, not the behavior: when it
	 * cannot serve, the item is broken and says why, in its words. */
	dns_server_status = -1;
	int up = sp_wait_until(dns_answers_or_exited, NULL, sp_wait_ms());
	int st = dns_server_status;
	if (st != -1) {
		char said[200] = "";
		if (err[0] >= 0 && (sp_poll(err[0], POLLIN, 0) & (POLLIN | POLLHUP))) {
			ssize_t n = read(err[0], said, sizeof(said) - 1);
			said[n > 0 ? n : 0] = '\0';
			size_t lead = strspn(said, "\n"); /* its first line, not a blank one */
			memmove(said, said + lead, strlen(said + lead) + 1);
			said[strcspn(said, "\n")] = '\0';
		}
		BROKEN("the fixture DNS server %s exited (%s %d) instead of serving the fixture zone%s%s%s",
		       dnsmasq, WIFEXITED(st) ? "status" : "signal",
		       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
		       WIFEXITED(st) && WEXITSTATUS(st) == 127 ? " (it could not be run here)" : "",
		       said[0] ? ": " : "", said);
	}
	if (err[0] >= 0)
		close(err[0]);
	if (!up)
		BROKEN("the fixture DNS server does not answer on 127.0.0.1:53 within %d ms", sp_wait_ms());
}

static void stop_dns_server(void)
{
	ASSERT_SYS(kill(dns_server, SIGTERM));
	sp_reap(dns_server);
}

/* Addresses of a hostent as a sorted, space-separated string. */
static void addr_list(const struct hostent *h, char *out, size_t room)
{
	char txt[16][INET6_ADDRSTRLEN];
	int n = 0;

	for (char **a = h->h_addr_list; *a && n < 16; a++, n++)
		inet_ntop(h->h_addrtype, *a, txt[n], sizeof(txt[n]));
	qsort(txt, (size_t)n, sizeof(txt[0]), (int (*)(const void *, const void *))strcmp);
	out[0] = '\0';
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), room - strlen(out), "%s%s", i ? " " : "", txt[i]);
}

static void alias_list(const struct hostent *h, char *out, size_t room)
{
	out[0] = '\0';
	for (char **a = h->h_aliases; *a; a++)
		snprintf(out + strlen(out), room - strlen(out), "%s%s", out[0] ? " " : "", *a);
}

static const struct hostent *byname(const char *name)
{
	struct hostent *h = gethostbyname(name);
	ASSERT_TRUE(h != NULL, "gethostbyname(\"%s\") resolves (h_errno %d: %s)", name,
		    h_errno, hstrerror(h_errno));
	ASSERT_EQ(AF_INET, h->h_addrtype);
	ASSERT_EQ(4, h->h_length);
	return h;
}

/* Every alias of the space-separated `want` is among the hostent's. */
static void assert_has_aliases(const char *file, int line, const struct hostent *h,
			       const char *want)
{
	char w[256], got[256];
	alias_list(h, got, sizeof(got));
	snprintf(w, sizeof(w), "%s", want);
	for (char *tok = strtok(w, " "); tok; tok = strtok(NULL, " ")) {
		int found = 0;
		for (char **a = h->h_aliases; *a; a++)
			found |= strcmp(*a, tok) == 0;
		if (!found)
			sp_fail(file, line, "h_aliases", want, got, 0);
	}
}
#define ASSERT_ALIASES(h, want) assert_has_aliases(__FILE__, __LINE__, h, want)

/* 1a. Several addresses and the alias it was asked by, all from DNS. */
SP_TEST(gethostbyname_returns_every_address_and_alias, "DNS-BYNAME,DNS-FIXTURE-SERVER", SP_NONE)
{
	char addrs[256], aliases[256];
	(void)ctx;

	dns_fixture(1, WITH_SERVER);
	const struct hostent *h = byname("alias1.sockprobe.test");
	addr_list(h, addrs, sizeof(addrs));
	alias_list(h, aliases, sizeof(aliases));
	RECORD("h_name", "%s", h->h_name);
	RECORD("h_addr_list", "%s", addrs);
	RECORD("h_aliases", "%s", aliases);
	ASSERT_STR("multi.sockprobe.test", h->h_name);
	ASSERT_STR("192.0.2.10 192.0.2.11 192.0.2.12", addrs);
	ASSERT_ALIASES(h, "alias1.sockprobe.test");
}

/* 1b. A name only in the hosts file, with its aliases. */
SP_TEST(gethostbyname_reads_the_hosts_file, "DNS-BYNAME", SP_NONE)
{
	char addrs[256], aliases[256];
	(void)ctx;

	dns_fixture(0, HOSTS_FILE_ONLY);
	const struct hostent *h = byname("hostsonly.sockprobe.test");
	addr_list(h, addrs, sizeof(addrs));
	alias_list(h, aliases, sizeof(aliases));
	ASSERT_STR("hostsonly.sockprobe.test", h->h_name);
	RECORD("h_aliases", "%s", aliases);
	ASSERT_STR("192.0.2.20", addrs);
	ASSERT_ALIASES(h, "hostsalias1.sockprobe.test hostsalias2.sockprobe.test");
}

/* 1c. A name only in DNS resolves through the suite's server, and stops
 * resolving once that server is gone: the answer came from it. */
SP_TEST(gethostbyname_asks_the_fixture_server, "DNS-FIXTURE-SERVER,DNS-BYNAME", SP_NONE)
{
	char addrs[256];
	(void)ctx;

	dns_fixture(0, WITH_SERVER);
	const struct hostent *h = byname("dnsonly.sockprobe.test");
	addr_list(h, addrs, sizeof(addrs));
	ASSERT_STR("192.0.2.30", addrs);
	/* Every lookup is answered for its own name, not only the first: a
	 * second name, then the first again (no stale or last answer). */
	h = byname("alias2.sockprobe.test");
	addr_list(h, addrs, sizeof(addrs));
	ASSERT_STR("192.0.2.10 192.0.2.11 192.0.2.12", addrs);
	ASSERT_STR("multi.sockprobe.test", h->h_name);
	h = byname("dnsonly.sockprobe.test");
	addr_list(h, addrs, sizeof(addrs));
	ASSERT_STR("192.0.2.30", addrs);
	ASSERT_STR("dnsonly.sockprobe.test", h->h_name);

	stop_dns_server();
	struct hostent *gone = gethostbyname("dnsonly2.sockprobe.test");
	RECORD("after_server_stopped", "%s (h_errno %d)", gone ? "resolved" : "unresolved",
	       gone ? 0 : h_errno);
	ASSERT_TRUE(gone == NULL, "gethostbyname() of a DNS-only name with the fixture server "
		    "stopped: expected NULL, observed it resolved (to %s)", gone->h_name);
}

/* 2. gethostbyaddr maps addresses back to names (DNS PTR, hosts file). */
SP_TEST(gethostbyaddr_maps_address_back_to_name, "DNS-BYADDR", SP_NONE)
{
	static const struct { const char *addr, *name; } table[] = {
		{ "192.0.2.30", "dnsonly.sockprobe.test" },   /* server's PTR */
		{ "192.0.2.11", "multi.sockprobe.test" },     /* server's PTR */
		{ "192.0.2.20", "hostsonly.sockprobe.test" }, /* hosts file */
	};
	(void)ctx;

	dns_fixture(0, WITH_SERVER);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		struct in_addr a;
		ASSERT_EQ(1, inet_pton(AF_INET, table[i].addr, &a));
		struct hostent *h = gethostbyaddr(&a, sizeof(a), AF_INET);
		ASSERT_TRUE(h != NULL, "gethostbyaddr(%s) resolves (h_errno %d)", table[i].addr,
			    h_errno);
		ASSERT_STR(table[i].name, h->h_name);
	}
}

/* 3. An unknown name: HOST_NOT_FOUND (and EAI_NONAME from getaddrinfo). */
SP_TEST(unknown_name_fails_with_host_not_found, "DNS-NOT-FOUND", SP_NONE)
{
	struct addrinfo *res = NULL, hints = { .ai_family = AF_INET };
	(void)ctx;

	dns_fixture(0, WITH_SERVER);
	errno = 0;
	struct hostent *h = gethostbyname("nosuch.sockprobe.test");
	int herr = h_errno;
	RECORD("h_errno", "%d (%s)", herr, hstrerror(herr));
	ASSERT_TRUE(h == NULL, "gethostbyname() of an unknown name: expected NULL, observed it "
		    "resolved (to %s)", h->h_name);
	ASSERT_EQ(HOST_NOT_FOUND, herr);
	int r = getaddrinfo("nosuch.sockprobe.test", NULL, &hints, &res);
	RECORD("getaddrinfo", "%d (%s)", r, gai_strerror(r));
	ASSERT_EQ(EAI_NONAME, r);
}

/* 3b. The other side of DNS-NOT-FOUND: HOST_NOT_FOUND says the name is
 * unknown, so a name that exists with only an AAAA record must not get
 * it. POSIX names NO_DATA for "the name is known, no address of this
 * kind"; glibc gives it, musl says HOST_NOT_FOUND (expectations/musl.tsv). */
SP_TEST(aaaa_only_name_has_no_ipv4_data, "DNS-NOT-FOUND", SP_NONE)
{
	(void)ctx;
	dns_fixture(0, WITH_SERVER);
	struct hostent *h = gethostbyname("v6only.sockprobe.test");
	int herr = h_errno;
	RECORD("aaaa_only_h_errno", "%d (%s)", h ? 0 : herr, h ? "resolved" : hstrerror(herr));
	ASSERT_TRUE(h == NULL, "gethostbyname() of an AAAA-only name: expected NULL (no IPv4 "
		    "address), observed it resolved (to %s)", h->h_name);
	ASSERT_EQ(NO_DATA, herr);
}

/* 4. getaddrinfo/getnameinfo give the same answers. */
SP_TEST(getaddrinfo_and_getnameinfo_agree, "DNS-BYNAME,DNS-BYADDR", SP_NONE)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res, *ai;
	char got[256] = "", host[NI_MAXHOST];
	(void)ctx;

	dns_fixture(0, WITH_SERVER);
	int r = getaddrinfo("alias2.sockprobe.test", NULL, &hints, &res);
	ASSERT_TRUE(r == 0, "getaddrinfo(alias2) resolves (%s)", gai_strerror(r));
	int mask = 0, n = 0;
	for (ai = res; ai; ai = ai->ai_next, n++) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
		unsigned last = ntohl(sin->sin_addr.s_addr) & 0xff;
		ASSERT_EQ(0xc0000200u, ntohl(sin->sin_addr.s_addr) & 0xffffff00u);
		if (last >= 10 && last <= 12)
			mask |= 1 << (last - 10);
		snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s.%u", n ? " " : "", last);
	}
	freeaddrinfo(res);
	RECORD("getaddrinfo_order", "%s", got);
	ASSERT_EQ(3, n);
	ASSERT_EQ(7, mask); /* the same three addresses, in whatever order */

	struct addrinfo h6 = { .ai_family = AF_INET6 };
	r = getaddrinfo("v6only.sockprobe.test", NULL, &h6, &res);
	ASSERT_TRUE(r == 0, "the AAAA-only name resolves for AF_INET6 (%s)", gai_strerror(r));
	char v6[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, v6, sizeof(v6));
	freeaddrinfo(res);
	ASSERT_STR("2001:db8::40", v6);

	struct sockaddr_in sa = { .sin_family = AF_INET };
	inet_pton(AF_INET, "192.0.2.30", &sa.sin_addr);
	r = getnameinfo((struct sockaddr *)&sa, sizeof(sa), host, sizeof(host), NULL, 0,
			NI_NAMEREQD);
	ASSERT_TRUE(r == 0, "getnameinfo(192.0.2.30) finds a name (%s)", gai_strerror(r));
	ASSERT_STR("dnsonly.sockprobe.test", host);
}

SP_MAIN("dns")
