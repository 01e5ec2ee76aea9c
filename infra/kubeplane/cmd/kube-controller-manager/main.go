// Command kube-controller-manager is the upstream Kubernetes controller manager
// (Deployments, ReplicaSets, ServiceAccounts, namespace deletion, garbage collection...),
// built from k8s.io/kubernetes as a library for Muster's local node.
package main

import (
	"os"
	_ "time/tzdata" // CronJob timeZone support needs the zone database

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
