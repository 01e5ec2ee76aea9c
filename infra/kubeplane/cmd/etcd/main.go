// Command etcd is the upstream etcd server (go.etcd.io/etcd/server/v3), the
// storage backend of the local kube-apiserver. Its version is the one
// k8s.io/kubernetes itself depends on, pinned in go.mod.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
