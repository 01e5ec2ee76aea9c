// Command kubelet is the upstream Kubernetes node agent, built from k8s.io/kubernetes as a
// library like kube-apiserver, so that Muster's local node (muster cluster up) runs pods
// with nothing but Go modules and Debian packages.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
