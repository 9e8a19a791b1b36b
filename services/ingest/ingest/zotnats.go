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

// ZotNATS turns Zot CloudEvents received on a core NATS subject into
// artifact.pushed events. Zot publishes with core NATS (at most once), so
// there is no retry to rely on: a malformed event is logged and dropped, a
// publish failure is logged with the digest so it can be re-sent.
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

// Handle processes one message: parse, resolve, publish and wait for the
// JetStream ack.
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
	if err != nil {
		z.log.Warn("zot event rejected", "error", err)
		return Response{}, err
	}
	resp, err := publishPushes(ctx, z.pub, z.log, "zot", parsed)
	if err != nil {
		for _, p := range parsed.Pushes {
			z.log.Error("zot event not stored", "digest", p.Artifact.GetDigest(), "repository", p.Artifact.GetRepository(), "error", err)
		}
		return Response{}, err
	}
	for _, ig := range resp.Ignored {
		z.log.Debug("zot event ignored", "id", ig.EventID, "reason", ig.Reason)
	}
	return resp, nil
}
