package promotion

import (
	"errors"
	"flag"
	"time"

	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/lifecycle"
)

// Names that other services and operators rely on. Never rename the durable
// consumer: a new name replays the whole stream.
const (
	// ConsumerDurable is the promotion service's durable consumer.
	ConsumerDurable = "promotion"
	// SubjectCommand carries Promote and Rollback requests (NATS
	// request/reply, queue group QueueGroup).
	SubjectCommand = backbone.SubjectPromotionCommand
	QueueGroup     = "promotion"
	// ActorAuto is the actor of automatic promotions.
	ActorAuto = "auto"
)

// ServiceConfig configures the promotion service.
type ServiceConfig struct {
	// RulesFile is the YAML promotion rules file, reloaded when it changes.
	RulesFile string
	// PublicKeys is a comma-separated list of "name=path" or "path" of
	// cosign public keys. Signatures by any other key count for nothing.
	PublicKeys string
	// Registries is the allow-list (registries.Parse syntax) for source and
	// target registries.
	Registries string
	// ReloadInterval is how often the rules file is checked for changes.
	ReloadInterval time.Duration
	// CommandTimeout bounds one Promote or Rollback command.
	CommandTimeout time.Duration
	// Replicas of the KV bucket; match the stream's.
	Replicas int
}

// RegisterFlags adds the promotion flags, each defaulting to its
// environment variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.RulesFile, "promotion-rules", lifecycle.EnvOr("CUSTOMS_PROMOTION_RULES", "deploy/rules/dev.yaml"), "promotion rules YAML file (env CUSTOMS_PROMOTION_RULES)")
	fs.StringVar(&c.PublicKeys, "promotion-public-keys", lifecycle.EnvOr("CUSTOMS_PROMOTION_PUBLIC_KEYS", ""), "comma-separated [name=]path of trusted cosign public keys (env CUSTOMS_PROMOTION_PUBLIC_KEYS)")
	fs.StringVar(&c.Registries, "promotion-registries", lifecycle.EnvOr("CUSTOMS_REGISTRIES", ""), "allowed registries, e.g. 'ghcr.io,localhost:5000;plain-http' (env CUSTOMS_REGISTRIES)")
	fs.DurationVar(&c.ReloadInterval, "promotion-rules-reload", envDuration("CUSTOMS_PROMOTION_RULES_RELOAD", 2*time.Second), "how often to check the rules file for changes (env CUSTOMS_PROMOTION_RULES_RELOAD)")
	fs.DurationVar(&c.CommandTimeout, "promotion-command-timeout", envDuration("CUSTOMS_PROMOTION_COMMAND_TIMEOUT", 2*time.Minute), "time limit of one Promote or Rollback (env CUSTOMS_PROMOTION_COMMAND_TIMEOUT)")
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(lifecycle.EnvOr(key, "")); err == nil {
		return d
	}
	return def
}

// Validate checks the configuration and fills in defaults.
func (c *ServiceConfig) Validate() error {
	if c.RulesFile == "" {
		return errors.New("a rules file is required (CUSTOMS_PROMOTION_RULES)")
	}
	if c.ReloadInterval <= 0 {
		c.ReloadInterval = 2 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 2 * time.Minute
	}
	return nil
}
