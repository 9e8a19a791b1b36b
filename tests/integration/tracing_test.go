package integration

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// spansOf returns the recorded spans of one trace.
func spansOf(traceID string) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID().String() == traceID {
			out = append(out, s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}

// One push is one trace: the webhook request, the JetStream publish and
// every consumer's handling share the trace id returned by GetArtifact.
func TestPushIsOneTrace(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	digest := s.push("team/traced", "v1").String()

	var traceID string
	eventually(t, "artifact with trace id", func() error {
		a, err := getByDigest(ctx, s.client, digest)
		if err != nil {
			return err
		}
		traceID = a.GetTraceId()
		return nil
	})

	var webhook, publish, process tracetest.SpanStub
	eventually(t, "span tree", func() error {
		found := map[string]bool{}
		for _, sp := range spansOf(traceID) {
			switch {
			case sp.SpanKind == trace.SpanKindServer && sp.Name == "POST /webhooks/distribution":
				webhook, found["webhook"] = sp, true
			case sp.SpanKind == trace.SpanKindProducer && sp.Name == "publish artifact.pushed":
				publish, found["publish"] = sp, true
			case sp.SpanKind == trace.SpanKindConsumer && sp.Name == "process artifact.pushed" && attr(sp, "messaging.consumer.group.name") == "query-projection":
				process, found["process"] = sp, true
			}
		}
		if len(found) != 3 {
			return fmt.Errorf("trace %s has %v of webhook, publish, process", traceID, found)
		}
		return nil
	})
	if webhook.Parent.IsValid() {
		t.Errorf("webhook span has a parent %s; it should start the trace", webhook.Parent.SpanID())
	}
	if publish.Parent.SpanID() != webhook.SpanContext.SpanID() {
		t.Errorf("publish span's parent is %s, want the webhook span %s", publish.Parent.SpanID(), webhook.SpanContext.SpanID())
	}
	if process.Parent.SpanID() != publish.SpanContext.SpanID() {
		t.Errorf("projection span's parent is %s, want the publish span %s", process.Parent.SpanID(), publish.SpanContext.SpanID())
	}
	for key, want := range map[attribute.Key]string{
		"messaging.system":               "nats",
		"messaging.destination.name":     "artifact.pushed",
		"messaging.nats.stream_sequence": "",
		"customs.artifact.digest":        "",
	} {
		sp := process
		if key == "customs.artifact.digest" {
			sp = publish
		}
		got := attr(sp, key)
		if got == "" || (want != "" && got != want) {
			t.Errorf("span %q attribute %s = %q, want %q", sp.Name, key, got, want)
		}
	}
}
