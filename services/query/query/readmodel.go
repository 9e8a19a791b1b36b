package query

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// ReadModel is an in-memory copy of every artifact in the projection bucket,
// kept current by a KV watch. Every query replica has its own, so reads
// never wait on NATS and watches work on any replica.
type ReadModel struct {
	log *slog.Logger

	mu        sync.RWMutex
	artifacts map[string]*customsv1.Artifact
	// byRef maps "registry/repo:tag" to a digest; byShortRef maps "repo:tag"
	// to the digests in any registry.
	byRef      map[string]string
	byShortRef map[string]map[string]string // repo:tag -> registry -> digest
	subs       map[*subscriber]struct{}
	synced     chan struct{}
	// version counts changes, so views derived from the model (the
	// environment view) know when a cached join is stale.
	version atomic.Uint64
}

type subscriber struct {
	ch     chan *customsv1.Artifact
	filter func(*customsv1.Artifact) bool
	// dropped is closed when the subscriber fell too far behind.
	dropped chan struct{}
}

// NewReadModel returns an empty read model; Run fills it.
func NewReadModel(log *slog.Logger) *ReadModel {
	return &ReadModel{
		log:        log,
		artifacts:  map[string]*customsv1.Artifact{},
		byRef:      map[string]string{},
		byShortRef: map[string]map[string]string{},
		subs:       map[*subscriber]struct{}{},
		synced:     make(chan struct{}),
	}
}

// Run watches the bucket until ctx ends.
func (m *ReadModel) Run(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.Watch(ctx, "a.>")
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("watch %s: %w", BucketArtifacts, err)
	}
	defer func() { _ = w.Stop() }()
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("watch %s closed", BucketArtifacts)
			}
			if e == nil {
				if initial {
					initial = false
					close(m.synced)
					m.log.Info("read model synced", "artifacts", m.Len())
				}
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				m.remove(e.Key())
				continue
			}
			rec := &customsv1.ArtifactRecord{}
			if err := proto.Unmarshal(e.Value(), rec); err != nil || rec.GetArtifact() == nil {
				m.log.Error("undecodable projection record", "key", e.Key(), "error", err)
				continue
			}
			m.put(artifactOnly(rec))
		}
	}
}

// Synced is closed once the initial contents of the bucket are loaded.
func (m *ReadModel) Synced() <-chan struct{} { return m.synced }

// Len is the number of artifacts.
func (m *ReadModel) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.artifacts)
}

func (m *ReadModel) put(a *customsv1.Artifact) {
	m.mu.Lock()
	if old := m.artifacts[a.GetDigest()]; old != nil {
		m.unindex(old)
	}
	m.artifacts[a.GetDigest()] = a
	m.index(a)
	m.version.Add(1)
	subs := make([]*subscriber, 0, len(m.subs))
	for s := range m.subs {
		subs = append(subs, s)
	}
	m.mu.Unlock()
	for _, s := range subs {
		if s.filter != nil && !s.filter(a) {
			continue
		}
		select {
		case s.ch <- a:
		default:
			// A watcher that cannot keep up is cut off rather than allowed
			// to block the projection or grow memory without bound.
			m.unsubscribe(s)
		}
	}
}

func (m *ReadModel) remove(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := strings.Replace(strings.TrimPrefix(key, "a."), ".", ":", 1)
	if a, ok := m.artifacts[d]; ok {
		m.unindex(a)
		delete(m.artifacts, d)
		m.version.Add(1)
	}
}

func (m *ReadModel) index(a *customsv1.Artifact) {
	for _, loc := range a.GetLocations() {
		for _, t := range loc.GetTags() {
			m.byRef[loc.GetRegistry()+"/"+loc.GetRepository()+":"+t] = a.GetDigest()
			short := loc.GetRepository() + ":" + t
			if m.byShortRef[short] == nil {
				m.byShortRef[short] = map[string]string{}
			}
			m.byShortRef[short][loc.GetRegistry()] = a.GetDigest()
		}
	}
}

func (m *ReadModel) unindex(a *customsv1.Artifact) {
	for _, loc := range a.GetLocations() {
		for _, t := range loc.GetTags() {
			full := loc.GetRegistry() + "/" + loc.GetRepository() + ":" + t
			if m.byRef[full] == a.GetDigest() {
				delete(m.byRef, full)
			}
			short := loc.GetRepository() + ":" + t
			if regs := m.byShortRef[short]; regs[loc.GetRegistry()] == a.GetDigest() {
				delete(regs, loc.GetRegistry())
				if len(regs) == 0 {
					delete(m.byShortRef, short)
				}
			}
		}
	}
}

// Version changes whenever an artifact is added, replaced or removed.
func (m *ReadModel) Version() uint64 { return m.version.Load() }

// Get returns the artifact with digest.
func (m *ReadModel) Get(digest string) (*customsv1.Artifact, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a, ok := m.artifacts[digest]
	return a, ok
}

// ErrAmbiguous is returned when "repo:tag" names artifacts in more than one
// registry.
type ErrAmbiguous struct{ Registries []string }

func (e *ErrAmbiguous) Error() string {
	return "reference is ambiguous: the tag exists in registries " + strings.Join(e.Registries, ", ") + "; qualify it with the registry"
}

// Resolve returns the digest a tag points at. registry may be empty.
func (m *ReadModel) Resolve(registry, repository, tag string) (string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if registry != "" {
		if d, ok := m.byRef[registry+"/"+repository+":"+tag]; ok {
			return d, nil
		}
		return "", ErrNotFound
	}
	regs := m.byShortRef[repository+":"+tag]
	switch len(regs) {
	case 0:
		return "", ErrNotFound
	case 1:
		for _, d := range regs {
			return d, nil
		}
	}
	names := make([]string, 0, len(regs))
	for r := range regs {
		names = append(names, r)
	}
	slices.Sort(names)
	return "", &ErrAmbiguous{Registries: names}
}

// Snapshot returns the artifacts matching filter, newest first.
func (m *ReadModel) Snapshot(filter func(*customsv1.Artifact) bool) []*customsv1.Artifact {
	m.mu.RLock()
	out := make([]*customsv1.Artifact, 0, len(m.artifacts))
	for _, a := range m.artifacts {
		if filter == nil || filter(a) {
			out = append(out, a)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(out, compareNewestFirst)
	return out
}

func compareNewestFirst(x, y *customsv1.Artifact) int {
	tx, ty := x.GetFirstSeenAt().AsTime(), y.GetFirstSeenAt().AsTime()
	if c := ty.Compare(tx); c != 0 {
		return c
	}
	return strings.Compare(x.GetDigest(), y.GetDigest())
}

// Subscribe returns a channel of changed artifacts that pass filter, and a
// channel closed if the subscriber falls too far behind. cancel must be
// called when done.
func (m *ReadModel) Subscribe(filter func(*customsv1.Artifact) bool) (updates <-chan *customsv1.Artifact, dropped <-chan struct{}, cancel func()) {
	s := &subscriber{ch: make(chan *customsv1.Artifact, 256), filter: filter, dropped: make(chan struct{})}
	m.mu.Lock()
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	return s.ch, s.dropped, func() { m.unsubscribe(s) }
}

func (m *ReadModel) unsubscribe(s *subscriber) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subs[s]; ok {
		delete(m.subs, s)
		close(s.dropped)
	}
}
