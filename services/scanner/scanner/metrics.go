package scanner

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// scanMetrics are the scanner's own Prometheus metrics. Consumer lag comes
// from pkg/metrics.RegisterConsumers.
type scanMetrics struct {
	results  *prometheus.CounterVec
	duration prometheus.Histogram
}

func newScanMetrics(reg prometheus.Registerer) (*scanMetrics, error) {
	m := &scanMetrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "customs_scanner_scans_total",
			Help: "Scans by outcome: scanned, failed (failure event published) or retry (message handed back).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "customs_scanner_scan_duration_seconds",
			Help:    "Time to pull and scan one image, successful scans only.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.results, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
