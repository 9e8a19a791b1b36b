package ingest

import (
	"net"
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
	l := newSourceLimiter(1, 1, nil)
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
	if newSourceLimiter(-1, 10, nil) != nil {
		t.Fatal("a negative limit did not turn limiting off")
	}
}

func TestClientAddrBehindTrustedProxies(t *testing.T) {
	t.Parallel()
	proxies, err := ParseTrustedProxies("10.0.0.0/8, 192.168.1.7,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{name: "direct client", remote: "203.0.113.9:4000", want: "203.0.113.9"},
		{name: "direct client cannot claim another address", remote: "203.0.113.9:4000", xff: []string{"198.51.100.1"}, want: "203.0.113.9"},
		{name: "one proxy", remote: "10.1.2.3:80", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
		{name: "the client's own claims left of it are ignored", remote: "10.1.2.3:80", xff: []string{"1.1.1.1, 198.51.100.1"}, want: "198.51.100.1"},
		{name: "two proxies", remote: "10.1.2.3:80", xff: []string{"198.51.100.1, 192.168.1.7"}, want: "198.51.100.1"},
		{name: "headers repeated", remote: "10.1.2.3:80", xff: []string{"198.51.100.1", "10.9.9.9"}, want: "198.51.100.1"},
		{name: "only proxies", remote: "10.1.2.3:80", xff: []string{"10.4.4.4, 10.5.5.5"}, want: "10.4.4.4"},
		{name: "proxy without the header", remote: "10.1.2.3:80", want: "10.1.2.3"},
		{name: "IPv6 proxy", remote: "[fd00::1]:80", xff: []string{"2001:db8::5"}, want: "2001:db8::5"},
		{name: "garbage is a key, not a bypass", remote: "10.1.2.3:80", xff: []string{"not-an-ip"}, want: "not-an-ip"},
		{name: "IPv4-mapped proxy", remote: "[::ffff:10.1.2.3]:80", xff: []string{"198.51.100.1"}, want: "198.51.100.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/", nil)
			req.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			if got := clientAddr(req, proxies); got != tc.want {
				t.Errorf("clientAddr = %q, want %q", got, tc.want)
			}
		})
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.example", "10.0.0.1/x"} {
		if _, err := ParseTrustedProxies(bad); err == nil {
			t.Errorf("ParseTrustedProxies(%q) accepted it", bad)
		}
	}
}

// Behind a trusted proxy, two clients get a bucket each.
func TestRateLimitBehindProxy(t *testing.T) {
	t.Parallel()
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	l := newSourceLimiter(0.01, 1, proxies)
	from := func(client string) *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req.RemoteAddr = "10.0.0.2:443"
		req.Header.Set("X-Forwarded-For", client)
		return req
	}
	if ok, _ := l.allow("r", from("198.51.100.1")); !ok {
		t.Fatal("first client refused")
	}
	if ok, _ := l.allow("r", from("198.51.100.2")); !ok {
		t.Fatal("second client shares the first one's bucket")
	}
	if ok, _ := l.allow("r", from("198.51.100.1")); ok {
		t.Fatal("first client not limited")
	}
}

func FuzzClientAddr(f *testing.F) {
	proxies, err := ParseTrustedProxies("10.0.0.0/8")
	if err != nil {
		f.Fatal(err)
	}
	f.Add("10.0.0.1:80", "198.51.100.1, 10.0.0.3")
	f.Add("203.0.113.9:1", ",,,")
	f.Add("[::1]:5", "")
	f.Fuzz(func(t *testing.T, remote, xff string) {
		req := httptest.NewRequest(http.MethodPost, "/", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(req, proxies)
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			host = remote
		}
		// A peer that is not a trusted proxy is always its own key.
		if !trusted(host, proxies) && got != host {
			t.Fatalf("untrusted peer %q keyed as %q", remote, got)
		}
	})
}
