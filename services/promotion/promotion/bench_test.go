package promotion_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// BenchmarkPromotionOverhead measures what a promotion costs besides the
// registry copy: the idempotency read from KV, signature verification in
// the (loopback) registry with the cached key, tag resolution, the rules,
// publishing artifact.promoted and recording the deployment in KV. Two
// signed digests alternate so that every iteration is a real promotion.
func BenchmarkPromotionOverhead(b *testing.B) {
	e := start(b)
	ctx := context.Background()
	var digests []name.Digest
	for _, tag := range []string{"v1.0.0", "v1.0.1"} {
		d := pushImage(b, e.dev, "team/bench", tag)
		sign(b, d, e.release)
		e.awaitPushed(b, d, tag)
		scanned(b, e.pub, d, tag, 0)
		signedEvt(b, e.pub, d, tag, "signed-bench-"+tag)
		e.deployment(b, "staging", e.dev+"/staging/team/bench", d.DigestStr())
		digests = append(digests, d)
	}
	durs := make([]time.Duration, 0, b.N)
	i := 0
	for b.Loop() {
		start := time.Now()
		if err := e.svc.PromoteWithoutCopy(ctx, digests[i%2].DigestStr(), "staging"); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
		i++
	}
	b.StopTimer()
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds())/1e3, "p99-ms")
}

// BenchmarkVerifyCachedKey is the signature verification alone: fetch of
// the .sig manifest and layer from the loopback registry plus the ECDSA
// check with the already-parsed key.
func BenchmarkVerifyCachedKey(b *testing.B) {
	e := start(b)
	ctx := context.Background()
	d := pushImage(b, e.dev, "team/verify", "v1.0.0")
	sign(b, d, e.release)
	for b.Loop() {
		if err := e.svc.VerifyWithCachedKeys(ctx, e.dev+"/team/verify", d.DigestStr()); err != nil {
			b.Fatal(err)
		}
	}
}
