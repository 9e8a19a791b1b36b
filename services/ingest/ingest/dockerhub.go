package ingest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/customs-dev/customs/pkg/artifactref"
)

// DockerHubRegistry is the registry host Docker Hub images are recorded
// under.
const DockerHubRegistry = "docker.io"

// minPathSecret is the shortest URL secret accepted: the secret is the
// only credential these senders have.
const minPathSecret = 16

// DockerHubConfig configures the Docker Hub receiver.
type DockerHubConfig struct {
	// Secret is the last path segment of the webhook URL
	// (/webhooks/dockerhub/<secret>): Docker Hub neither signs nor sends
	// headers.
	Secret string
	// RegistryHost defaults to docker.io; tests point it elsewhere.
	RegistryHost string
}

// DockerHub receives Docker Hub repository webhooks. They carry a tag and
// no digest; the server resolves the tag against the registry.
type DockerHub struct {
	cfg DockerHubConfig
}

// NewDockerHub returns the receiver.
func NewDockerHub(cfg DockerHubConfig) (*DockerHub, error) {
	if len(cfg.Secret) < minPathSecret {
		return nil, fmt.Errorf("dockerhub receiver: the URL secret must be at least %d characters", minPathSecret)
	}
	if strings.ContainsAny(cfg.Secret, "/?#%") {
		return nil, fmt.Errorf("dockerhub receiver: the URL secret must not contain / ? # or %%")
	}
	if cfg.RegistryHost == "" {
		cfg.RegistryHost = DockerHubRegistry
	}
	if err := artifactref.ValidateRegistry(cfg.RegistryHost); err != nil {
		return nil, fmt.Errorf("dockerhub receiver: %w", err)
	}
	return &DockerHub{cfg: cfg}, nil
}

// Name implements Receiver.
func (d *DockerHub) Name() string { return "dockerhub" }

// SecretInPath implements PathSecretReceiver.
func (d *DockerHub) SecretInPath() bool { return true }

// Authenticate implements Receiver.
func (d *DockerHub) Authenticate(r *http.Request, _ []byte) error {
	return checkSecret(PathSecret(r), d.cfg.Secret, "URL secret (/webhooks/dockerhub/<secret>)")
}

type dockerHubEvent struct {
	CallbackURL string `json:"callback_url"`
	PushData    *struct {
		PushedAt int64  `json:"pushed_at"`
		Pusher   string `json:"pusher"`
		Tag      string `json:"tag"`
	} `json:"push_data"`
	Repository *struct {
		RepoName  string `json:"repo_name"`
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"repository"`
}

// Parse implements Receiver.
func (d *DockerHub) Parse(_ *http.Request, body []byte) (Parsed, error) {
	return parseDockerHub(body, d.cfg.RegistryHost)
}

func parseDockerHub(body []byte, host string) (Parsed, error) {
	var ev dockerHubEvent
	if err := decodeStrict(body, &ev); err != nil {
		return Parsed{}, err
	}
	if ev.Repository == nil || ev.PushData == nil {
		return Parsed{}, fmt.Errorf("%w: a Docker Hub webhook has \"repository\" and \"push_data\"", ErrMalformed)
	}
	repo := ev.Repository.RepoName
	if repo == "" && ev.Repository.Namespace != "" && ev.Repository.Name != "" {
		repo = ev.Repository.Namespace + "/" + ev.Repository.Name
	}
	if repo != "" && !strings.Contains(repo, "/") {
		// Official images live under library/.
		repo = "library/" + repo
	}
	if ev.PushData.Tag == "" {
		return Parsed{}, fmt.Errorf("%w: push_data.tag is empty", ErrMalformed)
	}
	a, err := artifact(host, repo, "", "", ev.PushData.Tag)
	if err != nil {
		return Parsed{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// No event id and no digest: the dedup id is the hash of the push once
	// the tag is resolved.
	return Parsed{Pushes: []Push{{Artifact: a, Actor: ev.PushData.Pusher, OccurredAt: unixTime(ev.PushData.PushedAt)}}}, nil
}

var (
	_ Receiver           = (*DockerHub)(nil)
	_ PathSecretReceiver = (*DockerHub)(nil)
)
