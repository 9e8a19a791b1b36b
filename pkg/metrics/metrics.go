// Package metrics serves Prometheus metrics and the liveness and readiness
// endpoints every Customs service exposes.
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/customs-dev/customs/pkg/lifecycle"
)

// AdminHandler serves /metrics, /healthz (the process is alive) and /readyz
// (ready calls succeed: connected to NATS and the stream exists).
func AdminHandler(ready func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	Mount(mux, ready)
	return mux
}

// Mount adds the admin endpoints to an existing mux.
func Mount(mux *http.ServeMux, ready func(context.Context) error) {
	mux.Handle("GET /metrics", promhttp.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
				return
			}
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// consumerCollector reports JetStream consumer state at scrape time, so the
// numbers are the server's, not a guess from this process.
type consumerCollector struct {
	js        jetstream.JetStream
	stream    string
	durables  []string
	pending   *prometheus.Desc
	ackPend   *prometheus.Desc
	redeliv   *prometheus.Desc
	delivered *prometheus.Desc
}

// RegisterConsumers registers a collector for the pending, ack-pending and
// redelivered counts of the given durable consumers.
func RegisterConsumers(reg prometheus.Registerer, js jetstream.JetStream, stream string, durables ...string) error {
	labels := []string{"stream", "consumer"}
	c := &consumerCollector{
		js: js, stream: stream, durables: durables,
		pending:   prometheus.NewDesc("customs_consumer_pending_messages", "Messages in the stream not yet delivered to the consumer.", labels, nil),
		ackPend:   prometheus.NewDesc("customs_consumer_ack_pending_messages", "Messages delivered but not yet acknowledged.", labels, nil),
		redeliv:   prometheus.NewDesc("customs_consumer_redelivered_messages", "Messages delivered more than once and not yet acknowledged.", labels, nil),
		delivered: prometheus.NewDesc("customs_consumer_delivered_stream_sequence", "Last stream sequence delivered to the consumer.", labels, nil),
	}
	return reg.Register(c)
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPend
	ch <- c.redeliv
	ch <- c.delivered
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, d := range c.durables {
		cons, err := c.js.Consumer(ctx, c.stream, d)
		if err != nil {
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), c.stream, d)
		ch <- prometheus.MustNewConstMetric(c.ackPend, prometheus.GaugeValue, float64(info.NumAckPending), c.stream, d)
		ch <- prometheus.MustNewConstMetric(c.redeliv, prometheus.GaugeValue, float64(info.NumRedelivered), c.stream, d)
		ch <- prometheus.MustNewConstMetric(c.delivered, prometheus.GaugeValue, float64(info.Delivered.Stream), c.stream, d)
	}
}

// ServeAdmin listens on addr and serves AdminHandler until ctx ends. It
// returns once listening, or the listen error.
func ServeAdmin(ctx context.Context, addr string, ready func(context.Context) error, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listen %s: %w", addr, err)
	}
	log.Info("admin endpoints listening", "addr", ln.Addr().String(), "paths", "/metrics /healthz /readyz")
	go func() { _ = lifecycle.ServeHTTP(ctx, ln, AdminHandler(ready), log) }()
	return nil
}
