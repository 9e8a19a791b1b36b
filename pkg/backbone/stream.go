package backbone

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig is what operators tune about the streams.
type StreamConfig struct {
	// Replicas is 1 for a single server and 3 for a production cluster.
	Replicas int
	// DuplicateWindow is how long JetStream remembers Nats-Msg-Id values.
	// Registries retry webhooks for minutes to hours; the default is 2h.
	DuplicateWindow time.Duration
	// MaxAge bounds how long events are kept; 0 keeps them forever, which
	// keeps the query projection rebuildable from the stream.
	MaxAge time.Duration
}

func (c *StreamConfig) withDefaults() {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Hour
	}
}

// EnsureStreams creates or updates the ARTIFACTS and DEADLETTER streams. It
// is safe to call from every service at start-up.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) error {
	cfg.withDefaults()
	streams := []jetstream.StreamConfig{
		{
			Name:        StreamArtifacts,
			Description: "Customs artifact lifecycle events",
			Subjects:    []string{SubjectAll},
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
			MaxAge:      cfg.MaxAge,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        StreamDeadLetter,
			Description: "Customs messages that a consumer gave up on, with the reason",
			Subjects:    []string{SubjectDeadLetterPrefix + ">"},
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
			Duplicates:  cfg.DuplicateWindow,
			Retention:   jetstream.LimitsPolicy,
		},
	}
	for _, sc := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// StreamReady reports whether the ARTIFACTS stream exists; it backs the
// readiness probes.
func StreamReady(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.Stream(ctx, StreamArtifacts); err != nil {
		return fmt.Errorf("stream %s: %w", StreamArtifacts, err)
	}
	return nil
}
