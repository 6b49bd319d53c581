// Command kube-proxy is the real kube-proxy of the pinned k8s.io/kubernetes
// module, built only for `deno task bench peer` (the peer blixt is compared
// with), in a module of its own so that the local cluster's `kube` binary
// does not grow. The pins are those of tests/cluster/kube/go.mod.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
