package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestClassifyTag(t *testing.T) {
	t.Parallel()
	pol := &TagPolicy{Patterns: []string{`release-[0-9]+`, `stable`}}
	if err := pol.compile(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tag      string
		want     TagKind
		inReason string
	}{
		{tag: "v1.2.3", want: TagSemver},
		{tag: "v0.0.1", want: TagSemver},
		{tag: "v1.2.3-rc.1", want: TagSemver},
		{tag: "v1.2.3+build.7", want: TagSemver},
		{tag: "v10.20.30-alpha.beta.1+sha.5114f85", want: TagSemver},
		{tag: "1a2b3c4", want: TagGitSHA},
		{tag: "0123456789abcdef0123456789abcdef01234567", want: TagGitSHA},
		// An all-digit short SHA is a git SHA, never a version.
		{tag: "1234567", want: TagGitSHA},
		{tag: "release-42", want: TagPattern},
		{tag: "latest", want: TagRejected, inReason: "floating"},
		// A configured pattern cannot make a floating tag promotable.
		{tag: "stable", want: TagRejected, inReason: "floating"},
		{tag: "main", want: TagRejected, inReason: "floating"},
		{tag: "v1.2", want: TagRejected, inReason: "neither strict semver"},
		{tag: "1.2.3", want: TagRejected, inReason: "neither strict semver"},
		{tag: "v01.2.3", want: TagRejected, inReason: "neither strict semver"},
		{tag: "v1.2.3-", want: TagRejected, inReason: "neither strict semver"},
		{tag: "v1.2.3-01", want: TagRejected, inReason: "neither strict semver"},
		{tag: "123456", want: TagRejected, inReason: "neither strict semver"},
		{tag: "ABCDEF1", want: TagRejected, inReason: "git SHA"},
		{tag: "0123456789abcdef0123456789abcdef012345678", want: TagRejected, inReason: "git SHA"},
		{tag: "release-x", want: TagRejected, inReason: "pattern"},
		{tag: "", want: TagRejected, inReason: "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.tag, func(t *testing.T) {
			t.Parallel()
			got, why := pol.Classify(tc.tag)
			if got != tc.want {
				t.Fatalf("Classify(%q) = %v (%s), want %v", tc.tag, got, why, tc.want)
			}
			if tc.want == TagRejected && !strings.Contains(why, tc.inReason) {
				t.Errorf("reason %q does not mention %q", why, tc.inReason)
			}
			if tc.want != TagRejected && why != "" {
				t.Errorf("accepted tag has reason %q", why)
			}
		})
	}
}

func TestClassifyTagOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		pol  TagPolicy
		tag  string
		want TagKind
	}{
		{name: "prerelease refused", pol: TagPolicy{DisallowPrerelease: true}, tag: "v1.2.3-rc.1", want: TagRejected},
		{name: "build metadata is not a prerelease", pol: TagPolicy{DisallowPrerelease: true}, tag: "v1.2.3+b-1", want: TagSemver},
		{name: "semver off", pol: TagPolicy{DisallowSemver: true}, tag: "v1.2.3", want: TagRejected},
		{name: "git sha off", pol: TagPolicy{DisallowGitSHA: true}, tag: "1234567", want: TagRejected},
		{name: "extra floating tag", pol: TagPolicy{Floating: []string{"qa"}, Patterns: []string{"qa"}}, tag: "qa", want: TagRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.pol.compile(); err != nil {
				t.Fatal(err)
			}
			if got, why := tc.pol.Classify(tc.tag); got != tc.want {
				t.Errorf("Classify(%q) = %v (%s), want %v", tc.tag, got, why, tc.want)
			}
		})
	}
}

const sampleRules = `
rules:
  - id: team-apps
    source: "*/team/*"
    targets:
      - environment: staging
        repository: "{registry}/staging/{repository}"
        auto: true
        max_severity: high
      - environment: prod
        repository: "prod.example.com/{name}"
        requires: staging
        keys: [release]
        require_attestations: [cyclonedx]
        tag_policy:
          block_tag_moves: true
  - id: fallback
    source: "*/*/*"
    targets:
      - environment: staging
        repository: "other/x"
      - environment: qa
        repository: "{registry}/qa/{repository}"
`

func TestTargets(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte(sampleRules))
	if err != nil {
		t.Fatal(err)
	}
	got := f.Targets("reg:5000", "team/app")
	var desc []string
	for _, m := range got {
		desc = append(desc, m.Rule.ID+":"+m.Target.Environment+"="+m.TargetRepository)
	}
	want := []string{"team-apps:staging=reg:5000/staging/team/app", "team-apps:prod=prod.example.com/app", "fallback:qa=reg:5000/qa/team/app"}
	if !slices.Equal(desc, want) {
		t.Errorf("Targets = %v, want %v", desc, want)
	}
	if got := f.Targets("reg:5000", "solo"); len(got) != 0 {
		t.Errorf("solo matched %d targets", len(got))
	}
	if _, ok := f.Target("reg:5000", "team/app", "nope"); ok {
		t.Error("unknown environment matched")
	}
}

func TestParseRejectsBadRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{name: "unknown field", yaml: "rules:\n- id: a\n  source: '*'\n  targets: [{environment: s, repository: r/x, max_severity: high, auto_promote: true}]", want: "auto_promote"},
		{name: "bad severity", yaml: "rules:\n- id: a\n  source: '*'\n  targets: [{environment: s, repository: r/x, max_severity: severe}]", want: "max_severity"},
		{name: "bad env", yaml: "rules:\n- id: a\n  source: '*'\n  targets: [{environment: Prod, repository: r/x}]", want: "environment"},
		{name: "no registry", yaml: "rules:\n- id: a\n  source: '*'\n  targets: [{environment: s, repository: x}]", want: "registry/repository"},
		{name: "bad pattern", yaml: "rules:\n- id: a\n  source: '['\n  targets: [{environment: s, repository: r/x}]", want: "source pattern"},
		{name: "bad regexp", yaml: "rules:\n- id: a\n  source: '*'\n  tag_policy: {patterns: ['(']}\n  targets: [{environment: s, repository: r/x}]", want: "tag pattern"},
		{name: "duplicate id", yaml: "rules:\n- id: a\n  source: '*'\n  targets: [{environment: s, repository: r/x}]\n- id: a\n  source: '*'\n  targets: [{environment: t, repository: r/x}]", want: "duplicate"},
		{name: "no targets", yaml: "rules:\n- id: a\n  source: '*'", want: "no targets"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// An unquoted all-digit pattern in YAML is a number (0123456 even an octal
// one in YAML 1.1); it must still reach the policy as the literal text.
func TestDigitPatternStaysText(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte("rules:\n- id: a\n  source: '*'\n  tag_policy: {patterns: [0123456, 1234567]}\n  targets: [{environment: s, repository: r/x}]"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Rules[0].TagPolicy.Patterns; !slices.Equal(got, []string{"0123456", "1234567"}) {
		t.Errorf("patterns = %q", got)
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	f, err := Parse([]byte(sampleRules))
	if err != nil {
		t.Fatal(err)
	}
	staging, _ := f.Target("reg", "team/app", "staging")
	prod, _ := f.Target("reg", "team/app", "prod")
	good := Facts{
		Tags: []string{"v1.2.3", "1234567", "latest"}, SignedBy: []string{"release", "sha256:ab"},
		Attested: []string{"https://cyclonedx.org/bom"}, Scanned: true, Counts: map[string]int{"high": 2},
		Environments: []string{"staging"},
	}
	with := func(mut func(*Facts)) Facts {
		f := good
		f.Tags = slices.Clone(good.Tags)
		mut(&f)
		return f
	}
	tests := []struct {
		name     string
		m        Match
		facts    Facts
		allowed  bool
		tags     []string
		inReason string
	}{
		{name: "staging ok, latest dropped", m: staging, facts: good, allowed: true, tags: []string{"1234567", "v1.2.3"}},
		{name: "prod ok", m: prod, facts: good, allowed: true, tags: []string{"1234567", "v1.2.3"}},
		{name: "unsigned", m: staging, facts: with(func(f *Facts) { f.SignedBy = nil }), inReason: "no signature"},
		{name: "wrong key for prod", m: prod, facts: with(func(f *Facts) { f.SignedBy = []string{"dev"} }), inReason: "not signed by any key allowed"},
		{name: "critical over high", m: staging, facts: with(func(f *Facts) { f.Counts = map[string]int{"critical": 1} }), inReason: "1 critical findings exceed"},
		{name: "not scanned", m: staging, facts: with(func(f *Facts) { f.Scanned = false }), inReason: "no scan result"},
		{name: "prod before staging", m: prod, facts: with(func(f *Facts) { f.Environments = nil }), inReason: "must be promoted to staging before prod"},
		{name: "missing attestation", m: prod, facts: with(func(f *Facts) { f.Attested = nil }), inReason: "missing verified attestation https://cyclonedx.org/bom"},
		{name: "only latest", m: staging, facts: with(func(f *Facts) { f.Tags = []string{"latest"} }), inReason: `"latest" is a floating tag`},
		{name: "no tags", m: staging, facts: with(func(f *Facts) { f.Tags = nil }), inReason: "no tag"},
		{name: "moved tag blocks prod", m: prod, facts: with(func(f *Facts) { f.MovedTags = []string{"v1.2.3"} }), inReason: `tag "v1.2.3" moved`},
		{name: "moved tag allowed in staging", m: staging, facts: with(func(f *Facts) { f.MovedTags = []string{"v1.2.3"} }), allowed: true, tags: []string{"1234567", "v1.2.3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := Evaluate(tc.m, tc.facts)
			if d.Allowed != tc.allowed {
				t.Fatalf("Allowed = %v, want %v (reason %q, details %v)", d.Allowed, tc.allowed, d.Reason, d.Details)
			}
			if tc.allowed {
				if !slices.Equal(d.Tags, tc.tags) {
					t.Errorf("Tags = %v, want %v", d.Tags, tc.tags)
				}
				return
			}
			if !strings.Contains(d.Reason, tc.inReason) {
				t.Errorf("Reason = %q, want it to mention %q (details %v)", d.Reason, tc.inReason, d.Details)
			}
		})
	}
}

func TestStoreReload(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(sampleRules)
	s, err := NewStore(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := s.Reload(); changed || err != nil {
		t.Fatalf("Reload of an unchanged file = %v, %v", changed, err)
	}
	write(strings.Replace(sampleRules, "auto: true", "auto: false", 1))
	if changed, err := s.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if m, _ := s.Current().Target("r", "team/app", "staging"); m.Target.Auto {
		t.Error("reloaded rules still auto-promote to staging")
	}
	write("rules: [")
	if _, err := s.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if s.Current() == nil || len(s.Current().Rules) != 2 {
		t.Error("a broken file replaced the rules in force")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleRules))
	f.Add([]byte("rules: []"))
	f.Add([]byte("rules:\n- id: a\n  source: '*'\n  tag_policy: {patterns: ['(a|b']}\n  targets: []"))
	f.Fuzz(func(_ *testing.T, b []byte) {
		rf, err := Parse(b)
		if err != nil {
			return
		}
		for _, r := range rf.Rules {
			for _, m := range rf.Targets("reg:5000", "team/app") {
				_ = Evaluate(m, Facts{Tags: []string{"v1.2.3", "latest"}})
			}
			_ = r
		}
	})
}

func FuzzClassifyTag(f *testing.F) {
	for _, s := range []string{"v1.2.3", "1234567", "latest", "v1.2", "v1.2.3-rc.1", "abcdef0"} {
		f.Add(s)
	}
	pol := &TagPolicy{}
	f.Fuzz(func(t *testing.T, tag string) {
		kind, why := pol.Classify(tag)
		if kind == TagRejected && why == "" {
			t.Fatalf("rejected %q without a reason", tag)
		}
		if kind == TagSemver && !strings.HasPrefix(tag, "v") {
			t.Fatalf("%q accepted as semver without v", tag)
		}
		if kind != TagRejected && slices.Contains(DefaultFloatingTags, tag) {
			t.Fatalf("floating tag %q accepted", tag)
		}
	})
}

// The rules shipped for `make run` must load and do what they say.
func TestDevRulesFile(t *testing.T) {
	t.Parallel()
	f, err := Load(filepath.Join("..", "..", "..", "deploy", "rules", "dev.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	staging, ok := f.Target("127.0.0.1:5000", "team/app", "staging")
	if !ok || !staging.Target.Auto || staging.TargetRepository != "127.0.0.1:5000/staging/team/app" {
		t.Errorf("staging = %+v", staging)
	}
	prod, ok := f.Target("127.0.0.1:5000", "team/app", "prod")
	if !ok || prod.Target.Auto || prod.Target.Requires != "staging" {
		t.Errorf("prod = %+v", prod)
	}
	if got := f.Targets("127.0.0.1:5000", "staging/team/app"); len(got) != 0 {
		t.Errorf("promoted copies match rules again: %d targets", len(got))
	}
	if d := Evaluate(staging, Facts{Tags: []string{"latest"}, SignedBy: []string{"k"}, Scanned: true}); d.Allowed || !strings.Contains(d.Reason, "floating") {
		t.Errorf("latest in staging: %+v", d)
	}
}
