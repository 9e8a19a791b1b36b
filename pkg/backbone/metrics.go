package backbone

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
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
