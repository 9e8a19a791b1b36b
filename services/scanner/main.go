// Command scanner scans pushed images with the Trivy library and publishes
// artifact.scanned. Run any number of them: they share one durable consumer.
package main

import (
	"flag"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/scanner/scanner"
)

func main() { servicemain.Main("scanner", run) }

func run() error {
	var (
		common servicemain.Flags
		cfg    scanner.ServiceConfig
	)
	fs := flag.NewFlagSet("scanner", flag.ExitOnError)
	common.Register(fs)
	cfg.RegisterFlags(fs)
	adminListen := fs.String("admin-listen", lifecycle.EnvOr("CUSTOMS_ADMIN_LISTEN", "127.0.0.1:9094"), "HTTP address for /metrics, /healthz and /readyz (env CUSTOMS_ADMIN_LISTEN)")
	_ = fs.Parse(os.Args[1:])

	rt, err := common.Start("scanner")
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg.Replicas = common.Streams.Replicas
	cfg.Registerer = prometheus.DefaultRegisterer
	svc, err := scanner.NewService(rt.Ctx, cfg, rt.NATS.JS, rt.Log)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, rt.NATS.JS, backbone.StreamArtifacts, scanner.Durable); err != nil {
		return err
	}
	if err := metrics.ServeAdmin(rt.Ctx, *adminListen, rt.NATS.Ready, rt.Log); err != nil {
		return err
	}
	return svc.Run(rt.Ctx)
}
