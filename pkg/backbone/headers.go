package backbone

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header names set on every published message.
const (
	HeaderMsgID         = nats.MsgIdHdr
	HeaderCorrelationID = "Customs-Correlation-Id"
	HeaderEventType     = "Customs-Event-Type"
	HeaderContentType   = "Content-Type"
	ContentTypeProto    = "application/protobuf"

	HeaderDLQReason     = "Customs-Dlq-Reason"
	HeaderDLQSubject    = "Customs-Dlq-Subject"
	HeaderDLQStreamSeq  = "Customs-Dlq-Stream-Seq"
	HeaderDLQConsumer   = "Customs-Dlq-Consumer"
	HeaderDLQDeliveries = "Customs-Dlq-Deliveries"
)

// headerCarrier adapts nats.Header to OpenTelemetry's TextMapCarrier. It
// keeps keys exactly as the propagator writes them ("traceparent"), which is
// what W3C-aware consumers in other languages look for.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// InjectTrace writes the W3C trace context of ctx into h.
func InjectTrace(ctx context.Context, h nats.Header) {
	propagator.Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx with the remote trace context found in h.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	return propagator.Extract(ctx, headerCarrier(h))
}

// Propagator is the propagator Customs uses everywhere (W3C trace context
// and baggage); telemetry.Setup installs it globally.
func Propagator() propagation.TextMapPropagator { return propagator }

var _ propagation.TextMapCarrier = headerCarrier(nil)

const instrumentationName = "github.com/customs-dev/customs/pkg/backbone"

func tracer() trace.Tracer { return otel.Tracer(instrumentationName) }
