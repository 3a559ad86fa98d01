# ngx_http_events_module: build, run and test against Debian's nginx.
#
#   make            build build/ngx_http_events_module.so
#   make run        install what running needs, build, run the quickstart on
#                   127.0.0.1:$(PORT) (default 8080) in the foreground
#   make test       install what testing needs, build, run the whole suite
#   make install    the module and its load snippet under DESTDIR/PREFIX
#   make deb        build/deb/libnginx-mod-http-events_VERSION_ARCH.deb
#   make compat NGINX_SRC=DIR  build against another nginx source tree,
#                   as a dynamic and as a static module
#   make test-asan  the suite against an AddressSanitizer build
#   make bench      the ingest benchmark (t/bench), side by side with Nchan
#   make bench-ingest-profile  instructions per POST and per batched event
#                   (callgrind, load-independent), and where they go;
#                   PROFILE_CLUSTER=1: a cluster node's, on a Redis of its own
#   make bench-fanout  the SSE fan-out benchmark, side by side with Nchan
#   make bench-ws   WebSocket against SSE streams, ours and Nchan's (< 60 s)
#   make bench-delivery  instructions and syscalls per SSE delivery (callgrind)
#   make bench-webhooks  webhook deliveries/s and latency, plain and TLS
#   make bench-journal what each events_journal fsync mode costs at ingest
#   make bench-history reads from 1 000 000 events on disk behind a small ring
#   make bench-cluster three cluster nodes on one Redis beside Nchan-Redis
#   make bench-client  events.js beside EventSource (npm, Chromium's own)
#   make fuzz       a longer fuzzing run of the parsers

SHELL       := /bin/bash

NGINX_SRC   ?= /usr/share/nginx/src
NGINX_BIN   ?= /usr/sbin/nginx
BUILD       := $(CURDIR)/build
MODULE      := $(BUILD)/ngx_http_events_module.so
ASAN_MODULE := $(BUILD)/asan/ngx_http_events_module.so
SOURCES     := config config.make $(wildcard src/*.[ch] src/*/*.[ch]) \
               $(wildcard clients/console/*) clients/js/events.js
LIBASAN     := $(firstword $(wildcard /usr/lib/*-linux-gnu/libasan.so.8))
PROVE_JOBS  ?= 2
POLL_NGINX  := $(BUILD)/nginx-poll/objs/nginx
POLL_ENV     = $(if $(wildcard $(POLL_NGINX)),T_NGINX_POLL=$(POLL_NGINX))

VERSION     := $(shell sed -n 's/^\#define NGX_HTTP_EVENTS_VERSION *"\(.*\)"/\1/p' \
                 src/ngx_http_events_version.h)
PORT        ?= 8080
PREFIX      ?= /usr
DESTDIR     ?=

# what building and running need; testing adds the rest
RUN_DEBS  := nginx nginx-dev libjansson-dev libyajl-dev libssl-dev libpcre2-dev \
             zlib1g-dev liblmdb-dev libhiredis-dev libwslay-dev gcc make
TEST_DEBS := $(RUN_DEBS) perl libasan8 clang libclang-rt-14-dev wrk openssl \
             libnginx-mod-nchan redis-server debhelper dpkg-dev fakeroot \
             chromium prometheus libnginx-mod-http-js
DEBS      ?= $(TEST_DEBS)

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps deps-run run test test-asan bench bench-fanout bench-ws \
        bench-ws-deflate \
        bench-ingest-profile bench-latency bench-idle bench-delivery \
        bench-webhooks bench-journal bench-history bench-cluster bench-client \
        fuzz \
        fuzz-short clean \
        install deb nginx-poll check-openssl compat compat-src

all: $(MODULE)

# Install only what is missing; apt-get update only when something is.
deps:
	@missing=""; for p in $(DEBS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	        | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	        --no-install-recommends $$missing; \
	fi
	@# Debian starts the packaged nginx; it is not ours and holds port 80.
	@if [ -x /usr/sbin/invoke-rc.d ] && pgrep -f 'nginx: master' \
	    | xargs -r ps -o args= -p | grep -q '/etc/nginx'; then \
	    $(SUDO) /usr/sbin/nginx -s quit 2>/dev/null || true; fi

# nginx's configure writes objs/ next to the sources, so build in a copy.
$(BUILD)/nginx/objs/Makefile: config config.make | $(BUILD)
	rm -rf $(BUILD)/nginx
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	        > $(BUILD)/configure.log 2>&1 \
	    || (tail -30 $(BUILD)/configure.log; exit 1)

$(MODULE): $(SOURCES) $(BUILD)/nginx/objs/Makefile
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules
	@# a new inode: an nginx running the old copy keeps its mapping
	cp $(BUILD)/nginx/objs/ngx_http_events_module.so $@.tmp && mv $@.tmp $@

$(BUILD)/asan/nginx/objs/Makefile: config config.make | $(BUILD)
	rm -rf $(BUILD)/asan && mkdir -p $(BUILD)/asan
	cp -r $(NGINX_SRC) $(BUILD)/asan/nginx
	cd $(BUILD)/asan/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR) \
	        --with-cc-opt='-fsanitize=address -fno-omit-frame-pointer -g -O1' \
	        --with-ld-opt=-fsanitize=address \
	        > $(BUILD)/asan/configure.log 2>&1 \
	    || (tail -30 $(BUILD)/asan/configure.log; exit 1)

$(ASAN_MODULE): $(SOURCES) $(BUILD)/asan/nginx/objs/Makefile
	$(MAKE) -C $(BUILD)/asan/nginx -f objs/Makefile modules
	cp $(BUILD)/asan/nginx/objs/ngx_http_events_module.so $@.tmp && mv $@.tmp $@

$(BUILD):
	mkdir -p $@

deps-run:
	@$(MAKE) --no-print-directory deps DEBS="$(RUN_DEBS)"

run: deps-run $(MODULE)
	@case "$(PORT)" in ''|*[!0-9]*) echo "PORT must be a number"; exit 2;; esac
	mkdir -p $(BUILD)/run/logs
	sed -e 's#^load_module .*ngx_http_events_module.so;#load_module $(MODULE);#' \
	    -e 's#listen 127.0.0.1:8080;#listen 127.0.0.1:$(PORT);#' \
	    conf-examples/quickstart.conf > $(BUILD)/run/nginx.conf
	@echo "nginx on http://127.0.0.1:$(PORT) (Ctrl-C to stop)"
	exec $(NGINX_BIN) -p $(BUILD)/run/ -c nginx.conf -e logs/error.log \
	    -g 'daemon off;'

# real clients the tests drive (eventsource), from the npm registry
NODE_DEPS := t/node/node_modules/.installed

$(NODE_DEPS): t/node/package.json t/node/package-lock.json
	@command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	        --no-install-recommends nodejs npm; }
	cd t/node && npm ci --no-audit --no-fund --silent
	touch $@

test: deps $(MODULE) $(NODE_DEPS) fuzz-build check-openssl
	$(POLL_ENV) T_MODULE=$(MODULE) T_FUZZ_REQUIRED=1 \
	    prove -j$(PROVE_JOBS) -r t/

test-asan: deps $(ASAN_MODULE) $(NODE_DEPS)
	$(POLL_ENV) T_MODULE=$(ASAN_MODULE) T_ASAN=$(LIBASAN) \
	    prove -j$(PROVE_JOBS) -r t/

# Debian's nginx has neither poll nor select; t/59 runs its webhooks
# under them with an nginx built the Debian way plus those two, from
# the full nginx 1.22.1 sources (nginx-dev has only the headers):
#   make nginx-poll NGINX_FULL_SRC=/path/to/nginx-1.22.1
nginx-poll: $(POLL_NGINX)

$(POLL_NGINX):
	@test -f "$(NGINX_FULL_SRC)/src/core/nginx.c" || { echo "set" \
	    "NGINX_FULL_SRC to the nginx 1.22.1 sources"; exit 1; }
	rm -rf $(BUILD)/nginx-poll
	cp -r $(NGINX_FULL_SRC) $(BUILD)/nginx-poll
	cp $(NGINX_SRC)/conf_flags $(BUILD)/nginx-poll/
	cd $(BUILD)/nginx-poll && . ./conf_flags && \
	    auto/configure "$${NGX_CONF_FLAGS[@]}" --with-poll_module \
	        --with-select_module > $(BUILD)/nginx-poll.log 2>&1 && \
	    $(MAKE) -f objs/Makefile binary >> $(BUILD)/nginx-poll.log 2>&1

bench: deps $(MODULE)
	t/bench/ingest.sh

# instructions per POST and per batched event, counted with callgrind in
# one nginx process: comparable across runs on a busy box (~1 minute)
bench-ingest-profile: $(MODULE)
	@command -v valgrind >/dev/null || $(MAKE) deps DEBS=valgrind
	T_MODULE=$(MODULE) t/bench/ingest-profile.sh

# SSE fan-out beside Nchan: 100 to 10 000 streams, about 10 minutes
bench-fanout: deps $(MODULE)
	t/bench/fanout.sh

# WebSocket against SSE, ours and Nchan's, 200 streams: under a minute
bench-ws: deps $(MODULE)
	T_MODULE=$(MODULE) t/bench/ws-fanout.sh

# permessage-deflate: bytes on the wire, workers' CPU, 200 streams: seconds
bench-ws-deflate: deps $(MODULE) $(NODE_DEPS)
	BENCH_SUBSCRIBERS=200 T_MODULE=$(MODULE) perl t/bench/ws-deflate.pl

# publish -> receive p99 beside Nchan, servers alternating over 5 rounds:
# the median ratio and its spread (the tail is noisy; one run says little)
bench-latency: deps $(MODULE)
	BENCH_ROUNDS=5 BENCH_SUBSCRIBERS="1000 5000" BENCH_RATES="20 100" \
	    BENCH_FLOOR=0 t/bench/fanout.sh

# 100 000 idle streams: memory per stream beside nginx's floor, and one
# event to all of them (BENCH_STREAMS=...)
bench-idle: deps $(MODULE)
	T_MODULE=$(MODULE) t/bench/idle.sh

# what one SSE delivery costs, load-independently: instructions under
# callgrind and syscalls under strace, one process, 2 000 streams
bench-delivery: deps $(MODULE)
	T_MODULE=$(MODULE) t/bench/delivery.sh

# webhook deliveries/s and latency to a loopback receiver, 1-100 endpoints
bench-webhooks: deps $(MODULE)
	T_MODULE=$(MODULE) perl t/bench/webhooks.pl
	T_MODULE=$(MODULE) BENCH_PACED=5 BENCH_DELIVERIES=1000 \
	    BENCH_ENDPOINTS="1 10" perl t/bench/webhooks.pl
	T_MODULE=$(MODULE) BENCH_TLS=1 BENCH_DELIVERIES=5000 \
	    BENCH_ENDPOINTS="1 100" perl t/bench/webhooks.pl

# ingest without a journal and with each fsync mode, as ratios
bench-journal: deps $(MODULE)
	t/bench/journal.sh

# History on disk: 1 000 000 events on disk behind an 8m ring; page, rare
# type, entity and GET-by-id latencies, SSE catch-up (BENCH_EVENTS=...)
bench-history: deps $(MODULE)
	T_MODULE=$(MODULE) perl t/bench/history.pl

bench-client: deps $(MODULE) $(NODE_DEPS)
	T_MODULE=$(MODULE) perl t/bench/client.pl
# ingest through three cluster nodes and cross-node latency, beside one
# node without cluster and three Nchan nodes on the same Redis
bench-cluster: deps $(MODULE)
	T_MODULE=$(MODULE) t/bench/cluster.sh

# libFuzzer targets for the envelope validator and the query/cursor parsers
# (t/fuzz/).  The nginx core functions the sources call come from
# t/fuzz/ngx_stubs.c; the configured headers from $(BUILD)/nginx/objs.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 300
FUZZ_SHORT   ?= 20
FUZZ_TARGETS := envelope query jwt parse
FUZZ_SRC     := src/core/ngx_http_events_json.c \
                src/core/ngx_http_events_parse.c \
                src/core/ngx_http_events_cursor.c \
                src/core/ngx_http_events_match.c \
                src/core/ngx_http_events_query.c \
                src/core/ngx_http_events_jwt.c \
                src/core/ngx_http_events_time.c \
                src/core/ngx_http_events_id.c \
                src/core/ngx_http_events_error.c \
                src/core/ngx_http_events_cloudevents.c
FUZZ_CFLAGS  := -g -O1 -fno-omit-frame-pointer \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I src -I src/core -I $(NGINX_SRC)/src/core -I $(NGINX_SRC)/src/event \
    -I $(NGINX_SRC)/src/event/modules -I $(NGINX_SRC)/src/os/unix \
    -I $(NGINX_SRC)/src/http -I $(NGINX_SRC)/src/http/modules \
    -I $(BUILD)/nginx/objs
FUZZ_RUN     := -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
FUZZ_ENV     := ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

FUZZ_CONF    := $(BUILD)/nginx/objs/ngx_auto_config.h

.PHONY: fuzz-build
fuzz-build: $(foreach t,$(FUZZ_TARGETS),$(BUILD)/fuzz/fuzz_$(t))

# Only the configured headers are needed: configure once if they are
# missing (Debian's nginx-dev configure writes objs/, but no top Makefile).
$(FUZZ_CONF):
	$(MAKE) $(BUILD)/nginx/objs/Makefile

$(BUILD)/fuzz/fuzz_%: t/fuzz/fuzz_%.c t/fuzz/ngx_stubs.c t/fuzz/fuzz_utf8.h \
        $(SOURCES) | $(FUZZ_CONF)
	mkdir -p $(BUILD)/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< t/fuzz/ngx_stubs.c $(FUZZ_SRC) \
	    -ljansson -lyajl -lcrypto

# Each target from a fresh copy of the seeds, for a bounded time; a crash,
# a leak or a failed invariant fails the target (the input is left as
# $(BUILD)/fuzz/crash-*, the whole output in $(BUILD)/fuzz/short-*.log).
fuzz-short: fuzz-build
	@failed=""; for t in $(FUZZ_TARGETS); do \
	    rm -rf $(BUILD)/fuzz/short-$$t; \
	    cp -r t/fuzz/seeds/$$t $(BUILD)/fuzz/short-$$t; \
	    echo "fuzz_$$t: $(FUZZ_SHORT) s"; \
	    if $(FUZZ_ENV) $(BUILD)/fuzz/fuzz_$$t $(FUZZ_RUN) \
	        -max_total_time=$(FUZZ_SHORT) \
	        -artifact_prefix=$(BUILD)/fuzz/ \
	        $(BUILD)/fuzz/short-$$t > $(BUILD)/fuzz/short-$$t.log 2>&1; \
	    then \
	        grep -a '^stat::number_of_executed_units' \
	            $(BUILD)/fuzz/short-$$t.log || true; \
	    else \
	        failed="$$failed fuzz_$$t"; \
	        grep -a -m1 -A24 -E 'ERROR|invariant failed|runtime error' \
	            $(BUILD)/fuzz/short-$$t.log \
	            | grep -av '^    #[0-9]* 0x.* in fuzzer::'; \
	        grep -a -E 'Test unit written|^Base64:' \
	            $(BUILD)/fuzz/short-$$t.log; \
	    fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-short failed:$$failed"; exit 1; fi

# Longer runs, FUZZ_SECONDS each, with a corpus kept in $(BUILD)/fuzz/.
fuzz: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(BUILD)/fuzz/corpus-$$t; \
	    echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	    $(FUZZ_ENV) $(BUILD)/fuzz/fuzz_$$t $(FUZZ_RUN) \
	        -max_total_time=$(FUZZ_SECONDS) \
	        -artifact_prefix=$(BUILD)/fuzz/ \
	        $(BUILD)/fuzz/corpus-$$t t/fuzz/seeds/$$t; \
	done

# The module where Debian's nginx looks for it, and the snippet that loads
# it in modules-available (enable it with a link in modules-enabled).
MODDIR  := $(DESTDIR)$(PREFIX)/lib/nginx/modules
SNIPDIR := $(DESTDIR)$(PREFIX)/share/nginx/modules-available

install: $(MODULE)
	install -d $(MODDIR) $(SNIPDIR)
	install -m 644 $(MODULE) $(MODDIR)/ngx_http_events_module.so
	echo 'load_module modules/ngx_http_events_module.so;' \
	    > $(SNIPDIR)/mod-http-events.conf
	@echo "installed; to load it with Debian's nginx:"
	@echo "  ln -s $(PREFIX)/share/nginx/modules-available/mod-http-events.conf" \
	    "/etc/nginx/modules-enabled/50-mod-http-events.conf"

# A binary package built by Debian's tools from a copy of the sources:
# the nginx_mod debhelper build system configures against nginx-dev,
# dh_nginx adds the nginx-abi dependency and the modules-available
# snippet, enabled on install.
DEB_DIR := $(BUILD)/deb
DEB_SRC := $(DEB_DIR)/libnginx-mod-http-events-$(VERSION)

deb: deps
	rm -rf $(DEB_DIR) && mkdir -p $(DEB_SRC)
	git ls-files -z config config.make src clients/console clients/js/events.js \
	    LICENSE | xargs -0 cp --parents -t $(DEB_SRC)
	cp -r packaging/debian $(DEB_SRC)/debian
	printf '%s\n\n  * %s\n\n -- %s  %s\n' \
	    "libnginx-mod-http-events ($(VERSION)) unstable; urgency=medium" \
	    "Release $(VERSION); see CHANGES." \
	    "ngx_http_events_module authors <events@localhost>" \
	    "$$(date -R)" > $(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc \
	    > $(DEB_DIR)/build.log 2>&1 || (tail -40 $(DEB_DIR)/build.log; exit 1)
	@ls $(DEB_DIR)/*.deb

# No OpenSSL API deprecated in 3.0.  nginx's own SSL header silences those
# warnings for every file that includes it, so each source is compiled
# again with OpenSSL's headers included first, the warnings an error.
OPENSSL_PRE := $(foreach h,ssl hmac evp rand core_names,-include openssl/$(h).h)
NGX_INCS    := $(foreach d,src/core src/event src/event/modules src/os/unix \
                 objs src/http src/http/modules src/http/v2,-I $(BUILD)/nginx/$(d)) \
               $(foreach d,$(sort $(dir $(wildcard src/*/*.h))) src,-I $(d))

check-openssl: $(BUILD)/nginx/objs/Makefile
	@# the console's files, generated into objs/ (config.make)
	@$(MAKE) --no-print-directory -s -C $(BUILD)/nginx -f objs/Makefile \
	    objs/ngx_http_events_console_files.h
	@for f in $(filter %.c,$(SOURCES)); do \
	    $(CC) -fsyntax-only $(OPENSSL_PRE) $(NGX_INCS) \
	        -Werror=deprecated-declarations $$f || exit 1; \
	done; echo "check-openssl: no deprecated OpenSSL API in src/"

# Other nginx versions.  NGINX_SRC is a source tree (a release tarball, or
# `make compat-src NGINX_GIT=REPO TAG=release-1.30.4`, which exports a tag
# of nginx's own repository).  Both builds go to build/compat/VERSION/:
# dynamic/ (--with-compat, the .so) and static/ (--add-module, an nginx
# binary with the module in it, which the suite can run:
# T_NGINX=build/compat/VERSION/static/objs/nginx T_MODULE=static).
COMPAT_FLAGS := --with-compat --with-threads --with-debug --with-pcre-jit \
    --with-http_ssl_module --with-http_auth_request_module \
    --with-http_realip_module --with-http_v2_module \
    --with-http_stub_status_module --with-http_slice_module \
    --with-http_dav_module --with-http_sub_module

compat:
	@test -f $(NGINX_SRC)/src/core/nginx.h || \
	    { echo "NGINX_SRC=$(NGINX_SRC) is not an nginx source tree"; exit 2; }
	@v=$$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
	        $(NGINX_SRC)/src/core/nginx.h); \
	conf=./configure; [ -x $(NGINX_SRC)/configure ] || conf=auto/configure; \
	for kind in dynamic static; do \
	    d=$(BUILD)/compat/$$v/$$kind; rm -rf $$d; mkdir -p $$d; \
	    cp -r $(NGINX_SRC)/. $$d/; \
	    if [ $$kind = dynamic ]; then add=--add-dynamic-module=$(CURDIR); \
	        target=modules; else add=--add-module=$(CURDIR); target=; fi; \
	    echo "nginx $$v, $$kind: configure and build"; \
	    (cd $$d && $$conf --prefix=$$d/prefix $(COMPAT_FLAGS) \
	        $$add \
	        && $(MAKE) -f objs/Makefile $$target) > $$d/build.log 2>&1 \
	        || { tail -30 $$d/build.log; exit 1; }; \
	    grep -E 'warning:' $$d/build.log && exit 1; \
	done; \
	echo "nginx $$v: dynamic and static builds in $(BUILD)/compat/$$v"

compat-src:
	@test -n "$(NGINX_GIT)" -a -n "$(TAG)" || \
	    { echo "usage: make compat-src NGINX_GIT=REPO TAG=release-X.Y.Z"; \
	      exit 2; }
	rm -rf $(BUILD)/compat/src-$(TAG) && mkdir -p $(BUILD)/compat/src-$(TAG)
	git -C $(NGINX_GIT) archive $(TAG) | tar -x -C $(BUILD)/compat/src-$(TAG)
	@echo "make compat NGINX_SRC=$(BUILD)/compat/src-$(TAG)"

clean:
	rm -rf $(BUILD)
