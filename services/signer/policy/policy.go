// Package policy decides whether the signer may vouch for a scanned
// artifact: a severity threshold, optionally counting only fixable
// vulnerabilities, a CVE allow-list whose entries expire, and
// per-repository overrides.
package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// ErrInvalid is returned for a policy document that cannot be used.
var ErrInvalid = errors.New("invalid policy")

// Policy is the parsed policy file. YAML and JSON are both accepted.
//
//	name: production
//	severity: CRITICAL        # reject on any finding at or above this
//	fixableOnly: false        # true: count only findings with a fixed version
//	allowlist:
//	  - id: CVE-2024-0001
//	    expires: 2026-12-31
//	    reason: not reachable, tracked in SEC-12
//	repositories:
//	  - match: legacy/*       # path.Match glob on the repository
//	    severity: HIGH
//	    fixableOnly: true
//	    allowlist: [...]      # added to the global allow-list
type Policy struct {
	Name         string         `json:"name,omitempty"`
	Severity     string         `json:"severity,omitempty"`
	FixableOnly  bool           `json:"fixableOnly,omitempty"`
	Allowlist    []AllowEntry   `json:"allowlist,omitempty"`
	Repositories []RepoOverride `json:"repositories,omitempty"`
	threshold    customsv1.Severity
	digest       string
}

// AllowEntry tolerates one vulnerability id until it expires.
type AllowEntry struct {
	ID string `json:"id"`
	// Expires is a date (2006-01-02, valid through the end of that day UTC)
	// or an RFC 3339 time. After it the entry no longer counts.
	Expires string `json:"expires"`
	Reason  string `json:"reason"`
	// Package optionally narrows the entry to one package name.
	Package string `json:"package,omitempty"`
	expires time.Time
}

// RepoOverride changes the policy for repositories matching Match. The
// first matching override wins.
type RepoOverride struct {
	Match       string       `json:"match"`
	Severity    string       `json:"severity,omitempty"`
	FixableOnly *bool        `json:"fixableOnly,omitempty"`
	Allowlist   []AllowEntry `json:"allowlist,omitempty"`
	threshold   customsv1.Severity
}

// Default matches the classic `trivy --exit-code 1 --severity CRITICAL`:
// any CRITICAL finding, fixable or not, rejects.
func Default() *Policy {
	p := &Policy{Name: "default", Severity: "CRITICAL"}
	if err := p.validate(); err != nil {
		panic(err) // the literal above is valid
	}
	p.digest = "builtin"
	return p
}

// Parse reads a policy document (YAML or JSON). Unknown fields are errors,
// so a typo cannot silently loosen the policy.
func Parse(data []byte) (*Policy, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%w: empty document", ErrInvalid)
	}
	var p Policy
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	p.digest = "sha256:" + hex.EncodeToString(sum[:])
	return &p, nil
}

func (p *Policy) validate() error {
	if p.Name == "" {
		p.Name = "policy"
	}
	if p.Severity == "" {
		p.Severity = "CRITICAL"
	}
	var err error
	if p.threshold, err = ParseSeverity(p.Severity); err != nil {
		return fmt.Errorf("%w: severity: %w", ErrInvalid, err)
	}
	if err := validateAllowlist("allowlist", p.Allowlist); err != nil {
		return err
	}
	for i := range p.Repositories {
		o := &p.Repositories[i]
		if o.Match == "" {
			return fmt.Errorf("%w: repositories[%d]: match is required", ErrInvalid, i)
		}
		if _, err := path.Match(o.Match, ""); err != nil {
			return fmt.Errorf("%w: repositories[%d]: match %q: %w", ErrInvalid, i, o.Match, err)
		}
		o.threshold = p.threshold
		if o.Severity != "" {
			if o.threshold, err = ParseSeverity(o.Severity); err != nil {
				return fmt.Errorf("%w: repositories[%d]: severity: %w", ErrInvalid, i, err)
			}
		}
		if err := validateAllowlist(fmt.Sprintf("repositories[%d].allowlist", i), o.Allowlist); err != nil {
			return err
		}
	}
	return nil
}

func validateAllowlist(where string, entries []AllowEntry) error {
	for i := range entries {
		e := &entries[i]
		switch {
		case strings.TrimSpace(e.ID) == "":
			return fmt.Errorf("%w: %s[%d]: id is required", ErrInvalid, where, i)
		case strings.TrimSpace(e.Reason) == "":
			return fmt.Errorf("%w: %s[%d] (%s): reason is required", ErrInvalid, where, i, e.ID)
		case e.Expires == "":
			return fmt.Errorf("%w: %s[%d] (%s): expires is required", ErrInvalid, where, i, e.ID)
		}
		t, err := parseExpiry(e.Expires)
		if err != nil {
			return fmt.Errorf("%w: %s[%d] (%s): %w", ErrInvalid, where, i, e.ID, err)
		}
		e.expires = t
	}
	return nil
}

func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		// A date is valid through that whole day.
		return t.Add(24*time.Hour - time.Nanosecond), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("expires %q: want YYYY-MM-DD or RFC 3339", s)
}

// ParseSeverity parses a Trivy severity name (case-insensitive).
func ParseSeverity(s string) (customsv1.Severity, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "CRITICAL":
		return customsv1.Severity_SEVERITY_CRITICAL, nil
	case "HIGH":
		return customsv1.Severity_SEVERITY_HIGH, nil
	case "MEDIUM":
		return customsv1.Severity_SEVERITY_MEDIUM, nil
	case "LOW":
		return customsv1.Severity_SEVERITY_LOW, nil
	case "UNKNOWN":
		return customsv1.Severity_SEVERITY_UNKNOWN, nil
	}
	return 0, fmt.Errorf("unknown severity %q (want CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN)", s)
}

// SeverityName is the Trivy name of s.
func SeverityName(s customsv1.Severity) string {
	return strings.TrimPrefix(s.String(), "SEVERITY_")
}

// ID names the policy and the exact document it came from, for the
// signature annotations and the signed event.
func (p *Policy) ID() string { return p.Name + "@" + p.digest }

// Decision is the outcome of evaluating one artifact.
type Decision struct {
	Allowed bool
	// Policy is the ID of the policy that decided.
	Policy string
	// Rule describes the effective rule, e.g. "severity>=CRITICAL fixable-only".
	Rule string
	// Violations are the findings that caused a rejection, one line each.
	Violations []string
	// Allowed by the allow-list, one line each with the reason.
	Waived []string
}

// Reason is a one-line summary of a rejection.
func (d Decision) Reason() string {
	if d.Allowed {
		return ""
	}
	return fmt.Sprintf("%d finding(s) violate policy %s (%s)", len(d.Violations), d.Policy, d.Rule)
}

// Evaluate decides for findings of an artifact in repository at time now.
func (p *Policy) Evaluate(repository string, findings []*customsv1.Finding, now time.Time) Decision {
	threshold, fixableOnly := p.threshold, p.FixableOnly
	allow := p.Allowlist
	for _, o := range p.Repositories {
		if ok, _ := path.Match(o.Match, repository); ok {
			threshold = o.threshold
			if o.FixableOnly != nil {
				fixableOnly = *o.FixableOnly
			}
			allow = slices.Concat(o.Allowlist, allow)
			break
		}
	}
	rule := "severity>=" + SeverityName(threshold)
	if fixableOnly {
		rule += " fixable-only"
	}
	d := Decision{Allowed: true, Policy: p.ID(), Rule: rule}
	for _, f := range findings {
		if f.GetSeverity() < threshold {
			continue
		}
		if fixableOnly && f.GetFixedVersion() == "" {
			continue
		}
		if e := lookup(allow, f, now); e != nil {
			d.Waived = append(d.Waived, fmt.Sprintf("%s allowed until %s: %s", describe(f), e.Expires, e.Reason))
			continue
		}
		d.Allowed = false
		d.Violations = append(d.Violations, describe(f))
	}
	return d
}

func lookup(allow []AllowEntry, f *customsv1.Finding, now time.Time) *AllowEntry {
	for i := range allow {
		e := &allow[i]
		if !strings.EqualFold(e.ID, f.GetVulnerabilityId()) {
			continue
		}
		if e.Package != "" && e.Package != f.GetPackageName() {
			continue
		}
		if now.After(e.expires) {
			continue // expired entries stop counting
		}
		return e
	}
	return nil
}

func describe(f *customsv1.Finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s in %s %s", f.GetVulnerabilityId(), SeverityName(f.GetSeverity()), f.GetPackageName(), f.GetInstalledVersion())
	if f.GetFixedVersion() != "" {
		fmt.Fprintf(&b, " (fixed in %s)", f.GetFixedVersion())
	} else {
		b.WriteString(" (no fix)")
	}
	if f.GetTarget() != "" {
		fmt.Fprintf(&b, " [%s]", f.GetTarget())
	}
	return b.String()
}
