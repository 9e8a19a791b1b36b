package ingest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// Harbor event types.
const (
	HarborPushArtifact     = "PUSH_ARTIFACT"
	HarborCloudEventPushed = "harbor.artifact.pushed"
)

// HarborConfig configures the Harbor receiver.
type HarborConfig struct {
	// AuthHeader is the "Auth Header" value set on the Harbor webhook
	// policy. Harbor sends it verbatim as the Authorization header, so the
	// whole value is compared (e.g. "Bearer abc" or just "abc").
	AuthHeader string
	// RegistryHost overrides the host found in resource_url, for a Harbor
	// that knows itself by a name the rest of Customs cannot reach.
	RegistryHost string
}

// Harbor receives Harbor webhooks in the default JSON format and in the
// CloudEvents format (Harbor 2.10+).
type Harbor struct {
	cfg HarborConfig
}

// NewHarbor returns the receiver.
func NewHarbor(cfg HarborConfig) (*Harbor, error) {
	if cfg.AuthHeader == "" {
		return nil, fmt.Errorf("harbor receiver: an auth header value is required")
	}
	if cfg.RegistryHost != "" {
		if err := artifactref.ValidateRegistry(cfg.RegistryHost); err != nil {
			return nil, fmt.Errorf("harbor receiver: %w", err)
		}
	}
	return &Harbor{cfg: cfg}, nil
}

// Name implements Receiver.
func (h *Harbor) Name() string { return "harbor" }

// Authenticate implements Receiver.
func (h *Harbor) Authenticate(r *http.Request, _ []byte) error {
	return checkSecret(strings.TrimSpace(r.Header.Get("Authorization")), h.cfg.AuthHeader, "Authorization header")
}

type harborEventData struct {
	Resources []struct {
		Digest      string `json:"digest"`
		Tag         string `json:"tag"`
		ResourceURL string `json:"resource_url"`
	} `json:"resources"`
	Repository struct {
		Name         string `json:"name"`
		Namespace    string `json:"namespace"`
		RepoFullName string `json:"repo_full_name"`
	} `json:"repository"`
}

type harborDefault struct {
	Type      string          `json:"type"`
	OccurAt   int64           `json:"occur_at"`
	Operator  string          `json:"operator"`
	EventData harborEventData `json:"event_data"`
}

// Parse implements Receiver.
func (h *Harbor) Parse(r *http.Request, body []byte) (Parsed, error) {
	if IsCloudEvent(r.Header, body) {
		ce, err := ParseCloudEvent(r.Header, body)
		if err != nil {
			return Parsed{}, err
		}
		if ce.Type != HarborCloudEventPushed {
			return Parsed{Ignored: []Ignored{{EventID: ce.ID, Action: ce.Type, Reason: fmt.Sprintf("ignored: Harbor event type %q is not a push", ce.Type)}}}, nil
		}
		return parseHarborCloudEvent(ce, h.cfg.RegistryHost)
	}
	var ev harborDefault
	if err := decodeStrict(body, &ev); err != nil {
		return Parsed{}, err
	}
	if ev.Type == "" {
		return Parsed{}, fmt.Errorf("%w: no \"type\" field; is this a Harbor webhook?", ErrMalformed)
	}
	if ev.Type != HarborPushArtifact {
		return Parsed{Ignored: []Ignored{{Action: ev.Type, Reason: fmt.Sprintf("ignored: Harbor event type %q is not a push", ev.Type)}}}, nil
	}
	// The default format has no event id: the dedup id is a hash of the
	// normalised push.
	pushes, err := harborPushes(ev.EventData, h.cfg.RegistryHost)
	if err != nil {
		return Parsed{}, err
	}
	for i := range pushes {
		pushes[i].Actor = ev.Operator
		pushes[i].OccurredAt = unixTime(ev.OccurAt)
	}
	return Parsed{Pushes: pushes}, nil
}

func parseHarborCloudEvent(ce CloudEvent, registryHost string) (Parsed, error) {
	var d harborEventData
	if err := ce.dataJSON(&d); err != nil {
		return Parsed{}, err
	}
	pushes, err := harborPushes(d, registryHost)
	if err != nil {
		return Parsed{}, err
	}
	for i := range pushes {
		pushes[i].SourceEventID = ce.ID
		pushes[i].Actor = ce.Extensions["operator"]
		pushes[i].OccurredAt = ce.occurredAt()
	}
	return Parsed{Pushes: pushes}, nil
}

func harborPushes(d harborEventData, registryHost string) ([]Push, error) {
	if len(d.Resources) == 0 {
		return nil, fmt.Errorf("%w: event_data.resources is empty", ErrMalformed)
	}
	repo := d.Repository.RepoFullName
	if repo == "" && d.Repository.Namespace != "" && d.Repository.Name != "" {
		repo = d.Repository.Namespace + "/" + d.Repository.Name
	}
	pushes := make([]Push, 0, len(d.Resources))
	for i, res := range d.Resources {
		if res.Digest == "" {
			return nil, fmt.Errorf("%w: resources[%d]: missing digest", ErrMalformed, i)
		}
		host, urlRepo, err := splitImageURL(res.ResourceURL)
		if err != nil {
			return nil, fmt.Errorf("%w: resources[%d].resource_url: %w", ErrMalformed, i, err)
		}
		if repo == "" {
			repo = urlRepo
		}
		if registryHost != "" {
			host = registryHost
		}
		a, err := artifact(host, repo, res.Digest, "", res.Tag)
		if err != nil {
			return nil, fmt.Errorf("%w: resources[%d]: %w", ErrMalformed, i, err)
		}
		pushes = append(pushes, Push{Artifact: a})
	}
	return pushes, nil
}

var _ Receiver = (*Harbor)(nil)
