// Package ingest receives registry webhooks and publishes artifact.pushed.
// Each webhook format is one Receiver in its own file.
package ingest

import (
	"context"
	"errors"
	"net/http"
	"time"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// Receiver understands one webhook format. Adding a registry means adding
// one file with one Receiver and listing it where the server is built.
type Receiver interface {
	// Name is the format's name; the receiver is served at
	// /webhooks/<Name>.
	Name() string
	// Authenticate checks the request. It gets the body for formats that
	// sign it. Return an error wrapping ErrUnauthenticated or ErrForbidden.
	Authenticate(r *http.Request, body []byte) error
	// Parse turns the body into pushes and ignored events. An error that
	// wraps ErrMalformed or ErrUnsupportedMediaType rejects the whole request
	// and nothing is published.
	Parse(r *http.Request, body []byte) (Parsed, error)
}

// Parsed is what one webhook request contained.
type Parsed struct {
	Pushes  []Push
	Ignored []Ignored
}

// Push is one manifest push, normalised from any format.
type Push struct {
	// Artifact always has registry and repository. Formats that report
	// only a tag (Docker Hub, Quay) leave Digest empty, and formats that do
	// not say what was pushed leave MediaType empty: the server resolves
	// both against the registry (allow-list applies) before publishing.
	Artifact *customsv1.ArtifactRef
	// SourceEventID is the source's own event id; with it the dedup id
	// survives webhook retries. Empty means: hash the normalised content.
	SourceEventID string
	Actor         string
	Size          int64
	OccurredAt    time.Time
	Provenance    *customsv1.Provenance
}

// Ignored is an event the request carried that Customs does not act on,
// with the reason, so the sender can see why.
type Ignored struct {
	EventID string `json:"id,omitempty"`
	Action  string `json:"action,omitempty"`
	Reason  string `json:"reason"`
}

// Router is implemented by a receiver served at a path other than
// /webhooks/<Name>, such as the CI push API.
type Router interface {
	Path() string
}

// PathSecretReceiver is implemented by receivers whose sender can only
// authenticate with a secret in the URL (Docker Hub, Quay). They are served
// at /webhooks/<Name>/<secret>; the server takes the secret out of the path
// before tracing or logging sees it, and Authenticate reads it with
// PathSecret.
type PathSecretReceiver interface {
	SecretInPath() bool
}

type pathSecretKey struct{}

// PathSecret returns the secret the request carried in its URL path, or "".
func PathSecret(r *http.Request) string {
	s, _ := r.Context().Value(pathSecretKey{}).(string)
	return s
}

func withPathSecret(ctx context.Context, secret string) context.Context {
	return context.WithValue(ctx, pathSecretKey{}, secret)
}

// Errors a Receiver returns; the server maps them to HTTP status codes.
var (
	// ErrUnauthenticated: credentials missing or wrong (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden: credentials valid but not allowed (403).
	ErrForbidden = errors.New("forbidden")
	// ErrMalformed: the body cannot be understood (400).
	ErrMalformed = errors.New("malformed webhook")
	// ErrUnsupportedMediaType: wrong Content-Type (415).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrRegistryNotAllowed: the push names a registry Customs may not
	// contact (422); retrying will not help until the allow-list changes.
	ErrRegistryNotAllowed = errors.New("registry not allowed")
	// ErrUnresolvable: the registry does not know the tag or digest (422).
	ErrUnresolvable = errors.New("artifact not found in its registry")
	// ErrRegistryUnavailable: the registry could not be asked (503), so
	// the sender should retry.
	ErrRegistryUnavailable = errors.New("registry unavailable")
)
