package query

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
)

// EnvironmentView is an in-memory projection of artifact.promoted: what
// each application runs in each environment, and every promotion in stream
// order. Each query replica builds its own from the stream with an ordered
// consumer, so GetEnvironment never waits on NATS.
type EnvironmentView struct {
	log *slog.Logger

	mu sync.RWMutex
	// current[env] holds one deployment per application, sorted by
	// application, so a read is one copy with no sorting.
	current map[string][]*customsv1.Deployment
	// history is every promotion in stream order.
	history []*customsv1.Deployment
	lastSeq uint64
	// version counts applied promotions.
	version uint64

	// joined caches each environment's deployments joined with the read
	// model, valid while neither the view nor the model changed.
	cacheMu sync.Mutex
	joined  map[string]joinedEnv
}

type joinedEnv struct {
	version, modelVersion uint64
	model                 *ReadModel
	// full and basic are the same deployments in the two views.
	full, basic []*customsv1.Deployment
	// artifacts are the read model's records the join used, one per
	// deployment (nil when the model had none).
	artifacts []*customsv1.Artifact
}

// unchangedIn reports whether model still holds the very records the join
// used. The model's version moves with every artifact anywhere, but an
// environment only depends on its own digests: checking those pointers
// costs a map lookup per application, far less than a new join and a new
// encoding of the response.
func (c joinedEnv) unchangedIn(model *ReadModel) bool {
	if model == nil || c.model != model {
		return false
	}
	model.mu.RLock()
	defer model.mu.RUnlock()
	for i, d := range c.full {
		if model.artifacts[d.GetDigest()] != c.artifacts[i] {
			return false
		}
	}
	return true
}

// NewEnvironmentView returns an empty view; Run fills it.
func NewEnvironmentView(log *slog.Logger) *EnvironmentView {
	return &EnvironmentView{log: log, current: map[string][]*customsv1.Deployment{}, joined: map[string]joinedEnv{}}
}

// Run replays artifact.promoted from the start of the stream and follows it
// until ctx ends. NATS may be briefly unavailable at start-up (a cluster
// electing a leader): it keeps trying rather than fail the service.
func (v *EnvironmentView) Run(ctx context.Context, js jetstream.JetStream) error {
	for attempt := 1; ; attempt++ {
		err := v.consume(ctx, js)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		delay := time.Duration(min(attempt, 10)) * 500 * time.Millisecond
		v.log.Warn("environment view not following the stream; retrying", "error", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

func (v *EnvironmentView) consume(ctx context.Context, js jetstream.JetStream) error {
	v.mu.RLock()
	// After a failure, resume after what is already applied.
	from := v.lastSeq + 1
	v.mu.RUnlock()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{backbone.SubjectPromoted}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := js.OrderedConsumer(ctx, backbone.StreamArtifacts, cfg)
	if err != nil {
		return fmt.Errorf("environment view consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		if err != nil {
			return
		}
		var evt customsv1.Event
		if err := proto.Unmarshal(msg.Data(), &evt); err != nil {
			v.log.Error("undecodable artifact.promoted", "stream_seq", meta.Sequence.Stream, "error", err)
			return
		}
		v.Apply(&evt, meta.Sequence.Stream)
	})
	if err != nil {
		return fmt.Errorf("environment view consume: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// Apply folds one artifact.promoted event at stream sequence seq into the
// view. Events at or below the last applied sequence are ignored.
func (v *EnvironmentView) Apply(evt *customsv1.Event, seq uint64) {
	p := evt.GetPromoted()
	if p == nil || p.GetEnvironment() == "" {
		return
	}
	d := deploymentFrom(evt, seq)
	v.mu.Lock()
	defer v.mu.Unlock()
	if seq != 0 && seq <= v.lastSeq {
		return
	}
	v.lastSeq = max(v.lastSeq, seq)
	v.version++
	v.history = append(v.history, d)
	list := v.current[d.Environment]
	i, found := slices.BinarySearchFunc(list, d.Application, func(x *customsv1.Deployment, app string) int {
		return strings.Compare(x.GetApplication(), app)
	})
	if found {
		// Replace rather than mutate: readers hold the old pointer.
		list[i] = d
	} else {
		list = slices.Insert(list, i, d)
	}
	v.current[d.Environment] = list
}

func deploymentFrom(evt *customsv1.Event, seq uint64) *customsv1.Deployment {
	p := evt.GetPromoted()
	ref := p.GetTargetReference()
	app, digest, _ := strings.Cut(ref, "@")
	if digest == "" {
		digest = evt.GetArtifact().GetDigest()
	}
	return &customsv1.Deployment{
		Environment: p.GetEnvironment(), Application: app, Reference: ref, Digest: digest,
		Tags: p.GetTargetTags(), PromotedAt: evt.GetOccurredAt(), Actor: p.GetActor(),
		RuleId: p.GetRuleId(), Reason: p.GetReason(), Source: evt.GetArtifact(), StreamSequence: seq,
	}
}

// Environment returns the deployments of env in view, sorted by
// application, with each digest's scan and signature summary from model
// (which may be nil). The result is shared between callers and must not be
// modified. It is cached until a promotion into env or a change to one of
// its digests, so repeated reads of a large environment cost a map lookup
// (a lookup per application after a change elsewhere in the model).
func (v *EnvironmentView) Environment(env string, model *ReadModel, view customsv1.EnvironmentView) ([]*customsv1.Deployment, bool) {
	var mv uint64
	if model != nil {
		mv = model.Version()
	}
	v.mu.RLock()
	version := v.version
	_, ok := v.current[env]
	v.mu.RUnlock()
	if !ok {
		return nil, false
	}
	v.cacheMu.Lock()
	c, hit := v.joined[env]
	v.cacheMu.Unlock()
	fresh := hit && c.version == version && c.model == model
	if fresh && c.modelVersion != mv {
		if fresh = c.unchangedIn(model); fresh {
			c.modelVersion = mv
			v.cacheMu.Lock()
			if cur, ok := v.joined[env]; ok && cur.version == version && cur.modelVersion < mv {
				v.joined[env] = c
			}
			v.cacheMu.Unlock()
		}
	}
	if !fresh {
		v.mu.RLock()
		version = v.version
		// Copy the slice header under the lock; the elements are never
		// mutated once stored.
		list := slices.Clone(v.current[env])
		v.mu.RUnlock()
		full, basic, artifacts := join(list, model)
		c = joinedEnv{version: version, modelVersion: mv, model: model, full: full, basic: basic, artifacts: artifacts}
		v.cacheMu.Lock()
		if cur, ok := v.joined[env]; !ok || cur.version <= version {
			v.joined[env] = c
		}
		v.cacheMu.Unlock()
	}
	if view == customsv1.EnvironmentView_ENVIRONMENT_VIEW_FULL {
		return c.full, true
	}
	return c.basic, true
}

// join builds an environment's deployments with their current scan and
// signature summaries, in both views. What runs where is read far more
// often than it changes and a whole environment travels in one response,
// so even the full view is a summary: the source without the digest and
// media type the pinned reference already carries, and the signature
// without its attestation list (GetArtifact has the details). The basic
// view drops every nested message but the promotion time, and the digest
// its reference carries: decoding a message costs a client an allocation,
// and for 1,000 applications those allocations, more than the bytes, are
// most of the time a call takes.
func join(list []*customsv1.Deployment, model *ReadModel) (full, basic []*customsv1.Deployment, artifacts []*customsv1.Artifact) {
	artifacts = make([]*customsv1.Artifact, len(list))
	full = make([]*customsv1.Deployment, len(list))
	basic = make([]*customsv1.Deployment, len(list))
	fullBacking := make([]customsv1.Deployment, len(list))
	basicBacking := make([]customsv1.Deployment, len(list))
	sources := make([]customsv1.ArtifactRef, len(list))
	for i, d := range list {
		f, b := &fullBacking[i], &basicBacking[i]
		shallowCopy(f, d)
		if src := d.GetSource(); src != nil {
			sources[i] = customsv1.ArtifactRef{Registry: src.GetRegistry(), Repository: src.GetRepository(), Tag: src.GetTag()}
			f.Source = &sources[i]
		}
		if model != nil {
			if a, ok := model.Get(d.GetDigest()); ok {
				artifacts[i] = a
				if scan := a.GetScan(); scan != nil {
					f.Scan = scan
					f.Scanned = true
					f.HighestSeverity, f.FindingCount = highestSeverity(scan.GetCounts())
				}
				if sg := a.GetSignature(); sg != nil {
					f.Signature = &customsv1.ArtifactSigned{SignatureDigest: sg.GetSignatureDigest(), KeyId: sg.GetKeyId(), Policy: sg.GetPolicy()}
					f.SigningKeyId = sg.GetKeyId()
				}
			}
		}
		b.Application, b.Reference, b.Tags = f.Application, f.Reference, f.Tags
		b.PromotedAt, b.Actor, b.RuleId = f.PromotedAt, f.Actor, f.RuleId
		b.Scanned, b.HighestSeverity, b.FindingCount, b.SigningKeyId = f.Scanned, f.HighestSeverity, f.FindingCount, f.SigningKeyId
		full[i], basic[i] = f, b
	}
	return full, basic, artifacts
}

// highestSeverity returns the highest severity with a finding in c, and
// how many findings c counts.
func highestSeverity(c *customsv1.SeverityCounts) (customsv1.Severity, int32) {
	total := c.GetCritical() + c.GetHigh() + c.GetMedium() + c.GetLow() + c.GetUnknown()
	switch {
	case c.GetCritical() > 0:
		return customsv1.Severity_SEVERITY_CRITICAL, total
	case c.GetHigh() > 0:
		return customsv1.Severity_SEVERITY_HIGH, total
	case c.GetMedium() > 0:
		return customsv1.Severity_SEVERITY_MEDIUM, total
	case c.GetLow() > 0:
		return customsv1.Severity_SEVERITY_LOW, total
	case c.GetUnknown() > 0:
		return customsv1.Severity_SEVERITY_UNKNOWN, total
	}
	return customsv1.Severity_SEVERITY_UNSPECIFIED, total
}

func shallowCopy(dst, src *customsv1.Deployment) {
	dst.Environment, dst.Application, dst.Reference, dst.Digest = src.Environment, src.Application, src.Reference, src.Digest
	dst.Tags, dst.PromotedAt, dst.Actor, dst.RuleId, dst.Reason = src.Tags, src.PromotedAt, src.Actor, src.RuleId, src.Reason
	dst.Source, dst.StreamSequence = src.Source, src.StreamSequence
}

// PromotionFilter selects promotions in History.
type PromotionFilter struct {
	Environment string
	// Repository matches the source repository ("team/app"), the source
	// "registry/repository", or the target application.
	Repository string
	Digest     string
	// Before, when not zero, keeps only promotions with a lower stream
	// sequence (the page token).
	Before uint64
}

func (f PromotionFilter) match(d *customsv1.Deployment) bool {
	if f.Environment != "" && d.GetEnvironment() != f.Environment {
		return false
	}
	if f.Digest != "" && d.GetDigest() != f.Digest {
		return false
	}
	if f.Repository != "" {
		src := d.GetSource()
		if f.Repository != src.GetRepository() && f.Repository != src.GetRegistry()+"/"+src.GetRepository() && f.Repository != d.GetApplication() {
			return false
		}
	}
	return f.Before == 0 || d.GetStreamSequence() < f.Before
}

// History returns up to limit promotions matching f, newest first, and
// whether more remain.
func (v *EnvironmentView) History(f PromotionFilter, limit int) ([]*customsv1.Deployment, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []*customsv1.Deployment
	for i := len(v.history) - 1; i >= 0; i-- {
		d := v.history[i]
		if !f.match(d) {
			continue
		}
		if len(out) == limit {
			return out, true
		}
		out = append(out, d)
	}
	return out, false
}
