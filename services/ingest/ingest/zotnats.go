package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ZotNATSQueue is the queue group of the Zot NATS subscription, so that
// several ingest replicas handle each event once.
const ZotNATSQueue = "customs-ingest-zot"

// ZotNATSConfig configures the path where Zot publishes its CloudEvents
// straight to NATS (events extension, "nats" sink) instead of calling a
// webhook.
type ZotNATSConfig struct {
	// Subject is the sink's "channel", e.g. "zot.events".
	Subject string
	// RegistryHost is the host:port clients pull from.
	RegistryHost string
}

// ZotNATS turns Zot CloudEvents received on a NATS subject into
// artifact.pushed events. Zot publishes with core NATS (at most once).
// Consume makes that durable: a JetStream stream captures the subject, so
// the NATS server keeps every event Zot publishes, also while ingest is
// down, until ingest has stored it. Subscribe is the plain subscription:
// what arrives while no ingest listens is lost.
type ZotNATS struct {
	parser  zotParser
	subject string
	pub     Publisher
	res     Resolver
	timeout time.Duration
	log     *slog.Logger
}

// NewZotNATS returns the subscriber; Subscribe starts it.
func NewZotNATS(cfg ZotNATSConfig, pub Publisher, res Resolver, log *slog.Logger) (*ZotNATS, error) {
	if cfg.Subject == "" {
		return nil, errors.New("zot nats: a subject is required")
	}
	p, err := newZotParser(cfg.RegistryHost)
	if err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("zot nats: publisher is nil")
	}
	if log == nil {
		log = slog.Default()
	}
	return &ZotNATS{parser: p, subject: cfg.Subject, pub: pub, res: res, timeout: 10 * time.Second, log: log.With("receiver", "zot-nats", "subject", cfg.Subject)}, nil
}

// Subscribe starts the subscription on nc; unsubscribe (or drain) the
// returned subscription to stop it.
func (z *ZotNATS) Subscribe(nc *nats.Conn) (*nats.Subscription, error) {
	sub, err := nc.QueueSubscribe(z.subject, ZotNATSQueue, func(m *nats.Msg) {
		resp, err := z.Handle(context.Background(), m)
		if m.Reply != "" {
			// A requester (not Zot, which only publishes) gets the outcome.
			body := any(resp)
			if err != nil {
				body = errorBody{Error: "rejected", Reason: err.Error()}
			}
			b, _ := json.Marshal(body)
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", z.subject, err)
	}
	return sub, nil
}

// Stream and durable consumer of the durable Zot path.
const (
	ZotNATSStream   = "ZOT_EVENTS"
	ZotNATSConsumer = "ingest-zot"
)

// zotMaxAge bounds how long an unhandled Zot event is kept.
const zotMaxAge = 7 * 24 * time.Hour

// Consume creates (or updates) the ZOT_EVENTS stream on the sink's subject
// and handles its messages with the durable consumer ingest-zot, shared by
// every ingest replica. A message is acknowledged once its pushes are
// stored; a malformed or refused one is terminated and logged; when NATS or
// the registry is unavailable it is redelivered with backoff. Stop the
// returned context to stop consuming.
func (z *ZotNATS) Consume(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.ConsumeContext, error) {
	stream, err := z.EnsureStream(ctx, js, replicas)
	if err != nil {
		return nil, err
	}
	backoff := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:    ZotNATSConsumer,
		AckPolicy:  jetstream.AckExplicitPolicy,
		AckWait:    z.timeout + 20*time.Second,
		MaxDeliver: 20,
		BackOff:    backoff,
	})
	if err != nil {
		return nil, fmt.Errorf("zot nats: consumer %s: %w", ZotNATSConsumer, err)
	}
	return cons.Consume(func(m jetstream.Msg) {
		msg := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		_, err := z.Handle(ctx, msg)
		var retry retryableError
		switch {
		case err == nil:
			_ = m.Ack()
		case errors.As(err, &retry):
			delay := backoff[0]
			if meta, mErr := m.Metadata(); mErr == nil {
				delay = backoff[min(int(meta.NumDelivered)-1, len(backoff)-1)]
			}
			_ = m.NakWithDelay(delay)
		default:
			_ = m.TermWithReason(err.Error())
		}
	}, jetstream.PullExpiry(5*time.Second))
}

// EnsureStream creates or updates ZOT_EVENTS on the sink's subject. From
// then on the NATS server keeps what Zot publishes, whether or not an
// ingest consumes.
func (z *ZotNATS) EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        ZotNATSStream,
		Description: "Zot registry events from its NATS sink, kept until ingest has stored them",
		Subjects:    []string{z.subject},
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Retention:   jetstream.WorkQueuePolicy,
		MaxAge:      zotMaxAge,
	})
	if err != nil {
		return nil, fmt.Errorf("zot nats: stream %s on %s (the subject must not overlap another stream's): %w", ZotNATSStream, z.subject, err)
	}
	return stream, nil
}

// retryableError marks a failure that may pass later: NATS or the
// registry was unavailable.
type retryableError struct{ err error }

func (e retryableError) Error() string { return e.err.Error() }
func (e retryableError) Unwrap() error { return e.err }

// Handle processes one message: parse, resolve, publish and wait for the
// JetStream ack. An error that may pass on a retry is a retryableError.
func (z *ZotNATS) Handle(ctx context.Context, m *nats.Msg) (Response, error) {
	ctx, cancel := context.WithTimeout(ctx, z.timeout)
	defer cancel()
	h := http.Header{}
	for k, v := range m.Header {
		h[http.CanonicalHeaderKey(k)] = v
	}
	parsed, err := z.parser.parse(h, m.Data)
	if err == nil {
		parsed, err = resolvePushes(ctx, z.res, parsed)
	}
	if errors.Is(err, ErrRegistryUnavailable) {
		z.log.Warn("zot event not resolved yet; the registry is unavailable", "error", err)
		return Response{}, retryableError{err}
	}
	if err != nil {
		z.log.Warn("zot event rejected", "error", err)
		return Response{}, err
	}
	resp, err := publishPushes(ctx, z.pub, z.log, "zot", parsed)
	if err != nil {
		for _, p := range parsed.Pushes {
			z.log.Error("zot event not stored", "digest", p.Artifact.GetDigest(), "repository", p.Artifact.GetRepository(), "error", err)
		}
		return Response{}, retryableError{err}
	}
	for _, ig := range resp.Ignored {
		z.log.Debug("zot event ignored", "id", ig.EventID, "reason", ig.Reason)
	}
	return resp, nil
}
