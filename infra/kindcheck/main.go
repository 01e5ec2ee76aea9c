// Command kind-config-check validates kind cluster configuration files against kind's own
// v1alpha4 types: unknown or misspelt fields, wrong types and a wrong kind/apiVersion are
// errors, as they are for `kind create cluster --config`. It creates nothing.
//
//	kind-config-check FILE...
package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
)

func check(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cluster v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &cluster); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if cluster.Kind != "Cluster" || cluster.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return fmt.Errorf("%s: expected kind Cluster, apiVersion kind.x-k8s.io/v1alpha4, got %q %q",
			path, cluster.Kind, cluster.APIVersion)
	}
	v1alpha4.SetDefaultsCluster(&cluster)
	for i, node := range cluster.Nodes {
		if node.Role != v1alpha4.ControlPlaneRole && node.Role != v1alpha4.WorkerRole {
			return fmt.Errorf("%s: nodes[%d].role %q is neither control-plane nor worker", path, i, node.Role)
		}
		for j, mapping := range node.ExtraPortMappings {
			if mapping.ContainerPort <= 0 || mapping.ContainerPort > 65535 || mapping.HostPort > 65535 {
				return fmt.Errorf("%s: nodes[%d].extraPortMappings[%d]: port out of range", path, i, j)
			}
		}
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check FILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
			continue
		}
		fmt.Printf("%s: valid kind v1alpha4 Cluster\n", path)
	}
	if failed {
		os.Exit(1)
	}
}
