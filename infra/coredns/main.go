// Command coredns is upstream CoreDNS with the plugins the local cluster's DNS uses
// (Corefile in devstack/src/muster_dev/nodeconfig.py), selected at compile time as CoreDNS
// supports: the same server and plugin code, without the cloud providers' SDKs that the
// full build compiles (route53, azure, clouddns...), which the local node never uses.
package main

import (
	"github.com/coredns/coredns/coremain"

	// The plugins, in no particular order: CoreDNS runs them in the order of its own
	// directive list (core/dnsserver), whatever order they register in.
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
