package ingest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
)

// artifact validates the parts of a push and builds its reference. digest
// and mediaType may be empty (the server resolves them); a tag that is
// really a digest, as Harbor sends for pushes by digest, means no tag.
func artifact(host, repo, digest, mediaType, tag string) (*customsv1.ArtifactRef, error) {
	if err := artifactref.ValidateRegistry(host); err != nil {
		return nil, err
	}
	if err := artifactref.ValidateRepository(repo); err != nil {
		return nil, err
	}
	if digest != "" {
		if err := artifactref.ValidateDigest(digest); err != nil {
			return nil, err
		}
	}
	if tag == digest || artifactref.ValidateDigest(tag) == nil {
		tag = ""
	}
	if tag != "" {
		if err := artifactref.ValidateTag(tag); err != nil {
			return nil, err
		}
	}
	if digest == "" && tag == "" {
		return nil, fmt.Errorf("neither a digest nor a tag")
	}
	if mediaType != "" && len(mediaType) > 255 {
		return nil, fmt.Errorf("media type is longer than 255 bytes")
	}
	return &customsv1.ArtifactRef{Registry: host, Repository: repo, Digest: digest, MediaType: mediaType, Tag: tag}, nil
}

// splitImageURL splits "host/repo[:tag][@digest]", with or without a
// scheme, into host and repository. A trailing ":" with no tag (as GHCR
// sometimes sends) is tolerated.
func splitImageURL(s string) (host, repo string, err error) {
	rest := s
	if _, after, ok := strings.Cut(rest, "://"); ok {
		rest = after
	}
	if i := strings.Index(rest, "@"); i >= 0 {
		rest = rest[:i]
	}
	host, repo, ok := strings.Cut(rest, "/")
	if !ok || host == "" || repo == "" {
		return "", "", fmt.Errorf("%q is not host/repository", s)
	}
	if i := strings.LastIndex(repo, ":"); i >= 0 {
		repo = repo[:i]
	}
	return host, strings.TrimSuffix(repo, "/"), nil
}

// unixTime turns a Unix timestamp into a time, using now for a missing one:
// some formats carry no time, and the event must have one.
func unixTime(sec int64) time.Time {
	if sec <= 0 || sec > 1<<40 {
		return time.Now().UTC()
	}
	return time.Unix(sec, 0).UTC()
}

func newStrictDecoder(body []byte) *json.Decoder {
	return json.NewDecoder(bytes.NewReader(body))
}

// decodeStrict decodes one JSON value and refuses trailing data.
func decodeStrict(body []byte, v any) error {
	dec := newStrictDecoder(body)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrMalformed)
	}
	return nil
}

// checkSecret compares a credential in constant time.
func checkSecret(given, want, what string) error {
	if given == "" {
		return fmt.Errorf("%w: missing %s", ErrUnauthenticated, what)
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(want)) != 1 {
		return fmt.Errorf("%w: wrong %s", ErrForbidden, what)
	}
	return nil
}

// checkBearerOrBasic accepts "Bearer <token>" when token is set and
// "Basic user:password" when user is set.
func checkBearerOrBasic(r *http.Request, token, user, password string) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return fmt.Errorf("%w: missing Authorization header", ErrUnauthenticated)
	}
	scheme, _, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer") && token != "":
		return checkBearer(r, token)
	case strings.EqualFold(scheme, "Basic") && user != "":
		u, p, ok := r.BasicAuth()
		if !ok {
			return fmt.Errorf("%w: malformed Basic credentials", ErrUnauthenticated)
		}
		// Compare both halves every time, so timing does not say which
		// one was wrong.
		uok := subtle.ConstantTimeCompare([]byte(u), []byte(user))
		pok := subtle.ConstantTimeCompare([]byte(p), []byte(password))
		if uok&pok != 1 {
			return fmt.Errorf("%w: wrong username or password", ErrForbidden)
		}
		return nil
	default:
		return fmt.Errorf("%w: unsupported Authorization scheme %q", ErrUnauthenticated, scheme)
	}
}
