// Command promotion runs the promotion service on its own.
package main

import (
	"flag"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/promotion/promotion"
)

func main() { servicemain.Main("promotion", run) }

func run() error {
	var (
		common servicemain.Flags
		cfg    promotion.ServiceConfig
	)
	fs := flag.NewFlagSet("promotion", flag.ExitOnError)
	common.Register(fs)
	cfg.RegisterFlags(fs)
	adminListen := fs.String("admin-listen", lifecycle.EnvOr("CUSTOMS_ADMIN_LISTEN", "127.0.0.1:9096"), "HTTP address for /metrics, /healthz and /readyz (env CUSTOMS_ADMIN_LISTEN)")
	_ = fs.Parse(os.Args[1:])

	rt, err := common.Start("promotion")
	if err != nil {
		return err
	}
	defer rt.Close()
	cfg.Replicas = common.Streams.Replicas
	svc, err := promotion.NewService(rt.Ctx, cfg, rt.NATS.JS, rt.NATS.NC, rt.Log, nil)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, rt.NATS.JS, backbone.StreamArtifacts, promotion.ConsumerDurable); err != nil {
		return err
	}
	if err := metrics.ServeAdmin(rt.Ctx, *adminListen, rt.NATS.Ready, rt.Log); err != nil {
		return err
	}
	return svc.Run(rt.Ctx)
}
