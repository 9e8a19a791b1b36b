// Package signer is the signer service: it consumes artifact.scanned,
// decides by policy whether Customs may vouch for the artifact, and if so
// signs it and attaches its SBOM, vulnerability scan and provenance as
// in-toto attestations in the registry with the cosign library, then
// publishes artifact.signed. Otherwise it publishes artifact.rejected with
// one line per offending finding.
package signer

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/signer/policy"
)

// Durable is the signer's consumer name. Never rename it: a new name
// replays the whole stream.
const Durable = "signer"

// Producer is the producer name on the events the signer publishes.
const Producer = "signer"

// ServiceConfig configures the signer.
type ServiceConfig struct {
	// Key is a cosign private key file or a KMS URI (awskms://, gcpkms://,
	// azurekms://, hashivault://).
	Key string
	// KeyPassword decrypts Key. It is read from CUSTOMS_SIGNER_KEY_PASSWORD
	// (or COSIGN_PASSWORD) and deliberately has no flag, so it never shows
	// in a process listing or -help output.
	KeyPassword string
	// KeyPasswordFile holds the password when KeyPassword is empty.
	KeyPasswordFile string
	// PolicyFile is the YAML or JSON policy; empty uses policy.Default.
	PolicyFile string
	// PolicyReload is how often the policy file is checked for changes.
	PolicyReload time.Duration
	// RekorURL turns on transparency log upload; empty keeps it off.
	RekorURL string
	// Registries is the allow-list spec (see registries.Parse), used when
	// NewService gets no AllowList.
	Registries string
	// Concurrency is how many artifacts are signed at once.
	Concurrency int
	// MaxDeliver bounds retries of a signing infrastructure error before
	// the event is dead-lettered.
	MaxDeliver int
	// Replicas of the report object store; match the stream's.
	Replicas int
	// Now is the clock for allow-list expiry; nil uses time.Now.
	Now func() time.Time
}

// RegisterFlags adds the signer flags, each defaulting to its environment
// variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Key, "signer-key", lifecycle.EnvOr("CUSTOMS_SIGNER_KEY", ""), "cosign private key file, or a KMS URI: awskms://, gcpkms://, azurekms://, hashivault:// (env CUSTOMS_SIGNER_KEY)")
	fs.StringVar(&c.KeyPasswordFile, "signer-key-password-file", lifecycle.EnvOr("CUSTOMS_SIGNER_KEY_PASSWORD_FILE", ""), "file holding the private key password; the password itself is only read from env CUSTOMS_SIGNER_KEY_PASSWORD or COSIGN_PASSWORD (env CUSTOMS_SIGNER_KEY_PASSWORD_FILE)")
	fs.StringVar(&c.PolicyFile, "signer-policy", lifecycle.EnvOr("CUSTOMS_SIGNER_POLICY", ""), "policy file (YAML or JSON), reloaded on change; empty rejects any CRITICAL finding (env CUSTOMS_SIGNER_POLICY)")
	fs.DurationVar(&c.PolicyReload, "signer-policy-reload", envDuration("CUSTOMS_SIGNER_POLICY_RELOAD", 5*time.Second), "how often to check the policy file for changes (env CUSTOMS_SIGNER_POLICY_RELOAD)")
	fs.StringVar(&c.RekorURL, "signer-rekor-url", lifecycle.EnvOr("CUSTOMS_SIGNER_REKOR_URL", ""), "Rekor URL for transparency log upload; empty (default) uploads nothing (env CUSTOMS_SIGNER_REKOR_URL)")
	fs.StringVar(&c.Registries, "signer-registries", lifecycle.EnvOr("CUSTOMS_REGISTRIES", ""), `allowed registries, e.g. "ghcr.io,localhost:5000;plain-http" (env CUSTOMS_REGISTRIES)`)
	fs.IntVar(&c.Concurrency, "signer-concurrency", lifecycle.EnvInt("CUSTOMS_SIGNER_CONCURRENCY", 8), "artifacts signed at once (env CUSTOMS_SIGNER_CONCURRENCY)")
	fs.IntVar(&c.MaxDeliver, "signer-max-deliver", lifecycle.EnvInt("CUSTOMS_SIGNER_MAX_DELIVER", 10), "deliveries of a failing event before it is dead-lettered (env CUSTOMS_SIGNER_MAX_DELIVER)")
	c.KeyPassword = lifecycle.EnvOr("CUSTOMS_SIGNER_KEY_PASSWORD", os.Getenv("COSIGN_PASSWORD"))
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// Validate checks the config and fills in defaults.
func (c *ServiceConfig) Validate() error {
	if c.Key == "" {
		return errors.New("signer: a signing key is required (CUSTOMS_SIGNER_KEY: a cosign key file or a KMS URI)")
	}
	if c.PolicyReload <= 0 {
		c.PolicyReload = 5 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service is the signer service.
type Service struct {
	cfg      ServiceConfig
	log      *slog.Logger
	signer   *Signer
	policies *policy.Store
	registry *registries.AllowList
	reports  jetstream.ObjectStore
	pub      *backbone.Publisher
	consumer *backbone.Consumer
	locks    stripedLocks
}

// NewService loads the key (decrypting it once), the policy and the report
// store, and prepares the durable consumer. allow may be nil, in which case
// cfg.Registries is parsed.
func NewService(ctx context.Context, cfg ServiceConfig, js jetstream.JetStream, log *slog.Logger, allow *registries.AllowList) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if allow == nil {
		var err error
		if allow, err = registries.Parse(cfg.Registries); err != nil {
			return nil, err
		}
	}
	password, err := lifecycle.ReadSecret(cfg.KeyPassword, cfg.KeyPasswordFile)
	if err != nil {
		return nil, fmt.Errorf("signer key password: %w", err)
	}
	key, err := LoadKey(ctx, cfg.Key, []byte(password))
	if err != nil {
		return nil, err
	}
	sg, err := NewSigner(key, cfg.RekorURL)
	if err != nil {
		return nil, err
	}
	policies, err := policy.NewStore(cfg.PolicyFile, log.With("component", "policy"))
	if err != nil {
		return nil, err
	}
	reports, err := backbone.EnsureReportStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, signer: sg, policies: policies, registry: allow, reports: reports, pub: backbone.NewPublisher(js)}
	s.consumer, err = backbone.NewConsumer(js, backbone.ConsumerConfig{
		Durable:        Durable,
		FilterSubjects: []string{backbone.SubjectScanned},
		Concurrency:    cfg.Concurrency,
		MaxDeliver:     cfg.MaxDeliver,
		Logger:         log.With("component", "signer"),
	}, s.Handle)
	if err != nil {
		return nil, err
	}
	log.Info("signer ready", "key_id", key.ID, "policy", policies.Current().ID(), "rekor", cfg.RekorURL != "", "registries", allow.Hosts())
	return s, nil
}

// KeyID is the fingerprint of the signing key.
func (s *Service) KeyID() string { return s.signer.key.ID }

// PublicKeyPEM is the public key that verifies this signer's signatures.
func (s *Service) PublicKeyPEM() []byte { return s.signer.key.PublicPEM }

// Run consumes artifact.scanned and watches the policy file until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	go s.policies.Watch(ctx, s.cfg.PolicyReload)
	return s.consumer.Run(ctx)
}
