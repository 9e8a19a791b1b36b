package backbone

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// Handler outcomes, as metric label values.
const (
	OutcomeAck       = "ack"
	OutcomeRetry     = "retry"
	OutcomeTerminal  = "terminal"
	OutcomeExhausted = "exhausted"
)

var (
	handledTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "customs_messages_handled_total",
		Help: "Messages handled by a consumer, by outcome (ack, retry, terminal, exhausted).",
	}, []string{"consumer", "outcome"})
	handleSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "customs_message_handle_seconds",
		Help:    "Time a consumer's handler took per message.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	}, []string{"consumer", "outcome"})
)

var (
	eventsPublished = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "customs_events_published_total",
		Help: "Events stored on the ARTIFACTS stream (duplicates excluded), by subject and producer: pushes, scans, signatures, promotions, rejections, failures.",
	}, []string{"subject", "producer"})
	findingsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "customs_findings_total",
		Help: "Vulnerability findings in published scan results, by severity.",
	}, []string{"severity"})
	rejectionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "customs_rejections_total",
		Help: "Artifacts refused by a stage, by stage and reason code.",
	}, []string{"stage", "reason"})
)

// countPublished records what a stored event means for the metrics.
func countPublished(subject string, evt *customsv1.Event) {
	eventsPublished.WithLabelValues(subject, evt.GetProducer()).Inc()
	switch p := evt.GetPayload().(type) {
	case *customsv1.Event_Scanned:
		c := p.Scanned.GetSummary().GetCounts()
		for sev, n := range map[string]int32{"critical": c.GetCritical(), "high": c.GetHigh(), "medium": c.GetMedium(), "low": c.GetLow(), "unknown": c.GetUnknown()} {
			if n > 0 {
				findingsTotal.WithLabelValues(sev).Add(float64(n))
			}
		}
	case *customsv1.Event_Rejected:
		code := p.Rejected.GetReasonCode()
		if code == "" {
			code = "unspecified"
		}
		stage := strings.ToLower(strings.TrimPrefix(p.Rejected.GetStage().String(), "STAGE_"))
		rejectionsTotal.WithLabelValues(stage, code).Inc()
	}
}

func outcomeOf(err error, delivered uint64, maxDeliver int) string {
	switch {
	case err == nil:
		return OutcomeAck
	case IsTerminal(err):
		return OutcomeTerminal
	case delivered >= uint64(maxDeliver):
		return OutcomeExhausted
	}
	return OutcomeRetry
}
