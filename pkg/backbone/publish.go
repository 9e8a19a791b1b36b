package backbone

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// EventID derives a deterministic event id from the parts that identify an
// event (its source, the source's own event id, the digest, ...). The same
// parts always give the same id, so a re-sent webhook is dropped by the
// stream's duplicate window.
func EventID(kind string, parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return kind + "-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// PublishResult is what JetStream said about one publish.
type PublishResult struct {
	Stream    string
	Sequence  uint64
	Duplicate bool
}

// Publisher publishes events to the ARTIFACTS stream and waits for the
// JetStream ack.
type Publisher struct {
	js   []jetstream.JetStream
	next atomic.Uint64
}

// NewPublisher returns a Publisher on js. With several JetStream contexts
// (each on its own connection) it spreads publishes over them: one
// connection's single reader and writer cap concurrent synchronous
// publishes well below what the server takes.
func NewPublisher(js ...jetstream.JetStream) *Publisher {
	if len(js) == 0 {
		panic("backbone.NewPublisher: no JetStream context")
	}
	return &Publisher{js: js}
}

func (p *Publisher) pick() jetstream.JetStream {
	if len(p.js) == 1 {
		return p.js[0]
	}
	return p.js[p.next.Add(1)%uint64(len(p.js))]
}

// Publish validates evt, sets its headers (Nats-Msg-Id, correlation id, W3C
// trace context) and returns once JetStream has stored it. A timeout or a
// missing stream wraps ErrUnavailable.
func (p *Publisher) Publish(ctx context.Context, evt *customsv1.Event) (PublishResult, error) {
	subject, err := SubjectFor(evt)
	if err != nil {
		return PublishResult{}, err
	}
	if err := validateEvent(evt); err != nil {
		return PublishResult{}, err
	}
	ctx, span := tracer().Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingDestinationName(subject),
			semconv.MessagingOperationTypeSend,
			semconv.MessagingMessageID(evt.GetId()),
			attribute.String("customs.artifact.digest", evt.GetArtifact().GetDigest()),
		))
	defer span.End()

	data, err := proto.Marshal(evt)
	if err != nil {
		return PublishResult{}, fmt.Errorf("marshal event %s: %w", evt.GetId(), err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(HeaderContentType, ContentTypeProto)
	msg.Header.Set(HeaderEventType, subject)
	if evt.GetCorrelationId() != "" {
		msg.Header.Set(HeaderCorrelationID, evt.GetCorrelationId())
	}
	InjectTrace(ctx, msg.Header)

	ack, err := p.pick().PublishMsg(ctx, msg, jetstream.WithMsgID(evt.GetId()), jetstream.WithExpectStream(StreamArtifacts))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "publish failed")
		if isUnavailable(err) {
			return PublishResult{}, fmt.Errorf("publish %s %s: %w: %w", subject, evt.GetId(), ErrUnavailable, err)
		}
		return PublishResult{}, fmt.Errorf("publish %s %s: %w", subject, evt.GetId(), err)
	}
	span.SetAttributes(attribute.Int64("messaging.nats.stream_sequence", int64(ack.Sequence)), attribute.Bool("messaging.nats.duplicate", ack.Duplicate))
	if !ack.Duplicate {
		countPublished(subject, evt)
	}
	return PublishResult{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

func isUnavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrConnectionDraining) ||
		errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

func validateEvent(evt *customsv1.Event) error {
	var missing []string
	if evt.GetId() == "" {
		missing = append(missing, "id")
	}
	if evt.GetArtifact().GetDigest() == "" {
		missing = append(missing, "artifact.digest")
	}
	if evt.GetArtifact().GetRepository() == "" {
		missing = append(missing, "artifact.repository")
	}
	if evt.GetOccurredAt() == nil {
		missing = append(missing, "occurred_at")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w %q: missing %s", ErrInvalidEvent, evt.GetId(), strings.Join(missing, ", "))
	}
	return nil
}

// RawPublish publishes msg as it is over the same connections, for
// benchmarks that measure the ceiling below Publish.
func (p *Publisher) RawPublish(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return p.pick().PublishMsg(ctx, msg, opts...)
}
