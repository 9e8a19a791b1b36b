// Command query keeps the artifact projection and serves the gRPC
// ArtifactService.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/grpcserver"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/query/query"
)

func main() { servicemain.Main("query", run) }

func run() error {
	var (
		common  servicemain.Flags
		cfg     query.ServiceConfig
		grpcSec grpcserver.Config
	)
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	common.Register(fs)
	cfg.RegisterFlags(fs)
	grpcSec.RegisterFlags(fs)
	_ = fs.Parse(os.Args[1:])

	rt, err := common.Start("query")
	if err != nil {
		return err
	}
	defer rt.Close()
	grpcOpts, err := grpcSec.ServerOptions()
	if err != nil {
		return err
	}
	cfg.Replicas = common.Streams.Replicas
	svc, err := query.NewService(rt.Ctx, cfg, rt.NATS.JS, rt.Log, grpcOpts...)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, rt.NATS.JS, backbone.StreamArtifacts, query.ProjectionDurable); err != nil {
		return err
	}
	ready := func(ctx context.Context) error {
		if err := rt.NATS.Ready(ctx); err != nil {
			return err
		}
		return svc.Synced(ctx)
	}
	if err := metrics.ServeAdmin(rt.Ctx, cfg.AdminListen, ready, rt.Log); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return svc.Run(rt.Ctx, ln)
}
