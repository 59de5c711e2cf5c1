# sockprobe - does this system behave the way the textbook says sockets,
# processes and pipes behave? See README.md.
#
#   make check    build and run the suite on this machine's kernel
#   make test     the project's own tests (fixtures, runner, faults, suite)
#   make test-browser  the comparison page rendered in headless Chromium
#   make list     the tests with their catalogue IDs
#
# make check options (make variables):
#   PRELOAD=/abs/lib.so  LD_PRELOAD a socket stack into every probe
#   WRAP="cmd args"      run every probe as `cmd args PROBE ...` (proot, valgrind --tool=none)
#   TESTS="tcp udp/udp_keeps_datagram_boundaries"  a selection
#   JOBS=2               parallel workers (pytest-xdist -n; default: nproc, 0 = none)
#   TIMEOUT=5            seconds per item
#   FAMILY=ipv4          one address family only
#   K="expr"             pytest -k expression
#   HOST=1               no namespaces: run on the host loopback
#   KERNEL=uml|6.1|6.12|/path/bzImage  run the static probes under another kernel
#   LIBC=musl            run the static musl probes on this kernel
#   BASELINE=report.json fail only on behaviors worse than in that report
#   REPEAT=N             run every item N times (with JOBS=2: in parallel); count flips
#   REPORT_DIR=dir       where run directories go (default reports/)
#   EXPECT=socket_wrapper  known deviations (expectations/NAME.tsv) become xfail
#   KTAP=1               also print the run's results.ktap (KTAP v1) at the end
#
#   make bench           how fast: make check, runner overhead, REPEAT, UML, check-kernels (figures in reports/)
#   make soak RUNS=100   every item RUNS times under stress-ng load; any verdict flip is a flake
#   make mutate          every fault of faults/ against the whole suite: table, score, reports/mutate-*/
#                        (FAULTS="a b" only those; JOBS=N items at once); exit 1 if a fault escapes
#
#   make compare REPORTS="a/report.json b/report.json"   side-by-side table
#   make check-kernels   host, UML 6.1, QEMU 6.1, QEMU 6.12 side by side (JOBS=N given: N at once; default
#                        as many as cores x 2 and memory allow), then a comparison
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -pthread -Wall -Wextra -Werror=implicit-function-declaration -Ifixtures
BUILD   := build
CASES   := $(wildcard cases/*.c)
PROBES  := $(patsubst cases/%.c,$(BUILD)/probes/%,$(CASES))
FIXOBJ  := $(BUILD)/obj/sp_protocol.o $(BUILD)/obj/sp_fixtures.o $(BUILD)/obj/sp_capture.o $(BUILD)/obj/sp_ns.o
LIBS    := -lcmocka
PYTHON   = $$(scripts/find-python)
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)

CHECK_ARGS := $(if $(PRELOAD),--preload $(PRELOAD)) $(if $(WRAP),--wrap '$(WRAP)') $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
	$(if $(filter-out 0,$(JOBS)),-n $(JOBS)) $(if $(FAMILY),--family $(FAMILY)) \
	$(if $(K),-k "$(K)") $(if $(HOST),--host) $(if $(BASELINE),--baseline $(BASELINE)) \
	$(if $(KERNEL),--kernel $(KERNEL)) $(if $(LIBC),--libc $(LIBC)) \
	$(if $(KTAP),--ktap) $(if $(EXPECT),--expect $(EXPECT)) $(if $(REPEAT),--repeat $(REPEAT)) $(if $(REPORT_DIR),--reports $(REPORT_DIR)) $(TESTS)
# What a run needs beyond the base packages.
EXTRA_DEPS := $(if $(or $(KERNEL),$(filter musl,$(LIBC))),musl-tools) \
	$(if $(KERNEL),busybox-static) $(if $(filter uml,$(KERNEL)),user-mode-linux) \
	$(if $(filter-out uml,$(KERNEL)),qemu-system-x86) \
	$(if $(filter proot%,$(WRAP)),proot) $(if $(filter valgrind%,$(WRAP)),valgrind)

.PHONY: test-browser all binaries static check check-kernels compare bench soak test list deps clean
.SECONDARY:
.DELETE_ON_ERROR:

all: binaries
binaries: $(PROBES) $(BUILD)/sp-isolate $(BUILD)/libspfault.so $(BUILD)/fixtures-test \
	$(BUILD)/test-probes/misbehave

deps:
	@scripts/deps.sh $(EXTRA_DEPS)

check: deps
	@$(MAKE) --no-print-directory binaries $(if $(EXTRA_DEPS),static)
	@exec $(PYTHON) -m runner check $(CHECK_ARGS)

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
	@$(PYTHON) -m runner mutate $(if $(JOBS),--jobs $(JOBS)) $(if $(REPORT_DIR),--reports $(REPORT_DIR)) $(FAULTS)

compare: deps
	@$(PYTHON) -m runner compare $(REPORTS)

check-kernels:
	@scripts/deps.sh musl-tools busybox-static user-mode-linux qemu-system-x86
	@$(MAKE) --no-print-directory binaries static
	@exec $(PYTHON) -m runner kernels $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
	  $(if $(filter command line environment,$(origin JOBS)),$(if $(filter-out auto,$(JOBS)),--jobs $(JOBS)))

list: deps
	@$(MAKE) --no-print-directory binaries
	@$(PYTHON) -m runner list

test:
	@scripts/deps.sh musl-tools busybox-static perl python3-yaml libsocket-wrapper
	@$(MAKE) --no-print-directory binaries static
	@py=$(PYTHON) && \
	echo "== fixture library (cmocka)" && $(BUILD)/fixtures-test && \
	echo "== runner, reports, CLI, catalogue, fault injection (pytest)" && \
	$$py -m pytest -q tests && \
	echo "== the suite on this machine's kernel" && \
	$$py -m runner check -q -n 2

# The comparison page in a real browser (headless Chromium from Debian).
test-browser:
	@scripts/deps.sh chromium
	@$(MAKE) --no-print-directory binaries
	@$$(scripts/find-python) -m pytest -q -m browser tests/test_browser.py

# Static musl builds of the probes and sp-isolate, for guest kernels and
# LIBC=musl; they use fixtures/lite (a minimal cmocka-compatible runner).
MUSLCC  := musl-gcc
SCFLAGS := -O2 -g -std=gnu11 -pthread -Wall -Wextra -static -Ifixtures/lite -Ifixtures
SFIX    := fixtures/sp_protocol.c fixtures/sp_fixtures.c fixtures/sp_capture.c fixtures/sp_ns.c \
	   fixtures/lite/cmocka_lite.c
SPROBES := $(patsubst cases/%.c,$(BUILD)/static/probes/%,$(CASES))
static: $(SPROBES) $(BUILD)/static/sp-isolate
$(BUILD)/static/probes/%: cases/%.c $(SFIX) fixtures/sp.h fixtures/lite/cmocka.h
	@mkdir -p $(@D)
	$(MUSLCC) $(SCFLAGS) -o $@ $< $(SFIX)
$(BUILD)/static/sp-isolate: runner/isolate.c fixtures/sp_ns.c fixtures/sp_ns.h
	@mkdir -p $(@D)
	$(MUSLCC) $(SCFLAGS) -o $@ runner/isolate.c fixtures/sp_ns.c

$(BUILD)/obj/%.o: fixtures/%.c fixtures/sp.h fixtures/sp_ns.h | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<
$(BUILD)/probes/%: cases/%.c $(FIXOBJ) fixtures/sp.h | $(BUILD)/probes
	$(CC) $(CFLAGS) -o $@ $< $(FIXOBJ) $(LIBS)
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
