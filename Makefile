# envsrv — plain GNU make. See README.md.
#
#   make            build ./envsrv
#   make deps       install the Debian packages the build needs (apt-get)
#   make run        deps + build + start `envsrv --env gsm8k`
#   make test       deps + build + run every test   (SAN=1: ASan + UBSan)
#   make bench      run the benchmarks (docs/benchmarks.md)
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean

PREFIX  ?= /usr/local
DESTDIR ?=
SAN     ?= 0
DATA    ?= $(abspath ../shared/data)

# Debian packages the build, the tests and the benchmarks need.
DEB_PKGS := gcc make pkg-config libmicrohttpd-dev libjansson-dev liblua5.4-dev \
            libcmocka-dev libgmp-dev libssl-dev libseccomp-dev zlib1g-dev libgit2-dev \
            libcurl4-openssl-dev lua5.4 wrk python3 curl
PC_PKGS  := libmicrohttpd jansson lua5.4 gmp libcrypto libseccomp zlib libgit2 libcurl

ifeq ($(SAN),1)
BUILD   := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     := -O1
else
BUILD   := build
SANFLAGS :=
OPT     := -O2
endif

CC      ?= cc
PKG_CFLAGS := $(shell pkg-config --cflags $(PC_PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PC_PKGS) 2>/dev/null)
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
# Warnings are errors in CI (CI=true is set by the CI runner).
ifneq ($(CI),)
WARN    += -Werror
endif
CFLAGS  ?= $(OPT) -g
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -I. $(PKG_CFLAGS) -MMD -MP
ALL_LDFLAGS := $(LDFLAGS) $(SANFLAGS)
LIBS    := $(PKG_LIBS) -lpthread -lm

# Every .c in a module folder belongs to the library, except the program's main.
MODULES  := server lua verifiers sandbox inference
LIB_SRCS := $(filter-out server/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/envs/embedded.o
LIB      := $(BUILD)/libenvsrv.a

# Built-in environments and their sample data are compiled into the binary.
EMBED_FILES := $(sort $(wildcard envs/*.lua) $(shell find envs/data -type f 2>/dev/null))

# Tests: every tests/<module>/test_*.c is one cmocka program; tests/support/*.c is
# linked into all of them.
TEST_SRCS    := $(sort $(wildcard tests/*/test_*.c))
TEST_BINS    := $(TEST_SRCS:%.c=$(BUILD)/%)
SUPPORT_SRCS := $(wildcard tests/support/*.c)
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/%.o)

BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(BENCH_SRCS:%.c=$(BUILD)/%)

.PHONY: all deps run test check bench fuzz install clean
.DEFAULT_GOAL := all
# Keep objects make would otherwise delete as intermediates (tests/support/*.o).
.SECONDARY:

all: envsrv

envsrv: $(BUILD)/envsrv
	cp $< $@

$(BUILD)/envsrv: $(BUILD)/server/main.o $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(LIB): $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/envs/embedded.c: envs/embed.sh $(EMBED_FILES)
	@mkdir -p $(dir $@)
	sh envs/embed.sh $(EMBED_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/envs/embedded.o: $(BUILD)/envs/embedded.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The warm Python sandbox's driver, as the bytes of a C array (sandbox/warm.c).
$(BUILD)/sandbox/zygote.inc: sandbox/zygote.py
	@mkdir -p $(dir $@)
	od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g' > $@.tmp && mv $@.tmp $@

$(BUILD)/sandbox/warm.o: sandbox/warm.c $(BUILD)/sandbox/zygote.inc
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -I$(BUILD)/sandbox -c -o $@ $<

$(BUILD)/tests/%: tests/%.c $(SUPPORT_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(SUPPORT_OBJS) $(LIB) $(CMOCKA_LIBS) $(LIBS)

$(BUILD)/tests/support/%.o: tests/support/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CMOCKA_CFLAGS) -c -o $@ $<

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(LIB) $(LIBS)

# Installs only what is missing; does nothing when everything is present.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

run: deps
	$(MAKE) all
	./envsrv --env gsm8k

# `make test` installs what is missing, builds, then runs every test program.
# Integration tests find the binary through ENVSRV_BIN and the shared data
# through ENVSRV_DATA (they skip, saying so, where it is absent).
test: deps
	$(MAKE) check

check: $(BUILD)/envsrv $(TEST_BINS)
	@fail=0; total=0; \
	for t in $(TEST_BINS); do \
	  total=$$((total+1)); \
	  echo "== $$t"; \
	  ENVSRV_BIN=$(abspath $(BUILD)/envsrv) ENVSRV_DATA=$(DATA) ENVSRV_SRC=$(CURDIR) \
	    ./$$t || { fail=$$((fail+1)); echo "FAILED: $$t"; }; \
	done; \
	echo "$$((total-fail)) passed, $$fail failed"; \
	test $$fail -eq 0

bench: deps
	$(MAKE) all $(BENCH_BINS)
	BUILD=$(BUILD) DATA=$(DATA) sh bench/run.sh

# `make fuzz`: libFuzzer (clang) over the verifiers' parsers and the request-body JSON
# parser, FUZZ_SECONDS each.
# Each tests/fuzz/fuzz_NAME.c runs over its seed corpus tests/fuzz/corpus_NAME/;
# new inputs go to build-fuzz/corpus_NAME/ so the committed corpus stays small.
FUZZ_SECONDS ?= 60
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard verifiers/*.c verifiers/*.h)
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. \
	  $(shell pkg-config --cflags gmp jansson) -o $@ $< $(wildcard verifiers/*.c) \
	  $(shell pkg-config --libs gmp jansson) -lm

# The JSON parser's target is differential against Jansson, so it links it.
build-fuzz/fuzz_json_parse: tests/fuzz/fuzz_json_parse.c server/json_parse.c server/server_int.h \
                             tests/support/json_same.h
	@mkdir -p $(dir $@)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -I. $(PKG_CFLAGS) \
	  -o $@ $< server/json_parse.c $(shell pkg-config --libs jansson) -lpthread

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	  name=$${f#build-fuzz/fuzz_}; mkdir -p build-fuzz/corpus_$$name; \
	  echo "== $$f ($(FUZZ_SECONDS)s)"; \
	  ./$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus_$$name tests/fuzz/corpus_$$name || exit 1; \
	done

install: envsrv
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 envsrv $(DESTDIR)$(PREFIX)/bin/envsrv

clean:
	rm -rf build build-san build-fuzz envsrv

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
