package scanner_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
)

// A registry that wants basic auth: the scanner pulls with the credentials
// of that registry's allow-list entry, and a pull without them fails at once
// (401 will not go away by retrying).
func TestRegistryCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		user     string
		password string
		wantScan bool
	}{
		{name: "credentials of the entry", user: "scanner", password: "s3cret", wantScan: true},
		{name: "wrong password", user: "scanner", password: "nope", wantScan: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			target, _ := url.Parse("http://" + e.registry)
			rp := httputil.NewSingleHostReverseProxy(target)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if u, p, ok := r.BasicAuth(); !ok || u != "scanner" || p != "s3cret" {
					w.Header().Set("WWW-Authenticate", `Basic realm="customs-test"`)
					http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
					return
				}
				rp.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)
			host := strings.TrimPrefix(srv.URL, "http://")
			img, err := fixtures.Alpine()
			if err != nil {
				t.Fatal(err)
			}
			ref := e.push(host, img, "fixtures/alpine", "v1")

			cfg := e.config()
			cfg.AllowList.Add(registries.Registry{Host: host, Username: tt.user, Password: tt.password})
			e.start(cfg, e.conn.JS, testkit.Logger(t))
			e.pushed(ref)
			got := e.results(1, time.Minute)[0]
			if !tt.wantScan {
				if f := got.GetFailed(); f == nil || !strings.Contains(f.GetReason(), "UNAUTHORIZED") {
					t.Fatalf("want a failure about authentication, got %v", got)
				}
				if strings.Contains(got.GetFailed().GetReason(), tt.password) {
					t.Errorf("failure reason leaks the password: %s", got.GetFailed().GetReason())
				}
				return
			}
			if keys := scannedKeys(t, got); !slices.Equal(keys, wantFindings["alpine"]) {
				t.Errorf("findings with credentials %q", keys)
			}
		})
	}
}
