// Command ingest receives registry webhooks and publishes artifact.pushed
// events to NATS JetStream.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/servicemain"
	"github.com/customs-dev/customs/services/ingest/ingest"
)

func main() { servicemain.Main("ingest", run) }

func run() error {
	var (
		common servicemain.Flags
		cfg    ingest.ServiceConfig
	)
	fs := flag.NewFlagSet("ingest", flag.ExitOnError)
	common.Register(fs)
	cfg.RegisterFlags(fs)
	_ = fs.Parse(os.Args[1:])

	rt, err := common.Start("ingest")
	if err != nil {
		return err
	}
	defer rt.Close()
	pub := rt.NATS.Publisher()
	srv, err := ingest.NewService(cfg, pub, rt.NATS.Ready, rt.Log)
	if err != nil {
		return err
	}
	// Zot can publish its events straight to NATS (off unless
	// CUSTOMS_ZOT_NATS_SUBJECT is set); a stream keeps them for us.
	zot, err := ingest.StartZotNATS(rt.Ctx, cfg, rt.NATS.JS, common.Streams.Replicas, pub, rt.Log)
	if err != nil {
		return err
	}
	if zot != nil {
		defer zot.Stop()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	rt.Log.Info("ingest listening", "addr", ln.Addr().String())
	return lifecycle.ServeHTTP(rt.Ctx, ln, srv.Handler(), rt.Log)
}
