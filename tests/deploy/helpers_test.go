package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the repository root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root %s: %v", root, err)
	}
	return root
}

// sensitiveEnv matches variable names whose value is a secret, or names the
// place a secret is read from (…_FILE, CUSTOMS_SIGNER_KEY).
var sensitiveEnv = regexp.MustCompile(`(?i)(TOKEN|PASSWORD|SECRET|PASSPHRASE|CREDS|_KEY)(_FILE)?$|_AUTH_`)

// customsServices are the Customs services deployed on their own.
var customsServices = []string{"ingest", "query", "scanner", "signer", "promotion"}

// joinErrs renders problems one per line for a failure message.
func joinErrs(problems []string) string { return "\n  - " + strings.Join(problems, "\n  - ") }
