package ingest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// QuayConfig configures the Quay receiver.
type QuayConfig struct {
	// Secret is the last path segment of the webhook URL
	// (/webhooks/quay/<secret>).
	Secret string
	// RegistryHost overrides the host in docker_url.
	RegistryHost string
}

// Quay receives Quay's "Push to Repository" notifications. They carry tags
// and no digest; the server resolves each tag against the registry.
type Quay struct {
	cfg QuayConfig
}

// NewQuay returns the receiver.
func NewQuay(cfg QuayConfig) (*Quay, error) {
	if len(cfg.Secret) < minPathSecret {
		return nil, fmt.Errorf("quay receiver: the URL secret must be at least %d characters", minPathSecret)
	}
	if strings.ContainsAny(cfg.Secret, "/?#%") {
		return nil, fmt.Errorf("quay receiver: the URL secret must not contain / ? # or %%")
	}
	if cfg.RegistryHost != "" {
		if err := artifactref.ValidateRegistry(cfg.RegistryHost); err != nil {
			return nil, fmt.Errorf("quay receiver: %w", err)
		}
	}
	return &Quay{cfg: cfg}, nil
}

// Name implements Receiver.
func (q *Quay) Name() string { return "quay" }

// SecretInPath implements PathSecretReceiver.
func (q *Quay) SecretInPath() bool { return true }

// Authenticate implements Receiver.
func (q *Quay) Authenticate(r *http.Request, _ []byte) error {
	return checkSecret(PathSecret(r), q.cfg.Secret, "URL secret (/webhooks/quay/<secret>)")
}

type quayEvent struct {
	Name        string   `json:"name"`
	Repository  string   `json:"repository"`
	Namespace   string   `json:"namespace"`
	DockerURL   string   `json:"docker_url"`
	Homepage    string   `json:"homepage"`
	UpdatedTags []string `json:"updated_tags"`
}

// Parse implements Receiver.
func (q *Quay) Parse(_ *http.Request, body []byte) (Parsed, error) {
	return parseQuay(body, q.cfg.RegistryHost)
}

func parseQuay(body []byte, registryHost string) (Parsed, error) {
	var ev quayEvent
	if err := decodeStrict(body, &ev); err != nil {
		return Parsed{}, err
	}
	if ev.DockerURL == "" {
		return Parsed{}, fmt.Errorf("%w: no docker_url; is this a Quay repository push notification?", ErrMalformed)
	}
	host, repo, err := splitImageURL(ev.DockerURL)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: docker_url: %w", ErrMalformed, err)
	}
	if registryHost != "" {
		host = registryHost
	}
	if len(ev.UpdatedTags) == 0 {
		return Parsed{Ignored: []Ignored{{Action: "push", Reason: "ignored: the notification lists no updated_tags"}}}, nil
	}
	if len(ev.UpdatedTags) > 100 {
		return Parsed{}, fmt.Errorf("%w: %d updated_tags; at most 100 per notification", ErrMalformed, len(ev.UpdatedTags))
	}
	at := unixTime(0)
	pushes := make([]Push, 0, len(ev.UpdatedTags))
	for i, tag := range ev.UpdatedTags {
		if tag == "" {
			return Parsed{}, fmt.Errorf("%w: updated_tags[%d] is empty", ErrMalformed, i)
		}
		a, err := artifact(host, repo, "", "", tag)
		if err != nil {
			return Parsed{}, fmt.Errorf("%w: updated_tags[%d]: %w", ErrMalformed, i, err)
		}
		pushes = append(pushes, Push{Artifact: a, OccurredAt: at})
	}
	return Parsed{Pushes: pushes}, nil
}

var (
	_ Receiver           = (*Quay)(nil)
	_ PathSecretReceiver = (*Quay)(nil)
)
