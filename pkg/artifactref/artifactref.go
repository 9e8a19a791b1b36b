// Package artifactref parses and validates the identities Customs keys
// everything by: digests, repositories, tags and references.
package artifactref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalid is wrapped by every validation error in this package.
var ErrInvalid = errors.New("invalid artifact reference")

var (
	// OCI distribution-spec repository name grammar.
	repoRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	// Host, optionally with a port; IPv6 literals in brackets.
	hostRE = regexp.MustCompile(`^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?)(:[0-9]{1,5})?$`)
)

// ValidateDigest checks "algorithm:hex" for sha256 and sha512.
func ValidateDigest(d string) error {
	// Hand-written rather than a regexp: it runs on every webhook.
	if !validDigest(d) {
		return fmt.Errorf("%w: digest %q is not sha256:<64 hex> or sha512:<128 hex>", ErrInvalid, d)
	}
	return nil
}

func validDigest(d string) bool {
	var hexPart string
	switch {
	case strings.HasPrefix(d, "sha256:"):
		hexPart = d[len("sha256:"):]
		if len(hexPart) != 64 {
			return false
		}
	case strings.HasPrefix(d, "sha512:"):
		hexPart = d[len("sha512:"):]
		if len(hexPart) != 128 {
			return false
		}
	default:
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		c := hexPart[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidateRepository checks a repository path against the OCI grammar.
func ValidateRepository(r string) error {
	if len(r) > 255 || !repoRE.MatchString(r) {
		return fmt.Errorf("%w: repository %q is not a valid OCI repository name", ErrInvalid, r)
	}
	return nil
}

// ValidateTag checks a tag against the OCI grammar.
func ValidateTag(t string) error {
	if !tagRE.MatchString(t) {
		return fmt.Errorf("%w: tag %q is not a valid OCI tag", ErrInvalid, t)
	}
	return nil
}

// ValidateRegistry checks a registry host[:port].
func ValidateRegistry(h string) error {
	if len(h) > 255 || !hostRE.MatchString(h) {
		return fmt.Errorf("%w: registry host %q is not a host[:port]", ErrInvalid, h)
	}
	return nil
}

// Reference is a parsed "registry/repo:tag", "repo:tag" or
// "registry/repo@digest". Registry is empty when the reference has none.
type Reference struct {
	Registry   string
	Repository string
	Tag        string
	Digest     string
}

func (r Reference) String() string {
	s := r.Repository
	if r.Registry != "" {
		s = r.Registry + "/" + s
	}
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Parse parses a reference. Unlike docker's parser it does not invent a
// default registry or tag: "app" alone is an error, since Customs only
// answers about what it has seen.
func Parse(s string) (Reference, error) {
	var ref Reference
	rest := s
	if i := strings.Index(rest, "@"); i >= 0 {
		ref.Digest = rest[i+1:]
		rest = rest[:i]
		if err := ValidateDigest(ref.Digest); err != nil {
			return Reference{}, err
		}
	}
	// A colon after the last slash separates the tag; one before it is a
	// registry port.
	if i := strings.LastIndex(rest, ":"); i >= 0 && i > strings.LastIndex(rest, "/") {
		ref.Tag = rest[i+1:]
		rest = rest[:i]
		if err := ValidateTag(ref.Tag); err != nil {
			return Reference{}, err
		}
	}
	if ref.Tag == "" && ref.Digest == "" {
		return Reference{}, fmt.Errorf("%w: %q has neither a tag nor a digest", ErrInvalid, s)
	}
	// The first component is a registry if it looks like a host: it has a
	// dot or a port, or is localhost.
	if i := strings.Index(rest, "/"); i >= 0 {
		first := rest[:i]
		if strings.ContainsAny(first, ".:[") || first == "localhost" {
			ref.Registry = first
			rest = rest[i+1:]
			if err := ValidateRegistry(ref.Registry); err != nil {
				return Reference{}, err
			}
		}
	}
	ref.Repository = rest
	if err := ValidateRepository(ref.Repository); err != nil {
		return Reference{}, err
	}
	return ref, nil
}
