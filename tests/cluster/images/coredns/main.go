// Command coredns is the local cluster's build of CoreDNS for the image
// registry.k8s.io/coredns/coredns: CoreDNS's own server (coremain) from the
// pinned github.com/coredns/coredns module, linked with the plugins that
// the pods of the Gateway API conformance suite configure. A Corefile that
// names another plugin fails at start with CoreDNS's own "unknown
// directive" error, so nothing is served that is not the real thing.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/whoami"
)

func main() {
	coremain.Run()
}
