package testkit

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// CosignCLI returns the stock cosign CLI: $COSIGN_CLI when set (make test
// builds it once), else it is built from the cosign module the calling
// test's module requires, so CLI and library are the same version.
func CosignCLI(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("COSIGN_CLI"); p != "" {
		return p
	}
	out := filepath.Join(t.TempDir(), "cosign")
	cmd := exec.Command("go", "build", "-o", out, "github.com/sigstore/cosign/v2/cmd/cosign")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build cosign CLI: %v\n%s", err, b)
	}
	return out
}

// RunCosign runs the CLI fully offline: key-based verification with the
// tlog check off, plain-HTTP registries, TUF and caches in a throwaway
// home. Setting SIGSTORE_REKOR_PUBLIC_KEY (never used with the tlog check
// off) stops cosign from fetching the public-good trusted root first.
// args[0] is the subcommand, e.g. "verify".
func RunCosign(t testing.TB, cli, pubKey string, args ...string) ([]byte, error) {
	t.Helper()
	home := t.TempDir()
	full := append([]string{args[0]}, "--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true")
	full = append(full, args[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, full...)
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"TUF_ROOT="+filepath.Join(home, "tuf"),
		"SIGSTORE_NO_CACHE=true",
		"DOCKER_CONFIG="+filepath.Join(home, "docker"),
		"SIGSTORE_REKOR_PUBLIC_KEY="+pubKey,
	)
	return cmd.CombinedOutput()
}
