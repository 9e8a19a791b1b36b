// Command promotion runs the promotion service on its own.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/services/promotion/promotion"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "promotion:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		conn    backbone.ConnConfig
		streams backbone.StreamConfig
		cfg     promotion.ServiceConfig
	)
	fs := flag.NewFlagSet("promotion", flag.ExitOnError)
	conn.RegisterFlags(fs)
	streams.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	logFormat := fs.String("log-format", lifecycle.EnvOr("CUSTOMS_LOG_FORMAT", "text"), "text or json (env CUSTOMS_LOG_FORMAT)")
	adminListen := fs.String("admin-listen", lifecycle.EnvOr("CUSTOMS_ADMIN_LISTEN", "127.0.0.1:9096"), "HTTP address for /metrics, /healthz and /readyz (env CUSTOMS_ADMIN_LISTEN)")
	logLevel := fs.String("log-level", lifecycle.EnvOr("CUSTOMS_LOG_LEVEL", "info"), "debug, info, warn or error (env CUSTOMS_LOG_LEVEL)")
	_ = fs.Parse(os.Args[1:])

	log, err := telemetry.NewLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "customs-promotion"})
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()

	conn.Name = "customs-promotion"
	nc, err := backbone.Connect(ctx, conn, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := backbone.EnsureStreams(ctx, nc.JS, streams); err != nil {
		return err
	}
	cfg.Replicas = streams.Replicas
	svc, err := promotion.NewService(ctx, cfg, nc.JS, nc.NC, log, nil)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, nc.JS, backbone.StreamArtifacts, promotion.ConsumerDurable); err != nil {
		return err
	}
	if err := metrics.ServeAdmin(ctx, *adminListen, nc.Ready, log); err != nil {
		return err
	}
	return svc.Run(ctx)
}
