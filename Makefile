# sockprobe - see README.md.
#   make check   run the suite on this machine's kernel (main job)
#   make test    the project's own tests
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror=implicit-function-declaration -Ifixtures
BUILD   := build
CASES   := $(wildcard cases/*.c)
PROBES  := $(patsubst cases/%.c,$(BUILD)/probes/%,$(CASES))
FIXOBJ  := $(BUILD)/obj/sp_protocol.o $(BUILD)/obj/sp_fixtures.o
LIBS    := -lcmocka

.PHONY: all build binaries check test deps clean
.SECONDARY:
all: binaries
binaries: $(PROBES) $(BUILD)/sp-isolate $(BUILD)/libspfault.so

$(BUILD)/obj/%.o: fixtures/%.c fixtures/sp.h | $(BUILD)/obj
	$(CC) $(CFLAGS) -c -o $@ $<
$(BUILD)/probes/%: cases/%.c $(FIXOBJ) fixtures/sp.h | $(BUILD)/probes
	$(CC) $(CFLAGS) -o $@ $< $(FIXOBJ) $(LIBS)
$(BUILD)/sp-isolate: runner/isolate.c | $(BUILD)
	$(CC) $(CFLAGS) -o $@ $<
$(BUILD)/libspfault.so: faults/spfault.c | $(BUILD)
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $< -ldl
$(BUILD) $(BUILD)/obj $(BUILD)/probes:
	mkdir -p $@
clean:
	rm -rf $(BUILD)
