package ingest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/registries"
)

// ServiceConfig is the ingest service's configuration, shared by its own
// main and the one-process runtime. Secrets have no flag defaults, so they
// never show in --help: they come from the flag, the CUSTOMS_* variable or
// a file. A receiver whose secret is not set is not mounted, except
// Distribution, which is always on.
type ServiceConfig struct {
	Listen string
	// DistributionToken is the bearer token CNCF Distribution sends.
	DistributionToken     string
	DistributionTokenFile string
	// DistributionRegistryHost overrides the registry host in its events.
	DistributionRegistryHost string
	MaxBodyBytes             int64
	// IgnoreRepositories: comma-separated path.Match patterns of
	// repositories whose pushes are ignored.
	IgnoreRepositories string

	// Registries is the allow-list (registries.Parse syntax) used to
	// resolve tags to digests and to look up media types.
	Registries string

	HarborAuthHeader     string
	HarborAuthHeaderFile string
	HarborRegistryHost   string

	ZotToken        string
	ZotTokenFile    string
	ZotUsername     string
	ZotPassword     string
	ZotPasswordFile string
	// ZotRegistryHost is required for Zot: its events do not name it.
	ZotRegistryHost string
	// ZotNATSSubject turns on the NATS path: Zot's "nats" sink publishes
	// to this subject on the Customs NATS.
	ZotNATSSubject string

	GHCRSecret     string
	GHCRSecretFile string

	DockerHubSecret       string
	DockerHubSecretFile   string
	DockerHubRegistryHost string

	QuaySecret       string
	QuaySecretFile   string
	QuayRegistryHost string

	CloudEventsToken     string
	CloudEventsTokenFile string

	CIToken     string
	CITokenFile string

	// RateLimit (requests/s) and RateBurst per source; see Config.
	RateLimit float64
	RateBurst int
	// TrustedProxies lists the reverse proxies in front of ingest (CIDR
	// prefixes or addresses, comma-separated); see Config.TrustedProxies.
	TrustedProxies string
}

// RegisterFlags adds the ingest flags, each defaulting to its environment
// variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "ingest-listen", lifecycle.EnvOr("CUSTOMS_INGEST_LISTEN", "127.0.0.1:8080"), "webhook HTTP listen address (env CUSTOMS_INGEST_LISTEN)")
	fs.StringVar(&c.DistributionToken, "distribution-token", "", "bearer token CNCF Distribution sends; prefer the env var or the file (env CUSTOMS_DISTRIBUTION_TOKEN)")
	fs.StringVar(&c.DistributionTokenFile, "distribution-token-file", lifecycle.EnvOr("CUSTOMS_DISTRIBUTION_TOKEN_FILE", ""), "file holding the Distribution bearer token (env CUSTOMS_DISTRIBUTION_TOKEN_FILE)")
	fs.StringVar(&c.DistributionRegistryHost, "distribution-registry-host", lifecycle.EnvOr("CUSTOMS_DISTRIBUTION_REGISTRY_HOST", ""), "registry host to record for Distribution events instead of the one in the event (env CUSTOMS_DISTRIBUTION_REGISTRY_HOST)")
	fs.StringVar(&c.IgnoreRepositories, "ingest-ignore-repositories", lifecycle.EnvOr("CUSTOMS_INGEST_IGNORE_REPOSITORIES", ""), `comma-separated repository patterns whose pushes are ignored, e.g. "mirror/*,customs/trivy-db" (env CUSTOMS_INGEST_IGNORE_REPOSITORIES)`)
	fs.Int64Var(&c.MaxBodyBytes, "ingest-max-body-bytes", int64(lifecycle.EnvInt("CUSTOMS_INGEST_MAX_BODY_BYTES", 1<<20)), "largest webhook body accepted (env CUSTOMS_INGEST_MAX_BODY_BYTES)")

	fs.StringVar(&c.Registries, "ingest-registries", lifecycle.EnvOr("CUSTOMS_REGISTRIES", ""), `registry allow-list for tag-to-digest resolution, e.g. "docker.io,quay.io,localhost:5000;plain-http" (env CUSTOMS_REGISTRIES)`)

	secret := func(dst, file *string, flagName, env, what string) {
		fs.StringVar(dst, flagName, "", what+"; prefer the env var or the file (env "+env+")")
		fs.StringVar(file, flagName+"-file", lifecycle.EnvOr(env+"_FILE", ""), "file holding the "+what+" (env "+env+"_FILE)")
	}
	secret(&c.HarborAuthHeader, &c.HarborAuthHeaderFile, "harbor-auth-header", "CUSTOMS_HARBOR_AUTH_HEADER", "Auth Header value of the Harbor webhook policy")
	fs.StringVar(&c.HarborRegistryHost, "harbor-registry-host", lifecycle.EnvOr("CUSTOMS_HARBOR_REGISTRY_HOST", ""), "registry host to record for Harbor events instead of the one in resource_url (env CUSTOMS_HARBOR_REGISTRY_HOST)")

	secret(&c.ZotToken, &c.ZotTokenFile, "zot-token", "CUSTOMS_ZOT_TOKEN", "bearer token Zot's HTTP sink sends")
	fs.StringVar(&c.ZotUsername, "zot-username", lifecycle.EnvOr("CUSTOMS_ZOT_USERNAME", ""), "Basic auth username Zot's HTTP sink sends (env CUSTOMS_ZOT_USERNAME)")
	secret(&c.ZotPassword, &c.ZotPasswordFile, "zot-password", "CUSTOMS_ZOT_PASSWORD", "Basic auth password Zot's HTTP sink sends")
	fs.StringVar(&c.ZotRegistryHost, "zot-registry-host", lifecycle.EnvOr("CUSTOMS_ZOT_REGISTRY_HOST", ""), "host:port clients pull Zot images from; Zot events do not carry it (env CUSTOMS_ZOT_REGISTRY_HOST)")
	fs.StringVar(&c.ZotNATSSubject, "zot-nats-subject", lifecycle.EnvOr("CUSTOMS_ZOT_NATS_SUBJECT", ""), "NATS subject Zot's nats sink publishes to, e.g. zot.events; empty turns the NATS path off (env CUSTOMS_ZOT_NATS_SUBJECT)")

	secret(&c.GHCRSecret, &c.GHCRSecretFile, "ghcr-secret", "CUSTOMS_GHCR_SECRET", "GitHub webhook secret (HMAC-SHA256)")

	secret(&c.DockerHubSecret, &c.DockerHubSecretFile, "dockerhub-secret", "CUSTOMS_DOCKERHUB_SECRET", "secret path segment of the Docker Hub webhook URL")
	fs.StringVar(&c.DockerHubRegistryHost, "dockerhub-registry-host", lifecycle.EnvOr("CUSTOMS_DOCKERHUB_REGISTRY_HOST", DockerHubRegistry), "registry host Docker Hub pushes are recorded and resolved under (env CUSTOMS_DOCKERHUB_REGISTRY_HOST)")

	secret(&c.QuaySecret, &c.QuaySecretFile, "quay-secret", "CUSTOMS_QUAY_SECRET", "secret path segment of the Quay webhook URL")
	fs.StringVar(&c.QuayRegistryHost, "quay-registry-host", lifecycle.EnvOr("CUSTOMS_QUAY_REGISTRY_HOST", ""), "registry host to record for Quay events instead of the one in docker_url (env CUSTOMS_QUAY_REGISTRY_HOST)")

	secret(&c.CloudEventsToken, &c.CloudEventsTokenFile, "cloudevents-token", "CUSTOMS_CLOUDEVENTS_TOKEN", "bearer token for the generic CloudEvents receiver")
	secret(&c.CIToken, &c.CITokenFile, "ci-token", "CUSTOMS_CI_TOKEN", "bearer token for the CI push API (POST /v1/push-events)")

	fs.Float64Var(&c.RateLimit, "ingest-rate-limit", envFloat("CUSTOMS_INGEST_RATE_LIMIT", DefaultRateLimit), "sustained webhook requests per second allowed per source (receiver and client address); 0 turns limiting off (env CUSTOMS_INGEST_RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "ingest-rate-burst", lifecycle.EnvInt("CUSTOMS_INGEST_RATE_BURST", DefaultRateBurst), "webhook requests allowed at once per source (env CUSTOMS_INGEST_RATE_BURST)")
	fs.StringVar(&c.TrustedProxies, "ingest-trusted-proxies", lifecycle.EnvOr("CUSTOMS_INGEST_TRUSTED_PROXIES", ""), `reverse proxies in front of ingest, e.g. "10.0.0.0/8": requests from them are rate limited by the client in X-Forwarded-For (env CUSTOMS_INGEST_TRUSTED_PROXIES)`)
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(lifecycle.EnvOr(name, ""), 64); err == nil {
		return v
	}
	return def
}

// secretValue returns the flag value, else the environment variable, else
// the file's content.
func secretValue(flagValue, env, file string) (string, error) {
	v := flagValue
	if v == "" {
		v = lifecycle.EnvOr(env, "")
	}
	v, err := lifecycle.ReadSecret(v, file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", env, err)
	}
	return v, nil
}

// resolver builds the registry resolver, or nil without an allow-list.
func (c ServiceConfig) resolver() (Resolver, error) {
	if strings.TrimSpace(c.Registries) == "" {
		return nil, nil
	}
	al, err := registries.Parse(c.Registries)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return &RegistryResolver{Allow: al}, nil
}

// NewService builds the ingest HTTP server with every configured receiver.
func NewService(cfg ServiceConfig, pub Publisher, ready func(context.Context) error, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	receivers, err := cfg.receivers()
	if err != nil {
		return nil, err
	}
	res, err := cfg.resolver()
	if err != nil {
		return nil, err
	}
	proxies, err := ParseTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(receivers))
	for _, rc := range receivers {
		if _, ok := rc.(PathSecretReceiver); ok && res == nil {
			return nil, fmt.Errorf("ingest: the %s receiver reports tags only and needs a registry allow-list to resolve them: set CUSTOMS_REGISTRIES", rc.Name())
		}
		names = append(names, rc.Name())
	}
	log.Info("ingest receivers enabled", "receivers", strings.Join(names, ","), "zot_nats_subject", cfg.ZotNATSSubject, "resolver", res != nil)
	return NewServer(Config{
		MaxBodyBytes: cfg.MaxBodyBytes, Ready: ready, Logger: log, Resolver: res,
		IgnoreRepositories: splitPatterns(cfg.IgnoreRepositories),
		RateLimit:          cfg.RateLimit, RateBurst: cfg.RateBurst, TrustedProxies: proxies,
	}, pub, receivers...)
}

func (c ServiceConfig) receivers() ([]Receiver, error) {
	token, err := secretValue(c.DistributionToken, "CUSTOMS_DISTRIBUTION_TOKEN", c.DistributionTokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("ingest: set CUSTOMS_DISTRIBUTION_TOKEN or --distribution-token-file; webhooks are always authenticated")
	}
	dist, err := NewDistribution(DistributionConfig{Token: token, RegistryHost: c.DistributionRegistryHost})
	if err != nil {
		return nil, err
	}
	out := []Receiver{dist}

	type optional struct {
		value, env, file string
		build            func(secret string) (Receiver, error)
	}
	zotPassword, err := secretValue(c.ZotPassword, "CUSTOMS_ZOT_PASSWORD", c.ZotPasswordFile)
	if err != nil {
		return nil, err
	}
	zotToken, err := secretValue(c.ZotToken, "CUSTOMS_ZOT_TOKEN", c.ZotTokenFile)
	if err != nil {
		return nil, err
	}
	if zotToken != "" || c.ZotUsername != "" {
		z, err := NewZot(ZotConfig{Token: zotToken, Username: c.ZotUsername, Password: zotPassword, RegistryHost: c.ZotRegistryHost})
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		out = append(out, z)
	}
	for _, o := range []optional{
		{c.HarborAuthHeader, "CUSTOMS_HARBOR_AUTH_HEADER", c.HarborAuthHeaderFile, func(s string) (Receiver, error) {
			return NewHarbor(HarborConfig{AuthHeader: s, RegistryHost: c.HarborRegistryHost})
		}},
		{c.GHCRSecret, "CUSTOMS_GHCR_SECRET", c.GHCRSecretFile, func(s string) (Receiver, error) {
			return NewGHCR(GHCRConfig{Secret: s})
		}},
		{c.DockerHubSecret, "CUSTOMS_DOCKERHUB_SECRET", c.DockerHubSecretFile, func(s string) (Receiver, error) {
			return NewDockerHub(DockerHubConfig{Secret: s, RegistryHost: c.DockerHubRegistryHost})
		}},
		{c.QuaySecret, "CUSTOMS_QUAY_SECRET", c.QuaySecretFile, func(s string) (Receiver, error) {
			return NewQuay(QuayConfig{Secret: s, RegistryHost: c.QuayRegistryHost})
		}},
		{c.CloudEventsToken, "CUSTOMS_CLOUDEVENTS_TOKEN", c.CloudEventsTokenFile, func(s string) (Receiver, error) {
			return NewCloudEvents(CloudEventsConfig{Token: s})
		}},
		{c.CIToken, "CUSTOMS_CI_TOKEN", c.CITokenFile, func(s string) (Receiver, error) {
			return NewCIPush(CIPushConfig{Token: s})
		}},
	} {
		s, err := secretValue(o.value, o.env, o.file)
		if err != nil {
			return nil, err
		}
		if s == "" {
			continue
		}
		rc, err := o.build(s)
		if err != nil {
			return nil, fmt.Errorf("ingest: %w", err)
		}
		out = append(out, rc)
	}
	return out, nil
}

// StartZotNATS starts the durable Zot NATS path (see ZotNATS.Consume) when
// CUSTOMS_ZOT_NATS_SUBJECT is set, with the stream's replicas. It returns a
// nil ConsumeContext when the path is off; Stop it to stop consuming.
func StartZotNATS(ctx context.Context, cfg ServiceConfig, js jetstream.JetStream, replicas int, pub Publisher, log *slog.Logger) (jetstream.ConsumeContext, error) {
	if cfg.ZotNATSSubject == "" {
		return nil, nil
	}
	res, err := cfg.resolver()
	if err != nil {
		return nil, err
	}
	z, err := NewZotNATS(ZotNATSConfig{Subject: cfg.ZotNATSSubject, RegistryHost: cfg.ZotRegistryHost}, pub, res, log)
	if err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return z.Consume(ctx, js, replicas)
}

func splitPatterns(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
