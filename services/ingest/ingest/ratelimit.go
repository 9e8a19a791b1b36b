package ingest

import (
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Default rate limits per source. A CI fleet behind one NAT address pushing
// a few hundred images at once stays inside the burst; a runaway sender or
// a credential-guessing loop does not.
const (
	DefaultRateLimit = 50  // requests per second, sustained
	DefaultRateBurst = 500 // requests at once
)

// limiterIdle is how long an unused source keeps its bucket. A fresh bucket
// is full, so forgetting an idle source never throttles it.
const limiterIdle = 10 * time.Minute

// sourceLimiter keeps one token bucket per source (receiver and client
// address), so one noisy sender cannot starve the others.
type sourceLimiter struct {
	limit rate.Limit
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newSourceLimiter(limit float64, burst int) *sourceLimiter {
	if limit <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = 1
	}
	return &sourceLimiter{limit: rate.Limit(limit), burst: burst, now: time.Now, buckets: map[string]*bucket{}}
}

// allow takes a token for the source, or says how long to wait for one.
func (s *sourceLimiter) allow(receiver string, r *http.Request) (bool, time.Duration) {
	if s == nil {
		return true, 0
	}
	key := receiver + "|" + clientAddr(r)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.swept) > limiterIdle {
		for k, b := range s.buckets {
			if now.Sub(b.seen) > limiterIdle {
				delete(s.buckets, k)
			}
		}
		s.swept = now
	}
	b, ok := s.buckets[key]
	if !ok {
		b = &bucket{l: rate.NewLimiter(s.limit, s.burst)}
		s.buckets[key] = b
	}
	b.seen = now
	res := b.l.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
