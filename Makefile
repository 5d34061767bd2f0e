# Install lockserver: the library (with its SONAME links), the header, the pkg-config file, the PAM
# module and the CLI. `make install PREFIX=/usr DESTDIR=/tmp/stage` stages a package tree.
PREFIX      ?= /usr/local
DESTDIR     ?=
TRIPLET     ?= $(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR      ?= $(PREFIX)/lib/$(TRIPLET)
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SBINDIR     ?= $(PREFIX)/sbin
# Debian/Ubuntu keep PAM modules in /lib/<triplet>/security (RHEL: /lib64/security); elsewhere under LIBDIR.
PAMDIR      ?= $(if $(filter /usr,$(PREFIX)),/lib/$(TRIPLET)/security,$(LIBDIR)/security)
PROFILE     ?= release
CARGO       ?= cargo
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),target)
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
BUILD_DIR   := $(TARGET_DIR)/$(if $(filter release,$(PROFILE)),release,debug)

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build -p lockserver -p lockserver-cli $(if $(filter release,$(PROFILE)),--release,)

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SBINDIR)
	install -m 0644 $(BUILD_DIR)/liblockserver.so $(DESTDIR)$(LIBDIR)/liblockserver.so.$(VERSION)
	ln -sf liblockserver.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblockserver.so.0
	ln -sf liblockserver.so.0 $(DESTDIR)$(LIBDIR)/liblockserver.so
	install -m 0644 include/lockserver.h $(DESTDIR)$(INCLUDEDIR)/lockserver.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' packaging/lockserver.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/lockserver.pc
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/lockserver.pc
	install -m 0644 $(BUILD_DIR)/liblockserver.so $(DESTDIR)$(PAMDIR)/pam_lockserver.so
	install -m 0755 $(BUILD_DIR)/lockserver $(DESTDIR)$(SBINDIR)/lockserver
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/liblockserver.so.$(VERSION) $(DESTDIR)$(LIBDIR)/liblockserver.so.0 \
	      $(DESTDIR)$(LIBDIR)/liblockserver.so $(DESTDIR)$(INCLUDEDIR)/lockserver.h \
	      $(DESTDIR)$(PKGCONFIGDIR)/lockserver.pc $(DESTDIR)$(PAMDIR)/pam_lockserver.so $(DESTDIR)$(SBINDIR)/lockserver
