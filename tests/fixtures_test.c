/*
 * fixtures_test.c - cmocka tests of the shared fixture library itself:
 * protocol escaping, names, the data pattern, loopback fixtures, the
 * barrier and the child helpers; and, through items declared here and run
 * as a probe (this binary with --probe), the harness: variants named on
 * fail lines, an unavailable path, BROKEN_NEEDS, MUST_RETURN.
 */
#define _GNU_SOURCE
#include "sp.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <sys/socket.h>

static const struct sp_ctx v4 = { .fam = SP_IPV4, .af = AF_INET, .fam_name = "ipv4" };

/* Capture what sp_emit writes to stdout. */
static void capture_emit(char *out, size_t room, void (*emit)(void))
{
	int p[2], saved = dup(STDOUT_FILENO);

	assert_int_equal(0, pipe(p));
	fflush(stdout);
	dup2(p[1], STDOUT_FILENO);
	emit();
	dup2(saved, STDOUT_FILENO);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], out, room - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = '\0';
}

static void emit_awkward(void)
{
	sp_emit("obs", "key", "a b", "value", "x%y\n\tz=1", (char *)NULL);
}

static void protocol_lines_escape_space_percent_and_controls(void **state)
{
	char out[256];
	(void)state;
	capture_emit(out, sizeof(out), emit_awkward);
	assert_string_equal("@SP1 obs key=a%20b value=x%25y%0A%09z=1\n", out);
}

static void emit_record(void) { RECORD("bytes", "%d of %s", 3, "4"); }

static void record_is_an_obs_line(void **state)
{
	char out[256];
	(void)state;
	capture_emit(out, sizeof(out), emit_record);
	assert_string_equal("@SP1 obs key=bytes value=3%20of%204\n", out);
}

static void errno_and_signal_names(void **state)
{
	(void)state;
	assert_string_equal("ECONNRESET", sp_errno_name(ECONNRESET));
	assert_string_equal("EDESTADDRREQ", sp_errno_name(EDESTADDRREQ));
	assert_string_equal("errno 4095", sp_errno_name(4095));
	assert_string_equal("SIGSEGV", sp_signal_name(SIGSEGV));
	assert_string_equal("SIGCHLD", sp_signal_name(SIGCHLD));
}

static void pattern_detects_first_wrong_byte(void **state)
{
	unsigned char buf[1000];
	(void)state;
	sp_pattern(buf, sizeof(buf), 500);
	assert_int_equal(sizeof(buf), sp_pattern_check(buf, sizeof(buf), 500));
	assert_int_not_equal(sizeof(buf), sp_pattern_check(buf, sizeof(buf), 501));
	buf[700] ^= 1;
	assert_int_equal(700, sp_pattern_check(buf, sizeof(buf), 500));
}

static void tcp_pair_is_connected_over_loopback(void **state)
{
	int c, s;
	char b[4];
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	(void)state;

	sp_tcp_pair(&v4, &c, &s);
	assert_int_equal(0, getsockname(s, (struct sockaddr *)&a, &len));
	assert_int_equal(htonl(INADDR_LOOPBACK), a.sin_addr.s_addr);
	assert_int_equal(4, write(c, "ping", 4));
	assert_int_equal(4, sp_wait_inq(s, 4));
	assert_int_equal(4, sp_read_all(s, b, 4));
	assert_memory_equal("ping", b, 4);
	assert_int_equal(1 /* TCP_ESTABLISHED */, sp_tcp_state(c));
	close(c);
	close(s);
}

/* The strict I/O fixtures move bytes through every read and write call,
 * blocking and non-blocking, and see EOF. */
static void strict_io_through_every_api(void **state)
{
	int c, s;
	char b[16];
	(void)state;

	sp_tcp_pair(&v4, &c, &s);
	for (int api = 0; api < SP_IO_APIS; api++) {
		sp_set_nonblock(s, api % 2);
		assert_int_equal(6, SP_OUT_EXACT(api, c, "abcdef", 6));
		memset(b, 0, sizeof(b));
		assert_int_equal(6, SP_IN_EXACT((api + 1) % SP_IO_APIS, s, b, 6));
		assert_memory_equal("abcdef", b, 6);
	}
	assert_string_equal("recvmsg", sp_io_in_name(SP_IO_MSG));
	assert_string_equal("writev", sp_io_out_name(SP_IO_VEC));
	close(c);
	for (int api = 0; api < SP_IO_APIS; api++)
		SP_EXPECT_EOF(api, s);
	close(s);
}

static void udp_bound_socket_has_loopback_port(void **state)
{
	int u = sp_udp_bound(&v4);
	(void)state;
	assert_int_not_equal(0, sp_local_port(u));
	close(u);
}

static void wait_inq_is_bounded(void **state)
{
	int c, s;
	(void)state;
	sp_tcp_pair(&v4, &c, &s);
	setenv("SOCKPROBE_WAIT_MS", "50", 1);
	assert_int_equal(0, sp_wait_inq(s, 1)); /* nothing comes: returns, no hang */
	close(c);
	close(s);
}

static int pass_barrier(void *arg)
{
	sp_barrier_pass(arg);
	return 7;
}

static int pass_barrier_free(void *arg) { (void)arg; return 7; }

static void barrier_orders_processes_and_reap_gives_status(void **state)
{
	struct sp_barrier b;
	(void)state;
	sp_barrier_init(&b);
	pid_t pid = sp_fork(pass_barrier, &b);
	sp_barrier_wait(&b);
	int st = sp_reap(pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(7, WEXITSTATUS(st));
	assert_false(sp_barrier_ready(&b));
	sp_barrier_close(&b);
}

static void watchdog_turns_a_stuck_call_into_eintr(void **state)
{
	int p[2];
	char c;
	(void)state;
	assert_int_equal(0, pipe(p));
	sp_watchdog(20);
	errno = 0;
	assert_int_equal(-1, read(p[0], &c, 1)); /* nothing will ever come */
	assert_int_equal(EINTR, errno);
	sp_watchdog(0);
	close(p[0]);
	close(p[1]);
}

static int exit_now(void *arg) { (void)arg; return 0; }

static void quiet_handler(int sig) { (void)sig; }

static void watchdog_puts_back_the_tests_sigalrm_handler(void **state)
{
	struct sigaction mine = { .sa_handler = quiet_handler }, now;
	(void)state;
	sigemptyset(&mine.sa_mask);
	assert_int_equal(0, sigaction(SIGALRM, &mine, NULL));
	sp_watchdog(1000);
	sp_watchdog(0);
	assert_int_equal(0, sigaction(SIGALRM, NULL, &now));
	assert_true(now.sa_handler == quiet_handler);
	signal(SIGALRM, SIG_DFL);
}

static int die_by_term(void *arg) { (void)arg; raise(SIGTERM); return 0; }

static void status_in_words_and_strict_reaps(void **state)
{
	(void)state;
	assert_string_equal("exited 255", sp_status_str(255 << 8));
	assert_string_equal("killed by SIGPIPE", sp_status_str(SIGPIPE));
	sp_reap_exit(sp_fork(pass_barrier_free, NULL), 7);
	sp_reap_signal(sp_fork(die_by_term, NULL), SIGTERM);
}

static void proc_state_shows_zombie(void **state)
{
	(void)state;
	if (!sp_have_proc())
		skip();
	pid_t pid = sp_fork(exit_now, NULL);
	assert_true(sp_wait_proc_state(pid, 'Z'));
	sp_reap(pid);
	assert_int_equal(0, sp_proc_state(pid));
}

/* ---- the harness, through items run as a probe ---------------------------- */

SP_TEST(selftest_variants_run_in_declared_order, "SELFTEST", SP_INET,
	.end = SP_BOTH_ENDS, .read = SP_VALUES(SP_IO_RECV, SP_IO_MSG))
{
	RECORD("variant", "%s first=%d", ctx->variant, ctx->first);
}

SP_TEST(selftest_failure_names_its_variant, "SELFTEST", SP_INET, .mode = SP_BOTH_MODES)
{
	ASSERT_EQ(0, ctx->nonblock);
}

SP_TEST(selftest_missing_path_is_not_supported, "SELFTEST", SP_INET,
	.how = SP_NAMES("present", "missing"))
{
	if (ctx->how == 1)
		UNAVAILABLE("the %s path", ctx->how_name);
}

SP_TEST(selftest_broken_needs_another_id, "SELFTEST", SP_NONE)
{
	BROKEN_NEEDS("CLOSE-HALF-WR-EOF", "the peer's FIN was not seen");
}

/* A fixture's mechanism: broken (needs ID) on another ID's item, the
 * item's own failure on an item of that ID. */
SP_TEST(selftest_mechanism_of_another_id, "SELFTEST", SP_NONE)
{
	sp_needs_at(__FILE__, __LINE__, "PIPE-ENDS", "write() to fds[1]", "1", "-1 (EBADF)", EBADF);
}

SP_TEST(selftest_mechanism_of_its_own_id, "SELFTEST,PIPE-ENDS", SP_NONE)
{
	sp_needs_at(__FILE__, __LINE__, "PIPE-ENDS", "write() to fds[1]", "1", "-1 (EBADF)", EBADF);
}

static int child_finds_mechanism_broken(void *arg)
{
	(void)arg;
	BROKEN_NEEDS("PIPE-ENDS", "the child's pipe is the wrong way round");
}

/* A child that ends broken makes the item broken when it is reaped. */
SP_TEST(selftest_child_broken_reaches_the_parent, "SELFTEST", SP_NONE)
{
	sp_reap(sp_fork(child_finds_mechanism_broken, NULL));
}

SP_TEST(selftest_blocked_call_fails_naming_it, "SELFTEST", SP_NONE)
{
	int p[2];
	char c;
	ASSERT_SYS(pipe(p));
	MUST_RETURN(read(p[0], &c, 1), "read() of an empty pipe");
}

SP_TEST(selftest_kinds_and_shared_helpers, "SELFTEST", SP_INET, .kind = SP_EVERY_KIND,
	.read = SP_EVERY_READ, .write = SP_EVERY_WRITE)
{
	int c, s;
	char buf[8];
	struct sp_got got;

	sp_pair(ctx, &c, &s);
	RECORD_ONCE("first_kind", "%s", sp_kind_name(ctx->kind));
	ASSERT_EQ(SOCK_STREAM, sp_get_int(c, SOL_SOCKET, SO_TYPE));
	ASSERT_EQ(3, sp_io_send(ctx->write, c, "abc", 3, 0, NULL, 0));
	ASSERT_EQ(3, sp_wait_inq(s, 3));
	ASSERT_EQ(3, MUST_RETURN(sp_io_recv(ctx->read, s, buf, sizeof(buf), 0, &got), "recv"));
	ASSERT_MEM_EQ("abc", buf, 3);
	ASSERT_EQ(ctx->read == SP_IO_MSG || ctx->read == SP_IO_URING_MSG || ctx->read == SP_IO_MMSG,
		  got.has_flags);
	ASSERT_EQ(0, got.msg_flags);
	close(c);
	close(s);
}

/* Run an item of this binary as a probe; its protocol lines. */
static void run_item(const char *item, const char *family, char *out, size_t room)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "SOCKPROBE_WAIT_MS=100 /proc/%d/exe --probe --run %s "
		 "--family %s 2>/dev/null | grep '^@SP1'", (int)getpid(), item, family);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, room - 1, f);
	out[n] = '\0';
	pclose(f);
}

static void harness_runs_each_variant_in_order(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_variants_run_in_declared_order", "ipv4", out, sizeof(out));
	assert_non_null(strstr(out,
		"@SP1 obs key=variant value=end=client,read=recv%20first=1\n"
		"@SP1 obs key=variant value=end=client,read=recvmsg%20first=0\n"
		"@SP1 obs key=variant value=end=server,read=recv%20first=0\n"
		"@SP1 obs key=variant value=end=server,read=recvmsg%20first=0\n"
		"@SP1 end verdict=pass"));
}

static void harness_names_the_failing_variant(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_failure_names_its_variant", "ipv4", out, sizeof(out));
	assert_non_null(strstr(out, "expected=0 observed=1 errno= child= variant=mode=non-blocking\n"));
	assert_non_null(strstr(out, "@SP1 end verdict=fail message=fixtures_test.c:"));
	assert_non_null(strstr(out, ":%20ctx->nonblock:%20expected%200,%20observed%201\n"));
}

static void harness_reports_a_missing_path_as_not_supported(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_missing_path_is_not_supported", "ipv4", out, sizeof(out));
	assert_non_null(strstr(out, "@SP1 unavailable reason=the%20missing%20path variant=how=missing\n"));
	/* The other variant ran and passed: the item passes on the paths this
	 * system has and names the one it lacks (recorded, never passed). */
	assert_non_null(strstr(out, "@SP1 obs key=unavailable value=the%20missing%20path\n"));
	assert_non_null(strstr(out, "@SP1 end verdict=pass message=not%20supported%20by%20this%20system,"
				    "%20left%20out:%20the%20missing%20path\n"));
}

static void harness_broken_line_names_the_needed_id(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_broken_needs_another_id", "none", out, sizeof(out));
	assert_non_null(strstr(out, "reason=the%20peer's%20FIN%20was%20not%20seen needs=CLOSE-HALF-WR-EOF\n"));
	assert_non_null(strstr(out, "@SP1 end verdict=broken message=the%20peer's%20FIN%20was%20not%20seen\n"));
}

static void harness_mechanism_is_broken_or_the_items_own_failure(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_mechanism_of_another_id", "none", out, sizeof(out));
	assert_non_null(strstr(out, "needs=PIPE-ENDS\n"));
	assert_non_null(strstr(out, "@SP1 end verdict=broken message=write()%20to%20fds[1]:"
				    "%20expected%201,%20observed%20-1%20(EBADF)\n"));
	run_item("selftest_mechanism_of_its_own_id", "none", out, sizeof(out));
	assert_non_null(strstr(out, "@SP1 fail at=fixtures_test.c:"));
	assert_null(strstr(out, "@SP1 broken"));
	assert_non_null(strstr(out, "@SP1 end verdict=fail"));
	run_item("selftest_child_broken_reaches_the_parent", "none", out, sizeof(out));
	assert_non_null(strstr(out, "needs=PIPE-ENDS\n"));
	assert_non_null(strstr(out, "@SP1 end verdict=broken message=in%20a%20child:%20the%20child's"));
}

static void harness_blocked_call_fails_with_its_name(void **state)
{
	char out[4096];
	(void)state;
	run_item("selftest_blocked_call_fails_naming_it", "none", out, sizeof(out));
	assert_non_null(strstr(out, "expr=read()%20of%20an%20empty%20pipe expected=returns%20within%20100%20ms "
				    "observed=still%20blocked%20after%20100%20ms"));
	assert_non_null(strstr(out, "@SP1 end verdict=fail"));
}

static void harness_kinds_follow_the_family(void **state)
{
	char out[16384];
	(void)state;
	run_item("selftest_kinds_and_shared_helpers", "ipv4", out, sizeof(out));
	assert_non_null(strstr(out, "@SP1 end verdict=pass"));
	assert_non_null(strstr(out, "key=first_kind value=tcp\n"));
	run_item("selftest_kinds_and_shared_helpers", "ipv6", out, sizeof(out));
	assert_non_null(strstr(out, "@SP1 end verdict="));
	assert_null(strstr(out, "verdict=fail"));
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--probe") == 0)
		return sp_main(argc - 1, argv + 1, "selftest", NULL, 0);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(protocol_lines_escape_space_percent_and_controls),
		cmocka_unit_test(record_is_an_obs_line),
		cmocka_unit_test(errno_and_signal_names),
		cmocka_unit_test(pattern_detects_first_wrong_byte),
		cmocka_unit_test(tcp_pair_is_connected_over_loopback),
		cmocka_unit_test(strict_io_through_every_api),
		cmocka_unit_test(udp_bound_socket_has_loopback_port),
		cmocka_unit_test(wait_inq_is_bounded),
		cmocka_unit_test(barrier_orders_processes_and_reap_gives_status),
		cmocka_unit_test(proc_state_shows_zombie),
		cmocka_unit_test(watchdog_turns_a_stuck_call_into_eintr),
		cmocka_unit_test(watchdog_puts_back_the_tests_sigalrm_handler),
		cmocka_unit_test(status_in_words_and_strict_reaps),
		cmocka_unit_test(harness_runs_each_variant_in_order),
		cmocka_unit_test(harness_names_the_failing_variant),
		cmocka_unit_test(harness_reports_a_missing_path_as_not_supported),
		cmocka_unit_test(harness_broken_line_names_the_needed_id),
		cmocka_unit_test(harness_mechanism_is_broken_or_the_items_own_failure),
		cmocka_unit_test(harness_blocked_call_fails_with_its_name),
		cmocka_unit_test(harness_kinds_follow_the_family),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
