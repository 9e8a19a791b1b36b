package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
)

// fakePublisher records events and answers with PublishFunc.
type fakePublisher struct {
	PublishFunc func(ctx context.Context, evt *customsv1.Event) (backbone.PublishResult, error)

	mu        sync.Mutex
	published []*customsv1.Event
}

func (f *fakePublisher) Publish(ctx context.Context, evt *customsv1.Event) (backbone.PublishResult, error) {
	res, err := f.PublishFunc(ctx, evt)
	if err == nil {
		f.mu.Lock()
		f.published = append(f.published, evt)
		f.mu.Unlock()
	}
	return res, err
}

func okPublisher() *fakePublisher {
	seq := uint64(0)
	seen := map[string]bool{}
	var mu sync.Mutex
	return &fakePublisher{PublishFunc: func(_ context.Context, evt *customsv1.Event) (backbone.PublishResult, error) {
		mu.Lock()
		defer mu.Unlock()
		seq++
		dup := seen[evt.GetId()]
		seen[evt.GetId()] = true
		return backbone.PublishResult{Stream: "ARTIFACTS", Sequence: seq, Duplicate: dup}, nil
	}}
}

func post(t *testing.T, h http.Handler, body string) (*httptest.ResponseRecorder, Response) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/webhooks/distribution", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer tok")
	r.Header.Set("Content-Type", DistributionEventsV2)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var resp Response
	_ = json.Unmarshal(w.Body.Bytes(), &resp)
	return w, resp
}

func newTestServer(t *testing.T, pub Publisher) http.Handler {
	t.Helper()
	d, err := NewDistribution(DistributionConfig{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{}, pub, d)
	if err != nil {
		t.Fatal(err)
	}
	return s.Handler()
}

func TestWebhookPublishesThenAnswers(t *testing.T) {
	t.Parallel()
	pub := okPublisher()
	h := newTestServer(t, pub)
	body := string(readFixture(t, "v2-manifest-push.json"))

	w, resp := post(t, h, body)
	if w.Code != http.StatusOK || len(resp.Accepted) != 1 || resp.Accepted[0].Duplicate {
		t.Fatalf("first delivery: %d %s", w.Code, w.Body)
	}
	evt := pub.published[0]
	if evt.GetPushed().GetSource() != "distribution" || evt.GetCorrelationId() != evt.GetId() || evt.GetOccurredAt() == nil {
		t.Fatalf("published %v", evt)
	}
	// The registry retries: same event id, same dedup id.
	w, resp = post(t, h, body)
	if w.Code != http.StatusOK || !resp.Accepted[0].Duplicate || resp.Accepted[0].EventID != evt.GetId() {
		t.Fatalf("retry: %d %s", w.Code, w.Body)
	}
}

func TestWebhookBackboneFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantRetry  bool
	}{
		{name: "jetstream unavailable", err: fmt.Errorf("publish: %w: timeout", backbone.ErrUnavailable), wantStatus: http.StatusServiceUnavailable, wantRetry: true},
		{name: "unexpected error", err: fmt.Errorf("boom"), wantStatus: http.StatusServiceUnavailable, wantRetry: true},
		{name: "invalid event", err: fmt.Errorf("%w: missing id", backbone.ErrInvalidEvent), wantStatus: http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pub := &fakePublisher{PublishFunc: func(context.Context, *customsv1.Event) (backbone.PublishResult, error) {
				return backbone.PublishResult{}, tt.err
			}}
			w, _ := post(t, newTestServer(t, pub), string(readFixture(t, "v2-manifest-push.json")))
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", w.Code, w.Body, tt.wantStatus)
			}
			if got := w.Header().Get("Retry-After") != ""; got != tt.wantRetry {
				t.Fatalf("Retry-After set = %v, want %v", got, tt.wantRetry)
			}
		})
	}
}

func TestWebhookIgnoredOnlyAnswers202(t *testing.T) {
	t.Parallel()
	pub := okPublisher()
	body := `{"events":[{"id":"p","timestamp":"2026-01-01T00:00:00Z","action":"pull","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:` + strings.Repeat("a", 64) + `","repository":"a"},"request":{"host":"r.example"}}]}`
	w, resp := post(t, newTestServer(t, pub), body)
	if w.Code != http.StatusAccepted || len(resp.Ignored) != 1 || len(pub.published) != 0 {
		t.Fatalf("status %d body %s published %d", w.Code, w.Body, len(pub.published))
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	d, _ := NewDistribution(DistributionConfig{Token: "tok"})
	ready := fmt.Errorf("not connected to NATS")
	s, err := NewServer(Config{Ready: func(context.Context) error { return ready }}, okPublisher(), d)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != want {
			t.Errorf("%s = %d, want %d", path, w.Code, want)
		}
	}
	if _, err := NewServer(Config{}, okPublisher(), d, d); err == nil {
		t.Error("NewServer accepted the same receiver twice")
	}
}

// BenchmarkWebhook measures ingest's own work per webhook (parse, validate,
// build the event, answer), with a publisher that acks at once.
// go test -run '^$' -bench Webhook -benchmem ./services/ingest/ingest
func BenchmarkWebhook(b *testing.B) {
	pub := &fakePublisher{PublishFunc: func(context.Context, *customsv1.Event) (backbone.PublishResult, error) {
		return backbone.PublishResult{Sequence: 1}, nil
	}}
	d, _ := NewDistribution(DistributionConfig{Token: "tok"})
	s, err := NewServer(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, pub, d)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	body := readFixture(b, "v2-manifest-push.json")
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/distribution", bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer tok")
		r.Header.Set("Content-Type", DistributionEventsV2)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
		pub.published = pub.published[:0]
	}
}

func TestIgnoredRepositoriesAreNotPublished(t *testing.T) {
	t.Parallel()
	pub := okPublisher()
	d, _ := NewDistribution(DistributionConfig{Token: "tok"})
	s, err := NewServer(Config{IgnoreRepositories: []string{"customs/*", "mirror"}}, pub, d)
	if err != nil {
		t.Fatal(err)
	}
	for repo, wantPublished := range map[string]bool{"customs/trivy-db": false, "mirror": false, "team/app": true, "customs": true} {
		body := strings.Replace(string(readFixture(t, "v2-manifest-push.json")), `"repository": "team/app"`, `"repository": "`+repo+`"`, 1)
		before := len(pub.published)
		w, resp := post(t, s.Handler(), body)
		published := len(pub.published) > before
		if published != wantPublished {
			t.Errorf("%s: published %v, want %v (status %d, %s)", repo, published, wantPublished, w.Code, w.Body)
		}
		if !wantPublished && (w.Code != http.StatusAccepted || len(resp.Ignored) != 1 || !strings.Contains(resp.Ignored[0].Reason, "ignored pattern")) {
			t.Errorf("%s: status %d ignored %+v", repo, w.Code, resp.Ignored)
		}
	}
}

func TestCosignTagsAreNotArtifacts(t *testing.T) {
	t.Parallel()
	pub := okPublisher()
	h := newTestServer(t, pub)
	for tag, wantPublished := range map[string]bool{
		"sha256-" + strings.Repeat("a", 64) + ".sig":  false,
		"sha256-" + strings.Repeat("b", 64) + ".att":  false,
		"sha256-" + strings.Repeat("c", 64) + ".sbom": false,
		"sha256-abc.sig": true,
		"v1.2.3":         true,
	} {
		body := strings.Replace(string(readFixture(t, "v2-manifest-push.json")), `"tag": "v1.2.3"`, `"tag": "`+tag+`"`, 1)
		before := len(pub.published)
		w, resp := post(t, h, body)
		if published := len(pub.published) > before; published != wantPublished {
			t.Errorf("tag %s: published %v, want %v (%d %s)", tag, published, wantPublished, w.Code, w.Body)
		}
		if !wantPublished && (w.Code != http.StatusAccepted || !strings.Contains(resp.Ignored[0].Reason, "cosign")) {
			t.Errorf("tag %s: %d %+v", tag, w.Code, resp.Ignored)
		}
	}
}
