// Command ingest receives registry webhooks and publishes artifact.pushed
// events to NATS JetStream.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/telemetry"
	"github.com/customs-dev/customs/services/ingest/ingest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		conn    backbone.ConnConfig
		streams backbone.StreamConfig
		cfg     ingest.ServiceConfig
	)
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	conn.RegisterFlags(fs)
	streams.RegisterFlags(fs)
	cfg.RegisterFlags(fs)
	logFormat := fs.String("log-format", lifecycle.EnvOr("CUSTOMS_LOG_FORMAT", "text"), "text or json (env CUSTOMS_LOG_FORMAT)")
	logLevel := fs.String("log-level", lifecycle.EnvOr("CUSTOMS_LOG_LEVEL", "info"), "debug, info, warn or error (env CUSTOMS_LOG_LEVEL)")
	_ = fs.Parse(os.Args[1:])

	log, err := telemetry.NewLogger(*logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "customs-ingest"})
	if err != nil {
		return err
	}
	defer func() { _ = shutdownTracing(context.WithoutCancel(ctx)) }()

	conn.Name = "customs-ingest"
	nc, err := backbone.Connect(ctx, conn, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := backbone.EnsureStreams(ctx, nc.JS, streams); err != nil {
		return err
	}
	pub := nc.Publisher()
	srv, err := ingest.NewService(cfg, pub, nc.Ready, log)
	if err != nil {
		return err
	}
	zotSub, err := ingest.StartZotNATS(cfg, nc.NC, pub, log)
	if err != nil {
		return err
	}
	if zotSub != nil {
		defer func() { _ = zotSub.Drain() }()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("ingest listening", "addr", ln.Addr().String())
	return lifecycle.ServeHTTP(ctx, ln, srv.Handler(), log)
}
