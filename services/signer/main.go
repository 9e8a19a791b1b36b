// Command signer consumes artifact.scanned, signs and attests the artifacts
// that pass the policy with cosign, and publishes artifact.signed or
// artifact.rejected.
package main

import (
	"flag"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/signer/signer"
)

func main() { servicemain.Main("signer", run) }

func run() error {
	var (
		common servicemain.Flags
		cfg    signer.ServiceConfig
	)
	fs := flag.NewFlagSet("signer", flag.ExitOnError)
	common.Register(fs)
	cfg.RegisterFlags(fs)
	adminListen := fs.String("admin-listen", lifecycle.EnvOr("CUSTOMS_ADMIN_LISTEN", "127.0.0.1:9095"), "HTTP address for /metrics, /healthz and /readyz (env CUSTOMS_ADMIN_LISTEN)")
	_ = fs.Parse(os.Args[1:])

	rt, err := common.Start("signer")
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg.Replicas = common.Streams.Replicas
	svc, err := signer.NewService(rt.Ctx, cfg, rt.NATS.JS, rt.Log, nil)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, rt.NATS.JS, backbone.StreamArtifacts, signer.Durable); err != nil {
		return err
	}
	if err := metrics.ServeAdmin(rt.Ctx, *adminListen, rt.NATS.Ready, rt.Log); err != nil {
		return err
	}
	return svc.Run(rt.Ctx)
}
