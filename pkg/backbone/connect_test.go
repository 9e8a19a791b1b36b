package backbone_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
)

// An external server that requires credentials: connecting works with them
// and fails clearly without them.
func TestConnectWithCredentials(t *testing.T) {
	t.Parallel()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), Username: "customs", Password: "s3cret", NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	url := srv.ClientURL()
	ctx := context.Background()

	conn, err := backbone.Connect(ctx, backbone.ConnConfig{URL: url, User: "customs", Password: "s3cret"}, testkit.Logger(t))
	if err != nil {
		t.Fatalf("connect with credentials: %v", err)
	}
	defer conn.Close()
	if conn.Embedded != nil {
		t.Fatal("an external URL must not start an embedded server")
	}
	if err := backbone.EnsureStreams(ctx, conn.JS, backbone.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ready(ctx); err != nil {
		t.Fatalf("ready: %v", err)
	}

	_, err = backbone.Connect(ctx, backbone.ConnConfig{URL: url, User: "customs", Password: "wrong", ConnectTimeout: time.Second}, testkit.Logger(t))
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("connect with a wrong password: %v (the error must not contain the password)", err)
	}
}
