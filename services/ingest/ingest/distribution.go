package ingest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
)

// Media types of CNCF Distribution notification envelopes.
const (
	DistributionEventsV1 = "application/vnd.docker.distribution.events.v1+json"
	DistributionEventsV2 = "application/vnd.docker.distribution.events.v2+json"
)

// manifestMediaTypes are the image manifests and indexes Customs tracks.
var manifestMediaTypes = map[string]bool{
	"application/vnd.oci.image.manifest.v1+json":                true,
	"application/vnd.oci.image.index.v1+json":                   true,
	"application/vnd.docker.distribution.manifest.v2+json":      true,
	"application/vnd.docker.distribution.manifest.list.v2+json": true,
}

// IsManifestMediaType reports whether mt is an image manifest or index.
func IsManifestMediaType(mt string) bool { return manifestMediaTypes[mt] }

// DistributionConfig configures the CNCF Distribution receiver.
type DistributionConfig struct {
	// Token is the bearer token the registry sends in its endpoint headers
	// ("Authorization: Bearer <token>").
	Token string
	// RegistryHost overrides the host found in the events, for when the
	// registry knows itself by a name the rest of Customs cannot reach.
	RegistryHost string
}

// Distribution receives CNCF Distribution (registry v2 and v3) notification
// envelopes.
type Distribution struct {
	cfg DistributionConfig
}

// NewDistribution returns the receiver. A token is required: webhooks are
// always authenticated.
func NewDistribution(cfg DistributionConfig) (*Distribution, error) {
	if cfg.Token == "" {
		return nil, fmt.Errorf("distribution receiver: a bearer token is required")
	}
	if cfg.RegistryHost != "" {
		if err := artifactref.ValidateRegistry(cfg.RegistryHost); err != nil {
			return nil, fmt.Errorf("distribution receiver: %w", err)
		}
	}
	return &Distribution{cfg: cfg}, nil
}

// Name implements Receiver.
func (d *Distribution) Name() string { return "distribution" }

// Authenticate implements Receiver with a constant-time bearer token check.
func (d *Distribution) Authenticate(r *http.Request, _ []byte) error {
	return checkBearer(r, d.cfg.Token)
}

func checkBearer(r *http.Request, token string) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return fmt.Errorf("%w: missing Authorization header", ErrUnauthenticated)
	}
	scheme, given, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return fmt.Errorf("%w: Authorization must be a Bearer token", ErrUnauthenticated)
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(given)), []byte(token)) != 1 {
		return fmt.Errorf("%w: wrong token", ErrForbidden)
	}
	return nil
}

type distributionEnvelope struct {
	Events []distributionEvent `json:"events"`
}

type distributionEvent struct {
	ID        string    `json:"id"`
	Timestamp time.Time `json:"timestamp"`
	Action    string    `json:"action"`
	Target    struct {
		MediaType  string `json:"mediaType"`
		Digest     string `json:"digest"`
		Size       int64  `json:"size"`
		Length     int64  `json:"length"`
		Repository string `json:"repository"`
		URL        string `json:"url"`
		Tag        string `json:"tag"`
	} `json:"target"`
	Request struct {
		Host string `json:"host"`
	} `json:"request"`
	Actor struct {
		Name string `json:"name"`
	} `json:"actor"`
	Source struct {
		Addr string `json:"addr"`
	} `json:"source"`
}

// Parse implements Receiver.
func (d *Distribution) Parse(r *http.Request, body []byte) (Parsed, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != DistributionEventsV1 && mt != DistributionEventsV2 && mt != "application/json") {
			return Parsed{}, fmt.Errorf("%w: Content-Type %q, want %s or %s", ErrUnsupportedMediaType, ct, DistributionEventsV2, DistributionEventsV1)
		}
	}
	return ParseDistributionEnvelope(body, d.cfg.RegistryHost)
}

// ParseDistributionEnvelope parses a notification envelope. It keeps
// manifest pushes, ignores everything else with a reason, and fails the
// whole envelope if any push is malformed.
func ParseDistributionEnvelope(body []byte, registryHost string) (Parsed, error) {
	var env distributionEnvelope
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&env); err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return Parsed{}, fmt.Errorf("%w: trailing data after the envelope", ErrMalformed)
	}
	if env.Events == nil {
		return Parsed{}, fmt.Errorf("%w: no \"events\" array", ErrMalformed)
	}
	var out Parsed
	for i, ev := range env.Events {
		switch {
		case ev.Action != "push":
			out.Ignored = append(out.Ignored, Ignored{EventID: ev.ID, Action: ev.Action, Reason: fmt.Sprintf("action %q is not a push", ev.Action)})
			continue
		case !IsManifestMediaType(ev.Target.MediaType):
			out.Ignored = append(out.Ignored, Ignored{EventID: ev.ID, Action: ev.Action, Reason: fmt.Sprintf("not an image manifest or index (media type %q): blob pushes are ignored", ev.Target.MediaType)})
			continue
		}
		push, err := distributionPush(ev, registryHost)
		if err != nil {
			return Parsed{}, fmt.Errorf("%w: events[%d]: %w", ErrMalformed, i, err)
		}
		out.Pushes = append(out.Pushes, push)
	}
	return out, nil
}

func distributionPush(ev distributionEvent, registryHost string) (Push, error) {
	if ev.ID == "" {
		return Push{}, fmt.Errorf("missing id")
	}
	if err := artifactref.ValidateDigest(ev.Target.Digest); err != nil {
		return Push{}, err
	}
	if err := artifactref.ValidateRepository(ev.Target.Repository); err != nil {
		return Push{}, err
	}
	if ev.Target.Tag != "" {
		if err := artifactref.ValidateTag(ev.Target.Tag); err != nil {
			return Push{}, err
		}
	}
	host := registryHost
	if host == "" {
		host = ev.Request.Host
	}
	if host == "" && ev.Target.URL != "" {
		if u, err := url.Parse(ev.Target.URL); err == nil {
			host = u.Host
		}
	}
	if host == "" {
		return Push{}, fmt.Errorf("no registry host in request.host or target.url")
	}
	if err := artifactref.ValidateRegistry(host); err != nil {
		return Push{}, err
	}
	size := ev.Target.Size
	if size == 0 {
		size = ev.Target.Length
	}
	at := ev.Timestamp
	if at.IsZero() {
		return Push{}, fmt.Errorf("missing timestamp")
	}
	return Push{
		Artifact: &customsv1.ArtifactRef{
			Registry:   host,
			Repository: ev.Target.Repository,
			Digest:     ev.Target.Digest,
			MediaType:  ev.Target.MediaType,
			Tag:        ev.Target.Tag,
		},
		SourceEventID: ev.ID,
		Actor:         ev.Actor.Name,
		Size:          size,
		OccurredAt:    at,
	}, nil
}

var _ Receiver = (*Distribution)(nil)
