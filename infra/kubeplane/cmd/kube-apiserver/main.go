// Command kube-apiserver is the upstream Kubernetes API server, built from
// k8s.io/kubernetes as a library so that Muster can run a real control plane
// (see devstack/src/muster_dev/kube.py) without a container engine or any
// download besides the Go module proxy.
package main

import (
	"os"
	_ "time/tzdata" // CronJob timeZone validation needs the zone database

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
