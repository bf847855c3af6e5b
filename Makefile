# nginx-cache-guard: build, test, demo.

NGX_SRC   ?= /usr/share/nginx/src
SHELL     := /bin/bash
BUILD     ?= build/nginx
MODULE    := $(BUILD)/objs/ngx_http_cache_guard_module.so
SRCS      := $(wildcard ngx_module/*.c ngx_module/*.h) config

DEB_BUILD := gcc make nginx nginx-dev libhiredis-dev libluajit2-5.1-dev \
             libmaxminddb-dev
DEB_TEST  := redis-server redis-sentinel redis-tools openssl \
             libtest-base-perl libmaxmind-db-writer-perl curl \
             libyaml-libyaml-perl valgrind chromium

export TEST_NGINX_MODULE ?= $(CURDIR)/$(MODULE)

.PHONY: all deps deps-test test unit demo demo-stop clean

all: $(MODULE)

# Install what is missing from Debian's archive (needs root).
deps:
	@sh .ci/deps.sh $(DEB_BUILD)

deps-test: deps
	@sh .ci/deps.sh $(DEB_TEST)

$(BUILD)/objs/Makefile: config ngx_module/ngx_http_cache_guard_dashboard.html
	rm -rf $(BUILD) && mkdir -p $(dir $(BUILD))
	cp -r $(NGX_SRC) $(BUILD)
	cd $(BUILD) && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" \
	        --with-cc-opt="-Wall -Werror -O2 -g" \
	        --add-dynamic-module=$(CURDIR) >configure.log 2>&1 \
	    || { cat configure.log; exit 1; }

$(MODULE): $(BUILD)/objs/Makefile $(SRCS)
	$(MAKE) -C $(BUILD) -f objs/Makefile modules

# The whole suite: redis-server on a test port (TEST_NGINX_REDIS_PORT,
# default 6390); each test file starts its own nginx and test origin.
test: deps-test $(MODULE)
	t/lib/redis-ctl start
	prove -r t/; rc=$$?; t/lib/redis-ctl stop; exit $$rc

# redis-server, the demo API and nginx on loopback; FOREGROUND=1 stays in
# the foreground until Ctrl-C.
demo: deps-test $(MODULE)
	@docs/demo/demo.sh $(if $(FOREGROUND),run,start)

demo-stop:
	@docs/demo/demo.sh stop

clean:
	rm -rf build t/servroot t/servroot2 t/servroot-redis t/servroot-tls \
	    t/servroot-recorder t/servroot-sentinel t/servroot-fake-redis
