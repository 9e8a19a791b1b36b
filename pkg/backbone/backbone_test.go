package backbone_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/backbone"
	"github.com/customs-dev/customs/pkg/testkit"
)

func pushed(id string) *customsv1.Event {
	return &customsv1.Event{
		Id:         id,
		OccurredAt: timestamppb.Now(),
		Artifact: &customsv1.ArtifactRef{
			Registry: "r.example", Repository: "team/app",
			Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		},
		CorrelationId: "corr-" + id,
		Payload:       &customsv1.Event_Pushed{Pushed: &customsv1.ArtifactPushed{Source: "test"}},
	}
}

// runConsumer runs h on a fresh durable consumer until the test ends.
func runConsumer(t *testing.T, js jetstream.JetStream, cfg backbone.ConsumerConfig, h backbone.Handler) {
	t.Helper()
	if cfg.Durable == "" {
		cfg.Durable = "test"
	}
	cfg.FilterSubjects = []string{backbone.SubjectPushed}
	cfg.BackoffBase, cfg.BackoffMax = 10*time.Millisecond, 50*time.Millisecond
	cfg.Logger = testkit.Logger(t)
	c, err := backbone.NewConsumer(js, cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
}

// deadLetters reads every dead-letter record.
func deadLetters(t *testing.T, js jetstream.JetStream, want int) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, backbone.StreamDeadLetter, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	deadline := time.Now().Add(10 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPublishDeduplicatesByEventID(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	pub := backbone.NewPublisher(conn.JS)
	ctx := context.Background()
	first, err := pub.Publish(ctx, pushed("same"))
	if err != nil || first.Duplicate {
		t.Fatalf("first publish: %+v, %v", first, err)
	}
	again, err := pub.Publish(ctx, pushed("same"))
	if err != nil || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("re-publish: %+v, %v; want a duplicate of seq %d", again, err, first.Sequence)
	}
	if _, err := pub.Publish(ctx, &customsv1.Event{Id: "x"}); !errors.Is(err, backbone.ErrInvalidEvent) {
		t.Fatalf("event without payload: %v, want ErrInvalidEvent", err)
	}
	bad := pushed("")
	if _, err := pub.Publish(ctx, bad); !errors.Is(err, backbone.ErrInvalidEvent) {
		t.Fatalf("event without id: %v, want ErrInvalidEvent", err)
	}
}

func TestHandlerOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		maxDeliver     int
		handler        func(calls int) error
		wantCalls      int
		wantDeadReason string
	}{
		{name: "success acks once", handler: func(int) error { return nil }, wantCalls: 1},
		{name: "retryable error is redelivered", handler: func(calls int) error {
			if calls < 3 {
				return errors.New("registry unreachable")
			}
			return nil
		}, wantCalls: 3},
		{name: "terminal error is dead-lettered at once", handler: func(int) error {
			return backbone.Terminalf("bad digest")
		}, wantCalls: 1, wantDeadReason: "bad digest"},
		{name: "retries exhausted are dead-lettered", maxDeliver: 3, handler: func(int) error {
			return errors.New("still down")
		}, wantCalls: 3, wantDeadReason: "retries exhausted after 3 deliveries: still down"},
		{name: "panic is dead-lettered", handler: func(int) error { panic("nil map") }, wantCalls: 1, wantDeadReason: "handler panic: nil map"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn := testkit.NATS(t)
			var calls atomic.Int32
			var mu sync.Mutex
			var corr []string
			runConsumer(t, conn.JS, backbone.ConsumerConfig{MaxDeliver: tt.maxDeliver}, func(ctx context.Context, _ *customsv1.Event) error {
				info, _ := backbone.Info(ctx)
				mu.Lock()
				corr = append(corr, info.Header.Get(backbone.HeaderCorrelationID))
				mu.Unlock()
				return tt.handler(int(calls.Add(1)))
			})
			if _, err := backbone.NewPublisher(conn.JS).Publish(context.Background(), pushed("e1")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "handler calls", func() bool { return int(calls.Load()) >= tt.wantCalls })
			if tt.wantDeadReason != "" {
				dl := deadLetters(t, conn.JS, 1)
				if len(dl) != 1 {
					t.Fatalf("%d dead letters, want 1", len(dl))
				}
				h := dl[0].Headers()
				if got := h.Get(backbone.HeaderDLQReason); !strings.Contains(got, tt.wantDeadReason) {
					t.Errorf("dead-letter reason %q, want it to contain %q", got, tt.wantDeadReason)
				}
				if h.Get(backbone.HeaderDLQSubject) != backbone.SubjectPushed || h.Get(backbone.HeaderDLQStreamSeq) != "1" || dl[0].Subject() != "deadletter.test" {
					t.Errorf("dead-letter headers %v on %s", h, dl[0].Subject())
				}
			}
			// Give a wrong redelivery the chance to happen, then check none did.
			time.Sleep(150 * time.Millisecond)
			if got := int(calls.Load()); got != tt.wantCalls {
				t.Fatalf("handler called %d times, want %d", got, tt.wantCalls)
			}
			mu.Lock()
			defer mu.Unlock()
			if corr[0] != "corr-e1" {
				t.Errorf("correlation header %q", corr[0])
			}
		})
	}
}

func TestUndecodableMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	var calls atomic.Int32
	runConsumer(t, conn.JS, backbone.ConsumerConfig{}, func(context.Context, *customsv1.Event) error {
		calls.Add(1)
		return nil
	})
	if _, err := conn.JS.PublishMsg(context.Background(), &nats.Msg{Subject: backbone.SubjectPushed, Data: []byte{0xff, 0x01}}); err != nil {
		t.Fatal(err)
	}
	dl := deadLetters(t, conn.JS, 1)
	if len(dl) != 1 || !strings.Contains(dl[0].Headers().Get(backbone.HeaderDLQReason), "decode") {
		t.Fatalf("dead letters %v", dl)
	}
	if calls.Load() != 0 {
		t.Fatal("handler saw an undecodable message")
	}
}

func TestTraceContextTravelsInHeaders(t *testing.T) {
	t.Parallel()
	conn := testkit.NATS(t)
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "webhook")
	defer span.End()
	got := make(chan trace.SpanContext, 1)
	runConsumer(t, conn.JS, backbone.ConsumerConfig{}, func(ctx context.Context, _ *customsv1.Event) error {
		info, _ := backbone.Info(ctx)
		got <- trace.SpanContextFromContext(backbone.ExtractTrace(context.Background(), info.Header))
		return nil
	})
	if _, err := backbone.NewPublisher(conn.JS).Publish(ctx, pushed("traced")); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-got:
		if sc.TraceID() != span.SpanContext().TraceID() {
			t.Fatalf("consumer saw trace %s, want %s", sc.TraceID(), span.SpanContext().TraceID())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	t.Parallel()
	cfg := backbone.ConsumerConfig{Durable: "x", FilterSubjects: []string{"a"}, BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	prev := time.Duration(0)
	for n := uint64(1); n <= 4; n++ {
		d := cfg.Backoff(n)
		if d <= prev/2 || d > time.Second {
			t.Fatalf("backoff(%d) = %v after %v", n, d, prev)
		}
		prev = d
	}
	if d := cfg.Backoff(50); d > time.Second || d < 800*time.Millisecond {
		t.Fatalf("backoff(50) = %v, want about the 1s cap", d)
	}
}
