package ingest

import (
	"fmt"
	"net/http"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// ZotImageUpdated is the CloudEvents type Zot emits for a manifest push or
// a tag moved to another manifest.
const ZotImageUpdated = "zotregistry.image.updated"

// ZotConfig configures the Zot receiver. Zot's HTTP sink sends Basic
// credentials or custom headers; set Token for "Authorization: Bearer ...",
// Username and Password for Basic, or both.
type ZotConfig struct {
	Token    string
	Username string
	Password string
	// RegistryHost is the host:port clients pull from: Zot's events carry
	// the repository but not the registry.
	RegistryHost string
}

// Zot receives Zot's CloudEvents (events extension, HTTP sink).
type Zot struct {
	cfg ZotConfig
}

// NewZot returns the receiver.
func NewZot(cfg ZotConfig) (*Zot, error) {
	if cfg.Token == "" && cfg.Username == "" {
		return nil, fmt.Errorf("zot receiver: a bearer token or a username and password are required")
	}
	if cfg.Username != "" && cfg.Password == "" {
		return nil, fmt.Errorf("zot receiver: a password is required with the username")
	}
	if _, err := newZotParser(cfg.RegistryHost); err != nil {
		return nil, err
	}
	return &Zot{cfg: cfg}, nil
}

func newZotParser(host string) (zotParser, error) {
	if host == "" {
		return zotParser{}, fmt.Errorf("zot: the registry host is required (Zot events do not name it)")
	}
	if err := artifactref.ValidateRegistry(host); err != nil {
		return zotParser{}, fmt.Errorf("zot: %w", err)
	}
	return zotParser{host: host}, nil
}

// Name implements Receiver.
func (z *Zot) Name() string { return "zot" }

// Authenticate implements Receiver.
func (z *Zot) Authenticate(r *http.Request, _ []byte) error {
	return checkBearerOrBasic(r, z.cfg.Token, z.cfg.Username, z.cfg.Password)
}

// Parse implements Receiver.
func (z *Zot) Parse(r *http.Request, body []byte) (Parsed, error) {
	return zotParser{host: z.cfg.RegistryHost}.parse(r.Header, body)
}

// zotParser turns a Zot CloudEvent into pushes; the HTTP receiver and the
// NATS subscriber share it.
type zotParser struct {
	host string
}

type zotImageData struct {
	Name      string `json:"name"`
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	Manifest  string `json:"manifest"`
}

func (z zotParser) parse(h http.Header, body []byte) (Parsed, error) {
	ce, err := ParseCloudEvent(h, body)
	if err != nil {
		return Parsed{}, err
	}
	if ce.Type != ZotImageUpdated {
		return Parsed{Ignored: []Ignored{{EventID: ce.ID, Action: ce.Type, Reason: fmt.Sprintf("ignored: Zot event type %q is not a push", ce.Type)}}}, nil
	}
	var d zotImageData
	if err := ce.dataJSON(&d); err != nil {
		return Parsed{}, err
	}
	if d.Digest == "" {
		return Parsed{}, fmt.Errorf("%w: Zot event %q has no digest", ErrMalformed, ce.ID)
	}
	if d.MediaType != "" && !IsManifestMediaType(d.MediaType) {
		return Parsed{Ignored: []Ignored{{EventID: ce.ID, Action: ce.Type, Reason: fmt.Sprintf("not an image manifest or index (media type %q)", d.MediaType)}}}, nil
	}
	// reference is the tag, or the digest for a push by digest.
	a, err := artifact(z.host, d.Name, d.Digest, d.MediaType, d.Reference)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: Zot event %q: %w", ErrMalformed, ce.ID, err)
	}
	return Parsed{Pushes: []Push{{
		Artifact:      a,
		SourceEventID: ce.ID,
		Size:          int64(len(d.Manifest)),
		OccurredAt:    ce.occurredAt(),
	}}}, nil
}

var _ Receiver = (*Zot)(nil)
