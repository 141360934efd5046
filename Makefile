# chaos: `make build` builds the images from chaos.yaml, `make test` runs every test tier.
# Both set up what they need first (Debian packages and a Python venv), idempotently.

PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
CONFIG  ?= chaos.yaml
PYTEST_ARGS ?=

# Debian packages, each for a reason:
APT_PACKAGES := \
	nftables iproute2 iputils-ping \
	charon-systemd strongswan-swanctl libstrongswan-standard-plugins \
	libstrongswan-extra-plugins libcharon-extra-plugins \
	mmdebstrap cpio zstd lz4 xz-utils \
	xorriso isolinux syslinux-common pxelinux grub-efi-amd64-bin grub-pc-bin grub-common \
	mtools dosfstools ipxe \
	qemu-system-x86 qemu-utils ovmf \
	tcpdump dnsmasq-base nginx-light curl \
	swtpm swtpm-tools tpm2-tools python3-tpm2-pytss libtss2-tcti-swtpm0 libtss2-dev pkg-config \
	libjs-chart.js chromium \
	shim-signed grub-efi-amd64-signed osslsigncode \
	openssh-server gdisk busybox-static
# nftables/iproute2: render checks and namespace tests; charon-systemd/swanctl: IKE tests and
# the image; mmdebstrap..xz-utils: the live root; xorriso..ipxe: ISO and PXE artifacts;
# qemu/ovmf: boot tests; tcpdump: wire checks; dnsmasq: PXE serving (DHCP, TFTP); nginx-light:
# serve's HTTP (kernel, initrd, node files with sendfile, hundreds of PCs at once); curl:
# fetches what serve offers (HTTP and TFTP) in the tests.
# swtpm: a software TPM per test client and QEMU guest; swtpm-tools: swtpm_setup (EK
# certificates for guests); tpm2-tools: tpm2_getcap shows persistent handles are untouched;
# python3-tpm2-pytss: the node's enrollment client runs on Debian's python3 with it, as in the
# image; libtss2-tcti-swtpm0: the TCTI for swtpm:host=,port=; libtss2-dev + pkg-config: pip
# builds tpm2-pytss for the builder's venv (make_credential in the enrollment service).
# libjs-chart.js: Chart.js 3.9 for serve's admin page, served from /usr/share/javascript (no
# CDN; Debian keeps it patched); chromium: the headless browser the admin page's test loads it in.
# shim-signed, grub-efi-amd64-signed: the Microsoft-signed shim and Debian-signed GRUB whose
# Authenticode digests the measured-boot reference pins (PCR 4); osslsigncode: the tests'
# independent oracle for those digests.
# openssh-server: `sshd -t` checks the always-on head's rendered sshd config (its service is
# not started by the tests); gdisk: sgdisk writes the GPT the state-disk guard must refuse.
# busybox-static: the Secure Boot PXE stage's userland (stage.img: udhcpc, wget, sha256sum).

.PHONY: help setup build render check test test-unit test-integration test-image test-smoke \
	test-wheel test-one golden lint format format-check bench clean

help: ## this list (each target's comment)
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "make %-18s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

$(VENV)/.apt-stamp: Makefile
	@mkdir -p $(VENV)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	@touch $@

$(VENV)/.pip-stamp: pyproject.toml $(VENV)/.apt-stamp
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

setup: $(VENV)/.apt-stamp $(VENV)/.pip-stamp ## install Debian packages and the Python venv (idempotent)

check: setup ## validate chaos.yaml (or CONFIG=FILE)
	$(VENV)/bin/chaos-build check -c $(CONFIG)

render: setup ## check, PKI and per-node overlays only (build/nodes)
	$(VENV)/bin/chaos-build build --render-only -c $(CONFIG)

build: setup ## check chaos.yaml, keep the PKI, render and build images into out/
	$(VENV)/bin/chaos-build build -c $(CONFIG)

test: setup ## every test tier (unit, integration, image, smoke), the linters, the wheel
	$(PY) tests/tiers.py $(PYTEST_ARGS)
	$(MAKE) test-wheel

test-unit: setup ## fast tests without root (the wheel test among them)
	$(PY) -m pytest -m "not integration and not image and not smoke" $(PYTEST_ARGS)

test-integration: setup ## root, network namespaces, nft and charon
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-image: setup ## build and boot the image in QEMU
	$(PY) -m pytest -m image $(PYTEST_ARGS)

test-smoke: setup ## whole QEMU labs: PXE through serve, ISO, scope migration
	$(PY) -m pytest -m smoke $(PYTEST_ARGS)

lint: setup ## ruff (check and format --check) and mypy
	$(VENV)/bin/ruff check builder tyd chaosnode tests bench
	$(VENV)/bin/ruff format --check builder tyd chaosnode tests bench
	$(VENV)/bin/mypy

test-wheel: setup ## the wheel in a fresh venv (deps from the index), run outside the checkout; builds from the warm cache
	$(PY) tests/installed.py --deps index --build

test-one: setup ## one test: make test-one T=tests/test_render.py::test_every_template_has_golden_output
	@test -n "$(T)" || { echo "usage: make test-one T=tests/FILE.py[::TEST]"; exit 2; }
	$(PY) -m pytest $(T) $(PYTEST_ARGS)

golden: setup ## rewrite the golden files after an intended template change (review the diff)
	CHAOS_UPDATE_GOLDEN=1 $(PY) -m pytest -q tests/test_render.py tests/test_hostconf.py tests/measured/test_iso_tree.py $(PYTEST_ARGS)

format: setup ## ruff format the tree (or the files given: make format F="builder/render.py ...")
	$(VENV)/bin/ruff format $(or $(F),builder tyd chaosnode tests bench)

format-check: setup ## the files ruff format would change (part of lint)
	$(VENV)/bin/ruff format --check builder tyd chaosnode tests bench

bench: setup ## render benchmark (others: bench/image.py, tyd_join.py, cluster.py, enroll.py, storm.py)
	$(PY) bench/render.py

clean: ## remove build/, out/ and the tool caches
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
