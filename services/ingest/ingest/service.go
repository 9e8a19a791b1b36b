package ingest

import (
	"context"
	"errors"
	"flag"
	"log/slog"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// ServiceConfig is the ingest service's configuration, shared by its own
// main and the one-process runtime.
type ServiceConfig struct {
	Listen string
	// DistributionToken is the bearer token CNCF Distribution sends.
	DistributionToken     string
	DistributionTokenFile string
	// DistributionRegistryHost overrides the registry host in its events.
	DistributionRegistryHost string
	MaxBodyBytes             int64
}

// RegisterFlags adds the ingest flags, each defaulting to its environment
// variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "ingest-listen", lifecycle.EnvOr("CUSTOMS_INGEST_LISTEN", "127.0.0.1:8080"), "webhook HTTP listen address (env CUSTOMS_INGEST_LISTEN)")
	fs.StringVar(&c.DistributionToken, "distribution-token", "", "bearer token CNCF Distribution sends; prefer the env var or the file (env CUSTOMS_DISTRIBUTION_TOKEN)")
	fs.StringVar(&c.DistributionTokenFile, "distribution-token-file", lifecycle.EnvOr("CUSTOMS_DISTRIBUTION_TOKEN_FILE", ""), "file holding the Distribution bearer token (env CUSTOMS_DISTRIBUTION_TOKEN_FILE)")
	fs.StringVar(&c.DistributionRegistryHost, "distribution-registry-host", lifecycle.EnvOr("CUSTOMS_DISTRIBUTION_REGISTRY_HOST", ""), "registry host to record for Distribution events instead of the one in the event (env CUSTOMS_DISTRIBUTION_REGISTRY_HOST)")
	fs.Int64Var(&c.MaxBodyBytes, "ingest-max-body-bytes", int64(lifecycle.EnvInt("CUSTOMS_INGEST_MAX_BODY_BYTES", 1<<20)), "largest webhook body accepted (env CUSTOMS_INGEST_MAX_BODY_BYTES)")
}

// NewService builds the ingest HTTP server with every configured receiver.
func NewService(cfg ServiceConfig, pub Publisher, ready func(context.Context) error, log *slog.Logger) (*Server, error) {
	token := cfg.DistributionToken
	if token == "" {
		token = lifecycle.EnvOr("CUSTOMS_DISTRIBUTION_TOKEN", "")
	}
	token, err := lifecycle.ReadSecret(token, cfg.DistributionTokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errors.New("ingest: set CUSTOMS_DISTRIBUTION_TOKEN or --distribution-token-file; webhooks are always authenticated")
	}
	dist, err := NewDistribution(DistributionConfig{Token: token, RegistryHost: cfg.DistributionRegistryHost})
	if err != nil {
		return nil, err
	}
	return NewServer(Config{MaxBodyBytes: cfg.MaxBodyBytes, Ready: ready, Logger: log}, pub, dist)
}
