# sockprobe - does this system behave the way the textbook says sockets,
# processes and pipes behave? See README.md.
#
#   make check    build and run the suite on this machine's kernel
#   make test     the project's own tests (fixtures, runner, faults, suite); it ends
#                 with one line counting skipped tests
#   make test-deps   every package and kernel any project test needs (CI runs it first)
#   make test-browser  the comparison page rendered in headless Chromium
#   make list     the tests with their catalogue IDs
#   make test-fresh  the two commands above on a fresh Debian 12 root in a container,
#                 as root and as a user (root cached in ~/.cache/sockprobe/fresh)
#
# make check options (make variables):
#   PRELOAD=/abs/lib.so  LD_PRELOAD a socket stack into every probe
#   WRAP="cmd args"      run every probe as `cmd args PROBE ...` (proot, valgrind --tool=none)
#   TESTS="tcp udp/udp_keeps_datagram_boundaries"  a selection
#   JOBS=2               items at once (default: 8 x nproc, 0 = one at a time)
#   TIMEOUT=5            seconds per item
#   FAMILY=ipv4          one address family only
#   K="expr"             pytest -k expression
#   HOST=1               no namespaces: run on the host loopback
#   KERNEL=uml|6.1|6.12|/path/bzImage  run the static probes (glibc, build/static) under another kernel
#   LIBC=musl            run the static musl probes (build/musl) on this kernel
#   ARCH=aarch64         another CPU (aarch64, armhf, riscv64, i386): static probes from
#                        Debian's cross compiler (build/ARCH/) under qemu-user on this kernel
#   BASELINE=report.json fail only on behaviors worse than in that report
#   REPEAT=N             run every item N times (with JOBS=2: in parallel); count flips
#   REPORT_DIR=dir       where run directories go (default reports/)
#   EXPECT=socket_wrapper  known deviations (expectations/NAME.tsv) become xfail
#   TARGET=ssh://user@host[:port]  run the bundle (make dist) on a remote machine over ssh
#   KTAP=1               also print the run's results.ktap (KTAP v1) at the end
#
#   make bench           how fast: make check, runner overhead, REPEAT, UML, check-kernels (figures in reports/)
#   make soak RUNS=100   every item RUNS times under stress-ng load; any verdict flip is a flake
#   make mutate          every fault of faults/ against the whole suite: table, score, reports/mutate-*/
#                        (FAULTS="a b" only those; JOBS=N items at once); exit 1 if a fault escapes
#
#   make dist            build/sockprobe-VERSION-ARCH.tar.gz: static probes + POSIX sh runner
#                        (ARCH=aarch64 ...: that architecture's; TARGET=ssh:// with ARCH= runs it)
#   make ingest STREAM=file  the stream that bundle's `sh run -o file` wrote -> a report
#
#   make compare REPORTS="a/report.json b/report.json"   side-by-side table
#   make matrix          every target this machine runs (host, UML, QEMU 6.1/6.12, musl,
#                        socket_wrapper, proot, valgrind) with its expectations -> docs/matrix.md
#   make check-kernels   host, UML 6.1, QEMU 6.1, QEMU 6.12 side by side (JOBS=N given: N at once; default
#                        as many as cores x 2 and memory allow), then a comparison
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -pthread -Wall -Wextra -Werror=implicit-function-declaration -Ifixtures
BUILD   := build
CASES   := $(wildcard cases/*.c)
PROBES  := $(patsubst cases/%.c,$(BUILD)/probes/%,$(CASES))
FIXOBJ  := $(BUILD)/obj/sp_protocol.o $(BUILD)/obj/sp_fixtures.o $(BUILD)/obj/sp_capture.o $(BUILD)/obj/sp_ns.o \
	   $(BUILD)/obj/sp_entry.o
LIBS    := -lcmocka
PYTHON   = $$(scripts/find-python)
NPROC   := $(shell nproc 2>/dev/null || echo 2)
# make check: eight items at once per core (most items wait on the network
# or a timer; runner/ahead.py). make mutate keeps one per core unless JOBS is given: a campaign
# makes and tears down a network namespace per run, and six at once here
# outran the kernel's namespace clean-up until no pid was left.
JOBS    ?= $(shell echo $$(( 8 * $(NPROC) )))

# make check's variables go to the runner as they are, one word VAR=value
# each: runner/config.py declares and checks every one of them (the list
# here only names them; tests/test_cli.py keeps it equal to config.py's).
SP_VARS := TESTS JOBS TIMEOUT FAMILY K HOST PRELOAD WRAP KERNEL TARGET LIBC ARCH BASELINE REPEAT \
	REPORT_DIR EXPECT KTAP
sp_quote = '$(subst ','\'',$(1))'
CHECK_ARGS = $(foreach v,$(SP_VARS),$(if $($(v)),$(call sp_quote,$(v)=$($(v)))))
# ARCH: name -> cross triple and Debian architecture (runner/arch.py has the same table).
ARCHES := aarch64 armhf riscv64 i386
xtriple_aarch64 := aarch64-linux-gnu
xtriple_armhf   := arm-linux-gnueabihf
xtriple_riscv64 := riscv64-linux-gnu
xtriple_i386    := i686-linux-gnu
xdeb_aarch64 := arm64
xdeb_armhf   := armhf
xdeb_riscv64 := riscv64
xdeb_i386    := i386
# What the build needs beyond the base packages (a target's own packages,
# UML, QEMU, an ssh client, a wrapper, are installed by the runner from
# runner/targets/registry.py). $(strip): the list is spaces when nothing
# extra is needed, and $(if) does not strip before testing.
EXTRA_DEPS := $(strip $(if $(filter musl,$(LIBC)),musl-tools) \
	$(if $(ARCH),gcc-$(xtriple_$(ARCH)) libc6-dev-$(xdeb_$(ARCH))-cross qemu-user-static))
# Static probes are built for every target but this machine (glibc,
# `static`: guests, bundles, remotes) and for LIBC=musl (`musl`).
NEED_STATIC := $(strip $(if $(KERNEL)$(TARGET),static) $(if $(filter musl,$(LIBC)),musl))

# make check's variables are checked while the Makefile is read, before
# anything is installed or built, by the runner's own declarations
# (runner/config.py: each value, then the chosen target's rule for the
# options it accepts): a wrong value is one line and exit status 2. A
# machine without any python3 yet (a fresh one: deps.sh installs it) is
# checked by the runner when it starts, with the same line.
ifneq ($(filter check,$(MAKECMDGOALS)),)
SP_PY3 := $(firstword $(shell cat build/python 2>/dev/null) $(wildcard /usr/bin/python3) \
	$(shell command -v python3 2>/dev/null))
ifneq ($(SP_PY3),)
SP_BAD := $(shell $(SP_PY3) -m runner.config $(CHECK_ARGS) 2>&1)
ifneq ($(SP_BAD),)
$(error $(SP_BAD))
endif
endif
endif

# Exit status of `make check` and `make test` is the runner's: 0 every
# Must holds, 1 a Must failed (or an item broke, crashed or timed out),
# 2 a usage or set-up error. GNU make turns any failed recipe into 2,
# except in question mode (-q), where a recipe line marked `+` still runs
# and its status 1 becomes make's exit status 1 (2 and above stay 2).
# So these two goals run in question mode, every recipe line they use is
# a `+` line ($(SP_RUN)), set-up steps exit 2 on failure, and the
# sub-make that builds runs in normal mode (MAKEFLAGS= drops the -q).
# Not with -n: a dry run stays dry. tests/test_exit_status.py checks
# this through make.
ifneq ($(filter check test,$(MAKECMDGOALS)),)
ifeq ($(filter-out check test,$(MAKECMDGOALS)),)
ifeq ($(findstring n,$(filter-out --%,$(firstword -$(MAKEFLAGS)))),)
MAKEFLAGS += -q
SP_RUN := +
endif
endif
endif
SUBMAKE = MAKEFLAGS= $(MAKE) --no-print-directory

.PHONY: all binaries static musl check check-kernels compare bench soak test test-deps test-fresh test-browser list deps clean
.SECONDARY:
.DELETE_ON_ERROR:

all: binaries
binaries: $(PROBES) $(BUILD)/sp-isolate $(BUILD)/libspfault.so $(BUILD)/fixtures-test $(BUILD)/test-probes/no-io-uring \
	$(BUILD)/test-probes/misbehave

deps:
	$(SP_RUN)@scripts/deps.sh $(EXTRA_DEPS)

check: deps
	$(SP_RUN)@$(SUBMAKE) binaries $(NEED_STATIC) $(if $(ARCH),cross-$(ARCH)) || exit 2
	$(SP_RUN)@exec $(PYTHON) -m runner check $(CHECK_ARGS)

bench: deps
	@$(MAKE) --no-print-directory binaries static
	@$(PYTHON) -m runner bench $(if $(RUNS),--runs $(RUNS))

soak:
	@scripts/deps.sh stress-ng
	@$(MAKE) --no-print-directory binaries
	@$(PYTHON) -m runner soak --runs $(or $(RUNS),100)

.PHONY: mutate
mutate: deps
	@$(MAKE) --no-print-directory binaries
	@$(PYTHON) -m runner mutate --jobs $(if $(filter command line environment,$(origin JOBS)),$(JOBS),$(NPROC)) $(if $(REPORT_DIR),--reports $(REPORT_DIR)) $(FAULTS)

compare: deps
	@$(PYTHON) -m runner compare $(REPORTS)

check-kernels: deps
	@$(MAKE) --no-print-directory binaries static
	@exec $(PYTHON) -m runner kernels $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
	  $(if $(filter command line environment,$(origin JOBS)),$(if $(filter-out auto,$(JOBS)),--jobs $(JOBS)))

# The reference matrix (runner/refmatrix.py): each target with its
# expectations/<target>.tsv, written as docs/matrix.md. Targets whose
# packages cannot be installed are skipped, and the page says why.
.PHONY: matrix
# The build needs musl and the aarch64 cross compiler; each target's own
# packages are installed by the runner from the registry (a target whose
# packages cannot be installed is skipped, and the page says why).
matrix:
	@scripts/deps.sh musl-tools
	@scripts/deps.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static || \
		echo "sockprobe: the qemu-user-aarch64 target is skipped"
	@$(MAKE) --no-print-directory binaries static musl
	@-$(MAKE) --no-print-directory cross-aarch64
	@exec $(PYTHON) -m runner matrix $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(REPORT_DIR),--reports $(REPORT_DIR))

# The bundle that runs anywhere: static probes, sp-isolate, fixtures and the
# POSIX sh runner in build/sockprobe-VERSION-ARCH.tar.gz; `sh run -o FILE`
# on the target, then `make ingest STREAM=FILE` here writes the report.
.PHONY: dist ingest ssh-deps
# TARGET=ssh://user@host[:port] runs that bundle on a remote machine
# (runner/targets/ssh.py): the static probes and an ssh client here.
# make test also runs it against a real sshd started on loopback (tests/test_ssh.py).
test: ssh-deps
ssh-deps:
	$(SP_RUN)@scripts/deps.sh openssh-server openssh-client

# ARCH=aarch64 (armhf, riscv64, i386): the bundle of that architecture.
dist: deps
	@$(MAKE) --no-print-directory $(if $(ARCH),cross-$(ARCH),static)
	@$(PYTHON) -m runner dist $(if $(ARCH),--static $(BUILD)/$(ARCH))

ingest:
	@$(if $(STREAM),,echo "make ingest: say which stream: make ingest STREAM=FILE" >&2; exit 2)
	@scripts/deps.sh
	@exec $(PYTHON) -m runner ingest $(if $(EXPECT),--expect $(EXPECT)) $(if $(REPORT_DIR),--reports $(REPORT_DIR)) '$(STREAM)'

list: deps
	@$(MAKE) --no-print-directory binaries
	@$(PYTHON) -m runner list

# What the project's tests need that every run does not (make test installs
# these; make test-deps adds everything the rest of the tests use).
TEST_PKGS := musl-tools busybox-static iproute2 perl python3-yaml libsocket-wrapper
# make test-deps: every package and kernel any project test needs, so that
# none skips for a missing one (.ci/run: then a skip for one fails CI).
# Each target's own packages come from runner/targets/registry.py.
TEST_ALL_PKGS := $(TEST_PKGS) cpio util-linux openssh-server openssh-client proot valgrind \
	chromium liburing-dev runsc qemu-user-static \
	$(foreach a,$(ARCHES),gcc-$(xtriple_$(a)) libc6-dev-$(xdeb_$(a))-cross)
.PHONY: test-deps
test-deps:
	@scripts/deps.sh $(TEST_ALL_PKGS)
	@$(MAKE) --no-print-directory binaries static musl $(addprefix cross-,$(ARCHES))
	@$(PYTHON) -m runner test-deps

test:
	$(SP_RUN)@scripts/deps.sh $(TEST_PKGS)
	$(SP_RUN)@$(SUBMAKE) binaries static musl || exit 2
	$(SP_RUN)@py=$(PYTHON) || exit 2; rm -f $(BUILD)/test-skips; \
	echo "== fixture library (cmocka)" && { $(BUILD)/fixtures-test || exit 1; } && \
	echo "== runner, reports, CLI, catalogue, fault injection (pytest)" && \
	{ env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $$py -m pytest -q tests; rc=$$?; [ $$rc = 0 ] || exit $$(( rc == 1 ? 1 : 2 )); } && \
	echo "== the suite on this machine's kernel" && \
	$$py -m runner check -q -n auto && { cat $(BUILD)/test-skips 2>/dev/null || true; }

# The comparison page in a real browser (headless Chromium from Debian).
test-browser:
	@scripts/deps.sh chromium
	@$(MAKE) --no-print-directory binaries
	@$$(scripts/find-python) -m pytest -q -m browser tests/test_browser.py

# The README's two commands on a fresh Debian 12 root in a container, as
# root and as a user (scripts/test-fresh; the root is cached under
# ~/.cache/sockprobe/fresh).
test-fresh:
	@scripts/deps.sh debootstrap bubblewrap git
	@scripts/test-fresh $(if $(REBUILD),--rebuild)

# Static builds of the probes and sp-isolate; they use fixtures/lite (a
# minimal cmocka-compatible runner: Debian ships cmocka for glibc only, as
# a shared library). `static`: glibc, into build/static: what guest
# kernels, the bundle (make dist) and ssh targets run, so that a guest
# differs from the host by its kernel alone. glibc's `files` and `dns`
# name services are built into its static library, so the resolver needs
# no shared library at run time. `musl`: musl, into build/musl, for
# LIBC=musl.
SCFLAGS := -O2 -g -std=gnu11 -pthread -Wall -Wextra -static -Ifixtures/lite -Ifixtures
SFIX    := fixtures/sp_protocol.c fixtures/sp_fixtures.c fixtures/sp_capture.c fixtures/sp_ns.c fixtures/sp_entry.c \
	   fixtures/lite/cmocka_lite.c
# glibc warns that a static getaddrinfo() needs its shared libraries at run
# time; it does not for the files and dns services the fixtures configure.
sp_quiet_static = 2>&1 | { grep -v -e 'statically linked applications requires at runtime' \
	-e ': in function .' || true; }; test -x $@
SPROBES := $(patsubst cases/%.c,$(BUILD)/static/probes/%,$(CASES))
static: $(SPROBES) $(BUILD)/static/sp-isolate
	@touch $(BUILD)/static/.glibc
# build/static held musl binaries before (a build without .glibc): redone.
ifneq ($(wildcard $(BUILD)/static/sp-isolate),)
ifeq ($(wildcard $(BUILD)/static/.glibc),)
$(shell rm -rf $(BUILD)/static)
endif
endif
$(BUILD)/static/probes/%: cases/%.c $(SFIX) fixtures/sp.h fixtures/sp_entry.h fixtures/lite/cmocka.h
	@mkdir -p $(@D)
	@echo "  $(CC) -static $@"; rm -f $@; $(CC) $(SCFLAGS) -o $@ $< $(SFIX) $(sp_quiet_static)
$(BUILD)/static/sp-isolate: runner/isolate.c fixtures/sp_ns.c fixtures/sp_ns.h
	@mkdir -p $(@D)
	$(CC) $(SCFLAGS) -o $@ runner/isolate.c fixtures/sp_ns.c
MUSLCC  := musl-gcc
MPROBES := $(patsubst cases/%.c,$(BUILD)/musl/probes/%,$(CASES))
musl: $(MPROBES) $(BUILD)/musl/sp-isolate
$(BUILD)/musl/probes/%: cases/%.c $(SFIX) fixtures/sp.h fixtures/sp_entry.h fixtures/lite/cmocka.h
	@mkdir -p $(@D)
	$(MUSLCC) $(SCFLAGS) -o $@ $< $(SFIX)
$(BUILD)/musl/sp-isolate: runner/isolate.c fixtures/sp_ns.c fixtures/sp_ns.h
	@mkdir -p $(@D)
	$(MUSLCC) $(SCFLAGS) -o $@ runner/isolate.c fixtures/sp_ns.c

# Cross builds for ARCH=...: static glibc (Debian's cross libc6-dev) with
# fixtures/lite, into build/ARCH/probes and build/ARCH/sp-isolate.
define sp_cross
XPROBES_$(1) := $$(patsubst cases/%.c,$$(BUILD)/$(1)/probes/%,$$(CASES))
.PHONY: cross-$(1)
cross-$(1): $$(XPROBES_$(1)) $$(BUILD)/$(1)/sp-isolate
$$(BUILD)/$(1)/probes/%: cases/%.c $$(SFIX) fixtures/sp.h fixtures/sp_entry.h fixtures/lite/cmocka.h
	@mkdir -p $$(@D)
	@echo "  $$(xtriple_$(1))-gcc $$@"; rm -f $$@; $$(xtriple_$(1))-gcc $$(SCFLAGS) -o $$@ $$< $$(SFIX) $$(sp_quiet_static)
$$(BUILD)/$(1)/sp-isolate: runner/isolate.c fixtures/sp_ns.c fixtures/sp_ns.h
	@mkdir -p $$(@D)
	$$(xtriple_$(1))-gcc $$(SCFLAGS) -o $$@ runner/isolate.c fixtures/sp_ns.c
endef
$(foreach a,$(ARCHES),$(eval $(call sp_cross,$(a))))

$(BUILD)/obj/%.o: fixtures/%.c fixtures/sp.h fixtures/sp_ns.h fixtures/sp_entry.h | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<
# -z now: every symbol is resolved at start, so a probe's first call of a
# libc function does not resolve it (and maybe sleep on a page) inside the
# call a no-blocking check (sp_block_mark) is measuring.
$(BUILD)/probes/%: cases/%.c $(FIXOBJ) fixtures/sp.h fixtures/sp_entry.h | $(BUILD)/probes
	$(CC) $(CFLAGS) -Wl,-z,now -o $@ $< $(FIXOBJ) $(LIBS)
$(BUILD)/fixtures-test: tests/fixtures_test.c $(FIXOBJ) fixtures/sp.h | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $< $(FIXOBJ) $(LIBS)
$(BUILD)/test-probes/%: tests/probes/%.c $(FIXOBJ) fixtures/sp.h | $(BUILD)/test-probes
	$(CC) $(CFLAGS) -o $@ $< $(FIXOBJ) $(LIBS)
$(BUILD)/sp-isolate: runner/isolate.c fixtures/sp_ns.c fixtures/sp_ns.h | $(BUILD)
	$(CC) $(CFLAGS) -o $@ runner/isolate.c fixtures/sp_ns.c
$(BUILD)/libspfault.so: $(wildcard faults/*.c) faults/spfault.h | $(BUILD)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $(wildcard faults/*.c) -ldl
$(BUILD) $(BUILD)/obj $(BUILD)/probes $(BUILD)/test-probes:
	mkdir -p $@
clean:
	rm -rf $(BUILD)
