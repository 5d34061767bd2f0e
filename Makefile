# Install lockserver: the library (with its SONAME links), the header, the pkg-config file, the PAM
# module and the CLI. `make install PREFIX=/usr DESTDIR=/tmp/stage` stages a package tree.
PREFIX      ?= /usr/local
DESTDIR     ?=
TRIPLET     ?= $(shell gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR      ?= $(PREFIX)/lib/$(TRIPLET)
INCLUDEDIR  ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SBINDIR     ?= $(PREFIX)/sbin
MANDIR      ?= $(PREFIX)/share/man
DATADIR     ?= $(PREFIX)/share
# Debian/Ubuntu keep PAM modules in /lib/<triplet>/security (RHEL: /lib64/security); elsewhere under LIBDIR.
PAMDIR      ?= $(if $(filter /usr,$(PREFIX)),/lib/$(TRIPLET)/security,$(LIBDIR)/security)
PROFILE     ?= release
CARGO       ?= cargo
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),target)
VERSION     := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
BUILD_DIR   := $(TARGET_DIR)/$(if $(filter release,$(PROFILE)),release,debug)

ASSETS      := $(BUILD_DIR)/assets
MAN_SOURCES := $(wildcard docs/man/*.md)

.PHONY: all build assets install uninstall deb

all: build assets

build:
	$(CARGO) build -p lockserver-module -p lockserver-cli $(if $(filter release,$(PROFILE)),--release,)

# Man pages and shell completions: lockserver(8) and the completions from the CLI's definition
# (lockserver-assets), the other pages from their markdown in docs/man/ (go-md2man).
assets: build
	rm -rf $(ASSETS)
	$(BUILD_DIR)/lockserver-assets $(ASSETS)
	install -d $(ASSETS)/man5
	for src in $(MAN_SOURCES); do \
	    page=$$(basename $$src .md); section=$${page##*.}; \
	    install -d $(ASSETS)/man$$section; \
	    go-md2man -in $$src -out $(ASSETS)/man$$section/$$page || exit 1; \
	done

install: build assets
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(PAMDIR) $(DESTDIR)$(SBINDIR)
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 $(ASSETS)/man5/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(ASSETS)/man8/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -D -m 0644 $(ASSETS)/completions/lockserver.bash $(DESTDIR)$(DATADIR)/bash-completion/completions/lockserver
	install -D -m 0644 $(ASSETS)/completions/_lockserver $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_lockserver
	install -D -m 0644 $(ASSETS)/completions/lockserver.fish $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/lockserver.fish
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
	      $(DESTDIR)$(PKGCONFIGDIR)/lockserver.pc $(DESTDIR)$(PAMDIR)/pam_lockserver.so $(DESTDIR)$(SBINDIR)/lockserver \
	      $(DESTDIR)$(MANDIR)/man8/lockserver.8 $(DESTDIR)$(MANDIR)/man8/lockserver-*.8 \
	      $(DESTDIR)$(MANDIR)/man8/pam_lockserver.8 $(DESTDIR)$(MANDIR)/man5/lockserver.conf.5 \
	      $(DESTDIR)$(MANDIR)/man5/lockserver-dictionary.5 \
	      $(DESTDIR)$(DATADIR)/bash-completion/completions/lockserver \
	      $(DESTDIR)$(DATADIR)/zsh/vendor-completions/_lockserver \
	      $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/lockserver.fish

# The Debian packages (lockserver, liblockserver-dev) into target/debian/, with debhelper (debian/).
deb:
	debian/rules clean
	debian/rules binary
