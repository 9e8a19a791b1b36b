package rules

import (
	"fmt"
	"regexp"
	"slices"
)

// TagKind is what a tag was recognised as.
type TagKind int

// Tag kinds. Only Semver, GitSHA and Pattern tags are ever promoted.
const (
	TagRejected TagKind = iota
	TagSemver
	TagGitSHA
	TagPattern
)

func (k TagKind) String() string {
	switch k {
	case TagSemver:
		return "semver"
	case TagGitSHA:
		return "git-sha"
	case TagPattern:
		return "pattern"
	}
	return "rejected"
}

// semverRE is strict semantic versioning 2.0.0 with a mandatory "v": no
// leading zeros, all three numbers, optional pre-release and build. The "v"
// is what keeps an all-digit short git SHA ("1234567") or a bare number
// from ever reading as a version.
var semverRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)` +
	`(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)(\.(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?` +
	`(\+[0-9a-zA-Z-]+(\.[0-9a-zA-Z-]+)*)?$`)

// gitSHARE is an abbreviated or full git commit id, lower-case as git
// prints it.
var gitSHARE = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// DefaultFloatingTags are tags that by convention move from build to build.
// They are never promoted, whatever the patterns say: promoting one would
// make the target's content change under the same name.
var DefaultFloatingTags = []string{"latest", "stable", "main", "master", "develop", "dev", "edge", "nightly", "head", "current", "release", "prod", "production", "staging"}

// TagPolicy decides which tags may be carried into a target.
type TagPolicy struct {
	// Patterns are extra regular expressions (anchored) whose matches are
	// promoted too.
	Patterns []string `yaml:"patterns,omitempty"`
	// Floating adds tags to DefaultFloatingTags.
	Floating []string `yaml:"floating,omitempty"`
	// DisallowSemver and DisallowGitSHA switch off the built-in kinds.
	DisallowSemver bool `yaml:"disallow_semver,omitempty"`
	DisallowGitSHA bool `yaml:"disallow_git_sha,omitempty"`
	// DisallowPrerelease refuses v1.2.3-rc.1 style versions.
	DisallowPrerelease bool `yaml:"disallow_prerelease,omitempty"`
	// BlockTagMoves refuses an artifact when one of its tags pointed at
	// another digest before (a moved tag) or points at another digest in
	// the target.
	BlockTagMoves bool `yaml:"block_tag_moves,omitempty"`

	compiled []*regexp.Regexp
}

func (p *TagPolicy) compile() error {
	p.compiled = p.compiled[:0]
	for _, s := range p.Patterns {
		re, err := regexp.Compile("^(?:" + s + ")$")
		if err != nil {
			return fmt.Errorf("tag pattern %q: %w", s, err)
		}
		p.compiled = append(p.compiled, re)
	}
	return nil
}

// Classify says whether tag may be promoted and, if not, why.
func (p *TagPolicy) Classify(tag string) (TagKind, string) {
	if tag == "" {
		return TagRejected, "empty tag"
	}
	if slices.Contains(DefaultFloatingTags, tag) || slices.Contains(p.Floating, tag) {
		return TagRejected, fmt.Sprintf("tag %q is a floating tag: it moves between builds and is never promoted", tag)
	}
	if !p.DisallowSemver && semverRE.MatchString(tag) {
		if p.DisallowPrerelease && isPrerelease(tag) {
			return TagRejected, fmt.Sprintf("tag %q is a pre-release version, which this target does not accept", tag)
		}
		return TagSemver, ""
	}
	if !p.DisallowGitSHA && gitSHARE.MatchString(tag) {
		return TagGitSHA, ""
	}
	for _, re := range p.compiled {
		if re.MatchString(tag) {
			return TagPattern, ""
		}
	}
	return TagRejected, fmt.Sprintf("tag %q is neither strict semver (vMAJOR.MINOR.PATCH) nor a git SHA (7 to 40 lower-case hex) and matches no configured pattern", tag)
}

func isPrerelease(tag string) bool {
	for i := 1; i < len(tag); i++ {
		switch tag[i] {
		case '-':
			return true
		case '+':
			return false
		}
	}
	return false
}

// IsSemver reports whether tag is a strict semver tag.
func IsSemver(tag string) bool { return semverRE.MatchString(tag) }

// IsGitSHA reports whether s is a git commit id.
func IsGitSHA(s string) bool { return gitSHARE.MatchString(s) }
