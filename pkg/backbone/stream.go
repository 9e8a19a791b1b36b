package backbone

import (
	"context"
	"errors"
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
		// A cluster that is still electing its JetStream leader answers with
		// errors for a few seconds: retry until ctx ends.
		for attempt := 1; ; attempt++ {
			callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := js.CreateOrUpdateStream(callCtx, sc)
			cancel()
			if err == nil {
				break
			}
			if isConfigError(err) || ctx.Err() != nil {
				return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
			case <-time.After(min(time.Duration(attempt)*200*time.Millisecond, 2*time.Second)):
			}
		}
	}
	return nil
}

// isConfigError reports errors that retrying cannot fix, such as a stream
// config the server refuses.
func isConfigError(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jetstream.JSErrCodeStreamNameInUse, jetstream.JSErrCodeBadRequest:
		return true
	}
	return apiErr.Code == 400 && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabled && apiErr.ErrorCode != jetstream.JSErrCodeJetStreamNotEnabledForAccount
}

// StreamReady reports whether the ARTIFACTS stream exists; it backs the
// readiness probes.
func StreamReady(ctx context.Context, js jetstream.JetStream) error {
	if _, err := js.Stream(ctx, StreamArtifacts); err != nil {
		return fmt.Errorf("stream %s: %w", StreamArtifacts, err)
	}
	return nil
}
