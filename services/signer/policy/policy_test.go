package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/testkit"
)

var now = time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)

func finding(id, pkg string, sev customsv1.Severity, fixed string) *customsv1.Finding {
	return &customsv1.Finding{VulnerabilityId: id, PackageName: pkg, InstalledVersion: "1.0", FixedVersion: fixed, Severity: sev}
}

var (
	critFixed   = finding("CVE-2026-0001", "openssl", customsv1.Severity_SEVERITY_CRITICAL, "3.0.9")
	critNoFix   = finding("CVE-2026-0002", "zlib", customsv1.Severity_SEVERITY_CRITICAL, "")
	highFixed   = finding("CVE-2026-0003", "curl", customsv1.Severity_SEVERITY_HIGH, "8.1")
	mediumFixed = finding("CVE-2026-0004", "busybox", customsv1.Severity_SEVERITY_MEDIUM, "1.36")
	unknownSev  = finding("CVE-2026-0005", "musl", customsv1.Severity_SEVERITY_UNKNOWN, "")
)

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		policy     string // empty: Default()
		repository string
		findings   []*customsv1.Finding
		allowed    bool
		violations []string // vulnerability ids, in order
		waived     int
	}{
		{name: "default: clean", findings: nil, allowed: true},
		{name: "default: high only passes", findings: []*customsv1.Finding{highFixed, mediumFixed, unknownSev}, allowed: true},
		{name: "default: any critical rejects, fixed or not", findings: []*customsv1.Finding{critFixed, highFixed, critNoFix},
			violations: []string{"CVE-2026-0001", "CVE-2026-0002"}},
		{name: "threshold HIGH counts high and critical", policy: "severity: high",
			findings: []*customsv1.Finding{mediumFixed, highFixed, critNoFix}, violations: []string{"CVE-2026-0003", "CVE-2026-0002"}},
		{name: "threshold LOW ignores unknown", policy: "severity: LOW",
			findings: []*customsv1.Finding{unknownSev, mediumFixed}, violations: []string{"CVE-2026-0004"}},
		{name: "fixable-only skips findings without a fix", policy: "severity: CRITICAL\nfixableOnly: true",
			findings: []*customsv1.Finding{critNoFix}, allowed: true},
		{name: "fixable-only still rejects a fixable critical", policy: "fixableOnly: true",
			findings: []*customsv1.Finding{critNoFix, critFixed}, violations: []string{"CVE-2026-0001"}},
		{name: "allow-list entry in force waives", policy: `
allowlist:
  - id: cve-2026-0001
    expires: 2026-06-15
    reason: not reachable`, findings: []*customsv1.Finding{critFixed}, allowed: true, waived: 1},
		{name: "expired allow-list entry stops counting", policy: `
allowlist:
  - id: CVE-2026-0001
    expires: 2026-06-14
    reason: not reachable`, findings: []*customsv1.Finding{critFixed}, violations: []string{"CVE-2026-0001"}},
		{name: "RFC 3339 expiry one second ago has expired", policy: `
allowlist:
  - id: CVE-2026-0001
    expires: "2026-06-15T11:59:59Z"
    reason: r`, findings: []*customsv1.Finding{critFixed}, violations: []string{"CVE-2026-0001"}},
		{name: "allow-list entry for another package does not waive", policy: `
allowlist:
  - id: CVE-2026-0001
    package: libssl
    expires: 2027-01-01
    reason: r`, findings: []*customsv1.Finding{critFixed}, violations: []string{"CVE-2026-0001"}},
		{name: "per-repo override tightens the threshold", repository: "payments/api", policy: `
severity: CRITICAL
repositories:
  - match: payments/*
    severity: HIGH`, findings: []*customsv1.Finding{highFixed}, violations: []string{"CVE-2026-0003"}},
		{name: "per-repo override does not apply to other repos", repository: "web/site", policy: `
repositories:
  - match: payments/*
    severity: HIGH`, findings: []*customsv1.Finding{highFixed}, allowed: true},
		{name: "per-repo override turns fixable-only on", repository: "legacy/app", policy: `
repositories:
  - match: legacy/*
    fixableOnly: true`, findings: []*customsv1.Finding{critNoFix}, allowed: true},
		{name: "per-repo override turns fixable-only off", repository: "strict/app", policy: `
fixableOnly: true
repositories:
  - match: strict/*
    fixableOnly: false`, findings: []*customsv1.Finding{critNoFix}, violations: []string{"CVE-2026-0002"}},
		{name: "per-repo allow-list adds to the global one", repository: "legacy/app", policy: `
allowlist:
  - {id: CVE-2026-0001, expires: 2027-01-01, reason: global}
repositories:
  - match: legacy/*
    allowlist:
      - {id: CVE-2026-0002, expires: 2027-01-01, reason: legacy only}`,
			findings: []*customsv1.Finding{critFixed, critNoFix}, allowed: true, waived: 2},
		{name: "per-repo allow-list does not leak to other repos", repository: "web/app", policy: `
repositories:
  - match: legacy/*
    allowlist:
      - {id: CVE-2026-0002, expires: 2027-01-01, reason: legacy only}`,
			findings: []*customsv1.Finding{critNoFix}, violations: []string{"CVE-2026-0002"}},
		{name: "first matching override wins", repository: "team/app", policy: `
repositories:
  - match: team/*
    severity: MEDIUM
  - match: team/app
    severity: CRITICAL`, findings: []*customsv1.Finding{mediumFixed}, violations: []string{"CVE-2026-0004"}},
		{name: "JSON policy", policy: `{"name":"j","severity":"HIGH"}`, findings: []*customsv1.Finding{highFixed},
			violations: []string{"CVE-2026-0003"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := Default()
			if tt.policy != "" {
				var err error
				if p, err = Parse([]byte(tt.policy)); err != nil {
					t.Fatalf("Parse: %v", err)
				}
			}
			repo := tt.repository
			if repo == "" {
				repo = "team/app"
			}
			d := p.Evaluate(repo, tt.findings, now)
			if d.Allowed != tt.allowed {
				t.Fatalf("Allowed = %v, want %v; violations %q", d.Allowed, tt.allowed, d.Violations)
			}
			if len(d.Violations) != len(tt.violations) {
				t.Fatalf("violations = %q, want ids %q", d.Violations, tt.violations)
			}
			for i, id := range tt.violations {
				if !strings.HasPrefix(d.Violations[i], id+" ") {
					t.Errorf("violation %d = %q, want it to name %s", i, d.Violations[i], id)
				}
			}
			if len(d.Waived) != tt.waived {
				t.Errorf("waived = %q, want %d entries", d.Waived, tt.waived)
			}
			if !d.Allowed && !strings.Contains(d.Reason(), p.ID()) {
				t.Errorf("reason %q does not name the policy %s", d.Reason(), p.ID())
			}
		})
	}
}

func TestViolationNamesTheFinding(t *testing.T) {
	t.Parallel()
	f := finding("CVE-2026-0001", "openssl", customsv1.Severity_SEVERITY_CRITICAL, "3.0.9")
	f.Target = "alpine 3.19"
	d := Default().Evaluate("a/b", []*customsv1.Finding{f}, now)
	want := "CVE-2026-0001 CRITICAL in openssl 1.0 (fixed in 3.0.9) [alpine 3.19]"
	if len(d.Violations) != 1 || d.Violations[0] != want {
		t.Fatalf("violations = %q, want [%q]", d.Violations, want)
	}
}

func TestParseRejectsBadPolicies(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc, want string }{
		{"empty", "  \n", "empty"},
		{"unknown field", "severty: HIGH", "severty"},
		{"bad severity", "severity: SEVERE", "unknown severity"},
		{"allow entry without reason", "allowlist: [{id: CVE-1, expires: 2027-01-01}]", "reason is required"},
		{"allow entry without expiry", "allowlist: [{id: CVE-1, reason: r}]", "expires is required"},
		{"allow entry bad expiry", "allowlist: [{id: CVE-1, reason: r, expires: next week}]", "want YYYY-MM-DD"},
		{"allow entry without id", "allowlist: [{reason: r, expires: 2027-01-01}]", "id is required"},
		{"override without match", "repositories: [{severity: HIGH}]", "match is required"},
		{"override bad glob", "repositories: [{match: 'a/[', severity: HIGH}]", "syntax error"},
		{"override bad severity", "repositories: [{match: a/*, severity: nope}]", "unknown severity"},
		{"not a mapping", "- a\n- b", "invalid policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.doc))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestPolicyIDChangesWithContent(t *testing.T) {
	t.Parallel()
	a, _ := Parse([]byte("name: prod\nseverity: HIGH"))
	b, _ := Parse([]byte("name: prod\nseverity: CRITICAL"))
	if a.ID() == b.ID() || !strings.HasPrefix(a.ID(), "prod@sha256:") {
		t.Fatalf("ids %q and %q: want distinct prod@sha256:... ids", a.ID(), b.ID())
	}
	if Default().ID() != "default@builtin" {
		t.Fatalf("default id = %q", Default().ID())
	}
}

func TestStoreReloadsAndKeepsLastGoodPolicy(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(doc string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("name: v1\nseverity: CRITICAL", now)
	s, err := NewStore(path, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	high := []*customsv1.Finding{highFixed}
	if !s.Current().Evaluate("a/b", high, now).Allowed {
		t.Fatal("v1 should allow a HIGH finding")
	}

	write("name: v2\nseverity: HIGH", now.Add(time.Second))
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v; want changed", changed, err)
	}
	if s.Current().Name != "v2" || s.Current().Evaluate("a/b", high, now).Allowed {
		t.Fatalf("v2 should be in force and reject a HIGH finding, have %s", s.Current().ID())
	}

	write("severity: [broken", now.Add(2*time.Second))
	if _, err := s.Reload(); err == nil {
		t.Fatal("Reload of a broken file should fail")
	}
	if s.Current().Name != "v2" {
		t.Fatalf("a broken file replaced the policy: %s", s.Current().ID())
	}

	if changed, err := s.Reload(); err != nil || changed {
		t.Fatalf("Reload of an unchanged file = %v, %v; want no change", changed, err)
	}
}

func TestStoreWithoutPathUsesDefault(t *testing.T) {
	t.Parallel()
	s, err := NewStore("", testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if s.Current().ID() != Default().ID() {
		t.Fatalf("policy = %s, want the default", s.Current().ID())
	}
	if _, err := NewStore(filepath.Join(t.TempDir(), "missing.yaml"), testkit.Logger(t)); err == nil {
		t.Fatal("NewStore with a missing file should fail")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("severity: HIGH\nfixableOnly: true"))
	f.Add([]byte(`{"allowlist":[{"id":"CVE-1","expires":"2027-01-01","reason":"r"}]}`))
	f.Add([]byte("repositories: [{match: 'a/*', severity: LOW, allowlist: [{id: x, expires: '2027-01-01T00:00:00Z', reason: r}]}]"))
	f.Add([]byte("- a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		// A valid policy must evaluate without panicking.
		p.Evaluate("a/b", []*customsv1.Finding{critFixed, critNoFix, highFixed}, now)
	})
}
