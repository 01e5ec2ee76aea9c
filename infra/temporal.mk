# A real Temporal server, built from go.temporal.io/server into $(BIN) once per version:
# temporal-server (the four services in one process) and temporal-sql-tool (creates the
# databases and applies the PostgreSQL schemas of the same module, which it embeds).
# PostgreSQL itself is Debian's package.
#
#   make temporal-server        build whatever is missing (first time: ~4 min CPU, 1.5 GB of
#                               module downloads, ~2.5 GB of memory; from Go's cache ~30 s)
#   make postgresql             install Debian's postgresql if missing (as root or with sudo)
#   make temporal-versions      print the pinned server version
#
# The version is pinned in infra/temporalserver/go.mod (see the reason there). Each file is
# bin/<name>-v<version> with bin/<name> a symlink to it, as in infra/kube.mk, and the Go
# environment is the same (KUBE_GOENV: GOSUMDB=off, GOTOOLCHAIN=local, -mod=readonly, no cgo).

TEMPORALSERVER_DIR := $(CURDIR)/infra/temporalserver
TEMPORAL_SERVER_VERSION := $(shell awk '$$1 == "go.temporal.io/server" && $$2 ~ /^v/ { \
	sub(/^v/, "", $$2); print $$2; exit }' $(TEMPORALSERVER_DIR)/go.mod)
TEMPORAL_GO_MIN := $(shell awk '$$1 == "go" { print $$2; exit }' $(TEMPORALSERVER_DIR)/go.mod)
# Debian puts each major version in its own folder; the newest installed one, else 15.
POSTGRES_BINDIR ?= $(or $(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin))),/usr/lib/postgresql/15/bin)

TEMPORAL_SERVER := $(BIN)/temporal-server
TEMPORAL_SQL_TOOL := $(BIN)/temporal-sql-tool
TEMPORAL_SERVER_BUILD := $(TEMPORAL_SERVER)-v$(TEMPORAL_SERVER_VERSION)
TEMPORAL_SQL_TOOL_BUILD := $(TEMPORAL_SQL_TOOL)-v$(TEMPORAL_SERVER_VERSION)

define temporal_check_go
command -v $(GO) >/dev/null 2>&1 || { \
	echo "make: Go toolchain '$(GO)' not found. temporal-server is built from Go modules:" \
		"install Go $(TEMPORAL_GO_MIN) or newer, or set GO=/path/to/go." >&2; exit 1; }; \
have=$$($(GO) env GOVERSION | sed 's/^go//'); \
[[ "$$(printf '%s\n%s\n' "$(TEMPORAL_GO_MIN)" "$$have" | sort -V | head -n1)" == "$(TEMPORAL_GO_MIN)" ]] || { \
	echo "make: Go $$have is too old: go.temporal.io/server v$(TEMPORAL_SERVER_VERSION) needs Go" \
		"$(TEMPORAL_GO_MIN) or newer (GOTOOLCHAIN=local: no toolchain is downloaded)." >&2; exit 1; }
endef

.PHONY: temporal-server
temporal-server: $(TEMPORAL_SERVER) $(TEMPORAL_SQL_TOOL) postgresql ## build temporal-server + temporal-sql-tool into ./bin, install PostgreSQL

.PHONY: temporal-versions
temporal-versions: ## print the pinned Temporal server version
	@echo "temporal-server v$(TEMPORAL_SERVER_VERSION) (go.temporal.io/server, Go >= $(TEMPORAL_GO_MIN))"

$(TEMPORAL_SERVER): $(TEMPORAL_SERVER_BUILD)
	@ln -sfn $(notdir $<) $@
$(TEMPORAL_SQL_TOOL): $(TEMPORAL_SQL_TOOL_BUILD)
	@ln -sfn $(notdir $<) $@

$(TEMPORAL_SERVER_BUILD) $(TEMPORAL_SQL_TOOL_BUILD): $(TEMPORALSERVER_DIR)/go.mod $(TEMPORALSERVER_DIR)/go.sum

# The module's own main packages, named as tools in go.mod (so go.sum covers them).
$(TEMPORAL_SERVER_BUILD): TEMPORAL_PKG := go.temporal.io/server/cmd/server
$(TEMPORAL_SQL_TOOL_BUILD): TEMPORAL_PKG := go.temporal.io/server/cmd/tools/sql
$(TEMPORAL_SERVER_BUILD) $(TEMPORAL_SQL_TOOL_BUILD):
	@$(temporal_check_go)
	@cd $(TEMPORALSERVER_DIR) && $(KUBE_GOENV) $(GO) mod download \
		|| $(call kube_proxy_error,go.temporal.io/server v$(TEMPORAL_SERVER_VERSION))
	@echo "building $(notdir $@) into $(BIN) (first time ~4 min of CPU on 2 cores)"
	@mkdir -p $(BIN)
	@cd $(TEMPORALSERVER_DIR) && $(KUBE_GOENV) $(GO) build -trimpath -ldflags '-s -w' \
		-o $@.partial $(TEMPORAL_PKG)
	@rm -f $(subst -v$(TEMPORAL_SERVER_VERSION),,$@)-v*[0-9]
	@mv -f $@.partial $@

.PHONY: postgresql
postgresql: ## install Debian's postgresql (initdb, postgres) for the real Temporal server, if missing
	@if [ -x "$(POSTGRES_BINDIR)/postgres" ] && [ -x "$(POSTGRES_BINDIR)/initdb" ]; then exit 0; fi; \
	$(call apt_install,postgresql,the real Temporal server, or set POSTGRES_BINDIR to a PostgreSQL 12+ bin folder)

.PHONY: temporal-clean
temporal-clean: ## remove the built temporal-server and temporal-sql-tool from ./bin
	rm -f $(TEMPORAL_SERVER) $(TEMPORAL_SERVER)-v* $(TEMPORAL_SQL_TOOL) $(TEMPORAL_SQL_TOOL)-v*
