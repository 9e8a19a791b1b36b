// Package servicemain is the start-up every Customs service binary shares:
// flags for NATS, the streams and logging, then logging, tracing, the NATS
// connection and the streams, in that order. Each main stays short and
// wires its own service explicitly on top.
package servicemain

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/telemetry"
)

// Flags are the flags every service has.
type Flags struct {
	Conn      backbone.ConnConfig
	Streams   backbone.StreamConfig
	LogFormat string
	LogLevel  string
}

// Register adds the common flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.Conn.RegisterFlags(fs)
	f.Streams.RegisterFlags(fs)
	fs.StringVar(&f.LogFormat, "log-format", lifecycle.EnvOr("CUSTOMS_LOG_FORMAT", "text"), "text or json (env CUSTOMS_LOG_FORMAT)")
	fs.StringVar(&f.LogLevel, "log-level", lifecycle.EnvOr("CUSTOMS_LOG_LEVEL", "info"), "debug, info, warn or error (env CUSTOMS_LOG_LEVEL)")
}

// Runtime is what a started service runs on.
type Runtime struct {
	// Ctx ends on SIGINT or SIGTERM.
	Ctx  context.Context
	Log  *slog.Logger
	NATS *backbone.Conn
	stop []func()
}

// Start sets up logging, tracing (service name "customs-<name>"), NATS and
// the streams. Close undoes it.
func (f *Flags) Start(name string) (*Runtime, error) {
	log, err := telemetry.NewLogger(f.LogFormat, f.LogLevel)
	if err != nil {
		return nil, err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	r := &Runtime{Ctx: ctx, Log: log, stop: []func(){cancel}}
	shutdownTracing, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "customs-" + name})
	if err != nil {
		r.Close()
		return nil, err
	}
	r.stop = append(r.stop, func() { _ = shutdownTracing(context.WithoutCancel(ctx)) })
	f.Conn.Name = "customs-" + name
	nc, err := backbone.Connect(ctx, f.Conn, log)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.NATS = nc
	r.stop = append(r.stop, nc.Close)
	if err := backbone.EnsureStreams(ctx, nc.JS, f.Streams); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close closes NATS, flushes traces and releases the signal handler, in
// reverse order of Start.
func (r *Runtime) Close() {
	for i := len(r.stop) - 1; i >= 0; i-- {
		r.stop[i]()
	}
}

// Main runs run and exits with status 1 and a one-line error if it fails.
func Main(name string, run func() error) {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
