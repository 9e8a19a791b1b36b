package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/testkit"
	"github.com/customs-dev/customs/services/promotion/promotion"
	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/scanner"
	"github.com/customs-dev/customs/services/scanner/vulndb"
	"github.com/customs-dev/customs/services/signer/signer"
)

const chainRules = `rules:
  - id: team-apps
    source: "*/team/*"
    targets:
      - environment: staging
        repository: "{registry}/staging/{repository}"
        auto: true
        max_severity: high
`

// startChain runs the scanner, signer and promotion services in-process on
// the stack's NATS and registry, as the one-process runtime does.
func startChain(t *testing.T, s *stack) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dbRef, _, err := vulndb.Publish(ctx, s.registry, vulndb.DefaultRepository)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	allow := s.registry + ";plain-http"
	log := testkit.Logger(t)

	scanCfg := scanner.ServiceConfig{Registries: allow, DBRepositories: []string{dbRef}, CacheDir: t.TempDir(), CacheBackend: "memory", Concurrency: 2}
	scanSvc, err := scanner.NewService(ctx, scanCfg, s.conn.JS, log.With("service", "scanner"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	signCfg := signer.ServiceConfig{Registries: allow}
	pub, err := signer.UseGeneratedKey(&signCfg, t.TempDir(), log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	signSvc, err := signer.NewService(ctx, signCfg, s.conn.JS, log.With("service", "signer"), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(chainRules), 0o600); err != nil {
		cancel()
		t.Fatal(err)
	}
	promoSvc, err := promotion.NewService(ctx, promotion.ServiceConfig{RulesFile: rules, PublicKeys: "signer=" + pub, Registries: allow}, s.conn.JS, s.conn.NC, log.With("service", "promotion"), nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 3)
	for _, run := range []func(context.Context) error{scanSvc.Run, signSvc.Run, promoSvc.Run} {
		go func() { done <- run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Errorf("service: %v", err)
			}
		}
	})
}

// The whole chain, push to promotion, is one trace: each stage's consumer
// span is a child of the previous stage's publish, and each publish happens
// inside its stage's handling.
func TestWholeChainIsOneTrace(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	startChain(t, s)
	ctx := context.Background()

	img, err := fixtures.Alpine()
	if err != nil {
		t.Fatal(err)
	}
	dg, err := fixtures.Push(ctx, img, s.registry+"/team/app:v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	digest := dg.String()

	var a *customsv1.Artifact
	eventuallyWithin(t, time.Minute, "artifact promoted to staging", func() error {
		got, err := getByDigest(ctx, s.client, digest)
		if err != nil {
			return err
		}
		if got.GetState() != customsv1.ArtifactState_ARTIFACT_STATE_PROMOTED {
			return fmt.Errorf("state %v, stages %v", got.GetState(), got.GetStages())
		}
		a = got
		return nil
	})
	if a.GetScan().GetCounts().GetMedium() == 0 || a.GetSignature().GetKeyId() == "" || a.GetPromotions()[0].GetEnvironment() != "staging" {
		t.Fatalf("artifact lacks its scan, signature or promotion: %v", a)
	}

	// process spans by consumer, publish spans by subject.
	type key struct {
		kind           trace.SpanKind
		name, consumer string
	}
	var spansByKey map[key]tracetest.SpanStub
	eventually(t, "the chain's spans", func() error {
		spansByKey = map[key]tracetest.SpanStub{}
		for _, sp := range spansOf(a.GetTraceId()) {
			spansByKey[key{sp.SpanKind, sp.Name, attr(sp, "messaging.consumer.group.name")}] = sp
		}
		for _, k := range []key{
			{trace.SpanKindServer, "POST /webhooks/distribution", ""},
			{trace.SpanKindProducer, "publish artifact.pushed", ""},
			{trace.SpanKindConsumer, "process artifact.pushed", scanner.Durable},
			{trace.SpanKindProducer, "publish artifact.scanned", ""},
			{trace.SpanKindConsumer, "process artifact.scanned", signer.Durable},
			{trace.SpanKindProducer, "publish artifact.signed", ""},
			{trace.SpanKindConsumer, "process artifact.signed", promotion.ConsumerDurable},
			{trace.SpanKindProducer, "publish artifact.promoted", ""},
		} {
			if _, ok := spansByKey[k]; !ok {
				return fmt.Errorf("trace %s has no %v span %q (consumer %q)", a.GetTraceId(), k.kind, k.name, k.consumer)
			}
		}
		return nil
	})
	all := spansOf(a.GetTraceId())
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range all {
		byID[sp.SpanContext.SpanID()] = sp
	}
	descends := func(child, ancestor tracetest.SpanStub) bool {
		for cur, ok := child, true; ok; cur, ok = byID[cur.Parent.SpanID()] {
			if cur.Parent.SpanID() == ancestor.SpanContext.SpanID() {
				return true
			}
		}
		return false
	}
	chain := []struct{ child, parent key }{
		{key{trace.SpanKindConsumer, "process artifact.pushed", scanner.Durable}, key{trace.SpanKindProducer, "publish artifact.pushed", ""}},
		{key{trace.SpanKindProducer, "publish artifact.scanned", ""}, key{trace.SpanKindConsumer, "process artifact.pushed", scanner.Durable}},
		{key{trace.SpanKindConsumer, "process artifact.scanned", signer.Durable}, key{trace.SpanKindProducer, "publish artifact.scanned", ""}},
		{key{trace.SpanKindProducer, "publish artifact.signed", ""}, key{trace.SpanKindConsumer, "process artifact.scanned", signer.Durable}},
		{key{trace.SpanKindConsumer, "process artifact.signed", promotion.ConsumerDurable}, key{trace.SpanKindProducer, "publish artifact.signed", ""}},
		{key{trace.SpanKindProducer, "publish artifact.promoted", ""}, key{trace.SpanKindConsumer, "process artifact.signed", promotion.ConsumerDurable}},
	}
	for _, c := range chain {
		if !descends(spansByKey[c.child], spansByKey[c.parent]) {
			t.Errorf("span %q (%s) does not descend from %q (%s)", c.child.name, c.child.consumer, c.parent.name, c.parent.consumer)
		}
	}
	// The work itself shows in the trace: the scan, the signing, the
	// promotion copy, and the registry calls they make.
	inner := []struct {
		name   string
		parent key
	}{
		{"trivy scan", key{trace.SpanKindConsumer, "process artifact.pushed", scanner.Durable}},
		{"cosign sign", key{trace.SpanKindConsumer, "process artifact.scanned", signer.Durable}},
		{"cosign attest", key{trace.SpanKindConsumer, "process artifact.scanned", signer.Durable}},
		{"verify signature", key{trace.SpanKindConsumer, "process artifact.signed", promotion.ConsumerDurable}},
		{"copy to target", key{trace.SpanKindConsumer, "process artifact.signed", promotion.ConsumerDurable}},
	}
	for _, in := range inner {
		var found *tracetest.SpanStub
		for i := range all {
			if all[i].Name == in.name {
				found = &all[i]
			}
		}
		if found == nil {
			t.Errorf("no %q span in the trace", in.name)
			continue
		}
		if !descends(*found, spansByKey[in.parent]) {
			t.Errorf("%q does not descend from %q (%s)", in.name, in.parent.name, in.parent.consumer)
		}
	}
	registryCalls := 0
	for _, sp := range all {
		if sp.SpanKind == trace.SpanKindClient && strings.HasPrefix(sp.Name, "registry ") {
			registryCalls++
		}
	}
	if registryCalls == 0 {
		t.Error("no registry client spans in the trace")
	}
	// The outcome metrics saw the chain: findings, a signature, a promotion.
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if m.GetCounter().GetValue() < 1 {
				continue
			}
			switch {
			case mf.GetName() == "customs_findings_total" && labels["severity"] == "medium":
				seen["findings"] = true
			case mf.GetName() == "customs_events_published_total" && labels["subject"] == "artifact.signed" && labels["producer"] == "signer":
				seen["signatures"] = true
			case mf.GetName() == "customs_events_published_total" && labels["subject"] == "artifact.promoted":
				seen["promotions"] = true
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("outcome metrics seen: %v, want findings, signatures and promotions", seen)
	}
	t.Logf("trace %s has %d spans", a.GetTraceId(), len(all))
	for _, sp := range all {
		t.Logf("  %s %q parent %s", sp.SpanKind, sp.Name, byID[sp.Parent.SpanID()].Name)
	}
}
