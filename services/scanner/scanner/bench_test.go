package scanner_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/scanner"
)

// BenchmarkScanner measures one scanner process end to end: artifact.pushed
// in, pull, scan, report and SBOM stored, artifact.scanned out. "warm"
// images share their base layer (as images built FROM one base do) and
// differ in one small layer; "cold" images share nothing. Concurrency comes
// from CUSTOMS_BENCH_CONCURRENCY (default 4).
func BenchmarkScanner(b *testing.B) {
	conc := 4
	if v, err := strconv.Atoi(os.Getenv("CUSTOMS_BENCH_CONCURRENCY")); err == nil && v > 0 {
		conc = v
	}
	for _, mode := range []struct {
		name   string
		shared bool
	}{{"warm", true}, {"cold", false}} {
		b.Run(fmt.Sprintf("%s/concurrency=%d", mode.name, conc), func(b *testing.B) {
			e := newEnv(b)
			bin, err := goBinary()
			if err != nil {
				b.Fatal(err)
			}
			base := append(fixtures.AlpineFiles(), fixtures.GoBinaryFiles(bin)...)
			var refs []*customsv1.ArtifactRef
			for i := range b.N {
				img, err := fixtures.Variant(base, i, mode.shared)
				if err != nil {
					b.Fatal(err)
				}
				r := e.push(e.registry, img, "bench/"+mode.name, "v"+strconv.Itoa(i))
				refs = append(refs, r)
			}
			cfg := e.config()
			cfg.Concurrency = conc
			svc, err := scanner.NewService(context.Background(), cfg, e.conn.JS, testkit.Logger(b))
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range refs {
				e.pushed(r)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			go func() { _ = svc.Run(ctx) }()
			e.results(b.N, 30*time.Minute)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Minutes(), "images/min")
			b.ReportMetric(peakRSSMiB(), "peak-RSS-MiB")
		})
	}
}

// BenchmarkTrivyCLI runs the stock trivy CLI once per image, as a pipeline
// that shells out to it would, with the same DB (downloaded once from the
// same registry, then --skip-db-update) and a warm fs layer cache.
func BenchmarkTrivyCLI(b *testing.B) {
	for _, mode := range []struct {
		name   string
		shared bool
	}{{"warm", true}, {"cold", false}} {
		b.Run(mode.name, func(b *testing.B) {
			e := newEnv(b)
			cli := trivyCLI(b)
			bin, err := goBinary()
			if err != nil {
				b.Fatal(err)
			}
			base := append(fixtures.AlpineFiles(), fixtures.GoBinaryFiles(bin)...)
			cacheDir := b.TempDir()
			// Seed the DB once, outside the timer.
			seed, err := fixtures.Alpine()
			if err != nil {
				b.Fatal(err)
			}
			sr := e.push(e.registry, seed, "bench/seed", "v1")
			if out, err := exec.Command(cli, cliArgs(cacheDir, e.dbRef, e.javaDBRef, false, sr.GetRegistry()+"/"+sr.GetRepository()+"@"+sr.GetDigest())...).CombinedOutput(); err != nil {
				b.Fatalf("seed trivy CLI: %v\n%s", err, out)
			}
			var images []string
			for i := range b.N {
				img, err := fixtures.Variant(base, i, mode.shared)
				if err != nil {
					b.Fatal(err)
				}
				r := e.push(e.registry, img, "bench/cli-"+mode.name, "v"+strconv.Itoa(i))
				images = append(images, r.GetRegistry()+"/"+r.GetRepository()+"@"+r.GetDigest())
			}
			b.ResetTimer()
			start := time.Now()
			for _, image := range images {
				if out, err := exec.Command(cli, cliArgs(cacheDir, "", e.javaDBRef, true, image)...).CombinedOutput(); err != nil {
					b.Fatalf("trivy CLI: %v\n%s", err, out)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Minutes(), "images/min")
		})
	}
}

// peakRSSMiB is this process's peak resident set (VmHWM). The benchmark
// process also holds the NATS server and the registry.
func peakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
