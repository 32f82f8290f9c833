# hicached: daemon, client library, CLI and tests.
# make [all|run|serve|test|bench|install|clean|format] [SANITIZER=address|undefined|thread] [V=1]

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
DOCDIR ?= $(PREFIX)/share/doc/hicached
PYTHON ?= python3
INSTALL_PYTHON ?= 1
DESTDIR ?=
PKG_CONFIG ?= pkg-config
CC ?= cc
SANITIZER ?=

ifeq ($(SANITIZER),)
BUILD ?= build/default
else
BUILD ?= build/$(SANITIZER)
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

VERSION := 0.1.0
SOVERSION := 0

DEPS := libuv liburing libprotobuf-c jansson libzstd
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(DEPS) 2>/dev/null)
PKG_LIBS = $(shell $(PKG_CONFIG) --libs $(DEPS) 2>/dev/null)
CHECK_CFLAGS = $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS = $(shell $(PKG_CONFIG) --libs check 2>/dev/null)

CFLAGS ?= -O2 -g
override CFLAGS += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
	-fPIC -fvisibility=hidden -D_GNU_SOURCE -pthread -MMD -MP
override CPPFLAGS += -I$(BUILD)/gen -Icommon -Idaemon -Iclient
ifneq ($(SANITIZER),)
override CFLAGS += -fsanitize=$(SANITIZER) -fno-sanitize-recover=all -fno-omit-frame-pointer
override LDFLAGS += -fsanitize=$(SANITIZER)
endif
LDLIBS_D = $(PKG_LIBS) -pthread

GEN_C := $(BUILD)/gen/hicache.pb-c.c
GEN_H := $(BUILD)/gen/hicache.pb-c.h

COMMON_SRC := $(wildcard common/*.c)
ENGINE_SRC := $(filter-out daemon/main.c,$(wildcard daemon/*.c))
CLIENT_SRC := client/hicache.c
UNIT_SRC := $(wildcard tests/unit/test_*.c)
INTEG_SRC := $(wildcard tests/integration/test_*.c)
SHELL_TESTS := $(wildcard tests/juicefs/test_*.sh)
# Under a sanitizer the suites run once on the local directory; the full rerun
# of every suite on JuiceFS (filesystem semantics, not memory errors), the
# Debian package (it packages the plain build) and the units under a real
# systemd are left to the plain build.
ifneq ($(SANITIZER),)
SHELL_TESTS := $(filter-out tests/juicefs/test_suites_on_juicefs.sh tests/juicefs/test_deb.sh \
	tests/juicefs/test_systemd.sh,$(SHELL_TESTS))
endif
# ThreadSanitizer checks the daemon's threads: the unit and integration suites
# (a daemon over a real socket, several client processes). The shell and
# Python suites drive the same code over FUSE or from Python, with timeouts
# that a 5-15x slower daemon would miss; the other builds run them.
PY_TESTS := tests/python
ifeq ($(SANITIZER),thread)
SHELL_TESTS :=
PY_TESTS :=
endif
HARNESS_SRC := $(wildcard tests/integration/harness*.c)

FORMAT_SRC = $(wildcard common/*.[ch] daemon/*.[ch] client/*.[ch] tools/*.[ch] tests/*/*.[ch])

# libFuzzer targets (make fuzz): clang, ASan + UBSan, in build/fuzz.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 30
ifeq ($(FUZZ),1)
override CFLAGS += -fsanitize=fuzzer-no-link
endif

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

COMMON_OBJ := $(call obj,$(COMMON_SRC)) $(BUILD)/obj/gen/hicache.pb-c.o
# common/prom.c (Prometheus text, over jansson) serves the daemon and
# hicachectl, not the client library
PROM_OBJ := $(call obj,common/prom.c)
LIB_COMMON_OBJ := $(filter-out $(PROM_OBJ),$(COMMON_OBJ))
ENGINE_OBJ := $(call obj,$(ENGINE_SRC))
CLIENT_OBJ := $(call obj,$(CLIENT_SRC))
HARNESS_OBJ := $(call obj,$(HARNESS_SRC))

DAEMON := $(BUILD)/hicached
CTL := $(BUILD)/hicachectl
LOAD := $(BUILD)/hicache-load
FLEETSIM := $(BUILD)/fleet-sim
FILTERSIM := $(BUILD)/fleet-filter-sim
LIBA := $(BUILD)/libhicache.a
LIBSO := $(BUILD)/libhicache.so.$(VERSION)
PC := $(BUILD)/hicache.pc
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
INTEG_BIN := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(INTEG_SRC))

.PHONY: all deps run serve test test-c test-python bench install wheel deb clean format check-format \
	fuzz fuzz-bins soak replay
.DEFAULT_GOAL := all

all: $(DAEMON) $(CTL) $(LOAD) $(FLEETSIM) $(FILTERSIM) $(LIBA) $(LIBSO) $(PC)

deps:
	$(Q)bash scripts/install-deps.sh

$(GEN_C) $(GEN_H): proto/hicache.proto
	@mkdir -p $(BUILD)/gen
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

$(BUILD)/obj/gen/hicache.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(BUILD)/libhcd.a: $(ENGINE_OBJ) $(COMMON_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(DAEMON): $(BUILD)/obj/daemon/main.o $(BUILD)/libhcd.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_D)

$(LIBA): $(CLIENT_OBJ) $(LIB_COMMON_OBJ)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIBSO): $(CLIENT_OBJ) $(LIB_COMMON_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,libhicache.so.$(SOVERSION) -o $@ $^ \
		$(shell $(PKG_CONFIG) --libs libprotobuf-c) -pthread
	$(Q)ln -sf libhicache.so.$(VERSION) $(BUILD)/libhicache.so.$(SOVERSION)
	$(Q)ln -sf libhicache.so.$(SOVERSION) $(BUILD)/libhicache.so

$(PC): client/hicache.pc.in Makefile
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(CTL): $(BUILD)/obj/client/hicachectl.o $(PROM_OBJ) $(LIBA)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libprotobuf-c jansson) -pthread

$(FLEETSIM): $(BUILD)/obj/tools/fleet-sim.o $(BUILD)/libhcd.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_D)

$(FILTERSIM): $(BUILD)/obj/tools/fleet-filter-sim.o $(BUILD)/libhcd.a
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_D)

$(LOAD): $(BUILD)/obj/tools/hicache-load.o $(LIBA)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(shell $(PKG_CONFIG) --libs libprotobuf-c) -pthread

# Unit suites: one binary per module, linked against the engine.
$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(BUILD)/libhcd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS_D)

# hc_server_run in a child process of the suite, with namespace
# interning made to fail: hc_store_ns wrapped by the suite, and libhicache.
$(BUILD)/tests/test_server: LDFLAGS += -Wl,--wrap=hc_store_ns
$(BUILD)/tests/test_server: $(LIBA)

# Integration suites: a real daemon, real sockets, through libhicache.
$(INTEG_BIN): $(BUILD)/tests/%: $(BUILD)/obj/tests/integration/%.o $(HARNESS_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS_D)

# test_keys_publish reads the keys file the daemon wrote: the engine's hash
# and keys-file reader.
$(BUILD)/tests/test_keys_publish: $(BUILD)/libhcd.a

# Fuzz targets: the engine built for libFuzzer (make fuzz sets FUZZ=1).
$(BUILD)/fuzz/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(BUILD)/libhcd.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ $(LDLIBS_D)

fuzz-bins: $(FUZZ_BIN)

# `make fuzz [FUZZ_SECONDS=30]`: installs clang and libFuzzer (Debian), builds
# every target under tests/fuzz with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs each for FUZZ_SECONDS from its seed
# corpus (tests/fuzz/corpus/<target>); a crash, leak or sanitizer report
# fails it and leaves the input in build/fuzz/.
fuzz: deps
	$(Q)bash scripts/install-deps.sh --fuzz
	$(Q)$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang SANITIZER=address,undefined FUZZ=1 \
		fuzz-bins
	$(Q)bash scripts/run-fuzz.sh build/fuzz $(FUZZ_SECONDS)

# `make replay [TRACE=FILE]`: tools/trace_replay.py, a KV-cache reuse trace
# against hicached and exact LRU and FIFO caches of the same capacity
# (default trace: ../shared/traces/synthetic_trace.jsonl).
replay: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash scripts/install-python-deps.sh >/dev/null
	$(Q)HICACHE_LIB=$(CURDIR)/$(BUILD)/libhicache.so .venv/bin/python tools/trace_replay.py \
		--build $(BUILD) $(if $(TRACE),--trace $(TRACE))

# `make soak [SOAK_CYCLES=150]`: test_crash with its SIGKILL loop run for
# SOAK_CYCLES cycles (make test runs 8).
SOAK_CYCLES ?= 150
soak: deps
	$(Q)$(MAKE) --no-print-directory all $(BUILD)/tests/test_crash
	$(Q)HICACHE_CRASH_CYCLES=$(SOAK_CYCLES) HICACHED_BIN=$(DAEMON) $(BUILD)/tests/test_crash

# `make run`: the daemon on a local directory under the checkout, a demo load
# of several client processes, the stats, a clean stop.
run: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)bash scripts/demo.sh $(BUILD)

# `make serve`: the daemon in the foreground on the same default until Ctrl-C.
serve: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)mkdir -p var/data var/run
	$(Q)exec $(DAEMON) --mount-point var/data --socket var/run/hicached.sock --foreground

# The Python tests load libhicache into the interpreter: a sanitizer build of
# it cannot be loaded there, so they use the plain library with this build's
# daemon.
PY_LIB_BUILD := $(if $(SANITIZER),build/default,$(BUILD))

test: deps
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BIN) $(INTEG_BIN)
	$(Q)$(if $(SANITIZER),$(MAKE) --no-print-directory SANITIZER= BUILD=build/default \
		build/default/libhicache.so.$(VERSION),true)
	$(Q)bash scripts/install-python-deps.sh >/dev/null
	$(Q)HICACHE_PY_LIB=$(PY_LIB_BUILD)/libhicache.so bash scripts/run-tests.sh $(BUILD) \
		$(UNIT_BIN) $(INTEG_BIN) $(SHELL_TESTS) $(PY_TESTS)

# `make install [PREFIX=/usr/local] [DESTDIR=...]`: binaries, library (static,
# shared with its symlinks), header, pkg-config file, systemd units (ExecStart
# and the config path rewritten to BINDIR and SYSCONFDIR), a default config
# (an existing one is kept), the example mount unit as documentation, and the
# Python package when pip is there.
# `make bench [QUICK=1] [EMULATE=1]`: hicached vs SGLang's HiCacheFile vs fio,
# memcpy and a bare socket round trip, on a local directory and on JuiceFS
# (root needed); EMULATE=1 adds JuiceFS with its metadata engine and object
# store behind emulated network round trips (scripts/bench/emulate.sh).
# Table and plots in var/bench/results/; see docs/BENCHMARKS.md.
bench: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)BENCH_NO_BUILD=1 bash scripts/bench/run.sh --build $(BUILD) $(if $(filter-out 0,$(QUICK)),--quick) \
		$(if $(filter-out 0,$(EMULATE)),--emulate)

install: all
	install -D -m 0755 $(DAEMON) $(DESTDIR)$(BINDIR)/hicached
	install -D -m 0755 $(CTL) $(DESTDIR)$(BINDIR)/hicachectl
	install -D -m 0644 $(LIBA) $(DESTDIR)$(LIBDIR)/libhicache.a
	install -D -m 0755 $(LIBSO) $(DESTDIR)$(LIBDIR)/libhicache.so.$(VERSION)
	ln -sf libhicache.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libhicache.so.$(SOVERSION)
	ln -sf libhicache.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libhicache.so
	install -D -m 0644 client/hicache.h $(DESTDIR)$(INCLUDEDIR)/hicache.h
	install -D -m 0644 common/hicache_defs.h $(DESTDIR)$(INCLUDEDIR)/hicache_defs.h
	@mkdir -p $(DESTDIR)$(PKGCONFIGDIR)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' \
		client/hicache.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/hicache.pc
	@mkdir -p $(DESTDIR)$(SYSTEMDUNITDIR)
	sed -e 's|^ExecStart=[^ ]*/hicached|ExecStart=$(BINDIR)/hicached|' \
		-e 's|/etc/hicached/config.json|$(SYSCONFDIR)/hicached/config.json|g' \
		systemd/hicached.service > $(DESTDIR)$(SYSTEMDUNITDIR)/hicached.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/hicached.service
	install -m 0644 systemd/hicached.socket $(DESTDIR)$(SYSTEMDUNITDIR)/hicached.socket
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/hicached/config.json ]; then \
		echo "keeping the existing $(DESTDIR)$(SYSCONFDIR)/hicached/config.json"; \
	else \
		echo "install -D -m 0644 systemd/config.json $(DESTDIR)$(SYSCONFDIR)/hicached/config.json"; \
		install -D -m 0644 systemd/config.json $(DESTDIR)$(SYSCONFDIR)/hicached/config.json; \
	fi
	install -D -m 0644 systemd/mnt-jfs.mount $(DESTDIR)$(DOCDIR)/mnt-jfs.mount
	@if [ "$(INSTALL_PYTHON)" = 0 ]; then \
		echo "INSTALL_PYTHON=0: Python package not installed"; \
	elif [ ! -d client/python ]; then \
		echo "no client/python: Python package not installed"; \
	elif ! $(PYTHON) -m pip --version >/dev/null 2>&1; then \
		echo "NOTE: no pip for $(PYTHON): the Python package (client/python) was NOT installed"; \
	else \
		tmp=$$(mktemp -d) && cp -r client/python/. "$$tmp/" && \
		rm -rf "$$tmp/build" "$$tmp"/*.egg-info && \
		echo "$(PYTHON) -m pip install --no-deps --prefix=$(PREFIX) $(if $(DESTDIR),--root=$(DESTDIR)) client/python"; \
		iso=; $(PYTHON) -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 61)' \
			2>/dev/null && iso=--no-build-isolation; \
		PIP_ROOT_USER_ACTION=ignore $(PYTHON) -m pip install -q --disable-pip-version-check \
			--no-deps --no-warn-script-location $$iso --prefix=$(PREFIX) \
			$(if $(DESTDIR),--root=$(DESTDIR)) "$$tmp"; rc=$$?; rm -rf "$$tmp"; exit $$rc; \
	fi

# `make wheel`: the Python package as a wheel in build/wheel/, with libhicache
# inside it (client/python/setup.py builds it with this Makefile), so
# `pip install build/wheel/hicache-*.whl` in any venv is enough.
wheel: deps
	$(Q)rm -rf build/wheel && mkdir -p build/wheel
	$(Q)$(PYTHON) -m pip wheel -q --no-deps --disable-pip-version-check -w build/wheel client/python
	$(Q)ls build/wheel/*.whl

# `make deb`: build/deb/hicached_<version>_<arch>.deb (scripts/make-deb.sh):
# daemon, CLI, library with header and pkg-config file, units (socket group
# hicached), /etc/hicached/config.json as a conffile, the hicached user and
# group made by postinst.
deb: all
	$(Q)bash scripts/make-deb.sh $(BUILD)

format:
	$(Q)clang-format -i $(FORMAT_SRC)

check-format:
	$(Q)clang-format --dry-run -Werror $(FORMAT_SRC)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
