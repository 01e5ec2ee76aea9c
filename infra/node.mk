# The local node's tools (`muster cluster up`): a real one-node Kubernetes cluster on the
# local host, from Go modules and Debian packages only.
#
#   make node-tools       build/install whatever is missing (first time: ~10 min on 2 cores
#                         on top of kube-tools)
#   make cluster-up       run the whole cluster in the foreground (needs root); Ctrl-C stops it
#   make cluster-down     clean up after a cluster that did not stop cleanly
#   make test-cluster     the tests in tests/cluster against one cluster per session
#   make node-images      import locally built images (NODE_IMAGES=...) into a running node
#   make monitoring-tools the Prometheus Operator, its config reloader and a Prometheus with
#                         Kubernetes service discovery (from their Go modules, versions in
#                         infra/promop/go.mod), with the operator module's CRDs and RBAC
#                         examples, for monitoring Muster on the local node
#
# Built into $(BIN) keyed by version, like infra/kube.mk: kubelet, kube-proxy, kube-scheduler
# and kube-controller-manager from infra/kubeplane (the same modules as kube-apiserver),
# CoreDNS from infra/coredns (its plugins for cluster DNS only), and kube-network-policies
# (the SIG's reference NetworkPolicy agent) from its module. From Debian: containerd and
# runc (the container runtime), the CNI plugins (bridge, host-local, loopback),
# iptables/nftables and conntrack (kube-proxy, the NetworkPolicy agent) and catatonit (the
# pods' sandbox "pause" process).

COREDNS_DIR := $(CURDIR)/infra/coredns
COREDNS_VERSION := $(shell awk '$$1 == "require" && $$2 == "github.com/coredns/coredns" { \
	sub(/^v/, "", $$3); print $$3; exit }' $(COREDNS_DIR)/go.mod)
NETPOL_VERSION ?= 0.8.0
NODE_KUBE_COMPONENTS := kubelet kube-proxy kube-scheduler kube-controller-manager
NODE_KUBE_LINKS := $(addprefix $(BIN)/,$(NODE_KUBE_COMPONENTS))
NODE_KUBE_BUILDS := $(addsuffix -v$(KUBE_VERSION),$(NODE_KUBE_LINKS))
COREDNS := $(BIN)/coredns
COREDNS_BUILD := $(COREDNS)-v$(COREDNS_VERSION)
NETPOL := $(BIN)/kube-network-policies
NETPOL_BUILD := $(NETPOL)-v$(NETPOL_VERSION)

# Debian packages and a file each one installs (what says it is there).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables nftables conntrack catatonit
NODE_PACKAGE_FILES := /usr/bin/containerd /usr/bin/ctr /usr/sbin/runc /usr/lib/cni/bridge \
	/usr/lib/cni/host-local /usr/lib/cni/loopback /usr/sbin/iptables /usr/sbin/nft \
	/usr/sbin/conntrack /usr/bin/catatonit /usr/bin/unshare /usr/bin/nsenter /usr/sbin/ip

CLUSTER_ARGS ?=

.PHONY: node-tools
node-tools: kube-tools node-packages $(NODE_KUBE_LINKS) $(COREDNS) $(NETPOL) ## build/install the node's parts (kubelet, kube-proxy, scheduler, controller-manager, CoreDNS, containerd...)

.PHONY: node-packages
node-packages: ## install the node's Debian packages (containerd, runc, CNI plugins, iptables...) if missing
	@missing=; for f in $(NODE_PACKAGE_FILES); do [ -x "$$f" ] || missing=1; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" != 0 ] && ! { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then \
		echo "make: not installing the local node's Debian packages: that needs root, and so" \
			"does the node (tests/cluster will be skipped)"; exit 0; fi; \
	$(call apt_install,$(NODE_PACKAGES) iproute2 util-linux,the local node,)

$(NODE_KUBE_LINKS): $(BIN)/%: $(BIN)/%-v$(KUBE_VERSION)
	@ln -sfn $(notdir $<) $@
$(COREDNS): $(COREDNS_BUILD)
	@ln -sfn $(notdir $<) $@
$(NETPOL): $(NETPOL_BUILD)
	@ln -sfn $(notdir $<) $@

$(NODE_KUBE_BUILDS): $(BIN)/%-v$(KUBE_VERSION): $(KUBEPLANE_DIR)/cmd/%/main.go \
		$(KUBEPLANE_DIR)/go.mod $(KUBEPLANE_DIR)/go.sum
	@$(kube_check_go)
	@[[ "$(KUBE_VERSION)" == "$(KUBE_PINNED)" ]] || { \
		echo "make: infra/kubeplane/go.mod pins Kubernetes $(KUBE_PINNED), not $(KUBE_VERSION):" \
			"run 'make kube-pin KUBE_VERSION=$(KUBE_VERSION)' first" >&2; exit 1; }
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) mod download \
		|| $(call kube_proxy_error,k8s.io/kubernetes v$(KUBE_VERSION))
	@echo "building $* v$(KUBE_VERSION) into $(BIN)"
	@mkdir -p $(BIN)
	@cd $(KUBEPLANE_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-ldflags '$(KUBE_APISERVER_LDFLAGS)' -o $@.partial ./cmd/$*
	@rm -f $(BIN)/$*-v*[0-9]
	@mv -f $@.partial $@

$(COREDNS_BUILD): $(COREDNS_DIR)/main.go $(COREDNS_DIR)/go.mod $(COREDNS_DIR)/go.sum
	@$(kube_check_go)
	@echo "building coredns v$(COREDNS_VERSION) into $(BIN)"
	@mkdir -p $(BIN)
	@cd $(COREDNS_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-ldflags '-s -w -X github.com/coredns/coredns/coremain.GitCommit=v$(COREDNS_VERSION)' \
		-o $@.partial . || $(call kube_proxy_error,github.com/coredns/coredns v$(COREDNS_VERSION))
	@rm -f $(COREDNS)-v*[0-9]
	@mv -f $@.partial $@

# The agent is built from a copy of its module with its dependencies vendored (all from the
# Go module proxy), where one file of its nftables library is replaced by
# infra/netpol/queue.go: that file queues packets through the NFQUEUE target, for kernels
# without nftables' native queue expression (CONFIG_NFT_QUEUE). Nothing else of the agent
# or its dependencies changes.
NETPOL_NFTABLES_VERSION := 0.3.0
NETPOL_OVERLAY := $(CURDIR)/infra/netpol/queue.go
NETPOL_GOENV := GOSUMDB=off GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOWORK=off
$(NETPOL_BUILD): $(NETPOL_OVERLAY)
	@$(kube_check_go)
	@echo "building kube-network-policies v$(NETPOL_VERSION) into $(BIN)"
	@mkdir -p $(BIN) && rm -rf $@.src && mkdir -p $@.src
	@dir=$$(cd $@.src && $(NETPOL_GOENV) $(GO) mod download -json \
			sigs.k8s.io/kube-network-policies@v$(NETPOL_VERSION) | \
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$$/\1/p'); \
		[[ -f "$$dir/go.mod" ]] || $(call kube_proxy_error,sigs.k8s.io/kube-network-policies v$(NETPOL_VERSION)); \
	cp -R "$$dir/." $@.src/ && chmod -R u+w $@.src; \
	want=$$(awk '$$1 == "github.com/google/nftables" { print $$2; exit }' $@.src/go.mod); \
	[[ "$$want" == "v$(NETPOL_NFTABLES_VERSION)" ]] || { echo "make: kube-network-policies" \
		"v$(NETPOL_VERSION) uses github.com/google/nftables $$want, but infra/netpol/queue.go" \
		"replaces a file of v$(NETPOL_NFTABLES_VERSION): check that file against $$want" >&2; \
		exit 1; }; \
	cd $@.src && $(NETPOL_GOENV) $(GO) mod vendor \
		|| $(call kube_proxy_error,the dependencies of sigs.k8s.io/kube-network-policies); \
	cp $(NETPOL_OVERLAY) vendor/github.com/google/nftables/expr/queue.go; \
	$(NETPOL_GOENV) $(GO) build -mod=vendor -trimpath -ldflags '-s -w' -o $@.partial ./cmd
	@rm -f $(NETPOL)-v*[0-9]
	@mv -f $@.partial $@ && rm -rf $@.src

# The Prometheus Operator and its config reloader, built as tools of infra/promop (the
# operator's own module cannot be built from its zip: it replaces its pkg/client and
# pkg/apis modules with folders the zip leaves out; required as modules they resolve).
PROMOP_DIR := $(CURDIR)/infra/promop
PROMOP_MODULE := github.com/prometheus-operator/prometheus-operator
PROMOP_VERSION := $(shell awk '$$1 == "$(PROMOP_MODULE)" { sub(/^v/, "", $$2); print $$2; exit }' \
	$(PROMOP_DIR)/go.mod)
PROMOP_LINKS := $(BIN)/prometheus-operator $(BIN)/prometheus-config-reloader
PROMOP_EXAMPLES := $(SCHEMAS)/prometheus-operator-v$(PROMOP_VERSION)

$(BIN)/prometheus-operator-v$(PROMOP_VERSION): PROMOP_CMD := cmd/operator
$(BIN)/prometheus-config-reloader-v$(PROMOP_VERSION): PROMOP_CMD := cmd/prometheus-config-reloader
$(BIN)/prometheus-operator-v$(PROMOP_VERSION) $(BIN)/prometheus-config-reloader-v$(PROMOP_VERSION): \
		$(PROMOP_DIR)/go.mod $(PROMOP_DIR)/go.sum
	@$(kube_check_go)
	@echo "building $(notdir $@) into $(BIN)"
	@mkdir -p $(BIN)
	@cd $(PROMOP_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(PROMOP_VERSION)' \
		-o $@.partial $(PROMOP_MODULE)/$(PROMOP_CMD) \
		|| $(call kube_proxy_error,$(PROMOP_MODULE) v$(PROMOP_VERSION))
	@rm -f $(subst -v$(PROMOP_VERSION),,$@)-v*[0-9]
	@mv -f $@.partial $@
$(PROMOP_LINKS): $(BIN)/%: $(BIN)/%-v$(PROMOP_VERSION)
	@ln -sfn $(notdir $<) $@

# Prometheus itself, from the version of its module that infra/promop resolves (module
# v0.313.1 is Prometheus 3.13.1), with only its Kubernetes service discovery compiled in
# (build tags). Debian's package leaves Kubernetes discovery out, so it cannot run what the
# Prometheus Operator configures. Linked as prometheus-k8s, not prometheus: the other tiers
# use Debian's. Served without the web UI (its assets are not in the module); the API is.
PROM_MODULE := github.com/prometheus/prometheus
PROM_VERSION := $(shell awk '$$1 == "$(PROM_MODULE)" { sub(/^v0\./, "", $$2); \
	printf "%d.%d.%s", substr($$2, 1, 1), substr($$2, 2, 2), substr($$2, index($$2, ".") + 1); exit }' \
	$(PROMOP_DIR)/go.mod)
PROM_BIN := $(BIN)/prometheus-k8s-v$(PROM_VERSION)

$(PROM_BIN): $(PROMOP_DIR)/go.mod $(PROMOP_DIR)/go.sum
	@$(kube_check_go)
	@echo "building Prometheus $(PROM_VERSION) (Kubernetes discovery only) into $(BIN)"
	@mkdir -p $(BIN)
	@cd $(PROMOP_DIR) && $(KUBE_GOENV) $(GO) build -trimpath \
		-tags remove_all_sd,enable_kubernetes_sd \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(PROM_VERSION)' \
		-o $@.partial $(PROM_MODULE)/cmd/prometheus \
		|| $(call kube_proxy_error,$(PROM_MODULE) (Prometheus $(PROM_VERSION)))
	@rm -f $(BIN)/prometheus-k8s-v*[0-9]
	@mv -f $@.partial $@
$(BIN)/prometheus-k8s: $(PROM_BIN)
	@ln -sfn $(notdir $<) $@

# The operator's CRDs (all of them: Prometheus too) and the RBAC its examples give the
# operator and Prometheus, from the same module version.
$(PROMOP_EXAMPLES)/.done: $(PROMOP_DIR)/go.mod
	@$(kube_check_go)
	@echo "fetching the Prometheus Operator's CRDs and RBAC (v$(PROMOP_VERSION))"
	@rm -rf $(PROMOP_EXAMPLES) && mkdir -p $(PROMOP_EXAMPLES)
	@dir=$(call fetch_module_dir,$(PROMOP_MODULE)@v$(PROMOP_VERSION)); \
		[ -n "$$dir" ] || $(call kube_proxy_error,$(PROMOP_MODULE) v$(PROMOP_VERSION)); \
		cp -R "$$dir/example/prometheus-operator-crd" "$$dir/example/rbac" $(PROMOP_EXAMPLES)/; \
		chmod -R u+w $(PROMOP_EXAMPLES)
	@touch $@

.PHONY: monitoring-tools
monitoring-tools: $(PROMOP_LINKS) $(BIN)/prometheus-k8s $(PROMOP_EXAMPLES)/.done ## the Prometheus Operator, its config reloader, a Prometheus with Kubernetes discovery, CRDs and RBAC (monitoring on the local node)

.PHONY: node-versions
node-versions: ## print the node's component versions
	@echo "kubelet, kube-proxy, kube-scheduler, kube-controller-manager v$(KUBE_VERSION)" \
		" CoreDNS v$(COREDNS_VERSION)  kube-network-policies v$(NETPOL_VERSION)" \
		" Prometheus Operator v$(PROMOP_VERSION)  Prometheus $(PROM_VERSION)"

.PHONY: cluster-up
cluster-up: node-tools $(KUBE_VENV_TARGET) ## run a one-node Kubernetes cluster in the foreground (root); Ctrl-C stops it
	@MUSTER_BIN_DIR=$(BIN) $(VENV)/bin/muster cluster up $(CLUSTER_ARGS)

.PHONY: cluster-down
cluster-down: $(KUBE_VENV_TARGET) ## stop the local cluster and remove all it left behind (after a crash too)
	@MUSTER_BIN_DIR=$(BIN) $(VENV)/bin/muster cluster down

NODE_IMAGES ?=
.PHONY: node-images
node-images: $(KUBE_VENV_TARGET) ## import NODE_IMAGES="localhost/a:tag ..." from buildah's storage into the running node
	@[ -n "$(NODE_IMAGES)" ] || { echo "make: name the images: make node-images NODE_IMAGES='$(IMAGE_BASE_LOCAL)'" >&2; exit 2; }
	@MUSTER_BIN_DIR=$(BIN) $(VENV)/bin/muster cluster import --containers-root $(CONTAINERS_ROOT) $(NODE_IMAGES)

.PHONY: test-cluster
test-cluster: node-tools monitoring-tools image-base skaffold-tools $(KUBE_VENV_TARGET) ## the node tests (tests/cluster): pods, Services, DNS, NetworkPolicies, Muster from the chart, the skaffold loop
	@MUSTER_BIN_DIR=$(BIN) $(KUBE_PYTEST) tests/cluster $(PYTEST_ARGS)

.PHONY: node-clean
node-clean: ## remove the node's built binaries from ./bin
	rm -f $(NODE_KUBE_LINKS) $(addsuffix -v*,$(NODE_KUBE_LINKS)) $(COREDNS) $(COREDNS)-v* \
		$(NETPOL) $(NETPOL)-v*
	rm -rf $(NETPOL)-v*.src
