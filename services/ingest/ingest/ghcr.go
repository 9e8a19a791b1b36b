package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// GHCRConfig configures the GitHub Packages receiver.
type GHCRConfig struct {
	// Secret is the webhook secret; GitHub signs each body with it
	// (HMAC-SHA256 in X-Hub-Signature-256).
	Secret string
}

// GHCR receives GitHub's registry_package webhook for container packages.
type GHCR struct {
	cfg GHCRConfig
}

// NewGHCR returns the receiver.
func NewGHCR(cfg GHCRConfig) (*GHCR, error) {
	if cfg.Secret == "" {
		return nil, fmt.Errorf("ghcr receiver: a webhook secret is required")
	}
	return &GHCR{cfg: cfg}, nil
}

// Name implements Receiver.
func (g *GHCR) Name() string { return "ghcr" }

// Authenticate implements Receiver: the signature covers the raw body.
func (g *GHCR) Authenticate(r *http.Request, body []byte) error {
	sig := r.Header.Get("X-Hub-Signature-256")
	if sig == "" {
		return fmt.Errorf("%w: missing X-Hub-Signature-256", ErrUnauthenticated)
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	given, err := hex.DecodeString(hexSig)
	if !ok || err != nil {
		return fmt.Errorf("%w: X-Hub-Signature-256 is not sha256=<hex>", ErrUnauthenticated)
	}
	mac := hmac.New(sha256.New, []byte(g.cfg.Secret))
	mac.Write(body)
	if !hmac.Equal(given, mac.Sum(nil)) {
		return fmt.Errorf("%w: signature does not match the body", ErrForbidden)
	}
	return nil
}

type ghcrEvent struct {
	Action          string `json:"action"`
	RegistryPackage *struct {
		Name           string `json:"name"`
		Namespace      string `json:"namespace"`
		Ecosystem      string `json:"ecosystem"`
		PackageType    string `json:"package_type"`
		PackageVersion *struct {
			Name              string    `json:"name"`
			Version           string    `json:"version"`
			PackageURL        string    `json:"package_url"`
			CreatedAt         time.Time `json:"created_at"`
			UpdatedAt         time.Time `json:"updated_at"`
			ContainerMetadata *struct {
				Tag struct {
					Name   string `json:"name"`
					Digest string `json:"digest"`
				} `json:"tag"`
				Manifest struct {
					MediaType string `json:"media_type"`
					Size      int64  `json:"size"`
				} `json:"manifest"`
			} `json:"container_metadata"`
		} `json:"package_version"`
		Registry struct {
			URL string `json:"url"`
		} `json:"registry"`
	} `json:"registry_package"`
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
}

// Parse implements Receiver.
func (g *GHCR) Parse(r *http.Request, body []byte) (Parsed, error) {
	delivery := r.Header.Get("X-GitHub-Delivery")
	event := r.Header.Get("X-GitHub-Event")
	switch event {
	case "":
		return Parsed{}, fmt.Errorf("%w: missing X-GitHub-Event header", ErrMalformed)
	case "registry_package":
	default:
		return Parsed{Ignored: []Ignored{{EventID: delivery, Action: event, Reason: fmt.Sprintf("ignored: GitHub event %q is not registry_package", event)}}}, nil
	}
	// GitHub can send the payload form-encoded; the signature still
	// covers the raw body.
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return Parsed{}, fmt.Errorf("%w: form body: %w", ErrMalformed, err)
		}
		body = []byte(form.Get("payload"))
	}
	return parseGHCR(body, delivery)
}

func parseGHCR(body []byte, delivery string) (Parsed, error) {
	var ev ghcrEvent
	if err := decodeStrict(body, &ev); err != nil {
		return Parsed{}, err
	}
	ignore := func(reason string) (Parsed, error) {
		return Parsed{Ignored: []Ignored{{EventID: delivery, Action: ev.Action, Reason: reason}}}, nil
	}
	if ev.Action != "published" && ev.Action != "updated" {
		return ignore(fmt.Sprintf("ignored: action %q is not a publish", ev.Action))
	}
	rp := ev.RegistryPackage
	if rp == nil || rp.PackageVersion == nil {
		return Parsed{}, fmt.Errorf("%w: no registry_package.package_version", ErrMalformed)
	}
	kind := rp.PackageType
	if kind == "" {
		kind = rp.Ecosystem
	}
	if !strings.EqualFold(kind, "container") && !strings.EqualFold(kind, "docker") {
		return ignore(fmt.Sprintf("ignored: package type %q is not a container", kind))
	}
	pv := rp.PackageVersion
	if pv.ContainerMetadata == nil {
		return Parsed{}, fmt.Errorf("%w: container package without container_metadata", ErrMalformed)
	}
	cm := pv.ContainerMetadata
	digest := cm.Tag.Digest
	if digest == "" {
		// Untagged pushes carry the digest as the version name.
		digest = pv.Name
	}
	if pv.PackageURL == "" {
		return Parsed{}, fmt.Errorf("%w: no package_version.package_url", ErrMalformed)
	}
	host, repo, err := splitImageURL(pv.PackageURL)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: package_url: %w", ErrMalformed, err)
	}
	// GitHub keeps owner names' case in URLs; image names are lower case.
	repo = strings.ToLower(repo)
	mediaType := cm.Manifest.MediaType
	if mediaType != "" && !IsManifestMediaType(mediaType) {
		return ignore(fmt.Sprintf("not an image manifest or index (media type %q)", mediaType))
	}
	a, err := artifact(host, repo, digest, mediaType, cm.Tag.Name)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if a.GetDigest() == "" {
		return Parsed{}, fmt.Errorf("%w: no container_metadata.tag.digest", ErrMalformed)
	}
	at := pv.UpdatedAt
	if at.IsZero() {
		at = pv.CreatedAt
	}
	if at.IsZero() {
		at = time.Now().UTC()
	}
	return Parsed{Pushes: []Push{{
		Artifact:      a,
		SourceEventID: delivery,
		Actor:         ev.Sender.Login,
		Size:          cm.Manifest.Size,
		OccurredAt:    at,
	}}}, nil
}

var _ Receiver = (*GHCR)(nil)
