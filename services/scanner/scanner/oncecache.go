package scanner

import (
	"context"
	"sync"

	"github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
)

// onceCache makes sure one worker never analyses the same layer twice, even
// when two concurrent scans share a layer that is not cached yet: the first
// scan claims the layer, the others wait until it is stored (or the claim is
// dropped because that scan failed) and then find it in the cache.
type onceCache struct {
	cache.Cache
	mu       sync.Mutex
	inflight map[string]chan struct{}
}

func newOnceCache(c cache.Cache) *onceCache {
	return &onceCache{Cache: c, inflight: map[string]chan struct{}{}}
}

type claimsKey struct{}

// claims are the layers one scan has promised to analyse.
type claims struct {
	mu  sync.Mutex
	ids []string
}

// withClaims returns a context for one scan and a func that drops the
// scan's unfulfilled claims; call it when the scan ends.
func (c *onceCache) withClaims(ctx context.Context) (context.Context, func()) {
	cl := &claims{}
	return context.WithValue(ctx, claimsKey{}, cl), func() {
		cl.mu.Lock()
		ids := cl.ids
		cl.ids = nil
		cl.mu.Unlock()
		for _, id := range ids {
			c.release(id)
		}
	}
}

func (c *onceCache) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	for {
		missingArtifact, missing, err := c.Cache.MissingBlobs(ctx, artifactID, blobIDs)
		if err != nil {
			return missingArtifact, missing, err
		}
		c.mu.Lock()
		var wait []chan struct{}
		for _, id := range missing {
			if ch, ok := c.inflight[id]; ok {
				wait = append(wait, ch)
			}
		}
		if len(wait) == 0 {
			cl, _ := ctx.Value(claimsKey{}).(*claims)
			if cl != nil {
				for _, id := range missing {
					c.inflight[id] = make(chan struct{})
				}
				cl.mu.Lock()
				cl.ids = append(cl.ids, missing...)
				cl.mu.Unlock()
			}
			c.mu.Unlock()
			return missingArtifact, missing, nil
		}
		c.mu.Unlock()
		for _, ch := range wait {
			select {
			case <-ch:
			case <-ctx.Done():
				return false, nil, ctx.Err()
			}
		}
	}
}

func (c *onceCache) PutBlob(ctx context.Context, blobID string, info ftypes.BlobInfo) error {
	err := c.Cache.PutBlob(ctx, blobID, info)
	c.release(blobID)
	return err
}

func (c *onceCache) release(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.inflight[id]; ok {
		close(ch)
		delete(c.inflight, id)
	}
}
