package integration

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/ingest/ingest"
)

// When NATS is down, ingest must answer 503 so the registry retries, and
// must not claim success.
func TestIngestAnswers503WhenBackboneIsDown(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	d, err := ingest.NewDistribution(ingest.DistributionConfig{Token: webhookToken})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ingest.NewServer(ingest.Config{PublishTimeout: 500 * time.Millisecond, Ready: conn.Ready, Logger: testkit.Logger(t)}, backbone.NewPublisher(conn.JS), d)
	if err != nil {
		t.Fatal(err)
	}
	base := serveHTTP(t, srv.Handler())
	conn.Embedded.Shutdown()
	conn.Embedded.WaitForShutdown()

	body, err := os.ReadFile("../../services/ingest/ingest/testdata/distribution/v2-manifest-push.json")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/distribution", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+webhookToken)
	req.Header.Set("Content-Type", ingest.DistributionEventsV2)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	ready, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d with NATS down, want 503", ready.StatusCode)
	}
}
