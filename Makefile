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
	openssh-server gdisk
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
# openssh-server: `sshd -t` checks the always-on head's rendered sshd config (its service is
# not started by the tests); gdisk: sgdisk writes the GPT the state-disk guard must refuse.

.PHONY: help setup build render check test test-unit test-integration test-image test-smoke lint bench clean

help:
	@echo "make setup             install Debian packages and the Python venv (idempotent)"
	@echo "make build             check $(CONFIG), keep the PKI, render and build images into out/"
	@echo "make render            check, PKI and per-node overlays only (build/nodes)"
	@echo "make test              every test tier (unit, integration, image, smoke) and the linters"
	@echo "make test-unit         fast tests without root"
	@echo "make test-integration  root, network namespaces, nft and charon"
	@echo "make test-image        build and boot the image in QEMU"
	@echo "make test-smoke        whole QEMU labs: PXE through serve, ISO, scope migration"
	@echo "make lint              ruff and mypy"
	@echo "make bench             render benchmark (others: bench/image.py, tyd_join.py, cluster.py, enroll.py, storm.py)"

$(VENV)/.apt-stamp:
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

setup: $(VENV)/.apt-stamp $(VENV)/.pip-stamp

check: setup
	$(VENV)/bin/chaos-build check -c $(CONFIG)

render: setup
	$(VENV)/bin/chaos-build build --render-only -c $(CONFIG)

build: setup
	$(VENV)/bin/chaos-build build -c $(CONFIG)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m "not integration and not image and not smoke" $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest -m integration $(PYTEST_ARGS)

test-image: setup
	$(PY) -m pytest -m image $(PYTEST_ARGS)

test-smoke: setup
	$(PY) -m pytest -m smoke $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check builder tyd chaosnode tests bench
	$(VENV)/bin/mypy

bench: setup
	$(PY) bench/render.py

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
