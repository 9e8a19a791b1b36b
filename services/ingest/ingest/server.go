package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
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
	Ready func(context.Context) error
	// Resolver fills in the digest of tag-only pushes and the media type
	// when a format does not carry it. Without one, tag-only pushes are
	// refused.
	Resolver Resolver
	// RateLimit is the sustained requests per second allowed per source
	// (receiver and client address); RateBurst the burst (default
	// DefaultRateBurst). Zero or negative turns limiting off, so tests and
	// benchmarks that build a Config are not throttled; the service flags
	// default to DefaultRateLimit.
	RateLimit float64
	RateBurst int
	// TrustedProxies are the addresses of reverse proxies (an ingress, a
	// load balancer) in front of ingest. For a request from one of them the
	// rate limit keys on the client address in X-Forwarded-For: the
	// rightmost entry that is not itself a trusted proxy. Requests from
	// anywhere else key on their own address, whatever they claim.
	TrustedProxies []netip.Prefix
	// IgnoreRepositories are path.Match patterns ("customs/*") of
	// repositories whose pushes are answered "ignored" instead of
	// published, e.g. a repository that holds a vulnerability DB mirror.
	IgnoreRepositories []string
	Logger             *slog.Logger
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
	if c.RateBurst == 0 {
		c.RateBurst = DefaultRateBurst
	}
	if c.RateBurst < 0 {
		return errors.New("ingest: rate burst must be positive")
	}
	return nil
}

// Server serves every Receiver at /webhooks/<name>.
type Server struct {
	cfg       Config
	publisher Publisher
	mux       *http.ServeMux
	limiter   *sourceLimiter
	// secretPaths are the receivers served at /webhooks/<name>/<secret>.
	secretPaths map[string]bool
}

// NewServer builds the HTTP handler for the given receivers.
func NewServer(cfg Config, pub Publisher, receivers ...Receiver) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pub == nil {
		return nil, errors.New("ingest: publisher is nil")
	}
	s := &Server{
		cfg: cfg, publisher: pub, mux: http.NewServeMux(),
		limiter:     newSourceLimiter(cfg.RateLimit, cfg.RateBurst, cfg.TrustedProxies),
		secretPaths: map[string]bool{},
	}
	seen := map[string]bool{}
	for _, rc := range receivers {
		if seen[rc.Name()] {
			return nil, fmt.Errorf("ingest: receiver %q listed twice", rc.Name())
		}
		seen[rc.Name()] = true
		path := "/webhooks/" + rc.Name()
		if rt, ok := rc.(Router); ok {
			path = rt.Path()
		}
		if ps, ok := rc.(PathSecretReceiver); ok && ps.SecretInPath() {
			s.secretPaths[rc.Name()] = true
		}
		s.mux.Handle("POST "+path, s.webhook(rc))
	}
	metrics.Mount(s.mux, cfg.Ready)
	return s, nil
}

// Handler returns the instrumented HTTP handler.
func (s *Server) Handler() http.Handler {
	traced := otelhttp.NewHandler(s.mux, "ingest", otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return r.Method + " " + r.URL.Path
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Take a URL secret out of the path before tracing, logging or
		// routing sees it: spans record the path.
		if name, secret, ok := s.splitSecretPath(r.URL.Path); ok {
			r = r.Clone(withPathSecret(r.Context(), secret))
			r.URL.Path = "/webhooks/" + name
			r.URL.RawPath = ""
			r.RequestURI = r.URL.RequestURI()
		}
		traced.ServeHTTP(w, r)
	})
}

func (s *Server) splitSecretPath(path string) (name, secret string, ok bool) {
	rest, found := strings.CutPrefix(path, "/webhooks/")
	if !found {
		return "", "", false
	}
	name, secret, found = strings.Cut(rest, "/")
	if !found || !s.secretPaths[name] || secret == "" || strings.Contains(secret, "/") {
		return "", "", false
	}
	return name, secret, true
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
		if ok, wait := s.limiter.allow(rc.Name(), r); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			s.reject(w, log, rc.Name(), http.StatusTooManyRequests, "rate limited", fmt.Sprintf("too many requests from this source; retry in %s", wait.Round(time.Millisecond)))
			return
		}
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

		parsed = s.dropIgnored(parsed)
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PublishTimeout)
		defer cancel()
		// Resolve every push before publishing any, so a refused push
		// refuses the whole request with nothing stored.
		parsed, err = resolvePushes(ctx, s.cfg.Resolver, parsed)
		if err != nil {
			switch {
			case errors.Is(err, ErrRegistryUnavailable):
				w.Header().Set("Retry-After", "10")
				s.reject(w, log, rc.Name(), http.StatusServiceUnavailable, "registry unavailable", err.Error())
			default:
				s.reject(w, log, rc.Name(), http.StatusUnprocessableEntity, "cannot resolve artifact", err.Error())
			}
			return
		}
		resp, err := publishPushes(ctx, s.publisher, log, rc.Name(), parsed)
		if err != nil {
			if errors.Is(err, backbone.ErrInvalidEvent) {
				s.reject(w, log, rc.Name(), http.StatusBadRequest, "invalid event", err.Error())
				return
			}
			// Earlier pushes of this request may be stored already; the
			// registry's retry is deduplicated by their event ids.
			log.Error("publish failed", "error", err)
			w.Header().Set("Retry-After", "5")
			s.reject(w, log, rc.Name(), http.StatusServiceUnavailable, "event backbone unavailable", "the event was not stored; retry later")
			return
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

// cosignTag matches the tags cosign stores signatures, attestations and
// SBOMs under: they describe an artifact, they are not one.
var cosignTag = regexp.MustCompile(`^sha256-[a-f0-9]{64}\.(sig|att|sbom)$`)

// dropIgnored moves into Ignored, with the reason, pushes of cosign
// signatures and attestations (Customs' own signer writes them) and pushes
// to repositories the configuration ignores.
func (s *Server) dropIgnored(in Parsed) Parsed {
	out := Parsed{Ignored: in.Ignored}
	for _, p := range in.Pushes {
		if tag := p.Artifact.GetTag(); cosignTag.MatchString(tag) {
			out.Ignored = append(out.Ignored, Ignored{EventID: p.SourceEventID, Action: "push", Reason: fmt.Sprintf("tag %q holds cosign signatures or attestations, not an artifact", tag)})
			continue
		}
		if pattern, ok := matchAny(s.cfg.IgnoreRepositories, p.Artifact.GetRepository()); ok {
			out.Ignored = append(out.Ignored, Ignored{EventID: p.SourceEventID, Action: "push", Reason: fmt.Sprintf("repository %q matches ignored pattern %q", p.Artifact.GetRepository(), pattern)})
			continue
		}
		out.Pushes = append(out.Pushes, p)
	}
	return out
}

func matchAny(patterns []string, name string) (string, bool) {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, name); ok {
			return pat, true
		}
	}
	return "", false
}

// resolvePushes asks the registry for what a push lacks: the digest of a
// tag-only push, the media type a format does not carry. A push whose
// manifest turns out not to be an image is moved to Ignored.
func resolvePushes(ctx context.Context, res Resolver, in Parsed) (Parsed, error) {
	out := Parsed{Ignored: in.Ignored}
	for i, p := range in.Pushes {
		a := p.Artifact
		if a.GetDigest() != "" && a.GetMediaType() != "" {
			out.Pushes = append(out.Pushes, p)
			continue
		}
		if res == nil {
			if a.GetDigest() == "" {
				return Parsed{}, fmt.Errorf("%w: push %d names tag %q without a digest, and no registry allow-list is configured to resolve it", ErrRegistryNotAllowed, i, a.GetTag())
			}
			// The digest is known; publish without the media type rather
			// than drop the push.
			out.Pushes = append(out.Pushes, p)
			continue
		}
		got, err := res.Resolve(ctx, a)
		if err != nil {
			return Parsed{}, fmt.Errorf("resolve %s/%s: %w", a.GetRegistry(), a.GetRepository(), err)
		}
		if !IsManifestMediaType(got.MediaType) {
			out.Ignored = append(out.Ignored, Ignored{EventID: p.SourceEventID, Action: "push", Reason: fmt.Sprintf("not an image manifest or index (media type %q)", got.MediaType)})
			continue
		}
		a = proto.CloneOf(a)
		a.Digest = got.Digest
		a.MediaType = got.MediaType
		p.Artifact = a
		if p.Size == 0 {
			p.Size = got.Size
		}
		out.Pushes = append(out.Pushes, p)
	}
	return out, nil
}

// publishPushes publishes each push and returns once JetStream has acked
// all of them.
func publishPushes(ctx context.Context, pub Publisher, log *slog.Logger, source string, parsed Parsed) (Response, error) {
	resp := Response{Accepted: []AcceptedPush{}, Ignored: parsed.Ignored}
	if resp.Ignored == nil {
		resp.Ignored = []Ignored{}
	}
	for _, p := range parsed.Pushes {
		evt := PushedEvent(source, p)
		res, err := pub.Publish(ctx, evt)
		if err != nil {
			return Response{}, fmt.Errorf("publish %s: %w", p.Artifact.GetDigest(), err)
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
	return resp, nil
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
	switch {
	case p.SourceEventID != "":
		id = backbone.EventID("pushed", source, p.SourceEventID, a.GetDigest(), a.GetTag())
	case p.Provenance != nil:
		// A CI push carries more than the registry's view of the push: its
		// provenance must not be dropped as a duplicate of that view.
		pv := p.Provenance
		id = backbone.EventID("pushed", a.GetRegistry(), a.GetRepository(), a.GetDigest(), a.GetTag(),
			source, pv.GetSourceRepository(), pv.GetGitSha(), pv.GetSemver(), pv.GetBuilder(), pv.GetBuildUrl())
	default:
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
