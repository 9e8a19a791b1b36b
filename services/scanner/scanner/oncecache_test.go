package scanner

import (
	"context"
	"testing"
	"time"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
)

func TestOnceCacheAnalysesALayerOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// finish is what the first scan does with its claim.
		finish     func(ctx context.Context, c *onceCache, release func()) error
		wantSecond []string
	}{
		{
			name: "first scan stores the layer: the second finds it cached",
			finish: func(ctx context.Context, c *onceCache, release func()) error {
				defer release()
				return c.PutBlob(ctx, "sha256:layer", ftypes.BlobInfo{SchemaVersion: ftypes.BlobJSONSchemaVersion})
			},
			wantSecond: nil,
		},
		{
			name: "first scan fails: the second takes the claim over",
			finish: func(_ context.Context, _ *onceCache, release func()) error {
				release()
				return nil
			},
			wantSecond: []string{"sha256:layer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newOnceCache(cache.NewMemoryCache())
			ctx1, release1 := c.withClaims(context.Background())
			_, missing, err := c.MissingBlobs(ctx1, "sha256:art1", []string{"sha256:layer"})
			if err != nil || len(missing) != 1 {
				t.Fatalf("first scan: missing %v, err %v; want the layer", missing, err)
			}

			ctx2, release2 := c.withClaims(context.Background())
			defer release2()
			type answer struct {
				missing []string
				err     error
			}
			second := make(chan answer, 1)
			go func() {
				_, m, err := c.MissingBlobs(ctx2, "sha256:art2", []string{"sha256:layer"})
				second <- answer{m, err}
			}()
			select {
			case a := <-second:
				t.Fatalf("second scan did not wait for the first: %v", a)
			case <-time.After(50 * time.Millisecond):
			}
			if err := tt.finish(ctx1, c, release1); err != nil {
				t.Fatal(err)
			}
			a := <-second
			if a.err != nil || len(a.missing) != len(tt.wantSecond) {
				t.Fatalf("second scan: missing %v, err %v; want %v", a.missing, a.err, tt.wantSecond)
			}
		})
	}
}
