package query

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
)

// Names that must never change: renaming the durable consumer or the bucket
// replays or loses the projection.
const (
	ProjectionDurable = "query-projection"
	BucketArtifacts   = "CUSTOMS_ARTIFACTS"
)

// ErrNotFound is returned when the projection has no such artifact.
var ErrNotFound = errors.New("artifact not found")

// ArtifactKey is the KV key of a digest's record: "a.sha256.<hex>".
func ArtifactKey(digest string) string {
	return "a." + strings.Replace(digest, ":", ".", 1)
}

// tagKey is the KV key of the tag index entry for registry/repo:tag. Tags
// may contain characters KV keys cannot, so the key is a hash.
func tagKey(registry, repository, tag string) string {
	h := sha256.Sum256([]byte(registry + "/" + repository + ":" + tag))
	return "t." + hex.EncodeToString(h[:20])
}

// EnsureBucket creates or updates the projection's KV bucket. created is
// true when the bucket did not exist, which means the projection must be
// rebuilt from the stream.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, replicas int) (kv jetstream.KeyValue, created bool, err error) {
	kv, err = js.KeyValue(ctx, BucketArtifacts)
	if err == nil {
		return kv, false, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, fmt.Errorf("open bucket %s: %w", BucketArtifacts, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketArtifacts,
		Description: "Customs artifact projection, keyed by digest; rebuildable from the ARTIFACTS stream",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	})
	if err != nil {
		return nil, false, fmt.Errorf("create bucket %s: %w", BucketArtifacts, err)
	}
	return kv, true, nil
}

// Projection folds ARTIFACTS events into the KV bucket.
type Projection struct {
	kv  jetstream.KeyValue
	log *slog.Logger
}

// NewProjection returns a projection writing to kv.
func NewProjection(kv jetstream.KeyValue, log *slog.Logger) *Projection {
	return &Projection{kv: kv, log: log}
}

// Handle is the backbone.Handler for the projection consumer.
func (p *Projection) Handle(ctx context.Context, evt *customsv1.Event) error {
	info, ok := backbone.Info(ctx)
	if !ok {
		return backbone.Terminalf("projection: no delivery metadata")
	}
	ref := evt.GetArtifact()
	if err := artifactref.ValidateDigest(ref.GetDigest()); err != nil {
		return backbone.Terminal(fmt.Errorf("projection: %w", err))
	}
	if evt.GetOccurredAt() == nil {
		return backbone.Terminalf("projection: event %s has no occurred_at", evt.GetId())
	}
	entry := &customsv1.HistoryEntry{
		StreamSequence: info.StreamSequence,
		Subject:        info.Subject,
		Event:          evt,
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		entry.TraceId = sc.TraceID().String()
	}

	_, isPush := evt.GetPayload().(*customsv1.Event_Pushed)
	if !isPush || ref.GetTag() == "" {
		return p.update(ctx, ref.GetDigest(), func(rec *customsv1.ArtifactRecord) bool {
			if !applyEvent(rec, entry, tagChange{}) {
				return false
			}
			if !isPush {
				observeStageLatency(subjectStage(info.Subject), rec.GetArtifact().GetFirstSeenAt().AsTime(), evt.GetOccurredAt().AsTime())
			}
			return true
		})
	}

	// A tagged push may move the tag. Write the new digest's record first,
	// then the previous digest's, then the index: each step is idempotent,
	// and the index still holds the previous digest if we crash midway.
	tk := tagKey(ref.GetRegistry(), ref.GetRepository(), ref.GetTag())
	prev := ""
	switch e, err := p.kv.Get(ctx, tk); {
	case err == nil:
		prev = string(e.Value())
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("read tag index: %w", err)
	}
	if err := p.update(ctx, ref.GetDigest(), func(rec *customsv1.ArtifactRecord) bool {
		return applyEvent(rec, entry, tagChange{previousDigest: prev})
	}); err != nil {
		return err
	}
	if prev == "" || prev == ref.GetDigest() {
		if prev == "" {
			if _, err := p.kv.Put(ctx, tk, []byte(ref.GetDigest())); err != nil {
				return fmt.Errorf("write tag index: %w", err)
			}
		}
		return nil
	}
	if err := p.update(ctx, prev, func(rec *customsv1.ArtifactRecord) bool {
		return applyTagMovedAway(rec, ref, ref.GetDigest(), evt.GetOccurredAt(), info.StreamSequence)
	}); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	p.log.Info("tag moved", "registry", ref.GetRegistry(), "repository", ref.GetRepository(), "tag", ref.GetTag(), "from", prev, "to", ref.GetDigest())
	if _, err := p.kv.Put(ctx, tk, []byte(ref.GetDigest())); err != nil {
		return fmt.Errorf("write tag index: %w", err)
	}
	return nil
}

// update applies fn to the digest's record with optimistic concurrency, so
// two projection replicas can never overwrite each other's work.
func (p *Projection) update(ctx context.Context, digest string, fn func(*customsv1.ArtifactRecord) bool) error {
	key := ArtifactKey(digest)
	for attempt := 0; ; attempt++ {
		rec := &customsv1.ArtifactRecord{}
		var rev uint64
		switch e, err := p.kv.Get(ctx, key); {
		case err == nil:
			if err := proto.Unmarshal(e.Value(), rec); err != nil {
				return backbone.Terminal(fmt.Errorf("decode record %s: %w", key, err))
			}
			rev = e.Revision()
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return fmt.Errorf("read record %s: %w", key, err)
		}
		if !fn(rec) {
			return nil
		}
		if rec.Artifact == nil {
			return ErrNotFound
		}
		data, err := proto.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode record %s: %w", key, err)
		}
		if rev == 0 {
			_, err = p.kv.Create(ctx, key, data)
		} else {
			_, err = p.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		if attempt < 3 && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)) {
			continue
		}
		return fmt.Errorf("write record %s: %w", key, err)
	}
}

// Record reads the stored record of a digest.
func Record(ctx context.Context, kv jetstream.KeyValue, digest string) (*customsv1.ArtifactRecord, error) {
	e, err := kv.Get(ctx, ArtifactKey(digest))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	if err != nil {
		return nil, fmt.Errorf("read record %s: %w", digest, err)
	}
	rec := &customsv1.ArtifactRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", digest, err)
	}
	return rec, nil
}

// ResetConsumer deletes the projection's durable consumer so it is created
// again from the start of the stream: the projection is rebuilt by replay.
func ResetConsumer(ctx context.Context, js jetstream.JetStream) error {
	err := js.DeleteConsumer(ctx, backbone.StreamArtifacts, ProjectionDurable)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("reset consumer %s: %w", ProjectionDurable, err)
	}
	return nil
}

// stageLatency is how long after the push each stage's event happened: the
// end-to-end latency of the chain, stage by stage.
var stageLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "customs_stage_latency_seconds",
	Help:    "Time from an artifact's push to each later stage event (scanned, signed, promoted, rejected, failed).",
	Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
}, []string{"stage"})

func observeStageLatency(stage string, pushed, at time.Time) {
	if pushed.IsZero() || at.Before(pushed) {
		return
	}
	stageLatency.WithLabelValues(stage).Observe(at.Sub(pushed).Seconds())
}

func subjectStage(subject string) string {
	return strings.TrimPrefix(subject, "artifact.")
}
