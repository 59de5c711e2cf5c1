/*
 * faults/dns.c - faults of DNS-* behaviors: the resolver's forward and
 * reverse lookups, aliases, "not found" and the fixture server (part of
 * libspfault.so; see spfault.h).
 *
 * Interposes gethostbyname and gethostbyaddr.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "spfault.h"

#define on(name) spfault_on(name)

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
