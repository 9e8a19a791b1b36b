// Package testkit starts the real parts tests run against: an in-process
// NATS server with JetStream and an in-process CNCF Distribution registry.
package testkit

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/devregistry"
)

// NATS starts an embedded NATS server on a free port with storage in a
// temporary directory, connects to it and creates the Customs streams. It
// is shut down when the test ends.
func NATS(t testing.TB) *backbone.Conn {
	t.Helper()
	return NATSIn(t, t.TempDir())
}

// NATSIn is NATS with a given storage directory, so a test can restart the
// server on the same data.
func NATSIn(t testing.TB, dir string) *backbone.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := backbone.Connect(ctx, backbone.ConnConfig{DataDir: dir, Port: -1, Name: t.Name()}, Logger(t))
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	t.Cleanup(conn.Close)
	if err := backbone.EnsureStreams(ctx, conn.JS, backbone.StreamConfig{}); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	return conn
}

// Registry starts a Distribution registry with in-memory storage and
// returns its host:port on 127.0.0.1. With webhookURL set, it sends its
// notifications there with the bearer token.
func Registry(t testing.TB, webhookURL, token string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := devregistry.New(ctx, devregistry.Config{WebhookURL: webhookURL, WebhookToken: token})
	if err != nil {
		cancel()
		t.Fatalf("start registry: %v", err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// Logger returns a logger that writes through t.Log, so output shows only
// for failing or verbose tests.
func Logger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.done.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t testing.TB
	// done drops lines from goroutines that outlive the test, which t.Log
	// would turn into a panic.
	done atomic.Bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
