// Package conformance runs the Gateway API conformance suite (the
// sigs.k8s.io/gateway-api/conformance module at the version pinned in
// go.mod) against blixt: gateway class "blixt", profiles GATEWAY-TCP and
// GATEWAY-UDP, provisional tests included. `deno task conformance` brings up
// the local cluster with blixt's operator and agents and runs this test
// with KUBECONFIG pointing at it.
package conformance

import (
	"flag"
	"testing"

	"sigs.k8s.io/gateway-api/conformance"
	confv1 "sigs.k8s.io/gateway-api/conformance/apis/v1"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

var (
	reportPath = flag.String("blixt-report", "", "where to write the conformance report YAML")
	version    = flag.String("blixt-version", "", "blixt's version, for the report")
)

// supportedFeatures are the features blixt implements; the same list the
// operator publishes in the GatewayClass status (operator/gateway_class.ts).
var supportedFeatures = []features.FeatureName{
	features.SupportGateway,
	features.SupportGatewayAddressEmpty,
	features.SupportGatewayStaticAddresses,
	features.SupportReferenceGrant,
	features.SupportTCPRoute,
	features.SupportUDPRoute,
}

func TestConformance(t *testing.T) {
	opts := conformance.DefaultOptions(t)
	opts.GatewayClassName = "blixt"
	opts.ConformanceProfiles = []suite.ConformanceProfileName{
		suite.GatewayTCPConformanceProfileName,
		suite.GatewayUDPConformanceProfileName,
	}
	opts.SkipProvisionalTests = false
	opts.SupportedFeatures = supportedFeatures
	opts.EnableAllSupportedFeatures = false
	opts.ReportOutputPath = *reportPath
	opts.Implementation = confv1.Implementation{
		Organization: "blixt",
		Project:      "blixt",
		URL:          "https://blixt.dev",
		Version:      *version,
		Contact:      []string{"blixt maintainers"},
	}
	conformance.RunConformanceWithOptions(t, opts)
}
