package rules

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// Store holds the current rules and reloads them when the file changes. A
// file that no longer parses is logged and ignored: the last good rules
// stay in force rather than promoting with none.
type Store struct {
	file string
	log  *slog.Logger
	cur  atomic.Pointer[File]
	raw  []byte
}

// NewStore loads file; it fails if the file is missing or invalid.
func NewStore(file string, log *slog.Logger) (*Store, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, err
	}
	s := &Store{file: file, log: log, raw: b}
	s.cur.Store(f)
	return s, nil
}

// StaticStore serves fixed rules, for tests and benchmarks.
func StaticStore(f *File) *Store {
	s := &Store{}
	s.cur.Store(f)
	return s
}

// Current returns the rules in force.
func (s *Store) Current() *File { return s.cur.Load() }

// Reload re-reads the file. It reports whether the rules changed.
func (s *Store) Reload() (bool, error) {
	b, err := os.ReadFile(s.file)
	if err != nil {
		return false, err
	}
	if bytes.Equal(b, s.raw) {
		return false, nil
	}
	f, err := Parse(b)
	if err != nil {
		return false, err
	}
	s.raw = b
	s.cur.Store(f)
	return true, nil
}

// Watch polls the file every interval until ctx ends. Polling works the
// same for a bind-mounted file, a Kubernetes ConfigMap symlink swap and an
// editor's rename-on-save, where inotify watches go stale.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if s.file == "" {
		return
	}
	lifecycle.Every(ctx, interval, func(context.Context) {
		changed, err := s.Reload()
		switch {
		case err != nil:
			s.log.Error("rules file not reloaded; keeping the previous rules", "file", s.file, "error", err)
		case changed:
			s.log.Info("rules reloaded", "file", s.file, "rules", len(s.Current().Rules))
		}
	})
}
