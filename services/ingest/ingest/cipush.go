package ingest

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
)

// CIPushPath is where pipelines report a push.
const CIPushPath = "/v1/push-events"

// PushEventRequest is the body of POST /v1/push-events, sent by a pipeline
// after `docker push` (customsctl push-event builds it).
type PushEventRequest struct {
	// Reference is "host/repo:tag", "host/repo@digest" or both.
	Reference string `json:"reference"`
	// Digest is required unless the reference carries it.
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"media_type,omitempty"`
	// Provenance, feeding SLSA provenance and the tag policy.
	GitSHA           string `json:"git_sha,omitempty"`
	Semver           string `json:"semver,omitempty"`
	SourceRepository string `json:"source_repository,omitempty"`
	Builder          string `json:"builder,omitempty"`
	BuildURL         string `json:"build_url,omitempty"`
	// EventID is the pipeline's own id for the push (e.g. run id and
	// attempt); retries with the same id are deduplicated.
	EventID string `json:"event_id,omitempty"`
	Actor   string `json:"actor,omitempty"`
}

var (
	gitSHARE = regexp.MustCompile(`^[0-9a-f]{7,64}$`)
	// Semantic Versioning 2.0.0, with an optional leading "v".
	semverRE = regexp.MustCompile(`^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)
)

// CIPushConfig configures the CI push API.
type CIPushConfig struct {
	// Token is the bearer token pipelines present.
	Token string
}

// CIPush is the CI push API: a pipeline reports what it pushed, with the
// provenance a registry webhook cannot know.
type CIPush struct {
	cfg CIPushConfig
}

// NewCIPush returns the receiver.
func NewCIPush(cfg CIPushConfig) (*CIPush, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("ci push API: a bearer token is required")
	}
	return &CIPush{cfg: cfg}, nil
}

// Name implements Receiver.
func (c *CIPush) Name() string { return "ci" }

// Path implements Router.
func (c *CIPush) Path() string { return CIPushPath }

// Authenticate implements Receiver.
func (c *CIPush) Authenticate(r *http.Request, _ []byte) error {
	return checkBearer(r, c.cfg.Token)
}

// Parse implements Receiver.
func (c *CIPush) Parse(r *http.Request, body []byte) (Parsed, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return Parsed{}, fmt.Errorf("%w: Content-Type %q, want application/json", ErrUnsupportedMediaType, ct)
		}
	}
	p, err := ParsePushEvent(body)
	if err != nil {
		return Parsed{}, err
	}
	return Parsed{Pushes: []Push{p}}, nil
}

// ParsePushEvent validates a push event request.
func ParsePushEvent(body []byte) (Push, error) {
	var req PushEventRequest
	if err := decodeStrictKnown(body, &req); err != nil {
		return Push{}, err
	}
	bad := func(format string, args ...any) (Push, error) {
		return Push{}, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
	if req.Reference == "" {
		return bad("reference is required")
	}
	ref, err := artifactref.Parse(req.Reference)
	if err != nil {
		return bad("reference: %v", err)
	}
	if ref.Registry == "" {
		return bad("reference %q has no registry host (want host/repository:tag)", req.Reference)
	}
	digest := req.Digest
	switch {
	case digest == "":
		digest = ref.Digest
	case ref.Digest != "" && ref.Digest != digest:
		return bad("digest %q disagrees with the reference's %q", digest, ref.Digest)
	}
	if digest == "" {
		return bad("digest is required (the reference has none either)")
	}
	if req.MediaType != "" && !IsManifestMediaType(req.MediaType) {
		return bad("media_type %q is not an image manifest or index", req.MediaType)
	}
	a, err := artifact(ref.Registry, ref.Repository, digest, req.MediaType, ref.Tag)
	if err != nil {
		return bad("%v", err)
	}
	if req.GitSHA != "" && !gitSHARE.MatchString(req.GitSHA) {
		return bad("git_sha %q is not 7 to 64 lower-case hex digits", req.GitSHA)
	}
	if req.Semver != "" && !semverRE.MatchString(req.Semver) {
		return bad("semver %q is not a semantic version (e.g. v1.2.3)", req.Semver)
	}
	if req.SourceRepository != "" {
		if err := checkURL(req.SourceRepository); err != nil {
			return bad("source_repository: %v", err)
		}
	}
	if req.BuildURL != "" {
		if err := checkURL(req.BuildURL); err != nil {
			return bad("build_url: %v", err)
		}
	}
	for name, v := range map[string]string{"builder": req.Builder, "event_id": req.EventID, "actor": req.Actor} {
		if err := checkText(v); err != nil {
			return bad("%s: %v", name, err)
		}
	}
	var prov *customsv1.Provenance
	if req.GitSHA != "" || req.Semver != "" || req.SourceRepository != "" || req.Builder != "" || req.BuildURL != "" {
		prov = &customsv1.Provenance{
			SourceRepository: req.SourceRepository,
			GitSha:           req.GitSHA,
			Semver:           req.Semver,
			Builder:          req.Builder,
			BuildUrl:         req.BuildURL,
		}
	}
	return Push{
		Artifact:      a,
		SourceEventID: req.EventID,
		Actor:         req.Actor,
		OccurredAt:    time.Now().UTC(),
		Provenance:    prov,
	}, nil
}

// decodeStrictKnown is decodeStrict that also refuses unknown fields, so a
// misspelt field in a pipeline fails loudly instead of being lost.
func decodeStrictKnown(body []byte, v any) error {
	dec := newStrictDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON body", ErrMalformed)
	}
	return nil
}

func checkURL(s string) error {
	if len(s) > 2048 {
		return fmt.Errorf("longer than 2048 bytes")
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func checkText(s string) error {
	if len(s) > 512 {
		return fmt.Errorf("longer than 512 bytes")
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("contains control characters")
	}
	return nil
}

var (
	_ Receiver = (*CIPush)(nil)
	_ Router   = (*CIPush)(nil)
)
