package backbone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// Handler handles one event. Return nil to ack, a Terminal error to give up
// on the message (term plus a dead-letter record), or any other error to
// have it redelivered with backoff.
type Handler func(ctx context.Context, evt *customsv1.Event) error

// MessageInfo is the delivery metadata of the message being handled.
type MessageInfo struct {
	Subject        string
	StreamSequence uint64
	NumDelivered   uint64
	Timestamp      time.Time
	Header         nats.Header
	// InProgress tells JetStream the handler is still working, which resets
	// the ack wait so a long task is not redelivered.
	InProgress func() error
}

type infoKey struct{}

// Info returns the delivery metadata for ctx inside a Handler.
func Info(ctx context.Context) (MessageInfo, bool) {
	mi, ok := ctx.Value(infoKey{}).(MessageInfo)
	return mi, ok
}

// ConsumerConfig describes a durable pull consumer on the ARTIFACTS stream.
type ConsumerConfig struct {
	// Durable name. Never rename it: a new name replays the whole stream.
	Durable        string
	FilterSubjects []string
	// MaxDeliver bounds redeliveries; after the last one the message is
	// dead-lettered. Default 10.
	MaxDeliver int
	// AckWait is how long a delivery may stay unacked. Default 30s.
	AckWait time.Duration
	// Concurrency is how many handlers run at once. Default 1, which also
	// keeps stream order.
	Concurrency int
	// BackoffBase and BackoffMax shape the nak delay: base*2^(n-1), capped,
	// with jitter. Defaults 500ms and 30s.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// DeliverPolicy for a consumer created for the first time. Default all.
	DeliverPolicy jetstream.DeliverPolicy
	Logger        *slog.Logger
}

// Validate checks the config and fills in defaults.
func (c *ConsumerConfig) Validate() error {
	if c.Durable == "" {
		return errors.New("consumer: durable name is required")
	}
	if len(c.FilterSubjects) == 0 {
		return fmt.Errorf("consumer %s: at least one filter subject is required", c.Durable)
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 10
	}
	if c.MaxDeliver < 1 {
		return fmt.Errorf("consumer %s: max deliver must be positive", c.Durable)
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 1
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 500 * time.Millisecond
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Backoff returns the nak delay before delivery number n+1.
func (c *ConsumerConfig) Backoff(numDelivered uint64) time.Duration {
	d := c.BackoffBase
	for i := uint64(1); i < numDelivered && d < c.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.BackoffMax)
	// Up to 20% jitter spreads retries from many workers.
	return d - time.Duration(rand.Int64N(int64(d)/5+1)) //nolint:gosec // jitter needs no cryptographic randomness
}

// Consumer runs a Handler on a durable pull consumer.
type Consumer struct {
	js      jetstream.JetStream
	cfg     ConsumerConfig
	handler Handler
}

// NewConsumer validates cfg and returns a Consumer. Call Run to start it.
func NewConsumer(js jetstream.JetStream, cfg ConsumerConfig, h Handler) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, fmt.Errorf("consumer %s: handler is nil", cfg.Durable)
	}
	return &Consumer{js: js, cfg: cfg, handler: h}, nil
}

// Ensure creates or updates the durable consumer.
func (c *Consumer) Ensure(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, StreamArtifacts, jetstream.ConsumerConfig{
		Durable:        c.cfg.Durable,
		FilterSubjects: c.cfg.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.cfg.AckWait,
		MaxDeliver:     c.cfg.MaxDeliver,
		DeliverPolicy:  c.cfg.DeliverPolicy,
		MaxAckPending:  max(c.cfg.Concurrency*4, 64),
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s: %w", c.cfg.Durable, err)
	}
	return cons, nil
}

// Run consumes until ctx is done. Messages in flight finish before it
// returns.
func (c *Consumer) Run(ctx context.Context) error {
	var iter jetstream.MessagesContext
	// NATS may be briefly unreachable at start-up (a cluster electing a
	// leader, say): keep trying rather than fail the service.
	for attempt := uint64(1); ; attempt++ {
		cons, err := c.Ensure(ctx)
		if err == nil {
			// Short pull expiries re-issue pull requests quickly when one is lost,
			// e.g. while a clustered consumer elects its leader.
			iter, err = cons.Messages(jetstream.PullMaxMessages(max(c.cfg.Concurrency*2, 8)), jetstream.PullExpiry(5*time.Second))
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		delay := c.cfg.Backoff(attempt)
		c.cfg.Logger.Warn("consumer not ready; retrying", "consumer", c.cfg.Durable, "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()

	work := make(chan jetstream.Msg)
	var wg sync.WaitGroup
	for range c.cfg.Concurrency {
		wg.Go(func() {
			for msg := range work {
				c.handle(context.WithoutCancel(ctx), msg)
			}
		})
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	for {
		msg, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			c.cfg.Logger.Warn("consumer fetch failed", "consumer", c.cfg.Durable, "error", err)
			continue
		}
		work <- msg
	}
}

func (c *Consumer) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		c.cfg.Logger.Error("message without JetStream metadata", "consumer", c.cfg.Durable, "subject", msg.Subject(), "error", err)
		_ = msg.Term()
		return
	}
	ctx = ExtractTrace(ctx, msg.Headers())
	ctx, span := tracer().Start(ctx, "process "+msg.Subject(),
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String("nats"),
			semconv.MessagingDestinationName(msg.Subject()),
			semconv.MessagingConsumerGroupName(c.cfg.Durable),
			semconv.MessagingOperationTypeProcess,
			attribute.Int64("messaging.nats.stream_sequence", int64(meta.Sequence.Stream)),
			attribute.Int64("messaging.nats.num_delivered", int64(meta.NumDelivered)),
		))
	defer span.End()

	log := c.cfg.Logger.With(
		"consumer", c.cfg.Durable,
		"subject", msg.Subject(),
		"stream_seq", meta.Sequence.Stream,
		"trace_id", span.SpanContext().TraceID().String(),
	)
	ctx = context.WithValue(ctx, infoKey{}, MessageInfo{
		Subject:        msg.Subject(),
		StreamSequence: meta.Sequence.Stream,
		NumDelivered:   meta.NumDelivered,
		Timestamp:      meta.Timestamp,
		Header:         msg.Headers(),
		InProgress:     msg.InProgress,
	})

	start := time.Now()
	err = c.decodeAndHandle(ctx, msg, &log)
	outcome := outcomeOf(err, meta.NumDelivered, c.cfg.MaxDeliver)
	handleSeconds.WithLabelValues(c.cfg.Durable, outcome).Observe(time.Since(start).Seconds())
	handledTotal.WithLabelValues(c.cfg.Durable, outcome).Inc()
	switch {
	case err == nil:
		if ackErr := msg.DoubleAck(ctx); ackErr != nil {
			// The handler is idempotent, so a lost ack only costs a redelivery.
			log.Warn("ack failed; message will be redelivered", "error", ackErr)
		}
	case IsTerminal(err):
		span.RecordError(err)
		span.SetStatus(codes.Error, "terminal")
		log.Error("giving up on message", "error", err)
		if !c.deadLetter(ctx, msg, meta, err, log) {
			return
		}
		if termErr := msg.TermWithReason(truncate(err.Error(), 256)); termErr != nil {
			log.Warn("term failed", "error", termErr)
		}
	case meta.NumDelivered >= uint64(c.cfg.MaxDeliver):
		span.RecordError(err)
		span.SetStatus(codes.Error, "max deliveries")
		log.Error("retries exhausted; dead-lettering", "error", err, "deliveries", meta.NumDelivered)
		if !c.deadLetter(ctx, msg, meta, fmt.Errorf("retries exhausted after %d deliveries: %w", meta.NumDelivered, err), log) {
			return
		}
		if termErr := msg.TermWithReason("max deliveries"); termErr != nil {
			log.Warn("term failed", "error", termErr)
		}
	default:
		span.RecordError(err)
		delay := c.cfg.Backoff(meta.NumDelivered)
		log.Warn("handler failed; will retry", "error", err, "deliveries", meta.NumDelivered, "retry_in", delay)
		if nakErr := msg.NakWithDelay(delay); nakErr != nil {
			log.Warn("nak failed", "error", nakErr)
		}
	}
}

func (c *Consumer) decodeAndHandle(ctx context.Context, msg jetstream.Msg, log **slog.Logger) (err error) {
	var evt customsv1.Event
	if err := proto.Unmarshal(msg.Data(), &evt); err != nil {
		return Terminalf("decode %s message: %w", msg.Subject(), err)
	}
	*log = (*log).With("digest", evt.GetArtifact().GetDigest(), "event_id", evt.GetId())
	defer func() {
		// A panic on one message must not take the service down, and a
		// message that panics every time is poison: give up on it.
		if r := recover(); r != nil {
			err = Terminalf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return c.handler(ctx, &evt)
}

// deadLetter records msg on the dead-letter subject. If that fails it naks
// msg instead and returns false: a message is only terminated once its
// dead-letter record is stored, so nothing is lost.
func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, cause error, log *slog.Logger) bool {
	dl := nats.NewMsg(SubjectDeadLetterPrefix + c.cfg.Durable)
	dl.Data = msg.Data()
	for k, v := range msg.Headers() {
		// Nats-* headers are publish instructions for the original stream
		// (msg id, expected stream) and would make this publish fail.
		if !strings.HasPrefix(k, "Nats-") {
			dl.Header[k] = v
		}
	}
	dl.Header.Set(HeaderDLQReason, truncate(cause.Error(), 1024))
	dl.Header.Set(HeaderDLQSubject, msg.Subject())
	dl.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	dl.Header.Set(HeaderDLQConsumer, c.cfg.Durable)
	dl.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(meta.NumDelivered, 10))
	id := "dlq-" + c.cfg.Durable + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)
	pubCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.js.PublishMsg(pubCtx, dl, jetstream.WithMsgID(id)); err != nil {
		log.Error("dead-letter publish failed; will retry the message", "error", err)
		_ = msg.NakWithDelay(c.cfg.BackoffMax)
		return false
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
