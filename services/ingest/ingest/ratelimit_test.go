package ingest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/customs-dev/customs/pkg/testkit"
)

func TestRateLimitPerSource(t *testing.T) {
	t.Parallel()
	c, err := NewCIPush(CIPushConfig{Token: "ci-token"})
	if err != nil {
		t.Fatal(err)
	}
	ce, err := NewCloudEvents(CloudEventsConfig{Token: "ce-token"})
	if err != nil {
		t.Fatal(err)
	}
	pub := &recPublisher{}
	srv, err := NewServer(Config{Logger: testkit.Logger(t), RateLimit: 0.01, RateBurst: 2}, pub, c, ce)
	if err != nil {
		t.Fatal(err)
	}
	body := fixture(t, "ci/push_event_minimal.json")
	send := func(path, remote, token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, bytesReader(body))
		req.RemoteAddr = remote
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec
	}
	for i := range 2 {
		if rec := send(CIPushPath, "10.0.0.1:5555", "ci-token"); rec.Code != http.StatusOK {
			t.Fatalf("request %d inside the burst: %d %s", i, rec.Code, rec.Body.String())
		}
	}
	rec := send(CIPushPath, "10.0.0.1:6666", "ci-token")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("request over the burst from the same address: %d, want 429", rec.Code)
	}
	if s, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After = %q, want whole seconds >= 1", rec.Header().Get("Retry-After"))
	}
	// Failed credentials count too, so guessing is throttled.
	if rec := send(CIPushPath, "10.0.0.1:7777", "guess"); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("guess over the limit: %d, want 429", rec.Code)
	}
	if rec := send(CIPushPath, "10.0.0.2:5555", "ci-token"); rec.Code != http.StatusOK {
		t.Fatalf("another address was throttled: %d", rec.Code)
	}
	if rec := send("/webhooks/cloudevents", "10.0.0.1:5555", "ce-token"); rec.Code == http.StatusTooManyRequests {
		t.Fatal("another receiver from the same address was throttled")
	}
	if n := len(pub.published()); n != 3 {
		t.Fatalf("published %d events, want 3 (the throttled ones must not publish)", n)
	}
}

func TestSourceLimiterRefillsAndForgets(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	l := newSourceLimiter(1, 1)
	l.now = func() time.Time { return now }
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	if ok, _ := l.allow("r", req); !ok {
		t.Fatal("first request refused")
	}
	ok, wait := l.allow("r", req)
	if ok || wait <= 0 || wait > time.Second {
		t.Fatalf("second request: ok=%v wait=%v, want refused for up to 1s", ok, wait)
	}
	now = now.Add(time.Second)
	if ok, _ := l.allow("r", req); !ok {
		t.Fatal("refused after the bucket refilled")
	}
	now = now.Add(2 * limiterIdle)
	l.allow("other", req)
	if len(l.buckets) != 1 {
		t.Fatalf("%d buckets after the idle sweep, want 1", len(l.buckets))
	}
	if newSourceLimiter(-1, 10) != nil {
		t.Fatal("a negative limit did not turn limiting off")
	}
}
