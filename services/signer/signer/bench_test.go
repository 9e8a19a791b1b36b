package signer_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/customs-dev/customs/pkg/devregistry"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/signer/signer"
)

// Benchmarks run with `make bench-signer` (not in `make test`):
//
//	go test ./signer/ -run '^$' -bench . -benchtime 2000x
//
// They sign distinct images on a real Distribution registry with
// filesystem storage on 127.0.0.1, through the same Signer the service
// uses: State (the idempotency check), Sign and, for the second one,
// Attest with the CycloneDX SBOM and the vuln scan.

// benchRegistry is a Distribution registry with filesystem storage, so the
// registry's own memory does not grow with every signature and hide or
// fake a leak in the signer.
func benchRegistry(b *testing.B) string {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// tmpfs keeps the registry's disk out of the numbers on a busy machine.
	base := ""
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "signer-bench-registry-")
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Getenv("SIGNER_BENCH_INMEMORY") != "" {
		dir = ""
	}
	h, err := devregistry.New(ctx, devregistry.Config{StorageDir: dir})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(func() {
		srv.Close()
		cancel()
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

type benchEnv struct {
	signer *signer.Signer
	host   string
	preds  []signer.Predicate
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	s, err := signer.NewSigner(loadKey(b, keyPair(b)), "")
	if err != nil {
		b.Fatal(err)
	}
	vuln := []byte(`{"invocation":{"parameters":null,"uri":"customs:scanner","event_id":"bench","builder.id":""},` +
		`"scanner":{"uri":"https://github.com/aquasecurity/trivy","version":"0.74.0","db":{"uri":"trivy-db","version":"2"},"result":` +
		string(testdata(b, "trivy-high.json")) + `},"metadata":{"scanStartedOn":"2026-11-28T15:00:00Z","scanFinishedOn":"2026-11-28T15:00:00Z"}}`)
	return &benchEnv{
		signer: s,
		host:   benchRegistry(b),
		preds: []signer.Predicate{
			{Type: "cyclonedx", URI: signer.PredicateCycloneDX, Body: testdata(b, "sbom.cdx.json")},
			{Type: "vuln", URI: signer.PredicateVuln, Body: vuln},
		},
	}
}

func (e *benchEnv) images(b *testing.B, n int) []name.Digest {
	b.Helper()
	out := make([]name.Digest, n)
	for i := range out {
		out[i] = pushImage(b, e.host, "bench/app", fmt.Sprintf("v%d", i))
	}
	return out
}

func (e *benchEnv) signOne(b *testing.B, d name.Digest, attest bool) {
	ctx := context.Background()
	t := signer.Target{Digest: d, Remote: []remote.Option{remote.WithContext(ctx)}}
	st, err := e.signer.State(ctx, t)
	if err != nil {
		b.Fatal(err)
	}
	if st.Signed() {
		b.Fatalf("%s already signed", d)
	}
	if _, err := e.signer.Sign(ctx, t, st, map[string]any{signer.AnnotationPolicy: "bench"}); err != nil {
		b.Fatal(err)
	}
	if attest {
		atts, err := e.signer.Attest(ctx, t, st, e.preds)
		if err != nil || len(atts) != 2 {
			b.Fatalf("Attest = %d, %v", len(atts), err)
		}
	}
}

func benchSign(b *testing.B, attest bool) {
	e := newBenchEnv(b)
	imgs := e.images(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		e.signOne(b, imgs[i], attest)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "images/s")
}

// BenchmarkSign is the signature alone (with the registry check first).
func BenchmarkSign(b *testing.B) { benchSign(b, false) }

// BenchmarkSignAttest is the signature plus the SBOM and vuln attestations.
func BenchmarkSignAttest(b *testing.B) { benchSign(b, true) }

// BenchmarkSignMemory signs SIGNER_BENCH_MEMORY_N images (default 10000)
// and reports the live heap after a GC at 10% and at 100% of them. Flat
// memory means the two are close. Run it with -benchtime 1x.
func BenchmarkSignMemory(b *testing.B) {
	n := 10000
	if v := os.Getenv("SIGNER_BENCH_MEMORY_N"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil {
			b.Fatal(err)
		}
	}
	e := newBenchEnv(b)
	heap := func() float64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	for range b.N {
		var early float64
		for i := range n {
			d := pushImage(b, e.host, "bench/mem", "latest")
			e.signOne(b, d, false)
			if i+1 == n/10 {
				early = heap()
			}
		}
		b.ReportMetric(early, "MiB-heap@10%")
		b.ReportMetric(heap(), "MiB-heap@100%")
	}
}

// BenchmarkCosignCLISign runs the stock `cosign sign --key` once per image
// against the same kind of registry: a process start and an scrypt key
// decryption each time.
func BenchmarkCosignCLISign(b *testing.B) {
	cli := testkit.CosignCLI(b)
	files := keyPair(b)
	pw, err := os.ReadFile(files.Password)
	if err != nil {
		b.Fatal(err)
	}
	e := newBenchEnv(b)
	imgs := e.images(b, b.N)
	home := b.TempDir()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		cmd := exec.Command(cli, "sign", "--key", files.PrivateKey, "--tlog-upload=false", "--allow-http-registry=true",
			"--yes", imgs[i].String())
		cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+strings.TrimSpace(string(pw)), "HOME="+home,
			"TUF_ROOT="+home+"/tuf", "DOCKER_CONFIG="+home+"/docker", "SIGSTORE_REKOR_PUBLIC_KEY="+files.PublicKey)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("cosign sign: %v\n%s", err, out)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "images/s")
}
