package ingest

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/customs-dev/customs/pkg/testkit"
)

// TestNewServiceMountsConfiguredReceivers checks the flag and environment
// wiring: a receiver with a secret is served, one without is not, and
// secrets can come from files.
func TestNewServiceMountsConfiguredReceivers(t *testing.T) {
	dir := t.TempDir()
	ghcrFile := filepath.Join(dir, "ghcr")
	if err := os.WriteFile(ghcrFile, []byte("gh-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTOMS_DISTRIBUTION_TOKEN", "dist")
	t.Setenv("CUSTOMS_HARBOR_AUTH_HEADER", "Bearer h")
	t.Setenv("CUSTOMS_GHCR_SECRET_FILE", ghcrFile)
	t.Setenv("CUSTOMS_DOCKERHUB_SECRET", hubSecret)
	t.Setenv("CUSTOMS_REGISTRIES", "docker.io")
	t.Setenv("CUSTOMS_CI_TOKEN", "ci")
	for _, env := range []string{"CUSTOMS_ZOT_TOKEN", "CUSTOMS_ZOT_USERNAME", "CUSTOMS_QUAY_SECRET", "CUSTOMS_CLOUDEVENTS_TOKEN", "CUSTOMS_INGEST_RATE_LIMIT"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	var cfg ServiceConfig
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimit != DefaultRateLimit {
		t.Fatalf("rate limit from flags = %v, want the default %v", cfg.RateLimit, DefaultRateLimit)
	}
	var logs strings.Builder
	srv, err := NewService(cfg, &recPublisher{}, nil, newBufferLogger(&logs))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "receivers=distribution,harbor,ghcr,dockerhub,ci") {
		t.Fatalf("enabled receivers not logged as expected: %s", logs.String())
	}
	for path, want := range map[string]int{
		"/webhooks/distribution":           http.StatusUnauthorized,
		"/webhooks/harbor":                 http.StatusUnauthorized,
		"/webhooks/ghcr":                   http.StatusUnauthorized,
		"/webhooks/dockerhub/" + hubSecret: http.StatusBadRequest,
		CIPushPath:                         http.StatusUnauthorized,
		"/webhooks/zot":                    http.StatusNotFound,
		"/webhooks/quay/" + quaySecret:     http.StatusNotFound,
		"/webhooks/cloudevents":            http.StatusNotFound,
	} {
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}")))
		if rec.Code != want {
			t.Errorf("POST %s = %d, want %d", path, rec.Code, want)
		}
	}
	// The GHCR secret came from the file: a body signed with it passes
	// authentication (and fails parsing for want of the event header).
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/webhooks/ghcr", strings.NewReader("{}"))
	req.Header.Set("X-Hub-Signature-256", ghcrSign("gh-secret", []byte("{}")))
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("GHCR with the file's secret = %d, want 400 (authenticated)", rec.Code)
	}
}

func TestNewServiceRefusesBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  ServiceConfig
		want string
	}{
		{name: "tag-only receiver without allow-list", cfg: ServiceConfig{DistributionToken: "d", DockerHubSecret: hubSecret}, want: "CUSTOMS_REGISTRIES"},
		{name: "zot without registry host", cfg: ServiceConfig{DistributionToken: "d", ZotToken: "z"}, want: "registry host"},
		{name: "short URL secret", cfg: ServiceConfig{DistributionToken: "d", QuaySecret: "short", Registries: "quay.io"}, want: "at least"},
		{name: "bad allow-list", cfg: ServiceConfig{DistributionToken: "d", Registries: "bad host"}, want: "allow-list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewService(tt.cfg, &recPublisher{}, nil, testkit.Logger(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewService error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
