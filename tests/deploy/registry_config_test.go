package deploy

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/distribution/v3/configuration"
)

// The registry's config.yml, parsed by Distribution's own parser with the
// environment compose gives the registry container, must notify ingest's
// webhook with the token from .env.
func TestComposeRegistryConfig(t *testing.T) {
	// No t.Parallel: Distribution's parser reads the process environment.
	p := loadCompose(t, true)
	reg := p.Services["registry"]
	for k, v := range env(reg) {
		t.Setenv(k, v)
	}
	f, err := os.Open(filepath.Join(repoRoot(t), "deploy/compose/registry/config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := configuration.Parse(f)
	if err != nil {
		t.Fatalf("Distribution rejects config.yml with the compose environment: %v", err)
	}

	endpoints := cfg.Notifications.Endpoints
	if len(endpoints) == 0 {
		t.Fatal("no notification endpoint")
	}
	ep := endpoints[0]
	_, ingestPort, err := net.SplitHostPort(env(p.Services["ingest"])["CUSTOMS_INGEST_LISTEN"])
	if err != nil {
		t.Fatalf("ingest listen address: %v", err)
	}
	want := url.URL{Scheme: "http", Host: net.JoinHostPort("ingest", ingestPort), Path: "/webhooks/distribution"}
	if ep.URL != want.String() || ep.Disabled {
		t.Errorf("endpoint 0 = %q (disabled %v), want %q enabled", ep.URL, ep.Disabled, want.String())
	}
	if got := ep.Headers.Values("Authorization"); !slices.Equal(got, []string{"Bearer " + sentinelToken}) {
		t.Errorf("endpoint 0 Authorization = %q, want the token from .env", got)
	}
	if !slices.Contains(ep.Ignore.Actions, "pull") {
		t.Errorf("endpoint 0 does not ignore pulls: %v", ep.Ignore.Actions)
	}
	if ep.Timeout <= 0 || ep.Threshold <= 0 || ep.Backoff <= 0 {
		t.Errorf("endpoint 0 needs a timeout, threshold and backoff: %+v", ep)
	}

	root, _ := cfg.Storage.Parameters()["rootdirectory"].(string)
	var persisted bool
	for _, v := range reg.Volumes {
		persisted = persisted || (v.Type == "volume" && v.Target == root)
	}
	if root == "" || !persisted {
		t.Errorf("registry storage %q is not on a named volume", root)
	}
	_, port, _ := net.SplitHostPort(cfg.HTTP.Addr)
	if !slices.ContainsFunc(reg.Ports, func(pc types.ServicePortConfig) bool { return strconv.Itoa(int(pc.Target)) == port }) {
		t.Errorf("registry listens on %q but does not publish that port", cfg.HTTP.Addr)
	}
}
