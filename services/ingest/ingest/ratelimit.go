package ingest

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
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
	limit   rate.Limit
	burst   int
	now     func() time.Time
	proxies []netip.Prefix

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newSourceLimiter(limit float64, burst int, proxies []netip.Prefix) *sourceLimiter {
	if limit <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = 1
	}
	return &sourceLimiter{limit: rate.Limit(limit), burst: burst, now: time.Now, proxies: proxies, buckets: map[string]*bucket{}}
}

// allow takes a token for the source, or says how long to wait for one.
func (s *sourceLimiter) allow(receiver string, r *http.Request) (bool, time.Duration) {
	if s == nil {
		return true, 0
	}
	key := receiver + "|" + clientAddr(r, s.proxies)
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

// clientAddr is the address a request is limited by: its peer, or, when
// the peer is a trusted proxy, the nearest address in X-Forwarded-For that
// is not one. Entries left of that one are whatever the client sent and
// are never used.
func clientAddr(r *http.Request, proxies []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(proxies) == 0 || !trusted(host, proxies) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			hop := strings.TrimSpace(list[j])
			if hop == "" {
				continue
			}
			if !trusted(hop, proxies) {
				return hop
			}
			host = hop
		}
	}
	// Every hop is a trusted proxy: the request started at the first one.
	return host
}

// trusted reports whether addr, an IP address, is in one of proxies.
func trusted(addr string, proxies []netip.Prefix) bool {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	for _, p := range proxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies reads a comma-separated list of CIDR prefixes or
// single addresses ("10.0.0.0/8,192.168.1.7").
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("ingest: trusted proxy %q is not an address or CIDR prefix", f)
			}
			out = append(out, netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("ingest: trusted proxy %q is not an address or CIDR prefix", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
