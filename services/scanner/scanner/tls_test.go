package scanner_test

import (
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
)

// A registry behind TLS with a certificate nobody trusts: scans work only
// when its allow-list entry says ";insecure".
func TestInsecureTLSIsPerRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		option   string
		wantScan bool
	}{
		{name: "insecure entry skips verification", option: ";insecure", wantScan: true},
		{name: "plain entry verifies the certificate", option: "", wantScan: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			target, _ := url.Parse("http://" + e.registry)
			srv := httptest.NewTLSServer(httputil.NewSingleHostReverseProxy(target))
			t.Cleanup(srv.Close)
			tlsHost := strings.TrimPrefix(srv.URL, "https://")
			img, err := fixtures.Alpine()
			if err != nil {
				t.Fatal(err)
			}
			ref := e.push(tlsHost, img, "fixtures/alpine", "v1")
			cfg := e.config(tlsHost + tt.option)
			cfg.MaxDeliver = 1
			e.start(cfg, e.conn.JS, testkit.Logger(t))
			e.pushed(ref)
			got := e.results(1, time.Minute)[0]
			if !tt.wantScan {
				if f := got.GetFailed(); f == nil || !strings.Contains(f.GetReason(), "certificate") {
					t.Fatalf("want a failure about the certificate, got %v", got)
				}
				return
			}
			if keys := scannedKeys(t, got); !slices.Equal(keys, wantFindings["alpine"]) {
				t.Errorf("findings through TLS %q", keys)
			}
		})
	}
}
