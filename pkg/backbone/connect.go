package backbone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConnConfig says how to reach NATS. With URL empty an embedded server is
// started in-process, storing under DataDir.
type ConnConfig struct {
	// URL of an external server or cluster ("nats://a:4222,nats://b:4222").
	URL string
	// CredsFile is a NATS .creds file (JWT and NKey seed).
	CredsFile string
	// User and Password, or Token, for servers that use them.
	User     string
	Password string
	Token    string
	// Name is the client connection name shown in server monitoring.
	Name string
	// ConnectTimeout bounds the wait for an external server at start-up.
	// Default 30s.
	ConnectTimeout time.Duration
	// PublishConnections is how many connections Publisher spreads
	// synchronous publishes over. Default 1.
	PublishConnections int

	// Embedded server settings, used only when URL is empty.
	DataDir string
	Host    string
	// Port for other processes to connect to the embedded server; -1 picks a
	// free port, 0 means 4222.
	Port int
}

// Conn is a NATS connection with JetStream, and the embedded server when
// there is one.
type Conn struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Embedded *server.Server
	// publishNC are the extra connections behind Publisher.
	publishNC []*nats.Conn
	publishJS []jetstream.JetStream
}

// Publisher returns a Publisher over this connection and its extra publish
// connections.
func (c *Conn) Publisher() *Publisher {
	return NewPublisher(append([]jetstream.JetStream{c.JS}, c.publishJS...)...)
}

// Connect connects to NATS, starting the embedded server first if no URL is
// configured.
func Connect(ctx context.Context, cfg ConnConfig, log *slog.Logger) (*Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.Token != "" {
		opts = append(opts, nats.Token(cfg.Token))
	}

	c := &Conn{}
	url := cfg.URL
	if url == "" {
		srv, err := StartEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		c.Embedded = srv
		url = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(srv))
		log.Info("embedded NATS started", "url", url, "store_dir", srv.StoreDir())
	}
	if c.Embedded == nil {
		// Services may start before the cluster does (compose, k8s): keep
		// trying for a while instead of crash-looping.
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(url), err)
	}
	wait := cfg.ConnectTimeout
	if wait <= 0 {
		wait = 30 * time.Second
	}
	for deadline := time.Now().Add(wait); !nc.IsConnected(); {
		if time.Now().After(deadline) || ctx.Err() != nil {
			nc.Close()
			c.Close()
			return nil, fmt.Errorf("connect to NATS at %s: not connected after %s", redactURL(url), wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.JS = js
	for i := 1; i < cfg.PublishConnections; i++ {
		pnc, err := nats.Connect(url, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("connect publish connection to NATS at %s: %w", redactURL(url), err)
		}
		c.publishNC = append(c.publishNC, pnc)
		pjs, err := jetstream.New(pnc)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("jetstream: %w", err)
		}
		c.publishJS = append(c.publishJS, pjs)
	}
	return c, nil
}

// Close drains the connection and shuts the embedded server down.
func (c *Conn) Close() {
	for _, pnc := range c.publishNC {
		_ = pnc.Drain()
	}
	if c.NC != nil {
		_ = c.NC.Drain()
		// Drain is asynchronous; wait for it so pending acks go out before
		// the embedded server stops.
		for i := 0; i < 100 && !c.NC.IsClosed(); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if c.Embedded != nil {
		c.Embedded.Shutdown()
		c.Embedded.WaitForShutdown()
	}
}

// Ready reports whether the connection is up and the stream exists.
func (c *Conn) Ready(ctx context.Context) error {
	if c.NC == nil || !c.NC.IsConnected() {
		return errors.New("not connected to NATS")
	}
	return StreamReady(ctx, c.JS)
}

// StartEmbedded starts an in-process NATS server with JetStream.
func StartEmbedded(cfg ConnConfig) (*server.Server, error) {
	dir := cfg.DataDir
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "customs-nats")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedded NATS data dir: %w", err)
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = 4222
	}
	opts := &server.Options{
		ServerName: "customs-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		// Events are small, but scan results and KV records can reach a few
		// hundred KiB.
		MaxPayload: 8 << 20,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(15 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s:%d did not become ready", host, port)
	}
	return srv, nil
}

func redactURL(u string) string {
	// Credentials embedded in a URL must not reach logs.
	if i, j := strings.Index(u, "://"), strings.LastIndex(u, "@"); i >= 0 && j > i {
		return u[:i+3] + "***" + u[j:]
	}
	return u
}
