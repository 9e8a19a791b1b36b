// Package rules reads the promotion rules file and decides, for one artifact
// and one target environment, whether it may be promoted and with which
// tags. It does no I/O besides reading the file: the promotion service
// gathers the facts (verified keys and attestations, scan summary, tags,
// environment history) and asks.
package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// File is the rules file.
type File struct {
	Rules []Rule `yaml:"rules"`
}

// Rule maps a source repository pattern to its targets.
type Rule struct {
	ID string `yaml:"id"`
	// Source is a path.Match pattern over "registry/repository", e.g.
	// "*/team/*". "*" does not cross "/".
	Source string `yaml:"source"`
	// TagPolicy is the default for targets that set none.
	TagPolicy *TagPolicy `yaml:"tag_policy,omitempty"`
	Targets   []Target   `yaml:"targets"`
}

// Target is one environment a rule promotes into.
type Target struct {
	Environment string `yaml:"environment"`
	// Repository is the target "registry/repository". "{registry}",
	// "{repository}" and "{name}" (last path element) are replaced with the
	// source's.
	Repository string `yaml:"repository"`
	// Auto promotes on artifact.signed; otherwise only Promote does.
	Auto bool `yaml:"auto,omitempty"`
	// Keys names the public keys (by configured name or key id) one of
	// which must have signed the artifact. Empty means any configured key.
	Keys []string `yaml:"keys,omitempty"`
	// MaxSeverity is the highest finding severity allowed: "none", "low",
	// "medium", "high" or "critical". Empty means no limit.
	MaxSeverity string `yaml:"max_severity,omitempty"`
	// RequireAttestations lists in-toto predicate types (URIs, or the
	// cosign short names "cyclonedx", "vuln", "slsaprovenance",
	// "slsaprovenance1", "spdxjson") that must be attested by an allowed key.
	RequireAttestations []string `yaml:"require_attestations,omitempty"`
	// Requires names an environment the digest must already have been
	// promoted to (staging before prod).
	Requires  string     `yaml:"requires,omitempty"`
	TagPolicy *TagPolicy `yaml:"tag_policy,omitempty"`
}

// Severity order for MaxSeverity.
var severityRank = map[string]int{"none": 0, "unknown": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

var envNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// predicateAliases are cosign's --type short names.
var predicateAliases = map[string]string{
	"cyclonedx":       "https://cyclonedx.org/bom",
	"spdxjson":        "https://spdx.dev/Document",
	"vuln":            "https://cosign.sigstore.dev/attestation/vuln/v1",
	"slsaprovenance":  "https://slsa.dev/provenance/v0.2",
	"slsaprovenance1": "https://slsa.dev/provenance/v1",
}

// PredicateType resolves a cosign short name to its URI.
func PredicateType(s string) string {
	if u, ok := predicateAliases[s]; ok {
		return u
	}
	return s
}

// Load reads and validates a rules file.
func Load(file string) (*File, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", file, err)
	}
	return f, nil
}

// Parse decodes and validates rules YAML. Unknown fields are errors, so a
// typo cannot silently drop a requirement. yaml.v3 keeps a scalar's own
// text for string fields, so an unquoted all-digit tag pattern (0123456)
// is not read as a number first (JSON-converting decoders turn it into
// the octal value 42798).
func Parse(b []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks the rules and compiles their patterns.
func (f *File) Validate() error {
	var errs []error
	ids := map[string]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		if r.ID == "" {
			errs = append(errs, fmt.Errorf("rule %d: id is required", i))
		} else if ids[r.ID] {
			errs = append(errs, fmt.Errorf("rule %q: duplicate id", r.ID))
		}
		ids[r.ID] = true
		if _, err := path.Match(r.Source, ""); err != nil || r.Source == "" {
			errs = append(errs, fmt.Errorf("rule %q: bad source pattern %q", r.ID, r.Source))
		}
		if r.TagPolicy != nil {
			if err := r.TagPolicy.compile(); err != nil {
				errs = append(errs, fmt.Errorf("rule %q: %w", r.ID, err))
			}
		}
		if len(r.Targets) == 0 {
			errs = append(errs, fmt.Errorf("rule %q: no targets", r.ID))
		}
		envs := map[string]bool{}
		for j := range r.Targets {
			t := &r.Targets[j]
			if !envNameRE.MatchString(t.Environment) {
				errs = append(errs, fmt.Errorf("rule %q target %d: environment %q must be lower-case letters, digits and dashes", r.ID, j, t.Environment))
			}
			if envs[t.Environment] {
				errs = append(errs, fmt.Errorf("rule %q: environment %q listed twice", r.ID, t.Environment))
			}
			envs[t.Environment] = true
			if host, repo, ok := strings.Cut(t.Repository, "/"); !ok || host == "" || repo == "" {
				errs = append(errs, fmt.Errorf("rule %q target %s: repository %q must be registry/repository", r.ID, t.Environment, t.Repository))
			}
			if _, ok := severityRank[strings.ToLower(t.MaxSeverity)]; t.MaxSeverity != "" && !ok {
				errs = append(errs, fmt.Errorf("rule %q target %s: max_severity %q is not none, low, medium, high or critical", r.ID, t.Environment, t.MaxSeverity))
			}
			if t.Requires == t.Environment && t.Requires != "" {
				errs = append(errs, fmt.Errorf("rule %q target %s: requires itself", r.ID, t.Environment))
			}
			if t.TagPolicy != nil {
				if err := t.TagPolicy.compile(); err != nil {
					errs = append(errs, fmt.Errorf("rule %q target %s: %w", r.ID, t.Environment, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Match is one target that applies to a source repository.
type Match struct {
	Rule   *Rule
	Target *Target
	// TargetRepository is the expanded "registry/repository".
	TargetRepository string
}

// Policy returns the target's tag policy, or the rule's, or the default.
func (m Match) Policy() *TagPolicy {
	switch {
	case m.Target.TagPolicy != nil:
		return m.Target.TagPolicy
	case m.Rule.TagPolicy != nil:
		return m.Rule.TagPolicy
	}
	return &TagPolicy{}
}

// Targets returns every target for the source "registry/repository", in
// file order. The first rule that names an environment wins it.
func (f *File) Targets(registry, repository string) []Match {
	src := registry + "/" + repository
	var out []Match
	seen := map[string]bool{}
	for i := range f.Rules {
		r := &f.Rules[i]
		if ok, _ := path.Match(r.Source, src); !ok {
			continue
		}
		for j := range r.Targets {
			t := &r.Targets[j]
			if seen[t.Environment] {
				continue
			}
			seen[t.Environment] = true
			out = append(out, Match{Rule: r, Target: t, TargetRepository: expand(t.Repository, registry, repository)})
		}
	}
	return out
}

// Target returns the target for environment env, if a rule gives one.
func (f *File) Target(registry, repository, env string) (Match, bool) {
	for _, m := range f.Targets(registry, repository) {
		if m.Target.Environment == env {
			return m, true
		}
	}
	return Match{}, false
}

func expand(tmpl, registry, repository string) string {
	name := repository[strings.LastIndex(repository, "/")+1:]
	return strings.NewReplacer("{registry}", registry, "{repository}", repository, "{name}", name).Replace(tmpl)
}

// Facts is what the promotion service established about one artifact,
// from the registry and its own records, not from the triggering event.
type Facts struct {
	Digest string
	// Tags are the source tags that point at Digest now, plus the
	// provenance's semver and git SHA.
	Tags []string
	// MovedTags are tags that pointed at another digest before.
	MovedTags []string
	// SignedBy lists the names and key ids of the keys whose signature
	// verified in the registry.
	SignedBy []string
	// Attested lists the predicate types whose attestations verified.
	Attested []string
	// Scanned is false when no scan summary is known.
	Scanned bool
	// Counts of findings by severity name (lower case).
	Counts map[string]int
	// Environments the digest has been promoted to before.
	Environments []string
}

// Decision is the outcome for one target.
type Decision struct {
	Allowed bool
	// Reason is one line for the rejection event and the API.
	Reason string
	// Details lists every failed requirement and every dropped tag.
	Details []string
	// Tags are the tags to set on the target.
	Tags []string
}

// Evaluate applies m's requirements to facts. Every failed requirement is
// listed in Details; Reason is the first.
func Evaluate(m Match, f Facts) Decision {
	t := m.Target
	var d Decision
	fail := func(format string, args ...any) { d.Details = append(d.Details, fmt.Sprintf(format, args...)) }

	if len(f.SignedBy) == 0 {
		fail("no signature in the registry verifies with a configured public key")
	} else if len(t.Keys) > 0 && !slices.ContainsFunc(t.Keys, func(k string) bool { return slices.Contains(f.SignedBy, k) }) {
		fail("not signed by any key allowed for %s (want one of %s)", t.Environment, strings.Join(t.Keys, ", "))
	}
	for _, want := range t.RequireAttestations {
		if !slices.Contains(f.Attested, PredicateType(want)) {
			fail("missing verified attestation %s", PredicateType(want))
		}
	}
	if t.MaxSeverity != "" {
		limit := severityRank[strings.ToLower(t.MaxSeverity)]
		if !f.Scanned {
			fail("no scan result known, and %s allows at most %s findings", t.Environment, t.MaxSeverity)
		} else {
			for _, sev := range []string{"critical", "high", "medium", "low", "unknown"} {
				if n := f.Counts[sev]; n > 0 && severityRank[sev] > limit {
					fail("%d %s findings exceed the maximum severity %s", n, sev, t.MaxSeverity)
				}
			}
		}
	}
	if t.Requires != "" && !slices.Contains(f.Environments, t.Requires) {
		fail("must be promoted to %s before %s", t.Requires, t.Environment)
	}

	pol := m.Policy()
	var dropped []string
	for _, tag := range f.Tags {
		if kind, why := pol.Classify(tag); kind == TagRejected {
			dropped = append(dropped, why)
		} else if !slices.Contains(d.Tags, tag) {
			d.Tags = append(d.Tags, tag)
		}
	}
	slices.Sort(d.Tags)
	if len(d.Tags) == 0 {
		if len(dropped) == 0 {
			fail("the artifact has no tag to promote")
		}
		for _, why := range dropped {
			fail("%s", why)
		}
	}
	if pol.BlockTagMoves {
		for _, tag := range f.MovedTags {
			if slices.Contains(d.Tags, tag) {
				fail("tag %q moved from another digest, and tag moves are blocking for %s", tag, t.Environment)
			}
		}
	}
	if len(d.Details) > 0 {
		d.Reason = d.Details[0]
		d.Tags = nil
		return d
	}
	d.Allowed = true
	// Dropped tags are worth knowing even when the promotion goes ahead.
	d.Details = dropped
	return d
}
