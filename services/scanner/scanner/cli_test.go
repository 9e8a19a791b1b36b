package scanner_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/scanner/scanner"
)

// trivyCLI returns the stock trivy CLI at the version this module links:
// $CUSTOMS_TRIVY_CLI when set, else it is built from the module cache (an
// incremental build, since it shares the build cache with this test).
func trivyCLI(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CUSTOMS_TRIVY_CLI"); p != "" {
		return p
	}
	path, err := buildTrivy()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			tb.Skipf("building the trivy CLI took longer than the test can wait; build it with `make trivy-cli` and set CUSTOMS_TRIVY_CLI: %v", err)
		}
		tb.Fatalf("build trivy CLI: %v", err)
	}
	return path
}

var buildTrivy = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "customs-trivy-cli-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "trivy")
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/aquasecurity/trivy/cmd/trivy")
	cmd.Env = append(os.Environ(), "GOEXPERIMENT=jsonv2")
	if msg, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", errors.New(err.Error() + "\n" + string(msg))
	}
	return out, nil
})

// cliArgs runs `trivy image` fully offline except for the registry: the
// DB comes from dbRepo (or the cache when skipUpdate), the Java DB from
// javaDBRepo (downloaded once, then fresh for three days), and only the
// vulnerability scanner runs.
func cliArgs(cacheDir, dbRepo, javaDBRepo string, skipUpdate bool, image string) []string {
	args := []string{"image", "--quiet", "--format", "json", "--cache-dir", cacheDir,
		"--scanners", "vuln", "--image-src", "remote", "--offline-scan", "--java-db-repository", javaDBRepo,
		"--skip-version-check", "--disable-telemetry"}
	if skipUpdate {
		args = append(args, "--skip-db-update")
	} else {
		args = append(args, "--db-repository", dbRepo)
	}
	return append(args, image)
}

type cliReport struct {
	Results []struct {
		Vulnerabilities []struct {
			VulnerabilityID  string
			PkgName          string
			InstalledVersion string
			FixedVersion     string
			Severity         string
		}
	}
}

func TestFindingsMatchTrivyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the stock trivy CLI; skipped with -short")
	}
	t.Parallel()
	e := newEnv(t)
	imgs := fixtureImages(t)
	bin := trivyCLI(t)
	svc, err := scanner.NewService(context.Background(), e.config(), e.conn.JS, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	first := true
	for name, img := range imgs {
		ref := e.push(e.registry, img, "cli/"+name, "v1")
		t.Run(name, func(t *testing.T) {
			res, err := svc.ScanOnce(context.Background(), ref)
			if err != nil {
				t.Fatalf("library scan: %v", err)
			}
			_, findings, _ := scanner.Summarize(res.Report, svc.DB(), "", time.Now(), -1)
			var lib []string
			for _, f := range findings {
				lib = append(lib, findingKey(f))
			}
			sort.Strings(lib)

			image := ref.GetRegistry() + "/" + ref.GetRepository() + "@" + ref.GetDigest()
			cmd := exec.Command(bin, cliArgs(cacheDir, e.dbRef, e.javaDBRef, !first, image)...)
			cmd.Env = append(os.Environ(), "TRIVY_NO_PROGRESS=true")
			first = false
			out, err := cmd.Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("trivy CLI: %v\n%s", err, ee.Stderr)
				}
				t.Fatalf("trivy CLI: %v", err)
			}
			var rep cliReport
			if err := json.Unmarshal(out, &rep); err != nil {
				t.Fatalf("trivy CLI output: %v\n%s", err, out)
			}
			var cli []string
			for _, r := range rep.Results {
				for _, v := range r.Vulnerabilities {
					cli = append(cli, v.VulnerabilityID+" "+v.PkgName+" "+v.InstalledVersion+" "+v.FixedVersion+" SEVERITY_"+v.Severity)
				}
			}
			sort.Strings(cli)
			if len(cli) == 0 {
				t.Fatalf("the CLI found nothing in %s; the comparison would prove nothing", name)
			}
			if !slices.Equal(lib, cli) {
				t.Errorf("library and CLI disagree on %s:\nlibrary %q\n    CLI %q", name, lib, cli)
			}
		})
	}
}
