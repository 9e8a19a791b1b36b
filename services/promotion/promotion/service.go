// Package promotion is the promotion service: it consumes artifact.signed,
// re-verifies signatures in the registry with the configured public keys,
// applies the promotion rules, copies artifacts by digest into their target
// repositories with their signatures and attestations, and records what
// each environment runs. Promote and Rollback commands arrive over NATS
// request/reply and go through the same rules.
package promotion

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/artifactref"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/promotion/rules"
)

// Service is the promotion service.
type Service struct {
	cfg      ServiceConfig
	nc       *nats.Conn
	log      *slog.Logger
	rules    *rules.Store
	promoter *Promoter
	consumer *backbone.Consumer
}

// NewService loads the rules and keys and prepares the bucket and the
// consumer. allow may be nil, in which case cfg.Registries is parsed.
func NewService(ctx context.Context, cfg ServiceConfig, js jetstream.JetStream, nc *nats.Conn, log *slog.Logger, allow *registries.AllowList) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if allow == nil {
		var err error
		if allow, err = registries.Parse(cfg.Registries); err != nil {
			return nil, err
		}
	}
	rs, err := rules.NewStore(cfg.RulesFile, log.With("component", "rules"))
	if err != nil {
		return nil, err
	}
	keys, err := LoadPublicKeys(cfg.PublicKeys)
	if err != nil {
		return nil, err
	}
	st, err := ensureStore(ctx, js, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	p := &Promoter{rules: rs, keys: keys, reg: newRegistryClient(allow), st: st, pub: backbone.NewPublisher(js), log: log, now: time.Now}
	s := &Service{cfg: cfg, nc: nc, log: log, rules: rs, promoter: p}
	s.consumer, err = backbone.NewConsumer(js, backbone.ConsumerConfig{
		Durable: ConsumerDurable,
		// pushed and scanned feed the index (tags, tag moves, scan
		// counts); signed triggers automatic promotion. One at a time, in
		// stream order, so the index is complete before a signed event.
		FilterSubjects: []string{backbone.SubjectPushed, backbone.SubjectScanned, backbone.SubjectSigned},
		Concurrency:    1,
		AckWait:        2 * time.Minute,
		Logger:         log.With("component", "consumer"),
	}, s.handle)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		log.Info("trusted public key", "name", k.Name, "key_id", k.ID)
	}
	for _, w := range checkRules(rs.Current(), keys, allow) {
		log.Warn("promotion rules: "+w, "file", cfg.RulesFile)
	}
	return s, nil
}

// Run consumes events and serves commands until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	sub, err := s.nc.QueueSubscribe(SubjectCommand, QueueGroup, func(m *nats.Msg) {
		go s.serveCommand(ctx, m)
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", SubjectCommand, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.consumer.Run(ctx) })
	g.Go(func() error { s.rules.Watch(ctx, s.cfg.ReloadInterval); return nil })
	return g.Wait()
}

// handle folds pushed and scanned events into the index and promotes on
// signed ones.
func (s *Service) handle(ctx context.Context, evt *customsv1.Event) error {
	ref := evt.GetArtifact()
	if err := artifactref.ValidateDigest(ref.GetDigest()); err != nil {
		return backbone.Terminalf("promotion: event %s: %w", evt.GetId(), err)
	}
	log := s.log.With("digest", ref.GetDigest(), "event_id", evt.GetId())
	if mi, ok := backbone.Info(ctx); ok {
		log = log.With("subject", mi.Subject, "stream_seq", mi.StreamSequence)
	}
	switch p := evt.GetPayload().(type) {
	case *customsv1.Event_Pushed:
		return s.promoter.indexPush(ctx, evt, p.Pushed)
	case *customsv1.Event_Scanned:
		return s.promoter.indexArtifact(ctx, evt, func(a *artifactInfo) {
			a.Scanned = true
			// The event's tag is only a candidate: decide keeps it only if
			// the registry says it still names this digest.
			a.source(ref.GetRegistry(), ref.GetRepository()).addTag(ref.GetTag())
			a.setProvenance(p.Scanned.GetProvenance())
			c := p.Scanned.GetSummary().GetCounts()
			a.Counts = map[string]int{"critical": int(c.GetCritical()), "high": int(c.GetHigh()), "medium": int(c.GetMedium()), "low": int(c.GetLow()), "unknown": int(c.GetUnknown())}
		})
	case *customsv1.Event_Signed:
		if err := s.promoter.indexArtifact(ctx, evt, func(a *artifactInfo) {
			a.Signed = true
			a.source(ref.GetRegistry(), ref.GetRepository()).addTag(ref.GetTag())
		}); err != nil {
			return err
		}
		return s.autoPromote(ctx, evt, log)
	}
	return backbone.Terminalf("promotion: unexpected payload %T in event %s", evt.GetPayload(), evt.GetId())
}

// autoPromote runs every automatic target of the artifact's repository, in
// rule order, so staging is done before a prod that requires it.
func (s *Service) autoPromote(ctx context.Context, evt *customsv1.Event, log *slog.Logger) error {
	ref := evt.GetArtifact()
	// Copying a large image can outlast the ack wait: keep telling
	// JetStream the message is being worked on, or it is redelivered
	// while the first copy is still running.
	if mi, ok := backbone.Info(ctx); ok && mi.InProgress != nil {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(20 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_ = mi.InProgress()
				}
			}
		}()
	}
	for _, m := range s.rules.Current().Targets(ref.GetRegistry(), ref.GetRepository()) {
		if !m.Target.Auto {
			continue
		}
		start := time.Now()
		o, err := s.promoter.promote(ctx, request{
			Digest: ref.GetDigest(), Environment: m.Target.Environment, Actor: ActorAuto,
			Reason: "artifact.signed", Registry: ref.GetRegistry(), Repository: ref.GetRepository(),
		})
		if err != nil {
			return fmt.Errorf("promote %s to %s: %w", ref.GetDigest(), m.Target.Environment, err)
		}
		log.Info("auto promotion", "environment", m.Target.Environment, "status", o.Status.String(),
			"reason", o.Reason, "details", o.Details, "already", o.Already, "took", time.Since(start))
	}
	return nil
}

// serveCommand answers one Promote or Rollback request.
func (s *Service) serveCommand(ctx context.Context, m *nats.Msg) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CommandTimeout)
	defer cancel()
	res := s.command(ctx, m.Data)
	b, err := proto.Marshal(res)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		s.log.Error("reply to promotion command", "error", err)
	}
}

// parseCommand decodes and validates a command; a non-nil result is the
// reply for a command that cannot be run.
func parseCommand(data []byte) (*customsv1.PromotionCommand, *customsv1.PromotionCommandResult) {
	invalid := func(format string, args ...any) *customsv1.PromotionCommandResult {
		return &customsv1.PromotionCommandResult{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_INVALID, Reason: fmt.Sprintf(format, args...)}
	}
	var cmd customsv1.PromotionCommand
	if err := proto.Unmarshal(data, &cmd); err != nil {
		return nil, invalid("undecodable command: %v", err)
	}
	if cmd.GetEnvironment() == "" || cmd.GetActor() == "" || cmd.GetReason() == "" {
		return nil, invalid("environment, actor and reason are required")
	}
	if cmd.GetActor() == ActorAuto {
		return nil, invalid("actor %q is reserved for automatic promotion", ActorAuto)
	}
	switch cmd.GetKind() {
	case customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_PROMOTE:
		if err := artifactref.ValidateDigest(cmd.GetDigest()); err != nil {
			return nil, invalid("%v", err)
		}
	case customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK:
		if cmd.GetApplication() == "" {
			return nil, invalid("application is required for a rollback")
		}
		if cmd.GetDigest() != "" {
			if err := artifactref.ValidateDigest(cmd.GetDigest()); err != nil {
				return nil, invalid("%v", err)
			}
		}
	default:
		return nil, invalid("unknown command kind %v", cmd.GetKind())
	}
	return &cmd, nil
}

func (s *Service) command(ctx context.Context, data []byte) *customsv1.PromotionCommandResult {
	cmd, bad := parseCommand(data)
	if bad != nil {
		return bad
	}
	log := s.log.With("request_id", cmd.GetRequestId(), "environment", cmd.GetEnvironment(), "actor", cmd.GetActor())
	req := request{Environment: cmd.GetEnvironment(), Actor: cmd.GetActor(), Reason: cmd.GetReason(), Digest: cmd.GetDigest()}
	if cmd.GetKind() == customsv1.PromotionCommandKind_PROMOTION_COMMAND_KIND_ROLLBACK {
		d, o, err := s.promoter.rollbackTarget(ctx, cmd.GetEnvironment(), cmd.GetApplication(), cmd.GetDigest())
		if err != nil {
			return failed(err)
		}
		if o != nil {
			return result(*o)
		}
		req.Digest, req.Rollback = d, true
	}
	log = log.With("digest", req.Digest)
	start := time.Now()
	o, err := s.promoter.promote(ctx, req)
	if err != nil {
		log.Error("promotion command failed", "error", err)
		return failed(err)
	}
	log.Info("promotion command", "status", o.Status.String(), "reason", o.Reason, "details", o.Details, "took", time.Since(start))
	return result(o)
}

func failed(err error) *customsv1.PromotionCommandResult {
	return &customsv1.PromotionCommandResult{Status: customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_FAILED, Reason: err.Error()}
}

func result(o outcome) *customsv1.PromotionCommandResult {
	return &customsv1.PromotionCommandResult{
		Accepted: o.Status == customsv1.PromotionCommandStatus_PROMOTION_COMMAND_STATUS_ACCEPTED,
		Status:   o.Status, Reason: o.Reason, Details: o.Details, Promoted: o.Event, AlreadyPromoted: o.Already,
	}
}

// rollbackTarget picks the digest to return to: digest if the application
// ran it before in env, else the one before the current.
func (p *Promoter) rollbackTarget(ctx context.Context, env, app, digest string) (string, *outcome, error) {
	dep, _, err := p.st.deployment(ctx, env, app)
	if err != nil {
		return "", nil, err
	}
	if dep == nil {
		o := notFound("%s does not run %s", env, app)
		return "", &o, nil
	}
	for _, h := range dep.History {
		if h.Digest == dep.Digest {
			continue
		}
		if digest == "" || h.Digest == digest {
			return h.Digest, nil, nil
		}
	}
	if digest == dep.Digest {
		return digest, nil, nil // already there: promote reports it as such
	}
	var o outcome
	if digest == "" {
		o = refused(fmt.Sprintf("%s has no earlier deployment of %s to roll back to", env, app))
	} else {
		o = refused(fmt.Sprintf("%s never ran %s in %s", app, digest, env))
	}
	return "", &o, nil
}

// indexPush records the pushed tag and whether it moved from another
// digest.
func (p *Promoter) indexPush(ctx context.Context, evt *customsv1.Event, pushed *customsv1.ArtifactPushed) error {
	ref := evt.GetArtifact()
	moved := false
	if tag := ref.GetTag(); tag != "" {
		prev, err := p.st.recordTag(ctx, ref.GetRegistry(), ref.GetRepository(), tag, ref.GetDigest())
		if err != nil {
			return err
		}
		moved = prev != "" && prev != ref.GetDigest()
		if moved {
			p.log.Info("tag moved", "repository", ref.GetRegistry()+"/"+ref.GetRepository(), "tag", tag, "from", prev, "to", ref.GetDigest())
			// The old digest no longer carries the tag.
			if err := update(ctx, p.st, artifactKey(prev), func(a *artifactInfo, exists bool) (bool, error) {
				if !exists {
					return false, nil
				}
				s := a.source(ref.GetRegistry(), ref.GetRepository())
				n := len(s.Tags)
				s.Tags = removeString(s.Tags, tag)
				return n != len(s.Tags), nil
			}); err != nil {
				return err
			}
		}
	}
	return p.indexArtifact(ctx, evt, func(a *artifactInfo) {
		s := a.source(ref.GetRegistry(), ref.GetRepository())
		s.Tags = addUnique(s.Tags, ref.GetTag())
		if moved {
			s.MovedTags = addUnique(s.MovedTags, ref.GetTag())
		}
		a.setProvenance(pushed.GetProvenance())
	})
}

// indexArtifact creates or updates the digest's record.
func (p *Promoter) indexArtifact(ctx context.Context, evt *customsv1.Event, fn func(*artifactInfo)) error {
	ref := evt.GetArtifact()
	if ref.GetRepository() == "" || ref.GetRegistry() == "" {
		return backbone.Terminal(errors.New("promotion: event without registry or repository"))
	}
	return update(ctx, p.st, artifactKey(ref.GetDigest()), func(a *artifactInfo, _ bool) (bool, error) {
		a.Digest = ref.GetDigest()
		if a.MediaType == "" {
			a.MediaType = ref.GetMediaType()
		}
		if a.CorrelationID == "" {
			a.CorrelationID = evt.GetCorrelationId()
		}
		a.source(ref.GetRegistry(), ref.GetRepository())
		fn(a)
		return true, nil
	})
}

// setProvenance keeps the provenance's semver and git SHA when they are
// valid tags; they become target tags (the CI may push only one of them).
func (a *artifactInfo) setProvenance(pv *customsv1.Provenance) {
	if rules.IsGitSHA(pv.GetGitSha()) {
		a.GitSHA = pv.GetGitSha()
	}
	if rules.IsSemver(pv.GetSemver()) {
		a.Semver = pv.GetSemver()
	}
}

// checkRules lists what in the rules can never work with this
// configuration: keys nobody configured, target registries off the
// allow-list. They are warnings, since the rules file may be ahead of the
// deployment, but every promotion they govern would be refused.
func checkRules(f *rules.File, keys []*PublicKey, allow *registries.AllowList) []string {
	var out []string
	for _, r := range f.Rules {
		for _, t := range r.Targets {
			for _, want := range t.Keys {
				if !slices.ContainsFunc(keys, func(k *PublicKey) bool { return k.Name == want || k.ID == want }) {
					out = append(out, fmt.Sprintf("rule %s target %s: key %q is not configured", r.ID, t.Environment, want))
				}
			}
			host, _, _ := strings.Cut(t.Repository, "/")
			if !strings.Contains(host, "{") {
				if _, err := allow.Lookup(host); err != nil {
					out = append(out, fmt.Sprintf("rule %s target %s: %v", r.ID, t.Environment, err))
				}
			}
		}
	}
	return out
}

func removeString(list []string, v string) []string {
	out := list[:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}
