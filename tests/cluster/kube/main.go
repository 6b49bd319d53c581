// Command kube is the local cluster's one binary for the real Kubernetes
// control plane: a multi-call wrapper so that kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler and kubectl share one build and
// one link. The component is named by the
// first argument (`kube apiserver ...`) or by the name the binary is
// called by (a `kubectl` symlink to it is kubectl).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectl "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	component, args := filepath.Base(os.Args[0]), os.Args[1:]
	if component != "kubectl" {
		if len(os.Args) < 2 {
			fmt.Fprintln(os.Stderr, "usage: kube apiserver|etcd|controller-manager|scheduler|kubectl [flags]")
			os.Exit(2)
		}
		component, args = os.Args[1], os.Args[2:]
	}
	switch component {
	case "apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "scheduler":
		cmd := scheduler.NewSchedulerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kubectl":
		os.Args = append([]string{"kubectl"}, args...)
		cmd := kubectl.NewDefaultKubectlCommand()
		cmd.SetArgs(args)
		if err := cli.RunNoErrOutput(cmd); err != nil {
			cmdutil.CheckErr(err)
		}
	default:
		fmt.Fprintf(os.Stderr, "kube: unknown component %q\n", component)
		os.Exit(2)
	}
}
