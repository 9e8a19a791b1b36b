package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/metrics"
)

var webhooksTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "customs_ingest_webhooks_total",
	Help: "Webhooks received, by receiver, HTTP status and outcome or rejection reason.",
}, []string{"receiver", "status", "outcome"})

// Publisher stores an event durably; backbone.Publisher is the real one.
type Publisher interface {
	Publish(ctx context.Context, evt *customsv1.Event) (backbone.PublishResult, error)
}

var _ Publisher = (*backbone.Publisher)(nil)

// Config configures the HTTP server.
type Config struct {
	// MaxBodyBytes bounds a webhook body. Default 1 MiB.
	MaxBodyBytes int64
	// PublishTimeout bounds the wait for JetStream acks. Default 5s.
	PublishTimeout time.Duration
	// Ready reports whether the backbone is usable, for /readyz.
	Ready  func(context.Context) error
	Logger *slog.Logger
}

// Validate fills in defaults.
func (c *Config) Validate() error {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBodyBytes < 0 {
		return errors.New("ingest: max body bytes must be positive")
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Server serves every Receiver at /webhooks/<name>.
type Server struct {
	cfg       Config
	publisher Publisher
	mux       *http.ServeMux
}

// NewServer builds the HTTP handler for the given receivers.
func NewServer(cfg Config, pub Publisher, receivers ...Receiver) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("ingest: publisher is nil")
	}
	s := &Server{cfg: cfg, publisher: pub, mux: http.NewServeMux()}
	seen := map[string]bool{}
	for _, rc := range receivers {
		if seen[rc.Name()] {
			return nil, fmt.Errorf("ingest: receiver %q listed twice", rc.Name())
		}
		seen[rc.Name()] = true
		path := "/webhooks/" + rc.Name()
		s.mux.Handle("POST "+path, s.webhook(rc))
	}
	metrics.Mount(s.mux, cfg.Ready)
	return s, nil
}

// Handler returns the instrumented HTTP handler.
func (s *Server) Handler() http.Handler {
	return otelhttp.NewHandler(s.mux, "ingest", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	}))
}

// AcceptedPush is one published push in the response.
type AcceptedPush struct {
	Registry   string `json:"registry"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	Tag        string `json:"tag,omitempty"`
	EventID    string `json:"event_id"`
	Sequence   uint64 `json:"stream_sequence"`
	Duplicate  bool   `json:"duplicate"`
}

// Response is the JSON body of a handled webhook.
type Response struct {
	Accepted []AcceptedPush `json:"accepted"`
	Ignored  []Ignored      `json:"ignored"`
}

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason"`
}

func (s *Server) webhook(rc Receiver) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		log := s.cfg.Logger.With("receiver", rc.Name(), "remote", r.RemoteAddr, "trace_id", trace.SpanContextFromContext(r.Context()).TraceID().String())
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.reject(w, log, rc.Name(), http.StatusRequestEntityTooLarge, "body too large", fmt.Sprintf("the limit is %d bytes", s.cfg.MaxBodyBytes))
				return
			}
			s.reject(w, log, rc.Name(), http.StatusBadRequest, "unreadable body", err.Error())
			return
		}
		if err := rc.Authenticate(r, body); err != nil {
			status := http.StatusUnauthorized
			if errors.Is(err, ErrForbidden) {
				status = http.StatusForbidden
			}
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="customs-ingest"`)
			}
			s.reject(w, log, rc.Name(), status, "authentication failed", err.Error())
			return
		}
		parsed, err := rc.Parse(r, body)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, ErrUnsupportedMediaType) {
				status = http.StatusUnsupportedMediaType
			}
			s.reject(w, log, rc.Name(), status, "malformed webhook", err.Error())
			return
		}

		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
		defer cancel()
		resp := Response{Accepted: []AcceptedPush{}, Ignored: parsed.Ignored}
		if resp.Ignored == nil {
			resp.Ignored = []Ignored{}
		}
		for _, p := range parsed.Pushes {
			evt := PushedEvent(rc.Name(), p)
			res, err := s.publisher.Publish(ctx, evt)
			if err != nil {
				if errors.Is(err, backbone.ErrInvalidEvent) {
					s.reject(w, log, rc.Name(), http.StatusBadRequest, "invalid event", err.Error())
					return
				}
				// Earlier pushes of this request may be stored already; the
				// registry's retry is deduplicated by their event ids.
				log.Error("publish failed", "digest", p.Artifact.GetDigest(), "error", err)
				w.Header().Set("Retry-After", "5")
				s.reject(w, log, rc.Name(), http.StatusServiceUnavailable, "event backbone unavailable", "the event was not stored; retry later")
				return
			}
			log.Info("artifact pushed", "digest", p.Artifact.GetDigest(), "repository", p.Artifact.GetRepository(), "tag", p.Artifact.GetTag(), "stream_seq", res.Sequence, "duplicate", res.Duplicate)
			resp.Accepted = append(resp.Accepted, AcceptedPush{
				Registry:   p.Artifact.GetRegistry(),
				Repository: p.Artifact.GetRepository(),
				Digest:     p.Artifact.GetDigest(),
				Tag:        p.Artifact.GetTag(),
				EventID:    evt.GetId(),
				Sequence:   res.Sequence,
				Duplicate:  res.Duplicate,
			})
		}
		status, outcome := http.StatusOK, "accepted"
		if len(resp.Accepted) == 0 {
			// Nothing to act on: say so, with the reasons.
			status, outcome = http.StatusAccepted, "ignored"
		}
		webhooksTotal.WithLabelValues(rc.Name(), strconv.Itoa(status), outcome).Inc()
		writeJSON(w, status, resp)
	}
}

func (s *Server) reject(w http.ResponseWriter, log *slog.Logger, receiver string, status int, msg, reason string) {
	webhooksTotal.WithLabelValues(receiver, strconv.Itoa(status), msg).Inc()
	log.Warn("webhook rejected", "status", status, "error", msg, "reason", reason)
	writeJSON(w, status, errorBody{Error: msg, Reason: reason})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// PushedEvent builds the artifact.pushed event for a push. The event id
// comes from the source's event id and the digest when there is one, and
// from the normalised content otherwise, so retried webhooks deduplicate.
func PushedEvent(source string, p Push) *customsv1.Event {
	a := p.Artifact
	var id string
	if p.SourceEventID != "" {
		id = backbone.EventID("pushed", source, p.SourceEventID, a.GetDigest(), a.GetTag())
	} else {
		id = backbone.EventID("pushed", a.GetRegistry(), a.GetRepository(), a.GetDigest(), a.GetTag())
	}
	return &customsv1.Event{
		Id:            id,
		Artifact:      a,
		OccurredAt:    timestamppb.New(p.OccurredAt),
		CorrelationId: id,
		Producer:      "ingest",
		Payload: &customsv1.Event_Pushed{Pushed: &customsv1.ArtifactPushed{
			Source:        source,
			SourceEventId: p.SourceEventID,
			Actor:         p.Actor,
			Size:          p.Size,
			Provenance:    p.Provenance,
		}},
	}
}
