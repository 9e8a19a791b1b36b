package scanner_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
)

// The Redis layer cache lets a fleet of scanners share analysed layers.
// miniredis speaks the Redis protocol in-process.
func TestRedisLayerCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mr := miniredis.RunT(t)
	cfg := e.config()
	cfg.CacheBackend = "redis://" + mr.Addr()
	e.start(cfg, e.conn.JS, testkit.Logger(t))
	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	e.pushed(e.push(e.registry, img, "fixtures/alpine", "v1"))
	if got := scannedKeys(t, e.results(1, time.Minute)[0]); !slices.Equal(got, wantFindings["alpine"]) {
		t.Errorf("findings %q", got)
	}
	var blobs int
	for _, k := range mr.Keys() {
		if strings.Contains(k, "blob") {
			blobs++
		}
	}
	if blobs == 0 {
		t.Errorf("no layer in the Redis cache; keys %v", mr.Keys())
	}
}
