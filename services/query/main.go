// Command query keeps the artifact projection and serves the gRPC
// ArtifactService.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/grpcserver"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/metrics"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/services/query/query"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "query:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		conn    backbone.ConnConfig
		streams backbone.StreamConfig
		cfg     query.ServiceConfig
		grpcSec grpcserver.Config
	)
	fs := flag.NewFlagSet("query", flag.ExitOnError)
	conn.RegisterFlags(fs)
	streams.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	grpcSec.RegisterFlags(fs)
	logFormat := fs.String("log-format", lifecycle.EnvOr("CUSTOMS_LOG_FORMAT", "text"), "text or json (env CUSTOMS_LOG_FORMAT)")
	logLevel := fs.String("log-level", lifecycle.EnvOr("CUSTOMS_LOG_LEVEL", "info"), "debug, info, warn or error (env CUSTOMS_LOG_LEVEL)")
	_ = fs.Parse(os.Args[1:])

	log, err := telemetry.NewLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "customs-query"})
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()

	conn.Name = "customs-query"
	nc, err := backbone.Connect(ctx, conn, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := backbone.EnsureStreams(ctx, nc.JS, streams); err != nil {
		return err
	}
	grpcOpts, err := grpcSec.ServerOptions()
	if err != nil {
		return err
	}
	cfg.Replicas = streams.Replicas
	svc, err := query.NewService(ctx, cfg, nc.JS, log, grpcOpts...)
	if err != nil {
		return err
	}
	if err := metrics.RegisterConsumers(prometheus.DefaultRegisterer, nc.JS, backbone.StreamArtifacts, query.ProjectionDurable); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listen: %w", err)
	}
	ready := func(ctx context.Context) error {
		if err := nc.Ready(ctx); err != nil {
			return err
		}
		return svc.Synced(ctx)
	}
	go func() { _ = lifecycle.ServeHTTP(ctx, adminLn, metrics.AdminHandler(ready), log) }()
	return svc.Run(ctx, ln)
}
