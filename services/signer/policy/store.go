package policy

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// Store holds the current policy and reloads it when its file changes.
// Readers never block: a reload swaps a pointer.
type Store struct {
	path    string
	log     *slog.Logger
	current atomic.Pointer[Policy]
	raw     []byte
	modTime time.Time
}

// NewStore loads the policy file at path. An empty path uses Default.
func NewStore(path string, log *slog.Logger) (*Store, error) {
	s := &Store{path: path, log: log}
	if path == "" {
		s.current.Store(Default())
		return s, nil
	}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Current returns the policy in force.
func (s *Store) Current() *Policy { return s.current.Load() }

// Reload re-reads the file if it changed. It reports whether the policy was
// replaced. On a bad file the previous policy stays in force.
func (s *Store) Reload() (bool, error) {
	if s.path == "" {
		return false, nil
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return false, fmt.Errorf("policy file: %w", err)
	}
	if s.raw != nil && fi.ModTime().Equal(s.modTime) {
		return false, nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, fmt.Errorf("policy file: %w", err)
	}
	s.modTime = fi.ModTime()
	if s.raw != nil && bytes.Equal(data, s.raw) {
		return false, nil
	}
	p, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("policy file %s: %w", s.path, err)
	}
	s.raw = data
	s.current.Store(p)
	return true, nil
}

// Watch polls the file every interval until ctx ends. Polling the mtime
// works on every filesystem, including ConfigMap mounts whose symlink swap
// inotify watchers miss.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if s.path == "" {
		return
	}
	lifecycle.Every(ctx, interval, func(context.Context) {
		changed, err := s.Reload()
		switch {
		case err != nil:
			s.log.Error("policy reload failed; keeping the previous policy", "error", err, "policy", s.Current().ID())
		case changed:
			s.log.Info("policy reloaded", "policy", s.Current().ID())
		}
	})
}
